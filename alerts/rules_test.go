package alerts_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/alerts"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/quarry-dfir/quarry/xdr"
)

func TestRuleMatches(t *testing.T) {
	a := &quarry.Alert{ConnectionID: 1, HostName: "SRV-DB01.corp.example", Title: "'Mimikatz' credential theft tool detected",
		Severity: "high", Category: "Malware", Techniques: []string{"T1003.001"}}
	tests := []struct {
		name string
		rule quarry.DetectionRule
		want bool
	}{
		{"Empty", quarry.DetectionRule{}, true},
		{"MinSeverityBelow", quarry.DetectionRule{MinSeverity: "medium"}, true},
		{"MinSeverityEqual", quarry.DetectionRule{MinSeverity: "high"}, true},
		{"CategoryAnyCase", quarry.DetectionRule{Categories: []string{"persistence", "malware"}}, true},
		{"CategoryOther", quarry.DetectionRule{Categories: []string{"Execution"}}, false},
		{"ParentTechnique", quarry.DetectionRule{Techniques: []string{"T1003"}}, true},
		{"ExactTechnique", quarry.DetectionRule{Techniques: []string{"T1003.001"}}, true},
		{"OtherSubTechnique", quarry.DetectionRule{Techniques: []string{"T1003.002"}}, false},
		{"OtherTechnique", quarry.DetectionRule{Techniques: []string{"T1059"}}, false},
		{"Title", quarry.DetectionRule{TitleContains: "MIMIKATZ"}, true},
		{"TitleOther", quarry.DetectionRule{TitleContains: "powershell"}, false},
		{"HostGlobFull", quarry.DetectionRule{HostPatterns: []string{"*.corp.example"}}, true},
		{"HostGlobShort", quarry.DetectionRule{HostPatterns: []string{"srv-*"}}, true},
		{"HostGlobOther", quarry.DetectionRule{HostPatterns: []string{"ws-*"}}, false},
		{"Connection", quarry.DetectionRule{ConnectionID: ptr(int64(2))}, false},
		{"AllMustMatch", quarry.DetectionRule{MinSeverity: "high", Categories: []string{"Execution"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rule
			r.Name = "r"
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := r.Matches(a); got != tt.want {
				t.Errorf("Matches(%+v) = %v, want %v", r, got, tt.want)
			}
		})
	}
	low := *a
	low.Severity = "medium"
	if r := (quarry.DetectionRule{MinSeverity: "high"}); r.Matches(&low) {
		t.Error("min severity high matched a medium alert")
	}
}

// TestRules runs the engine over alerts a stub platform returns, on a real database: matching,
// de-duplication per host and rule within the cool-down (within one poll, across polls and
// across a restart), alert updates that start nothing, a new project per alert, a failed start
// that hands the host back, pending alerts a crash left unevaluated, audit and comments.
func TestRules(t *testing.T) {
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := t.Context()
		alertSvc, ruleSvc := sqldb.NewAlertService(db), sqldb.NewDetectionRuleService(db)
		conns := sqldb.NewConnectionService(db)
		conn := &quarry.Connection{Provider: "defender", Name: "tenant", TenantID: "t", ClientID: "c", Cloud: "custom",
			APIURL: "https://127.0.0.1:1", AuthorityURL: "https://127.0.0.1:1/", SecretSealed: "unused"}
		if err := conns.CreateConnection(ctx, conn); err != nil {
			t.Fatal(err)
		}
		p := mustProject(t, db, "servers")
		clock := &testClock{now: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)}
		acq := &recordingAcquirer{acqs: sqldb.NewAcquisitionService(db)}
		client := &recordingClient{}
		audit := sqldb.NewAuditService(db)
		cfg := alerts.Config{Alerts: alertSvc, Rules: ruleSvc, Connections: conns, Projects: sqldb.NewProjectService(db),
			Audit: audit, Acquirer: acq, PublicURL: "https://quarry.example/", Now: clock.Now,
			Client: func(context.Context, *quarry.Connection) (xdr.Client, error) { return client, nil }}
		svc, err := alerts.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rules := []*quarry.DetectionRule{
			{Name: "servers", Enabled: true, MinSeverity: "high", HostPatterns: []string{"srv-*"}, ProjectID: &p.ID, Cooldown: time.Hour, CommentOnAlert: true},
			{Name: "credential theft", Enabled: true, Techniques: []string{"T1003"}, Cooldown: time.Hour},
			{Name: "everything, off", Enabled: false},
		}
		for _, r := range rules {
			if err := ruleSvc.CreateDetectionRule(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		alert := func(host, sev string, techniques ...string) xdr.Alert {
			n++
			now := clock.Now()
			return xdr.Alert{ID: "da" + strconv.Itoa(n), HostID: "m-" + host, HostName: host + ".corp.example", Title: "Alert " + strconv.Itoa(n),
				Severity: sev, Status: "New", Category: "Execution", Techniques: techniques, CreatedAt: now, UpdatedAt: now}
		}
		var platform []xdr.Alert
		poll := func(add ...xdr.Alert) *alerts.PollResult {
			t.Helper()
			platform = append(platform, add...)
			client.SetAlerts(platform)
			clock.Advance(svc.PollEvery())
			res, err := svc.Poll(ctx, conn)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		wantCalls := func(step string, hosts ...string) {
			t.Helper()
			var got []string
			for _, c := range acq.Calls() {
				got = append(got, strings.Join(c.hosts, ","))
			}
			if strings.Join(got, " ") != strings.Join(hosts, " ") {
				t.Fatalf("%s: Acquire calls for hosts %v, want %v", step, got, hosts)
			}
		}

		old := alert("srv-03", "high")
		old.CreatedAt, old.UpdatedAt = old.CreatedAt.Add(-48*time.Hour), old.UpdatedAt.Add(-time.Hour)
		a1, a2, a3, a4 := alert("srv-01", "high", "T1059.001"), alert("srv-01", "high"), alert("ws-01", "medium", "T1003.001"), alert("srv-02", "low")
		res := poll(a1, a2, a3, a4, old)
		if res.Fetched != 5 || len(res.Stored) != 5 || len(res.Started) != 2 {
			t.Fatalf("first poll: fetched %d, stored %d, started %d; want 5, 5, 2", res.Fetched, len(res.Stored), len(res.Started))
		}
		// srv-01 once although two alerts matched; ws-01 by the second rule; srv-02 (low) and
		// the two-day-old alert not at all.
		wantCalls("first poll", "m-srv-01", "m-ws-01")
		if c := acq.Calls()[0]; c.projectID != p.ID || c.profile != "triage" || c.force || c.connectionID != conn.ID {
			t.Errorf("first call = %+v", c)
		}
		newProject := acq.Calls()[1].projectID
		if np, err := sqldb.NewProjectService(db).FindProjectByID(ctx, newProject); err != nil || newProject == p.ID || !strings.Contains(np.Name, "ws-01") {
			t.Errorf("new project = %+v, %v", np, err)
		}
		stored, _, err := alertSvc.FindAlerts(ctx, quarry.AlertFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		linked := map[string]int{}
		for _, a := range stored {
			linked[a.ExternalID] = len(a.Acquisitions)
			if a.Pending {
				t.Errorf("alert %s still pending after the poll", a.ExternalID)
			}
		}
		if linked[a1.ID] != 1 || linked[a2.ID] != 0 || linked[a3.ID] != 1 || linked[a4.ID] != 0 {
			t.Errorf("links per alert = %v", linked)
		}
		if cs := client.comments[a1.ID]; len(cs) != 1 || !strings.Contains(cs[0], "https://quarry.example/projects/") || !strings.Contains(cs[0], "servers") {
			t.Errorf("comments on %s = %q", a1.ID, cs)
		}
		if len(client.comments[a3.ID]) != 0 {
			t.Errorf("the rule without comments commented: %q", client.comments[a3.ID])
		}

		// An update of an alert a rule acted on starts nothing.
		platform[0].Status, platform[0].UpdatedAt = "Resolved", clock.Now()
		if res := poll(); len(res.Stored) != 1 || res.Stored[0].Status != "Resolved" || len(res.Started) != 0 {
			t.Fatalf("update poll: stored %+v, started %d", describe(res.Stored), len(res.Started))
		}
		wantCalls("after an update", "m-srv-01", "m-ws-01")

		// A restart keeps the cool-down: it is in the database.
		svc, err = alerts.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(30 * time.Minute)
		poll(alert("srv-01", "high"))
		wantCalls("restart within the cool-down", "m-srv-01", "m-ws-01")

		// After the cool-down the host is acquired again; a failed start hands it back, so the
		// next alert (well within the cool-down of the failed claim) tries again.
		clock.Advance(31 * time.Minute)
		acq.mu.Lock()
		acq.fail = errors.New("the job queue is unavailable")
		acq.mu.Unlock()
		poll(alert("srv-01", "high"))
		wantCalls("failed start", "m-srv-01", "m-ws-01", "m-srv-01")
		acq.mu.Lock()
		acq.fail = nil
		acq.mu.Unlock()
		poll(alert("srv-01", "high"))
		wantCalls("after a failed start", "m-srv-01", "m-ws-01", "m-srv-01", "m-srv-01")

		// A host already being acquired (ECONFLICT) keeps the claim: no retry within the cool-down.
		clock.Advance(61 * time.Minute)
		acq.mu.Lock()
		acq.fail = quarry.Errorf(quarry.ECONFLICT, "Host srv-01 already has an active acquisition.")
		acq.mu.Unlock()
		poll(alert("srv-01", "high"))
		acq.mu.Lock()
		acq.fail = nil
		acq.mu.Unlock()
		poll(alert("srv-01", "high"))
		wantCalls("host already being acquired", "m-srv-01", "m-ws-01", "m-srv-01", "m-srv-01", "m-srv-01")

		// An alert stored but never evaluated (a crash between the two) is evaluated by the
		// next poll, even though the platform returns nothing new.
		crash := alert("ws-02", "high", "T1003")
		if _, err := alertSvc.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: conn.ID, Alerts: []xdr.Alert{crash}, Watermark: crash.UpdatedAt}); err != nil {
			t.Fatal(err)
		}
		poll()
		wantCalls("pending after a crash", "m-srv-01", "m-ws-01", "m-srv-01", "m-srv-01", "m-srv-01", "m-ws-02")

		entries, _, err := audit.FindAuditEntries(ctx, quarry.AuditFilter{Action: "detection_rule.acquire", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		outcomes := map[string]int{}
		for _, e := range entries {
			outcomes[e.Outcome]++
			if e.Actor != "system" || e.TargetType != "alert" {
				t.Errorf("audit entry = %+v, want a system action on an alert", e)
			}
		}
		if outcomes[quarry.OutcomeSuccess] != 4 || outcomes[quarry.OutcomeFailure] != 2 {
			t.Errorf("audit outcomes = %v, want 4 successes and 2 failures", outcomes)
		}
	})
}

// TestPollThrottled: a throttled poll backs off (no call until the back-off ran out) and then
// resumes from the stored watermark.
func TestPollThrottled(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	conn := &quarry.Connection{Provider: "defender", Name: "tenant", TenantID: "t", ClientID: "c", Cloud: "custom",
		APIURL: "https://127.0.0.1:1", AuthorityURL: "https://127.0.0.1:1/", SecretSealed: "unused"}
	if err := sqldb.NewConnectionService(db).CreateConnection(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	clock := &testClock{now: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)}
	client := &recordingClient{throttle: 2}
	svc, err := alerts.New(alerts.Config{Alerts: sqldb.NewAlertService(db), Rules: sqldb.NewDetectionRuleService(db), Connections: sqldb.NewConnectionService(db),
		Now: clock.Now, Client: func(context.Context, *quarry.Connection) (xdr.Client, error) { return client, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Poll(t.Context(), conn); !errors.Is(err, xdr.ErrThrottled) {
		t.Fatalf("first poll = %v, want ErrThrottled", err)
	}
	clock.Advance(time.Minute)
	if _, err := svc.Poll(t.Context(), conn); !errors.Is(err, alerts.ErrTooSoon) {
		t.Fatalf("poll one interval after a throttle = %v, want ErrTooSoon (back-off of two intervals)", err)
	}
	clock.Advance(time.Minute)
	if _, err := svc.Poll(t.Context(), conn); !errors.Is(err, xdr.ErrThrottled) {
		t.Fatalf("poll after the back-off = %v, want ErrThrottled again", err)
	}
	clock.Advance(3 * time.Minute)
	if _, err := svc.Poll(t.Context(), conn); !errors.Is(err, alerts.ErrTooSoon) {
		t.Fatalf("poll within the doubled back-off = %v, want ErrTooSoon", err)
	}
	clock.Advance(2 * time.Minute)
	if _, err := svc.Poll(t.Context(), conn); err != nil {
		t.Fatalf("poll after the doubled back-off = %v", err)
	}
	if n := len(client.Since()); n != 3 {
		t.Errorf("ListAlerts calls = %d, want 3 (none while backing off)", n)
	}
	clock.Advance(10 * time.Second)
	if _, err := svc.Poll(t.Context(), conn); !errors.Is(err, alerts.ErrTooSoon) {
		t.Errorf("poll 10 s after a poll = %v, want ErrTooSoon (one call per interval)", err)
	}
}
