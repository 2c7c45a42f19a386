package defendersim

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSameSeedSameTenant(t *testing.T) {
	a := MustStart(t, Options{Seed: 42, Machines: 60})
	b := MustStart(t, Options{Seed: 42, Machines: 60})
	other := MustStart(t, Options{Seed: 43, Machines: 60})
	ids := func(s *Sim) []string {
		var out []string
		for _, m := range s.Machines() {
			out = append(out, m.ID+" "+m.ComputerDNSName+" "+m.OSPlatform+" "+m.LastIPAddress)
		}
		return out
	}
	if !reflect.DeepEqual(ids(a), ids(b)) || a.TenantID() != b.TenantID() || a.DefaultApp().ClientID != b.DefaultApp().ClientID {
		t.Error("the same seed gave different tenants")
	}
	if a.DefaultApp().ClientSecret == b.DefaultApp().ClientSecret {
		t.Error("two data folders got the same app secret; it must be random")
	}
	if reflect.DeepEqual(ids(a), ids(other)) || a.TenantID() == other.TenantID() {
		t.Error("different seeds gave the same tenant")
	}
	// A larger fleet keeps the devices of a smaller one.
	small := MustStart(t, Options{Seed: 42, Machines: 10})
	if !reflect.DeepEqual(ids(small), ids(a)[:10]) {
		t.Error("the first 10 devices changed with the fleet size")
	}
	alertIDs := func(s *Sim) (out []string) {
		for _, al := range s.alerts {
			out = append(out, al.a.ID+al.a.Title)
		}
		return out
	}
	if !reflect.DeepEqual(alertIDs(a), alertIDs(b)) || len(alertIDs(a)) == 0 {
		t.Error("the same seed gave different alerts")
	}
}

func TestFleetMix(t *testing.T) {
	s := MustStart(t, Options{Seed: 9, Machines: 500})
	platforms := map[string]int{}
	offline := 0
	for _, m := range s.Machines() {
		platforms[m.OSPlatform]++
		if m.HealthStatus != "Active" {
			offline++
		}
	}
	for _, p := range []string{"Windows10", "Windows11", "WindowsServer2019", "WindowsServer2022", "Linux", "macOS"} {
		if platforms[p] == 0 {
			t.Errorf("no %s device in %v", p, platforms)
		}
	}
	// 10% steadily offline plus the flapping devices that are offline right now.
	if offline < 50 || offline > 80 {
		t.Errorf("%d of 500 devices offline, want about 10%%", offline)
	}
	// No device file system exists until a command needs it.
	if entries, _ := os.ReadDir(s.dataDir + "/devices"); len(entries) != 0 {
		t.Errorf("%d device trees generated at start, want 0", len(entries))
	}
}

func TestFlappingDevice(t *testing.T) {
	// One simulated minute is 1 ms: a flapping device changes state every 5–20 ms.
	s := MustStart(t, Options{Machines: 20, TimeScale: 60_000})
	var d *device
	for _, x := range s.devices {
		if x.flap > 0 {
			d = x
		}
	}
	if d == nil {
		t.Fatal("no flapping device")
	}
	seen := map[bool]bool{}
	for range 500 {
		seen[s.isOnline(d, time.Now())] = true
		if len(seen) == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if len(seen) != 2 {
		t.Errorf("flapping device never changed state")
	}
}

func TestAlertsAppearOverTime(t *testing.T) {
	// One simulated minute is 10 ms: the planned alerts appear within about two seconds.
	s := MustStart(t, Options{Seed: 5, Machines: 80, TimeScale: 6000})
	c := newClient(t, s, App{})
	first := c.do("GET", "/api/alerts", nil).json(t)["value"].([]any)
	var later []any
	for range 400 {
		later = c.do("GET", "/api/alerts", nil).json(t)["value"].([]any)
		if len(later) == len(s.alerts) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(first) == 0 || len(later) <= len(first) || len(later) != len(s.alerts) {
		t.Fatalf("alerts at start %d, later %d, planned %d: want some at start, more later, all in the end", len(first), len(later), len(s.alerts))
	}
	since := first[len(first)-1].(map[string]any)["alertCreationTime"].(string)
	newer := c.do("GET", "/api/alerts?$filter="+url.QueryEscape("alertCreationTime gt "+since), nil).json(t)["value"].([]any)
	if len(newer) == 0 || len(newer) > len(later)-len(first) {
		t.Errorf("alerts created after %s = %d, want 1..%d", since, len(newer), len(later)-len(first))
	}
	for _, x := range later {
		a := x.(map[string]any)
		if a["machineId"] == "" || a["title"] == "" || a["severity"] == "" {
			t.Errorf("alert %v lacks basics", a)
		}
	}
}

func TestMachineTagFilter(t *testing.T) {
	s := MustStart(t, Options{Seed: 1, Machines: 60})
	c := newClient(t, s, App{})
	want := 0
	for _, m := range s.Machines() {
		for _, tag := range m.MachineTags {
			if tag == "prod" {
				want++
			}
		}
	}
	r := c.do("GET", "/api/machines?$filter="+url.QueryEscape("machineTags/any(t: t eq 'prod')"), nil)
	if got := len(r.json(t)["value"].([]any)); got != want || want == 0 {
		t.Errorf("machines tagged prod = %d, want %d", got, want)
	}
}

// TestRunCLI starts `defender-sim --machines 500` and checks what it prints.
func TestRunCLI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	began := time.Now()
	go func() {
		done <- RunCLI(ctx, []string{"--machines", "500", "--seed", "4", "--data", t.TempDir()}, pw, io.Discard)
		pw.Close()
	}()
	got := map[string]string{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			got[k] = strings.TrimSpace(v)
		}
		if k == "stats" {
			break
		}
	}
	t.Logf("--machines 500 ready in %v", time.Since(began))
	for _, k := range []string{"api_url", "authority_url", "tenant_id", "client_id", "client_secret", "ca_cert"} {
		if got[k] == "" {
			t.Errorf("CLI did not print %s: %v", k, got)
		}
	}
	if b, err := os.ReadFile(got["ca_cert"]); err != nil || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Errorf("ca_cert %s: %v", got["ca_cert"], err)
	}
	go io.Copy(io.Discard, pr)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunCLI: %v", err)
	}
}

func TestCAReusedAcrossStarts(t *testing.T) {
	dir := t.TempDir()
	a := MustStart(t, Options{DataDir: dir, Machines: 2})
	pemA := a.CACertPEM()
	a.Close()
	b := MustStart(t, Options{DataDir: dir, Machines: 2})
	if string(pemA) != string(b.CACertPEM()) {
		t.Error("a second start in the same data folder made a new CA")
	}
	if a.DefaultApp().ClientSecret != b.DefaultApp().ClientSecret {
		t.Error("a second start in the same data folder made a new app secret")
	}
	var st Stats
	resp, err := b.HTTPClient().Get(b.APIURL() + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
}
