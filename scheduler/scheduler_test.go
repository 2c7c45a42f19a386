package scheduler_test

import (
	"bytes"
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/blobstore"
	"github.com/quarry-dfir/quarry/collectorbin"
	"github.com/quarry-dfir/quarry/defendersim"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/integration"
	"github.com/quarry-dfir/quarry/jobs"
	"github.com/quarry-dfir/quarry/scheduler"
	"github.com/quarry-dfir/quarry/scheduler/limit"
	"github.com/quarry-dfir/quarry/secret"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
	"github.com/quarry-dfir/quarry/xdr"
	_ "github.com/quarry-dfir/quarry/xdr/defender" // registers the provider
)

// scale is the emulator's and the scheduler's TimeScale: a Defender minute lasts a second.
const scale = 60

// windowMargin is the rate window's margin of real time (see newEnvWith).
const windowMargin = 50 * time.Millisecond

// maxRunning is the test's slot limit, below Defender's 25 so that waiting for a slot happens.
const maxRunning = 6

type env struct {
	t       *testing.T
	sim     *defendersim.Sim
	sched   *scheduler.Scheduler
	cfg     scheduler.Config
	db      *sqldb.DB
	runner  *jobs.Runner
	acqs    quarry.AcquisitionService
	hosts   quarry.HostService
	integ   *integration.Service
	conn    *quarry.Connection
	project *quarry.Project

	pollInterval time.Duration // River's, see envOptions
}

// newEnv runs Quarry's real pieces on SQLite and loopback: the intake and collector download
// behind an httptest server (the public URL), River, the SQL limiter, and the Defender emulator.
func newEnv(t *testing.T) *env {
	return newEnvWith(t, envOptions{machines: 100, scale: scale, maxRunning: maxRunning})
}

// envOptions size an environment: the emulator's devices, the TimeScale of both sides, the
// scheduler's slot limit, and an optional bootstrap replacement (Config.ScriptOverride).
type envOptions struct {
	machines   int
	scale      float64
	maxRunning int
	script     func(os string) ([]byte, error)
	heartbeat  time.Duration // Config.HeartbeatTimeout; default an hour
	// tokenLifetime is the emulator's access token lifetime (simulated time); default an hour.
	tokenLifetime time.Duration
	// pollInterval is River's fetch interval; default 20 ms.
	pollInterval time.Duration
	// offlineExpiry is Config.OfflineExpiry (Defender time); default the scheduler's.
	offlineExpiry time.Duration
	// wrap, when set, wraps the provider client: fault injection at the platform boundary.
	wrap func(xdr.Client) xdr.Client
	// releaseDir is the collector store's folder of release builds, if any.
	releaseDir string
	// sign is Config.Sign.
	sign func(ctx context.Context, ps1 []byte) ([]byte, error)
}

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := t.Context()
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	sim, err := defendersim.Start(ctx, defendersim.Options{Machines: o.machines, Seed: 11, TimeScale: o.scale, DataDir: t.TempDir(),
		Limits: defendersim.Limits{MaxSessions: 25, LiveResponsePerMinute: 10, TokenLifetime: o.tokenLifetime}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })

	box, err := secret.NewBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, sim: sim, acqs: sqldb.NewAcquisitionService(db), hosts: sqldb.NewHostService(db)}
	e.integ = &integration.Service{Connections: sqldb.NewConnectionService(db), Hosts: e.hosts, Box: box}
	app := sim.DefaultApp()
	e.conn, _, err = e.integ.Create(ctx, integration.NewConnection{Provider: "defender", Name: "sim", TenantID: app.TenantID,
		ClientID: app.ClientID, ClientSecret: app.ClientSecret, Cloud: "custom", APIURL: sim.APIURL(),
		AuthorityURL: sim.AuthorityURL(), CACertPEM: string(sim.CACertPEM())})
	if err != nil {
		t.Fatal(err)
	}
	e.project = &quarry.Project{Name: "case"}
	if err := sqldb.NewProjectService(db).CreateProject(ctx, e.project); err != nil {
		t.Fatal(err)
	}

	blobURL, err := blobstore.DefaultURL(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := blobstore.Open(ctx, blobURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	in, err := intake.New(intake.Config{Acquisitions: e.acqs, Evidence: sqldb.NewEvidenceService(db), Tokens: sqldb.NewUploadTokenService(db),
		Enrol: sqldb.NewEnrolTokenService(db), Audit: sqldb.NewAuditService(db), Bucket: bucket, BlobURL: blobURL,
		UploadDir: t.TempDir(), PublicURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	store := collectorbin.New(t.TempDir(), o.releaseDir, "test", nil)
	mux.Handle(collectorbin.DownloadPrefix, store.Handler(in.AuthorizeEnrolToken))
	mux.Handle("/", in.Handler())

	// The window has a margin of real time (quarry serve --lr-window-margin, a second in
	// production) against jitter in when a launch reaches the emulator; 50 ms here, as the time
	// scale shortens the window but not the jitter of a loaded machine.
	limits := limit.Fixed(limit.Limits{MaxRunning: o.maxRunning, LaunchesPerWindow: 10, Window: time.Duration(float64(time.Minute)/o.scale) + windowMargin})
	provider, _ := xdr.Lookup("defender")
	e.cfg = scheduler.Config{Acquisitions: e.acqs, Connections: e.integ.Connections, Hosts: e.hosts,
		Integrations: e.integ, UploadTokens: sqldb.NewUploadTokenService(db), Limiter: sqldb.NewLimiter(db, limits), Intake: in, Collectors: store, PublicURL: srv.URL,
		Limits: limits, PollEvery: 100 * time.Millisecond, HeartbeatTimeout: cmp.Or(o.heartbeat, time.Hour), TimeScale: o.scale, ScriptOverride: o.script,
		OfflineExpiry: o.offlineExpiry, Sign: o.sign,
		// The provider runs its own rate windows at the emulator's pace.
		Client: func(ctx context.Context, c *quarry.Connection) (xdr.Client, error) {
			client, err := provider.Open(xdr.Config{TenantID: c.TenantID, ClientID: c.ClientID, ClientSecret: app.ClientSecret, Cloud: c.Cloud,
				APIURL: c.APIURL, AuthorityURL: c.AuthorityURL, CACertPEM: []byte(c.CACertPEM), TimeScale: o.scale})
			if err == nil && o.wrap != nil {
				client = o.wrap(client)
			}
			return client, err
		}}
	if os.Getenv("QUARRY_TEST_LOG") != "" {
		e.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	e.db = db
	e.pollInterval = o.pollInterval
	e.start()
	return e
}

// start runs a scheduler and River on the environment's database, as a server process does.
func (e *env) start() {
	e.t.Helper()
	var err error
	e.sched, err = scheduler.New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	workers := river.NewWorkers()
	periodic := e.sched.Register(workers)
	runner, err := jobs.New(e.db, jobs.Config{Logger: cmp.Or(e.cfg.Logger, slog.New(slog.DiscardHandler)), Workers: workers, PeriodicJobs: periodic, TestOnly: true, PollInterval: cmp.Or(e.pollInterval, 20*time.Millisecond)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.sched.SetClient(runner.Client())
	if err := runner.Start(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	e.runner = runner
	e.t.Cleanup(e.stop)
}

// stop stops River as a shutting-down server does; stopping twice does nothing.
func (e *env) stop() {
	if e.runner == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.runner.Stop(ctx)
	e.runner = nil
}

// pick returns n Unix hosts of the inventory and sets them online or offline in the emulator.
func (e *env) pick(n int, online bool, skip map[string]bool) []string {
	e.t.Helper()
	var ids []string
	for _, m := range e.sim.Machines() {
		if len(ids) == n {
			break
		}
		if skip[m.ID] || !(strings.HasPrefix(m.OSPlatform, "Linux") || strings.HasPrefix(m.OSPlatform, "macOS") || m.OSPlatform == "Ubuntu") {
			continue
		}
		e.sim.SetMachineOnline(m.ID, online)
		skip[m.ID] = true
		ids = append(ids, m.ID)
	}
	if len(ids) != n {
		e.t.Fatalf("the emulator has %d Linux/macOS devices, want %d", len(ids), n)
	}
	return ids
}

func (e *env) refresh() {
	e.t.Helper()
	if err := e.integ.Refresh(e.t.Context(), e.conn); err != nil {
		e.t.Fatal(err)
	}
}

// wait polls until every acquisition is in one of the states, and returns them.
func (e *env) wait(ids []int64, states ...string) []*quarry.Acquisition {
	e.t.Helper()
	return e.waitFor(ids, 45*time.Second, states...)
}

// waitFor is wait with a deadline. It looks less often at many acquisitions, so as not to load
// the database the scheduler works on.
func (e *env) waitFor(ids []int64, timeout time.Duration, states ...string) []*quarry.Acquisition {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var out []*quarry.Acquisition
		done := true
		for _, id := range ids {
			a, err := e.acqs.FindAcquisitionByID(e.t.Context(), id)
			if err != nil {
				e.t.Fatal(err)
			}
			out = append(out, a)
			if !slices.Contains(states, a.State) {
				done = false
			}
		}
		if done {
			return out
		}
		if time.Now().After(deadline) {
			for _, a := range out {
				e.t.Logf("acquisition %d (%s): %s %q", a.ID, a.HostName, a.State, a.Error)
			}
			e.t.Fatalf("acquisitions did not all reach %v", states)
		}
		time.Sleep(max(50*time.Millisecond, time.Duration(len(ids))*time.Millisecond))
	}
}

func ids(list []*quarry.Acquisition) []int64 {
	var out []int64
	for _, a := range list {
		out = append(out, a.ID)
	}
	return out
}

// TestAcquireThroughEmulator acquires twelve online and two offline hosts at once: every online
// one is collected and received, the offline ones wait, and the emulator never saw a limit
// broken or a second session on a device.
func TestAcquireThroughEmulator(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	used := map[string]bool{}
	online, offline := e.pick(12, true, used), e.pick(2, false, used)
	cancelHost := e.pick(1, true, used)
	e.refresh()

	got, err := e.sched.Acquire(ctx, e.project.ID, e.conn.ID, append(append([]string{}, online...), offline...), "light", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 14 || got[0].State != quarry.AcquisitionQueued || got[0].Source != quarry.SourceXDR || got[0].HostName == "" {
		t.Fatalf("Acquire = %d acquisitions, first %+v", len(got), got[0])
	}

	t.Run("Duplicate", func(t *testing.T) {
		_, err := e.sched.Acquire(ctx, e.project.ID, e.conn.ID, []string{online[3]}, "light", false)
		if quarry.ErrorCode(err) != quarry.ECONFLICT || !strings.Contains(quarry.ErrorMessage(err), got[3].HostName) {
			t.Fatalf("second Acquire = %v, want ECONFLICT naming %s", err, got[3].HostName)
		}
	})
	t.Run("Refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name, host, profile string
			code                string
		}{
			{"UnknownHost", "no-such-host", "light", quarry.ENOTFOUND},
			{"BadProfile", online[0], "everything", quarry.EINVALID},
		} {
			_, err := e.sched.Acquire(ctx, e.project.ID, e.conn.ID, []string{tt.host}, tt.profile, true)
			if quarry.ErrorCode(err) != tt.code {
				t.Errorf("%s: Acquire = %v, want %s", tt.name, err, tt.code)
			}
		}
	})

	done := e.wait(ids(got[:12]), quarry.AcquisitionReceived)
	waited := 0
	for _, a := range done {
		var seen []string
		for _, h := range a.History {
			seen = append(seen, h.State)
		}
		if !slices.Contains(seen, quarry.AcquisitionLaunching) || a.EvidenceID == nil {
			t.Errorf("acquisition %d: history %v, evidence %v", a.ID, seen, a.EvidenceID)
		}
		if slices.Contains(seen, quarry.AcquisitionWaitingForSlot) {
			waited++
		}
	}
	// Twelve hosts, six slots and ten launches a window: some must have waited.
	if waited == 0 {
		t.Errorf("no acquisition waited for a slot")
	}
	for _, a := range e.wait(ids(got[12:]), quarry.AcquisitionOfflinePending) {
		if a.HostID != offline[0] && a.HostID != offline[1] {
			t.Errorf("acquisition %d of %s is offline_pending", a.ID, a.HostID)
		}
	}

	t.Run("BackOnline", func(t *testing.T) {
		// The parked launch refreshes the inventory itself and goes on when the host returns.
		e.sim.SetMachineOnline(got[12].HostID, true)
		e.wait(ids(got[12:13]), quarry.AcquisitionReceived)
		if a := e.wait(ids(got[13:]), quarry.AcquisitionOfflinePending)[0]; a.Error != "" {
			t.Errorf("offline acquisition error %q", a.Error)
		}
	})
	t.Run("CancelLaunching", func(t *testing.T) {
		// The inventory still shows the host online, but the device is gone: its action stays
		// pending, so the cancel meets it running.
		e.sim.SetMachineOnline(cancelHost[0], false)
		list, err := e.sched.Acquire(ctx, e.project.ID, e.conn.ID, cancelHost, "light", false)
		if err != nil {
			t.Fatal(err)
		}
		e.wait(ids(list), quarry.AcquisitionLaunching)
		before := e.sim.Stats().CallsByEndpoint["CancelMachineAction"]
		a, err := e.sched.Cancel(ctx, list[0].ID)
		if err != nil {
			t.Fatalf("Cancel = %v", err)
		}
		if a.State != quarry.AcquisitionCancelled || e.sim.Stats().CallsByEndpoint["CancelMachineAction"] != before+1 {
			t.Fatalf("after Cancel: state %s, %d action cancels", a.State, e.sim.Stats().CallsByEndpoint["CancelMachineAction"]-before)
		}
		if _, err := e.sched.Cancel(ctx, list[0].ID); quarry.ErrorCode(err) != quarry.ECONFLICT {
			t.Errorf("second Cancel = %v, want ECONFLICT", err)
		}
		again, err := e.sched.Retry(ctx, list[0].ID)
		if err != nil || again.ID == list[0].ID || again.HostID != cancelHost[0] {
			t.Fatalf("Retry = %+v, %v", again, err)
		}
		// Its action stays pending too; after two (scaled) minutes the scheduler sees the host
		// offline, cancels the action and parks the acquisition until the host returns.
		e.wait([]int64{again.ID}, quarry.AcquisitionOfflinePending)
		e.sim.SetMachineOnline(cancelHost[0], true)
		e.wait([]int64{again.ID}, quarry.AcquisitionReceived)
	})

	st := e.sim.Stats()
	t.Logf("emulator: %d sessions, at most %d at once, calls %v", st.SessionsStarted, st.MaxConcurrentSessions, st.CallsByEndpoint)
	if st.MaxConcurrentSessions > maxRunning || st.RejectedActiveRequest != 0 || st.RejectedRate != 0 || st.RejectedConcurrency != 0 {
		t.Errorf("emulator stats %+v: want at most %d sessions and no rejection", st, maxRunning)
	}
	if st.SessionsStarted < 14 {
		t.Errorf("emulator started %d sessions, want at least 14", st.SessionsStarted)
	}
}

// TestWatchdog fails a collection whose collector went silent for HeartbeatTimeout and leaves one
// that reported recently.
func TestWatchdog(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	later := time.Now().Add(2 * time.Hour)
	cfg := e.cfg
	cfg.TimeScale = 1
	cfg.Now = func() time.Time { return later }
	s, err := scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var list []int64
	for _, name := range []string{"silent", "talking"} {
		a := &quarry.Acquisition{ProjectID: e.project.ID, ConnectionID: &e.conn.ID, HostID: name, HostName: name,
			Source: quarry.SourceXDR, Profile: "light", State: quarry.AcquisitionCollecting}
		if err := e.acqs.CreateAcquisition(ctx, a); err != nil {
			t.Fatal(err)
		}
		list = append(list, a.ID)
	}
	if err := e.acqs.UpdateAcquisitionProgress(ctx, list[1], quarry.Progress{Phase: "collecting"}, later.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Watchdog(ctx); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct{ state, msg string }{
		{quarry.AcquisitionFailed, "no heartbeat from the collector for 60 minutes"},
		{quarry.AcquisitionCollecting, ""},
	} {
		a, err := e.acqs.FindAcquisitionByID(ctx, list[i])
		if err != nil {
			t.Fatal(err)
		}
		if a.State != want.state || a.Error != want.msg {
			t.Errorf("acquisition %s = %s %q, want %s %q", a.HostName, a.State, a.Error, want.state, want.msg)
		}
	}
}

// TestHostBusy: a device that an analyst holds in a Live Response session of their own fails the
// acquisition at once, naming the other action, and frees the slot.
func TestHostBusy(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	host := e.pick(1, true, map[string]bool{})[0]
	e.refresh()
	client, err := e.cfg.Client(ctx, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	// The analyst's session lasts until the test ends it: however long the launch takes to get
	// there (the first one may build quarry-host), it finds the device held.
	if err := client.PutScript(ctx, xdr.Script{Name: "analyst.sh", Content: []byte("#!/bin/bash\nsleep 300\n")}); err != nil {
		t.Fatal(err)
	}
	other, err := client.RunScript(ctx, host, xdr.ScriptRun{Script: "analyst.sh", Comment: "analyst at work"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.CancelAction(context.WithoutCancel(ctx), other.ID, "test over")
	list, err := e.sched.Acquire(ctx, e.project.ID, e.conn.ID, []string{host}, "triage", false)
	if err != nil {
		t.Fatal(err)
	}
	a := e.wait(ids(list), quarry.AcquisitionFailed, quarry.AcquisitionReceived)[0]
	if a.State != quarry.AcquisitionFailed || !strings.Contains(a.Error, "host busy: another Live Response session (action "+other.ID) {
		t.Fatalf("acquisition = %s %q, want failed naming action %s", a.State, a.Error, other.ID)
	}
	if n, err := e.cfg.Limiter.Running(ctx, e.conn.ID); err != nil || n != 0 {
		t.Errorf("running leases = %d, %v; want 0", n, err)
	}
}

// TestRestart: a server that stops while its acquisitions wait for slots or launch leaves them to
// the next one, which finishes them from the database and River alone.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	hosts := e.pick(8, true, map[string]bool{})
	e.refresh()
	list, err := e.sched.Acquire(t.Context(), e.project.ID, e.conn.ID, hosts, "light", false)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(ids(list[:1]), quarry.AcquisitionLaunching, quarry.AcquisitionCollecting, quarry.AcquisitionUploading, quarry.AcquisitionReceived)
	e.stop()
	e.start()
	e.wait(ids(list), quarry.AcquisitionReceived)
	if st := e.sim.Stats(); st.RejectedActiveRequest != 0 || st.RejectedRate != 0 || st.MaxConcurrentSessions > maxRunning {
		t.Errorf("emulator stats %+v", st)
	}
}
