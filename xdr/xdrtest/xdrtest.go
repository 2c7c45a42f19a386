// Package xdrtest is the test suite every xdr provider must pass. A provider's tests build a Harness
// around a real platform or its emulator and call RunSuite; the suite checks the behaviours callers
// of xdr.Client rely on, whatever the platform.
package xdrtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/xdr"
)

// Harness is what the suite needs from a provider's test.
type Harness struct {
	// Client is a connection with every permission the provider asks for.
	Client xdr.Client
	// Capabilities are the provider's; Alerts decides whether the alert checks run.
	Capabilities xdr.Capabilities
	// Hosts is the exact number of hosts the tenant has.
	Hosts int
	// OnlineHost is the ID of a Linux or macOS host that runs bash scripts promptly, and has no
	// pending or running action when the suite starts.
	OnlineHost string
	// OfflineHost is the ID of a host the platform knows but cannot reach: requests for it queue.
	OfflineHost string
	// MissingHost and MissingAction are IDs the platform does not know, in its ID format.
	MissingHost   string
	MissingAction string
	// BadCredentials returns a client for the same tenant with a wrong secret, and that secret.
	BadCredentials func(t *testing.T) (xdr.Client, string)
	// BadCredentialsHint is a word the failed check's message must contain, e.g. "secret".
	BadCredentialsHint string
	// NoAlerts returns a client whose credentials lack the alert permissions, and their names as
	// Check must report them missing.
	NoAlerts func(t *testing.T) (xdr.Client, []string)
	// Poll is the wait between two GetAction calls (default 50ms); MaxPolls bounds them (default
	// 400), so a stuck action fails the test instead of hanging it.
	Poll     time.Duration
	MaxPolls int
}

// RunSuite runs the shared provider checks as subtests of t. They run in order and share the
// tenant, so they are not parallel; every script they upload has a fresh name and is removed.
func RunSuite(t *testing.T, h Harness) {
	t.Helper()
	if h.Client == nil || h.OnlineHost == "" || h.OfflineHost == "" || h.Hosts <= 0 {
		t.Fatal("xdrtest: Harness needs Client, Hosts, OnlineHost and OfflineHost")
	}
	if h.Poll <= 0 {
		h.Poll = 50 * time.Millisecond
	}
	if h.MaxPolls <= 0 {
		h.MaxPolls = 400
	}
	if h.MissingHost == "" {
		h.MissingHost = "quarry-suite-no-such-host"
	}
	if h.MissingAction == "" {
		h.MissingAction = "00000000-0000-0000-0000-000000000000"
	}
	s := &suite{h: h, prefix: "quarry-suite-" + randomHex(4)}
	t.Run("Check", s.check)
	t.Run("ListHosts", s.listHosts)
	t.Run("GetHost", s.getHost)
	t.Run("RunScript", s.runScript)
	t.Run("ActiveAction", s.activeAction)
	t.Run("Alerts", s.alerts)
}

type suite struct {
	h      Harness
	prefix string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// IsKind reports whether err matches the xdr sentinel kind, and, when it is an *xdr.Error, that its
// Message is set (a user must be told something).
func IsKind(err, kind error) bool {
	if !errors.Is(err, kind) {
		return false
	}
	var xe *xdr.Error
	return !errors.As(err, &xe) || xe.Message != ""
}

func (s *suite) check(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		res := s.h.Client.Check(t.Context())
		if !res.OK || !res.SignedIn || len(res.Missing) != 0 || res.Message == "" {
			t.Fatalf("Check() = ok %v, signed in %v, missing %v, message %q; want ok, signed in, with a message",
				res.OK, res.SignedIn, res.Missing, res.Message)
		}
		if len(res.Granted) == 0 {
			t.Error("Check().Granted is empty on a fully permitted connection")
		}
		for _, st := range res.Steps {
			if !st.OK {
				t.Errorf("step %q failed on a good connection: %s", st.Name, st.Message)
			}
		}
	})
	t.Run("BadSecret", func(t *testing.T) {
		if s.h.BadCredentials == nil {
			t.Fatal("xdrtest: Harness.BadCredentials is required")
		}
		c, secret := s.h.BadCredentials(t)
		res := c.Check(t.Context())
		if res.OK || res.SignedIn {
			t.Fatalf("Check() with a wrong secret = ok %v, signed in %v; want neither", res.OK, res.SignedIn)
		}
		if hint := s.h.BadCredentialsHint; hint != "" && !strings.Contains(strings.ToLower(res.Message), strings.ToLower(hint)) {
			t.Errorf("Check().Message = %q, want it to name the cause (%q)", res.Message, hint)
		}
		noSecret(t, secret, res.Message)
		for _, st := range res.Steps {
			noSecret(t, secret, st.Message)
		}
		_, err := c.ListHosts(t.Context())
		if !IsKind(err, xdr.ErrUnauthorized) {
			t.Errorf("ListHosts with a wrong secret: err = %v, want ErrUnauthorized", err)
		}
		if err != nil {
			noSecret(t, secret, err.Error())
		}
	})
	t.Run("MissingPermissions", func(t *testing.T) {
		if s.h.NoAlerts == nil {
			t.Fatal("xdrtest: Harness.NoAlerts is required")
		}
		c, missing := s.h.NoAlerts(t)
		res := c.Check(t.Context())
		if res.OK || !res.SignedIn {
			t.Fatalf("Check() without the alert permissions = ok %v, signed in %v; want signed in, not ok", res.OK, res.SignedIn)
		}
		for _, m := range missing {
			if !slices.Contains(res.Missing, m) {
				t.Errorf("Check().Missing = %v, want it to list %s", res.Missing, m)
			}
			if !strings.Contains(res.Message, m) {
				t.Errorf("Check().Message = %q, want it to name %s", res.Message, m)
			}
		}
		for _, g := range res.Granted {
			if slices.Contains(missing, g) {
				t.Errorf("Check() lists %s as granted and missing", g)
			}
		}
		if !s.h.Capabilities.Alerts {
			return
		}
		_, err := c.ListAlerts(t.Context(), time.Time{})
		if !IsKind(err, xdr.ErrForbidden) {
			t.Fatalf("ListAlerts without permission: err = %v, want ErrForbidden", err)
		}
		var xe *xdr.Error
		if errors.As(err, &xe) && len(xe.Missing) == 0 {
			t.Errorf("ErrForbidden from ListAlerts names no missing permission: %v", err)
		}
	})
}

func noSecret(t *testing.T, secret, text string) {
	t.Helper()
	if secret != "" && strings.Contains(text, secret) {
		t.Errorf("the secret appears in %q", text)
	}
}

var osFamilies = []string{"windows", "linux", "macos", "other"}

func (s *suite) listHosts(t *testing.T) {
	hosts, err := s.h.Client.ListHosts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != s.h.Hosts {
		t.Errorf("ListHosts returned %d hosts, want %d", len(hosts), s.h.Hosts)
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h.ID] {
			t.Errorf("host %s listed twice", h.ID)
		}
		seen[h.ID] = true
		if h.ID == "" || h.Name == "" || h.Health == "" || h.LastSeen.IsZero() || !slices.Contains(osFamilies, h.OS) {
			t.Errorf("host %+v lacks a required field (id, name, health, last seen, os family)", h)
		}
		if h.Tags == nil {
			t.Errorf("host %s: Tags is nil, want an empty list", h.ID)
		}
	}
	for id, online := range map[string]bool{s.h.OnlineHost: true, s.h.OfflineHost: false} {
		i := slices.IndexFunc(hosts, func(h xdr.Host) bool { return h.ID == id })
		switch {
		case i < 0:
			t.Errorf("host %s missing from ListHosts", id)
		case hosts[i].Online != online:
			t.Errorf("host %s: Online = %v, want %v", id, hosts[i].Online, online)
		}
	}
}

func (s *suite) getHost(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		h, err := s.h.Client.GetHost(t.Context(), s.h.OnlineHost)
		if err != nil {
			t.Fatal(err)
		}
		if h.ID != s.h.OnlineHost || !h.Online || h.Name == "" {
			t.Errorf("GetHost(%s) = %+v, want that host, online", s.h.OnlineHost, h)
		}
		if h.OS != "linux" && h.OS != "macos" {
			t.Errorf("GetHost(%s).OS = %q; the harness must name a Linux or macOS host", s.h.OnlineHost, h.OS)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := s.h.Client.GetHost(t.Context(), s.h.MissingHost)
		if !IsKind(err, xdr.ErrNotFound) {
			t.Errorf("GetHost(%s): err = %v, want ErrNotFound", s.h.MissingHost, err)
		}
	})
}

// echoScript prints its first argument to stdout, a fixed line to stderr and exits 3, so the test
// sees that arguments arrive and both streams and a non-zero exit code come back apart.
const echoScript = "#!/bin/bash\necho \"hello $1\"\necho \"to stderr\" >&2\nexit 3\n"

// putScript uploads the echo script under a fresh name and removes it when the test ends.
func (s *suite) putScript(t *testing.T, name string) {
	t.Helper()
	err := s.h.Client.PutScript(t.Context(), xdr.Script{
		Name: name, Content: []byte(echoScript),
		Description: "xdrtest echo script", ParametersDescription: "a word to echo",
	})
	if err != nil {
		t.Fatalf("PutScript(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = s.h.Client.DeleteScript(context.WithoutCancel(t.Context()), name) })
}

// wait polls an action until it is final.
func (s *suite) wait(t *testing.T, id string) *xdr.Action {
	t.Helper()
	for range s.h.MaxPolls {
		a, err := s.h.Client.GetAction(t.Context(), id)
		if err != nil {
			t.Fatalf("GetAction(%s): %v", id, err)
		}
		if a.Done() {
			return a
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(s.h.Poll):
		}
	}
	t.Fatalf("action %s not final after %d polls", id, s.h.MaxPolls)
	return nil
}

func (s *suite) runScript(t *testing.T) {
	c := s.h.Client
	name := s.prefix + "-echo.sh"
	s.putScript(t, name)
	// Replacing a script of the same name must work: Quarry refreshes its bootstrap often.
	s.putScript(t, name)

	a, err := c.RunScript(t.Context(), s.h.OnlineHost, xdr.ScriptRun{Script: name, Args: "world", Comment: "xdrtest run"})
	if err != nil {
		t.Fatalf("RunScript: %v", err)
	}
	if a.ID == "" || a.HostID != s.h.OnlineHost || a.Done() {
		t.Fatalf("RunScript = %+v, want a new, unfinished action on %s", a, s.h.OnlineHost)
	}
	if a.Comment != "xdrtest run" {
		t.Errorf("RunScript action comment = %q, want %q", a.Comment, "xdrtest run")
	}
	done := s.wait(t, a.ID)
	if done.Status != xdr.ActionSucceeded {
		t.Fatalf("action ended %s (%s), want succeeded", done.Status, done.Error)
	}
	if done.UpdatedAt.Before(done.CreatedAt) {
		t.Errorf("action updated %v before it was created %v", done.UpdatedAt, done.CreatedAt)
	}
	out, err := c.ScriptOutput(t.Context(), a.ID)
	if err != nil {
		t.Fatalf("ScriptOutput: %v", err)
	}
	if out.ExitCode != 3 || !strings.Contains(out.Stdout, "hello world") || !strings.Contains(out.Stderr, "to stderr") ||
		strings.Contains(out.Stdout, "to stderr") {
		t.Errorf("ScriptOutput = %+v, want exit 3, stdout with \"hello world\", stderr with \"to stderr\"", out)
	}
	if !strings.EqualFold(out.Script, name) {
		t.Errorf("ScriptOutput.Script = %q, want %q", out.Script, name)
	}

	t.Run("GetAction/ErrNotFound", func(t *testing.T) {
		_, err := c.GetAction(t.Context(), s.h.MissingAction)
		if !IsKind(err, xdr.ErrNotFound) {
			t.Errorf("GetAction(%s): err = %v, want ErrNotFound", s.h.MissingAction, err)
		}
	})
	t.Run("DeleteScript", func(t *testing.T) {
		if err := c.DeleteScript(t.Context(), name); err != nil {
			t.Fatalf("DeleteScript(%s): %v", name, err)
		}
		if err := c.DeleteScript(t.Context(), name); !IsKind(err, xdr.ErrNotFound) {
			t.Errorf("second DeleteScript(%s): err = %v, want ErrNotFound", name, err)
		}
	})
}

// activeAction queues a request for the offline host, where it stays pending, and checks the calls
// that deal with an active action: finding it, refusing a second one, cancelling it.
func (s *suite) activeAction(t *testing.T) {
	c := s.h.Client
	host := s.h.OfflineHost
	name := s.prefix + "-queued.sh"
	s.putScript(t, name)

	if _, err := c.FindActiveAction(t.Context(), host); !IsKind(err, xdr.ErrNotFound) {
		t.Fatalf("FindActiveAction on an idle host: err = %v, want ErrNotFound", err)
	}
	a, err := c.RunScript(t.Context(), host, xdr.ScriptRun{Script: name, Comment: "xdrtest queued"})
	if err != nil {
		t.Fatalf("RunScript on the offline host: %v", err)
	}
	t.Cleanup(func() { _ = c.CancelAction(context.WithoutCancel(t.Context()), a.ID, "xdrtest cleanup") })
	if a.Status != xdr.ActionPending {
		t.Errorf("RunScript on the offline host: status %s, want pending", a.Status)
	}

	found, err := c.FindActiveAction(t.Context(), host)
	if err != nil {
		t.Fatalf("FindActiveAction: %v", err)
	}
	if found.ID != a.ID || found.HostID != host {
		t.Errorf("FindActiveAction = %s on %s, want %s on %s", found.ID, found.HostID, a.ID, host)
	}
	if _, err := c.ScriptOutput(t.Context(), a.ID); err == nil {
		t.Error("ScriptOutput of a pending action succeeded")
	}

	_, err = c.RunScript(t.Context(), host, xdr.ScriptRun{Script: name, Comment: "xdrtest second"})
	if !IsKind(err, xdr.ErrBusy) {
		t.Fatalf("second RunScript on a busy host: err = %v, want ErrBusy", err)
	}

	if err := c.CancelAction(t.Context(), a.ID, "xdrtest cancel"); err != nil {
		t.Fatalf("CancelAction: %v", err)
	}
	got, err := c.GetAction(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != xdr.ActionCancelled || !got.Done() {
		t.Errorf("action after CancelAction: status %s, want cancelled", got.Status)
	}
	if _, err := c.FindActiveAction(t.Context(), host); !IsKind(err, xdr.ErrNotFound) {
		t.Errorf("FindActiveAction after cancel: err = %v, want ErrNotFound", err)
	}
}

var severities = []string{"informational", "low", "medium", "high"}

func (s *suite) alerts(t *testing.T) {
	c := s.h.Client
	if !s.h.Capabilities.Alerts {
		if _, err := c.ListAlerts(t.Context(), time.Time{}); !errors.Is(err, xdr.ErrUnsupported) {
			t.Errorf("ListAlerts on a provider without alerts: err = %v, want ErrUnsupported", err)
		}
		return
	}
	all, err := c.ListAlerts(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 {
		t.Fatalf("ListAlerts returned %d alerts; the harness tenant must have at least 2", len(all))
	}
	for i, a := range all {
		if a.ID == "" || a.Title == "" || a.UpdatedAt.IsZero() || !slices.Contains(severities, a.Severity) {
			t.Errorf("alert %+v lacks a required field (id, title, updated at, lower-case severity)", a)
		}
		if i > 0 && a.UpdatedAt.Before(all[i-1].UpdatedAt) {
			t.Errorf("alert %d updated %v before alert %d (%v): want oldest update first", i, a.UpdatedAt, i-1, all[i-1].UpdatedAt)
		}
	}
	since := all[len(all)/2].UpdatedAt
	newer, err := c.ListAlerts(t.Context(), since)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, a := range newer {
		ids[a.ID] = true
		if a.UpdatedAt.Before(since) {
			t.Errorf("ListAlerts(%v) returned alert %s updated %v", since, a.ID, a.UpdatedAt)
		}
	}
	for _, a := range all {
		if !a.UpdatedAt.Before(since) && !ids[a.ID] {
			t.Errorf("ListAlerts(%v) misses alert %s updated %v", since, a.ID, a.UpdatedAt)
		}
	}
	// A platform that filters on whole seconds must not hand back what came earlier in that second.
	after, err := c.ListAlerts(t.Context(), since.Add(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range after {
		if !a.UpdatedAt.After(since) {
			t.Errorf("ListAlerts(%v) returned alert %s updated %v", since.Add(time.Nanosecond), a.ID, a.UpdatedAt)
		}
	}
	if all[0].UpdatedAt.Before(since) && ids[all[0].ID] {
		t.Errorf("ListAlerts(%v) returned alert %s updated %v, before since", since, all[0].ID, all[0].UpdatedAt)
	}
}
