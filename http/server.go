// Package http serves Quarry's REST API (/api/v1) and its server-rendered web UI over HTTP.
// Handlers translate between HTTP and the domain services; they hold no business rules of their
// own beyond who may call what.
package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
	"github.com/quarry-dfir/quarry/intake"
	"github.com/quarry-dfir/quarry/integration"
)

// ShutdownTimeout is how long Close waits for requests in flight.
const ShutdownTimeout = 10 * time.Second

// Server is Quarry's HTTP server. Main sets the services; Open starts listening.
type Server struct {
	Addr string // listen address, e.g. "127.0.0.1:8080"
	// Listener, when set, is used instead of listening on Addr (Main listens early so that the
	// default public URL can name the real port).
	Listener  net.Listener
	PublicURL *url.URL // how users and collectors reach the server; https here makes cookies Secure
	Version   string
	Logger    *slog.Logger
	// TrustProxyHeaders takes the client address from X-Forwarded-For; set it only behind a proxy
	// that overwrites that header.
	TrustProxyHeaders bool

	Auth        *auth.Service
	Users       quarry.UserService
	Tokens      quarry.TokenService
	Audit       quarry.AuditService
	Projects    quarry.ProjectService
	Experiments quarry.ExperimentService
	Connections quarry.ConnectionService
	Hosts       quarry.HostService
	// Integrations checks connections and keeps their host inventories.
	Integrations *integration.Service
	// Intake receives collectors' packages; Acquisitions and Evidence serve their API.
	Intake *intake.Service
	// Acquirer launches acquisitions through XDR platforms; nil hides the Acquire actions.
	Acquirer Acquirer
	// CollectorDownloads serves quarry-host builds to bootstraps holding an enrolment token.
	CollectorDownloads http.Handler
	Acquisitions       quarry.AcquisitionService
	Evidence           quarry.EvidenceService
	// Events is the timeline store; nil hides the events API, the timeline and the overview.
	Events quarry.EventService
	// EventTotalUpTo is where event listings stop counting unless asked for an exact total;
	// 0 is DefaultEventTotalUpTo.
	EventTotalUpTo int64
	// Reprocessor runs processing again on evidence; nil hides Reprocess.
	Reprocessor Reprocessor
	// IOCs stores projects' IOC lists; nil hides their API.
	IOCs quarry.IOCService
	// Retagger retags a project's events after its IOC lists changed; nil leaves them as tagged.
	Retagger Retagger
	// Alerts stores XDR alerts; nil hides their API and the Detections → Alerts page.
	Alerts quarry.AlertService
	// DetectionRules stores the rules that start acquisitions from alerts; nil hides them.
	DetectionRules quarry.DetectionRuleService
	// Health reports whether the server's dependencies (the database) answer.
	Health func(ctx context.Context) error

	ln       net.Listener
	srv      *http.Server
	mux      *http.ServeMux
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	pages    *pages
}

// Open builds the routes and starts listening; a busy port is an error here, not later.
func (s *Server) Open() error {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.PublicURL == nil {
		s.PublicURL = &url.URL{Scheme: "http", Host: s.Addr}
	}
	if err := s.init(); err != nil {
		return err
	}
	if s.Listener == nil {
		ln, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return fmt.Errorf("http: listen on %s: %w", s.Addr, err)
		}
		s.Listener = ln
	}
	s.ln = s.Listener
	ln := s.ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// Handler returns the server's handler without listening (for tests and embedding).
func (s *Server) Handler() (http.Handler, error) {
	if s.srv == nil {
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if err := s.init(); err != nil {
			return nil, err
		}
	}
	return s.srv.Handler, nil
}

func (s *Server) init() error {
	p, err := loadPages()
	if err != nil {
		return err
	}
	s.pages = p
	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quarry_http_requests_total", Help: "HTTP requests by route and status class.",
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "quarry_http_request_duration_seconds", Help: "HTTP request latency by route.", Buckets: prometheus.DefBuckets,
	}, []string{"route"})
	s.registry.MustRegister(s.requests, s.latency)

	s.mux = http.NewServeMux()
	s.routes()
	// CrossOriginProtection rejects cross-site state-changing browser requests by their
	// Sec-Fetch-Site/Origin headers; the per-session CSRF token remains the primary defence.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(s.Logger, w, r, quarry.Errorf(quarry.EFORBIDDEN, "Cross-site request refused."))
	}))
	s.srv = &http.Server{
		Handler:           s.recoverer(securityHeaders(cop.Handler(s.mux))),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn),
	}
	return nil
}

// URL returns the address the server listens on, usable once Open returned.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops accepting requests and waits up to ShutdownTimeout for those in flight.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

func (s *Server) routes() {
	m := s.mux
	m.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	m.Handle("GET /static/", http.StripPrefix("/static/", staticHandler()))

	s.api("GET /api/v1/health", "", "", s.handleHealth)
	s.api("GET /api/v1/me", quarry.RoleViewer, "", s.handleMe)
	s.api("GET /api/v1/experiments", quarry.RoleViewer, "", s.handleListExperiments)
	s.api("PUT /api/v1/experiments/{name}", quarry.RoleAdmin, "experiment.set", s.handleSetExperiment)
	s.api("GET /api/v1/projects", quarry.RoleViewer, "", s.handleListProjects)
	s.api("POST /api/v1/projects", quarry.RoleAnalyst, "project.create", s.handleCreateProject)
	s.api("GET /api/v1/projects/{id}", quarry.RoleViewer, "", s.handleGetProject)
	s.api("GET /api/v1/audit", quarry.RoleAdmin, "", s.handleListAudit)
	s.api("GET /api/v1/users", quarry.RoleAdmin, "", s.handleListUsers)
	s.api("POST /api/v1/users", quarry.RoleAdmin, "user.create", s.handleCreateUser)
	s.api("GET /api/v1/tokens", quarry.RoleViewer, "", s.handleListTokens)
	s.api("POST /api/v1/tokens", quarry.RoleViewer, "token.create", s.handleCreateToken)
	s.api("DELETE /api/v1/tokens/{id}", quarry.RoleViewer, "token.revoke", s.handleRevokeToken)
	s.connectionRoutes()
	s.intakeRoutes()
	s.acquisitionRoutes()
	s.eventRoutes()
	s.iocRoutes()
	s.alertRoutes()
	s.api("/api/", "", "", func(w http.ResponseWriter, r *http.Request) error {
		return quarry.Errorf(quarry.ENOTFOUND, "No API endpoint %s %s.", r.Method, r.URL.Path)
	})

	s.uiRoutes()
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	status, dbStatus := http.StatusOK, "ok"
	if s.Health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.Health(ctx); err != nil {
			s.Logger.Warn("health check failed", "err", err)
			status, dbStatus = http.StatusServiceUnavailable, "unavailable"
		}
	}
	writeJSON(w, status, map[string]string{"status": map[bool]string{true: "ok", false: "degraded"}[status == http.StatusOK], "database": dbStatus, "version": s.Version})
	return nil
}
