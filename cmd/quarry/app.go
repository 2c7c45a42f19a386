package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"gocloud.dev/blob"

	"github.com/quarry-dfir/quarry/alerts"
	"github.com/quarry-dfir/quarry/auth"
	"github.com/quarry-dfir/quarry/blobstore"
	"github.com/quarry-dfir/quarry/bootstrap"
	"github.com/quarry-dfir/quarry/collectorbin"
	"github.com/quarry-dfir/quarry/detect"
	qhttp "github.com/quarry-dfir/quarry/http"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/integration"
	"github.com/quarry-dfir/quarry/jobs"
	"github.com/quarry-dfir/quarry/processing"
	"github.com/quarry-dfir/quarry/scheduler"
	"github.com/quarry-dfir/quarry/scheduler/limit"
	"github.com/quarry-dfir/quarry/secret"
	"github.com/quarry-dfir/quarry/sqldb"
)

// Main is the running server: configuration in, services wired, HTTP listening. Tests start
// the real program through it on 127.0.0.1:0.
type Main struct {
	Config Config
	Logger *slog.Logger

	DB    *sqldb.DB
	Blobs *blob.Bucket
	Box   *secret.Box
	Jobs  *jobs.Runner
	Auth  *auth.Service
	// Scheduler launches acquisitions through Live Response within the platform's limits.
	Scheduler *scheduler.Scheduler
	// Collectors provides quarry-host builds for bootstraps to download.
	Collectors *collectorbin.Store
	// Integrations manages XDR connections and their host inventories.
	Integrations *integration.Service
	// Intake receives collectors' uploads.
	Intake *intake.Service
	// Processing turns received packages into timeline events.
	Processing *processing.Processor
	sigma      *detect.Sigma // the Sigma rules processing evaluates, loaded at start-up
	HTTP       *qhttp.Server
	// closers run first on Close, for parts added after Run (the demo's emulator).
	closers []func() error
	closed  bool
}

// NewMain returns a Main with the configuration's defaults for a data directory.
func NewMain(cfg Config, logger *slog.Logger) *Main {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Main{Config: cfg, Logger: logger}
}

// Run opens everything in dependency order and starts serving. On error it closes what it
// opened; the error says which part failed and where.
func (m *Main) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	cfg := &m.Config
	if err := cfg.normalize(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	key, err := secret.LoadOrCreateKey(cfg.SecretKey, filepath.Join(cfg.DataDir, "secret.key"))
	if err != nil {
		return err
	}
	if m.Box, err = secret.NewBox(key); err != nil {
		return err
	}

	if m.DB, err = sqldb.OpenAndMigrate(ctx, cfg.Database); err != nil {
		return err
	}
	// On SQLite the timeline's full-text index is built behind the inserts (sqldb/search.go).
	indexCtx, stopIndex := context.WithCancel(context.WithoutCancel(ctx))
	indexDone := make(chan struct{})
	go func() {
		defer close(indexDone)
		sqldb.NewEventService(m.DB).RunSearchIndexer(indexCtx, m.Logger.With("part", "search"))
	}()
	m.closers = append(m.closers, func() error { stopIndex(); <-indexDone; return nil })
	blobURL := cfg.BlobURL
	if blobURL == "" {
		if blobURL, err = blobstore.DefaultURL(cfg.DataDir); err != nil {
			return err
		}
	}
	if m.Blobs, err = blobstore.Open(ctx, blobURL); err != nil {
		return err
	}

	users, sessions, tokens := sqldb.NewUserService(m.DB), sqldb.NewSessionService(m.DB), sqldb.NewTokenService(m.DB)
	audit := sqldb.NewAuditService(m.DB)
	m.Auth = &auth.Service{Users: users, Sessions: sessions, Tokens: tokens, Audit: audit}

	connections, hosts := sqldb.NewConnectionService(m.DB), sqldb.NewHostService(m.DB)
	m.Integrations = &integration.Service{Connections: connections, Hosts: hosts, Box: m.Box, Logger: m.Logger.With("part", "integration"), TimeScale: cfg.TimeScale}

	// Listen before anything names the server's URL: with port 0 only the listener knows it.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	defer func() {
		if err != nil && m.URL() == "" { // not serving yet: nothing else will close it
			ln.Close()
		}
	}()
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + ln.Addr().String()
	}
	pub, _ := url.Parse(cfg.PublicURL)
	m.HTTP = &qhttp.Server{
		Addr: cfg.Addr, Listener: ln, PublicURL: pub, Version: Version, Logger: m.Logger.With("part", "http"),
		TrustProxyHeaders: cfg.TrustProxy,
		Auth:              m.Auth, Users: users, Tokens: tokens, Audit: audit,
		Projects: sqldb.NewProjectService(m.DB), Experiments: sqldb.NewExperimentService(m.DB),
		Connections: connections, Hosts: hosts, Integrations: m.Integrations,
		Health: m.DB.Ping,
		Events: sqldb.NewEventService(m.DB),
	}
	if err := m.openIntake(ctx, blobURL, audit); err != nil {
		return err
	}

	// The scheduler needs the public URL, intake and collector builds; its workers must be
	// registered before the job runner is created.
	acquisitions := sqldb.NewAcquisitionService(m.DB)
	limits := limit.Fixed(limit.Limits{MaxRunning: cfg.LRMaxSessions, LaunchesPerWindow: cfg.LRLaunchesPerMinute,
		// The margin is real time, not scaled: it covers jitter in how long a call takes to
		// reach Defender, which a faster emulator does not shorten.
		Window: time.Duration(float64(time.Minute)/cfg.TimeScale) + cfg.LRWindowMargin})
	sign, err := signer(*cfg)
	if err != nil {
		return err
	}
	if m.Scheduler, err = scheduler.New(scheduler.Config{
		Acquisitions: acquisitions, Connections: connections, Hosts: hosts,
		Integrations: m.Integrations, Limiter: sqldb.NewLimiter(m.DB, limits), Limits: limits,
		Intake: m.Intake, Collectors: m.Collectors, UploadTokens: sqldb.NewUploadTokenService(m.DB),
		PublicURL: cfg.PublicURL, Version: Version, Logger: m.Logger.With("part", "scheduler"),
		HeartbeatTimeout: cfg.HeartbeatTimeout, OfflineExpiry: cfg.OfflineExpiry, Sign: sign, TimeScale: cfg.TimeScale,
	}); err != nil {
		return err
	}
	// Alerts: each connection's are polled and stored, and detection rules acquire their hosts.
	alertStore, ruleStore := sqldb.NewAlertService(m.DB), sqldb.NewDetectionRuleService(m.DB)
	alertSvc, err := alerts.New(alerts.Config{
		Alerts: alertStore, Rules: ruleStore, Connections: connections, Projects: sqldb.NewProjectService(m.DB),
		Audit: audit, Acquirer: m.Scheduler, Client: m.Integrations.Client, TimeScale: cfg.TimeScale,
		PublicURL: cfg.PublicURL, Logger: m.Logger.With("part", "alerts"), RuleLookback: cfg.AlertRuleLookback, PollEvery: cfg.AlertPollEvery,
	})
	if err != nil {
		return err
	}
	workers := river.NewWorkers()
	periodic := m.Scheduler.Register(workers)
	periodic = append(periodic, m.Processing.Register(workers)...)
	periodic = append(periodic, alertSvc.Register(workers)...)
	// Without processing workers the queue is left out: its jobs wait for a server that has them.
	var queues map[string]int
	if m.processingWorkers() > 0 {
		queues = m.Processing.Queues()
	}
	if m.Jobs, err = jobs.New(m.DB, jobs.Config{
		Logger: m.Logger.With("part", "jobs"), Sessions: sessions, Tokens: tokens, Users: users, Connections: m.Integrations,
		EnrolTokens: sqldb.NewEnrolTokenService(m.DB), Workers: workers, PeriodicJobs: periodic, RescueAfter: cfg.JobRescueAfter,
		Queues: queues,
	}); err != nil {
		return err
	}
	m.Scheduler.SetClient(m.Jobs.Client())
	m.Processing.SetClient(m.Jobs.Client())
	if err := m.Jobs.Start(ctx); err != nil {
		return fmt.Errorf("start job queue: %w", err)
	}
	m.HTTP.Acquirer = m.Scheduler
	m.HTTP.Alerts, m.HTTP.DetectionRules = alertStore, ruleStore

	if err := m.HTTP.Open(); err != nil {
		return err
	}
	m.Logger.Info("quarry serving", "url", m.URL(), "public_url", cfg.PublicURL, "database", m.DB.Dialect(), "data", cfg.DataDir, "version", Version)
	return nil
}

// URL is where the HTTP server listens (the actual port when Addr asked for :0).
func (m *Main) URL() string {
	if m.HTTP == nil {
		return ""
	}
	return m.HTTP.URL()
}

// Close stops serving, lets jobs finish, and closes the stores, in reverse order of opening.
func (m *Main) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []string
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i](); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if m.HTTP != nil {
		if err := m.HTTP.Close(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if m.Jobs != nil {
		if err := m.Jobs.Stop(context.Background()); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if m.Blobs != nil {
		if err := m.Blobs.Close(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if m.DB != nil {
		if err := m.DB.Close(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("close: %s", strings.Join(errs, "; "))
	}
	return nil
}

// newLogger builds the process logger from the configuration.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q must be debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// signer returns the Authenticode signing step for the Windows bootstrap when a certificate is
// configured. The certificate is signed with once here, so that a wrong file or a missing
// osslsigncode stops the start instead of the first Windows acquisition.
func signer(cfg Config) (func(ctx context.Context, ps1 []byte) ([]byte, error), error) {
	if cfg.SignCert == "" {
		return nil, nil
	}
	cert, err := os.ReadFile(cfg.SignCert)
	if err != nil {
		return nil, fmt.Errorf("bootstrap signing certificate: %w", err)
	}
	key, err := os.ReadFile(cfg.SignKey)
	if err != nil {
		return nil, fmt.Errorf("bootstrap signing key: %w", err)
	}
	sign := func(ctx context.Context, ps1 []byte) ([]byte, error) { return bootstrap.Sign(ctx, ps1, cert, key) }
	if _, err := sign(context.Background(), []byte("Write-Output 'Quarry signing check'\r\n")); err != nil {
		return nil, fmt.Errorf("cannot sign the Windows bootstrap with %s: %w", cfg.SignCert, err)
	}
	return sign, nil
}
