package defender_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry/defender"
	"github.com/quarry-dfir/quarry/defendersim"
)

// These tests run the client against the Defender emulator over TLS, trusting only the emulator's CA.

func startSim(t *testing.T, opts defendersim.Options) *defendersim.Sim {
	t.Helper()
	if opts.Machines == 0 {
		opts.Machines = 6
	}
	if opts.Seed == 0 {
		opts.Seed = 7
	}
	s, err := defendersim.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func simClient(t *testing.T, s *defendersim.Sim, app defendersim.App, lim defender.Limits) *defender.Client {
	t.Helper()
	c, err := defender.New(defender.Config{
		TenantID: app.TenantID, ClientID: app.ClientID, ClientSecret: app.ClientSecret,
		APIURL: s.APIURL(), AuthorityURL: s.AuthorityURL(), CACertPEM: s.CACertPEM(), Limits: lim,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func simCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fast are client limits for an emulator at TimeScale 60: the client's windows and backoff shrink alike.
var fast = defender.Limits{TimeScale: 60, BaseBackoff: 50 * time.Millisecond * 60, MaxBackoff: time.Second * 60}

func TestSimConnection(t *testing.T) {
	s := startSim(t, defendersim.Options{})
	c := simClient(t, s, s.DefaultApp(), defender.Limits{})
	ctx := simCtx(t)
	roles, err := c.GrantedRoles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if missing := defender.MissingPermissionsFor(roles); len(missing) != 0 {
		t.Errorf("default app misses %v (roles %v)", missing, roles)
	}
	for range 5 {
		if _, err := c.ListLibrary(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Stats().CallsByEndpoint["Token"]; n != 1 {
		t.Errorf("token requests = %d for 6 uses, want 1", n)
	}
}

func TestSimSignInFailures(t *testing.T) {
	s := startSim(t, defendersim.Options{})
	good := s.DefaultApp()
	tests := []struct {
		name  string
		app   defendersim.App
		words string
	}{
		{"WrongSecret", defendersim.App{TenantID: good.TenantID, ClientID: good.ClientID, ClientSecret: "Zz9-not-it"}, "AADSTS7000215"},
		{"UnknownApp", defendersim.App{TenantID: good.TenantID, ClientID: "00000000-0000-0000-0000-000000000001", ClientSecret: "x"}, "AADSTS700016"},
		{"UnknownTenant", defendersim.App{TenantID: "00000000-0000-0000-0000-0000000000ff", ClientID: good.ClientID, ClientSecret: good.ClientSecret}, "AADSTS90002"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := simClient(t, s, tt.app, defender.Limits{})
			_, err := c.ListMachines(simCtx(t), defender.MachineQuery{})
			if !errors.Is(err, defender.ErrUnauthorized) {
				t.Fatalf("ListMachines = %v, want ErrUnauthorized", err)
			}
			if msg := defender.SignInErrorMessage(err); !strings.Contains(msg, tt.words) || strings.Contains(msg, "Zz9-not-it") {
				t.Errorf("SignInErrorMessage = %q, want it to name %s and not the secret", msg, tt.words)
			}
		})
	}
}

func TestSimForbiddenNamesPermission(t *testing.T) {
	s := startSim(t, defendersim.Options{})
	app := defendersim.App{TenantID: s.TenantID(), ClientID: "6b1f7c3e-1111-4c2d-9e0f-0a1b2c3d4e5f", ClientSecret: "limited-secret",
		Roles: []string{"Machine.Read.All", "Machine.LiveResponse", "Library.Manage"}}
	s.AddApp(app)
	c := simClient(t, s, app, defender.Limits{})
	ctx := simCtx(t)
	if _, err := c.ListMachines(ctx, defender.MachineQuery{}); err != nil {
		t.Fatalf("ListMachines with Machine.Read.All: %v", err)
	}
	_, err := c.ListAlerts(ctx, defender.AlertQuery{})
	if !errors.Is(err, defender.ErrForbidden) {
		t.Fatalf("ListAlerts = %v, want ErrForbidden", err)
	}
	if perms := defender.MissingPermissions(err); !slices.Contains(perms, "Alert.Read.All") {
		t.Errorf("MissingPermissions = %v, want Alert.Read.All named", perms)
	}
	roles, err := c.GrantedRoles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, p := range defender.MissingPermissionsFor(roles) {
		missing = append(missing, p.Name)
	}
	if !slices.Contains(missing, "Alert.Read.All") || slices.Contains(missing, "Library.Manage") {
		t.Errorf("MissingPermissionsFor = %v", missing)
	}
	res, err := c.CheckConnection(ctx)
	if err != nil || res.OK || len(res.Missing) != len(missing) || !strings.Contains(res.Message, "Alert.Read.All") {
		t.Errorf("CheckConnection = %+v, %v", res, err)
	}
	full, err := simClient(t, s, s.DefaultApp(), defender.Limits{}).CheckConnection(ctx)
	if err != nil || !full.OK {
		t.Errorf("CheckConnection with the default app = %+v, %v", full, err)
	}
}

func TestSimMachines(t *testing.T) {
	s := startSim(t, defendersim.Options{Machines: 12})
	c := simClient(t, s, s.DefaultApp(), defender.Limits{PageSize: 5})
	ctx := simCtx(t)
	all, err := c.ListMachines(ctx, defender.MachineQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 12 {
		t.Fatalf("ListMachines paged by 5 = %d machines, want 12", len(all))
	}
	snap := s.Machines()
	ids := map[string]bool{}
	for _, m := range all {
		ids[m.ID] = true
		if len(m.ID) != 40 || m.OnboardingStatus != "Onboarded" || m.MachineTags == nil {
			t.Errorf("machine %+v does not look like MDE's", m)
		}
	}
	if len(ids) != 12 || len(snap) != 12 {
		t.Errorf("unique ids = %d, emulator has %d", len(ids), len(snap))
	}
	one, err := c.GetMachine(ctx, all[3].ID)
	if err != nil || one.ComputerDNSName != all[3].ComputerDNSName {
		t.Errorf("GetMachine = %+v, %v", one, err)
	}
	filtered, err := c.ListMachines(ctx, defender.MachineQuery{Filter: "osPlatform eq '" + all[0].OSPlatform + "'"})
	if err != nil {
		t.Fatal(err)
	}
	if len(filtered) == 0 || len(filtered) > 12 {
		t.Errorf("filtered list = %d machines", len(filtered))
	}
	for _, m := range filtered {
		if m.OSPlatform != all[0].OSPlatform {
			t.Errorf("filter on %s returned %s", all[0].OSPlatform, m.OSPlatform)
		}
	}
	if _, err := c.GetMachine(ctx, strings.Repeat("0", 40)); !errors.Is(err, defender.ErrNotFound) {
		t.Errorf("GetMachine(unknown) = %v, want ErrNotFound", err)
	}
}

func TestSimLibrary(t *testing.T) {
	s := startSim(t, defendersim.Options{})
	c := simClient(t, s, s.DefaultApp(), defender.Limits{})
	ctx := simCtx(t)
	up := defender.LibraryUpload{FileName: "quarry-test.ps1", Content: []byte("Write-Output 'hi'\n"), Description: "test",
		HasParameters: true, ParametersDescription: "-Token <t>", OverrideIfExists: true}
	f, err := c.UploadLibraryFile(ctx, up)
	if err != nil {
		t.Fatal(err)
	}
	if f.FileName != up.FileName || !f.HasParameters || len(f.SHA256) != 64 {
		t.Errorf("UploadLibraryFile = %+v", f)
	}
	if _, err := c.UploadLibraryFile(ctx, up); err != nil {
		t.Errorf("second upload with OverrideIfExists: %v", err)
	}
	files, err := c.ListLibrary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(files, func(lf defender.LibraryFile) bool { return lf.FileName == up.FileName && lf.SHA256 == f.SHA256 }) {
		t.Errorf("ListLibrary = %+v, want %s", files, up.FileName)
	}
	if err := c.DeleteLibraryFile(ctx, up.FileName); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteLibraryFile(ctx, up.FileName); !errors.Is(err, defender.ErrNotFound) {
		t.Errorf("second delete = %v, want ErrNotFound", err)
	}
}

// onlineMachine picks a device the emulator reports online.
func onlineMachines(t *testing.T, s *defendersim.Sim, n int) []string {
	t.Helper()
	var ids []string
	for _, m := range s.Machines() {
		if m.HealthStatus == "Active" && len(ids) < n {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) < n {
		t.Fatalf("emulator has %d active machines, need %d", len(ids), n)
	}
	for _, id := range ids {
		s.SetMachineOnline(id, true)
	}
	return ids
}

func uploadScript(t *testing.T, c *defender.Client, name, body string) {
	t.Helper()
	if _, err := c.UploadLibraryFile(simCtx(t), defender.LibraryUpload{FileName: name, Content: []byte(body), HasParameters: true, OverrideIfExists: true}); err != nil {
		t.Fatal(err)
	}
}

// echoScript returns a script for the machine's OS that prints its first argument and exits 3:
// bash on Linux and macOS, the emulator's PowerShell stand-in steps on Windows.
func echoScript(t *testing.T, s *defendersim.Sim, machineID string) (name, body string) {
	t.Helper()
	for _, m := range s.Machines() {
		if m.ID != machineID {
			continue
		}
		if strings.HasPrefix(m.OSPlatform, "Windows") {
			return "quarry-echo.ps1", "# quarry-sim: echo quarry says {arg1}\n# quarry-sim: exit 3\nWrite-Output \"quarry says $($args[0])\"; exit 3\n"
		}
		return "quarry-echo.sh", "#!/bin/bash\necho \"quarry says $1\"\nexit 3\n"
	}
	t.Fatalf("machine %s not in the emulator", machineID)
	return "", ""
}

func TestSimRunScriptPollAndResult(t *testing.T) {
	s := startSim(t, defendersim.Options{TimeScale: 60})
	c := simClient(t, s, s.DefaultApp(), fast)
	ctx := simCtx(t)
	for _, id := range onlineMachines(t, s, 2) {
		name, body := echoScript(t, s, id)
		uploadScript(t, c, name, body)
		a, err := c.RunLiveResponse(ctx, id, defender.LiveResponseRequest{Commands: []defender.Command{defender.RunScriptCommand(name, "hello")}, Comment: "it"})
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != defender.ActionPending || !a.IsLiveResponse() || len(a.Commands) != 1 || a.Commands[0].CommandStatus != defender.CommandCreated {
			t.Errorf("new action = %+v", a)
		}
		done, err := c.WaitForAction(ctx, a.ID, defender.WaitOptions{Interval: 5 * time.Second})
		if err != nil {
			t.Fatalf("WaitForAction: %v (%+v)", err, done)
		}
		if done.Status != defender.ActionSucceeded || done.Commands[0].CommandStatus != defender.CommandCompleted {
			t.Fatalf("final action = %+v", done)
		}
		res, err := c.GetScriptResult(ctx, a.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.ScriptName != name || res.ExitCode != 3 || !strings.Contains(res.ScriptOutput, "quarry says hello") {
			t.Errorf("script result on %s = %+v", id, res)
		}
	}
}

func TestSimActiveRequestAndCancel(t *testing.T) {
	// Slow enough that the first request is still active when the second one arrives.
	s := startSim(t, defendersim.Options{TimeScale: 1})
	// The client would pace two runliveresponse calls 6 s apart (10/min spread evenly); the emulator
	// allows both at once, and this test is about the second one's refusal.
	c := simClient(t, s, s.DefaultApp(), defender.Limits{LiveResponsePerMinute: 100})
	ctx := simCtx(t)
	id := onlineMachines(t, s, 1)[0]
	s.SetMachineOnline(id, false)
	uploadScript(t, c, "quarry-echo.ps1", "Write-Output 'hi'\n")
	req := defender.LiveResponseRequest{Commands: []defender.Command{defender.RunScriptCommand("quarry-echo.ps1", "")}}
	first, err := c.RunLiveResponse(ctx, id, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunLiveResponse(ctx, id, req); !errors.Is(err, defender.ErrActiveRequestAlreadyExists) {
		t.Fatalf("second request = %v, want ErrActiveRequestAlreadyExists", err)
	}
	if s.Stats().RejectedActiveRequest != 1 {
		t.Errorf("emulator rejected %d active requests, want 1", s.Stats().RejectedActiveRequest)
	}
	pending, err := c.ListMachineActions(ctx, defender.ActionQuery{MachineID: id, Status: defender.ActionPending, Type: defender.ActionTypeLiveResponse})
	if err != nil || len(pending) != 1 || pending[0].ID != first.ID {
		t.Fatalf("pending actions = %+v, %v; want only %s", pending, err, first.ID)
	}
	cancelled, err := c.CancelMachineAction(ctx, first.ID, "test over")
	if err != nil {
		t.Fatal(err)
	}
	if cancelled.Status != defender.ActionCancelled {
		t.Errorf("cancelled action status = %s", cancelled.Status)
	}
	if _, err := c.WaitForAction(ctx, first.ID, defender.WaitOptions{Interval: time.Second}); !errors.Is(err, defender.ErrActionCancelled) {
		t.Errorf("WaitForAction after cancel = %v, want ErrActionCancelled", err)
	}
}

func TestSimOfflineDeviceTimesOut(t *testing.T) {
	s := startSim(t, defendersim.Options{TimeScale: 3600, Limits: defendersim.Limits{OfflineQueue: time.Hour}})
	c := simClient(t, s, s.DefaultApp(), defender.Limits{TimeScale: 3600})
	ctx := simCtx(t)
	id := onlineMachines(t, s, 1)[0]
	s.SetMachineOnline(id, false)
	uploadScript(t, c, "quarry-echo.sh", "echo hi\n")
	a, err := c.RunLiveResponse(ctx, id, defender.LiveResponseRequest{Commands: []defender.Command{defender.RunScriptCommand("quarry-echo.sh", "")}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != defender.ActionPending {
		t.Errorf("status for an offline device = %s, want Pending", a.Status)
	}
	done, err := c.WaitForAction(ctx, a.ID, defender.WaitOptions{Interval: time.Minute})
	if !errors.Is(err, defender.ErrDeviceOffline) || done == nil || done.Status != defender.ActionTimeOut {
		t.Fatalf("WaitForAction = %+v, %v; want TimeOut and ErrDeviceOffline", done, err)
	}
}

func TestSimThrottling(t *testing.T) {
	tests := []struct {
		name         string
		clientLimit  int
		wantRejected bool
	}{
		// The client's own limiter keeps it under the emulator's limit: no 429 at all.
		{"ClientPaces", 2, false},
		// A client allowed more than the service gets 429 + Retry-After, waits, and still succeeds.
		{"ServerThrottles", 1000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSim(t, defendersim.Options{TimeScale: 60, Limits: defendersim.Limits{LiveResponsePerMinute: 2}})
			lim := fast
			lim.LiveResponsePerMinute = tt.clientLimit
			c := simClient(t, s, s.DefaultApp(), lim)
			ctx := simCtx(t)
			ids := onlineMachines(t, s, 3)
			for _, id := range ids {
				s.SetMachineOnline(id, false) // keep each request Pending; only the call rate matters here
			}
			uploadScript(t, c, "quarry-echo.ps1", "Write-Output 'hi'\n")
			for _, id := range ids {
				if _, err := c.RunLiveResponse(ctx, id, defender.LiveResponseRequest{Commands: []defender.Command{defender.RunScriptCommand("quarry-echo.ps1", "")}}); err != nil {
					t.Fatalf("RunLiveResponse on %s: %v", id, err)
				}
			}
			st := s.Stats()
			if (st.RejectedRate > 0) != tt.wantRejected {
				t.Errorf("emulator rejected %d calls for rate, want rejections %v", st.RejectedRate, tt.wantRejected)
			}
			if st.CallsByEndpoint["RunLiveResponse"] != len(ids)+st.RejectedRate {
				t.Errorf("runliveresponse calls = %d, want %d accepted + %d throttled", st.CallsByEndpoint["RunLiveResponse"], len(ids), st.RejectedRate)
			}
		})
	}
}

func TestSimServerErrorsRetried(t *testing.T) {
	s := startSim(t, defendersim.Options{TimeScale: 60})
	c := simClient(t, s, s.DefaultApp(), fast)
	ctx := simCtx(t)
	s.FailNext("GET", "/api/machines", 503, 2)
	ms, err := c.ListMachines(ctx, defender.MachineQuery{})
	if err != nil || len(ms) != 6 {
		t.Fatalf("ListMachines after two 503s = %d machines, %v", len(ms), err)
	}
	id := onlineMachines(t, s, 1)[0]
	s.SetMachineOnline(id, false)
	uploadScript(t, c, "quarry-echo.ps1", "Write-Output 'hi'\n")
	s.FailNext("POST", "/api/machines/"+id+"/runliveresponse", 500, 1)
	a, err := c.RunLiveResponse(ctx, id, defender.LiveResponseRequest{Commands: []defender.Command{defender.RunScriptCommand("quarry-echo.ps1", "")}, Comment: "retry"})
	if err != nil {
		t.Fatalf("RunLiveResponse after an injected 500: %v", err)
	}
	acts, err := c.ListMachineActions(ctx, defender.ActionQuery{MachineID: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].ID != a.ID {
		t.Errorf("machine has actions %+v, want exactly %s", acts, a.ID)
	}
}

func TestSimAlertsIncrementalAndUpdate(t *testing.T) {
	s := startSim(t, defendersim.Options{Machines: 40})
	c := simClient(t, s, s.DefaultApp(), defender.Limits{})
	ctx := simCtx(t)
	alerts, err := c.ListAlerts(ctx, defender.AlertQuery{ExpandEvidence: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) == 0 {
		t.Fatal("emulator has no alerts")
	}
	withEvidence := 0
	for i, a := range alerts {
		if i > 0 && a.LastUpdateTime.Before(alerts[i-1].LastUpdateTime.Time) {
			t.Errorf("alerts not in update order at %d", i)
		}
		if len(a.Evidence) > 0 {
			withEvidence++
		}
	}
	if withEvidence == 0 {
		t.Error("no alert carries evidence despite $expand=evidence")
	}
	hw := defender.HighWater(alerts, time.Time{})
	target := alerts[0]
	updated, err := c.UpdateAlert(ctx, target.ID, defender.AlertUpdate{Status: "InProgress", Comment: "Quarry collection started"})
	if err != nil {
		t.Fatal(err)
	}
	if updated.ID != target.ID || updated.Status != "InProgress" || len(updated.Comments) != len(target.Comments)+1 || updated.Title == "" {
		t.Errorf("UpdateAlert returned %+v", updated)
	}
	changed, err := c.ListAlerts(ctx, defender.AlertQuery{UpdatedSince: hw})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(changed, func(a defender.Alert) bool { return a.ID == target.ID && a.Status == "InProgress" }) {
		t.Errorf("alerts updated since %v = %d, missing the one just updated", hw, len(changed))
	}
}

func TestSimInvestigationPackage(t *testing.T) {
	s := startSim(t, defendersim.Options{TimeScale: 60})
	c := simClient(t, s, s.DefaultApp(), fast)
	ctx := simCtx(t)
	id := onlineMachines(t, s, 1)[0]
	a, err := c.CollectInvestigationPackage(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Type != defender.ActionTypeCollectInvestigationPackage || len(a.Commands) != 0 {
		t.Errorf("collect action = %+v", a)
	}
	if _, err := c.WaitForAction(ctx, a.ID, defender.WaitOptions{Interval: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	uri, err := c.GetPackageURI(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	n, err := c.DownloadResult(ctx, uri, &buf)
	if err != nil || n == 0 || !strings.HasPrefix(buf.String(), "PK") {
		t.Errorf("package download = %d bytes, %v; want a zip", n, err)
	}
}
