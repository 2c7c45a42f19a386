package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/scheduler/limit"
	"github.com/quarry-dfir/quarry/xdr"
)

// LaunchArgs starts one acquisition's Live Response action.
type LaunchArgs struct {
	AcquisitionID int64 `json:"acquisition_id"`
}

// Kind is River's name for the job.
func (LaunchArgs) Kind() string { return "acquisition_launch" }

// InsertOpts: errors retry a few times; waits are snoozes and do not count.
// Launches run after watches (a larger number is a lower priority): a watch frees a slot, while
// a thousand launches waiting for the limits would otherwise be fetched ahead of it.
func (LaunchArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 10, Priority: 2}
}

// retryAfter is how long a launch or watch that failed waits before it runs again. River's
// default grows as the fourth power of the attempt (1 s, 16 s, 81 s, 256 s…), so a launch that
// met a few passing errors (a busy database, a job timeout on a loaded machine) sat in queued
// for many minutes with nothing to show for it. These errors pass: try again soon, a bounded
// number of times (about three minutes for a launch's ten attempts) before failing.
func retryAfter(attempt int) time.Duration {
	return min(time.Duration(attempt)*time.Duration(attempt)*time.Second, 30*time.Second)
}

// WatchArgs follows one running Live Response action until it ends.
type WatchArgs struct {
	AcquisitionID int64     `json:"acquisition_id"`
	ConnectionID  int64     `json:"connection_id"`
	ActionID      string    `json:"action_id"`
	LeaseID       int64     `json:"lease_id"`
	StartedAt     time.Time `json:"started_at"`
}

// Kind is River's name for the job.
func (WatchArgs) Kind() string { return "acquisition_watch" }

// InsertOpts: a watch that keeps failing gives up; the watchdog expires its lease.
func (WatchArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 10} }

// WatchdogArgs is the periodic sweep for silent collectors and dead leases.
type WatchdogArgs struct{}

// Kind is River's name for the job.
func (WatchdogArgs) Kind() string { return "acquisition_watchdog" }

type launchWorker struct {
	river.WorkerDefaults[LaunchArgs]
	s *Scheduler
}

func (w *launchWorker) Work(ctx context.Context, job *river.Job[LaunchArgs]) error {
	err := w.s.launch(ctx, job.Args.AcquisitionID, job.Attempt >= job.MaxAttempts)
	var snooze *river.JobSnoozeError
	if err != nil && !errors.As(err, &snooze) {
		if job.Attempt >= job.MaxAttempts {
			// River discards the job now: nothing would launch the acquisition again, so it
			// fails with the reason rather than sit in queued for ever.
			w.s.cfg.Logger.Error("launch failed for the last time", "acquisition", job.Args.AcquisitionID, "attempts", job.Attempt, "err", err)
			w.s.abandonLaunch(ctx, job.Args.AcquisitionID, err)
		} else {
			w.s.cfg.Logger.Warn("launch failed; it is tried again", "acquisition", job.Args.AcquisitionID,
				"attempt", job.Attempt, "of", job.MaxAttempts, "retry_in", w.s.scaled(retryAfter(job.Attempt)), "err", err)
		}
	}
	return err
}

// abandonLaunch fails an acquisition whose launch job River gives up on, releasing any lease
// it holds. It uses a fresh context: the job's may be the one that timed out.
func (s *Scheduler) abandonLaunch(ctx context.Context, id int64, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, id)
	if err != nil {
		s.cfg.Logger.Error("find an abandoned launch", "acquisition", id, "err", err)
		return
	}
	switch a.State {
	case quarry.AcquisitionQueued, quarry.AcquisitionWaitingForSlot, quarry.AcquisitionOfflinePending, quarry.AcquisitionLaunching:
	default:
		return // it got further: what follows it now settles it
	}
	if _, err := s.cfg.Limiter.ReleaseByAcquisition(ctx, id, s.cfg.Now()); err != nil {
		s.cfg.Logger.Error("release the lease of an abandoned launch", "acquisition", id, "err", err)
	}
	if _, err := s.transition(ctx, id, quarry.AcquisitionFailed, "The launch kept failing: "+cause.Error()); err != nil {
		s.cfg.Logger.Error("fail an abandoned launch", "acquisition", id, "err", err)
	}
}

// NextRetry: see retryAfter.
func (w *launchWorker) NextRetry(job *river.Job[LaunchArgs]) time.Time {
	return time.Now().Add(w.s.scaled(retryAfter(job.Attempt)))
}

// launch takes one acquisition as far as it can now. It returns a snooze to be run again later.
// lastAttempt tells that River will not retry an error, so the acquisition fails instead.
func (s *Scheduler) launch(ctx context.Context, id int64, lastAttempt bool) error {
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, id)
	if err != nil {
		return err
	}
	switch a.State {
	// launching: a launch that died between the state change and the call, or whose call failed.
	case quarry.AcquisitionQueued, quarry.AcquisitionWaitingForSlot, quarry.AcquisitionOfflinePending, quarry.AcquisitionLaunching:
	default:
		s.unqueue(a)
		return nil // cancelled or finished meanwhile
	}
	fail := func(msg string) error {
		_, err := s.transition(ctx, id, quarry.AcquisitionFailed, msg)
		return err
	}
	if a.ConnectionID == nil {
		return fail("The acquisition has no XDR connection.")
	}
	conn, err := s.cfg.Connections.FindConnectionByID(ctx, *a.ConnectionID)
	if err != nil {
		return err
	}
	if conn.DeletedAt != nil {
		return fail(fmt.Sprintf("Connection %q was deleted.", conn.Name))
	}
	host, err := s.host(ctx, conn, a.HostID, a.State == quarry.AcquisitionOfflinePending)
	if quarry.ErrorCode(err) == quarry.ENOTFOUND {
		return fail(fmt.Sprintf("Host %s is no longer in the inventory of connection %q.", a.HostName, conn.Name))
	} else if err != nil {
		return err
	}
	if !host.Online {
		return s.offline(ctx, a)
	}
	family := host.OS
	if family != "windows" && family != "linux" && family != "macos" {
		return fail(fmt.Sprintf("Host %s runs %q; Live Response scripts run on Windows, Linux and macOS only.", a.HostName, host.OS))
	}

	// The script is made ready before a lease is taken: a lease counts a launch in the rate
	// window, which a launch that cannot even render its script must not spend.
	client, err := s.open(ctx, conn)
	if err != nil {
		return s.retryOrFail(ctx, id, lastAttempt, err)
	}
	name, err := s.ensureScript(ctx, client, conn.ID, family)
	if err != nil {
		return s.retryOrFail(ctx, id, lastAttempt, err)
	}

	// A launch snoozed for the limits wakes a little before its turn (River runs a snoozed job
	// only at its next fetch); it sleeps the rest here, so that it starts on time.
	s.mu.Lock()
	target, ok := s.targets[id]
	delete(s.targets, id)
	s.mu.Unlock()
	if ok {
		s.sleepInline(ctx, target.Sub(s.cfg.Now()))
	}

	var lease *limit.Lease
	for lease == nil {
		var retryAt time.Time
		var reason string
		lease, retryAt, reason, err = s.cfg.Limiter.TryAcquire(ctx, conn.ID, a.HostID, id, s.cfg.Now())
		if err != nil {
			return fmt.Errorf("scheduler: acquire lease: %w", err)
		}
		if lease != nil {
			break
		}
		// A slot or a busy host frees when a lease is released, which nobody announces: look
		// again after the time one launch takes in the rate window.
		l := s.cfg.Limits(conn.ID)
		wait := s.scaled(2 * time.Second)
		if l.Validate() == nil {
			wait = max(l.Window/time.Duration(l.LaunchesPerWindow), 10*time.Millisecond)
		}
		if reason == limit.ReasonRate && !retryAt.IsZero() {
			wait = max(retryAt.Sub(s.cfg.Now()), time.Millisecond)
		}
		if reason != limit.ReasonHostBusy {
			wait += s.queue(conn.ID, id)
		}
		if a.State != quarry.AcquisitionWaitingForSlot {
			if _, err := s.transition(ctx, a.ID, quarry.AcquisitionWaitingForSlot, ""); err != nil {
				return err
			}
			a.State = quarry.AcquisitionWaitingForSlot
		}
		if !s.sleepInline(ctx, wait) {
			s.mu.Lock()
			s.targets[id] = s.cfg.Now().Add(wait)
			s.mu.Unlock()
			return river.JobSnooze(max(wait-snoozeLead, time.Millisecond))
		}
	}
	s.unqueue(a)
	release := func() {
		if err := s.cfg.Limiter.Release(context.WithoutCancel(ctx), lease.ID, s.cfg.Now()); err != nil {
			s.cfg.Logger.Warn("release lease", "acquisition", id, "err", err)
		}
	}
	// retry gives an error back to River, or fails the acquisition when River will not retry.
	retry := func(err error) error {
		release()
		if lastAttempt {
			return fail(err.Error())
		}
		return err
	}

	// The state changes before the call: the collector may enrol, which needs launching, before
	// the call returns.
	if a.State != quarry.AcquisitionLaunching {
		if _, err := s.transition(ctx, id, quarry.AcquisitionLaunching, ""); err != nil {
			release() // cancelled meanwhile
			return nil
		}
	}
	// A launch taken up again (its server died, or its call failed) may have reached Defender:
	// look for its action before asking again, which Defender would refuse with
	// ActiveRequestAlreadyExists.
	var act *xdr.Action
	if launchedBefore(a) {
		if other, ferr := client.FindActiveAction(ctx, a.HostID); ferr == nil && other.Comment == comment(id) {
			act = other
		}
	}
	if act == nil {
		act, err = client.RunScript(ctx, a.HostID, xdr.ScriptRun{Script: name, Args: fmt.Sprintf("%d %s", id, a.Profile), Comment: comment(id)})
	}
	switch {
	case errors.Is(err, xdr.ErrThrottled):
		release()
		a.State = quarry.AcquisitionLaunching
		return s.wait(ctx, a, max(xdr.RetryAfter(err), s.scaled(5*time.Second)))
	case errors.Is(err, xdr.ErrBusy):
		// Another session holds the device. If it is ours (a launch that died after its call
		// went through), adopt it; someone else's is reported at once rather than waited for:
		// an analyst working the host interactively may keep it for an hour.
		other, ferr := client.FindActiveAction(ctx, a.HostID)
		if ferr == nil && other.Comment == comment(id) {
			act, err = other, nil
			break
		}
		release()
		if ferr != nil {
			return fail(fmt.Sprintf("host busy: another Live Response session holds the device (%v)", err))
		}
		return fail(fmt.Sprintf("host busy: another Live Response session (action %s by %s) holds the device", other.ID, cmpStr(other.Requestor, "someone else")))
	}
	if err != nil {
		// The call may have reached Defender even though its answer did not reach us (a
		// timeout, a dropped connection): then an action runs under this lease. Look before
		// letting the slot go, or the retry's ErrBusy adoption would come after a second
		// launch had taken the slot.
		if other, ferr := client.FindActiveAction(context.WithoutCancel(ctx), a.HostID); ferr == nil && other.Comment == comment(id) {
			act = other
		} else {
			return retry(fmt.Errorf("scheduler: run script on %s: %w", a.HostName, err))
		}
	}
	// The watch is inserted to run now and snoozes until the first poll is due: River makes a job
	// inserted for later available only at its scheduler's next run (every 5 s), which would hold
	// a time-scaled slot many times longer than the action, while a short snooze is honoured to
	// the fetch interval.
	return s.enqueue(ctx, WatchArgs{AcquisitionID: id, ConnectionID: conn.ID, ActionID: act.ID, LeaseID: lease.ID, StartedAt: s.cfg.Now()}, nil)
}

// launchedBefore tells whether an acquisition was launching at some point: its action may exist.
func launchedBefore(a *quarry.Acquisition) bool {
	if a.State == quarry.AcquisitionLaunching {
		return true
	}
	for _, h := range a.History {
		if h.State == quarry.AcquisitionLaunching {
			return true
		}
	}
	return false
}

// retryOrFail gives err back to River to retry, or fails the acquisition with it when River
// will not retry.
func (s *Scheduler) retryOrFail(ctx context.Context, id int64, lastAttempt bool, err error) error {
	if !lastAttempt {
		return err
	}
	_, terr := s.transition(ctx, id, quarry.AcquisitionFailed, err.Error())
	return terr
}

// firstPoll is how long after the launch an action is first polled: a device takes seconds to
// pick a request up.
const firstPoll = 3 * time.Second

// wait records that the acquisition waits for the limits and snoozes its launch job.
func (s *Scheduler) wait(ctx context.Context, a *quarry.Acquisition, d time.Duration) error {
	if a.State != quarry.AcquisitionWaitingForSlot {
		if _, err := s.transition(ctx, a.ID, quarry.AcquisitionWaitingForSlot, ""); err != nil {
			return err
		}
	}
	return river.JobSnooze(d)
}

// inlineWait is the longest wait for the limits that a launch sleeps through in its worker
// instead of snoozing: a snoozed job is run again only at River's next fetch, a delay that
// the sliding rate window carries into every later launch. maxInline bounds the workers so
// held, leaving the others to the watches that free slots.
const (
	inlineWait = 250 * time.Millisecond
	maxInline  = 5
	snoozeLead = 100 * time.Millisecond
)

// sleepInline sleeps for d in the worker when d is short and few others do, and reports
// whether it did.
func (s *Scheduler) sleepInline(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	if d > max(inlineWait, s.scaled(10*time.Second)) {
		return false
	}
	s.mu.Lock()
	if s.inline >= maxInline {
		s.mu.Unlock()
		return false
	}
	s.inline++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inline--
		s.mu.Unlock()
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// queue records that the acquisition waits for the connection's limits and returns how much
// longer than the next free launch it should wait: an even share of the window
// (Window/LaunchesPerWindow) for every acquisition waiting ahead of it (oldest first), the
// pace at which the window lets launches through. Without it every waiting launch would wake
// for each free launch, a thousand database round trips for one launch. The queue is this
// process's view only; after a restart it fills again as launches wake, and an entry left by a
// cancelled acquisition only delays the ones behind it until its launch job wakes and drops it.
func (s *Scheduler) queue(connectionID, id int64) time.Duration {
	l := s.cfg.Limits(connectionID)
	if l.Validate() != nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.waiting[connectionID]
	if q == nil {
		q = map[int64]bool{}
		s.waiting[connectionID] = q
	}
	q[id] = true
	ahead := 0
	for other := range q {
		if other < id {
			ahead++
		}
	}
	return time.Duration(ahead) * l.Window / time.Duration(l.LaunchesPerWindow)
}

// unqueue removes the acquisition from its connection's queue.
func (s *Scheduler) unqueue(a *quarry.Acquisition) {
	if a.ConnectionID == nil {
		return
	}
	s.mu.Lock()
	delete(s.waiting[*a.ConnectionID], a.ID)
	s.mu.Unlock()
}

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// host returns the inventory's view of a host, refreshing the inventory first when asked and
// it is older than PollEvery (one call lists every host of the connection).
func (s *Scheduler) host(ctx context.Context, c *quarry.Connection, hostID string, fresh bool) (*xdr.Host, error) {
	if fresh {
		inv, err := s.cfg.Hosts.FindInventory(ctx, c.ID)
		if err != nil || s.cfg.Now().Sub(inv.FetchedAt) > s.cfg.PollEvery {
			if err := s.cfg.Integrations.Refresh(ctx, c); err != nil {
				s.cfg.Logger.Warn("inventory refresh", "connection", c.ID, "err", err)
			}
		}
	}
	return s.cfg.Hosts.FindHost(ctx, c.ID, hostID)
}

// offline parks an acquisition of an offline host, or expires it after OfflineExpiry.
func (s *Scheduler) offline(ctx context.Context, a *quarry.Acquisition) error {
	since := a.CreatedAt
	for _, h := range a.History {
		if h.State == quarry.AcquisitionOfflinePending {
			since = h.At
		}
	}
	if a.State == quarry.AcquisitionOfflinePending && s.cfg.Now().Sub(since) >= s.scaled(s.cfg.OfflineExpiry) {
		_, err := s.transition(ctx, a.ID, quarry.AcquisitionExpired, fmt.Sprintf("Host %s stayed offline for %s.", a.HostName, s.cfg.OfflineExpiry))
		return err
	}
	if a.State != quarry.AcquisitionOfflinePending {
		if _, err := s.transition(ctx, a.ID, quarry.AcquisitionOfflinePending, ""); err != nil {
			return err
		}
	}
	// The next look refreshes the inventory (one call for every host of the connection); once
	// a minute is often enough for a host to be noticed soon after it comes back.
	return river.JobSnooze(max(s.cfg.PollEvery, s.scaled(time.Minute)))
}

type watchWorker struct {
	river.WorkerDefaults[WatchArgs]
	s *Scheduler
}

// NextRetry: see retryAfter.
func (w *watchWorker) NextRetry(job *river.Job[WatchArgs]) time.Time {
	return time.Now().Add(w.s.scaled(retryAfter(job.Attempt)))
}

func (w *watchWorker) Work(ctx context.Context, job *river.Job[WatchArgs]) error {
	err := w.s.watch(ctx, job.Args)
	var snooze *river.JobSnoozeError
	if err != nil && !errors.As(err, &snooze) && job.Attempt >= job.MaxAttempts {
		// River gives up on this job: nobody would follow the action again, so the slot and
		// the acquisition would stay held until the watchdog's lease expiry, with the
		// acquisition in launching for ever. Settle both now, saying why.
		w.s.giveUp(ctx, job.Args, err)
	}
	return err
}

// giveUp ends a watch that kept failing: its lease is released and its acquisition failed,
// unless the collector already reported (then the action's outcome no longer matters).
func (s *Scheduler) giveUp(ctx context.Context, w WatchArgs, cause error) {
	ctx = context.WithoutCancel(ctx)
	s.release(ctx, w)
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, w.AcquisitionID)
	if err != nil {
		s.cfg.Logger.Warn("give up watch", "acquisition", w.AcquisitionID, "err", err)
		return
	}
	msg := fmt.Sprintf("Quarry could not follow Live Response action %s: %v", w.ActionID, cause)
	if err := s.settle(ctx, a, quarry.AcquisitionFailed, msg); err != nil {
		s.cfg.Logger.Warn("give up watch", "acquisition", w.AcquisitionID, "err", err)
	}
}

// watch polls one action. While it runs, the job snoozes; the interval grows with the number
// of actions the connection runs so that polling stays under pollCallsPerMinute.
func (s *Scheduler) watch(ctx context.Context, w WatchArgs) error {
	if wait := w.StartedAt.Add(s.scaled(firstPoll)).Sub(s.cfg.Now()); wait > 0 {
		return river.JobSnooze(wait)
	}
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, w.AcquisitionID)
	if err != nil {
		return err
	}
	if a.State == quarry.AcquisitionCancelled {
		_, err := s.cfg.Limiter.ReleaseByAcquisition(ctx, a.ID, s.cfg.Now())
		return err
	}
	client, err := s.clientFor(ctx, w.ConnectionID)
	if err != nil {
		return err
	}
	act, err := client.GetAction(ctx, w.ActionID)
	if errors.Is(err, xdr.ErrThrottled) {
		return river.JobSnooze(max(xdr.RetryAfter(err), s.cfg.PollEvery))
	} else if err != nil {
		return fmt.Errorf("scheduler: get action %s: %w", w.ActionID, err)
	}
	if !act.Done() {
		if act.Status == xdr.ActionPending && s.cfg.Now().Sub(w.StartedAt) > s.scaled(PendingTooLong) {
			if conn, err := s.cfg.Connections.FindConnectionByID(ctx, w.ConnectionID); err == nil {
				if h, err := s.host(ctx, conn, a.HostID, true); err == nil && !h.Online {
					if err := client.CancelAction(ctx, act.ID, "Quarry: host went offline"); err != nil {
						return fmt.Errorf("scheduler: cancel pending action: %w", err)
					}
					s.release(ctx, w)
					if _, err := s.transition(ctx, a.ID, quarry.AcquisitionOfflinePending, ""); err != nil {
						return err
					}
					return s.enqueue(ctx, LaunchArgs{AcquisitionID: a.ID}, &river.InsertOpts{ScheduledAt: s.cfg.Now().Add(s.cfg.PollEvery)})
				}
			}
		}
		return river.JobSnooze(s.pollInterval(ctx, w.ConnectionID))
	}
	// The slot is free as soon as the action ends, whatever the collector does next.
	s.release(ctx, w)
	switch act.Status {
	case xdr.ActionCancelled:
		return s.settle(ctx, a, quarry.AcquisitionCancelled, "")
	case xdr.ActionFailed, xdr.ActionTimedOut:
		msg := "Live Response action " + act.Status
		if act.Error != "" {
			msg += ": " + act.Error
		}
		if out, err := client.ScriptOutput(ctx, act.ID); err == nil && strings.TrimSpace(out.Stderr) != "" {
			msg += "; script errors: " + strings.TrimSpace(out.Stderr)
		}
		return s.settle(ctx, a, quarry.AcquisitionFailed, msg)
	}
	out, err := client.ScriptOutput(ctx, act.ID)
	if err != nil {
		return fmt.Errorf("scheduler: script output of %s: %w", act.ID, err)
	}
	line, ok := lastJSON(out.Stdout)
	switch {
	case ok && line.Status == "started":
		return s.settle(ctx, a, quarry.AcquisitionCollecting, "")
	case ok && line.Status == "error":
		return s.settle(ctx, a, quarry.AcquisitionFailed, fmt.Sprintf("%s (exit code %d)", line.Error, out.ExitCode))
	}
	msg := fmt.Sprintf("The bootstrap printed no status line (exit code %d).", out.ExitCode)
	if e := strings.TrimSpace(out.Stderr); e != "" {
		msg += " Script errors: " + e
	}
	return s.settle(ctx, a, quarry.AcquisitionFailed, msg)
}

func (s *Scheduler) release(ctx context.Context, w WatchArgs) {
	if err := s.cfg.Limiter.Release(ctx, w.LeaseID, s.cfg.Now()); err != nil {
		s.cfg.Logger.Warn("release lease", "acquisition", w.AcquisitionID, "err", err)
	}
}

// settle records an action's outcome unless the collector already moved the acquisition on (it
// enrols and reports while the action is still being polled) or it ended.
func (s *Scheduler) settle(ctx context.Context, a *quarry.Acquisition, state, msg string) error {
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, a.ID)
	if err != nil {
		return err
	}
	if a.State != quarry.AcquisitionLaunching && (state == quarry.AcquisitionCollecting || a.State != quarry.AcquisitionCollecting) {
		return nil
	}
	if !quarry.CanTransitionAcquisition(a.State, state) {
		return nil
	}
	_, err = s.transition(ctx, a.ID, state, msg)
	return err
}

// status is the one line of JSON a bootstrap prints.
type status struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}

// lastJSON finds the last line of out that is a JSON object with a status.
func lastJSON(out string) (status, bool) {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var st status
		if json.Unmarshal([]byte(l), &st) == nil && st.Status != "" {
			return st, true
		}
	}
	return status{}, false
}

// pollInterval spreads GetAction calls: n running actions polled every n/pollCallsPerMinute
// minutes (scaled) stay under the bound, and never more often than PollEvery.
func (s *Scheduler) pollInterval(ctx context.Context, connectionID int64) time.Duration {
	n, err := s.cfg.Limiter.Running(ctx, connectionID)
	if err != nil || n < 1 {
		n = 1
	}
	return max(s.cfg.PollEvery, s.scaled(time.Duration(n)*time.Minute/pollCallsPerMinute))
}

type watchdogWorker struct {
	river.WorkerDefaults[WatchdogArgs]
	s *Scheduler
}

func (w *watchdogWorker) Work(ctx context.Context, _ *river.Job[WatchdogArgs]) error {
	return w.s.Watchdog(ctx)
}

// Watchdog fails collections whose collector went silent for HeartbeatTimeout and expires
// leases older than a script can run (their holder died before releasing them).
func (s *Scheduler) Watchdog(ctx context.Context) error {
	now := s.cfg.Now()
	var errs []error
	if _, err := s.cfg.Limiter.Expire(ctx, now.Add(-s.scaled(ScriptTimeout+LeaseMargin)), now); err != nil {
		errs = append(errs, fmt.Errorf("scheduler: expire leases: %w", err))
	}
	s.mu.Lock()
	prune := now.Sub(s.pruned) >= s.scaled(time.Hour)
	if prune {
		s.pruned = now
	}
	s.mu.Unlock()
	if prune {
		// Released leases only matter to someone reading the ledger after an incident.
		if _, err := s.cfg.Limiter.Prune(ctx, now.Add(-LeaseRetention)); err != nil {
			errs = append(errs, fmt.Errorf("scheduler: prune leases: %w", err))
		}
	}
	for _, st := range []string{quarry.AcquisitionCollecting, quarry.AcquisitionUploading} {
		list, err := s.findAll(ctx, quarry.AcquisitionFilter{State: &st})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, a := range list {
			last := a.UpdatedAt
			if a.LastHeartbeatAt != nil && a.LastHeartbeatAt.After(last) {
				last = *a.LastHeartbeatAt
			}
			if now.Sub(last) < s.scaled(s.cfg.HeartbeatTimeout) {
				continue
			}
			msg := fmt.Sprintf("no heartbeat from the collector for %d minutes", int(s.cfg.HeartbeatTimeout.Minutes()))
			if _, err := s.transition(ctx, a.ID, quarry.AcquisitionFailed, msg); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
