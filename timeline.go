package quarry

import "time"

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
}

// Detection is a rule that matched an event.
type Detection struct {
	RuleID string   `json:"rule_id"`
	Title  string   `json:"title"`
	Level  string   `json:"level"` // the rule's level: informational, low, medium, high, critical
	Tags   []string `json:"tags,omitempty"`
	Kind   string   `json:"kind"` // sigma, ioc
}
