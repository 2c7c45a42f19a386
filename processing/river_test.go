package processing_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/jobs"
	"github.com/quarry-dfir/quarry/processing"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// startRunner runs River on db with the processor's workers (and its sweep), as cmd/quarry
// wires them. With start false it only migrates, so jobs can be inserted and inspected.
func startRunner(t *testing.T, db *sqldb.DB, p *processing.Processor, noStart bool) *jobs.Runner {
	t.Helper()
	workers := river.NewWorkers()
	periodic := p.Register(workers)
	r, err := jobs.New(db, jobs.Config{Logger: slog.New(slog.DiscardHandler), Workers: workers, PeriodicJobs: periodic,
		Queues: p.Queues(), TestOnly: true, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.SetClient(r.Client())
	if noStart {
		if err := r.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Stop(ctx)
	})
	return r
}

// waitState waits (bounded) until the evidence reaches state.
func waitState(t *testing.T, e *env, id int64, state string) *quarry.Evidence {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ev := e.evidence(id)
		if ev.State == state {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("evidence %d still %s (report %+v), want %s", id, ev.State, ev.Processing, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJobs runs processing through River on both dialects: the sweep picks up evidence received
// without a job (RunOnStart), and OnReceived queues the next.
func TestJobs(t *testing.T) {
	pkg, _ := collect(t, hostRoot(t))
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, processing.Config{})
		orphan := e.receive(pkg) // received while no server ran: only the sweep finds it
		startRunner(t, db, e.proc, false)
		got := waitState(t, e, orphan.ID, quarry.EvidenceProcessed)
		if got.Processing.Stage != quarry.StageDone || got.Processing.Events == 0 {
			t.Errorf("swept evidence report %+v", got.Processing)
		}
		next := e.receive(pkg)
		e.proc.OnReceived(context.Background(), next)
		waitState(t, e, next.ID, quarry.EvidenceProcessed)
		if a, b := e.count(orphan.ID), e.count(next.ID); a != b || a == 0 {
			t.Errorf("the same package gave %d and %d events", a, b)
		}
	})
}

// TestEnqueueUnique: one evidence item is queued once while its job waits.
func TestEnqueueUnique(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.DialectSQLite)
	e := newEnv(t, db, processing.Config{})
	r := startRunner(t, db, e.proc, true)
	ctx := context.Background()
	if err := e.proc.Enqueue(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if err := e.proc.Enqueue(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if err := e.proc.Enqueue(ctx, 43); err != nil {
		t.Fatal(err)
	}
	res, err := r.Client().JobList(ctx, river.NewJobListParams().Kinds(processing.ProcessArgs{}.Kind()))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) != 2 {
		t.Errorf("%d jobs queued for evidence 42, 42, 43; want 2", len(res.Jobs))
	}
}

// TestDeadRunRevived: a server that died while processing leaves the evidence in "processing"
// and its River job counted as running for hours (the job's timeout); the next server's sweep
// queues it again, once, and the run starts from nothing: what the dead run wrote goes.
func TestDeadRunRevived(t *testing.T) {
	pkg, _ := collect(t, hostRoot(t))
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db, processing.Config{})
		fresh := e.receive(pkg)
		dead := e.receive(pkg)
		// What the dead server left: the states of a run under way, and half its events.
		if _, err := e.acq.TransitionAcquisition(ctx, dead.AcquisitionID, quarry.AcquisitionTransition{State: quarry.AcquisitionProcessing}); err != nil {
			t.Fatal(err)
		}
		err := e.ev.UpdateEvidenceProcessing(ctx, dead.ID, quarry.EvidenceProcessing,
			&quarry.ProcessingReport{Stage: quarry.StageParsing, StartedAt: time.Now().Add(-time.Hour).UTC(), FilesTotal: 30, FilesDone: 12})
		if err != nil {
			t.Fatal(err)
		}
		half := &quarry.Event{ProjectID: e.pid, EvidenceID: dead.ID, Timestamp: time.Now().UTC(), Source: "syslog", Host: "web-03.example", Message: "written by the dead run"}
		if err := e.events.InsertEvents(ctx, []*quarry.Event{half}); err != nil {
			t.Fatal(err)
		}

		startRunner(t, db, e.proc, false)
		waitState(t, e, fresh.ID, quarry.EvidenceProcessed)
		got := waitState(t, e, dead.ID, quarry.EvidenceProcessed)
		if got.Processing.Stage != quarry.StageDone {
			t.Errorf("revived run's report: %+v", got.Processing)
		}
		if a, b := e.count(fresh.ID), e.count(dead.ID); a != b || a == 0 {
			t.Errorf("the revived run gave %d events, a fresh one %d", b, a)
		}
		if left := e.find(dead.ID, "syslog", "dead"); len(left) != 0 {
			t.Errorf("the dead run's events are still there: %v", left[0].Message)
		}
		if a, err := e.acq.FindAcquisitionByID(ctx, dead.AcquisitionID); err != nil || a.State != quarry.AcquisitionCompleted {
			t.Errorf("acquisition after the revived run = %v, %v", a, err)
		}
	})
}
