package defendersim

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// App is an Entra app registration the emulator knows: its tenant, credentials and granted app roles.
type App struct {
	TenantID, ClientID, ClientSecret string
	Roles                            []string // app-role values, e.g. "Machine.Read.All"
}

// AllRoles are the application permissions of mde-api.md §9; the default app holds all of them.
var AllRoles = []string{
	"Machine.Read.All", "Machine.ReadWrite.All", "Machine.LiveResponse", "Library.Manage",
	"Machine.CollectForensics", "Machine.Isolate", "Machine.Scan", "Alert.Read.All", "Alert.ReadWrite.All",
}

// Options configure an emulator.
type Options struct {
	Addr      string       // default "127.0.0.1:0"
	Machines  int          // default 40
	Seed      int64        // same seed => same devices, alerts and artifacts
	TimeScale float64      // 0 or 1 = real time; 60 => every limit window, timeout and expiry runs 60x faster
	DataDir   string       // device file systems, results and the CA; default: a temp dir removed on Close
	Limits    Limits       // zero fields => documented defaults
	Apps      []App        // nil => one app with every permission (see DefaultApp)
	Logger    *slog.Logger // nil => discard

	// Anchor is the "now" of the simulated hosts' artifacts; zero lets simhost derive a fixed date from
	// the seed, which keeps artifacts byte-identical across runs.
	Anchor time.Time
	// PlainGetFile serves GetFile results as the raw file instead of gzip (see doc.go).
	PlainGetFile bool
	// DownloadClient is used by the PowerShell stand-in's `download` step; nil => a client that
	// trusts the system roots.
	DownloadClient *http.Client
}

// Limits are the service limits the emulator enforces. Durations are in simulated time and are
// divided by Options.TimeScale. Zero fields take the documented defaults.
type Limits struct {
	MaxSessions           int           // running Live Response sessions per tenant (25)
	LiveResponsePerMinute int           // runliveresponse calls a minute (10)
	PerMinute             int           // other endpoints, calls a minute (100)
	PerHour               int           // other endpoints, calls an hour (1,500)
	PackageURIPerMinute   int           // GetPackageUri calls a minute (2)
	PackageURIPerHour     int           // GetPackageUri calls an hour (120)
	ScriptTimeout         time.Duration // RunScript is killed after this (10 min)
	OfflineQueue          time.Duration // an offline device keeps a request Pending this long (72 h)
	ResultLinkTTL         time.Duration // result download links expire after this (30 min)
	PackageLinkTTL        time.Duration // investigation package links expire after this (1 min)
	PickupDelay           time.Duration // an online device picks a request up after this (3 s)
	PackageDuration       time.Duration // collecting an investigation package takes this (30 s)
	TokenLifetime         time.Duration // access token lifetime (1 h; never below 30 s of real time)
	MaxLibraryFileBytes   int64         // library upload limit (20 MB)
	MaxPageSize           int           // $top cap and page size of collections (10,000)
	AnyCommandOrder       bool          // accept LR commands in any order instead of PutFile → RunScript → GetFile
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxSessions, 25)
	def(&l.LiveResponsePerMinute, 10)
	def(&l.PerMinute, 100)
	def(&l.PerHour, 1500)
	def(&l.PackageURIPerMinute, 2)
	def(&l.PackageURIPerHour, 120)
	def(&l.MaxPageSize, 10000)
	defDur(&l.ScriptTimeout, 10*time.Minute)
	defDur(&l.OfflineQueue, 72*time.Hour)
	defDur(&l.ResultLinkTTL, 30*time.Minute)
	defDur(&l.PackageLinkTTL, time.Minute)
	defDur(&l.PickupDelay, 3*time.Second)
	defDur(&l.PackageDuration, 30*time.Second)
	defDur(&l.TokenLifetime, time.Hour)
	if l.MaxLibraryFileBytes <= 0 {
		l.MaxLibraryFileBytes = 20 << 20
	}
	return l
}

// Sim is a running emulator.
type Sim struct {
	opts    Options
	limits  Limits
	clock   clock
	log     *slog.Logger
	dataDir string
	ownDir  bool // remove dataDir on Close

	tenantID string
	caPEM    []byte
	caFile   string
	tokenKey *ecdsa.PrivateKey
	tokenKID string
	blobKey  []byte // signs result download URLs

	ln     net.Listener
	srv    *http.Server
	apiURL string
	client *http.Client

	ctx       context.Context // cancelled on Close; stops background work
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex
	apps       map[string]App // by client id
	defaultApp App
	devices    []*device
	byID       map[string]*device
	actions    map[string]*action
	library    map[string]*libraryFile
	alerts     []*alert
	rate       *rateLimiter
	faults     []*fault
	stats      Stats
	sessions   int // running LR sessions (non-final LR actions)
	procs      map[int]struct{}
}

// Start generates the tenant, opens the HTTPS listener and starts serving. The listener is accepting
// when Start returns.
func Start(ctx context.Context, opts Options) (*Sim, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Machines <= 0 {
		opts.Machines = 40
	}
	if opts.TimeScale <= 0 {
		opts.TimeScale = 1
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sim{
		opts:    opts,
		limits:  opts.Limits.withDefaults(),
		clock:   clock{start: time.Now(), scale: opts.TimeScale},
		log:     log,
		dataDir: opts.DataDir,
		apps:    map[string]App{},
		byID:    map[string]*device{},
		actions: map[string]*action{},
		library: map[string]*libraryFile{},
		procs:   map[int]struct{}{},
		rate:    newRateLimiter(),
	}
	s.stats.CallsByEndpoint = map[string]int{}
	if s.dataDir == "" {
		dir, err := os.MkdirTemp("", "defendersim-")
		if err != nil {
			return nil, fmt.Errorf("defendersim: data dir: %w", err)
		}
		s.dataDir, s.ownDir = dir, true
	} else if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("defendersim: data dir: %w", err)
	}
	if abs, err := filepath.Abs(s.dataDir); err == nil {
		s.dataDir = abs
	}
	fail := func(err error) (*Sim, error) {
		if s.ownDir {
			os.RemoveAll(s.dataDir)
		}
		return nil, err
	}

	g := newGen(opts.Seed)
	s.tenantID = g.guid()
	secret, err := loadOrCreateSecret(filepath.Join(s.dataDir, appSecretName))
	if err != nil {
		return fail(fmt.Errorf("defendersim: app secret: %w", err))
	}
	s.defaultApp = App{TenantID: s.tenantID, ClientID: g.guid(), ClientSecret: secret, Roles: append([]string(nil), AllRoles...)}
	if opts.Apps == nil {
		s.apps[s.defaultApp.ClientID] = s.defaultApp
	}
	for _, a := range opts.Apps {
		s.addAppLocked(a)
	}
	s.devices = generateDevices(opts.Seed, opts.Machines, s.clock.start)
	for _, d := range s.devices {
		s.byID[d.m.ID] = d
	}
	s.alerts = generateAlerts(opts.Seed, s.tenantID, s.devices, s.clock, opts.Anchor)

	if s.tokenKey, s.tokenKID, err = newSigningKey(); err != nil {
		return fail(fmt.Errorf("defendersim: token key: %w", err))
	}
	s.blobKey = randomBytes(32)
	ca, err := loadOrCreateCA(s.dataDir)
	if err != nil {
		return fail(fmt.Errorf("defendersim: ca: %w", err))
	}
	s.caPEM, s.caFile = ca.certPEM, ca.file

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fail(fmt.Errorf("defendersim: listen %s: %w", opts.Addr, err))
	}
	leaf, err := ca.serverCert(ln.Addr().(*net.TCPAddr).IP)
	if err != nil {
		ln.Close()
		return fail(fmt.Errorf("defendersim: server certificate: %w", err))
	}
	s.ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12})
	// A wildcard listener is reached through loopback by default; its certificate also names the host.
	addr := ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.apiURL = "https://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.caPEM)
	s.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}

	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("defendersim: serve", "err", err)
		}
	}()
	s.log.Info("defendersim: started", "api", s.apiURL, "tenant", s.tenantID, "machines", len(s.devices))
	return s, nil
}

// APIURL is the API base URL; clients append /api/...
func (s *Sim) APIURL() string { return s.apiURL }

// AuthorityURL is the Entra-like authority host, ending in "/".
func (s *Sim) AuthorityURL() string { return s.apiURL + "/" }

// TenantID is the emulated tenant.
func (s *Sim) TenantID() string { return s.tenantID }

// DefaultApp is the app registration with every permission of §9: tenant and client id come from the
// seed, the secret is random and kept in the data folder, since anyone who can get a token can run
// scripts on this machine. It is registered only when Options.Apps is nil.
func (s *Sim) DefaultApp() App {
	a := s.defaultApp
	a.Roles = append([]string(nil), a.Roles...)
	return a
}

// AddApp registers (or replaces) an app registration. An empty TenantID means the emulated tenant.
func (s *Sim) AddApp(a App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addAppLocked(a)
}

func (s *Sim) addAppLocked(a App) {
	if a.TenantID == "" {
		a.TenantID = s.tenantID
	}
	a.Roles = append([]string(nil), a.Roles...)
	s.apps[a.ClientID] = a
}

// CACertPEM is the emulator's CA certificate.
func (s *Sim) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// CACertFile is the path of the CA certificate in the data directory.
func (s *Sim) CACertFile() string { return s.caFile }

// HTTPClient returns a client that trusts the emulator's CA.
func (s *Sim) HTTPClient() *http.Client { return s.client }

// Close stops the listener, kills running scripts and removes a temporary data directory. Calling it
// again returns the first result.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Sim) close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.killProcesses()
	s.wg.Wait()
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	if s.ownDir {
		if rerr := os.RemoveAll(s.dataDir); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("defendersim: close: %w", err)
	}
	return nil
}

// goBackground runs f as background work that Close waits for.
func (s *Sim) goBackground(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

var _ io.Closer = (*Sim)(nil)
