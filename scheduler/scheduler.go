// Package scheduler starts XDR acquisitions: it turns an analyst's request into Live Response
// actions that run the connection's bootstrap script, within the platform's limits (through a
// limit.Limiter), and follows each action until the collector takes over or the action fails.
//
// All state lives in the database and in River jobs, so a restarted server resumes: a `launch`
// job per acquisition starts its action (or waits for a slot, or for the host to come online),
// a `watch` job per running action polls it and frees the slot when it ends, and a periodic
// `watchdog` fails silent collectors and expires leases whose holder died.
//
// The action id travels in the watch job's arguments instead of a new column: an action only
// matters while it runs, and a host runs at most one, so Cancel finds it with FindActiveAction
// and checks that its comment names the acquisition.
package scheduler

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/bootstrap"
	"github.com/quarry-dfir/quarry/collectorbin"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/integration"
	"github.com/quarry-dfir/quarry/jobs"
	"github.com/quarry-dfir/quarry/scheduler/limit"
	"github.com/quarry-dfir/quarry/xdr"
)

// Defaults for Config.
const (
	DefaultPollEvery        = 10 * time.Second
	DefaultHeartbeatTimeout = 15 * time.Minute
	DefaultOfflineExpiry    = 72 * time.Hour
	// ScriptTimeout is how long Defender lets a Live Response script run; a lease older than
	// this plus LeaseMargin belongs to a holder that died.
	ScriptTimeout = 10 * time.Minute
	LeaseMargin   = 5 * time.Minute
	// PendingTooLong is how long an action may stay pending before the scheduler checks whether
	// its host went offline.
	PendingTooLong = 2 * time.Minute
	// enrolTTL is the life of the enrolment token a bootstrap carries; it is replaced when less
	// than enrolRenew is left, so that a script in the library always has hours to go.
	enrolTTL   = 24 * time.Hour
	enrolRenew = 6 * time.Hour
	// LeaseRetention is how long a released lease stays in the limiter's ledger.
	LeaseRetention = 7 * 24 * time.Hour
	// pollCallsPerMinute bounds GetAction calls per connection: Defender allows 100 a minute
	// but also 1,500 an hour, which a steady 25 a minute would reach. A launch's first poll
	// (firstPoll after it) is on top, at most LaunchesPerWindow a minute.
	pollCallsPerMinute = 12
)

// Config is what a Scheduler needs. Acquisitions, Connections, Hosts, Integrations, Limiter,
// Intake and Collectors are required.
type Config struct {
	Acquisitions quarry.AcquisitionService
	Connections  quarry.ConnectionService
	Hosts        quarry.HostService
	Integrations *integration.Service
	Limiter      limit.Limiter
	Intake       *intake.Service
	Collectors   *collectorbin.Store
	// UploadTokens, when set, loses a cancelled acquisition's upload tokens at once (the intake
	// refuses uploads to a cancelled acquisition anyway).
	UploadTokens quarry.UploadTokenService
	// PublicURL is how hosts reach Quarry; the bootstrap downloads quarry-host from it.
	PublicURL string
	// CACertPEM is a private CA the hosts must trust for PublicURL, if any.
	CACertPEM []byte
	// Version is the quarry-host version shown in the bootstrap.
	Version string
	// Limits gives each connection's limits, the Limiter's: the Limiter enforces them, the
	// scheduler paces its retries by them. Default limit.Fixed(limit.Default).
	Limits           limit.LimitsFunc
	PollEvery        time.Duration
	HeartbeatTimeout time.Duration
	OfflineExpiry    time.Duration
	// TimeScale divides every wait and timeout, to match an emulator run faster; 0 is 1.
	TimeScale float64
	Logger    *slog.Logger
	Now       func() time.Time
	// Client opens a connection's platform client; default Integrations.Client. Tests pass
	// one that runs the provider at the emulator's TimeScale.
	Client func(ctx context.Context, c *quarry.Connection) (xdr.Client, error)
	// Sign, when set, signs the Windows bootstrap (Authenticode) before it is uploaded, so a
	// tenant can keep unsigned script execution off. bootstrap.Sign with the configured
	// certificate is the production one.
	Sign func(ctx context.Context, ps1 []byte) ([]byte, error)
	// ScriptOverride, when set, replaces the rendered bootstrap's content for an OS family
	// ("windows", "linux", "macos"); the library name stays the same. Benchmarks use it to
	// measure launching alone, with a script that prints the started line and exits instead of
	// running a collector. Production leaves it nil.
	ScriptOverride func(os string) ([]byte, error)
}

// Scheduler launches and follows XDR acquisitions. It is safe for concurrent use.
type Scheduler struct {
	cfg Config

	mu      sync.Mutex
	client  jobs.Client
	scripts map[scriptKey]*scriptRecord
	clients map[int64]openClient
	waiting map[int64]map[int64]bool // connection → acquisitions waiting for its limits (queue)
	pruned  time.Time                // when the watchdog last pruned the lease ledger
	inline  int                      // launches sleeping in their worker (sleepInline)
	targets map[int64]time.Time      // acquisition → when its snoozed launch should try again
}

// openClient is a provider client kept across jobs, so that its access token and rate windows
// are shared instead of signing in for every call. A changed connection opens a new one.
type openClient struct {
	updatedAt time.Time
	client    xdr.Client
}

type scriptKey struct {
	connectionID int64
	os           string
}

// scriptRecord is what this process last uploaded for a (connection, OS family): a change of any
// field, or an enrolment token close to expiry, means the library copy must be replaced.
type scriptRecord struct {
	mu          sync.Mutex // one upload at a time per script
	token       string
	tokenExpiry time.Time
	publicURL   string
	builds      string // the pinned builds, in a stable form
	contentHash string
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Acquisitions == nil || cfg.Connections == nil || cfg.Hosts == nil || cfg.Integrations == nil ||
		cfg.Limiter == nil || cfg.Intake == nil || cfg.Collectors == nil {
		return nil, errors.New("scheduler: services, limiter, intake and collector store are required")
	}
	if cfg.PublicURL == "" {
		return nil, errors.New("scheduler: public URL is required: hosts download the collector from it")
	}
	cfg.PollEvery = cmp.Or(cfg.PollEvery, DefaultPollEvery)
	cfg.HeartbeatTimeout = cmp.Or(cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	cfg.OfflineExpiry = cmp.Or(cfg.OfflineExpiry, DefaultOfflineExpiry)
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.Limits == nil {
		cfg.Limits = limit.Fixed(limit.Default)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = cfg.Integrations.Client
	}
	if cfg.PollEvery < 0 || cfg.HeartbeatTimeout < 0 || cfg.OfflineExpiry < 0 {
		return nil, errors.New("scheduler: negative duration in config")
	}
	return &Scheduler{cfg: cfg, scripts: map[scriptKey]*scriptRecord{}, clients: map[int64]openClient{},
		waiting: map[int64]map[int64]bool{}, targets: map[int64]time.Time{}}, nil
}

// scaled shortens a platform duration by the TimeScale.
func (s *Scheduler) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) / s.cfg.TimeScale)
}

// Register adds the scheduler's workers and returns its periodic jobs, for jobs.New.
func (s *Scheduler) Register(workers *river.Workers) []*river.PeriodicJob {
	river.AddWorker(workers, &launchWorker{s: s})
	river.AddWorker(workers, &watchWorker{s: s})
	river.AddWorker(workers, &watchdogWorker{s: s})
	return []*river.PeriodicJob{
		// Once a (scaled) minute at most: it guards timeouts of a quarter of an hour and reads
		// every collection, a cost that at PollEvery's pace grows with a thousand of them.
		river.NewPeriodicJob(river.PeriodicInterval(max(s.cfg.PollEvery, s.scaled(time.Minute))),
			func() (river.JobArgs, *river.InsertOpts) { return WatchdogArgs{}, nil },
			&river.PeriodicJobOpts{ID: WatchdogArgs{}.Kind(), RunOnStart: true}),
	}
}

// SetClient gives the scheduler River's client, once jobs.New made it.
func (s *Scheduler) SetClient(c jobs.Client) {
	s.mu.Lock()
	s.client = c
	s.mu.Unlock()
}

func (s *Scheduler) enqueue(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) error {
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c == nil {
		return quarry.Errorf(quarry.EUNAVAILABLE, "The acquisition scheduler is not running.")
	}
	if _, err := c.Insert(ctx, args, opts); err != nil {
		return fmt.Errorf("scheduler: enqueue %s: %w", args.Kind(), err)
	}
	return nil
}

// Profiles are the collection profiles an acquisition may ask for.
var Profiles = []string{"triage", "light", "full"}

// Acquire creates one queued acquisition per host and enqueues its launch. A host that already
// has an active acquisition in the project is refused with ECONFLICT unless force is set.
func (s *Scheduler) Acquire(ctx context.Context, projectID, connectionID int64, hostIDs []string, profile string, force bool) ([]*quarry.Acquisition, error) {
	if !slices.Contains(Profiles, profile) {
		return nil, quarry.FieldError("profile", "Profile must be one of %s.", strings.Join(Profiles, ", "))
	}
	if len(hostIDs) == 0 {
		return nil, quarry.FieldError("host_ids", "Choose at least one host.")
	}
	c, err := s.cfg.Connections.FindConnectionByID(ctx, connectionID)
	if err != nil {
		return nil, err
	}
	if c.DeletedAt != nil {
		return nil, quarry.Errorf(quarry.ENOTFOUND, "Connection %q was deleted.", c.Name)
	}
	hosts := make([]*xdr.Host, 0, len(hostIDs))
	seen := map[string]bool{}
	refreshed := false
	for _, id := range hostIDs {
		if seen[id] {
			return nil, quarry.FieldError("host_ids", "Host %q is listed twice.", id)
		}
		seen[id] = true
		h, err := s.cfg.Hosts.FindHost(ctx, connectionID, id)
		if quarry.ErrorCode(err) == quarry.ENOTFOUND && !refreshed {
			// An API caller may name hosts before anyone looked at the inventory, or a host
			// that enrolled since: fetch it once (one platform call) before refusing.
			refreshed = true
			if err := s.cfg.Integrations.Refresh(ctx, c); err != nil {
				return nil, err
			}
			h, err = s.cfg.Hosts.FindHost(ctx, connectionID, id)
		}
		if quarry.ErrorCode(err) == quarry.ENOTFOUND {
			return nil, quarry.Errorf(quarry.ENOTFOUND, "Host %q is not in the inventory of connection %q.", id, c.Name)
		} else if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	if !force {
		active, err := s.activeByHost(ctx, projectID, connectionID)
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			if a := active[h.ID]; a != nil {
				return nil, quarry.Errorf(quarry.ECONFLICT, "Host %s already has an active acquisition (%d, %s); force a new one to collect it again.", h.Name, a.ID, a.State)
			}
		}
	}
	out := make([]*quarry.Acquisition, 0, len(hosts))
	for _, h := range hosts {
		a := &quarry.Acquisition{ProjectID: projectID, ConnectionID: &connectionID, HostID: h.ID, HostName: h.Name,
			Source: quarry.SourceXDR, Profile: profile, State: quarry.AcquisitionQueued}
		if err := s.cfg.Acquisitions.CreateAcquisition(ctx, a); err != nil {
			return out, err
		}
		if err := s.enqueue(ctx, LaunchArgs{AcquisitionID: a.ID}, nil); err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

// activeByHost returns the project's non-terminal acquisitions of a connection, by host.
func (s *Scheduler) activeByHost(ctx context.Context, projectID, connectionID int64) (map[string]*quarry.Acquisition, error) {
	out := map[string]*quarry.Acquisition{}
	for _, st := range activeStates {
		list, err := s.findAll(ctx, quarry.AcquisitionFilter{ProjectID: &projectID, State: &st})
		if err != nil {
			return nil, err
		}
		for _, a := range list {
			if a.ConnectionID != nil && *a.ConnectionID == connectionID {
				out[a.HostID] = a
			}
		}
	}
	return out, nil
}

// activeStates are the states in which an acquisition still holds its host.
var activeStates = []string{quarry.AcquisitionQueued, quarry.AcquisitionWaitingForSlot, quarry.AcquisitionOfflinePending,
	quarry.AcquisitionLaunching, quarry.AcquisitionCollecting, quarry.AcquisitionUploading}

// findAll pages through every acquisition that f selects.
func (s *Scheduler) findAll(ctx context.Context, f quarry.AcquisitionFilter) ([]*quarry.Acquisition, error) {
	var out []*quarry.Acquisition
	f.Limit = 500
	for {
		page, total, err := s.cfg.Acquisitions.FindAcquisitions(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("scheduler: find acquisitions: %w", err)
		}
		out = append(out, page...)
		f.Offset += len(page)
		if len(page) == 0 || f.Offset >= total {
			return out, nil
		}
	}
}

// Cancel stops an acquisition: its Live Response action if one runs, its lease, and its state.
func (s *Scheduler) Cancel(ctx context.Context, id int64) (*quarry.Acquisition, error) {
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if quarry.AcquisitionTerminal(a.State) {
		return nil, quarry.Errorf(quarry.ECONFLICT, "Acquisition %d is already %s.", id, a.State)
	}
	if a.State == quarry.AcquisitionLaunching && a.ConnectionID != nil {
		if err := s.cancelAction(ctx, a); err != nil {
			s.cfg.Logger.Warn("cancel live response action", "acquisition", id, "err", err)
		}
	}
	if _, err := s.cfg.Limiter.ReleaseByAcquisition(ctx, id, s.cfg.Now()); err != nil {
		return nil, fmt.Errorf("scheduler: release lease: %w", err)
	}
	if s.cfg.UploadTokens != nil {
		if err := s.cfg.UploadTokens.RevokeUploadTokens(ctx, id, s.cfg.Now()); err != nil {
			return nil, fmt.Errorf("scheduler: revoke upload tokens: %w", err)
		}
	}
	return s.transition(ctx, id, quarry.AcquisitionCancelled, "")
}

// cancelAction cancels the host's active action when it is this acquisition's.
func (s *Scheduler) cancelAction(ctx context.Context, a *quarry.Acquisition) error {
	client, err := s.clientFor(ctx, *a.ConnectionID)
	if err != nil {
		return err
	}
	act, err := client.FindActiveAction(ctx, a.HostID)
	if errors.Is(err, xdr.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if act.Comment != comment(a.ID) {
		return nil
	}
	return client.CancelAction(ctx, act.ID, fmt.Sprintf("Quarry acquisition %d cancelled", a.ID))
}

// Retry starts a new acquisition of the host of a failed, cancelled or expired one.
func (s *Scheduler) Retry(ctx context.Context, id int64) (*quarry.Acquisition, error) {
	a, err := s.cfg.Acquisitions.FindAcquisitionByID(ctx, id)
	if err != nil {
		return nil, err
	}
	switch a.State {
	case quarry.AcquisitionFailed, quarry.AcquisitionCancelled, quarry.AcquisitionExpired:
	default:
		return nil, quarry.Errorf(quarry.ECONFLICT, "Acquisition %d is %s; only a failed, cancelled or expired one can be retried.", id, a.State)
	}
	if a.Source != quarry.SourceXDR || a.ConnectionID == nil {
		return nil, quarry.Errorf(quarry.EINVALID, "Acquisition %d was not made through an XDR connection.", id)
	}
	out, err := s.Acquire(ctx, a.ProjectID, *a.ConnectionID, []string{a.HostID}, a.Profile, true)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func comment(id int64) string { return "Quarry acquisition " + strconv.FormatInt(id, 10) }

func (s *Scheduler) transition(ctx context.Context, id int64, state, msg string) (*quarry.Acquisition, error) {
	a, err := s.cfg.Acquisitions.TransitionAcquisition(ctx, id, quarry.AcquisitionTransition{State: state, Error: msg})
	if err != nil {
		return nil, fmt.Errorf("scheduler: acquisition %d to %s: %w", id, state, err)
	}
	s.cfg.Logger.Info("acquisition", "id", id, "state", state, "error", msg)
	return a, nil
}

func (s *Scheduler) clientFor(ctx context.Context, connectionID int64) (xdr.Client, error) {
	c, err := s.cfg.Connections.FindConnectionByID(ctx, connectionID)
	if err != nil {
		return nil, err
	}
	return s.open(ctx, c)
}

// open returns the connection's client, reusing the one opened for the same settings.
func (s *Scheduler) open(ctx context.Context, c *quarry.Connection) (xdr.Client, error) {
	s.mu.Lock()
	oc, ok := s.clients[c.ID]
	s.mu.Unlock()
	if ok && oc.updatedAt.Equal(c.UpdatedAt) {
		return oc.client, nil
	}
	client, err := s.cfg.Client(ctx, c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.clients[c.ID] = openClient{updatedAt: c.UpdatedAt, client: client}
	s.mu.Unlock()
	return client, nil
}

// ensureScript makes sure the library holds the current bootstrap for the connection and OS
// family, uploading it when this process has not, when its enrolment token nears expiry, or when
// the public URL or the builds changed.
func (s *Scheduler) ensureScript(ctx context.Context, client xdr.Client, connectionID int64, family string) (string, error) {
	s.mu.Lock()
	rec := s.scripts[scriptKey{connectionID, family}]
	if rec == nil {
		rec = &scriptRecord{}
		s.scripts[scriptKey{connectionID, family}] = rec
	}
	s.mu.Unlock()
	rec.mu.Lock()
	defer rec.mu.Unlock()

	builds, err := s.cfg.Collectors.Builds(ctx)
	if len(builds) == 0 {
		return "", fmt.Errorf("scheduler: no collector builds: %w", err)
	}
	pins := map[string]string{}
	for p, b := range builds {
		pins[p] = b.SHA256
	}
	var key strings.Builder
	for _, p := range slices.Sorted(maps.Keys(pins)) {
		key.WriteString(p + "=" + pins[p] + ";")
	}
	now := s.cfg.Now()
	name := bootstrap.LibraryName(connectionID, family)
	if rec.contentHash != "" && rec.publicURL == s.cfg.PublicURL && rec.builds == key.String() && rec.tokenExpiry.Sub(now) > s.scaled(enrolRenew) {
		return name, nil
	}
	token := rec.token
	expiry := rec.tokenExpiry
	if token == "" || expiry.Sub(now) <= s.scaled(enrolRenew) {
		secret, t, err := s.cfg.Intake.IssueEnrolToken(ctx, connectionID, enrolTTL)
		if err != nil {
			return "", fmt.Errorf("scheduler: issue enrolment token: %w", err)
		}
		token, expiry = secret, t.ExpiresAt
	}
	sc, err := s.render(bootstrap.Params{OS: family, ServerURL: s.cfg.PublicURL, EnrolToken: token, Builds: pins,
		Version: s.cfg.Version, ConnectionID: connectionID, CACertPEM: s.cfg.CACertPEM})
	if err != nil {
		return "", err
	}
	if family == "windows" && s.cfg.Sign != nil {
		signed, err := s.cfg.Sign(ctx, sc.Content)
		if err != nil {
			return "", fmt.Errorf("scheduler: sign %s: %w", sc.Name, err)
		}
		sum := sha256.Sum256(signed)
		sc.Content, sc.SHA256 = signed, hex.EncodeToString(sum[:])
	}
	if err := client.PutScript(ctx, xdr.Script{Name: sc.Name, Content: sc.Content,
		Description:           "Quarry bootstrap: starts the quarry-host collector for one acquisition.",
		ParametersDescription: "<acquisition id> <profile>"}); err != nil {
		return "", fmt.Errorf("scheduler: upload %s: %w", sc.Name, err)
	}
	rec.token, rec.tokenExpiry, rec.publicURL, rec.builds, rec.contentHash = token, expiry, s.cfg.PublicURL, key.String(), sc.SHA256
	return sc.Name, nil
}

// render makes the bootstrap, or Config.ScriptOverride's replacement under the same name.
func (s *Scheduler) render(p bootstrap.Params) (bootstrap.Script, error) {
	if s.cfg.ScriptOverride == nil {
		return bootstrap.Render(p)
	}
	content, err := s.cfg.ScriptOverride(p.OS)
	if err != nil {
		return bootstrap.Script{}, fmt.Errorf("scheduler: script override: %w", err)
	}
	sum := sha256.Sum256(content)
	return bootstrap.Script{Name: bootstrap.LibraryName(p.ConnectionID, p.OS), Content: content, SHA256: hex.EncodeToString(sum[:])}, nil
}
