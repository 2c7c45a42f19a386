package sqldb_test

import (
	"context"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/quarry-dfir/quarry/xdr"
)

func TestAlertService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		advance := setClock(db)
		s := sqldb.NewAlertService(db)
		c := mustCreateConnection(t, sqldb.NewConnectionService(db), ctx, "tenant")
		other := mustCreateConnection(t, sqldb.NewConnectionService(db), ctx, "other")
		t0 := time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC)
		alert := func(id, host, sev string, created time.Time) xdr.Alert {
			return xdr.Alert{ID: id, HostID: "m-" + host, HostName: host + ".corp.example", Title: "Suspicious " + id, Severity: sev, Status: "New",
				Category: "Execution", Techniques: []string{"T1059.001"}, CreatedAt: created, UpdatedAt: created,
				Evidence: []xdr.Evidence{{Type: "ip", Value: "203.0.113.9"}}}
		}
		batch := []xdr.Alert{alert("a1", "ws-01", "High", t0), alert("a2", "srv-02", "low", t0.Add(time.Minute))}

		if wm, err := s.AlertWatermark(ctx, c.ID); err != nil || !wm.IsZero() {
			t.Fatalf("watermark before any poll = %v, %v; want zero", wm, err)
		}
		stored, err := s.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: c.ID, Alerts: batch, Watermark: t0.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != 2 || stored[0].ExternalID != "a1" || stored[0].Severity != "high" || !stored[0].Pending ||
			len(stored[0].Evidence) != 1 || stored[0].Techniques[0] != "T1059.001" || !stored[0].UpdatedAt.Equal(t0.Truncate(time.Microsecond)) {
			t.Fatalf("first store = %+v", stored)
		}
		// The same alerts again (a poll's overlap) change nothing and come back as nothing new.
		advance(time.Minute)
		again, err := s.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: c.ID, Alerts: batch, Watermark: t0})
		if err != nil || len(again) != 0 {
			t.Fatalf("overlapping store = %+v, %v; want none", again, err)
		}
		if wm, _ := s.AlertWatermark(ctx, c.ID); !wm.Equal(t0.Add(time.Minute).Truncate(time.Microsecond)) {
			t.Errorf("watermark = %v, want it not moved back to %v", wm, t0)
		}
		// A status change updates the row in place.
		if err := s.MarkAlertEvaluated(ctx, stored[0].ID); err != nil {
			t.Fatal(err)
		}
		changed := batch[0]
		changed.Status, changed.UpdatedAt = "Resolved", t0.Add(5*time.Minute)
		upd, err := s.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: c.ID, Alerts: []xdr.Alert{changed}, Watermark: changed.UpdatedAt})
		if err != nil || len(upd) != 1 || upd[0].ID != stored[0].ID || upd[0].Status != "Resolved" || !upd[0].Pending {
			t.Fatalf("changed store = %+v, %v", upd, err)
		}
		// The same external id on another connection is another alert.
		if o, err := s.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: other.ID, Alerts: batch[:1], Watermark: t0}); err != nil || len(o) != 1 || o[0].ID == stored[0].ID {
			t.Fatalf("other connection = %+v, %v", o, err)
		}

		// Hostile platform text is made storable instead of failing the batch (and every
		// later poll with it).
		hostile := alert("a\x00bad", "ws-\xff", "low", t0.Add(-time.Hour))
		hostile.Title = "nul\x00 and \xc3 invalid"
		if h, err := s.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: other.ID, Alerts: []xdr.Alert{hostile}, Watermark: t0}); err != nil || len(h) != 1 ||
			h[0].Title != "nul and \uFFFD invalid" || h[0].ExternalID != "abad" {
			t.Fatalf("hostile alert = %+v, %v", h, err)
		}
		if h, err := s.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: other.ID, Alerts: []xdr.Alert{hostile}, Watermark: t0}); err != nil || len(h) != 0 {
			t.Fatalf("hostile alert again = %+v, %v; want it recognised", h, err)
		}

		all, total, err := s.FindAlerts(ctx, quarry.AlertFilter{})
		if err != nil || total != 4 || len(all) != 4 {
			t.Fatalf("all = %d (%d), %v; want 4", len(all), total, err)
		}
		from, to := t0.Add(30*time.Second), t0.Add(2*time.Minute)
		tests := []struct {
			name string
			f    quarry.AlertFilter
			want int
		}{
			{"Connection", quarry.AlertFilter{ConnectionID: &c.ID}, 2},
			{"Severity", quarry.AlertFilter{Severity: "HIGH"}, 2},
			{"Status", quarry.AlertFilter{Status: "resolved"}, 1},
			{"Category", quarry.AlertFilter{Category: "execution"}, 4},
			{"HostSubstring", quarry.AlertFilter{Host: "SRV"}, 1},
			{"HostID", quarry.AlertFilter{Host: "m-ws-01"}, 2},
			{"HostLikeIsLiteral", quarry.AlertFilter{Host: "%"}, 0},
			{"Time", quarry.AlertFilter{From: &from, To: &to}, 1},
			{"Paged", quarry.AlertFilter{Limit: 2, Offset: 3}, 1},
		}
		for _, tt := range tests {
			got, _, err := s.FindAlerts(ctx, tt.f)
			if err != nil || len(got) != tt.want {
				t.Errorf("%s: FindAlerts = %d, %v; want %d", tt.name, len(got), err, tt.want)
			}
		}

		// Links to acquisitions come back with the alert.
		p := mustCreateProject(t, db, "case")
		acq := &quarry.Acquisition{ProjectID: p.ID, ConnectionID: &c.ID, HostID: "m-ws-01", HostName: "ws-01", Source: quarry.SourceXDR,
			Profile: "triage", State: quarry.AcquisitionQueued}
		if err := sqldb.NewAcquisitionService(db).CreateAcquisition(ctx, acq); err != nil {
			t.Fatal(err)
		}
		rules := sqldb.NewDetectionRuleService(db)
		rule := &quarry.DetectionRule{Name: "all", Enabled: true}
		if err := rules.CreateDetectionRule(ctx, rule); err != nil {
			t.Fatal(err)
		}
		if acted, err := s.AlertRuleActed(ctx, stored[0].ID, rule.ID); err != nil || acted {
			t.Fatalf("acted before link = %v, %v", acted, err)
		}
		l := &quarry.AlertAcquisition{AlertID: stored[0].ID, AcquisitionID: acq.ID, ProjectID: p.ID, RuleID: &rule.ID, RuleName: rule.Name}
		if err := s.LinkAlertAcquisition(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := s.LinkAlertAcquisition(ctx, l); quarry.ErrorCode(err) != quarry.ECONFLICT {
			t.Errorf("link twice = %v, want ECONFLICT", err)
		}
		if acted, err := s.AlertRuleActed(ctx, stored[0].ID, rule.ID); err != nil || !acted {
			t.Fatalf("acted after link = %v, %v", acted, err)
		}
		got, err := s.FindAlertByID(ctx, stored[0].ID)
		if err != nil || len(got.Acquisitions) != 1 || got.Acquisitions[0].AcquisitionID != acq.ID || *got.Acquisitions[0].RuleID != rule.ID {
			t.Fatalf("alert with link = %+v, %v", got, err)
		}
		// Deleting the rule keeps the link, with the rule's name.
		if err := rules.DeleteDetectionRule(ctx, rule.ID); err != nil {
			t.Fatal(err)
		}
		got, err = s.FindAlertByID(ctx, stored[0].ID)
		if err != nil || len(got.Acquisitions) != 1 || got.Acquisitions[0].RuleID != nil || got.Acquisitions[0].RuleName != "all" {
			t.Fatalf("link after rule deleted = %+v, %v", got.Acquisitions, err)
		}
		if _, err := s.FindAlertByID(ctx, 999999); quarry.ErrorCode(err) != quarry.ENOTFOUND {
			t.Errorf("find missing = %v, want ENOTFOUND", err)
		}
	})
}

func TestDetectionRuleService(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := sqldb.NewDetectionRuleService(db)
		p := mustCreateProject(t, db, "case")
		r := &quarry.DetectionRule{Name: " High on servers ", Enabled: true, MinSeverity: "High", Categories: []string{"Execution", "Execution"},
			Techniques: []string{"t1059"}, HostPatterns: []string{"SRV-*"}, ProjectID: &p.ID, CooldownSecs: 3600, CommentOnAlert: true}
		if err := s.CreateDetectionRule(ctx, r); err != nil {
			t.Fatal(err)
		}
		if r.Name != "High on servers" || r.MinSeverity != "high" || len(r.Categories) != 1 || r.Techniques[0] != "T1059" ||
			r.HostPatterns[0] != "srv-*" || r.Profile != "triage" || r.Cooldown != time.Hour {
			t.Errorf("created = %+v", r)
		}
		if err := s.CreateDetectionRule(ctx, &quarry.DetectionRule{Name: "HIGH ON SERVERS"}); quarry.ErrorCode(err) != quarry.ECONFLICT {
			t.Errorf("same name = %v, want ECONFLICT", err)
		}
		for name, bad := range map[string]*quarry.DetectionRule{
			"NoName":       {},
			"BadSeverity":  {Name: "x", MinSeverity: "severe"},
			"BadTechnique": {Name: "x", Techniques: []string{"1059"}},
			"BadGlob":      {Name: "x", HostPatterns: []string{"srv-["}},
			"NoProject":    {Name: "x", ProjectID: new(int64(999999))},
		} {
			if err := s.CreateDetectionRule(ctx, bad); quarry.ErrorCode(err) != quarry.EINVALID {
				t.Errorf("%s: create = %v, want EINVALID", name, err)
			}
		}
		got, err := s.FindDetectionRuleByID(ctx, r.ID)
		if err != nil || got.Name != r.Name || *got.ProjectID != p.ID || !got.CommentOnAlert || got.Cooldown != time.Hour || !got.CreatedAt.Equal(r.CreatedAt) {
			t.Fatalf("find = %+v, %v", got, err)
		}
		off, err := s.SetDetectionRuleEnabled(ctx, r.ID, false)
		if err != nil || off.Enabled {
			t.Fatalf("disable = %+v, %v", off, err)
		}
		enabled := true
		if list, total, err := s.FindDetectionRules(ctx, quarry.DetectionRuleFilter{Enabled: &enabled}); err != nil || total != 0 || len(list) != 0 {
			t.Errorf("enabled rules = %d, %v; want none", total, err)
		}
		got.TitleContains, got.ProjectID = "mimikatz", nil
		if err := s.UpdateDetectionRule(ctx, got); err != nil {
			t.Fatal(err)
		}
		if again, _ := s.FindDetectionRuleByID(ctx, r.ID); again.TitleContains != "mimikatz" || again.ProjectID != nil {
			t.Errorf("updated = %+v", again)
		}

		// Cool-down: one claim per host per window, kept in the database.
		at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
		claim := func(host string, at time.Time) (*quarry.RuleTrigger, bool) {
			t.Helper()
			tr := &quarry.RuleTrigger{RuleID: r.ID, ConnectionID: 1, HostID: host, At: at}
			ok, err := s.ClaimRuleTrigger(ctx, tr, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return tr, ok
		}
		if _, ok := claim("h1", at); !ok {
			t.Fatal("first claim refused")
		}
		if _, ok := claim("h1", at.Add(59*time.Minute)); ok {
			t.Error("claim within the cool-down accepted")
		}
		if _, ok := claim("h2", at.Add(time.Minute)); !ok {
			t.Error("claim of another host refused")
		}
		tr, ok := claim("h1", at.Add(time.Hour))
		if !ok || !tr.Previous.Equal(at) {
			t.Fatalf("claim after the cool-down = %v (previous %v)", ok, tr.Previous)
		}
		// A failed start hands the host back: the previous claim is restored.
		if err := s.ReleaseRuleTrigger(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if _, ok := claim("h1", at.Add(time.Hour+time.Second)); !ok {
			t.Error("claim after release refused")
		}
		tr2, _ := claim("h3", at)
		if err := s.ReleaseRuleTrigger(ctx, tr2); err != nil {
			t.Fatal(err)
		}
		if _, ok := claim("h3", at.Add(time.Second)); !ok {
			t.Error("claim after releasing a first claim refused")
		}

		if err := s.DeleteDetectionRule(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteDetectionRule(ctx, r.ID); quarry.ErrorCode(err) != quarry.ENOTFOUND {
			t.Errorf("delete again = %v, want ENOTFOUND", err)
		}
	})
}
