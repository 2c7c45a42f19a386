package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
)

// browser starts Debian's headless Chromium (never a downloaded one). Without it the test
// fails under CI=true and is skipped elsewhere.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (scripts/test installs Debian's chromium package)")
		}
		t.Skip("chromium is not installed; run scripts/test to install it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// A bound on the whole browser session, so a hung page fails the test instead of CI.
	ctx, cancel3 := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

// artifacts is where browser tests save screenshots ($QUARRY_ARTIFACTS, default .artifacts/).
func artifacts(t *testing.T, name string) string {
	dir := os.Getenv("QUARRY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".artifacts")
	}
	dir = filepath.Join(dir, "browser", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves a full-page PNG of the current page.
func screenshot(dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		png, err := chromedp.FullScreenshot(100)(ctx, t)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	})
}

// waitVisible waits for an element of the page a click navigated to. While the old page is
// torn down, Chromium can answer a query with "Not attached to an active page"; that is the
// navigation still under way, so the wait starts again (a bounded number of times).
func waitVisible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var err error
		for range 20 {
			if _, err = chromedp.WaitVisible(css(sel))(ctx, t); err == nil || !strings.Contains(err.Error(), "Not attached") {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		return err
	})
}

// nav runs an action that loads a new page (a click on a link, a form submit) and waits until
// the NEW document is complete and shows sel. The old page is marked first, so a selector that
// both pages share cannot be mistaken for arrival, and queries that race the navigation
// ("Not attached to an active page", a destroyed context) are simply asked again.
func nav(action chromedp.Action[chromedp.Void], sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := chromedp.Evaluate[bool](`window.__quarryOld = true`)(ctx, t); err != nil {
			return fmt.Errorf("mark page: %w", err)
		}
		if _, err := action(ctx, t); err != nil {
			return err
		}
		check := chromedp.Evaluate[bool](fmt.Sprintf(`!window.__quarryOld && document.readyState === "complete" && document.querySelector(%q) !== null`, sel))
		for range 600 { // 30 s: a bound against a hung page, not a speed target
			if ok, err := check(ctx, t); err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		return fmt.Errorf("no new page showing %s", sel)
	})
}

// css keeps the step lists readable.
type css = chromedp.CSS

// value runs one action that returns a value, failing the test on error.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func steps(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserLoginProjectExperimentLogout(t *testing.T) {
	ctx := browser(t)
	ts := startServer(t, sqldb.DialectSQLite)
	shots := artifacts(t, "skeleton")
	base := ts.m.URL()

	steps(t, ctx,
		chromedp.Navigate(base+"/projects"),
		waitVisible(`input[name=username]`),
		screenshot(shots, "01-login"),
	)
	if title := value(t, ctx, chromedp.Title()); !strings.Contains(title, "Sign in") {
		t.Errorf("login page title = %q", title)
	}
	steps(t, ctx,
		chromedp.SendKeys(css(`input[name=username]`), "alice"),
		chromedp.SendKeys(css(`input[name=password]`), ts.adminPW),
		nav(chromedp.Submit(css(`input[name=password]`)), `details.card summary`),
		screenshot(shots, "02-projects"),
	)
	if loc := value(t, ctx, chromedp.Location()); !strings.HasSuffix(loc, "/projects") {
		t.Errorf("after login at %q, want /projects", loc)
	}
	steps(t, ctx,
		chromedp.Click(css(`details.card summary`)),
		chromedp.SendKeys(css(`input[name=name]`), "Browser case"),
		chromedp.SendKeys(css(`textarea[name=description]`), "made by the browser test"),
		nav(chromedp.Click(css(`form[method=post][action="/projects"] button[type=submit]`)), `p.crumbs`),
		screenshot(shots, "03-project"),
	)
	if h1 := value(t, ctx, chromedp.Text(css(`h1`))); h1 != "Browser case" {
		t.Errorf("project page h1 = %q", h1)
	}
	steps(t, ctx,
		nav(chromedp.Click(css(`a[href="/settings"]`)), `#toggle-defender_xdr`),
		screenshot(shots, "04-experiments-off"),
		nav(chromedp.Click(css(`#toggle-defender_xdr`)), `#exp-defender_xdr .badge.on`),
		screenshot(shots, "05-experiments-on"),
	)
	if badge := value(t, ctx, chromedp.Text(css(`#exp-defender_xdr .badge`))); badge != "On" {
		t.Errorf("experiment badge = %q, want On", badge)
	}
	steps(t, ctx,
		nav(chromedp.Click(css(`.who button`)), `input[name=username]`),
		screenshot(shots, "06-logged-out"),
		chromedp.Navigate(base+"/projects"),
		waitVisible(`input[name=username]`),
	)
	if loc := value(t, ctx, chromedp.Location()); !strings.Contains(loc, "/login?next=") {
		t.Errorf("after logout /projects went to %q, want the login page", loc)
	}

	// What the browser did is what the store holds, and each change is audited.
	bg := context.Background()
	exp, err := sqldb.NewExperimentService(ts.m.DB).FindExperiment(bg, quarry.ExperimentDefenderXDR)
	if err != nil || !exp.Enabled || exp.UpdatedBy != "alice" {
		t.Fatalf("experiment after toggle = %+v, %v", exp, err)
	}
	for _, action := range []string{"auth.login", "project.create", "experiment.set", "auth.logout"} {
		es, _, err := sqldb.NewAuditService(ts.m.DB).FindAuditEntries(bg, quarry.AuditFilter{Action: action, Actor: "alice"})
		if err != nil || len(es) == 0 {
			t.Errorf("no audit entry for %s by alice (%v)", action, err)
		}
	}
}

func TestBrowserViewerCannotToggle(t *testing.T) {
	ctx := browser(t)
	ts := startServer(t, sqldb.DialectSQLite)
	if _, err := ts.m.Auth.CreateUser(context.Background(), "viewer1", "viewer password 1", quarry.RoleViewer); err != nil {
		t.Fatal(err)
	}
	steps(t, ctx,
		chromedp.Navigate(ts.m.URL()+"/login"),
		waitVisible(`input[name=username]`),
		chromedp.SendKeys(css(`input[name=username]`), "viewer1"),
		chromedp.SendKeys(css(`input[name=password]`), "viewer password 1"),
		nav(chromedp.Submit(css(`input[name=password]`)), `a[href="/settings"]`),
	)
	newProject := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('form[method=post][action="/projects"]').length`))
	steps(t, ctx,
		chromedp.Navigate(ts.m.URL()+"/settings/experiments"),
		waitVisible(`#exp-defender_xdr`),
		screenshot(artifacts(t, "skeleton"), "07-viewer-experiments"),
	)
	buttons := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#toggle-defender_xdr').length`))
	if buttons != 0 || newProject != 0 {
		t.Fatalf("viewer sees %d toggle buttons and %d project forms, want none", buttons, newProject)
	}
}
