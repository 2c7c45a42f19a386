package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/xdr"
)

// AlertService stores XDR alerts and their poll watermarks.
type AlertService struct {
	db *DB
}

var _ quarry.AlertService = (*AlertService)(nil)

// NewAlertService returns an AlertService on db.
func NewAlertService(db *DB) *AlertService { return &AlertService{db: db} }

const alertColumns = "id, connection_id, external_id, host_id, host_name, title, description, severity, status, category, techniques, evidence, created_at, updated_at, first_seen_at, last_seen_at, pending"

func scanAlert(s interface{ Scan(...any) error }) (*quarry.Alert, error) {
	var a quarry.Alert
	var techniques, evidence string
	err := s.Scan(&a.ID, &a.ConnectionID, &a.ExternalID, &a.HostID, &a.HostName, &a.Title, &a.Description, &a.Severity, &a.Status, &a.Category,
		&techniques, &evidence, timeCol(&a.CreatedAt), timeCol(&a.UpdatedAt), timeCol(&a.FirstSeenAt), timeCol(&a.LastSeenAt), &a.Pending)
	if err != nil {
		return nil, err
	}
	a.Techniques, a.Evidence = []string{}, []xdr.Evidence{}
	// Written by this file from typed values; a bad value would be a bug, not user input.
	_ = json.Unmarshal([]byte(techniques), &a.Techniques)
	_ = json.Unmarshal([]byte(evidence), &a.Evidence)
	a.Acquisitions = []*quarry.AlertAcquisition{}
	return &a, nil
}

// cleanText makes platform text storable in both dialects: valid UTF-8, no NUL, at most max
// runes.
func cleanText(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max])
	}
	return s
}

func jsonText(v any) string {
	b, _ := json.Marshal(v) // slices of strings and of plain structs always marshal
	return string(b)
}

// StoreAlerts upserts the batch's alerts by (connection, external id) and stores the watermark
// in the same transaction. An alert is written only when it is new or changed (another
// UpdatedAt or status), so the overlap of successive polls neither duplicates nor rewrites.
func (s *AlertService) StoreAlerts(ctx context.Context, b quarry.AlertBatch) ([]*quarry.Alert, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var out []*quarry.Alert
	for i := range b.Alerts {
		x := &b.Alerts[i]
		if x.ID == "" {
			continue // nothing to key it by; the platform never sends one
		}
		// The platform's text is stored as it came, made storable: a NUL byte or invalid
		// UTF-8 (which PostgreSQL refuses) must not stop every later poll of the connection.
		y := *x
		y.ID, y.HostID, y.HostName = cleanText(x.ID, 500), cleanText(x.HostID, 500), cleanText(x.HostName, 500)
		y.Title, y.Description = cleanText(x.Title, 2000), cleanText(x.Description, 20000)
		y.Severity, y.Status, y.Category = cleanText(x.Severity, 100), cleanText(x.Status, 100), cleanText(x.Category, 200)
		x = &y
		techniques := x.Techniques
		if techniques == nil {
			techniques = []string{}
		}
		evidence := x.Evidence
		if evidence == nil {
			evidence = []xdr.Evidence{}
		}
		var id int64
		var updatedAt time.Time
		var status string
		err := tx.queryRow(ctx, "SELECT id, updated_at, status FROM alerts WHERE connection_id = ? AND external_id = ?", b.ConnectionID, x.ID).
			Scan(&id, timeCol(&updatedAt), &status)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			err = tx.queryRow(ctx, `INSERT INTO alerts (connection_id, external_id, host_id, host_name, title, description, severity, status, category,
				techniques, evidence, created_at, updated_at, first_seen_at, last_seen_at, pending)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				b.ConnectionID, x.ID, x.HostID, x.HostName, x.Title, x.Description, strings.ToLower(x.Severity), x.Status, x.Category,
				jsonText(techniques), jsonText(evidence), x.CreatedAt, x.UpdatedAt, tx.now, tx.now, true).Scan(&id)
		case err != nil:
		case updatedAt.Equal(storedTime(x.UpdatedAt)) && status == x.Status:
			continue
		default:
			_, err = tx.exec(ctx, `UPDATE alerts SET host_id = ?, host_name = ?, title = ?, description = ?, severity = ?, status = ?, category = ?,
				techniques = ?, evidence = ?, created_at = ?, updated_at = ?, last_seen_at = ?, pending = ? WHERE id = ?`,
				x.HostID, x.HostName, x.Title, x.Description, strings.ToLower(x.Severity), x.Status, x.Category,
				jsonText(techniques), jsonText(evidence), x.CreatedAt, x.UpdatedAt, tx.now, true, id)
		}
		if err != nil {
			return nil, translate(err, "store alerts", "", "")
		}
		a, err := scanAlert(tx.queryRow(ctx, "SELECT "+alertColumns+" FROM alerts WHERE id = ?", id))
		if err != nil {
			return nil, translate(err, "store alerts", "", "")
		}
		out = append(out, a)
	}
	if err := storeWatermark(ctx, tx, b.ConnectionID, b.Watermark, b.PolledAt); err != nil {
		return nil, err
	}
	if err := s.attach(ctx, tx, out); err != nil {
		return nil, err
	}
	return out, tx.Commit()
}

// storeWatermark keeps the later of the stored and the given watermark: a poll that overlapped
// never moves it back.
func storeWatermark(ctx context.Context, tx *Tx, connectionID int64, wm, polledAt time.Time) error {
	if polledAt.IsZero() {
		polledAt = tx.now
	}
	var old time.Time
	err := tx.queryRow(ctx, "SELECT watermark FROM alert_watermarks WHERE connection_id = ?", connectionID).Scan(timeCol(&old))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.exec(ctx, "INSERT INTO alert_watermarks (connection_id, watermark, polled_at) VALUES (?, ?, ?)", connectionID, wm, polledAt)
	case err == nil:
		if old.After(wm) {
			wm = old
		}
		_, err = tx.exec(ctx, "UPDATE alert_watermarks SET watermark = ?, polled_at = ? WHERE connection_id = ?", wm, polledAt, connectionID)
	}
	return translate(err, "store alert watermark", "", "")
}

// AlertWatermark returns the connection's watermark, or zero before its first poll.
func (s *AlertService) AlertWatermark(ctx context.Context, connectionID int64) (time.Time, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return time.Time{}, err
	}
	defer tx.Rollback()
	var wm time.Time
	err = tx.queryRow(ctx, "SELECT watermark FROM alert_watermarks WHERE connection_id = ?", connectionID).Scan(timeCol(&wm))
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	return wm, translate(err, "find alert watermark", "", "")
}

// FindAlertByID returns one alert with its acquisitions, or ENOTFOUND.
func (s *AlertService) FindAlertByID(ctx context.Context, id int64) (*quarry.Alert, error) {
	as, _, err := s.FindAlerts(ctx, quarry.AlertFilter{ID: &id, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(as) == 0 {
		return nil, quarry.Errorf(quarry.ENOTFOUND, "Alert not found.")
	}
	return as[0], nil
}

// FindAlerts returns a page of alerts, newest first by platform creation time, with their
// acquisitions.
func (s *AlertService) FindAlerts(ctx context.Context, f quarry.AlertFilter) ([]*quarry.Alert, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var w where
	if f.ID != nil {
		w.add("id = ?", *f.ID)
	}
	if f.ConnectionID != nil {
		w.add("connection_id = ?", *f.ConnectionID)
	}
	if f.Severity != "" {
		w.add("severity = ?", strings.ToLower(f.Severity))
	}
	if f.Status != "" {
		w.add("LOWER(status) = ?", strings.ToLower(f.Status))
	}
	if f.Category != "" {
		w.add("LOWER(category) = ?", strings.ToLower(f.Category))
	}
	if f.Host != "" {
		w.add(`(LOWER(host_name) LIKE ? ESCAPE '\' OR host_id = ?)`, "%"+likeEscape(strings.ToLower(f.Host))+"%", f.Host)
	}
	if f.From != nil {
		w.add("created_at >= ?", *f.From)
	}
	if f.To != nil {
		w.add("created_at < ?", *f.To)
	}
	if f.Pending != nil {
		w.add("pending = ?", *f.Pending)
	}
	out := []*quarry.Alert{}
	total, err := findPage(ctx, tx, "SELECT "+alertColumns, "FROM alerts", &w, "created_at DESC, id DESC", f.Offset, f.Limit, func(rows *sql.Rows) error {
		a, err := scanAlert(rows)
		if err == nil {
			out = append(out, a)
		}
		return err
	})
	if err != nil {
		return nil, 0, translate(err, "find alerts", "", "")
	}
	if err := s.attach(ctx, tx, out); err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// attach loads the acquisitions of alerts, in one query.
func (s *AlertService) attach(ctx context.Context, tx *Tx, alerts []*quarry.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	byID := map[int64]*quarry.Alert{}
	args := make([]any, 0, len(alerts))
	for _, a := range alerts {
		byID[a.ID] = a
		args = append(args, a.ID)
	}
	rows, err := tx.query(ctx, "SELECT alert_id, acquisition_id, project_id, rule_id, rule_name, created_at FROM alert_acquisitions WHERE alert_id IN (?"+
		strings.Repeat(", ?", len(args)-1)+") ORDER BY created_at, acquisition_id", args...)
	if err != nil {
		return translate(err, "find alert acquisitions", "", "")
	}
	defer rows.Close()
	for rows.Next() {
		var l quarry.AlertAcquisition
		var ruleID sql.NullInt64
		if err := rows.Scan(&l.AlertID, &l.AcquisitionID, &l.ProjectID, &ruleID, &l.RuleName, timeCol(&l.CreatedAt)); err != nil {
			return translate(err, "find alert acquisitions", "", "")
		}
		if ruleID.Valid {
			l.RuleID = &ruleID.Int64
		}
		if a := byID[l.AlertID]; a != nil {
			a.Acquisitions = append(a.Acquisitions, &l)
		}
	}
	return translate(rows.Err(), "find alert acquisitions", "", "")
}

// MarkAlertEvaluated clears the alert's Pending flag.
func (s *AlertService) MarkAlertEvaluated(ctx context.Context, id int64) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, "UPDATE alerts SET pending = ? WHERE id = ?", false, id); err != nil {
		return translate(err, "mark alert evaluated", "", "")
	}
	return tx.Commit()
}

// LinkAlertAcquisition records l, stamping its CreatedAt.
func (s *AlertService) LinkAlertAcquisition(ctx context.Context, l *quarry.AlertAcquisition) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	l.CreatedAt = tx.now
	var ruleID sql.NullInt64
	if l.RuleID != nil {
		ruleID = sql.NullInt64{Int64: *l.RuleID, Valid: true}
	}
	_, err = tx.exec(ctx, "INSERT INTO alert_acquisitions (alert_id, acquisition_id, project_id, rule_id, rule_name, created_at) VALUES (?, ?, ?, ?, ?, ?)",
		l.AlertID, l.AcquisitionID, l.ProjectID, ruleID, l.RuleName, l.CreatedAt)
	if err := translate(err, "link alert to acquisition", "", "The alert is already linked to that acquisition."); err != nil {
		return err
	}
	return tx.Commit()
}

// AlertRuleActed reports whether the rule already started an acquisition for the alert.
func (s *AlertService) AlertRuleActed(ctx context.Context, alertID, ruleID int64) (bool, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	n, err := tx.count(ctx, "SELECT COUNT(*) FROM alert_acquisitions WHERE alert_id = ? AND rule_id = ?", alertID, ruleID)
	return n > 0, translate(err, "find alert acquisitions", "", "")
}

// DetectionRuleService stores detection rules and their cool-downs.
type DetectionRuleService struct {
	db *DB
}

var _ quarry.DetectionRuleService = (*DetectionRuleService)(nil)

// NewDetectionRuleService returns a DetectionRuleService on db.
func NewDetectionRuleService(db *DB) *DetectionRuleService { return &DetectionRuleService{db: db} }

const ruleColumns = "id, name, enabled, min_severity, categories, techniques, title_contains, host_patterns, connection_id, project_id, profile, cooldown_seconds, comment_on_alert, created_by, created_at, updated_at"

func scanRule(s interface{ Scan(...any) error }) (*quarry.DetectionRule, error) {
	var r quarry.DetectionRule
	var categories, techniques, hosts string
	var connectionID, projectID, createdBy sql.NullInt64
	err := s.Scan(&r.ID, &r.Name, &r.Enabled, &r.MinSeverity, &categories, &techniques, &r.TitleContains, &hosts, &connectionID, &projectID,
		&r.Profile, &r.CooldownSecs, &r.CommentOnAlert, &createdBy, timeCol(&r.CreatedAt), timeCol(&r.UpdatedAt))
	if err != nil {
		return nil, err
	}
	r.Categories, r.Techniques, r.HostPatterns = []string{}, []string{}, []string{}
	_ = json.Unmarshal([]byte(categories), &r.Categories)
	_ = json.Unmarshal([]byte(techniques), &r.Techniques)
	_ = json.Unmarshal([]byte(hosts), &r.HostPatterns)
	if connectionID.Valid {
		r.ConnectionID = &connectionID.Int64
	}
	if projectID.Valid {
		r.ProjectID = &projectID.Int64
	}
	r.CreatedBy = createdBy.Int64
	r.Cooldown = time.Duration(r.CooldownSecs) * time.Second
	return &r, nil
}

func nullID(p *int64) sql.NullInt64 {
	if p == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: *p, Valid: true}
}

// FindDetectionRuleByID returns the rule with id, or ENOTFOUND.
func (s *DetectionRuleService) FindDetectionRuleByID(ctx context.Context, id int64) (*quarry.DetectionRule, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	r, err := scanRule(tx.queryRow(ctx, "SELECT "+ruleColumns+" FROM detection_rules WHERE id = ?", id))
	return r, translate(err, "find detection rule", "Detection rule not found.", "")
}

// FindDetectionRules returns a page of rules by name, and the total.
func (s *DetectionRuleService) FindDetectionRules(ctx context.Context, f quarry.DetectionRuleFilter) ([]*quarry.DetectionRule, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var w where
	if f.ID != nil {
		w.add("id = ?", *f.ID)
	}
	if f.Enabled != nil {
		w.add("enabled = ?", *f.Enabled)
	}
	out := []*quarry.DetectionRule{}
	total, err := findPage(ctx, tx, "SELECT "+ruleColumns, "FROM detection_rules", &w, "name_key, id", f.Offset, f.Limit, func(rows *sql.Rows) error {
		r, err := scanRule(rows)
		if err == nil {
			out = append(out, r)
		}
		return err
	})
	return out, total, translate(err, "find detection rules", "", "")
}

// CreateDetectionRule validates and stores r, setting its ID, times and CreatedBy (from the
// actor in ctx when zero).
func (s *DetectionRuleService) CreateDetectionRule(ctx context.Context, r *quarry.DetectionRule) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.CreatedBy == 0 {
		r.CreatedBy = quarry.UserIDFromContext(ctx)
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	r.CreatedAt, r.UpdatedAt = tx.now, tx.now
	err = tx.queryRow(ctx, `INSERT INTO detection_rules (name, name_key, enabled, min_severity, categories, techniques, title_contains, host_patterns,
		connection_id, project_id, profile, cooldown_seconds, comment_on_alert, created_by, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		r.Name, nameKey(r.Name), r.Enabled, r.MinSeverity, jsonText(r.Categories), jsonText(r.Techniques), r.TitleContains, jsonText(r.HostPatterns),
		nullID(r.ConnectionID), nullID(r.ProjectID), r.Profile, r.CooldownSecs, r.CommentOnAlert, nullID(nonZero(r.CreatedBy)), r.CreatedAt, r.UpdatedAt).Scan(&r.ID)
	if err := translate(err, "create detection rule", "", "A detection rule named "+r.Name+" already exists."); err != nil {
		return err
	}
	return tx.Commit()
}

func nonZero(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}

// UpdateDetectionRule replaces the settings of rule r.ID; its creator and creation time stay.
func (s *DetectionRuleService) UpdateDetectionRule(ctx context.Context, r *quarry.DetectionRule) error {
	if err := r.Validate(); err != nil {
		return err
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	r.UpdatedAt = tx.now
	var createdBy sql.NullInt64
	err = tx.queryRow(ctx, `UPDATE detection_rules SET name = ?, name_key = ?, enabled = ?, min_severity = ?, categories = ?, techniques = ?,
		title_contains = ?, host_patterns = ?, connection_id = ?, project_id = ?, profile = ?, cooldown_seconds = ?, comment_on_alert = ?, updated_at = ?
		WHERE id = ? RETURNING created_by, created_at`,
		r.Name, nameKey(r.Name), r.Enabled, r.MinSeverity, jsonText(r.Categories), jsonText(r.Techniques), r.TitleContains, jsonText(r.HostPatterns),
		nullID(r.ConnectionID), nullID(r.ProjectID), r.Profile, r.CooldownSecs, r.CommentOnAlert, r.UpdatedAt, r.ID).Scan(&createdBy, timeCol(&r.CreatedAt))
	if err := translate(err, "update detection rule", "Detection rule not found.", "A detection rule named "+r.Name+" already exists."); err != nil {
		return err
	}
	r.CreatedBy = createdBy.Int64
	return tx.Commit()
}

// SetDetectionRuleEnabled turns rule id on or off and returns it.
func (s *DetectionRuleService) SetDetectionRuleEnabled(ctx context.Context, id int64, enabled bool) (*quarry.DetectionRule, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	r, err := scanRule(tx.queryRow(ctx, "UPDATE detection_rules SET enabled = ?, updated_at = ? WHERE id = ? RETURNING "+ruleColumns, enabled, tx.now, id))
	if err := translate(err, "update detection rule", "Detection rule not found.", ""); err != nil {
		return nil, err
	}
	return r, tx.Commit()
}

// DeleteDetectionRule removes rule id and its cool-downs; the links of the acquisitions it
// started stay, with its name. ENOTFOUND when there is no such rule.
func (s *DetectionRuleService) DeleteDetectionRule(ctx context.Context, id int64) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Explicitly, not only by the foreign keys' actions: SQLite enforces those only when the
	// connection enabled them.
	if _, err := tx.exec(ctx, "DELETE FROM detection_rule_triggers WHERE rule_id = ?", id); err != nil {
		return translate(err, "delete detection rule", "", "")
	}
	if _, err := tx.exec(ctx, "UPDATE alert_acquisitions SET rule_id = NULL WHERE rule_id = ?", id); err != nil {
		return translate(err, "delete detection rule", "", "")
	}
	res, err := tx.exec(ctx, "DELETE FROM detection_rules WHERE id = ?", id)
	if err != nil {
		return translate(err, "delete detection rule", "", "")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return quarry.Errorf(quarry.ENOTFOUND, "Detection rule not found.")
	}
	return tx.Commit()
}

// ClaimRuleTrigger claims t.HostID for t.RuleID at t.At unless the rule claimed it less than
// cooldown before. One statement (an upsert whose update is conditional) makes the check and
// the claim atomic, also across servers on PostgreSQL.
func (s *DetectionRuleService) ClaimRuleTrigger(ctx context.Context, t *quarry.RuleTrigger, cooldown time.Duration) (bool, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	t.Previous = time.Time{}
	err = tx.queryRow(ctx, "SELECT triggered_at FROM detection_rule_triggers WHERE rule_id = ? AND connection_id = ? AND host_id = ?",
		t.RuleID, t.ConnectionID, t.HostID).Scan(timeCol(&t.Previous))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, translate(err, "claim rule trigger", "", "")
	}
	var got int64
	err = tx.queryRow(ctx, `INSERT INTO detection_rule_triggers (rule_id, connection_id, host_id, triggered_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (rule_id, connection_id, host_id) DO UPDATE SET triggered_at = excluded.triggered_at
		WHERE detection_rule_triggers.triggered_at <= ? RETURNING rule_id`,
		t.RuleID, t.ConnectionID, t.HostID, t.At, t.At.Add(-cooldown)).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, translate(err, "claim rule trigger", "", "")
	}
	return true, tx.Commit()
}

// ReleaseRuleTrigger puts back the claim t replaced, or removes t's when it replaced none.
func (s *DetectionRuleService) ReleaseRuleTrigger(ctx context.Context, t *quarry.RuleTrigger) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if t.Previous.IsZero() {
		_, err = tx.exec(ctx, "DELETE FROM detection_rule_triggers WHERE rule_id = ? AND connection_id = ? AND host_id = ? AND triggered_at = ?",
			t.RuleID, t.ConnectionID, t.HostID, t.At)
	} else {
		_, err = tx.exec(ctx, "UPDATE detection_rule_triggers SET triggered_at = ? WHERE rule_id = ? AND connection_id = ? AND host_id = ? AND triggered_at = ?",
			t.Previous, t.RuleID, t.ConnectionID, t.HostID, t.At)
	}
	if err != nil {
		return translate(err, "release rule trigger", "", "")
	}
	return tx.Commit()
}
