package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry/sqldb"
)

// uiClient is a cookie-keeping client that does not follow redirects, so tests see them.
func uiClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	res, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in page:\n%.1500s", page)
	}
	return m[1]
}

func TestUIForms(t *testing.T) {
	ts := startServer(t, sqldb.DialectSQLite)
	base := ts.m.URL()
	c := uiClient(t)

	res, _ := get(t, c, base+"/projects")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login?next=%2Fprojects" {
		t.Fatalf("anonymous /projects = %d → %q, want the login page", res.StatusCode, res.Header.Get("Location"))
	}
	res, page := get(t, c, base+"/login?next=//evil.example/x")
	if res.Header.Get("Content-Security-Policy") == "" || res.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("security headers missing: %v", res.Header)
	}
	loginCSRF := csrfOf(t, page)

	t.Run("LoginWithoutCSRF", func(t *testing.T) {
		other := uiClient(t) // no login CSRF cookie
		res, _ := post(t, other, base+"/login", url.Values{"username": {"alice"}, "password": {ts.adminPW}, "csrf": {loginCSRF}})
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("login without the CSRF cookie = %d, want 403", res.StatusCode)
		}
	})
	t.Run("WrongPassword", func(t *testing.T) {
		res, body := post(t, c, base+"/login", url.Values{"username": {"alice"}, "password": {"nope"}, "csrf": {loginCSRF}})
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong username or password.") {
			t.Fatalf("wrong password = %d", res.StatusCode)
		}
		loginCSRF = csrfOf(t, body) // each render issues a fresh token
	})

	res, _ = post(t, c, base+"/login", url.Values{"username": {"alice"}, "password": {ts.adminPW}, "csrf": {loginCSRF}, "next": {"//evil.example/x"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/projects" {
		t.Fatalf("login = %d → %q, want /projects (never an off-site next)", res.StatusCode, res.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "quarry_session" {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Secure {
		t.Fatalf("session cookie = %+v, want HttpOnly, SameSite=Lax, not Secure over plain http", sc)
	}

	_, page = get(t, c, base+"/projects")
	csrf := csrfOf(t, page)
	t.Run("FormWithoutCSRF", func(t *testing.T) {
		res, body := post(t, c, base+"/projects", url.Values{"name": {"no csrf"}})
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Reload the page") {
			t.Fatalf("form without CSRF = %d", res.StatusCode)
		}
	})
	t.Run("CrossSite", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/projects", strings.NewReader(url.Values{"name": {"x"}, "csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site POST = %d, want 403", res.StatusCode)
		}
	})
	t.Run("InvalidProject", func(t *testing.T) {
		res, body := post(t, c, base+"/projects", url.Values{"name": {"   "}, "csrf": {csrf}})
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Project name is required.") {
			t.Fatalf("blank name = %d", res.StatusCode)
		}
	})
	res, _ = post(t, c, base+"/projects", url.Values{"name": {"<script>alert(1)</script>"}, "csrf": {csrf}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("create = %d", res.StatusCode)
	}
	_, page = get(t, c, base+res.Header.Get("Location"))
	if strings.Contains(page, "<script>alert(1)") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatal("project name is not escaped in the page")
	}

	t.Run("Pages", func(t *testing.T) {
		for _, p := range []string{"/projects", "/detections", "/settings/experiments", "/settings/audit?action=project.", "/settings/users", "/settings/tokens"} {
			res, body := get(t, c, base+p)
			if res.StatusCode != 200 || !strings.Contains(body, "</html>") {
				t.Errorf("%s = %d", p, res.StatusCode)
			}
		}
		res, body := get(t, c, base+"/settings/audit")
		if !strings.Contains(body, "project.create") || !strings.Contains(body, "auth.login") {
			t.Errorf("audit page lacks the login and project entries (%d)", res.StatusCode)
		}
		res, _ = get(t, c, base+"/projects/424242")
		if res.StatusCode != 404 {
			t.Errorf("unknown project page = %d, want 404", res.StatusCode)
		}
	})

	t.Run("TokenShownOnce", func(t *testing.T) {
		res, body := post(t, c, base+"/settings/tokens", url.Values{"name": {"ui token"}, "role": {"viewer"}, "days": {"7"}, "csrf": {csrf}})
		m := regexp.MustCompile(`<pre id="new-token">(qk_[A-Za-z0-9_-]+)</pre>`).FindStringSubmatch(body)
		if res.StatusCode != http.StatusCreated || m == nil {
			t.Fatalf("token create = %d, secret not shown", res.StatusCode)
		}
		_, again := get(t, c, base+"/settings/tokens")
		if strings.Contains(again, m[1]) {
			t.Fatal("token secret shown a second time")
		}
		if r := ts.do(t, "GET", "/api/v1/projects", m[1], nil); r.status != 200 {
			t.Fatalf("new token refused: %d", r.status)
		}
	})

	// Logout ends the session server-side: the old cookie no longer works.
	res, _ = post(t, c, base+"/logout", url.Values{"csrf": {csrf}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout = %d", res.StatusCode)
	}
	replay := uiClient(t)
	u, _ := url.Parse(base)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: "quarry_session", Value: sc.Value}})
	res, _ = get(t, replay, base+"/projects")
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("old session cookie after logout = %d, want redirect to login", res.StatusCode)
	}
}
