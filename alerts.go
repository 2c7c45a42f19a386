package quarry

import (
	"context"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry/xdr"
)

// Alert is an XDR platform's alert as Quarry stored it (issue #9): one row per connection and
// platform id, updated in place when the platform changes it. Acquisitions lists the
// acquisitions detection rules started for it.
type Alert struct {
	ID           int64          `json:"id"`
	ConnectionID int64          `json:"connection_id"`
	ExternalID   string         `json:"external_id"` // the platform's alert id
	HostID       string         `json:"host_id"`
	HostName     string         `json:"host_name"`
	Title        string         `json:"title"`
	Description  string         `json:"description"`
	Severity     string         `json:"severity"` // informational, low, medium, high
	Status       string         `json:"status"`
	Category     string         `json:"category"`
	Techniques   []string       `json:"techniques"`
	Evidence     []xdr.Evidence `json:"evidence"`
	CreatedAt    time.Time      `json:"created_at"` // on the platform
	UpdatedAt    time.Time      `json:"updated_at"` // on the platform: the poll watermark follows it
	FirstSeenAt  time.Time      `json:"first_seen_at"`
	LastSeenAt   time.Time      `json:"last_seen_at"` // when Quarry last stored a change of it
	// Pending is true while the alert (new or changed) awaits evaluation by the detection
	// rules; it survives a restart so that no stored alert escapes them.
	Pending      bool                `json:"pending"`
	Acquisitions []*AlertAcquisition `json:"acquisitions"`
}

// AlertAcquisition links an alert to an acquisition a detection rule started for it.
type AlertAcquisition struct {
	AlertID       int64     `json:"alert_id"`
	AcquisitionID int64     `json:"acquisition_id"`
	ProjectID     int64     `json:"project_id"`
	RuleID        *int64    `json:"rule_id,omitempty"` // nil once the rule was deleted
	RuleName      string    `json:"rule_name"`
	CreatedAt     time.Time `json:"created_at"`
}

// AlertSeverities are the platform-neutral severities, lowest first.
var AlertSeverities = []string{"informational", "low", "medium", "high"}

// SeverityRank orders severities (AlertSeverities, plus "critical" above high); unknown ones
// rank lowest.
func SeverityRank(s string) int {
	if s == "critical" {
		return len(AlertSeverities)
	}
	return slices.Index(AlertSeverities, strings.ToLower(s))
}

// AlertFilter selects stored alerts, newest platform creation first. Text fields match
// exactly except Host, a case-insensitive substring of the host name or the exact host id.
type AlertFilter struct {
	ID           *int64
	ConnectionID *int64
	Severity     string
	Status       string
	Category     string
	Host         string
	From, To     *time.Time // on CreatedAt
	Pending      *bool
	Offset       int
	Limit        int
}

// AlertBatch is one poll's result for a connection: the alerts the platform returned and the
// watermark to store with them.
type AlertBatch struct {
	ConnectionID int64
	Alerts       []xdr.Alert
	// Watermark is the newest UpdatedAt among Alerts (or the previous watermark when none is
	// newer): the next poll asks for alerts updated since it, minus an overlap.
	Watermark time.Time
	// PolledAt is when the poll happened, shown to users.
	PolledAt time.Time
}

// AlertService stores alerts. StoreAlerts writes a batch and the connection's watermark in one
// transaction, so that a crash never advances the watermark past alerts it did not store.
type AlertService interface {
	// StoreAlerts inserts new alerts and updates changed ones (a different UpdatedAt or
	// status), keyed by connection and external id, marks those Pending, stores the
	// watermark, and returns the alerts it inserted or changed.
	StoreAlerts(ctx context.Context, b AlertBatch) ([]*Alert, error)
	// AlertWatermark returns the connection's watermark, zero when it was never polled.
	AlertWatermark(ctx context.Context, connectionID int64) (time.Time, error)
	// FindAlertByID returns one alert with its acquisitions, or ENOTFOUND.
	FindAlertByID(ctx context.Context, id int64) (*Alert, error)
	// FindAlerts returns a page of alerts with their acquisitions, and the total.
	FindAlerts(ctx context.Context, f AlertFilter) ([]*Alert, int, error)
	// MarkAlertEvaluated clears Pending once the rules have seen the alert.
	MarkAlertEvaluated(ctx context.Context, id int64) error
	// LinkAlertAcquisition records that a rule started an acquisition for an alert.
	LinkAlertAcquisition(ctx context.Context, l *AlertAcquisition) error
	// AlertRuleActed reports whether the rule already started an acquisition for the alert,
	// so that a later update of the alert starts no second one.
	AlertRuleActed(ctx context.Context, alertID, ruleID int64) (bool, error)
}

// DetectionRule starts a triage acquisition of an alert's host when an alert matches it. Empty
// criteria match everything; set criteria must all match.
type DetectionRule struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	// MinSeverity is the lowest severity that matches; "" matches any.
	MinSeverity string `json:"min_severity"`
	// Categories match the alert's category, case-insensitively.
	Categories []string `json:"categories"`
	// Techniques match ATT&CK ids; T1110 also matches its sub-techniques (T1110.001).
	Techniques []string `json:"techniques"`
	// TitleContains is a case-insensitive substring of the title.
	TitleContains string `json:"title_contains"`
	// HostPatterns are case-insensitive globs (path.Match) on the host name or its first
	// label, e.g. "srv-*" or "*.corp.example".
	HostPatterns []string `json:"host_patterns"`
	// ConnectionID limits the rule to one connection's alerts; nil: all connections.
	ConnectionID *int64 `json:"connection_id,omitempty"`
	// ProjectID receives the acquisitions; nil creates a new project per matching alert.
	ProjectID *int64 `json:"project_id,omitempty"`
	Profile   string `json:"profile"`
	// Cooldown: a host is acquired at most once per rule within it.
	Cooldown       time.Duration `json:"-"`
	CooldownSecs   int64         `json:"cooldown_seconds"`
	CommentOnAlert bool          `json:"comment_on_alert"`
	CreatedBy      int64         `json:"created_by"`
	CreatedAt      time.Time     `json:"created_at"`
	UpdatedAt      time.Time     `json:"updated_at"`
}

// DefaultRuleCooldown is a rule's cool-down when none is given.
const DefaultRuleCooldown = 24 * time.Hour

// Validate checks and normalises the fields a caller sets. The JSON form carries the cool-down
// in CooldownSecs; Validate makes the two agree (CooldownSecs wins when set).
func (r *DetectionRule) Validate() error {
	r.Name = strings.TrimSpace(r.Name)
	if r.Name == "" || utf8.RuneCountInString(r.Name) > 200 {
		return FieldError("name", "Rule name must be 1 to 200 characters.")
	}
	r.MinSeverity = strings.ToLower(strings.TrimSpace(r.MinSeverity))
	if r.MinSeverity != "" && !slices.Contains(AlertSeverities, r.MinSeverity) {
		return FieldError("min_severity", "Minimum severity must be one of %s.", strings.Join(AlertSeverities, ", "))
	}
	var err error
	if r.Categories, err = cleanList("categories", r.Categories, false); err != nil {
		return err
	}
	if r.Techniques, err = cleanList("techniques", r.Techniques, false); err != nil {
		return err
	}
	for i, t := range r.Techniques {
		t = strings.ToUpper(t)
		if !validTechnique(t) {
			return FieldError("techniques", "%q is not an ATT&CK technique id like T1110 or T1110.001.", t)
		}
		r.Techniques[i] = t
	}
	if r.HostPatterns, err = cleanList("host_patterns", r.HostPatterns, true); err != nil {
		return err
	}
	for _, p := range r.HostPatterns {
		if _, err := path.Match(p, ""); err != nil {
			return FieldError("host_patterns", "Host pattern %q is not a valid glob.", p)
		}
	}
	r.TitleContains = strings.TrimSpace(r.TitleContains)
	if utf8.RuneCountInString(r.TitleContains) > 500 {
		return FieldError("title_contains", "Title text must be at most 500 characters.")
	}
	r.Profile = strings.TrimSpace(r.Profile)
	if r.Profile == "" {
		r.Profile = "triage"
	}
	if len(r.Profile) > 50 {
		return FieldError("profile", "Profile must be at most 50 characters.")
	}
	if r.CooldownSecs != 0 {
		r.Cooldown = time.Duration(r.CooldownSecs) * time.Second
	}
	if r.Cooldown == 0 {
		r.Cooldown = DefaultRuleCooldown
	}
	if r.Cooldown < 0 || r.Cooldown > 365*24*time.Hour {
		return FieldError("cooldown_seconds", "Cool-down must be between one second and a year.")
	}
	r.CooldownSecs = int64(r.Cooldown / time.Second)
	if r.ProjectID != nil && *r.ProjectID <= 0 {
		r.ProjectID = nil
	}
	if r.ConnectionID != nil && *r.ConnectionID <= 0 {
		r.ConnectionID = nil
	}
	return nil
}

func cleanList(field string, in []string, lower bool) ([]string, error) {
	out := []string{}
	for _, v := range in {
		v = strings.TrimSpace(v)
		if lower {
			v = strings.ToLower(v)
		}
		if v == "" || slices.Contains(out, v) {
			continue
		}
		if utf8.RuneCountInString(v) > 200 {
			return nil, FieldError(field, "Each entry must be at most 200 characters.")
		}
		out = append(out, v)
	}
	if len(out) > 100 {
		return nil, FieldError(field, "At most 100 entries.")
	}
	return out, nil
}

// validTechnique accepts T followed by four digits and an optional .NNN sub-technique.
func validTechnique(t string) bool {
	main, sub, hasSub := strings.Cut(t, ".")
	if len(main) != 5 || main[0] != 'T' || !digits(main[1:]) {
		return false
	}
	return !hasSub || (len(sub) == 3 && digits(sub))
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Matches reports whether the alert meets every criterion of the rule (not whether the rule is
// enabled).
func (r *DetectionRule) Matches(a *Alert) bool {
	if r.ConnectionID != nil && *r.ConnectionID != a.ConnectionID {
		return false
	}
	if r.MinSeverity != "" && SeverityRank(a.Severity) < SeverityRank(r.MinSeverity) {
		return false
	}
	if len(r.Categories) > 0 && !slices.ContainsFunc(r.Categories, func(c string) bool { return strings.EqualFold(c, a.Category) }) {
		return false
	}
	if len(r.Techniques) > 0 && !slices.ContainsFunc(r.Techniques, func(want string) bool {
		return slices.ContainsFunc(a.Techniques, func(got string) bool {
			got = strings.ToUpper(got)
			return got == want || strings.HasPrefix(got, want+".")
		})
	}) {
		return false
	}
	if r.TitleContains != "" && !strings.Contains(strings.ToLower(a.Title), strings.ToLower(r.TitleContains)) {
		return false
	}
	if len(r.HostPatterns) > 0 {
		name := strings.ToLower(a.HostName)
		short, _, _ := strings.Cut(name, ".")
		if !slices.ContainsFunc(r.HostPatterns, func(p string) bool {
			ok1, _ := path.Match(p, name)
			ok2, _ := path.Match(p, short)
			return ok1 || ok2
		}) {
			return false
		}
	}
	return true
}

// DetectionRuleFilter selects rules, by name.
type DetectionRuleFilter struct {
	ID      *int64
	Enabled *bool
	Offset  int
	Limit   int
}

// DetectionRuleUpdate changes a rule; nil fields are left alone.
type DetectionRuleUpdate struct {
	Enabled *bool
}

// RuleTrigger is a rule's claim on a host for its cool-down window.
type RuleTrigger struct {
	RuleID       int64
	ConnectionID int64
	HostID       string
	At           time.Time
	// Previous is the claim this one replaced (zero when none), so that a failed start can
	// hand the host back.
	Previous time.Time
}

// DetectionRuleService stores detection rules and their per-host cool-downs. FindDetectionRuleByID
// returns ENOTFOUND for unknown ids; a rule name in use (in any case) is ECONFLICT.
type DetectionRuleService interface {
	FindDetectionRuleByID(ctx context.Context, id int64) (*DetectionRule, error)
	FindDetectionRules(ctx context.Context, f DetectionRuleFilter) ([]*DetectionRule, int, error)
	CreateDetectionRule(ctx context.Context, r *DetectionRule) error
	// UpdateDetectionRule replaces every field a caller sets of rule r.ID.
	UpdateDetectionRule(ctx context.Context, r *DetectionRule) error
	SetDetectionRuleEnabled(ctx context.Context, id int64, enabled bool) (*DetectionRule, error)
	DeleteDetectionRule(ctx context.Context, id int64) error
	// ClaimRuleTrigger atomically claims the host for the rule unless the rule claimed it after
	// at minus cooldown; ok is false while the host is cooling down. Claims are in the database,
	// so the cool-down holds across restarts and servers.
	ClaimRuleTrigger(ctx context.Context, t *RuleTrigger, cooldown time.Duration) (ok bool, err error)
	// ReleaseRuleTrigger restores the claim t replaced (or removes it), after a failed start.
	ReleaseRuleTrigger(ctx context.Context, t *RuleTrigger) error
}
