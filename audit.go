package quarry

import (
	"context"
	"time"
)

// AuditEntry records one state-changing action. The log is append-only: stores refuse updates
// and deletes of entries (the SQL stores enforce it with triggers, not only in Go).
type AuditEntry struct {
	ID         int64          `json:"id"`
	At         time.Time      `json:"at"`
	ActorID    *int64         `json:"actor_id,omitempty"`
	Actor      string         `json:"actor"`       // username, or "system"
	Action     string         `json:"action"`      // dotted verb, e.g. "project.create"
	TargetType string         `json:"target_type"` // e.g. "project"
	TargetID   string         `json:"target_id"`
	IP         string         `json:"ip"`
	Outcome    string         `json:"outcome"` // "success" or "failure"
	Details    map[string]any `json:"details,omitempty"`
}

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// AuditFilter selects audit entries, newest first; zero fields match everything.
type AuditFilter struct {
	Actor      string
	Action     string // exact, or a prefix ending in "." (e.g. "user.")
	TargetType string
	TargetID   string
	From, To   *time.Time
	Offset     int
	Limit      int
}

// AuditService appends to and reads the audit log.
type AuditService interface {
	RecordAudit(ctx context.Context, e *AuditEntry) error
	FindAuditEntries(ctx context.Context, filter AuditFilter) ([]*AuditEntry, int, error)
}

// NewAuditEntry fills an entry's actor fields from the actor in ctx.
func NewAuditEntry(ctx context.Context, action, targetType, targetID string) *AuditEntry {
	e := &AuditEntry{Action: action, TargetType: targetType, TargetID: targetID, Outcome: OutcomeSuccess, Actor: "system"}
	if a := ActorFromContext(ctx); a != nil {
		e.Actor = a.Name()
		e.IP = a.IP
		if a.User != nil {
			id := a.User.ID
			e.ActorID = &id
		}
	}
	return e
}
