// Package alerts brings XDR platforms' alerts into Quarry and acts on them (issue #9): a River
// periodic job polls each connection whose provider has alerts, incrementally by the alerts'
// update time, stores them with the connection's watermark in one transaction, and runs the
// enabled detection rules over every alert that is new or changed. A matching rule starts a
// triage acquisition of the alert's host, at most once per host and rule within the rule's
// cool-down, links the acquisition to the alert, audits it as a system action and, if the rule
// asks, comments on the platform's alert with a link to the acquisition.
package alerts

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/xdr"
)

// Defaults for Config.
const (
	// DefaultPollEvery is one list call a minute per connection: 60 of Defender's 1,500 calls
	// an hour, leaving the rest to inventories, launches and watches.
	DefaultPollEvery = time.Minute
	// DefaultOverlap re-reads the last minutes before the watermark: an alert can reach the
	// API with a lastUpdateTime a little older than alerts already returned, and the stored
	// upsert makes re-reading free of duplicates.
	DefaultOverlap = 5 * time.Minute
	// DefaultBackfill is how far back the first poll of a connection reads.
	DefaultBackfill = 7 * 24 * time.Hour
	// DefaultRuleLookback: rules act only on alerts the platform raised this recently, so that
	// the first poll of a connection with a week of history does not acquire every host in it.
	DefaultRuleLookback = 24 * time.Hour
	// DefaultMaxBackoff bounds the wait after the platform throttled a poll.
	DefaultMaxBackoff = 30 * time.Minute
)

// Acquirer starts acquisitions; the scheduler implements it (http.Acquirer is the same).
type Acquirer interface {
	Acquire(ctx context.Context, projectID, connectionID int64, hostIDs []string, profile string, force bool) ([]*quarry.Acquisition, error)
}

// Config is what a Service needs. Alerts, Rules, Connections and Client are required.
type Config struct {
	Alerts      quarry.AlertService
	Rules       quarry.DetectionRuleService
	Connections quarry.ConnectionService
	// Projects creates the project of a rule that asks for a new project per alert; without
	// it such rules fail (audited).
	Projects quarry.ProjectService
	// Audit records what rules did; nil records nothing.
	Audit quarry.AuditService
	// Acquirer starts the rules' acquisitions; nil stores alerts but runs no rule.
	Acquirer Acquirer
	// Client opens a connection's platform client (integration.Service.Client).
	Client func(ctx context.Context, c *quarry.Connection) (xdr.Client, error)

	PollEvery    time.Duration // default DefaultPollEvery, divided by TimeScale
	Overlap      time.Duration // default DefaultOverlap; platform time, not scaled
	Backfill     time.Duration // default DefaultBackfill; platform time, not scaled
	RuleLookback time.Duration // default DefaultRuleLookback; platform time, not scaled
	MaxBackoff   time.Duration // default DefaultMaxBackoff, divided by TimeScale
	// TimeScale divides the poll interval, the back-off and rules' cool-downs, to match an
	// emulator run faster; 0 is 1.
	TimeScale float64
	// PublicURL is Quarry's address, for the link in alert comments.
	PublicURL string
	Logger    *slog.Logger
	Now       func() time.Time
}

// Service polls alerts and runs detection rules. It is safe for concurrent use.
type Service struct {
	cfg Config

	mu    sync.Mutex
	conns map[int64]*connState
	// evalMu runs one evaluation at a time in this process: the database's claims keep
	// servers apart, this keeps a poll and a manual run from racing on the same alert.
	evalMu sync.Mutex
}

// connState is what this process knows of a connection's polling.
type connState struct {
	mu        sync.Mutex // one poll at a time per connection
	lastPoll  time.Time
	notBefore time.Time // after a throttled poll
	throttled int       // consecutive throttled polls
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Service, error) {
	if cfg.Alerts == nil || cfg.Rules == nil || cfg.Connections == nil || cfg.Client == nil {
		return nil, errors.New("alerts: alert, rule and connection services and a client opener are required")
	}
	cfg.PollEvery = cmp.Or(cfg.PollEvery, DefaultPollEvery)
	cfg.Overlap = cmp.Or(cfg.Overlap, DefaultOverlap)
	cfg.Backfill = cmp.Or(cfg.Backfill, DefaultBackfill)
	cfg.RuleLookback = cmp.Or(cfg.RuleLookback, DefaultRuleLookback)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, DefaultMaxBackoff)
	if cfg.PollEvery < 0 || cfg.Overlap < 0 || cfg.Backfill < 0 || cfg.RuleLookback < 0 || cfg.MaxBackoff < 0 {
		return nil, errors.New("alerts: negative duration in config")
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Service{cfg: cfg, conns: map[int64]*connState{}}, nil
}

func (s *Service) scaled(d time.Duration) time.Duration {
	r := time.Duration(float64(d) / s.cfg.TimeScale)
	if d > 0 && r <= 0 {
		r = 1
	}
	return r
}

// PollEvery is the real interval between polls of a connection.
func (s *Service) PollEvery() time.Duration { return s.scaled(s.cfg.PollEvery) }

// PollArgs is the periodic poll of every connection's alerts.
type PollArgs struct{}

// Kind implements river.JobArgs.
func (PollArgs) Kind() string { return "alerts_poll" }

// InsertOpts implements river.JobArgsWithInsertOpts: a poll that fails waits for the next tick
// instead of retrying into the platform's limits, and ticks do not pile up behind a slow poll.
func (PollArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 1, UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
		rivertype.JobStateRunning, rivertype.JobStateScheduled,
	}}}
}

type pollWorker struct {
	river.WorkerDefaults[PollArgs]
	s *Service
}

func (w *pollWorker) Work(ctx context.Context, job *river.Job[PollArgs]) error {
	return w.s.PollAll(ctx)
}

// Register adds the poll worker to workers and returns its schedule (every PollEvery, and at
// start).
func (s *Service) Register(workers *river.Workers) []*river.PeriodicJob {
	river.AddWorker(workers, &pollWorker{s: s})
	return []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(s.PollEvery()),
			func() (river.JobArgs, *river.InsertOpts) { return PollArgs{}, nil },
			&river.PeriodicJobOpts{ID: PollArgs{}.Kind(), RunOnStart: true}),
	}
}

// PollAll polls every live connection whose provider has alerts. A failing connection does
// not stop the others; the errors are joined.
func (s *Service) PollAll(ctx context.Context) error {
	conns, _, err := s.cfg.Connections.FindConnections(ctx, quarry.ConnectionFilter{Limit: 1000})
	if err != nil {
		return fmt.Errorf("alerts: list connections: %w", err)
	}
	var errs []error
	for _, c := range conns {
		p, ok := xdr.Lookup(c.Provider)
		if !ok || !p.Capabilities().Alerts || c.DeletedAt != nil {
			continue
		}
		if _, err := s.Poll(ctx, c); err != nil && !errors.Is(err, ErrTooSoon) {
			s.cfg.Logger.Warn("alert poll failed", "connection", c.ID, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ErrTooSoon is Poll's answer when the connection was polled less than half an interval ago,
// or the platform throttled it and its back-off has not run out: polling would break the
// one-call-per-interval budget.
var ErrTooSoon = errors.New("alerts: polled too recently")

// PollResult is what one poll did.
type PollResult struct {
	Since     time.Time // what the list call asked for
	Fetched   int       // alerts the platform returned
	Stored    []*quarry.Alert
	Watermark time.Time
	Started   []*quarry.Acquisition // by the detection rules
}

func (s *Service) state(id int64) *connState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.conns[id]
	if st == nil {
		st = &connState{}
		s.conns[id] = st
	}
	return st
}

// Poll lists the connection's alerts updated since its watermark (less the overlap), stores
// them with the new watermark, then runs the rules over the stored alerts still pending.
func (s *Service) Poll(ctx context.Context, c *quarry.Connection) (*PollResult, error) {
	st := s.state(c.ID)
	st.mu.Lock()
	defer st.mu.Unlock()
	now := s.cfg.Now()
	if now.Before(st.notBefore) || (!st.lastPoll.IsZero() && now.Sub(st.lastPoll) < s.PollEvery()/2) {
		return nil, ErrTooSoon
	}
	st.lastPoll = now
	client, err := s.cfg.Client(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("alerts: connection %d: %w", c.ID, err)
	}
	wm, err := s.cfg.Alerts.AlertWatermark(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	res := &PollResult{Since: wm.Add(-s.cfg.Overlap)}
	if wm.IsZero() {
		res.Since = now.Add(-s.cfg.Backfill)
	}
	list, err := client.ListAlerts(ctx, res.Since)
	if errors.Is(err, xdr.ErrThrottled) {
		st.throttled++
		wait := s.PollEvery() << min(st.throttled, 10)
		wait = max(min(wait, s.scaled(s.cfg.MaxBackoff)), xdr.RetryAfter(err))
		st.notBefore = now.Add(wait)
		return nil, fmt.Errorf("alerts: connection %d: list alerts throttled, next try in %s: %w", c.ID, wait.Round(time.Millisecond), err)
	}
	if err != nil {
		return nil, fmt.Errorf("alerts: connection %d: list alerts: %w", c.ID, err)
	}
	st.throttled = 0
	res.Fetched = len(list)
	res.Watermark = wm
	for _, a := range list {
		if a.UpdatedAt.After(res.Watermark) {
			res.Watermark = a.UpdatedAt
		}
	}
	res.Stored, err = s.cfg.Alerts.StoreAlerts(ctx, quarry.AlertBatch{ConnectionID: c.ID, Alerts: list, Watermark: res.Watermark, PolledAt: now})
	if err != nil {
		return nil, fmt.Errorf("alerts: connection %d: store alerts: %w", c.ID, err)
	}
	if len(res.Stored) > 0 {
		s.cfg.Logger.Info("alerts stored", "connection", c.ID, "new_or_changed", len(res.Stored), "watermark", res.Watermark)
	}
	res.Started, err = s.EvaluatePending(ctx, c.ID, client)
	return res, err
}

// EvaluatePending runs the enabled rules over the connection's pending alerts (new or changed,
// including those a crash left unevaluated) and clears their Pending flag. client comments on
// alerts; nil opens one when a rule asks for a comment.
func (s *Service) EvaluatePending(ctx context.Context, connectionID int64, client xdr.Client) ([]*quarry.Acquisition, error) {
	s.evalMu.Lock()
	defer s.evalMu.Unlock()
	pending := true
	var started []*quarry.Acquisition
	for {
		as, _, err := s.cfg.Alerts.FindAlerts(ctx, quarry.AlertFilter{ConnectionID: &connectionID, Pending: &pending, Limit: 500})
		if err != nil {
			return started, err
		}
		if len(as) == 0 {
			return started, nil
		}
		rules, err := s.enabledRules(ctx)
		if err != nil {
			return started, err
		}
		// Oldest first, so that of several alerts on a host the first raised names the project.
		for i := len(as) - 1; i >= 0; i-- {
			a := as[i]
			got, err := s.evaluate(ctx, a, rules, client)
			started = append(started, got...)
			if err != nil {
				return started, err
			}
			if err := s.cfg.Alerts.MarkAlertEvaluated(ctx, a.ID); err != nil {
				return started, err
			}
		}
	}
}

func (s *Service) enabledRules(ctx context.Context) ([]*quarry.DetectionRule, error) {
	if s.cfg.Acquirer == nil {
		return nil, nil
	}
	on := true
	rules, _, err := s.cfg.Rules.FindDetectionRules(ctx, quarry.DetectionRuleFilter{Enabled: &on, Limit: 1000})
	return rules, err
}

// evaluate runs rules over one alert. Only errors of the store stop it (the alert then stays
// pending and is evaluated again); a rule that fails to start its acquisition is audited and
// logged, and its claim on the host released, so that a later alert can try again — unless
// the host already has an active acquisition in the project (ECONFLICT), which the cool-down
// then covers.
func (s *Service) evaluate(ctx context.Context, a *quarry.Alert, rules []*quarry.DetectionRule, client xdr.Client) ([]*quarry.Acquisition, error) {
	if a.HostID == "" || s.cfg.Now().Sub(a.CreatedAt) > s.cfg.RuleLookback {
		return nil, nil
	}
	var started []*quarry.Acquisition
	for _, r := range rules {
		if !r.Enabled || !r.Matches(a) {
			continue
		}
		acted, err := s.cfg.Alerts.AlertRuleActed(ctx, a.ID, r.ID)
		if err != nil {
			return started, err
		}
		if acted {
			continue // an update of an alert the rule already acted on
		}
		t := &quarry.RuleTrigger{RuleID: r.ID, ConnectionID: a.ConnectionID, HostID: a.HostID, At: s.cfg.Now()}
		ok, err := s.cfg.Rules.ClaimRuleTrigger(ctx, t, s.scaled(r.Cooldown))
		if err != nil {
			return started, err
		}
		if !ok {
			s.cfg.Logger.Debug("detection rule matched a host in its cool-down", "rule", r.ID, "alert", a.ID, "host", a.HostName)
			continue
		}
		acqs, err := s.start(ctx, a, r)
		if quarry.ErrorCode(err) == quarry.ECONFLICT {
			// The host already has an active acquisition in the project: it is being
			// collected, which is what the rule wants, so the claim stands and later alerts
			// within the cool-down do not try again.
			s.cfg.Logger.Info("detection rule matched a host already being acquired", "rule", r.ID, "alert", a.ID, "host", a.HostName, "err", err)
			continue
		}
		if err != nil {
			if rerr := s.cfg.Rules.ReleaseRuleTrigger(ctx, t); rerr != nil {
				s.cfg.Logger.Error("release rule trigger", "rule", r.ID, "host", a.HostID, "err", rerr)
			}
			s.cfg.Logger.Warn("detection rule could not start an acquisition", "rule", r.ID, "alert", a.ID, "host", a.HostName, "err", err)
			continue
		}
		started = append(started, acqs...)
		if r.CommentOnAlert {
			s.comment(ctx, a, r, acqs, client)
		}
	}
	return started, nil
}

// start creates the project if the rule wants a new one, starts the acquisition, links it to
// the alert and audits the whole as one system action.
func (s *Service) start(ctx context.Context, a *quarry.Alert, r *quarry.DetectionRule) (acqs []*quarry.Acquisition, err error) {
	audit := quarry.NewAuditEntry(ctx, "detection_rule.acquire", "alert", strconv.FormatInt(a.ID, 10))
	details := map[string]any{"rule_id": r.ID, "rule": r.Name, "alert": a.ExternalID, "connection_id": a.ConnectionID,
		"host_id": a.HostID, "host": a.HostName, "severity": a.Severity, "title": a.Title}
	audit.Details = details
	defer func() {
		if err != nil {
			audit.Outcome = quarry.OutcomeFailure
			details["error"] = quarry.ErrorMessage(err)
		}
		s.audit(ctx, audit)
	}()
	var projectID int64
	if r.ProjectID != nil {
		projectID = *r.ProjectID
	} else {
		if s.cfg.Projects == nil {
			return nil, errors.New("alerts: the rule asks for a new project but no project service is configured")
		}
		p := &quarry.Project{Name: projectName(a), Description: fmt.Sprintf("Created by detection rule %q for alert %s: %s", r.Name, a.ExternalID, a.Title)}
		if err := s.cfg.Projects.CreateProject(ctx, p); err != nil {
			return nil, err
		}
		projectID = p.ID
		details["created_project"] = true
	}
	details["project_id"] = projectID
	acqs, err = s.cfg.Acquirer.Acquire(ctx, projectID, a.ConnectionID, []string{a.HostID}, r.Profile, false)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(acqs))
	for _, acq := range acqs {
		ids = append(ids, acq.ID)
		l := &quarry.AlertAcquisition{AlertID: a.ID, AcquisitionID: acq.ID, ProjectID: projectID, RuleID: &r.ID, RuleName: r.Name}
		if err := s.cfg.Alerts.LinkAlertAcquisition(ctx, l); err != nil {
			return acqs, err
		}
	}
	details["acquisition_ids"] = ids
	return acqs, nil
}

// projectName names a rule's new project after the alert's host and title, with the alert's
// id so that it is unique.
func projectName(a *quarry.Alert) string {
	host, _, _ := strings.Cut(a.HostName, ".")
	title := a.Title
	if utf8.RuneCountInString(title) > 120 {
		title = string([]rune(title)[:120]) + "…"
	}
	return fmt.Sprintf("Alert %d: %s on %s", a.ID, title, cmp.Or(host, a.HostID))
}

func (s *Service) audit(ctx context.Context, e *quarry.AuditEntry) {
	if s.cfg.Audit == nil {
		return
	}
	if err := s.cfg.Audit.RecordAudit(ctx, e); err != nil {
		s.cfg.Logger.Error("record audit entry", "action", e.Action, "err", err)
	}
}

// comment tells the platform's alert which acquisition a rule started. A failure is logged:
// the acquisition runs either way.
func (s *Service) comment(ctx context.Context, a *quarry.Alert, r *quarry.DetectionRule, acqs []*quarry.Acquisition, client xdr.Client) {
	if client == nil {
		c, err := s.cfg.Connections.FindConnectionByID(ctx, a.ConnectionID)
		if err == nil {
			client, err = s.cfg.Client(ctx, c)
		}
		if err != nil {
			s.cfg.Logger.Warn("comment on alert: open connection", "connection", a.ConnectionID, "err", err)
			return
		}
	}
	cm, ok := client.(xdr.AlertCommenter)
	if !ok {
		return
	}
	for _, acq := range acqs {
		if err := cm.CommentAlert(ctx, a.ExternalID, CommentText(s.cfg.PublicURL, r, acq)); err != nil {
			s.cfg.Logger.Warn("comment on alert", "alert", a.ExternalID, "acquisition", acq.ID, "err", err)
		}
	}
}

// CommentText is the comment a rule leaves on an alert for an acquisition it started.
func CommentText(publicURL string, r *quarry.DetectionRule, acq *quarry.Acquisition) string {
	link := fmt.Sprintf("%s/projects/%d/acquisitions#acquisition-%d", publicURL, acq.ProjectID, acq.ID)
	return fmt.Sprintf("Quarry detection rule %q started triage acquisition %d of %s: %s", r.Name, acq.ID, acq.HostName, link)
}
