package defender_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mde "github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/defendersim"
	"github.com/quarry-dfir/quarry/xdr"
	"github.com/quarry-dfir/quarry/xdr/defender"
	"github.com/quarry-dfir/quarry/xdr/xdrtest"
)

// timeScale speeds the emulator up; the client's own limiter and backoff are scaled alike, so neither
// side waits real minutes.
const timeScale = 60

var fastLimits = mde.Limits{TimeScale: timeScale, BaseBackoff: 3 * time.Second, MaxBackoff: time.Minute}

func startSim(t *testing.T, machines int) *defendersim.Sim {
	t.Helper()
	s, err := defendersim.Start(t.Context(), defendersim.Options{Machines: machines, Seed: 11, TimeScale: timeScale})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// simConfig is the connection a user would enter for the emulator: custom cloud, its URLs and CA.
func simConfig(s *defendersim.Sim, app defendersim.App) xdr.Config {
	return xdr.Config{
		TenantID: app.TenantID, ClientID: app.ClientID, ClientSecret: app.ClientSecret,
		Cloud: "custom", APIURL: s.APIURL(), AuthorityURL: s.AuthorityURL(), CACertPEM: s.CACertPEM(),
	}
}

func openSim(t *testing.T, s *defendersim.Sim, app defendersim.App, log *slog.Logger) *defender.Client {
	t.Helper()
	cfg := simConfig(s, app)
	cfg.Logger = log
	c, err := defender.Open(cfg, fastLimits)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomSecret() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "S3cr~" + hex.EncodeToString(b)
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// pickHosts returns a Linux host and another host, forced online and offline. Device i%20 == 3
// flaps in the emulator, so the override is what keeps them steady.
func pickHosts(t *testing.T, s *defendersim.Sim) (online, offline string) {
	t.Helper()
	for _, m := range s.Machines() {
		switch {
		case online == "" && m.OSPlatform == "Linux":
			online = m.ID
		case offline == "" && m.OSPlatform != "Linux":
			offline = m.ID
		}
	}
	if online == "" || offline == "" {
		t.Fatal("the emulated fleet has no Linux host or no other host")
	}
	s.SetMachineOnline(online, true)
	s.SetMachineOnline(offline, false)
	return online, offline
}

func TestSuite(t *testing.T) {
	const machines = 40
	s := startSim(t, machines)
	online, offline := pickHosts(t, s)
	p, _ := xdr.Lookup("defender")
	xdrtest.RunSuite(t, xdrtest.Harness{
		Client:        openSim(t, s, s.DefaultApp(), nil),
		Capabilities:  p.Capabilities(),
		Hosts:         machines,
		OnlineHost:    online,
		OfflineHost:   offline,
		MissingHost:   strings.Repeat("0", 40),
		MissingAction: "00000000-0000-0000-0000-000000000000",
		BadCredentials: func(t *testing.T) (xdr.Client, string) {
			app := s.DefaultApp()
			app.ClientSecret = randomSecret()
			return openSim(t, s, app, nil), app.ClientSecret
		},
		BadCredentialsHint: "secret",
		NoAlerts: func(t *testing.T) (xdr.Client, []string) {
			app := defendersim.App{ClientID: newGUID(), ClientSecret: randomSecret(),
				Roles: []string{"Machine.Read.All", "Machine.ReadWrite.All", "Machine.LiveResponse", "Library.Manage"}}
			s.AddApp(app)
			app.TenantID = s.TenantID()
			return openSim(t, s, app, nil), []string{"Alert.Read.All", "Alert.ReadWrite.All"}
		},
	})
}

// TestListHostsCalls checks that a fleet of 1,234 machines takes one page, and maps every machine's
// fields as the emulator has them.
func TestListHostsCalls(t *testing.T) {
	const machines = 1234
	s := startSim(t, machines)
	c := openSim(t, s, s.DefaultApp(), nil)
	hosts, err := c.ListHosts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := s.Machines()
	if n := s.Stats().CallsByEndpoint["ListMachines"]; n < 1 || n > 3 {
		t.Errorf("ListHosts of %d machines made %d list calls, want 1 to 3", machines, n)
	}
	if len(hosts) != machines || len(want) != machines {
		t.Fatalf("ListHosts returned %d hosts, emulator has %d, want %d", len(hosts), len(want), machines)
	}
	for i, m := range want {
		h := hosts[i]
		if h.ID != m.ID {
			t.Fatalf("host %d: id %s, want %s (the emulator lists in a stable order)", i, h.ID, m.ID)
		}
		checkHost(t, i, h, m)
	}
}

// families is the expected OS family of each osPlatform the emulator uses.
var families = map[string]string{
	"Windows10": "windows", "Windows11": "windows", "WindowsServer2019": "windows", "WindowsServer2022": "windows",
	"Linux": "linux", "macOS": "macos",
}

func checkHost(t *testing.T, i int, h xdr.Host, m defendersim.Machine) {
	t.Helper()
	risk := ""
	if m.RiskScore != nil {
		risk = *m.RiskScore
	}
	wantArch := "amd64"
	if m.OSProcessor == "ARM64" {
		wantArch = "arm64"
	}
	wantVersion := m.Version
	if m.OSBuild != nil {
		wantVersion += " (build " + strconv.FormatInt(*m.OSBuild, 10) + ")"
	}
	switch {
	case h.Name != m.ComputerDNSName, h.IP != m.LastIPAddress, h.Risk != risk, h.OS != families[m.OSPlatform],
		h.Arch != wantArch, h.OSVersion != wantVersion, !slices.Equal(h.Tags, m.MachineTags):
		t.Errorf("host %d: %+v, machine %+v", i, h, m)
	}
	// Device i%20 == 3 flaps: its health may change between ListHosts and Machines.
	if i%20 == 3 {
		return
	}
	lastSeen, err := time.Parse(time.RFC3339Nano, m.LastSeen)
	if err != nil {
		t.Fatal(err)
	}
	// An online device's lastSeen follows the minute, which may turn between the two reads.
	if d := h.LastSeen.Sub(lastSeen).Abs(); h.Health != m.HealthStatus || h.Online != (m.HealthStatus == "Active") || d > time.Minute {
		t.Errorf("host %d: health %s online %v last seen %v; machine health %s last seen %s",
			i, h.Health, h.Online, h.LastSeen, m.HealthStatus, m.LastSeen)
	}
}

func TestProviderRegistered(t *testing.T) {
	p, ok := xdr.Lookup("defender")
	if !ok {
		t.Fatal(`xdr.Lookup("defender") found nothing`)
	}
	if p.Name() != "Microsoft Defender for Endpoint" {
		t.Errorf("Name() = %q", p.Name())
	}
	wantPerms := []string{"Library.Manage", "Machine.LiveResponse", "Machine.Read.All", "Machine.ReadWrite.All", "Alert.Read.All", "Alert.ReadWrite.All"}
	var got []string
	for _, perm := range p.Permissions() {
		got = append(got, perm.Name)
		if perm.Purpose == "" {
			t.Errorf("permission %s has no purpose", perm.Name)
		}
	}
	if !slices.Equal(got, wantPerms) {
		t.Errorf("Permissions() = %v, want %v", got, wantPerms)
	}
	var clouds []string
	for _, c := range p.Clouds() {
		clouds = append(clouds, c.ID)
	}
	if len(clouds) != len(mde.Clouds)+1 || clouds[0] != "commercial" || clouds[len(clouds)-1] != "custom" {
		t.Errorf("Clouds() = %v, want the Defender clouds then custom", clouds)
	}
	caps := p.Capabilities()
	if !caps.RunScript || caps.MaxConcurrentSessions != 25 || caps.LaunchesPerMinute != 10 || caps.ScriptTimeout != 10*time.Minute ||
		caps.OfflineQueue != 72*time.Hour || caps.MaxScriptBytes != 20<<20 || !slices.Equal(caps.ScriptOS, []string{"windows", "linux", "macos"}) {
		t.Errorf("Capabilities() = %+v", caps)
	}
}

func TestOpenConfig(t *testing.T) {
	const (
		tenant = "0f0e0d0c-0b0a-0908-0706-050403020100"
		client = "11111111-2222-3333-4444-555555555555"
		secret = "Xyz8Q~very-secret-value"
	)
	s := startSim(t, 2)
	good := xdr.Config{TenantID: tenant, ClientID: client, ClientSecret: secret}
	with := func(f func(*xdr.Config)) xdr.Config {
		c := good
		f(&c)
		return c
	}
	custom := func(c *xdr.Config) {
		c.Cloud, c.APIURL, c.AuthorityURL, c.CACertPEM = "custom", s.APIURL(), s.AuthorityURL(), s.CACertPEM()
	}
	tests := []struct {
		name  string
		cfg   xdr.Config
		field string // "" = valid
	}{
		{"Commercial", good, ""},
		{"GCCHigh", with(func(c *xdr.Config) { c.Cloud = "gcc-high" }), ""},
		{"TenantDomain", with(func(c *xdr.Config) { c.TenantID = "contoso.onmicrosoft.com" }), ""},
		{"PastedWhitespace", with(func(c *xdr.Config) { c.TenantID, c.ClientID = " "+tenant+"\n", "\t"+client }), ""},
		{"Custom", with(custom), ""},
		{"CustomFreeIDs", with(func(c *xdr.Config) { custom(c); c.TenantID, c.ClientID = "emulator", "quarry-app" }), ""},
		{"CustomNoCloudName", with(func(c *xdr.Config) { custom(c); c.Cloud = "" }), ""},
		{"NoTenant", with(func(c *xdr.Config) { c.TenantID = "" }), "tenant_id"},
		{"TenantNotGUID", with(func(c *xdr.Config) { c.TenantID = "not a tenant" }), "tenant_id"},
		{"TenantPath", with(func(c *xdr.Config) { custom(c); c.TenantID = "../x" }), "tenant_id"},
		{"NoClient", with(func(c *xdr.Config) { c.ClientID = "" }), "client_id"},
		{"ClientNotGUID", with(func(c *xdr.Config) { c.ClientID = "my-app" }), "client_id"},
		{"NoSecret", with(func(c *xdr.Config) { c.ClientSecret = "  " }), "client_secret"},
		{"UnknownCloud", with(func(c *xdr.Config) { c.Cloud = "mars" }), "cloud"},
		{"URLWithNamedCloud", with(func(c *xdr.Config) { c.Cloud = "eu"; c.APIURL = "https://example.com" }), "api_url"},
		{"CustomNoAPI", with(func(c *xdr.Config) { custom(c); c.APIURL = "" }), "api_url"},
		{"CustomNoAuthority", with(func(c *xdr.Config) { custom(c); c.AuthorityURL = "" }), "authority_url"},
		{"CustomHTTP", with(func(c *xdr.Config) { custom(c); c.APIURL = "http://127.0.0.1:1" }), "api_url"},
		{"CustomAuthorityHTTP", with(func(c *xdr.Config) { custom(c); c.AuthorityURL = "http://127.0.0.1:1/" }), "authority_url"},
		{"CustomQuery", with(func(c *xdr.Config) { custom(c); c.APIURL += "?x=1" }), "api_url"},
		{"CANotPEM", with(func(c *xdr.Config) { custom(c); c.CACertPEM = []byte("not a certificate") }), "ca_cert"},
		{"CATruncated", with(func(c *xdr.Config) {
			custom(c)
			c.CACertPEM = []byte("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgI=\n-----END CERTIFICATE-----\n")
		}), "ca_cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := defender.Open(tt.cfg, mde.Limits{})
			var ce *xdr.ConfigError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Open() = %v, want a client", err)
			case tt.field == "" && c == nil:
				t.Fatal("Open() returned no client and no error")
			case tt.field != "" && !errors.As(err, &ce):
				t.Fatalf("Open() = %v, want a *ConfigError on %s", err, tt.field)
			case tt.field != "" && (ce.Field != tt.field || ce.Message == ""):
				t.Errorf("Open() = field %q message %q, want field %s with a message", ce.Field, ce.Message, tt.field)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the secret appears in %q", err)
			}
		})
	}
}

// TestSecretNeverShown runs the calls that fail and log with a right and a wrong secret, logging at
// debug level, and looks for either secret in every message and log line.
func TestSecretNeverShown(t *testing.T) {
	s := startSim(t, 4)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	good := s.DefaultApp()
	bad := good
	bad.ClientSecret = randomSecret()

	var texts []string
	for _, app := range []defendersim.App{good, bad} {
		c := openSim(t, s, app, log)
		res := c.Check(t.Context())
		texts = append(texts, res.Message)
		for _, st := range res.Steps {
			texts = append(texts, st.Message)
		}
		_, err := c.ListHosts(t.Context())
		texts = append(texts, fmt.Sprint(err))
		_, err = c.GetHost(t.Context(), "nope")
		texts = append(texts, fmt.Sprint(err))
		_, err = c.RunScript(t.Context(), strings.Repeat("0", 40), xdr.ScriptRun{Script: "x.sh"})
		texts = append(texts, fmt.Sprint(err))
		// A 5xx makes the client log its retries.
		s.FailNext("GET", "/api/alerts", 503, 2)
		_, err = c.ListAlerts(t.Context(), time.Time{})
		texts = append(texts, fmt.Sprint(err))
	}
	if logs.Len() == 0 {
		t.Fatal("nothing was logged; the test would prove nothing")
	}
	if !strings.Contains(texts[0], "Connected") {
		t.Errorf("good check message = %q", texts[0])
	}
	for _, secret := range []string{good.ClientSecret, bad.ClientSecret} {
		for _, txt := range texts {
			if strings.Contains(txt, secret) {
				t.Errorf("a secret appears in %q", txt)
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Error("a secret appears in the log")
		}
	}
}

// TestErrors checks the translation of answers the emulator can be made to give.
func TestErrors(t *testing.T) {
	s := startSim(t, 4)
	lim := fastLimits
	lim.MaxAttempts = 2
	lim.MaxRetryAfter = time.Millisecond // hand every 429 to the caller
	cfg := simConfig(s, s.DefaultApp())
	c, err := defender.Open(cfg, lim)
	if err != nil {
		t.Fatal(err)
	}
	id := s.Machines()[0].ID

	t.Run("ErrThrottled", func(t *testing.T) {
		s.FailNext("GET", "/api/machines", 429, 1)
		_, err := c.GetHost(t.Context(), id)
		if !errors.Is(err, xdr.ErrThrottled) || xdr.RetryAfter(err) != time.Second {
			t.Errorf("GetHost on 429: err = %v, retry after %v; want ErrThrottled after 1s", err, xdr.RetryAfter(err))
		}
		if !errors.Is(err, mde.ErrThrottled) {
			t.Errorf("err = %v does not wrap the defender error", err)
		}
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		s.FailNext("GET", "/api/machines", 503, 2)
		_, err := c.GetHost(t.Context(), id)
		if !errors.Is(err, xdr.ErrUnavailable) {
			t.Errorf("GetHost on 503: err = %v, want ErrUnavailable", err)
		}
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		s.FailNext("GET", "/api/machines", 403, 1)
		_, err := c.GetHost(t.Context(), id)
		if !errors.Is(err, xdr.ErrForbidden) {
			t.Errorf("GetHost on 403: err = %v, want ErrForbidden", err)
		}
	})
	t.Run("ErrOutcomeUnknown", func(t *testing.T) {
		// Every runliveresponse attempt fails with 500 and the search for the action fails as well. The
		// counts are generous so a client that retries more still meets failures; this is the last
		// subtest that reaches the API, so left-over faults harm nothing.
		s.FailNext("POST", "/api/machines/", 500, 10)
		s.FailNext("GET", "/api/machineactions", 500, 10)
		_, err := c.RunScript(t.Context(), id, xdr.ScriptRun{Script: "x.sh"})
		if !errors.Is(err, xdr.ErrOutcomeUnknown) {
			t.Errorf("RunScript on 500s: err = %v, want ErrOutcomeUnknown", err)
		}
	})
	t.Run("SignInUnreachable", func(t *testing.T) {
		cfg := cfg
		cfg.AuthorityURL = "https://127.0.0.1:1/"
		c, err := defender.Open(cfg, lim)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ListHosts(t.Context())
		if !errors.Is(err, xdr.ErrUnavailable) {
			t.Errorf("ListHosts with an unreachable authority: err = %v, want ErrUnavailable", err)
		}
		res := c.Check(t.Context())
		if res.OK || !strings.Contains(res.Message, "cannot be reached") {
			t.Errorf("Check() = %+v, want a message that the sign-in server cannot be reached", res)
		}
	})
}
