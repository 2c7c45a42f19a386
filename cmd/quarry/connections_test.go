package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/defendersim"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSim starts the Defender emulator for a test.
func startSim(t *testing.T, machines int) *defendersim.Sim {
	t.Helper()
	sim, err := defendersim.Start(context.Background(), defendersim.Options{Machines: machines, Seed: 7, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func simConnection(sim *defendersim.Sim, name string, app defendersim.App) map[string]any {
	return map[string]any{
		"provider": "defender", "name": name, "tenant_id": app.TenantID, "client_id": app.ClientID, "client_secret": app.ClientSecret,
		"cloud": "custom", "api_url": sim.APIURL(), "authority_url": sim.AuthorityURL(), "ca_cert": string(sim.CACertPEM()),
	}
}

func TestConnectionsAndHosts(t *testing.T) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		t.Run(dialect, func(t *testing.T) { testConnectionsAndHosts(t, dialect) })
	}
}

func testConnectionsAndHosts(t *testing.T, dialect string) {
	logs := &syncBuffer{}
	sim := startSim(t, 1234)
	ctx := context.Background()
	dataDir := t.TempDir()
	dsn := sqldbtest.DSN(t, dialect)
	m := NewMain(Config{Addr: "127.0.0.1:0", DataDir: dataDir, Database: dsn, LogLevel: "debug", LogFormat: "text"},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ts := &testServer{m: m}
	admin, err := m.Auth.CreateUser(ctx, "alice", "a long enough password", "admin")
	if err != nil {
		t.Fatal(err)
	}
	_, ts.admin, _ = m.Auth.CreateToken(ctx, admin.ID, "t", "admin", 3600e9)
	analyst, _ := m.Auth.CreateUser(ctx, "bob", "a long enough password", "analyst")
	_, ts.analyst, _ = m.Auth.CreateToken(ctx, analyst.ID, "t", "analyst", 3600e9)

	app := sim.DefaultApp()
	var secrets []string
	var responses strings.Builder
	call := func(method, path, token string, body any) resp {
		t.Helper()
		r := ts.do(t, method, path, token, body)
		responses.WriteString(r.raw)
		return r
	}

	var connID int
	t.Run("AddAllGranted", func(t *testing.T) {
		secrets = append(secrets, app.ClientSecret)
		r := call("POST", "/api/v1/connections", ts.admin, simConnection(sim, "Contoso", app))
		if r.status != 201 {
			t.Fatalf("create = %d %s", r.status, r.raw)
		}
		check := r.body["check"].(map[string]any)
		if check["ok"] != true || len(check["missing"].([]any)) != 0 || r.body["health"] != "ok" {
			t.Fatalf("check of a fully granted app = %s", r.raw)
		}
		connID = int(r.body["id"].(float64))
		got := call("POST", fmt.Sprintf("/api/v1/connections/%d/check", connID), ts.admin, nil)
		if got.status != 200 || got.body["ok"] != true || len(got.body["granted"].([]any)) < 6 {
			t.Fatalf("check = %d %s", got.status, got.raw)
		}
	})

	t.Run("AnalystCannotAdd", func(t *testing.T) {
		wantError(t, call("POST", "/api/v1/connections", ts.analyst, simConnection(sim, "Nope", app)), 403, "forbidden")
	})

	t.Run("MissingAlertPermissions", func(t *testing.T) {
		limited := defendersim.App{TenantID: app.TenantID, ClientID: "11111111-2222-3333-4444-555555555555", ClientSecret: "limited-secret-value-1",
			Roles: []string{"Library.Manage", "Machine.LiveResponse", "Machine.Read.All", "Machine.ReadWrite.All"}}
		sim.AddApp(limited)
		secrets = append(secrets, limited.ClientSecret)
		r := call("POST", "/api/v1/connections", ts.admin, simConnection(sim, "No alerts", limited))
		if r.status != 201 {
			t.Fatalf("create = %d %s", r.status, r.raw)
		}
		check := r.body["check"].(map[string]any)
		missing := fmt.Sprint(check["missing"])
		if check["ok"] != false || !strings.Contains(missing, "Alert.Read.All") || !strings.Contains(missing, "Alert.ReadWrite.All") || strings.Contains(missing, "Machine") {
			t.Fatalf("check of an app without Alert permissions = %s", r.raw)
		}
		if !strings.Contains(check["message"].(string), "Alert.Read.All") {
			t.Fatalf("check message does not name the missing permission: %q", check["message"])
		}
	})

	t.Run("WrongSecret", func(t *testing.T) {
		bad := app
		bad.ClientSecret = "definitely-not-the-secret-42"
		secrets = append(secrets, bad.ClientSecret)
		before := call("GET", "/api/v1/connections", ts.admin, nil).body["total"]
		e := wantError(t, call("POST", "/api/v1/connections", ts.admin, simConnection(sim, "Wrong secret", bad)), 400, "invalid")
		if e["field"] != "client_secret" || !strings.Contains(strings.ToLower(e["message"].(string)), "secret") {
			t.Fatalf("wrong secret error = %v", e)
		}
		if after := call("GET", "/api/v1/connections", ts.admin, nil).body["total"]; after != before {
			t.Fatalf("a connection with a wrong secret was saved: total %v → %v", before, after)
		}
		// Rotation to a wrong secret keeps the old one.
		wantError(t, call("PATCH", fmt.Sprintf("/api/v1/connections/%d", connID), ts.admin, map[string]any{"client_secret": bad.ClientSecret}), 400, "invalid")
		if r := call("POST", fmt.Sprintf("/api/v1/connections/%d/check", connID), ts.admin, nil); r.body["ok"] != true {
			t.Fatalf("connection broken by a refused rotation: %s", r.raw)
		}
	})

	t.Run("PageThroughHosts", func(t *testing.T) {
		before := sim.Stats().CallsByEndpoint
		seen := map[string]bool{}
		total := -1
		for page := 1; ; page++ {
			r := call("GET", fmt.Sprintf("/api/v1/connections/%d/hosts?page=%d&per_page=50", connID, page), ts.analyst, nil)
			if r.status != 200 {
				t.Fatalf("page %d = %d %s", page, r.status, r.raw)
			}
			total = int(r.body["total"].(float64))
			hosts := r.body["hosts"].([]any)
			if len(hosts) == 0 {
				break
			}
			for _, h := range hosts {
				id := h.(map[string]any)["id"].(string)
				if seen[id] {
					t.Fatalf("host %s seen twice", id)
				}
				seen[id] = true
			}
		}
		if total != 1234 || len(seen) != 1234 {
			t.Fatalf("paged %d hosts, total %d; want 1234 each", len(seen), total)
		}
		after := sim.Stats().CallsByEndpoint
		var machineCalls int
		for k, v := range after {
			if strings.Contains(strings.ToLower(k), "machine") {
				machineCalls += v - before[k]
			}
		}
		if machineCalls > 3 {
			t.Fatalf("paging 1,234 hosts cost %d Defender machine calls, want at most 3 (%v)", machineCalls, after)
		}
	})

	t.Run("SearchAndFilter", func(t *testing.T) {
		machines := sim.Machines()
		target := machines[17]
		r := call("GET", fmt.Sprintf("/api/v1/connections/%d/hosts?q=%s", connID, target.ComputerDNSName), ts.analyst, nil)
		if r.status != 200 || r.body["total"].(float64) < 1 || !strings.Contains(r.raw, target.ID) {
			t.Fatalf("search by name %q = %s", target.ComputerDNSName, r.raw)
		}
		r = call("GET", fmt.Sprintf("/api/v1/connections/%d/hosts?q=%s", connID, target.LastIPAddress), ts.analyst, nil)
		if !strings.Contains(r.raw, target.ID) {
			t.Fatalf("search by IP %q misses the host: %s", target.LastIPAddress, r.raw)
		}
		var linux, offline int
		for _, mm := range machines {
			if strings.EqualFold(mm.OSPlatform, "linux") || strings.HasPrefix(strings.ToLower(mm.OSPlatform), "ubuntu") || strings.HasPrefix(strings.ToLower(mm.OSPlatform), "redhat") {
				linux++
			}
		}
		r = call("GET", fmt.Sprintf("/api/v1/connections/%d/hosts?os=linux&per_page=100", connID), ts.analyst, nil)
		for _, h := range r.body["hosts"].([]any) {
			if h.(map[string]any)["os"] != "linux" {
				t.Fatalf("os=linux returned %v", h)
			}
		}
		if got := int(r.body["total"].(float64)); got == 0 || got >= 1234 {
			t.Fatalf("os=linux total = %d (emulator has %d linux-like platforms)", got, linux)
		}
		r = call("GET", fmt.Sprintf("/api/v1/connections/%d/hosts?online=false&per_page=100", connID), ts.analyst, nil)
		offline = int(r.body["total"].(float64))
		for _, h := range r.body["hosts"].([]any) {
			if h.(map[string]any)["online"] != false {
				t.Fatalf("online=false returned %v", h)
			}
		}
		if offline == 0 || offline > 1234/2 {
			t.Fatalf("offline hosts = %d, want some but not most", offline)
		}
		e := wantError(t, call("GET", fmt.Sprintf("/api/v1/connections/%d/hosts?os=beos", connID), ts.analyst, nil), 400, "invalid")
		if e["field"] != "os" {
			t.Fatalf("bad os: %v", e)
		}
	})

	t.Run("CollectorDownload", func(t *testing.T) {
		secret, _, err := m.Intake.IssueEnrolToken(ctx, int64(connID), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, secret)
		platform := runtime.GOOS + "/" + runtime.GOARCH
		wantError(t, ts.do(t, "GET", "/api/v1/collector/download/"+platform, "", nil), 401, "unauthorized")
		wantError(t, ts.do(t, "GET", "/api/v1/collector/download/"+platform, ts.admin, nil), 401, "unauthorized")
		req, _ := http.NewRequest("GET", m.URL()+"/api/v1/collector/download/"+platform, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, _ := io.Copy(h, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || n < 1<<20 || hex.EncodeToString(h.Sum(nil)) != res.Header.Get("X-Quarry-SHA256") {
			t.Fatalf("download = %d, %d bytes, sha256 header %q", res.StatusCode, n, res.Header.Get("X-Quarry-SHA256"))
		}
		wantError(t, ts.do(t, "GET", "/api/v1/collector/download/plan9/mips", secret, nil), 404, "not_found")
	})

	t.Run("DeleteKeepsRecord", func(t *testing.T) {
		r := call("POST", "/api/v1/connections", ts.admin, simConnection(sim, "Short-lived", app))
		id := int(r.body["id"].(float64))
		if d := call("DELETE", fmt.Sprintf("/api/v1/connections/%d", id), ts.admin, nil); d.status != 204 {
			t.Fatalf("delete = %d %s", d.status, d.raw)
		}
		if g := call("GET", fmt.Sprintf("/api/v1/connections/%d", id), ts.admin, nil); g.status != 200 || g.body["deleted_at"] == nil {
			t.Fatalf("deleted connection no longer readable: %d %s", g.status, g.raw)
		}
		if l := call("GET", "/api/v1/connections", ts.admin, nil); strings.Contains(l.raw, "Short-lived") {
			t.Fatalf("deleted connection still listed: %s", l.raw)
		}
	})

	t.Run("SecretNeverLeaks", func(t *testing.T) {
		// Every column of every connection row, whatever the dialect.
		rows, err := m.DB.SQL().QueryContext(ctx, "SELECT * FROM connections")
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var dump strings.Builder
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&dump, vals...)
		}
		rows.Close()
		if !strings.Contains(dump.String(), "v1:") {
			t.Fatalf("no sealed secret found in the connections table:\n%s", dump.String())
		}
		m.Close() // flush the database files
		var files []string
		dirs := []string{dataDir}
		if dialect == sqldb.DialectSQLite {
			dirs = append(dirs, filepath.Dir(dsn))
		}
		for _, dir := range dirs {
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
		}
		for _, s := range secrets {
			if strings.Contains(responses.String(), s) {
				t.Errorf("a response carries the client secret %q", s)
			}
			if strings.Contains(dump.String(), s) {
				t.Errorf("the connections table holds the client secret %q in plaintext", s)
			}
			if strings.Contains(logs.String(), s) {
				t.Errorf("the log carries the client secret %q", s)
			}
			for _, f := range files {
				b, _ := os.ReadFile(f)
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s holds the client secret %q in plaintext", f, s)
				}
			}
		}
		if dialect == sqldb.DialectSQLite && len(files) < 2 {
			t.Fatalf("found only %v in the data directory", files)
		}
	})
}
