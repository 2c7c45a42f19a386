package alerts_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/alerts"
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
	xdrdefender "github.com/quarry-dfir/quarry/xdr/defender"
)

// e2eScale is the emulator's, the scheduler's and the poller's TimeScale: a Defender minute
// lasts a second (the scheduler's own tests use the same).
const e2eScale = 60

// TestRuleAcquiresThroughScheduler is the demo's path end to end on Quarry's real pieces: the
// emulator raises alerts, the poller runs as a River periodic job, an enabled rule starts
// acquisitions through the real scheduler (which launches them through Live Response on the
// emulator), each alert's host is acquired once however many alerts it raises, the alerts link
// to their acquisitions, the actions are audited, and the Defender alerts carry a comment.
func TestRuleAcquiresThroughScheduler(t *testing.T) {
	ctx := t.Context()
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	sim, err := defendersim.Start(ctx, defendersim.Options{Machines: 40, Seed: 11, TimeScale: e2eScale, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	box, err := secret.NewBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	acqs, hosts, conns := sqldb.NewAcquisitionService(db), sqldb.NewHostService(db), sqldb.NewConnectionService(db)
	integ := &integration.Service{Connections: conns, Hosts: hosts, Box: box}
	app := sim.DefaultApp()
	conn, _, err := integ.Create(ctx, integration.NewConnection{Provider: "defender", Name: "sim", TenantID: app.TenantID,
		ClientID: app.ClientID, ClientSecret: app.ClientSecret, Cloud: "custom", APIURL: sim.APIURL(),
		AuthorityURL: sim.AuthorityURL(), CACertPEM: string(sim.CACertPEM())})
	if err != nil {
		t.Fatal(err)
	}
	project := mustProject(t, db, "alert triage")

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
	in, err := intake.New(intake.Config{Acquisitions: acqs, Evidence: sqldb.NewEvidenceService(db), Tokens: sqldb.NewUploadTokenService(db),
		Enrol: sqldb.NewEnrolTokenService(db), Audit: sqldb.NewAuditService(db), Bucket: bucket, BlobURL: blobURL,
		UploadDir: t.TempDir(), PublicURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	store := collectorbin.New(t.TempDir(), "", "test", nil)
	mux.Handle(collectorbin.DownloadPrefix, store.Handler(in.AuthorizeEnrolToken))
	mux.Handle("/", in.Handler())

	provider, _ := xdr.Lookup("defender")
	openClient := func(ctx context.Context, c *quarry.Connection) (xdr.Client, error) {
		return provider.Open(xdr.Config{TenantID: c.TenantID, ClientID: c.ClientID, ClientSecret: app.ClientSecret, Cloud: c.Cloud,
			APIURL: c.APIURL, AuthorityURL: c.AuthorityURL, CACertPEM: []byte(c.CACertPEM), TimeScale: e2eScale})
	}
	var logger *slog.Logger
	if os.Getenv("QUARRY_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	limits := limit.Fixed(limit.Limits{MaxRunning: 6, LaunchesPerWindow: 10, Window: time.Second + 50*time.Millisecond})
	sched, err := scheduler.New(scheduler.Config{Acquisitions: acqs, Connections: conns, Hosts: hosts, Integrations: integ,
		UploadTokens: sqldb.NewUploadTokenService(db), Limiter: sqldb.NewLimiter(db, limits), Intake: in, Collectors: store, PublicURL: srv.URL,
		Limits: limits, PollEvery: 100 * time.Millisecond, HeartbeatTimeout: time.Hour, TimeScale: e2eScale, Client: openClient, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	audit := sqldb.NewAuditService(db)
	alertStore, rules := sqldb.NewAlertService(db), sqldb.NewDetectionRuleService(db)
	svc, err := alerts.New(alerts.Config{Alerts: alertStore, Rules: rules, Connections: conns, Projects: sqldb.NewProjectService(db),
		Audit: audit, Acquirer: sched, Client: openClient, TimeScale: e2eScale, RuleLookback: 48 * time.Hour,
		PublicURL: "https://quarry.example", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	rule := &quarry.DetectionRule{Name: "acquire every alerted host", Enabled: true, ProjectID: &project.ID, CommentOnAlert: true}
	if err := rules.CreateDetectionRule(ctx, rule); err != nil {
		t.Fatal(err)
	}

	workers := river.NewWorkers()
	periodic := append(sched.Register(workers), svc.Register(workers)...)
	runner, err := jobs.New(db, jobs.Config{Logger: slog.New(slog.DiscardHandler), Workers: workers, PeriodicJobs: periodic, TestOnly: true,
		PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sched.SetClient(runner.Client())
	if err := runner.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			runner.Stop(sctx)
		}
	}
	t.Cleanup(stop)

	// Wait (bounded) until the rule acted and some host raised a second alert after its
	// acquisition started: the case de-duplication is for.
	deadline := time.Now().Add(90 * time.Second)
	for {
		as, _, err := alertStore.FindAlerts(ctx, quarry.AlertFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		perHost := map[string]int{}
		acted := 0
		for _, a := range as {
			if !a.Pending {
				perHost[a.HostID]++
			}
			acted += len(a.Acquisitions)
		}
		repeat := false
		for _, n := range perHost {
			repeat = repeat || n >= 2
		}
		if acted > 0 && repeat {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d alerts, %d acquisitions by the rule, alerts per host %v", len(as), acted, perHost)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()

	as, _, err := alertStore.FindAlerts(ctx, quarry.AlertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	list, _, err := acqs.FindAcquisitions(ctx, quarry.AcquisitionFilter{ProjectID: &project.ID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	acqByHost := map[string][]*quarry.Acquisition{}
	for _, a := range list {
		acqByHost[a.HostID] = append(acqByHost[a.HostID], a)
	}
	linkedAcq := map[int64]int{}
	evaluated := map[string]bool{}
	for _, a := range as {
		for _, l := range a.Acquisitions {
			linkedAcq[l.AcquisitionID]++
			if l.RuleID == nil || *l.RuleID != rule.ID || l.ProjectID != project.ID {
				t.Errorf("link %+v", l)
			}
		}
		if !a.Pending {
			evaluated[a.HostID] = true
		}
	}
	for host := range evaluated {
		if n := len(acqByHost[host]); n != 1 {
			t.Errorf("host %s: %d acquisitions, want exactly one", host, n)
		}
	}
	for _, a := range list {
		if linkedAcq[a.ID] != 1 {
			t.Errorf("acquisition %d of %s is linked to %d alerts, want 1", a.ID, a.HostName, linkedAcq[a.ID])
		}
		if a.Source != quarry.SourceXDR || a.ConnectionID == nil || *a.ConnectionID != conn.ID {
			t.Errorf("acquisition %+v", a)
		}
	}
	if st := sim.Stats(); st.SessionsStarted == 0 {
		t.Errorf("the scheduler started no Live Response session on the emulator: %+v", st)
	}
	entries, _, err := audit.FindAuditEntries(ctx, quarry.AuditFilter{Action: "detection_rule.acquire", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(list) {
		t.Errorf("%d audit entries for %d acquisitions", len(entries), len(list))
	}
	// The Defender alert of each acquisition says which acquisition it caused.
	c, err := openClient(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		for _, l := range a.Acquisitions {
			got, err := c.(*xdrdefender.Client).API().GetAlert(ctx, a.ExternalID)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, cm := range got.Comments {
				found = found || strings.Contains(cm.Comment, "triage acquisition "+itoa(l.AcquisitionID))
			}
			if !found {
				t.Errorf("alert %s has no comment naming acquisition %d: %+v", a.ExternalID, l.AcquisitionID, got.Comments)
			}
		}
	}
	t.Logf("%d alerts, %d hosts evaluated, %d acquisitions, %d Live Response sessions", len(as), len(evaluated), len(list), sim.Stats().SessionsStarted)
}
