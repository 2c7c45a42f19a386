package defender

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// lrAPI is a test Live Response endpoint whose runliveresponse answers follow a script per attempt.
type lrAPI struct {
	mu      sync.Mutex
	posts   int
	lists   []string // $filter of each machineactions list
	visible []MachineAction
	late    *MachineAction // created but not listed until the first lookup
	// post decides the answer to POST number n (1-based): whether the action is created, and how to
	// answer ("201", "500", "502", "drop", "429", "active", "late500").
	post func(n int) string
	// listStatus, when non-zero, is the answer to lists whose filter contains listRefuse.
	listStatus int
	listRefuse string
}

func (a *lrAPI) handler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/runliveresponse"):
			a.posts++
			var req LiveResponseRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				writeError(w, 400, "InvalidRequestBody", err.Error())
				return
			}
			act := MachineAction{ID: fmt.Sprintf("act-%d", a.posts), Type: "LiveResponse", Status: ActionPending, MachineID: "m1",
				RequestorComment: req.Comment, CreationDateTimeUTC: Time{time.Now()}, Commands: []ActionCommand{}}
			switch a.post(a.posts) {
			case "201":
				a.visible = append(a.visible, act)
				writeJSON(w, 201, act)
			case "500":
				a.visible = append(a.visible, act)
				writeError(w, 500, "InternalServerError", "boom")
			case "502":
				writeError(w, 502, "BadGateway", "nothing done")
			case "drop":
				a.visible = append(a.visible, act)
				dropConnection(t, w)
			case "late500":
				a.late = &act
				writeError(w, 500, "InternalServerError", "boom")
			case "429":
				w.Header().Set("Retry-After", "2")
				writeError(w, 429, "TooManyRequests", "slow down")
			case "active":
				writeError(w, 400, "ActiveRequestAlreadyExists", "Action is already in progress")
			}
		case r.Method == http.MethodGet && r.URL.Path == "/api/machineactions":
			f := r.URL.Query().Get("$filter")
			a.lists = append(a.lists, f)
			if a.listStatus != 0 && strings.Contains(f, a.listRefuse) {
				writeError(w, a.listStatus, "ODataError", "refused")
				return
			}
			out := append([]MachineAction(nil), a.visible...)
			if a.late != nil {
				a.visible = append(a.visible, *a.late)
				a.late = nil
			}
			writeJSON(w, 200, map[string]any{"value": out})
		default:
			writeError(w, 404, "NotFound", r.URL.Path)
		}
	}
}

// lrBehaviour is the scripted part of an lrAPI, for test tables.
type lrBehaviour struct {
	post       func(n int) string
	listStatus int
	listRefuse string
}

func TestRunLiveResponseNeverRepeatsBlindly(t *testing.T) {
	script := func(answers ...string) func(int) string {
		return func(n int) string {
			if n > len(answers) {
				return "201"
			}
			return answers[n-1]
		}
	}
	tests := []struct {
		name       string
		api        lrBehaviour
		wantPosts  int
		wantAction string // id of the action returned; "" = error expected
		wantErr    error
		wantLists  int
	}{
		{"OK", lrBehaviour{post: script("201")}, 1, "act-1", nil, 0},
		{"CreatedThen500", lrBehaviour{post: script("500")}, 1, "act-1", nil, 1},
		{"CreatedThenConnectionLost", lrBehaviour{post: script("drop")}, 1, "act-1", nil, 1},
		{"NotCreated502ThenSentAgain", lrBehaviour{post: script("502", "201")}, 2, "act-2", nil, 1},
		{"ThrottledThenSent", lrBehaviour{post: script("429", "201")}, 2, "act-2", nil, 0},
		{"BusyDevice", lrBehaviour{post: script("active")}, 1, "", ErrActiveRequestAlreadyExists, 0},
		{"LateCreationFoundAfterBusyRefusal", lrBehaviour{post: script("late500", "active")}, 2, "act-1", nil, 2},
		{"DateFilterRefused", lrBehaviour{post: script("500"), listStatus: 400, listRefuse: "creationDateTimeUtc"}, 1, "act-1", nil, 2},
		{"LookupForbidden", lrBehaviour{post: script("500"), listStatus: 403, listRefuse: "machineId"}, 1, "", ErrOutcomeUnknown, 1},
		{"AlwaysFailingNeverCreates", lrBehaviour{post: script("502", "502", "502")}, 3, "", ErrOutcomeUnknown, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &lrAPI{post: tt.api.post, listStatus: tt.api.listStatus, listRefuse: tt.api.listRefuse}
			// Someone else's request on the same device must never be taken for ours.
			api.visible = []MachineAction{{ID: "other", Type: "LiveResponse", MachineID: "m1", RequestorComment: "by hand", Status: ActionPending}}
			f := newFakeTenant(t, api.handler(t))
			c, rec := f.client(t, func(cfg *Config) { cfg.Limits.MaxAttempts = 3 })
			a, err := c.RunLiveResponse(ctxT(t), "m1", LiveResponseRequest{Commands: []Command{RunScriptCommand("boot.ps1", "-x 1")}, Comment: "INC-1"})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("RunLiveResponse error = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("RunLiveResponse: %v", err)
			} else if a.ID != tt.wantAction {
				t.Errorf("RunLiveResponse returned action %s, want %s", a.ID, tt.wantAction)
			}
			if api.posts != tt.wantPosts {
				t.Errorf("runliveresponse sent %d times, want %d", api.posts, tt.wantPosts)
			}
			if len(api.lists) != tt.wantLists {
				t.Errorf("machine action lookups = %d (%q), want %d", len(api.lists), api.lists, tt.wantLists)
			}
			for _, f := range api.lists {
				if !strings.Contains(f, "machineId eq 'm1'") {
					t.Errorf("lookup filter %q does not name the machine", f)
				}
			}
			if tt.name == "ThrottledThenSent" {
				if got := rec.all(); len(got) != 1 || got[0] != 2*time.Second {
					t.Errorf("waits = %v, want [2s] from Retry-After", got)
				}
			}
			if a != nil && !strings.HasPrefix(a.RequestorComment, "INC-1 [quarry-req:") {
				t.Errorf("comment %q does not carry the caller's text and the marker", a.RequestorComment)
			}
		})
	}
}

func TestLiveResponseRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		cmds []Command
		ok   bool
	}{
		{"Ordered", []Command{PutFileCommand("a.exe"), RunScriptCommand("b.ps1", ""), GetFileCommand(`C:\x`)}, true},
		{"Repeated", []Command{RunScriptCommand("a.ps1", ""), RunScriptCommand("b.ps1", "")}, true},
		{"Empty", nil, false},
		{"WrongOrder", []Command{GetFileCommand("/x"), RunScriptCommand("b.sh", "")}, false},
		{"UnknownType", []Command{{Type: "Isolate"}}, false},
		{"MissingParam", []Command{{Type: CommandRunScript}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := LiveResponseRequest{Commands: tt.cmds}.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
