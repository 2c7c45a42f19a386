package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/defendersim"
	"github.com/quarry-dfir/quarry/sqldb"
)

// acquireEnv is the real program with a Defender connection to the emulator and the
// experiment on.
type acquireEnv struct {
	ts     *testServer
	sim    *defendersim.Sim
	connID int64
	pid    int64
}

func newAcquireEnv(t *testing.T, machines int) *acquireEnv {
	t.Helper()
	sim := startSim(t, machines)
	ts := startServer(t, sqldb.DialectSQLite)
	r := ts.do(t, "POST", "/api/v1/connections", ts.admin, simConnection(sim, "Acquire tenant", sim.DefaultApp()))
	if r.status != 201 {
		t.Fatalf("create connection = %d %s", r.status, r.raw)
	}
	ts.do(t, "PUT", "/api/v1/experiments/defender_xdr", ts.admin, map[string]any{"enabled": true})
	p := ts.do(t, "POST", "/api/v1/projects", ts.analyst, map[string]any{"name": "acquire " + t.Name()})
	return &acquireEnv{ts: ts, sim: sim, connID: int64(r.body["id"].(float64)), pid: int64(p.body["id"].(float64))}
}

// linuxHosts returns n online Linux or macOS hosts of the emulator.
func (e *acquireEnv) linuxHosts(t *testing.T, n int) []string {
	var ids []string
	for _, m := range e.sim.Machines() {
		p := strings.ToLower(m.OSPlatform)
		if m.HealthStatus == "Active" && (p == "linux" || p == "ubuntu" || strings.Contains(p, "redhat") || p == "macos") {
			ids = append(ids, m.ID)
		}
		if len(ids) == n {
			return ids
		}
	}
	t.Fatalf("the emulator has fewer than %d online Linux/macOS hosts", n)
	return nil
}

// waitStates polls the acquisitions until each is in one of the final states wanted.
func (e *acquireEnv) waitStates(t *testing.T, ids []int64, want ...string) map[int64]map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute) // a bound against a hang, not a speed target
	got := map[int64]map[string]any{}
	for {
		done := true
		for _, id := range ids {
			a := e.ts.do(t, "GET", fmt.Sprintf("/api/v1/acquisitions/%d", id), e.ts.viewer, nil)
			got[id] = a.body
			st, _ := a.body["state"].(string)
			ok := false
			for _, w := range want {
				ok = ok || st == w
			}
			if !ok {
				if quarry.AcquisitionTerminal(st) {
					t.Fatalf("acquisition %d ended %s: %v", id, st, a.body["error"])
				}
				done = false
			}
		}
		if done {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("acquisitions not %v in time: %v", want, got)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestAcquireAPI: POST /projects/{id}/acquisitions launches the bootstrap through the emulator's
// Live Response; the real collector collects the simulated hosts and uploads, and each
// acquisition ends received with evidence, within the emulator's limits.
func TestAcquireAPI(t *testing.T) {
	e := newAcquireEnv(t, 30)
	ts := e.ts
	hosts := e.linuxHosts(t, 3)
	path := fmt.Sprintf("/api/v1/projects/%d/acquisitions", e.pid)
	body := map[string]any{"connection_id": e.connID, "host_ids": hosts, "profile": "light"}
	wantError(t, ts.do(t, "POST", path, ts.viewer, body), 403, quarry.EFORBIDDEN)
	e1 := wantError(t, ts.do(t, "POST", path, ts.analyst, map[string]any{"connection_id": e.connID, "host_ids": []string{}}), 400, quarry.EINVALID)
	if e1["field"] != "host_ids" {
		t.Fatalf("empty host list: %v", e1)
	}
	r := ts.do(t, "POST", path, ts.analyst, body)
	if r.status != 201 {
		t.Fatalf("acquire = %d %s", r.status, r.raw)
	}
	var ids []int64
	for _, a := range r.body["acquisitions"].([]any) {
		ids = append(ids, int64(a.(map[string]any)["id"].(float64)))
	}
	if len(ids) != 3 {
		t.Fatalf("acquire returned %s", r.raw)
	}
	// A second acquisition of an active host in the same project is refused unless forced.
	wantError(t, ts.do(t, "POST", path, ts.analyst, map[string]any{"connection_id": e.connID, "host_ids": hosts[:1]}), 409, quarry.ECONFLICT)

	got := e.waitStates(t, ids, "received", "processing", "completed")
	for id, a := range got {
		if a["evidence_id"] == nil || a["connection_id"] == nil {
			t.Fatalf("acquisition %d = %v", id, a)
		}
		var states []string
		for _, h := range a["history"].([]any) {
			states = append(states, h.(map[string]any)["state"].(string))
		}
		if h := strings.Join(states, ">"); !strings.Contains(h, "launching") || !strings.Contains(h, "received") {
			t.Fatalf("acquisition %d history = %s", id, h)
		}
	}
	st := e.sim.Stats()
	if st.MaxConcurrentSessions > 25 || st.RejectedActiveRequest != 0 || st.RejectedRate != 0 || st.RejectedConcurrency != 0 {
		t.Fatalf("emulator saw limits broken: %+v", st)
	}
	ev := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/evidence", e.pid), ts.viewer, nil)
	if ev.body["total"] != float64(3) {
		t.Fatalf("evidence = %s", ev.raw)
	}
	audit := ts.do(t, "GET", "/api/v1/audit?action=acquisition.create", ts.admin, nil)
	if !strings.Contains(audit.raw, `"actor":"bob"`) {
		t.Fatalf("acquire not audited: %s", audit.raw)
	}
}

// TestBrowserAcquire: select hosts across pages in the Defender import, press Acquire triage,
// and watch the acquisitions page update itself until they are received.
func TestBrowserAcquire(t *testing.T) {
	ctx := browser(t)
	e := newAcquireEnv(t, 60)
	shots := artifacts(t, "acquire")
	base := e.ts.m.URL()
	want := e.linuxHosts(t, 2)
	steps(t, ctx,
		chromedp.Navigate(base+"/login"),
		waitVisible(`input[name=username]`),
		chromedp.SendKeys(css(`input[name=username]`), "bob"),
		chromedp.SendKeys(css(`input[name=password]`), analystPassword),
		nav(chromedp.Submit(css(`input[name=password]`)), `a[href="/settings"]`),
		chromedp.Navigate(fmt.Sprintf("%s/projects/%d/import/xdr/defender?per_page=100", base, e.pid)),
		waitVisible(`#hosts`),
	)
	for _, id := range want {
		steps(t, ctx, chromedp.Click(css(fmt.Sprintf(`input.host-select[value=%q]`, id))))
	}
	steps(t, ctx,
		chromedp.SetValue(css(`#acquire-profile`), "light"),
		screenshot(shots, "01-selected"),
	)
	if label := value(t, ctx, chromedp.Text(css(`#acquire`))); label != "Acquire triage (2 hosts)" {
		t.Fatalf("acquire button = %q", label)
	}
	steps(t, ctx, nav(chromedp.Click(css(`#acquire`)), `#acquisition-rows`), screenshot(shots, "02-launched"))

	// The page refreshes its table by itself (htmx every 3 s): wait without reloading.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		states := value(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#acquisition-rows tbody tr[data-state]')).map(r => r.dataset.state)`))
		done := len(states) == 2
		for _, s := range states {
			done = done && s == "completed" // collected, received and processed into the timeline
			if s == "failed" || s == "cancelled" || s == "expired" {
				steps(t, ctx, screenshot(shots, "03-failed"))
				t.Fatalf("an acquisition ended %s: %v", s, states)
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acquisitions on the page: %v", states)
		}
		time.Sleep(time.Second)
	}
	steps(t, ctx, screenshot(shots, "03-completed"))
	if summary := value(t, ctx, chromedp.Text(css(`#acquisition-summary`))); !strings.Contains(summary, "completed 2") {
		t.Fatalf("summary = %q", summary)
	}
}
