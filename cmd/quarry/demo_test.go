package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer lets the test read what the demo printed while it still runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	demoURLRE   = regexp.MustCompile(`Open:\s+(http://\S+)/`)
	demoTokenRE = regexp.MustCompile(`API token: (qk_\S+)`)
	demoLoginRE = regexp.MustCompile(`Sign in:\s+admin / (\S+)`)
)

// runDemoUntilReady starts `quarry demo` and returns what it printed once it is serving.
func runDemoUntilReady(t *testing.T, dir string) (out string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var buf lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--addr", "127.0.0.1:0", "--data", dir, "--hosts", "40"}, &buf, io.Discard)
	}()
	deadline := time.Now().Add(2 * time.Minute) // a correctness bound, not a speed target
	for !strings.Contains(buf.String(), "Press Ctrl-C") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("demo exited early: %v\n%s", err, buf.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("demo not ready:\n%s", buf.String())
		}
	}
	return buf.String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo stopped with %v", err)
		}
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	for run := 1; run <= 2; run++ { // the second run reuses the data directory, as a newcomer's would
		t.Run(fmt.Sprintf("Run%d", run), func(t *testing.T) {
			out, stop := runDemoUntilReady(t, dir)
			defer stop()
			u, tok, pw := demoURLRE.FindStringSubmatch(out), demoTokenRE.FindStringSubmatch(out), demoLoginRE.FindStringSubmatch(out)
			if u == nil || tok == nil || pw == nil {
				t.Fatalf("demo output lacks URL, token or login:\n%s", out)
			}
			ts := &testServer{m: &Main{HTTP: nil}}
			ts.base = u[1]
			r := ts.do(t, "GET", "/api/v1/connections", tok[1], nil)
			if r.status != 200 || r.body["total"] != float64(1) || !strings.Contains(r.raw, `"health":"ok"`) {
				t.Fatalf("demo connections = %d %s", r.status, r.raw)
			}
			id := int(r.body["connections"].([]any)[0].(map[string]any)["id"].(float64))
			hosts := ts.do(t, "GET", fmt.Sprintf("/api/v1/connections/%d/hosts?per_page=25&refresh=true", id), tok[1], nil)
			if hosts.status != 200 || hosts.body["total"] != float64(40) || len(hosts.body["hosts"].([]any)) != 25 {
				t.Fatalf("demo hosts = %d %.500s", hosts.status, hosts.raw)
			}
			exp := ts.do(t, "GET", "/api/v1/experiments", tok[1], nil)
			if !strings.Contains(exp.raw, `"enabled":true`) {
				t.Fatalf("demo did not turn the Defender experiment on: %s", exp.raw)
			}
			if run == 1 {
				// A first run acquires a few hosts by itself, and their timelines fill in.
				if !strings.Contains(out, "Acquiring: 4 hosts") {
					t.Fatalf("the first run acquires no hosts:\n%s", out)
				}
				demoTimeline(t, ts, tok[1])
				demoAlerts(t, ts, tok[1])
			} else if strings.Contains(out, "Acquiring:") {
				t.Fatalf("a second run acquires again:\n%s", out)
			}
			if rules := ts.do(t, "GET", "/api/v1/detection-rules", tok[1], nil); rules.status != 200 || !strings.Contains(rules.raw, `"total":1`) {
				t.Errorf("run %d: the demo's detection rule, once: %d %.300s", run, rules.status, rules.raw)
			}
			if run == 2 {
				// The whole flow works out of the box: acquire an emulated Linux and Windows host.
				acquireOneDemoHost(t, ts, tok[1], id, "linux")
				acquireOneDemoHost(t, ts, tok[1], id, "windows")
			}
			// The printed password signs in.
			c := uiClient(t)
			_, page := get(t, c, u[1]+"/login")
			res, _ := post(t, c, u[1]+"/login", map[string][]string{"username": {"admin"}, "password": {pw[1]}, "csrf": {csrfOf(t, page)}})
			if res.StatusCode != 303 || res.Header.Get("Location") != "/projects" {
				t.Fatalf("printed login refused: %d", res.StatusCode)
			}
		})
	}
}

// acquireOneDemoHost acquires the first online host of an OS family of the demo tenant into
// the demo project and waits until its package is received.
func acquireOneDemoHost(t *testing.T, ts *testServer, token string, connID int, family string) {
	t.Helper()
	all := ts.do(t, "GET", fmt.Sprintf("/api/v1/connections/%d/hosts?os=%s&online=true&per_page=1", connID, family), token, nil)
	hosts, _ := all.body["hosts"].([]any)
	if len(hosts) == 0 {
		t.Fatalf("no online %s host in the demo tenant: %s", family, all.raw)
	}
	host := hosts[0].(map[string]any)["id"].(string)
	pid := demoProject(t, ts, token, "Demo investigation")
	r := ts.do(t, "POST", fmt.Sprintf("/api/v1/projects/%d/acquisitions", pid), token,
		map[string]any{"connection_id": connID, "host_ids": []string{host}, "profile": "light", "force": true})
	if r.status != 201 {
		t.Fatalf("demo acquire = %d %s", r.status, r.raw)
	}
	id := int(r.body["acquisitions"].([]any)[0].(map[string]any)["id"].(float64))
	deadline := time.Now().Add(3 * time.Minute) // a bound against a hang, not a speed target
	for {
		a := ts.do(t, "GET", fmt.Sprintf("/api/v1/acquisitions/%d", id), token, nil)
		switch a.body["state"] {
		case "received", "processing", "completed":
			return
		case "failed", "cancelled", "expired":
			t.Fatalf("demo acquisition ended %v: %v", a.body["state"], a.body["error"])
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo acquisition still %v", a.body["state"])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// demoTimeline waits until the demo's own first acquisitions are completed (collected, received
// and processed) and checks that every one of their hosts has events on the timeline, Windows
// hosts event log records among them.
func demoTimeline(t *testing.T, ts *testServer, token string) {
	t.Helper()
	pid := demoProject(t, ts, token, "Demo investigation")
	deadline := time.Now().Add(4 * time.Minute) // a bound against a hang, not a speed target
	var list []any
	for {
		r := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/acquisitions?per_page=100", pid), token, nil)
		list, _ = r.body["acquisitions"].([]any)
		done := len(list) == 4
		for _, a := range list {
			switch st := a.(map[string]any)["state"]; st {
			case "completed":
			case "failed", "cancelled", "expired":
				t.Fatalf("a demo acquisition ended %v: %s", st, r.raw)
			default:
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo's acquisitions are not completed: %s", r.raw)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, a := range list {
		acq := a.(map[string]any)
		host := acq["host_name"].(string)
		r := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/events?host=%s&limit=1", pid, host), token, nil)
		if r.status != 200 || r.body["total"].(float64) == 0 {
			t.Errorf("no events for demo host %s: %d %.300s", host, r.status, r.raw)
		}
		ev := ts.do(t, "GET", fmt.Sprintf("/api/v1/evidence/%d", int(acq["evidence_id"].(float64))), token, nil)
		if ev.body["manifest"].(map[string]any)["os"] != "windows" {
			continue
		}
		r = ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/events?host=%s&q=source:evtx&limit=1", pid, host), token, nil)
		if r.status != 200 || r.body["total"].(float64) == 0 {
			t.Errorf("Windows host %s has no event log records on the timeline: %d %.300s", host, r.status, r.raw)
		}
	}
	// The demo acquires compromised hosts first, and Quarry's own Sigma rules tag what their
	// stories left (a user added, a scheduled task): the timeline has key events.
	r := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/events?severity=alarm&severity=suspicious&limit=100", pid), token, nil)
	events, _ := r.body["events"].([]any)
	sigma := 0
	for _, e := range events {
		dets, _ := e.(map[string]any)["detections"].([]any)
		for _, d := range dets {
			if d.(map[string]any)["kind"] == "sigma" {
				sigma++
			}
		}
	}
	if r.status != 200 || sigma == 0 {
		t.Errorf("no Sigma detections among the demo's key events: %d %.600s", r.status, r.raw)
	}
}

// demoProject returns the id of the demo's project named name.
func demoProject(t *testing.T, ts *testServer, token, name string) int {
	t.Helper()
	projects := ts.do(t, "GET", "/api/v1/projects?per_page=100", token, nil)
	for _, p := range projects.body["projects"].([]any) {
		if p := p.(map[string]any); p["name"] == name {
			return int(p["id"].(float64))
		}
	}
	t.Fatalf("no demo project %q: %s", name, projects.raw)
	return 0
}

// demoAlerts waits until the emulator's alerts are stored and the demo's detection rule has
// acquired alerted hosts into its project, each linked from its alert.
func demoAlerts(t *testing.T, ts *testServer, token string) {
	t.Helper()
	pid := demoProject(t, ts, token, "Defender alerts")
	deadline := time.Now().Add(3 * time.Minute) // a bound against a hang, not a speed target
	for {
		alerts := ts.do(t, "GET", "/api/v1/alerts?limit=100", token, nil)
		acqs := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d/acquisitions?per_page=100", pid), token, nil)
		list, _ := acqs.body["acquisitions"].([]any)
		hosts := map[string]int{}
		for _, a := range list {
			hosts[a.(map[string]any)["host_name"].(string)]++
		}
		if alerts.status == 200 && strings.Contains(alerts.raw, `"acquisition_id"`) && len(list) > 0 {
			for h, n := range hosts {
				if n > 1 {
					t.Errorf("the detection rule acquired %s %d times within its cool-down", h, n)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert-driven acquisition: alerts %d %.400s\nacquisitions %.400s", alerts.status, alerts.raw, acqs.raw)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
