package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/quarry-dfir/quarry"
)

// AuditService appends to and reads the audit log. The database refuses updates and deletes
// of entries (triggers), so the log stays append-only even for code that bypasses this type.
type AuditService struct {
	db *DB
}

var _ quarry.AuditService = (*AuditService)(nil)

// NewAuditService returns an AuditService on db.
func NewAuditService(db *DB) *AuditService { return &AuditService{db: db} }

const auditColumns = "id, at, actor_id, actor, action, target_type, target_id, ip, outcome, details"

// RecordAudit appends e, setting its ID and, if zero, its time (now), actor ("system") and
// outcome (success). Action is required.
func (s *AuditService) RecordAudit(ctx context.Context, e *quarry.AuditEntry) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := recordAudit(ctx, tx, e); err != nil {
		return err
	}
	return tx.Commit()
}

// FindAuditEntries returns the entries matching filter, newest first, and how many match in
// all. From is inclusive, To exclusive.
func (s *AuditService) FindAuditEntries(ctx context.Context, filter quarry.AuditFilter) ([]*quarry.AuditEntry, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	return findAuditEntries(ctx, tx, filter)
}

func recordAudit(ctx context.Context, tx *Tx, e *quarry.AuditEntry) error {
	if e.Action == "" {
		return quarry.FieldError("action", "Audit entries need an action.")
	}
	if e.At.IsZero() {
		e.At = tx.now
	}
	e.At = storedTime(e.At)
	if e.Actor == "" {
		e.Actor = "system"
	}
	if e.Outcome == "" {
		e.Outcome = quarry.OutcomeSuccess
	}
	var details *string
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return fmt.Errorf("record audit: encode details: %w", err)
		}
		d := string(b)
		details = &d
	}
	err := tx.queryRow(ctx, `INSERT INTO audit_log (at, actor_id, actor, action, target_type, target_id, ip, outcome, details)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		e.At, e.ActorID, e.Actor, e.Action, e.TargetType, e.TargetID, e.IP, e.Outcome, details).Scan(&e.ID)
	return translate(err, "record audit", "", "")
}

func findAuditEntries(ctx context.Context, tx *Tx, filter quarry.AuditFilter) ([]*quarry.AuditEntry, int, error) {
	var w where
	if filter.Actor != "" {
		w.add("actor = ?", filter.Actor)
	}
	if strings.HasSuffix(filter.Action, ".") {
		w.add(`action LIKE ? ESCAPE '\'`, likeEscape(filter.Action)+"%")
	} else if filter.Action != "" {
		w.add("action = ?", filter.Action)
	}
	if filter.TargetType != "" {
		w.add("target_type = ?", filter.TargetType)
	}
	if filter.TargetID != "" {
		w.add("target_id = ?", filter.TargetID)
	}
	if filter.From != nil {
		w.add("at >= ?", *filter.From)
	}
	if filter.To != nil {
		w.add("at < ?", *filter.To)
	}
	var entries []*quarry.AuditEntry
	total, err := findPage(ctx, tx, "SELECT "+auditColumns, "FROM audit_log", &w, "at DESC, id DESC", filter.Offset, filter.Limit,
		func(rows *sql.Rows) error {
			var e quarry.AuditEntry
			var actorID sql.NullInt64
			var details sql.NullString
			err := rows.Scan(&e.ID, timeCol(&e.At), &actorID, &e.Actor, &e.Action, &e.TargetType, &e.TargetID, &e.IP, &e.Outcome, &details)
			if err != nil {
				return err
			}
			if actorID.Valid {
				e.ActorID = &actorID.Int64
			}
			if details.Valid {
				if err := json.Unmarshal([]byte(details.String), &e.Details); err != nil {
					return fmt.Errorf("decode details of audit entry %d: %w", e.ID, err)
				}
			}
			entries = append(entries, &e)
			return nil
		})
	if err != nil {
		return nil, 0, translate(err, "find audit entries", "", "")
	}
	return entries, total, nil
}
