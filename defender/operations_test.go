package defender

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func machines(n int) []Machine {
	out := make([]Machine, n)
	for i := range out {
		out[i] = Machine{ID: fmt.Sprintf("%040d", i), MachineTags: []string{}}
	}
	return out
}

func TestListMachinesPaging(t *testing.T) {
	all := machines(25)
	tests := []struct {
		name string
		// serve answers one list request given $top, $skip and the server's own URL.
		serve     func(top, skip int, self string) (page []Machine, next string)
		query     MachineQuery
		want      int
		wantCalls int32
		wantErr   bool
	}{
		{"HonoursTopAndSkip", func(top, skip int, _ string) ([]Machine, string) {
			return all[min(skip, 25):min(skip+top, 25)], ""
		}, MachineQuery{}, 25, 3, false},
		{"ServerCapsPageAndGivesNextLink", func(top, skip int, self string) ([]Machine, string) {
			end := min(skip+7, 25)
			if end < 25 {
				return all[skip:end], self + "/api/machines?$skip=" + strconv.Itoa(end)
			}
			return all[skip:end], ""
		}, MachineQuery{}, 25, 4, false},
		{"LoopingNextLinkStops", func(top, skip int, self string) ([]Machine, string) {
			return all[:3], self + "/api/machines?$skip=3"
		}, MachineQuery{}, 3, 2, false},
		{"ForeignNextLinkRefused", func(top, skip int, self string) ([]Machine, string) {
			return all[:3], "https://evil.example/api/machines?$skip=3"
		}, MachineQuery{}, 0, 1, true},
		{"OnePageWhenTopGiven", func(top, skip int, _ string) ([]Machine, string) {
			return all[skip : skip+top], ""
		}, MachineQuery{Page: Page{Top: 5, Skip: 10}}, 5, 1, false},
		{"Empty404", nil, MachineQuery{}, 0, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			var f *fakeTenant
			f = newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if tt.serve == nil {
					writeError(w, 404, "NotFound", "no recent machines")
					return
				}
				if got := r.URL.Query().Get("$filter"); got != tt.query.Filter {
					t.Errorf("$filter = %q, want %q", got, tt.query.Filter)
				}
				top, _ := strconv.Atoi(r.URL.Query().Get("$top"))
				if top == 0 {
					top = 10000
				}
				skip, _ := strconv.Atoi(r.URL.Query().Get("$skip"))
				page, next := tt.serve(top, skip, f.srv.URL)
				body := map[string]any{"@odata.context": f.srv.URL + "/api/$metadata#Machines", "value": page}
				if next != "" {
					body["@odata.nextLink"] = next
				}
				writeJSON(w, 200, body)
			})
			c, _ := f.client(t, func(cfg *Config) { cfg.Limits.PageSize = 10 })
			got, err := c.ListMachines(ctxT(t), tt.query)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ListMachines error = %v, want error %v", err, tt.wantErr)
			}
			if len(got) != tt.want {
				t.Errorf("ListMachines returned %d machines, want %d", len(got), tt.want)
			}
			seen := map[string]bool{}
			for _, m := range got {
				if seen[m.ID] {
					t.Errorf("machine %s returned twice", m.ID)
				}
				seen[m.ID] = true
			}
			if calls.Load() != tt.wantCalls {
				t.Errorf("requests = %d, want %d", calls.Load(), tt.wantCalls)
			}
		})
	}
}

func TestUploadLibraryFileForm(t *testing.T) {
	content := []byte("Write-Output 'hello'\n")
	f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/libraryfiles" {
			writeError(w, 404, "NotFound", r.URL.Path)
			return
		}
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			writeError(w, 400, "InvalidRequestBody", err.Error())
			return
		}
		file, hdr, err := r.FormFile("file")
		if err != nil {
			writeError(w, 400, "MissingRequiredParameter", "file")
			return
		}
		got, _ := io.ReadAll(file)
		want := map[string]string{"Description": "boot", "ParametersDescription": "-Token <t>", "HasParameters": "true", "OverrideIfExists": "true"}
		for k, v := range want {
			if r.FormValue(k) != v {
				t.Errorf("form field %s = %q, want %q", k, r.FormValue(k), v)
			}
		}
		if !bytes.Equal(got, content) || hdr.Filename != "quarry-boot.ps1" {
			t.Errorf("file part = %q named %q", got, hdr.Filename)
		}
		writeJSON(w, 200, LibraryFile{FileName: hdr.Filename, HasParameters: true, Description: "boot"})
	})
	c, _ := f.client(t, nil)
	lf, err := c.UploadLibraryFile(ctxT(t), LibraryUpload{FileName: "quarry-boot.ps1", Content: content, Description: "boot",
		ParametersDescription: "-Token <t>", HasParameters: true, OverrideIfExists: true})
	if err != nil || lf.FileName != "quarry-boot.ps1" {
		t.Fatalf("UploadLibraryFile = %+v, %v", lf, err)
	}
	for _, bad := range []LibraryUpload{
		{FileName: "../x.ps1", Content: content},
		{FileName: "a b.ps1", Content: content},
		{FileName: "big.bin", Content: make([]byte, MaxLibraryFileSize+1)},
		{FileName: "empty.ps1"},
	} {
		if _, err := c.UploadLibraryFile(ctxT(t), bad); err == nil {
			t.Errorf("UploadLibraryFile(%q, %d bytes) accepted", bad.FileName, len(bad.Content))
		}
	}
}

func TestScriptResultDownload(t *testing.T) {
	doc := `{"script_name":"boot.ps1","exit_code":3,"script_output":"started\n\u0000\u0000","script_errors":""}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(doc))
	zw.Close()
	tests := []struct {
		name    string
		blob    []byte
		expireN int // the first expireN downloads answer 403 (an expired link)
		wantErr error
		links   int32
	}{
		{"Plain", []byte(doc), 0, nil, 1},
		{"Gzip", gz.Bytes(), 0, nil, 1},
		{"ExpiredLinkRenewedOnce", []byte(doc), 1, nil, 2},
		{"AlwaysRefused", []byte(doc), 9, ErrLinkExpired, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var links, downloads atomic.Int32
			var f *fakeTenant
			f = newFakeTenant(t, nil)
			f.api = func(w http.ResponseWriter, r *http.Request) {
				if want := "/api/machineactions/act-1/GetLiveResponseResultDownloadLink(index=1)"; r.URL.EscapedPath() != want && r.URL.Path != want {
					t.Errorf("result link path = %s, want %s", r.URL.EscapedPath(), want)
				}
				links.Add(1)
				writeJSON(w, 200, map[string]string{"@odata.context": "x#Edm.String", "value": f.srv.URL + "/blob/result?sig=abc"})
			}
			inner := f.srv.Config.Handler
			f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/blob/result" {
					inner.ServeHTTP(w, r)
					return
				}
				if r.Header.Get("Authorization") != "" {
					t.Error("the pre-signed download carried an Authorization header")
				}
				if int(downloads.Add(1)) <= tt.expireN {
					w.WriteHeader(403)
					return
				}
				w.Write(tt.blob)
			})
			c, _ := f.client(t, nil)
			res, err := c.GetScriptResult(ctxT(t), "act-1", 1)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("GetScriptResult error = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if *res != (ScriptResult{ScriptName: "boot.ps1", ExitCode: 3, ScriptOutput: "started\n"}) {
				t.Errorf("GetScriptResult = %+v", *res)
			}
			if links.Load() != tt.links {
				t.Errorf("result links asked = %d, want %d", links.Load(), tt.links)
			}
		})
	}
}

func TestListAlertsIncremental(t *testing.T) {
	base := time.Date(2024, 6, 3, 9, 0, 0, 0, time.UTC)
	f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if got, want := q.Get("$filter"), "lastUpdateTime ge 2024-06-03T09:00:00Z"; got != want {
			t.Errorf("$filter = %q, want %q", got, want)
		}
		if q.Get("$expand") != "evidence" {
			t.Errorf("$expand = %q", q.Get("$expand"))
		}
		writeJSON(w, 200, map[string]any{"value": []Alert{
			{ID: "b", LastUpdateTime: Time{base.Add(2 * time.Minute)}},
			{ID: "a", LastUpdateTime: Time{base}},
		}})
	})
	c, _ := f.client(t, nil)
	got, err := c.ListAlerts(ctxT(t), AlertQuery{UpdatedSince: base.Add(900 * time.Millisecond), ExpandEvidence: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Errorf("ListAlerts order = %v, want a then b (oldest update first)", got)
	}
	if hw := HighWater(got, base); !hw.Equal(base.Add(2 * time.Minute)) {
		t.Errorf("HighWater = %v", hw)
	}
}

func TestWaitForAction(t *testing.T) {
	tests := []struct {
		name     string
		statuses []ActionStatus
		started  bool
		pending  time.Duration
		wantErr  error
	}{
		{"Succeeds", []ActionStatus{ActionPending, ActionInProgress, ActionSucceeded}, true, 0, nil},
		{"Fails", []ActionStatus{ActionInProgress, ActionFailed}, true, 0, ErrActionFailed},
		{"OfflineTimesOut", []ActionStatus{ActionPending, ActionTimeOut}, false, 0, ErrDeviceOffline},
		{"ScriptTimesOut", []ActionStatus{ActionInProgress, ActionTimeOut}, true, 0, ErrActionTimedOut},
		{"Cancelled", []ActionStatus{ActionCancelled}, false, 0, ErrActionCancelled},
		{"PendingTooLong", []ActionStatus{ActionPending, ActionPending, ActionPending, ActionPending}, false, 25 * time.Second, ErrDeviceOffline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
				i := min(int(n.Add(1)), len(tt.statuses)) - 1
				cmd := ActionCommand{Index: 0, CommandStatus: CommandCreated, Errors: []json.RawMessage{}, Command: RunScriptCommand("a.ps1", "")}
				if tt.started && tt.statuses[i] != ActionPending {
					cmd.StartTime = Time{time.Now()}
					cmd.CommandStatus = CommandFailed
					cmd.Errors = []json.RawMessage{json.RawMessage(`"script exited 1"`)}
				}
				writeJSON(w, 200, MachineAction{ID: "act-1", Type: "LiveResponse", Status: tt.statuses[i], Commands: []ActionCommand{cmd}})
			})
			clock := &fakeClock{now: time.Now()}
			c, _ := f.client(t, func(cfg *Config) { cfg.Now = clock.Now })
			c.sleep = clock.Sleep
			a, err := c.WaitForAction(ctxT(t), "act-1", WaitOptions{Interval: 10 * time.Second, PendingTimeout: tt.pending})
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("WaitForAction = %v, want %v", err, tt.wantErr)
			}
			if a == nil || a.ID != "act-1" {
				t.Errorf("WaitForAction returned %+v, want the action", a)
			}
			if tt.name == "Fails" && !strings.Contains(err.Error(), "script exited 1") {
				t.Errorf("failure %q does not carry the command error", err)
			}
		})
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	var calls atomic.Int32
	f := newFakeTenant(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			fail503(t, w)
			return
		}
		writeJSON(w, 200, Machine{ID: "m1"})
	})
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, _ := f.client(t, func(cfg *Config) { cfg.Logger = logger })
	if _, err := c.GetMachine(ctxT(t), "m1"); err != nil {
		t.Fatal(err)
	}
	bad, _ := f.client(t, func(cfg *Config) { cfg.Logger = logger; cfg.ClientSecret = "Zz9-wrong-secret" })
	_, err := bad.GetMachine(ctxT(t), "m1")
	tok, _ := c.token(context.Background())
	text := logs.String() + err.Error()
	for _, secret := range []string{f.secret, "Zz9-wrong-secret", tok} {
		if strings.Contains(text, secret) {
			t.Errorf("logs or errors contain a secret or token (%.12s…)", secret)
		}
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("expected a retry in the log, got %q", logs.String())
	}
}
