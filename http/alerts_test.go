package http

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/quarry-dfir/quarry/xdr"
	_ "github.com/quarry-dfir/quarry/xdr/defender" // registers the provider the connection names
)

// alertsEnv is the events test environment with an XDR connection, three stored alerts (one
// of them with the acquisition a rule started) and the alert and rule services.
type alertsEnv struct {
	*eventsEnv
	conn   *quarry.Connection
	alerts map[string]*quarry.Alert // by external id
	acq    *quarry.Acquisition
}

var alertT0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func newAlertsEnv(t *testing.T) *alertsEnv {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	store := sqldb.NewAlertService(db)
	env := &alertsEnv{eventsEnv: newEventsEnv(t, db, nil, func(s *Server) {
		s.Alerts, s.DetectionRules, s.Connections = store, sqldb.NewDetectionRuleService(db), sqldb.NewConnectionService(db)
	}), alerts: map[string]*quarry.Alert{}}
	env.conn = &quarry.Connection{Provider: "defender", Name: "Contoso tenant", TenantID: "t", ClientID: "c", Cloud: "custom",
		APIURL: "https://127.0.0.1:1", AuthorityURL: "https://127.0.0.1:1/", SecretSealed: "unused"}
	if err := env.srv.Connections.CreateConnection(ctx, env.conn); err != nil {
		t.Fatal(err)
	}
	mk := func(id, host, sev, title string, at time.Time) xdr.Alert {
		return xdr.Alert{ID: id, HostID: "m-" + host, HostName: host + ".corp.example", Title: title, Severity: sev, Status: "New",
			Category: "CredentialAccess", Techniques: []string{"T1110"}, CreatedAt: at, UpdatedAt: at}
	}
	stored, err := store.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: env.conn.ID, Watermark: alertT0.Add(2 * time.Hour), Alerts: []xdr.Alert{
		mk("da1", "srv-01", "High", "Multiple failed logon attempts <script>", alertT0),
		mk("da2", "ws-07", "Low", "Suspicious installer package executed", alertT0.Add(time.Hour)),
		mk("da3", "srv-01", "Medium", "Suspicious scheduled task", alertT0.Add(2*time.Hour)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range stored {
		env.alerts[a.ExternalID] = a
	}
	env.acq = &quarry.Acquisition{ProjectID: env.project.ID, ConnectionID: &env.conn.ID, HostID: "m-srv-01", HostName: "srv-01",
		Source: quarry.SourceXDR, Profile: "triage", State: quarry.AcquisitionQueued}
	if err := env.srv.Acquisitions.CreateAcquisition(ctx, env.acq); err != nil {
		t.Fatal(err)
	}
	if err := store.LinkAlertAcquisition(ctx, &quarry.AlertAcquisition{AlertID: env.alerts["da1"].ID, AcquisitionID: env.acq.ID,
		ProjectID: env.project.ID, RuleName: "servers"}); err != nil {
		t.Fatal(err)
	}
	return env
}

func TestAlertsAPI(t *testing.T) {
	t.Parallel()
	env := newAlertsEnv(t)
	type page struct {
		Alerts  []*quarry.Alert `json:"alerts"`
		Total   int             `json:"total"`
		Page    int             `json:"page"`
		PerPage int             `json:"per_page"`
	}
	list := func(t *testing.T, query string) page {
		t.Helper()
		res := env.do(t, "GET", "/api/v1/alerts"+query, env.viewer, nil)
		if res.status != http.StatusOK {
			t.Fatalf("GET alerts%s = %d %s", query, res.status, res.body)
		}
		var p page
		res.json(t, &p)
		return p
	}
	tests := []struct {
		name  string
		query string
		want  []string // external ids, newest first
	}{
		{"All", "", []string{"da3", "da2", "da1"}},
		{"Severity", "?severity=high", []string{"da1"}},
		{"Status", "?status=new", []string{"da3", "da2", "da1"}},
		{"Category", "?category=Execution", nil},
		{"Host", "?host=srv-01", []string{"da3", "da1"}},
		{"Connection", fmt.Sprintf("?connection_id=%d", env.conn.ID), []string{"da3", "da2", "da1"}},
		{"OtherConnection", "?connection_id=999", nil},
		{"Time", "?from=" + url.QueryEscape(alertT0.Add(30*time.Minute).Format(time.RFC3339)) + "&to=" + url.QueryEscape(alertT0.Add(90*time.Minute).Format(time.RFC3339)), []string{"da2"}},
		{"Paged", "?per_page=1&page=2", []string{"da2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := list(t, tt.query)
			var got []string
			for _, a := range p.Alerts {
				got = append(got, a.ExternalID)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("GET alerts%s = %v, want %v", tt.query, got, tt.want)
			}
		})
	}
	if p := list(t, "?per_page=1&page=2"); p.Total != 3 || p.Page != 2 || p.PerPage != 1 {
		t.Errorf("paging = total %d page %d per_page %d", p.Total, p.Page, p.PerPage)
	}
	for _, bad := range []string{"?from=yesterday", "?connection_id=x", "?per_page=0"} {
		if res := env.do(t, "GET", "/api/v1/alerts"+bad, env.viewer, nil); res.status != http.StatusBadRequest {
			t.Errorf("GET alerts%s = %d, want 400", bad, res.status)
		}
	}
	res := env.do(t, "GET", fmt.Sprintf("/api/v1/alerts/%d", env.alerts["da1"].ID), env.viewer, nil)
	var one quarry.Alert
	res.json(t, &one)
	if res.status != http.StatusOK || len(one.Acquisitions) != 1 || one.Acquisitions[0].AcquisitionID != env.acq.ID {
		t.Errorf("GET alert = %d %+v", res.status, one)
	}
	if res := env.do(t, "GET", "/api/v1/alerts/999999", env.viewer, nil); res.status != http.StatusNotFound {
		t.Errorf("GET unknown alert = %d, want 404", res.status)
	}
	if res := env.do(t, "GET", "/api/v1/alerts", "", nil); res.status != http.StatusUnauthorized {
		t.Errorf("GET alerts without a token = %d, want 401", res.status)
	}
}

func TestDetectionRulesAPI(t *testing.T) {
	t.Parallel()
	env := newAlertsEnv(t)
	body := map[string]any{"name": "Credential theft on servers", "min_severity": "medium", "techniques": []string{"t1003"},
		"host_patterns": []string{"srv-*"}, "project_id": env.project.ID, "cooldown_seconds": 3600, "comment_on_alert": true}
	if res := env.do(t, "POST", "/api/v1/detection-rules", env.viewer, body); res.status != http.StatusForbidden {
		t.Errorf("viewer create = %d, want 403", res.status)
	}
	res := env.do(t, "POST", "/api/v1/detection-rules", env.analyst, body)
	if res.status != http.StatusCreated {
		t.Fatalf("create = %d %s", res.status, res.body)
	}
	var rule quarry.DetectionRule
	res.json(t, &rule)
	if rule.ID == 0 || !rule.Enabled || rule.Techniques[0] != "T1003" || rule.CooldownSecs != 3600 || *rule.ProjectID != env.project.ID || rule.Profile != "triage" {
		t.Errorf("created = %+v", rule)
	}
	if res := env.do(t, "POST", "/api/v1/detection-rules", env.analyst, body); res.status != http.StatusConflict {
		t.Errorf("same name = %d, want 409", res.status)
	}
	for name, bad := range map[string]map[string]any{
		"UnknownField":  {"name": "x", "severity": "high"},
		"BadTechnique":  {"name": "x", "techniques": []string{"credential dumping"}},
		"UnknownProj":   {"name": "x", "project_id": 999999},
		"NegativeCool":  {"name": "x", "cooldown_seconds": -5},
		"SeverityWrong": {"name": "x", "min_severity": "urgent"},
	} {
		if res := env.do(t, "POST", "/api/v1/detection-rules", env.analyst, bad); res.status != http.StatusBadRequest {
			t.Errorf("%s: create = %d %s, want 400", name, res.status, res.body)
		}
	}
	// Without project_id: a new project per alert.
	res = env.do(t, "POST", "/api/v1/detection-rules", env.analyst, map[string]any{"name": "everything", "enabled": false})
	var perAlert quarry.DetectionRule
	res.json(t, &perAlert)
	if res.status != http.StatusCreated || perAlert.ProjectID != nil || perAlert.Enabled {
		t.Errorf("per-alert rule = %d %+v", res.status, perAlert)
	}

	res = env.do(t, "GET", "/api/v1/detection-rules", env.viewer, nil)
	var listed struct {
		Rules []quarry.DetectionRule `json:"rules"`
		Total int                    `json:"total"`
	}
	res.json(t, &listed)
	if listed.Total != 2 || listed.Rules[0].Name != "Credential theft on servers" {
		t.Errorf("list = %+v", listed)
	}
	body["title_contains"], body["project_id"] = "mimikatz", nil
	res = env.do(t, "PUT", fmt.Sprintf("/api/v1/detection-rules/%d", rule.ID), env.analyst, body)
	var updated quarry.DetectionRule
	res.json(t, &updated)
	if res.status != http.StatusOK || updated.TitleContains != "mimikatz" || updated.ProjectID != nil || !updated.CreatedAt.Equal(rule.CreatedAt) {
		t.Errorf("update = %d %+v", res.status, updated)
	}
	res = env.do(t, "PUT", fmt.Sprintf("/api/v1/detection-rules/%d/enabled", rule.ID), env.analyst, map[string]any{"enabled": false})
	var disabled quarry.DetectionRule
	res.json(t, &disabled)
	if res.status != http.StatusOK || disabled.Enabled {
		t.Errorf("disable = %d %+v", res.status, disabled)
	}
	if res := env.do(t, "PUT", fmt.Sprintf("/api/v1/detection-rules/%d/enabled", rule.ID), env.analyst, map[string]any{}); res.status != http.StatusBadRequest {
		t.Errorf("enable without a value = %d, want 400", res.status)
	}
	if res := env.do(t, "DELETE", fmt.Sprintf("/api/v1/detection-rules/%d", rule.ID), env.analyst, nil); res.status != http.StatusNoContent {
		t.Errorf("delete = %d, want 204", res.status)
	}
	if res := env.do(t, "GET", fmt.Sprintf("/api/v1/detection-rules/%d", rule.ID), env.viewer, nil); res.status != http.StatusNotFound {
		t.Errorf("get deleted = %d, want 404", res.status)
	}

	entries, _, err := env.srv.Audit.FindAuditEntries(context.Background(), quarry.AuditFilter{Action: "detection_rule.", TargetID: fmt.Sprint(rule.ID), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Action] = e.Outcome
		if e.Actor != "bob" || e.TargetType != "detection_rule" {
			t.Errorf("audit entry = %+v", e)
		}
	}
	for _, action := range []string{"detection_rule.create", "detection_rule.update", "detection_rule.enable", "detection_rule.delete"} {
		if got[action] == "" {
			t.Errorf("no audit entry %s for rule %d (have %v)", action, rule.ID, got)
		}
	}
}

func TestAlertsPages(t *testing.T) {
	t.Parallel()
	env := newAlertsEnv(t)
	c, csrf := env.loginCSRF(t)
	read := func(res *http.Response, err error) (int, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if st, body := read(c.Get(env.url("/detections"))); st != http.StatusOK || !strings.Contains(body, `id="alert-filters"`) {
		t.Fatalf("GET /detections = %d, want the alerts page\n%s", st, body)
	}
	st, body := read(c.Get(env.url("/detections/alerts")))
	if st != http.StatusOK || !strings.Contains(body, "Multiple failed logon attempts &lt;script&gt;") || !strings.Contains(body, "Suspicious scheduled task") ||
		!strings.Contains(body, "Contoso tenant") || !strings.Contains(body, `id="alert-total">3<`) {
		t.Fatalf("alerts page = %d\n%s", st, body)
	}
	// The alert with an acquisition links to it and to its host in that project.
	wantAcq := fmt.Sprintf(`href="/projects/%d/acquisitions#acq-%d"`, env.project.ID, env.acq.ID)
	wantHost := fmt.Sprintf(`href="/projects/%d/import/xdr/defender?connection=%d&amp;q=srv-01"`, env.project.ID, env.conn.ID)
	if !strings.Contains(body, wantAcq) || !strings.Contains(body, wantHost) || !strings.Contains(body, `href="/detections/alerts?host=m-ws-07"`) {
		t.Errorf("alerts page lacks the acquisition link %s or the host links %s", wantAcq, wantHost)
	}
	// Filters live in the URL and come back in the form.
	st, body = read(c.Get(env.url("/detections/alerts?severity=low&host=ws")))
	if st != http.StatusOK || strings.Contains(body, "Suspicious scheduled task") || !strings.Contains(body, "Suspicious installer package executed") ||
		!strings.Contains(body, `<option selected>low</option>`) || !strings.Contains(body, `name="host" value="ws"`) {
		t.Errorf("filtered page = %d\n%s", st, body)
	}
	if st, _ := read(c.Get(env.url("/detections/alerts?from=never"))); st != http.StatusBadRequest {
		t.Errorf("bad filter = %d, want 400", st)
	}

	rules := env.url("/detections/rules")
	if st, body := read(c.Get(rules)); st != http.StatusOK || !strings.Contains(body, "No detection rules yet.") || !strings.Contains(body, `id="rule-form"`) {
		t.Fatalf("empty rules page = %d\n%s", st, body)
	}
	form := url.Values{"csrf": {csrf}, "name": {"Servers"}, "min_severity": {"high"}, "techniques": {"T1110, T1003"},
		"host_patterns": {"srv-*"}, "project_id": {fmt.Sprint(env.project.ID)}, "profile": {"triage"}, "cooldown_hours": {"2"},
		"comment_on_alert": {"on"}, "enabled": {"on"}}
	if st, body := read(c.PostForm(rules, form)); st != http.StatusSeeOther {
		t.Fatalf("create rule = %d\n%s", st, body)
	}
	list, _, err := env.srv.DetectionRules.FindDetectionRules(context.Background(), quarry.DetectionRuleFilter{})
	if err != nil || len(list) != 1 {
		t.Fatalf("rules = %+v, %v", list, err)
	}
	r := list[0]
	if !r.Enabled || r.Cooldown != 2*time.Hour || len(r.Techniques) != 2 || !r.CommentOnAlert || r.ProjectID == nil || *r.ProjectID != env.project.ID {
		t.Errorf("rule from the form = %+v", r)
	}
	st, body = read(c.Get(rules))
	if st != http.StatusOK || !strings.Contains(body, "Servers") || !strings.Contains(body, "T1110, T1003") || !strings.Contains(body, "Incident 8") {
		t.Errorf("rules page = %d\n%s", st, body)
	}
	// A bad technique comes back with the error and what was typed.
	bad := url.Values{"csrf": {csrf}, "name": {"Typo"}, "techniques": {"T11"}, "project_id": {"new"}}
	if st, body := read(c.PostForm(rules, bad)); st != http.StatusBadRequest || !strings.Contains(body, "not an ATT&amp;CK technique") || !strings.Contains(body, `value="Typo"`) {
		t.Errorf("bad rule = %d\n%s", st, body)
	}
	if st, _ := read(c.PostForm(env.url("/detections/rules/%d/disable", r.ID), url.Values{"csrf": {csrf}})); st != http.StatusSeeOther {
		t.Errorf("disable = %d", st)
	}
	if got, _ := env.srv.DetectionRules.FindDetectionRuleByID(context.Background(), r.ID); got.Enabled {
		t.Error("rule still enabled after Disable")
	}
	if st, _ := read(c.PostForm(env.url("/detections/rules/%d/delete", r.ID), url.Values{"csrf": {""}})); st != http.StatusForbidden {
		t.Errorf("delete without CSRF = %d, want 403", st)
	}
	if st, _ := read(c.PostForm(env.url("/detections/rules/%d/delete", r.ID), url.Values{"csrf": {csrf}})); st != http.StatusSeeOther {
		t.Errorf("delete = %d", st)
	}
	if _, err := env.srv.DetectionRules.FindDetectionRuleByID(context.Background(), r.ID); quarry.ErrorCode(err) != quarry.ENOTFOUND {
		t.Errorf("after delete: %v", err)
	}
}
