package scheduler_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/bootstrap"
	"github.com/quarry-dfir/quarry/bootstrap/bootstraptest"
	"github.com/quarry-dfir/quarry/scheduler"
	"github.com/quarry-dfir/quarry/xdr"
)

// history returns the states an acquisition went through, in order.
func history(a *quarry.Acquisition) []string {
	var out []string
	for _, h := range a.History {
		out = append(out, h.State)
	}
	return out
}

// acquireOne acquires one online Unix host of the environment.
func (e *env) acquireOne(online bool) *quarry.Acquisition {
	e.t.Helper()
	host := e.pick(1, online, map[string]bool{})
	e.refresh()
	list, err := e.sched.Acquire(e.t.Context(), e.project.ID, e.conn.ID, host, "light", false)
	if err != nil {
		e.t.Fatal(err)
	}
	return list[0]
}

// TestFailingScript: a bootstrap that fails prints its error line and exits non-zero; the
// acquisition fails with that error and the exit code, verbatim, and frees its slot.
func TestFailingScript(t *testing.T) {
	e := newEnvWith(t, envOptions{machines: 30, scale: scale, maxRunning: maxRunning, script: func(family string) ([]byte, error) {
		return []byte("#!/bin/bash\necho 'quarry-host download failed: HTTP 407 from proxy.corp:3128' >&2\n" +
			`echo '{"status":"error","error":"cannot download quarry-host from https://quarry.example: HTTP 407 Proxy Authentication Required"}'` + "\nexit 3\n"), nil
	}})
	a := e.wait([]int64{e.acquireOne(true).ID}, quarry.AcquisitionFailed, quarry.AcquisitionReceived)[0]
	want := "cannot download quarry-host from https://quarry.example: HTTP 407 Proxy Authentication Required (exit code 3)"
	if a.State != quarry.AcquisitionFailed || a.Error != want {
		t.Fatalf("acquisition = %s %q, want failed %q", a.State, a.Error, want)
	}
	if n, err := e.cfg.Limiter.Running(t.Context(), e.conn.ID); err != nil || n != 0 {
		t.Errorf("running leases = %d, %v; want 0", n, err)
	}
}

// TestScriptWithoutStatus: a script that dies before its status line fails the acquisition with
// the exit code and what it wrote to stderr.
func TestScriptWithoutStatus(t *testing.T) {
	e := newEnvWith(t, envOptions{machines: 30, scale: scale, maxRunning: maxRunning, script: func(string) ([]byte, error) {
		return []byte("#!/bin/bash\necho 'curl: (6) Could not resolve host: quarry.example' >&2\nexit 6\n"), nil
	}})
	a := e.wait([]int64{e.acquireOne(true).ID}, quarry.AcquisitionFailed, quarry.AcquisitionReceived)[0]
	if a.State != quarry.AcquisitionFailed || !strings.Contains(a.Error, "exit code 6") || !strings.Contains(a.Error, "Could not resolve host: quarry.example") {
		t.Fatalf("acquisition = %s %q", a.State, a.Error)
	}
}

// TestSilentCollector: the bootstrap reports the collector started, but no collector ever calls
// back; after HeartbeatTimeout the watchdog fails the acquisition saying so.
func TestSilentCollector(t *testing.T) {
	e := newEnvWith(t, envOptions{machines: 30, scale: scale, maxRunning: maxRunning, script: startedOnly, heartbeat: 3 * time.Minute})
	a := e.wait([]int64{e.acquireOne(true).ID}, quarry.AcquisitionFailed, quarry.AcquisitionReceived)[0]
	h := strings.Join(history(a), ">")
	if a.State != quarry.AcquisitionFailed || a.Error != "no heartbeat from the collector for 3 minutes" || !strings.Contains(h, "collecting>failed") {
		t.Fatalf("acquisition = %s %q, history %s", a.State, a.Error, h)
	}
}

// TestOfflineExpiry: an acquisition of a host that stays offline waits in offline_pending and
// expires after OfflineExpiry (Defender drops a queued action after three days).
func TestOfflineExpiry(t *testing.T) {
	e := newEnvWith(t, envOptions{machines: 30, scale: scale, maxRunning: maxRunning, offlineExpiry: 4 * time.Minute})
	a := e.wait([]int64{e.acquireOne(false).ID}, quarry.AcquisitionExpired)[0]
	h := strings.Join(history(a), ">")
	if !strings.Contains(a.Error, "stayed offline for 4m0s") || h != "queued>offline_pending>expired" {
		t.Fatalf("acquisition = %s %q, history %s", a.State, a.Error, h)
	}
	if st := e.sim.Stats(); st.CallsByEndpoint["RunLiveResponse"] != 0 {
		t.Errorf("an offline host was sent %d Live Response requests", st.CallsByEndpoint["RunLiveResponse"])
	}
}

// TestThrottled: Defender answers the launches with 429; the scheduler waits as told and the
// acquisitions still complete.
func TestThrottled(t *testing.T) {
	e := newEnv(t)
	hosts := e.pick(3, true, map[string]bool{})
	e.refresh()
	e.sim.FailNext("POST", "/api/machines/", 429, 4)
	list, err := e.sched.Acquire(t.Context(), e.project.ID, e.conn.ID, hosts, "light", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range e.wait(ids(list), quarry.AcquisitionReceived) {
		if a.EvidenceID == nil {
			t.Errorf("acquisition %d received without evidence", a.ID)
		}
	}
	// Four refused calls and three that went through: the client or the scheduler retried
	// every refusal, and no host got a second session.
	st := e.sim.Stats()
	if st.CallsByEndpoint["RunLiveResponse"] < 3 || st.SessionsStarted != 3 || st.RejectedActiveRequest != 0 {
		t.Errorf("emulator stats %+v", st)
	}
}

// lostAnswer is a platform client whose first RunScript reaches Defender but whose answer is
// lost, as on a connection reset after the request was sent.
type lostAnswer struct {
	xdr.Client
	lost *atomic.Int32
}

func (c lostAnswer) RunScript(ctx context.Context, hostID string, r xdr.ScriptRun) (*xdr.Action, error) {
	act, err := c.Client.RunScript(ctx, hostID, r)
	if err == nil && c.lost.Add(1) == 1 {
		return nil, errors.New("read tcp: connection reset by peer")
	}
	return act, err
}

// TestLostRunScriptAnswer: when a launch's answer is lost the action runs anyway; the scheduler
// finds it and follows it under the same lease instead of launching a second session.
func TestLostRunScriptAnswer(t *testing.T) {
	lost := &atomic.Int32{}
	e := newEnvWith(t, envOptions{machines: 30, scale: scale, maxRunning: maxRunning,
		wrap: func(c xdr.Client) xdr.Client { return lostAnswer{Client: c, lost: lost} }})
	a := e.wait([]int64{e.acquireOne(true).ID}, quarry.AcquisitionReceived)[0]
	// The action was followed (polled) under its lease: had the launch let its lease go on
	// the error, nobody would poll it and the slot would have been free while it ran.
	deadline := time.Now().Add(30 * time.Second)
	for e.sim.Stats().CallsByEndpoint["GetMachineAction"] == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := e.sim.Stats()
	if lost.Load() < 1 || st.SessionsStarted != 1 || st.CallsByEndpoint["RunLiveResponse"] != 1 || st.RejectedActiveRequest != 0 ||
		st.CallsByEndpoint["GetMachineAction"] == 0 {
		t.Fatalf("acquisition %s; emulator stats %+v, lost answers %d", a.State, st, lost.Load())
	}
}

// TestSignedWindowsBootstrap: with a signing certificate configured, the Windows bootstrap that
// reaches the Live Response library carries an Authenticode signature that verifies against it,
// so a tenant can keep unsigned script execution off.
func TestSignedWindowsBootstrap(t *testing.T) {
	cert, key := bootstraptest.CodeSigningCert(t)
	bootstraptest.NeedSignTool(t)
	// A Windows build to pin; the stand-in will find its hash wrong, which does not matter here.
	release := t.TempDir()
	if err := os.WriteFile(filepath.Join(release, "quarry-host_windows_amd64.exe"), []byte("MZ not a real build"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, envOptions{machines: 30, scale: scale, maxRunning: maxRunning, releaseDir: release,
		sign: func(ctx context.Context, ps1 []byte) ([]byte, error) { return bootstrap.Sign(ctx, ps1, cert, key) }})
	var host string
	for _, m := range e.sim.Machines() {
		if strings.HasPrefix(m.OSPlatform, "Windows") {
			e.sim.SetMachineOnline(m.ID, true)
			host = m.ID
			break
		}
	}
	e.refresh()
	list, err := e.sched.Acquire(t.Context(), e.project.ID, e.conn.ID, []string{host}, "light", false)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(ids(list), quarry.AcquisitionFailed, quarry.AcquisitionCollecting, quarry.AcquisitionReceived)
	script, ok := e.sim.LibraryContent(bootstrap.LibraryName(e.conn.ID, "windows"))
	if !ok {
		t.Fatal("no Windows bootstrap in the library")
	}
	if out, err := bootstraptest.Verify(t, script, cert); err != nil {
		t.Fatalf("the library's Windows bootstrap does not verify: %v\n%s", err, out)
	}
}

// refusingLibrary is a tenant whose library refuses every upload.
type refusingLibrary struct {
	xdr.Client
	calls *atomic.Int32
}

func (c refusingLibrary) PutScript(context.Context, xdr.Script) error {
	c.calls.Add(1)
	return errors.New("library upload refused: HTTP 503")
}

// TestLaunchGivesUp: a launch whose error does not pass is tried a bounded number of times, soon
// after each other, and then fails the acquisition with the error; it never sits in queued.
func TestLaunchGivesUp(t *testing.T) {
	calls := &atomic.Int32{}
	e := newEnvWith(t, envOptions{machines: 30, scale: scale, maxRunning: maxRunning,
		wrap: func(c xdr.Client) xdr.Client { return refusingLibrary{Client: c, calls: calls} }})
	a := e.waitFor([]int64{e.acquireOne(true).ID}, 2*time.Minute, quarry.AcquisitionFailed, quarry.AcquisitionReceived)[0]
	if a.State != quarry.AcquisitionFailed || !strings.Contains(a.Error, "library upload refused: HTTP 503") {
		t.Fatalf("acquisition = %s %q", a.State, a.Error)
	}
	if got, want := int(calls.Load()), (scheduler.LaunchArgs{}).InsertOpts().MaxAttempts; got != want {
		t.Errorf("%d uploads tried, want one per attempt: %d", got, want)
	}
	if st := e.sim.Stats(); st.CallsByEndpoint["RunLiveResponse"] != 0 {
		t.Errorf("a launch without its script reached Live Response: %+v", st)
	}
}
