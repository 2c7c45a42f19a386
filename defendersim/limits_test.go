package defendersim

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func onlineMachines(s *Sim) []string {
	var ids []string
	for _, d := range s.devices {
		ids = append(ids, d.m.ID)
		s.SetMachineOnline(d.m.ID, true)
	}
	return ids
}

// sleepScript never finishes on its own, so sessions stay open for the test.
var sleepScript = []byte("sleep 600\n")

// waitBody runs a script that keeps the device busy: bash on Linux and macOS, the stand-in on Windows.
func waitBody(c *client, s *Sim, id string) map[string]any {
	c.tb.Helper()
	if s.findDevice(id).host.OS == "windows" {
		c.mustUpload("wait.ps1", []byte("# quarry-sim: sleep 24h\n"))
		return runScriptBody("wait.ps1", "")
	}
	c.mustUpload("wait.sh", sleepScript)
	return runScriptBody("wait.sh", "")
}

func TestConcurrentSessionLimit(t *testing.T) {
	// Scripts run for real at 600x; the long script timeout keeps all 25 sessions open.
	s := MustStart(t, Options{Machines: 30, TimeScale: 600, Limits: Limits{LiveResponsePerMinute: 1000, ScriptTimeout: 24 * time.Hour}})
	c := newClient(t, s, App{})
	ids := onlineMachines(s)
	var actions []string
	for i := range 25 {
		actions = append(actions, c.startLR(ids[i], waitBody(c, s, ids[i])))
	}
	r := c.do("POST", "/api/machines/"+ids[25]+"/runliveresponse", waitBody(c, s, ids[25]))
	if r.status != 429 || r.errorCode(t) != "TooManyRequests" {
		t.Fatalf("26th session = %d %s, want 429 TooManyRequests", r.status, r.body)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want whole seconds ≥ 1", r.header.Get("Retry-After"))
	}
	// Cancelling one session frees its slot at once.
	if r := c.do("POST", "/api/machineactions/"+actions[0]+"/cancel", map[string]string{"Comment": "free a slot"}); r.status != 200 {
		t.Fatalf("cancel = %d %s", r.status, r.body)
	}
	c.startLR(ids[25], waitBody(c, s, ids[25]))
	for _, id := range actions[1:] {
		if st := c.do("GET", "/api/machineactions/"+id, nil).json(t)["status"]; isFinal(st.(string)) {
			t.Errorf("session %s ended on its own: %v", id, st)
		}
	}
	st := s.Stats()
	if st.MaxConcurrentSessions != 25 || st.RejectedConcurrency != 1 || st.SessionsStarted != 26 {
		t.Errorf("stats = %+v, want max 25, 1 rejected, 26 started", st)
	}
}

func TestRunLiveResponseRate(t *testing.T) {
	// At 60x the one-minute window lasts one second.
	s := MustStart(t, Options{Machines: 30, TimeScale: 60})
	c := newClient(t, s, App{})
	c.mustUpload("wait.sh", sleepScript)
	ids := onlineMachines(s)
	for i := range 10 {
		c.startLR(ids[i], runScriptBody("wait.sh", ""))
	}
	r := c.do("POST", "/api/machines/"+ids[10]+"/runliveresponse", runScriptBody("wait.sh", ""))
	if r.status != 429 || r.errorCode(t) != "TooManyRequests" {
		t.Fatalf("11th call in a minute = %d %s, want 429", r.status, r.body)
	}
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra != 1 {
		t.Errorf("Retry-After = %q, want 1 (the scaled window)", r.header.Get("Retry-After"))
	}
	// Other endpoints have their own budget.
	if r := c.do("GET", "/api/machines?$top=1", nil); r.status != 200 {
		t.Errorf("list machines after LR throttling = %d, want 200", r.status)
	}
	if s.Stats().RejectedRate != 1 {
		t.Errorf("rejected_rate = %d, want 1", s.Stats().RejectedRate)
	}
}

func TestDefaultRateWindowScales(t *testing.T) {
	// 20x: the per-minute window lasts three seconds.
	s := MustStart(t, Options{Machines: 3, TimeScale: 20, Limits: Limits{PerMinute: 3}})
	c := newClient(t, s, App{})
	for range 3 {
		if r := c.do("GET", "/api/alerts", nil); r.status != 200 {
			t.Fatalf("list alerts = %d", r.status)
		}
	}
	r := c.do("GET", "/api/alerts", nil)
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != 429 || err != nil || ra < 1 || ra > 3 {
		t.Fatalf("4th call = %d Retry-After %q, want 429 and 1..3", r.status, r.header.Get("Retry-After"))
	}
	time.Sleep(time.Duration(ra) * time.Second)
	if r := c.do("GET", "/api/alerts", nil); r.status != 200 {
		t.Errorf("call after Retry-After = %d, want 200", r.status)
	}
}

func TestOneActiveRequestPerDevice(t *testing.T) {
	s := MustStart(t, Options{Machines: 5})
	c := newClient(t, s, App{})
	c.mustUpload("wait.sh", sleepScript)
	id := onlineMachines(s)[0]
	first := c.startLR(id, runScriptBody("wait.sh", ""))
	r := c.do("POST", "/api/machines/"+id+"/runliveresponse", runScriptBody("wait.sh", ""))
	if r.status != 400 || r.errorCode(t) != "ActiveRequestAlreadyExists" {
		t.Fatalf("second request = %d %s, want 400 ActiveRequestAlreadyExists", r.status, r.body)
	}
	c.do("POST", "/api/machineactions/"+first+"/cancel", map[string]string{"Comment": "x"})
	c.startLR(id, runScriptBody("wait.sh", ""))
	if got := s.Stats().RejectedActiveRequest; got != 1 {
		t.Errorf("rejected_active_request = %d, want 1", got)
	}
}

func TestOfflineDeviceExpires(t *testing.T) {
	// 72 h queue at this scale is 2 s of real time.
	s := MustStart(t, Options{Machines: 5, TimeScale: 72 * 3600 / 2})
	c := newClient(t, s, App{})
	c.mustUpload("hello.sh", []byte("echo hi\n"))
	id := s.devices[0].m.ID
	s.SetMachineOnline(id, false)
	aid := c.startLR(id, runScriptBody("hello.sh", ""))
	if a := c.do("GET", "/api/machineactions/"+aid, nil).json(t); a["status"] != "Pending" {
		t.Fatalf("offline device action = %v, want Pending", a["status"])
	}
	m := c.do("GET", "/api/machines/"+id, nil).json(t)
	if m["healthStatus"] != "Inactive" {
		t.Errorf("offline machine healthStatus = %v, want Inactive", m["healthStatus"])
	}
	a := c.waitFinal(aid)
	if a["status"] != "TimeOut" {
		t.Errorf("after the offline queue = %v, want TimeOut", a["status"])
	}
	if cmd := a["commands"].([]any)[0].(map[string]any); cmd["commandStatus"] != "Created" || cmd["startTime"] != nil {
		t.Errorf("command of an expired request = %v, want never started", cmd)
	}
	if s.sessionsNow() != 0 {
		t.Errorf("sessions after expiry = %d, want 0", s.sessionsNow())
	}
}

func TestOfflineDeviceRunsWhenBack(t *testing.T) {
	s := MustStart(t, Options{Machines: 20, TimeScale: 600})
	c := newClient(t, s, App{})
	c.mustUpload("hello.sh", []byte("echo hi\n"))
	id := onlineMachine(t, s, "linux")
	s.SetMachineOnline(id, false)
	aid := c.startLR(id, runScriptBody("hello.sh", ""))
	time.Sleep(50 * time.Millisecond) // several pickup delays at this scale
	if a := c.do("GET", "/api/machineactions/"+aid, nil).json(t); a["status"] != "Pending" {
		t.Fatalf("offline device action = %v, want Pending", a["status"])
	}
	s.SetMachineOnline(id, true)
	if a := c.waitFinal(aid); a["status"] != "Succeeded" {
		t.Errorf("after the device came back = %v, want Succeeded", a["status"])
	}
}

func TestScriptTimeout(t *testing.T) {
	// 10 minutes at 1200x is half a second.
	s := MustStart(t, Options{Machines: 20, TimeScale: 1200})
	c := newClient(t, s, App{})
	c.mustUpload("hang.sh", []byte("echo started\nsleep 600\n"))
	aid := c.startLR(onlineMachine(t, s, "linux"), runScriptBody("hang.sh", ""))
	a := c.waitFinal(aid)
	cmd := a["commands"].([]any)[0].(map[string]any)
	errs := cmd["errors"].([]any)
	if a["status"] != "Failed" || cmd["commandStatus"] != "Failed" || len(errs) != 1 || !strings.Contains(errs[0].(string), "timed out") {
		t.Errorf("timed-out script: action %v, command %v", a["status"], cmd)
	}
	if r := c.do("GET", "/api/machineactions/"+aid+"/GetLiveResponseResultDownloadLink(index=0)", nil); r.status != 404 {
		t.Errorf("result of a failed command = %d, want 404", r.status)
	}
}

func TestCancelRunningScript(t *testing.T) {
	s := MustStart(t, Options{Machines: 20, TimeScale: 600})
	c := newClient(t, s, App{})
	c.mustUpload("wait.sh", sleepScript)
	aid := c.startLR(onlineMachine(t, s, "linux"), runScriptBody("wait.sh", ""))
	for range 500 {
		if c.do("GET", "/api/machineactions/"+aid, nil).json(t)["status"] == "InProgress" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := c.do("POST", "/api/machineactions/"+aid+"/cancel", map[string]string{"Comment": "enough"})
	if r.status != 200 || r.json(t)["status"] != "Cancelled" {
		t.Fatalf("cancel = %d %s", r.status, r.body)
	}
	if s.sessionsNow() != 0 {
		t.Errorf("sessions after cancel = %d, want 0", s.sessionsNow())
	}
	// The status stays Cancelled once the killed script is reaped.
	time.Sleep(20 * time.Millisecond)
	if st := c.do("GET", "/api/machineactions/"+aid, nil).json(t)["status"]; st != "Cancelled" {
		t.Errorf("status after the kill = %v, want Cancelled", st)
	}
}

func TestResultLinkExpires(t *testing.T) {
	s := MustStart(t, Options{Machines: 20, Limits: Limits{PickupDelay: time.Millisecond, ResultLinkTTL: 1500 * time.Millisecond}})
	c := newClient(t, s, App{})
	c.mustUpload("hello.sh", []byte("echo hi\n"))
	aid := c.startLR(onlineMachine(t, s, "linux"), runScriptBody("hello.sh", ""))
	c.waitFinal(aid)
	link := c.do("GET", "/api/machineactions/"+aid+"/GetLiveResponseResultDownloadLink(index=0)", nil).json(t)["value"].(string)
	if r := download(t, s, link); r.status != 200 {
		t.Fatalf("fresh link = %d", r.status)
	}
	time.Sleep(1600 * time.Millisecond)
	r := download(t, s, link)
	if r.status != 403 || !strings.Contains(string(r.body), "AuthenticationFailed") {
		t.Errorf("expired link = %d %s, want 403 AuthenticationFailed", r.status, r.body)
	}
	fresh := c.do("GET", "/api/machineactions/"+aid+"/GetLiveResponseResultDownloadLink(index=0)", nil).json(t)["value"].(string)
	if r := download(t, s, fresh); r.status != 200 {
		t.Errorf("regenerated link = %d, want 200", r.status)
	}
	if r := download(t, s, strings.Replace(fresh, "sig=", "sig=x", 1)); r.status != 403 {
		t.Errorf("tampered link = %d, want 403", r.status)
	}
}

func TestFailNext(t *testing.T) {
	s := MustStart(t, Options{Machines: 3})
	c := newClient(t, s, App{})
	s.FailNext("GET", "/api/machines", 503, 2)
	for i := range 2 {
		if r := c.do("GET", "/api/machines", nil); r.status != 503 || !guidRE.MatchString(r.json(t)["error"].(map[string]any)["target"].(string)) {
			t.Errorf("call %d = %d %s, want 503 envelope", i, r.status, r.body)
		}
	}
	if r := c.do("GET", "/api/machines", nil); r.status != 200 {
		t.Errorf("third call = %d, want 200", r.status)
	}
}

func (s *Sim) sessionsNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}
