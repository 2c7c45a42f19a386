package intake_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/simhost"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// buildQuarryHost builds the real collector; the test runs it as a bootstrap script would.
func buildQuarryHost(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "quarry-host")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/quarry-dfir/quarry/cmd/quarry-host")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build quarry-host: %v\n%s", err, out)
	}
	return bin
}

// TestEnrolEndToEnd: the real quarry-host, started as the bootstrap script starts it (detached,
// with the connection's enrolment token and the acquisition id), enrols with the real intake
// on SQLite, collects a simulated host and uploads; refusals come back as the one JSON line
// that Live Response relays.
func TestEnrolEndToEnd(t *testing.T) {
	t.Parallel()
	bin := buildQuarryHost(t)
	ctx := context.Background()
	e := newEnv(t, sqldbtest.Open(t, sqldb.DialectSQLite), fileBlobURL(t))
	// The collector checks the clocks; the service's must be the host's here.
	e.cfg.Now = time.Now
	e.restart()
	prod, lab := e.connection("prod"), e.connection("lab")
	tok := e.enrolToken(prod, 0)
	acq := e.xdrAcquisition(prod, "web-07", quarry.AcquisitionLaunching)
	labAcq := e.xdrAcquisition(lab, "lab-01", quarry.AcquisitionLaunching)
	root := t.TempDir()
	if _, err := simhost.Generate(root, simhost.Host{Name: "web-07", OS: "linux", OSVersion: "Ubuntu 22.04", Seed: 9, Compromised: true}); err != nil {
		t.Fatal(err)
	}

	launch := func(t *testing.T, id int64) (map[string]any, string) {
		t.Helper()
		cmd := exec.Command(bin, "collect", "--detach", "--server", e.srv.URL, "--enrol-token", tok, "--acquisition", strconv.FormatInt(id, 10),
			"--profile", "light", "--root", root, "--os", "linux", "--spool", t.TempDir(), "--heartbeat", "100ms")
		cmd.Env = append(os.Environ(), "QUARRY_TOKEN=")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, _ := cmd.Output()
		if strings.Contains(string(stdout)+stderr.String(), tok) || strings.Contains(string(stdout)+stderr.String(), "qu_") {
			t.Fatalf("quarry-host printed a token:\n%s\n%s", stdout, stderr.String())
		}
		if strings.Count(string(stdout), "\n") != 1 {
			t.Fatalf("stdout %q, want one line of JSON; stderr:\n%s", stdout, stderr.String())
		}
		var line map[string]any
		if err := json.Unmarshal(stdout, &line); err != nil {
			t.Fatalf("stdout %q: %v", stdout, err)
		}
		return line, stderr.String()
	}

	line, stderr := launch(t, acq)
	if line["status"] != "started" || line["acquisition"] != float64(acq) {
		t.Fatalf("launch = %v, want started for acquisition %d; stderr:\n%s", line, acq, stderr)
	}
	// The detached collector runs on; the acquisition's state says when it is done.
	var a *quarry.Acquisition
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if a = e.acquisition(acq); quarry.AcquisitionTerminal(a.State) || a.State == quarry.AcquisitionReceived || time.Now().After(deadline) {
			break
		}
	}
	log, _ := os.ReadFile(line["log"].(string))
	if a.State != quarry.AcquisitionReceived || a.EvidenceID == nil {
		t.Fatalf("acquisition = %s %q, want received; collector log:\n%s", a.State, a.Error, log)
	}
	if strings.Contains(string(log), tok) || strings.Contains(string(log), "qu_") {
		t.Fatalf("the collector logged a token:\n%s", log)
	}
	var states []string
	for _, h := range a.History {
		states = append(states, h.State)
	}
	if got := strings.Join(states, ">"); got != "launching>collecting>uploading>received" {
		t.Errorf("history = %s", got)
	}
	if c := e.custody(acq); c != "enrolled,uploaded,verified,stored" {
		t.Errorf("custody = %s", c)
	}
	chain, _ := e.cfg.Evidence.FindCustody(ctx, acq)
	if host, _ := os.Hostname(); chain[0].Details["hostname"] != host || chain[0].Details["os"] != "linux" {
		t.Errorf("enrolment custody = %+v", chain[0].Details)
	}

	for _, tt := range []struct {
		name string
		acq  int64
		want string
	}{
		{"Again", acq, "is received"},
		{"OtherConnection", labAcq, "another XDR connection"},
		{"Unknown", labAcq + 100, "does not exist"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			line, stderr := launch(t, tt.acq)
			if line["status"] != "error" || !strings.Contains(line["error"].(string), tt.want) {
				t.Fatalf("launch = %v, want an error saying %q; stderr:\n%s", line, tt.want, stderr)
			}
		})
	}
}
