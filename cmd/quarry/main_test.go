package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// testServer is the real program started on 127.0.0.1:0 with tokens for each role.
type testServer struct {
	m                      *Main
	base                   string // overrides m.URL() for a server started elsewhere
	admin, analyst, viewer string // API token secrets
	adminPW                string
	adminUser, analystUser *quarry.User
}

// analystPassword is bob's password in every test server.
const analystPassword = "analyst password 1"

func startServer(t *testing.T, dialect string) *testServer {
	t.Helper()
	ctx := context.Background()
	m := NewMain(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Database: sqldbtest.DSN(t, dialect), LogLevel: "info", LogFormat: "text"}, nil)
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ts := &testServer{m: m, adminPW: randomPassword()}
	mk := func(name string, role quarry.Role, pw string) (*quarry.User, string) {
		u, err := m.Auth.CreateUser(ctx, name, pw, role)
		if err != nil {
			t.Fatal(err)
		}
		_, secret, err := m.Auth.CreateToken(ctx, u.ID, "test", role, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return u, secret
	}
	ts.adminUser, ts.admin = mk("alice", quarry.RoleAdmin, ts.adminPW)
	ts.analystUser, ts.analyst = mk("bob", quarry.RoleAnalyst, analystPassword)
	_, ts.viewer = mk("carol", quarry.RoleViewer, randomPassword())
	return ts
}

type resp struct {
	status int
	body   map[string]any
	raw    string
}

func (ts *testServer) do(t *testing.T, method, path, token string, body any) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	base := ts.base
	if base == "" {
		base = ts.m.URL()
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return ts.send(t, req)
}

// send does req and reads its answer.
func (ts *testServer) send(t *testing.T, req *http.Request) resp {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// wantError checks the JSON error envelope of design.md.
func wantError(t *testing.T, r resp, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.raw)
	}
	e, ok := r.body["error"].(map[string]any)
	if !ok || e["code"] != code || e["message"] == "" {
		t.Fatalf("error envelope = %s, want code %q and a message", r.raw, code)
	}
	if strings.Contains(r.raw, "goroutine") || strings.Contains(r.raw, ".go:") {
		t.Fatalf("error body leaks internals: %s", r.raw)
	}
	return e
}

func TestAPI(t *testing.T) {
	for _, dialect := range []string{sqldb.DialectSQLite, sqldb.DialectPostgres} {
		t.Run(dialect, func(t *testing.T) { testAPI(t, dialect) })
	}
}

func testAPI(t *testing.T, dialect string) {
	ts := startServer(t, dialect)
	ctx := context.Background()

	t.Run("Health", func(t *testing.T) {
		r := ts.do(t, "GET", "/api/v1/health", "", nil)
		if r.status != 200 || r.body["status"] != "ok" || r.body["database"] != "ok" {
			t.Fatalf("health = %d %s", r.status, r.raw)
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		res, err := http.Get(ts.m.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), `quarry_http_requests_total{code="2xx",route="GET /api/v1/health"}`) {
			t.Fatalf("metrics = %d, missing the health request counter:\n%.2000s", res.StatusCode, b)
		}
	})

	t.Run("Unauthorized", func(t *testing.T) {
		for name, token := range map[string]string{"NoToken": "", "BadToken": "qk_nope", "NotOurs": "Zm9vYmFy"} {
			t.Run(name, func(t *testing.T) {
				wantError(t, ts.do(t, "GET", "/api/v1/projects", token, nil), 401, quarry.EUNAUTHORIZED)
			})
		}
		t.Run("Expired", func(t *testing.T) {
			ts.m.Auth.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
			_, secret, err := ts.m.Auth.CreateToken(ctx, ts.analystUser.ID, "old", quarry.RoleAnalyst, time.Hour)
			ts.m.Auth.Now = nil
			if err != nil {
				t.Fatal(err)
			}
			wantError(t, ts.do(t, "GET", "/api/v1/projects", secret, nil), 401, quarry.EUNAUTHORIZED)
		})
		t.Run("Revoked", func(t *testing.T) {
			tok, secret, err := ts.m.Auth.CreateToken(ctx, ts.analystUser.ID, "revoke-me", quarry.RoleAnalyst, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if r := ts.do(t, "GET", "/api/v1/projects", secret, nil); r.status != 200 {
				t.Fatalf("fresh token refused: %s", r.raw)
			}
			if r := ts.do(t, "DELETE", fmt.Sprintf("/api/v1/tokens/%d", tok.ID), secret, nil); r.status != 204 {
				t.Fatalf("revoke = %d %s", r.status, r.raw)
			}
			wantError(t, ts.do(t, "GET", "/api/v1/projects", secret, nil), 401, quarry.EUNAUTHORIZED)
		})
	})

	var projectID float64
	t.Run("Projects", func(t *testing.T) {
		r := ts.do(t, "POST", "/api/v1/projects", ts.analyst, map[string]any{"name": "  Case 2026-11 ransomware ", "description": "finance share encrypted"})
		if r.status != 201 || r.body["name"] != "Case 2026-11 ransomware" || r.body["id"] == nil {
			t.Fatalf("create = %d %s", r.status, r.raw)
		}
		projectID = r.body["id"].(float64)
		got := ts.do(t, "GET", fmt.Sprintf("/api/v1/projects/%d", int(projectID)), ts.viewer, nil)
		if got.status != 200 || got.body["name"] != "Case 2026-11 ransomware" || got.body["description"] != "finance share encrypted" {
			t.Fatalf("get = %d %s", got.status, got.raw)
		}
		list := ts.do(t, "GET", "/api/v1/projects", ts.viewer, nil)
		if list.status != 200 || list.body["total"] != float64(1) || len(list.body["projects"].([]any)) != 1 {
			t.Fatalf("list = %d %s", list.status, list.raw)
		}
		wantError(t, ts.do(t, "POST", "/api/v1/projects", ts.analyst, map[string]any{"name": "case 2026-11 RANSOMWARE"}), 409, quarry.ECONFLICT)
		wantError(t, ts.do(t, "GET", "/api/v1/projects/999999", ts.viewer, nil), 404, quarry.ENOTFOUND)
		wantError(t, ts.do(t, "GET", "/api/v1/projects/abc", ts.viewer, nil), 404, quarry.ENOTFOUND)
	})

	t.Run("BadInput", func(t *testing.T) {
		for _, tc := range []struct {
			name, body, field string
		}{
			{"NotJSON", `{"name":`, ""},
			{"Empty", ``, ""},
			{"UnknownField", `{"name":"x","colour":"red"}`, "colour"},
			{"WrongType", `{"name":42}`, "name"},
			{"MissingName", `{"description":"no name"}`, "name"},
			{"BlankName", `{"name":"   "}`, "name"},
			{"Trailing", `{"name":"a"} {"name":"b"}`, ""},
			{"Array", `[1,2]`, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := wantError(t, ts.do(t, "POST", "/api/v1/projects", ts.analyst, tc.body), 400, quarry.EINVALID)
				if tc.field != "" && e["field"] != tc.field {
					t.Fatalf("error field = %v, want %q (%v)", e["field"], tc.field, e)
				}
			})
		}
	})

	t.Run("Forbidden", func(t *testing.T) {
		wantError(t, ts.do(t, "POST", "/api/v1/projects", ts.viewer, map[string]any{"name": "viewer case"}), 403, quarry.EFORBIDDEN)
		wantError(t, ts.do(t, "PUT", "/api/v1/experiments/defender_xdr", ts.analyst, map[string]any{"enabled": true}), 403, quarry.EFORBIDDEN)
		wantError(t, ts.do(t, "GET", "/api/v1/audit", ts.analyst, nil), 403, quarry.EFORBIDDEN)
		wantError(t, ts.do(t, "POST", "/api/v1/users", ts.analyst, map[string]any{"username": "x", "password": "yyyyyyyyyyyyyy", "role": "admin"}), 403, quarry.EFORBIDDEN)
	})

	t.Run("Experiments", func(t *testing.T) {
		list := ts.do(t, "GET", "/api/v1/experiments", ts.viewer, nil)
		if list.status != 200 || !strings.Contains(list.raw, `"name":"defender_xdr"`) || !strings.Contains(list.raw, `"enabled":false`) {
			t.Fatalf("experiments = %d %s", list.status, list.raw)
		}
		r := ts.do(t, "PUT", "/api/v1/experiments/defender_xdr", ts.admin, map[string]any{"enabled": true})
		if r.status != 200 || r.body["enabled"] != true || r.body["updated_by"] != "alice" {
			t.Fatalf("set = %d %s", r.status, r.raw)
		}
		list = ts.do(t, "GET", "/api/v1/experiments", ts.viewer, nil)
		if !strings.Contains(list.raw, `"enabled":true`) {
			t.Fatalf("experiment not on after PUT: %s", list.raw)
		}
		wantError(t, ts.do(t, "PUT", "/api/v1/experiments/no_such_flag", ts.admin, map[string]any{"enabled": true}), 404, quarry.ENOTFOUND)
		e := wantError(t, ts.do(t, "PUT", "/api/v1/experiments/defender_xdr", ts.admin, map[string]any{}), 400, quarry.EINVALID)
		if e["field"] != "enabled" {
			t.Fatalf("missing enabled: field = %v", e["field"])
		}
	})

	t.Run("Audit", func(t *testing.T) {
		r := ts.do(t, "GET", "/api/v1/audit?action=project.create", ts.admin, nil)
		if r.status != 200 {
			t.Fatalf("audit = %d %s", r.status, r.raw)
		}
		var ok, failed, denied bool
		for _, x := range r.body["entries"].([]any) {
			e := x.(map[string]any)
			switch {
			case e["actor"] == "bob" && e["outcome"] == "success" && e["target_id"] == fmt.Sprint(int(projectID)) && e["ip"] == "127.0.0.1" && e["at"] != "":
				ok = true
			case e["actor"] == "bob" && e["outcome"] == "failure":
				failed = true // the duplicate name and the bad inputs
			case e["actor"] == "carol" && e["outcome"] == "failure":
				denied = true // the viewer's refused attempt
			}
		}
		if !ok || !failed || !denied {
			t.Fatalf("audit misses entries (success %v, failure %v, denied %v): %s", ok, failed, denied, r.raw)
		}
		exp := ts.do(t, "GET", "/api/v1/audit?action=experiment.&actor=alice", ts.admin, nil)
		if exp.body["total"].(float64) < 1 || !strings.Contains(exp.raw, `"target_id":"defender_xdr"`) {
			t.Fatalf("experiment change not audited: %s", exp.raw)
		}
		e := wantError(t, ts.do(t, "GET", "/api/v1/audit?from=yesterday", ts.admin, nil), 400, quarry.EINVALID)
		if e["field"] != "from" {
			t.Fatalf("bad from: field = %v", e["field"])
		}
	})

	t.Run("TokenCannotEscalate", func(t *testing.T) {
		wantError(t, ts.do(t, "POST", "/api/v1/tokens", ts.analyst, map[string]any{"name": "x", "role": "admin"}), 400, quarry.EINVALID)
		r := ts.do(t, "POST", "/api/v1/tokens", ts.admin, map[string]any{"name": "read-only", "role": "viewer", "expires_in": "1h"})
		if r.status != 201 {
			t.Fatalf("create token = %d %s", r.status, r.raw)
		}
		secret := r.body["secret"].(string)
		if strings.Contains(r.raw, `"hash"`) {
			t.Fatalf("token response carries its hash: %s", r.raw)
		}
		// An admin's viewer token is a viewer.
		wantError(t, ts.do(t, "PUT", "/api/v1/experiments/defender_xdr", secret, map[string]any{"enabled": false}), 403, quarry.EFORBIDDEN)
	})

	t.Run("SessionNeedsCSRF", func(t *testing.T) {
		sess, secret, _, err := ts.m.Auth.Login(ctx, "alice", ts.adminPW, "127.0.0.1", "test")
		if err != nil {
			t.Fatal(err)
		}
		post := func(csrf string) int {
			req, _ := http.NewRequest("POST", ts.m.URL()+"/api/v1/projects", strings.NewReader(`{"name":"via session `+csrf+`"}`))
			req.Header.Set("Content-Type", "application/json")
			req.AddCookie(&http.Cookie{Name: "quarry_session", Value: secret})
			if csrf != "" {
				req.Header.Set("X-CSRF-Token", csrf)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		if got := post(""); got != 403 {
			t.Fatalf("session POST without CSRF token = %d, want 403", got)
		}
		if got := post(sess.CSRFToken); got != 201 {
			t.Fatalf("session POST with CSRF token = %d, want 201", got)
		}
	})
}

func TestLoginThrottle(t *testing.T) {
	ts := startServer(t, sqldb.DialectSQLite)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, _, _, err := ts.m.Auth.Login(ctx, "alice", "wrong password", "10.0.0.1", ""); quarry.ErrorCode(err) != quarry.EUNAUTHORIZED {
			t.Fatalf("attempt %d: %v, want unauthorized", i, err)
		}
	}
	if _, _, _, err := ts.m.Auth.Login(ctx, "alice", ts.adminPW, "10.0.0.1", ""); quarry.ErrorCode(err) != quarry.ETHROTTLED {
		t.Fatalf("6th attempt with the right password = %v, want throttled", err)
	}
}

func TestRunFailsClearly(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, db, want string
	}{
		{"PostgresUnreachable", "postgres://quarry:hunter2@127.0.0.1:1/quarry?connect_timeout=2", "open database postgres://quarry@127.0.0.1:1/quarry"},
		{"SQLiteBadPath", filepath.Join(blocker, "quarry.db"), "open database " + filepath.Join(blocker, "quarry.db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMain(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Database: tc.db, LogLevel: "info", LogFormat: "text"}, nil)
			err := m.Run(context.Background())
			if err == nil {
				m.Close()
				t.Fatal("Run succeeded on a database it cannot open")
			}
			msg := oneLine(err.Error())
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "hunter2") {
				t.Fatalf("error = %q, want it to contain %q and no password", msg, tc.want)
			}
		})
	}
}

func TestCLIUserAndToken(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cli := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		err := run(ctx, append(args, "--data", dir), &out, &errb)
		return out.String(), errb.String(), err
	}
	out, _, err := cli("user", "create", "--username", "dana", "--role", "analyst")
	if err != nil || !strings.Contains(out, "created user dana (analyst)") || !strings.Contains(out, "password: ") {
		t.Fatalf("user create = %q, %v", out, err)
	}
	if _, _, err := cli("user", "create", "--username", "dana"); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("duplicate user create = %v, want a clear conflict", err)
	}
	token, _, err := cli("token", "create", "--user", "dana", "--name", "ci", "--ttl", "1h")
	token = strings.TrimSpace(token)
	if err != nil || !strings.HasPrefix(token, "qk_") {
		t.Fatalf("token create = %q, %v", token, err)
	}
	if _, _, err := cli("token", "create", "--user", "dana", "--role", "admin"); err == nil {
		t.Fatal("token with more rights than its user was created")
	}
	list, _, err := cli("token", "list", "--user", "dana")
	if err != nil || !strings.Contains(list, token[:9]) || strings.Contains(list, token) {
		t.Fatalf("token list = %q, %v (want the prefix, never the secret)", list, err)
	}

	// The token works against a server on the same data directory.
	m := NewMain(Config{Addr: "127.0.0.1:0", DataDir: dir, LogLevel: "info", LogFormat: "text"}, nil)
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ts := &testServer{m: m}
	if r := ts.do(t, "GET", "/api/v1/me", token, nil); r.status != 200 || !strings.Contains(r.raw, `"username":"dana"`) {
		t.Fatalf("me = %d %s", r.status, r.raw)
	}
	audit, _, err := sqldb.NewAuditService(m.DB).FindAuditEntries(ctx, quarry.AuditFilter{Action: "token.create"})
	if err != nil || len(audit) != 1 || !strings.HasPrefix(audit[0].Actor, "cli:") {
		t.Fatalf("CLI token creation not audited: %+v, %v", audit, err)
	}
}
