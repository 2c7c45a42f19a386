package processing

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/quarry-dfir/quarry"
)

// A Retagger is a Detector that can redo its own tags on a stored event when its rules changed
// (an IOC list was edited): it removes the detections it added before, adds those it finds now,
// sets the severity again from all the event's detections, and reports whether the event changed.
type Retagger interface {
	Detector
	Retag(ev *quarry.Event) bool
}

// RetagArgs redoes the tags of the Retaggers of a project's detectors on all its events.
type RetagArgs struct {
	ProjectID int64 `json:"project_id"`
	// Run tells a new request from one River may still list as running, as ProcessArgs.Run.
	Run int64 `json:"run"`
}

// Kind is River's name for the job.
func (RetagArgs) Kind() string { return "events_retag" }

// InsertOpts: retagging runs in the processing queue, beside processing, and a request while
// one waits is the same request.
func (RetagArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: 5, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}}}
}

type retagWorker struct {
	river.WorkerDefaults[RetagArgs]
	p *Processor
}

func (w *retagWorker) Timeout(*river.Job[RetagArgs]) time.Duration { return w.p.cfg.JobTimeout }

func (w *retagWorker) Work(ctx context.Context, job *river.Job[RetagArgs]) error {
	n, err := w.p.Retag(ctx, job.Args.ProjectID)
	if err == nil {
		w.p.cfg.Logger.Info("processing: events retagged", "project", job.Args.ProjectID, "changed", n)
	}
	return err
}

// QueueRetag asks for the project's events to be retagged (see Retag), once whatever runs now
// ends. The HTTP layer calls it when an IOC list changes.
func (p *Processor) QueueRetag(ctx context.Context, projectID int64) error {
	p.mu.Lock()
	c := p.client
	p.mu.Unlock()
	if c == nil {
		return quarry.Errorf(quarry.EUNAVAILABLE, "Evidence processing is not running.")
	}
	if _, err := c.Insert(ctx, RetagArgs{ProjectID: projectID, Run: p.cfg.Now().UnixNano()}, nil); err != nil {
		return fmt.Errorf("processing: queue the retagging of project %d: %w", projectID, err)
	}
	return nil
}

// Retag runs the Retaggers among the project's detectors over all its events and stores the
// events they changed; it returns how many. Events of a run in progress may be tagged with the
// old rules or the new: their run read the detectors when it started, so a change should queue
// a retag after it (QueueRetag does).
func (p *Processor) Retag(ctx context.Context, projectID int64) (int64, error) {
	if p.cfg.Detectors == nil {
		return 0, nil
	}
	ds, err := p.cfg.Detectors(ctx, projectID)
	if err != nil {
		return 0, fmt.Errorf("processing: retag project %d: %w", projectID, err)
	}
	var rs []Retagger
	for _, d := range ds {
		if r, ok := d.(Retagger); ok {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return 0, nil
	}
	var changed []*quarry.Event
	var n int64
	flush := func() error {
		if len(changed) == 0 {
			return nil
		}
		if err := p.cfg.Events.UpdateEventDetections(ctx, changed); err != nil {
			return err
		}
		n += int64(len(changed))
		changed = changed[:0]
		return nil
	}
	err = p.cfg.Events.EachEvent(ctx, quarry.EventFilter{ProjectID: projectID}, func(ev *quarry.Event) error {
		c := false
		for _, r := range rs {
			if r.Retag(ev) {
				c = true
			}
		}
		if c {
			changed = append(changed, ev)
		}
		if len(changed) >= p.cfg.BatchSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return n, fmt.Errorf("processing: retag project %d: %w", projectID, err)
	}
	return n, nil
}
