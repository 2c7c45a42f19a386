// Package processing turns received evidence into timeline events: a River job per evidence item
// opens the stored package (read-only), checks it against its manifest, routes each file to a
// parser (routes.yaml, then sniffing), adds file-system and live-state events, writes the events in
// batches and keeps a report of what it did beside the evidence. A periodic sweep picks up evidence
// that was received but never queued (a crash between the two), and Reprocess runs an item again
// from scratch when parsers or rules improved.
package processing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"gocloud.dev/blob"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/fsaccess/archive"
	"github.com/quarry-dfir/quarry/jobs"

	// Host time zones must resolve on a server without a zoneinfo database (a minimal
	// container): logs written in local time would otherwise be read in UTC.
	_ "time/tzdata"
)

// Defaults for Config.
const (
	// DefaultBatchSize keeps each insert short: on SQLite every writer waits for it.
	DefaultBatchSize = 1000
	// DefaultWorkers is how many packages one server processes at once (Config.Workers).
	DefaultWorkers       = 2
	DefaultProgressEvery = time.Second
	DefaultSweepEvery    = time.Minute
	DefaultMaxProblems   = 200
	DefaultMaxGzSize     = 2 << 30
	// DefaultJobTimeout bounds one processing run. River's default (a minute, the job runner's)
	// suits API calls, not a package of gigabytes of logs.
	DefaultJobTimeout = 6 * time.Hour
)

// Config is what a Processor needs. Evidence, Acquisitions, Events and Bucket are required.
type Config struct {
	Evidence     quarry.EvidenceService
	Acquisitions quarry.AcquisitionService
	Events       quarry.EventService
	// Audit records reprocess requests; nil records nothing.
	Audit quarry.AuditService
	// Bucket is the evidence store the intake writes (blobstore.Open).
	Bucket *blob.Bucket
	// Lock runs fn while holding a lock named purpose that every server sharing the database
	// sees (sqldb.DB.WithLock): one evidence item is then processed by one job at a time even
	// when River rescues a long-running job and hands it to another server. nil: only this
	// process is guarded.
	Lock func(ctx context.Context, purpose string, fn func() error) error

	BatchSize     int           // events per InsertEvents call; default DefaultBatchSize
	ProgressEvery time.Duration // how often the report is written while a run goes; default 1 s
	SweepEvery    time.Duration // how often received-but-not-queued evidence is looked for; default 1 min
	MaxProblems   int           // problems kept in the report (all are counted); default DefaultMaxProblems
	MaxGzSize     int64         // bytes a rotated .gz log may expand to; default DefaultMaxGzSize
	JobTimeout    time.Duration // default DefaultJobTimeout
	// Workers is how many packages this server processes at once, in River's queue Queue;
	// default DefaultWorkers. They run beside the other jobs, never instead of them.
	Workers int
	// Archive bounds what a foreign archive (KAPE, Velociraptor, UAC) may expand to; its TempDir
	// holds a tar's expanded files for the length of a run.
	Archive archive.Limits
	Routes  *Routes // default DefaultRoutes()
	// Detectors returns what tags the events of a run on a project's evidence (Sigma rules, IOC
	// lists). It is called once per run, so that what changed since the last run applies; nil
	// tags nothing.
	Detectors func(ctx context.Context, projectID int64) ([]Detector, error)
	Logger    *slog.Logger
	Now       func() time.Time
}

// A Detector tags timeline events with what it finds in them (issue #9): it appends to
// ev.Detections and may raise ev.Severity, never lower it. It must be safe for concurrent use.
type Detector interface {
	Detect(ev *quarry.Event)
}

// Processor processes evidence. It is safe for concurrent use.
type Processor struct {
	cfg Config

	mu      sync.Mutex
	client  jobs.Client
	running map[int64]*evidenceLock // per evidence: one run at a time in this process
	started time.Time               // when this processor was made: runs begun earlier are another process's
	revived map[int64]bool          // evidence whose dead run this process queued again
}

type evidenceLock struct {
	sync.Mutex
	waiters int // runs holding or waiting for it; the entry goes when none is left
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Processor, error) {
	if cfg.Evidence == nil || cfg.Acquisitions == nil || cfg.Events == nil || cfg.Bucket == nil {
		return nil, errors.New("processing: evidence, acquisition and event services and the evidence bucket are required")
	}
	cfg.BatchSize = cmp.Or(cfg.BatchSize, DefaultBatchSize)
	cfg.ProgressEvery = cmp.Or(cfg.ProgressEvery, DefaultProgressEvery)
	cfg.SweepEvery = cmp.Or(cfg.SweepEvery, DefaultSweepEvery)
	cfg.MaxProblems = cmp.Or(cfg.MaxProblems, DefaultMaxProblems)
	cfg.MaxGzSize = cmp.Or(cfg.MaxGzSize, DefaultMaxGzSize)
	cfg.JobTimeout = cmp.Or(cfg.JobTimeout, DefaultJobTimeout)
	cfg.Workers = cmp.Or(cfg.Workers, DefaultWorkers)
	if cfg.Workers < 0 || cfg.BatchSize < 0 || cfg.ProgressEvery < 0 || cfg.SweepEvery < 0 || cfg.MaxProblems < 0 || cfg.MaxGzSize < 0 || cfg.JobTimeout < 0 {
		return nil, errors.New("processing: negative size or duration in config")
	}
	if cfg.Routes == nil {
		r, err := DefaultRoutes()
		if err != nil {
			return nil, err
		}
		cfg.Routes = r
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Processor{cfg: cfg, running: map[int64]*evidenceLock{}, started: cfg.Now(), revived: map[int64]bool{}}, nil
}

// Queue is River's queue of processing jobs (see Queues).
const Queue = "processing"

// Queues is what jobs.Config.Queues needs for processing: its own queue, so that packages
// being processed never take the workers that launches and watches need.
func (p *Processor) Queues() map[string]int { return map[string]int{Queue: p.cfg.Workers} }

// ProcessArgs processes one evidence item.
type ProcessArgs struct {
	EvidenceID int64 `json:"evidence_id"`
	// Run tells a Reprocess apart from the receipt's job, which River may still list as running
	// for a moment after its work ended (it records completions in batches): a job with the same
	// arguments would be skipped as a duplicate, and the reprocess would never run.
	Run int64 `json:"run,omitempty"`
}

// Kind is River's name for the job.
func (ProcessArgs) Kind() string { return "evidence_process" }

// InsertOpts: a job per evidence item is unique while it waits or runs, so receipt, the sweep and
// an impatient analyst queue it once. Finished jobs do not count, so Reprocess can queue it again.
// Errors (the database or the blob store away) are retried a few times; what is wrong with the
// package itself fails the evidence, not the job.
func (ProcessArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: 5, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
		rivertype.JobStateRunning, rivertype.JobStateScheduled,
	}}}
}

// SweepArgs is the periodic look for evidence that no job will process (see Sweep).
type SweepArgs struct{}

// Kind is River's name for the job.
func (SweepArgs) Kind() string { return "evidence_process_sweep" }

type processWorker struct {
	river.WorkerDefaults[ProcessArgs]
	p *Processor
}

func (w *processWorker) Timeout(*river.Job[ProcessArgs]) time.Duration { return w.p.cfg.JobTimeout }

func (w *processWorker) Work(ctx context.Context, job *river.Job[ProcessArgs]) error {
	err := w.p.Process(ctx, job.Args.EvidenceID)
	if err != nil && job.Attempt >= job.MaxAttempts {
		// River gives up: say so on the evidence instead of leaving it "processing" for ever.
		w.p.giveUp(context.WithoutCancel(ctx), job.Args.EvidenceID, err)
	}
	return err
}

type sweepWorker struct {
	river.WorkerDefaults[SweepArgs]
	p *Processor
}

func (w *sweepWorker) Work(ctx context.Context, _ *river.Job[SweepArgs]) error { return w.p.Sweep(ctx) }

// Register adds the processing workers and returns the sweep's periodic job, for jobs.New.
func (p *Processor) Register(workers *river.Workers) []*river.PeriodicJob {
	river.AddWorker(workers, &processWorker{p: p})
	river.AddWorker(workers, &sweepWorker{p: p})
	river.AddWorker(workers, &retagWorker{p: p})
	return []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(p.cfg.SweepEvery),
			func() (river.JobArgs, *river.InsertOpts) { return SweepArgs{}, nil },
			&river.PeriodicJobOpts{ID: SweepArgs{}.Kind(), RunOnStart: true}),
	}
}

// SetClient gives the processor River's client, once jobs.New made it.
func (p *Processor) SetClient(c jobs.Client) {
	p.mu.Lock()
	p.client = c
	p.mu.Unlock()
}

// Enqueue queues the processing of evidence id. Queuing an item that is already queued or
// running does nothing.
func (p *Processor) Enqueue(ctx context.Context, evidenceID int64) error {
	p.mu.Lock()
	c := p.client
	p.mu.Unlock()
	if c == nil {
		return quarry.Errorf(quarry.EUNAVAILABLE, "Evidence processing is not running.")
	}
	return p.insert(ctx, c, ProcessArgs{EvidenceID: evidenceID})
}

func (p *Processor) insert(ctx context.Context, c jobs.Client, args ProcessArgs) error {
	if _, err := c.Insert(ctx, args, nil); err != nil {
		return fmt.Errorf("processing: enqueue evidence %d: %w", args.EvidenceID, err)
	}
	return nil
}

// OnReceived queues evidence the intake just received; it is intake.Config.OnReceived. A failure
// is logged: the sweep queues the item later.
func (p *Processor) OnReceived(ctx context.Context, e *quarry.Evidence) {
	if err := p.Enqueue(ctx, e.ID); err != nil {
		p.cfg.Logger.Warn("processing: queue received evidence; the sweep will retry", "evidence", e.ID, "err", err)
	}
}

// Reprocess deletes the events evidence id produced and queues it again. It returns ECONFLICT
// while the item is being processed. The request is audited with the actor in ctx.
func (p *Processor) Reprocess(ctx context.Context, evidenceID int64) (err error) {
	audit := quarry.NewAuditEntry(ctx, "evidence.reprocess", "evidence", strconv.FormatInt(evidenceID, 10))
	defer func() {
		if err != nil {
			audit.Outcome = quarry.OutcomeFailure
			audit.Details = map[string]any{"error": quarry.ErrorMessage(err)}
		}
		p.audit(ctx, audit)
	}()
	e, err := p.cfg.Evidence.FindEvidenceByID(ctx, evidenceID)
	if err != nil {
		return err
	}
	a, err := p.cfg.Acquisitions.FindAcquisitionByID(ctx, e.AcquisitionID)
	if err != nil {
		return err
	}
	if !stored(a) {
		return quarry.Errorf(quarry.ECONFLICT, "Evidence %d is still being received; it is processed once it is stored.", evidenceID)
	}
	if e.State == quarry.EvidenceProcessing {
		return quarry.Errorf(quarry.ECONFLICT, "Evidence %d is being processed; reprocess it once that ends.", evidenceID)
	}
	p.mu.Lock()
	c := p.client
	p.mu.Unlock()
	if c == nil {
		return quarry.Errorf(quarry.EUNAVAILABLE, "Evidence processing is not running.")
	}
	n, err := p.cfg.Events.DeleteEvidenceEvents(ctx, evidenceID)
	if err != nil {
		return fmt.Errorf("processing: delete events of evidence %d: %w", evidenceID, err)
	}
	audit.Details = map[string]any{"deleted_events": n, "previous_state": e.State}
	if err := p.cfg.Evidence.UpdateEvidenceProcessing(ctx, evidenceID, quarry.EvidenceReceived,
		&quarry.ProcessingReport{Stage: quarry.StageQueued, StartedAt: p.cfg.Now().UTC()}); err != nil {
		return err
	}
	return p.insert(ctx, c, ProcessArgs{EvidenceID: evidenceID, Run: p.cfg.Now().UnixNano()})
}

func (p *Processor) audit(ctx context.Context, e *quarry.AuditEntry) {
	if p.cfg.Audit == nil {
		return
	}
	if err := p.cfg.Audit.RecordAudit(context.WithoutCancel(ctx), e); err != nil {
		p.cfg.Logger.Error("processing: audit write failed", "action", e.Action, "err", err)
	}
}

// Sweep queues every evidence item whose acquisition is still "received" (its job was never
// queued: the server stopped between receipt and queuing, or it was lost), and once the runs
// that a dead server left in "processing".
func (p *Processor) Sweep(ctx context.Context) error {
	return errors.Join(p.sweepReceived(ctx), p.sweepDead(ctx))
}

// sweepReceived queues the evidence of acquisitions still in "received".
func (p *Processor) sweepReceived(ctx context.Context) error {
	return p.eachEvidence(ctx, quarry.AcquisitionReceived, func(id int64) error {
		e, err := p.cfg.Evidence.FindEvidenceByID(ctx, id)
		if err != nil || e.State != quarry.EvidenceReceived {
			return err
		}
		return p.Enqueue(ctx, e.ID)
	})
}

// sweepDead queues again, once per process, the evidence whose run a dead server left in
// "processing": River holds such a job as running until its timeout (hours) has passed, and
// nothing else would pick the package up. A run this process did not start, and that began
// before this process, may still be alive on another server sharing the database: the new job
// then waits on Config.Lock until that run ends, finds the evidence processed, and stops.
func (p *Processor) sweepDead(ctx context.Context) error {
	return p.eachEvidence(ctx, quarry.AcquisitionProcessing, func(id int64) error {
		p.mu.Lock()
		skip := p.running[id] != nil || p.revived[id] || p.client == nil
		p.mu.Unlock()
		if skip {
			return nil
		}
		e, err := p.cfg.Evidence.FindEvidenceByID(ctx, id)
		if err != nil || e.State != quarry.EvidenceProcessing || e.Processing == nil || !e.Processing.StartedAt.Before(p.started) {
			return err
		}
		p.mu.Lock()
		c := p.client
		p.revived[id] = true
		p.mu.Unlock()
		p.cfg.Logger.Warn("processing: a run that began before this server started is queued again", "evidence", id, "started_at", e.Processing.StartedAt)
		return p.insert(ctx, c, ProcessArgs{EvidenceID: id, Run: p.cfg.Now().UnixNano()})
	})
}

// eachEvidence calls fn with the evidence of every acquisition in state, and joins its errors.
func (p *Processor) eachEvidence(ctx context.Context, state string, fn func(evidenceID int64) error) error {
	var errs []error
	for off := 0; ; {
		list, total, err := p.cfg.Acquisitions.FindAcquisitions(ctx, quarry.AcquisitionFilter{State: &state, Offset: off, Limit: 100})
		if err != nil {
			return fmt.Errorf("processing: sweep: %w", err)
		}
		for _, a := range list {
			if a.EvidenceID != nil {
				if err := fn(*a.EvidenceID); err != nil {
					errs = append(errs, err)
				}
			}
		}
		off += len(list)
		if len(list) == 0 || off >= total {
			return errors.Join(errs...)
		}
	}
}

// lock holds evidence id for one run: in this process always, across servers with Config.Lock.
func (p *Processor) lock(ctx context.Context, id int64, fn func() error) error {
	p.mu.Lock()
	m := p.running[id]
	if m == nil {
		m = &evidenceLock{}
		p.running[id] = m
	}
	m.waiters++
	p.mu.Unlock()
	m.Lock()
	defer func() {
		m.Unlock()
		p.mu.Lock()
		if m.waiters--; m.waiters == 0 {
			delete(p.running, id)
		}
		p.mu.Unlock()
	}()
	if p.cfg.Lock == nil {
		return fn()
	}
	return p.cfg.Lock(ctx, "evidence.process."+strconv.FormatInt(id, 10), fn)
}

// giveUp fails an evidence item whose job River will not retry.
func (p *Processor) giveUp(ctx context.Context, id int64, cause error) {
	e, err := p.cfg.Evidence.FindEvidenceByID(ctx, id)
	if err != nil || e.State == quarry.EvidenceProcessed || e.State == quarry.EvidenceFailed {
		return
	}
	r := e.Processing
	if r == nil {
		r = &quarry.ProcessingReport{StartedAt: p.cfg.Now().UTC()}
	}
	end := p.cfg.Now().UTC()
	r.EndedAt = &end
	r.Error = "Processing stopped after repeated errors reading the evidence store or writing the database (the server log has the cause). Reprocess the evidence once it is fixed."
	if quarry.ErrorCode(cause) != quarry.EINTERNAL {
		r.Error = "Processing stopped after repeated errors: " + quarry.ErrorMessage(cause) + " Reprocess the evidence once the cause is fixed."
	}
	p.cfg.Logger.Error("processing: giving up", "evidence", id, "err", cause)
	if err := p.cfg.Evidence.UpdateEvidenceProcessing(ctx, id, quarry.EvidenceFailed, r); err != nil {
		p.cfg.Logger.Error("processing: record failure", "evidence", id, "err", err)
	}
	p.failAcquisition(ctx, e.AcquisitionID, r.Error)
}

// stored reports whether an acquisition got as far as a stored package: before received, the
// intake may still be writing it (the evidence row comes first).
func stored(a *quarry.Acquisition) bool {
	switch a.State {
	case quarry.AcquisitionReceived, quarry.AcquisitionProcessing, quarry.AcquisitionCompleted, quarry.AcquisitionFailed:
		return true
	}
	return false
}
