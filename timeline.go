package quarry

import (
	"context"
	"time"
)

// Severities of a timeline event: what a detection made of it. None is "".
const (
	SeveritySuspicious = "suspicious"
	SeverityAlarm      = "alarm"
)

// Event is one row of a project's timeline (design.md, Evidence and processing): something that
// happened at a time on a host, as one parser read it from one file of an evidence package.
type Event struct {
	ID         int64
	ProjectID  int64
	EvidenceID int64

	Timestamp     time.Time // UTC
	TimestampDesc string    // what the time means: "Event Time", "Last Login", "Modification Time"…
	Source        string    // the artifact type: evtx, syslog, auth.log, bash_history, utmp…
	Host          string
	User          string
	Message       string // one readable line
	Path          string // the file inside the package the event came from
	// Fields are the typed key/values of the event (EventID, Channel, CommandLine, src_ip…);
	// values are strings, numbers (int64, uint64, float64), bools, times or lists of them.
	Fields map[string]any

	Severity   string // "", SeveritySuspicious or SeverityAlarm
	Detections []Detection

	// Set by the store: an analyst's marks.
	Starred  bool
	Comments int // how many comments the event has
}

// Detection is a rule that matched an event.
type Detection struct {
	RuleID string   `json:"rule_id"`
	Title  string   `json:"title"`
	Level  string   `json:"level"` // the rule's level: informational, low, medium, high, critical
	Tags   []string `json:"tags,omitempty"`
	Kind   string   `json:"kind"` // sigma, ioc
}

// EventFilter selects a project's timeline events. Zero fields select everything; the lists
// select any of their values.
type EventFilter struct {
	ProjectID  int64
	Query      string    // the query language of package query; "" selects all
	From, To   time.Time // [From, To); zero is open
	Hosts      []string
	Sources    []string
	Severities []string // SeverityAlarm, SeveritySuspicious; "none" selects events without one
	EvidenceID int64
	Starred    bool   // only starred events
	Desc       bool   // newest first; the timeline's default order is oldest first
	Cursor     string // from EventPage.Next; opaque
	Limit      int    // page size; the store caps it
	// TotalUpTo stops counting the Total there (0 counts all). Counting every selected event
	// is most of the cost of a broad query on a large timeline, while a page stops at its last
	// event: a view shows "10,000+" at once and counts exactly when asked.
	TotalUpTo int64
}

// EventPage is one page of a query's events, in (timestamp, id) order.
type EventPage struct {
	Events []*Event
	Next   string // the cursor of the next page; "" on the last
	Total  int64  // how many events the filter selects, or EventFilter.TotalUpTo when there are at least that many
	// TotalExact is false when counting stopped at EventFilter.TotalUpTo.
	TotalExact bool
}

// HistogramBucket counts the events of [Start, Start+step).
type HistogramBucket struct {
	Start time.Time `json:"start"`
	Count int64     `json:"count"`
}

// FacetValue is one value of a field and how many selected events have it.
type FacetValue struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}

// EventComment is an analyst's note on an event.
type EventComment struct {
	ID        int64     `json:"id"`
	ProjectID int64     `json:"project_id"`
	EventID   int64     `json:"event_id"`
	Author    string    `json:"author"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"created_at"`
}

// EventService stores timeline events.
//
// InsertEvents writes a batch in one transaction and sets their IDs. DeleteEvidenceEvents
// removes what one evidence item produced (before it is processed again), with their marks.
// FindEvents returns EINVALID with the query's syntax error. EachEvent streams every event the
// filter selects (Cursor and Limit ignored) in order, for export; fn's error stops it and is
// returned. Histogram counts events in buckets of step (chosen by the store when 0) over the
// filter's time range or, when open, the selected events' range. Facet counts the top values of
// a field (host, source, user, severity, timestamp_desc or a Fields key such as EventID).
// StarEvents and StarQuery set or clear the star and return how many events changed;
// CommentEvents adds c's text to each event the filter selects (EventIDs when given).
type EventService interface {
	InsertEvents(ctx context.Context, events []*Event) error
	DeleteEvidenceEvents(ctx context.Context, evidenceID int64) (int64, error)
	FindEvents(ctx context.Context, f EventFilter) (*EventPage, error)
	FindEventByID(ctx context.Context, projectID, id int64) (*Event, error)
	EachEvent(ctx context.Context, f EventFilter, fn func(*Event) error) error
	Histogram(ctx context.Context, f EventFilter, step time.Duration) ([]HistogramBucket, time.Duration, error)
	Facet(ctx context.Context, f EventFilter, field string, limit int) ([]FacetValue, error)
	StarEvents(ctx context.Context, projectID int64, ids []int64, starred bool) (int64, error)
	StarQuery(ctx context.Context, f EventFilter, starred bool) (int64, error)
	CommentEvents(ctx context.Context, f EventFilter, ids []int64, c EventComment) (int64, error)
	FindComments(ctx context.Context, projectID, eventID int64) ([]*EventComment, error)
	// UpdateEventDetections stores the Severity and Detections of each event (by ID and
	// ProjectID), as a detection run that changed its rules computed them.
	UpdateEventDetections(ctx context.Context, events []*Event) error
}
