package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarry-dfir/quarry/upload"
	"github.com/quarry-dfir/quarry/upload/uploadtest"
)

// noTokens fails the test if any of the output shows a token.
func noTokens(t *testing.T, srv *uploadtest.Server, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		if strings.Contains(out, srv.Token) || strings.Contains(out, srv.EnrolToken) {
			t.Fatalf("output shows a token:\n%s", out)
		}
	}
}

func TestCollectEnrol(t *testing.T) {
	srv := uploadtest.New(t, false)
	t.Setenv(tokenEnv, "")
	stdout, stderr, code := runCLI(t, "collect", "--root", linuxRoot(t), "--os", "linux", "--server", srv.URL,
		"--enrol-token", srv.EnrolToken, "--acquisition", "42", "--spool", t.TempDir(), "--heartbeat", "1ms")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	noTokens(t, srv, stdout, stderr)
	host, _ := os.Hostname()
	if got := srv.Enrolments(); len(got) != 1 || got[0] != (uploadtest.Enrolment{AcquisitionID: 42, Hostname: host, OS: "linux"}) {
		t.Fatalf("enrolments = %+v", got)
	}
	if srv.Received() == "" || !strings.Contains(stdout, `"status":"received"`) {
		t.Fatalf("nothing received; stdout %q", stdout)
	}
	if !strings.Contains(stderr, "msg=enrolled acquisition=42") {
		t.Errorf("log lacks the enrolment:\n%s", stderr)
	}
}

func TestDetachEnrol(t *testing.T) {
	srv := uploadtest.New(t, false)
	spool := t.TempDir()
	gate := filepath.Join(t.TempDir(), "gate")
	t.Setenv(childEnv, "1")
	t.Setenv(gateEnv, gate)
	t.Setenv(tokenEnv, "")

	stdout, stderr, code := runCLI(t, "collect", "--detach", "--root", linuxRoot(t), "--os", "linux", "--server", srv.URL,
		"--enrol-token", srv.EnrolToken, "--acquisition", "42", "--spool", spool, "--heartbeat", "1ms")
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	noTokens(t, srv, stdout, stderr)
	var started struct {
		Status      string
		Acquisition int64
		PID         int
		Log         string
	}
	if err := json.Unmarshal([]byte(stdout), &started); err != nil || started.Status != "started" || started.Acquisition != 42 || started.PID <= 0 ||
		!strings.HasPrefix(stdout, `{"status":"started","acquisition":42,`) || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("stdout %q (%v), want one line {status: started, acquisition: 42, pid, log}", stdout, err)
	}
	proc, err := os.FindProcess(started.PID)
	if err != nil {
		t.Fatal(err)
	}
	// The parent enrolled before detaching; the child still waits at the gate.
	if n := len(srv.Enrolments()); n != 1 || srv.Received() != "" {
		t.Fatalf("%d enrolments before the child ran, want 1 (by the parent)", n)
	}
	checkChildArgs(t, started.PID, srv.Token, srv.EnrolToken, "--enrol-token", "--detach")
	log := releaseChild(t, proc, gate, started.Log)
	noTokens(t, srv, string(log))
	if n := len(srv.Enrolments()); n != 1 || srv.Received() == "" {
		t.Fatalf("%d enrolments, received %q; want the child to upload with the parent's token", n, srv.Received())
	}
}

func TestDetachEnrolFails(t *testing.T) {
	for _, tt := range []struct {
		name        string
		token, acq  string
		enrolBefore bool
		want        string
	}{
		{"UnknownToken", "qe_secret-wrong", "42", false, "the token is invalid or expired"},
		{"UnknownAcquisition", "", "7", false, "Acquisition 7 does not exist"},
		{"EnrolledAlready", "", "42", true, "Acquisition 42 is enrolled already"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := uploadtest.New(t, false)
			spool := t.TempDir()
			t.Setenv(childEnv, "1")
			t.Setenv(tokenEnv, "")
			token := tt.token
			if token == "" {
				token = srv.EnrolToken
			}
			args := []string{"collect", "--detach", "--root", linuxRoot(t), "--os", "linux", "--server", srv.URL,
				"--enrol-token", token, "--acquisition", tt.acq, "--spool", spool}
			if tt.enrolBefore {
				if _, err := upload.Enrol(context.Background(), upload.Config{Server: srv.URL, Token: srv.EnrolToken}, 42, "web-07", "linux"); err != nil {
					t.Fatal(err)
				}
			}
			stdout, stderr, code := runCLI(t, args...)
			var line struct{ Status, Error string }
			if err := json.Unmarshal([]byte(stdout), &line); err != nil || code != 1 || line.Status != "error" ||
				!strings.Contains(line.Error, tt.want) || strings.Count(stdout, "\n") != 1 {
				t.Fatalf("exit %d, stdout %q (%v); want 1 and one JSON error line saying %q", code, stdout, err, tt.want)
			}
			noTokens(t, srv, stdout, stderr)
			if strings.Contains(stdout+stderr, "secret-wrong") {
				t.Fatalf("output shows the enrolment token given: %s", stdout)
			}
			if left, _ := os.ReadDir(spool); len(left) != 0 {
				t.Errorf("spool holds %v: a child was started despite the failed enrolment", left)
			}
		})
	}
}

func TestEnrolUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"Both", []string{"--token", "qu_x", "--enrol-token", "qe_x", "--acquisition", "3"}, "either --token or --enrol-token"},
		{"NoAcquisition", []string{"--enrol-token", "qe_x"}, "needs --acquisition N"},
		{"BadAcquisition", []string{"--enrol-token", "qe_x", "--acquisition", "web-07"}, `--acquisition "web-07"`},
		{"ZeroAcquisition", []string{"--enrol-token", "qe_x", "--acquisition", "0"}, `--acquisition "0"`},
		{"UploadTokenAsEnrol", []string{"--enrol-token", "qu_x", "--acquisition", "3"}, "want the enrolment token"},
		{"EnrolTokenAsToken", []string{"--token", "qe_x"}, "pass it as --enrol-token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tokenEnv, "")
			args := append([]string{"collect", "--server", "https://q"}, tt.args...)
			_, stderr, code := runCLI(t, args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("quarry-host %v: exit %d, stderr %q; want 2 and %q", args, code, stderr, tt.want)
			}
		})
	}
	t.Run("WithOut", func(t *testing.T) {
		_, stderr, code := runCLI(t, "collect", "--out", "x.zip", "--enrol-token", "qe_x", "--acquisition", "3")
		if code != 2 || !strings.Contains(stderr, "--enrol-token needs --server") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("DetachedAsJSON", func(t *testing.T) {
		stdout, _, code := runCLI(t, "collect", "--detach", "--server", "https://q", "--enrol-token", "qe_x")
		if code != 2 || !strings.HasPrefix(stdout, `{"status":"error","error":"--enrol-token needs --acquisition N`) {
			t.Errorf("exit %d, stdout %q; want 2 and the JSON error line", code, stdout)
		}
	})
}
