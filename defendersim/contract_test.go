package defendersim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestContract checks the emulator against the checklist of mde-api.md §11, one subtest per item,
// over raw HTTPS.
func TestContract(t *testing.T) {
	s := MustStart(t, Options{Seed: 7, Machines: 30, TimeScale: 600})
	c := newClient(t, s, App{})
	linux := onlineMachine(t, s, "linux")
	windows := onlineMachine(t, s, "windows")

	t.Run("01_Auth", func(t *testing.T) {
		anon := &client{tb: t, sim: s}
		if r := anon.do("GET", "/api/machines", nil); r.status != 401 || r.errorCode(t) != "Unauthorized" {
			t.Errorf("no token = %d %s, want 401 Unauthorized", r.status, r.body)
		}
		bad := &client{tb: t, sim: s, token: c.token[:len(c.token)-4] + "AAAA"}
		if r := bad.do("GET", "/api/machines", nil); r.status != 401 {
			t.Errorf("bad signature = %d, want 401", r.status)
		}
		app := s.DefaultApp()
		expired, _ := s.mint(claims{Aud: mdeResource, TID: s.TenantID(), AppID: app.ClientID, Roles: AllRoles,
			Iat: time.Now().Add(-2 * time.Hour).Unix(), Nbf: time.Now().Add(-2 * time.Hour).Unix(), Exp: time.Now().Add(-time.Hour).Unix()})
		if r := (&client{tb: t, sim: s, token: expired}).do("GET", "/api/machines", nil); r.status != 401 || r.errorCode(t) != "Unauthorized" {
			t.Errorf("expired token = %d %s, want 401", r.status, r.body)
		}
		s.AddApp(App{ClientID: "11111111-2222-4333-8444-555555555555", ClientSecret: "s3cret", Roles: []string{"Machine.LiveResponse"}})
		lr := newClient(t, s, App{ClientID: "11111111-2222-4333-8444-555555555555", ClientSecret: "s3cret"})
		r := lr.do("GET", "/api/machineactions/"+newGUID(), nil)
		if r.status != 403 || r.errorCode(t) != "Forbidden" {
			t.Fatalf("LiveResponse-only token polling an action = %d %s, want 403", r.status, r.body)
		}
		msg := r.json(t)["error"].(map[string]any)["message"].(string)
		if !strings.Contains(msg, "(Machine.Read.All, Machine.ReadWrite.All)") {
			t.Errorf("403 message %q does not name the permissions", msg)
		}
		// A token for another resource is refused with 403 (#9246).
		other, _ := s.mint(claims{Aud: "https://api.security.microsoft.com", TID: s.TenantID(), AppID: app.ClientID, Roles: AllRoles,
			Iat: time.Now().Unix(), Nbf: time.Now().Unix(), Exp: time.Now().Add(time.Hour).Unix()})
		if r := (&client{tb: t, sim: s, token: other}).do("GET", "/api/machines", nil); r.status != 403 {
			t.Errorf("wrong audience = %d, want 403", r.status)
		}
	})

	t.Run("02_ErrorEnvelope", func(t *testing.T) {
		for _, tc := range []struct {
			name, method, path string
			body               any
			status             int
		}{
			{"NotFoundMachine", "GET", "/api/machines/" + strings.Repeat("0", 40), nil, 404},
			{"NotFoundAction", "GET", "/api/machineactions/" + newGUID(), nil, 404},
			{"BadFilter", "GET", "/api/machines?$filter=" + url.QueryEscape("nosuch eq 1"), nil, 400},
			{"BadBody", "POST", "/api/machines/" + linux + "/runliveresponse", "{", 400},
			{"UnknownRoute", "GET", "/api/nosuch", nil, 404},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := c.do(tc.method, tc.path, tc.body)
				if r.status != tc.status {
					t.Fatalf("%s %s = %d, want %d", tc.method, tc.path, r.status, tc.status)
				}
				var env struct {
					Error map[string]string `json:"error"`
				}
				if err := json.Unmarshal(r.body, &env); err != nil || len(env.Error) != 3 {
					t.Fatalf("body %s is not {error:{code,message,target}}", r.body)
				}
				if env.Error["code"] == "" || env.Error["message"] == "" || !guidRE.MatchString(env.Error["target"]) {
					t.Errorf("envelope %v: want code, message and a GUID target", env.Error)
				}
			})
		}
	})

	t.Run("03_CaseSensitiveBodyKeys", func(t *testing.T) {
		for _, tc := range []struct {
			name, method, path, body, code string
		}{
			{"LowercaseCommands", "POST", "/api/machines/" + linux + "/runliveresponse", `{"commands":[],"Comment":"x"}`, "InvalidRequestBody"},
			{"MissingCommands", "POST", "/api/machines/" + linux + "/runliveresponse", `{"Comment":"x"}`, "MissingRequiredParameter"},
			{"UppercaseType", "POST", "/api/machines/" + linux + "/runliveresponse", `{"Commands":[{"Type":"RunScript","params":[]}]}`, "InvalidRequestBody"},
			{"WrongParamKey", "POST", "/api/machines/" + linux + "/runliveresponse", `{"Commands":[{"type":"RunScript","params":[{"Key":"ScriptName","value":"a.sh"}]}]}`, "InvalidRequestBody"},
			{"CancelLowercase", "POST", "/api/machineactions/" + newGUID() + "/cancel", `{"comment":"x"}`, "InvalidRequestBody"},
			{"AlertStatusCase", "PATCH", "/api/alerts/x", `{"Status":"Resolved"}`, "InvalidRequestBody"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := c.do(tc.method, tc.path, tc.body)
				if r.status != 400 || r.errorCode(t) != tc.code {
					t.Errorf("%s = %d %s, want 400 %s", tc.body, r.status, r.body, tc.code)
				}
			})
		}
	})

	t.Run("04_RunLiveResponse", func(t *testing.T) {
		c.mustUpload("hello.sh", []byte("echo hello\n"))
		body := map[string]any{"Commands": []map[string]any{
			{"type": "PutFile", "params": []map[string]string{{"key": "FileName", "value": "hello.sh"}}},
			{"type": "RunScript", "params": []map[string]string{{"key": "ScriptName", "value": "hello.sh"}}},
			{"type": "GetFile", "params": []map[string]string{{"key": "Path", "value": "/etc/hostname"}}},
		}, "Comment": "contract"}
		r := c.do("POST", "/api/machines/"+linux+"/runliveresponse", body)
		if r.status != 201 {
			t.Fatalf("runliveresponse = %d %s, want 201", r.status, r.body)
		}
		a := r.json(t)
		if a["status"] != "Pending" || a["type"] != "LiveResponse" || a["requestorComment"] != "contract" {
			t.Errorf("new action = %v, want Pending LiveResponse", a)
		}
		if a["creationDateTimeUtc"] != a["lastUpdateDateTimeUtc"] {
			t.Errorf("new action: lastUpdateDateTimeUtc %v != creationDateTimeUtc %v", a["lastUpdateDateTimeUtc"], a["creationDateTimeUtc"])
		}
		cmds := a["commands"].([]any)
		if len(cmds) != 3 {
			t.Fatalf("commands = %d, want 3", len(cmds))
		}
		for i, x := range cmds {
			cm := x.(map[string]any)
			if cm["index"] != float64(i) || cm["commandStatus"] != "Created" || cm["startTime"] != nil || cm["endTime"] != nil || len(cm["errors"].([]any)) != 0 {
				t.Errorf("command %d = %v, want Created with null times and no errors", i, cm)
			}
		}
		if r := c.do("POST", "/api/machines/"+linux+"/runliveresponse", body); r.status != 400 || r.errorCode(t) != "ActiveRequestAlreadyExists" {
			t.Errorf("second request = %d %s, want 400 ActiveRequestAlreadyExists", r.status, r.body)
		}
		done := c.waitFinal(a["id"].(string))
		if done["status"] != "Succeeded" {
			t.Fatalf("action = %v, want Succeeded", done)
		}
		for i, x := range done["commands"].([]any) {
			cm := x.(map[string]any)
			if cm["commandStatus"] != "Completed" || cm["startTime"] == nil || cm["endTime"] == nil {
				t.Errorf("finished command %d = %v", i, cm)
			}
		}
		bad := map[string]any{"Commands": []map[string]any{
			{"type": "GetFile", "params": []map[string]string{{"key": "Path", "value": "/etc/hostname"}}},
			{"type": "RunScript", "params": []map[string]string{{"key": "ScriptName", "value": "hello.sh"}}},
		}}
		if r := c.do("POST", "/api/machines/"+linux+"/runliveresponse", bad); r.status != 400 || r.errorCode(t) != "InvalidInput" {
			t.Errorf("GetFile before RunScript = %d %s, want 400 InvalidInput", r.status, r.body)
		}
		if r := c.do("POST", "/api/machines/"+strings.Repeat("a", 40)+"/runliveresponse", body); r.status != 404 {
			t.Errorf("unknown machine = %d, want 404", r.status)
		}
	})

	t.Run("05_ActionFields", func(t *testing.T) {
		r := c.do("POST", "/api/machines/"+windows+"/collectInvestigationPackage", map[string]string{"Comment": "pkg"})
		if r.status != 201 {
			t.Fatalf("collectInvestigationPackage = %d %s", r.status, r.body)
		}
		var raw map[string]json.RawMessage
		json.Unmarshal(r.body, &raw)
		for key, want := range map[string]string{
			"requestSource": `"PublicApi"`, "errorHResult": `0`, "commands": `[]`, "externalId": `null`,
			"type": `"CollectInvestigationPackage"`, "cancellationRequestor": `null`,
		} {
			if got := string(raw[key]); got != want {
				t.Errorf("%s = %s, want %s", key, got, want)
			}
		}
		if _, ok := raw["lastUpdateDateTimeUtc"]; !ok {
			t.Error("no lastUpdateDateTimeUtc")
		}
		if _, ok := raw["lastUpdateTimeUtc"]; ok {
			t.Error("lastUpdateTimeUtc must not exist (#5896)")
		}
		id := r.json(t)["id"].(string)
		cr := c.do("POST", "/api/machineactions/"+id+"/cancel", map[string]string{"Comment": "stop"})
		a := cr.json(t)
		if cr.status != 200 || a["status"] != "Cancelled" || a["cancellationComment"] != "stop" || a["cancellationDateTimeUtc"] == nil {
			t.Errorf("cancel = %d %v, want 200 Cancelled with cancellation fields", cr.status, a)
		}
		if r := c.do("POST", "/api/machineactions/"+id+"/cancel", map[string]string{"Comment": "again"}); r.status != 400 {
			t.Errorf("cancel of a cancelled action = %d, want 400", r.status)
		}
	})

	t.Run("06_ResultLink", func(t *testing.T) {
		c.mustUpload("out.sh", []byte("echo out; echo err >&2; exit 3\n"))
		id := c.startLR(linux, runScriptBody("out.sh", ""))
		if a := c.waitFinal(id); a["status"] != "Succeeded" {
			t.Fatalf("action = %v", a)
		}
		for _, path := range []string{
			"/api/machineactions/" + id + "/GetLiveResponseResultDownloadLink(index=0)",
			"/API/v1.0/MachineActions/" + id + "/getliveresponseresultdownloadlink(index=0)",
		} {
			r := c.do("GET", path, nil)
			m := r.json(t)
			if r.status != 200 || !strings.HasSuffix(m["@odata.context"].(string), "$metadata#Edm.String") {
				t.Fatalf("%s = %d %s", path, r.status, r.body)
			}
			dl := download(t, s, m["value"].(string))
			var res map[string]any
			if dl.status != 200 || json.Unmarshal(dl.body, &res) != nil {
				t.Fatalf("download = %d %s", dl.status, dl.body)
			}
			want := map[string]any{"script_name": "out.sh", "exit_code": float64(3), "script_output": "out\n", "script_errors": "err\n"}
			for k, v := range want {
				if res[k] != v {
					t.Errorf("%s = %#v, want %#v", k, res[k], v)
				}
			}
		}
		if r := c.do("GET", "/api/machineactions/"+id+"/GetLiveResponseResultDownloadLink(index=5)", nil); r.status != 400 {
			t.Errorf("index out of range = %d, want 400", r.status)
		}
	})

	t.Run("07_Library", func(t *testing.T) {
		r := c.upload("lib-test.ps1", []byte("Write-Host hi"), map[string]string{"Description": "d", "HasParameters": "false"})
		e := r.json(t)
		if r.status != 200 || e["fileName"] != "lib-test.ps1" || e["sha256"] == "" || e["hasParameters"] != false || e["description"] != "d" {
			t.Fatalf("upload = %d %s", r.status, r.body)
		}
		if r := c.upload("lib-test.ps1", []byte("x"), nil); r.status != 400 {
			t.Errorf("re-upload without OverrideIfExists = %d, want 400", r.status)
		}
		if r := c.upload("lib-test.ps1", []byte("x"), map[string]string{"OverrideIfExists": "true"}); r.status != 200 {
			t.Errorf("re-upload with OverrideIfExists = %d, want 200", r.status)
		}
		list := c.do("GET", "/api/libraryfiles", nil).json(t)
		found := false
		for _, x := range list["value"].([]any) {
			found = found || x.(map[string]any)["fileName"] == "lib-test.ps1"
		}
		if !found {
			t.Errorf("list does not hold the upload: %v", list)
		}
		if r := c.do("DELETE", "/api/libraryfiles/lib-test.ps1", nil); r.status != 204 || len(r.body) != 0 {
			t.Errorf("delete = %d %q, want 204 and no body", r.status, r.body)
		}
		if r := c.do("DELETE", "/api/libraryfiles/lib-test.ps1", nil); r.status != 404 {
			t.Errorf("delete again = %d, want 404", r.status)
		}
		if r := c.upload("../evil.sh", []byte("x"), nil); r.status != 200 {
			// The part's file name is reduced to its base name, as browsers and curl send it.
			t.Errorf("upload with a path in the file name = %d %s", r.status, r.body)
		}
		if r := c.upload("bad name.sh", []byte("x"), nil); r.status != 400 || r.errorCode(t) != "InvalidInput" {
			t.Errorf("upload with a space in the name = %d %s, want 400 InvalidInput", r.status, r.body)
		}
	})

	t.Run("08_MachineShape", func(t *testing.T) {
		r := c.do("GET", "/api/machines", nil)
		var env struct {
			Value []map[string]json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(r.body, &env); err != nil || len(env.Value) != 30 {
			t.Fatalf("list = %d machines, err %v", len(env.Value), err)
		}
		for _, m := range env.Value {
			if string(m["onboardingStatus"]) != `"Onboarded"` {
				t.Errorf("onboardingStatus = %s", m["onboardingStatus"])
			}
			var gid int
			if json.Unmarshal(m["rbacGroupId"], &gid) != nil {
				t.Errorf("rbacGroupId %s is not an integer", m["rbacGroupId"])
			}
			if !bytes.HasPrefix(m["machineTags"], []byte("[")) || !bytes.HasPrefix(m["ipAddresses"], []byte("[")) {
				t.Errorf("arrays must never be null: machineTags %s ipAddresses %s", m["machineTags"], m["ipAddresses"])
			}
			var id string
			json.Unmarshal(m["id"], &id)
			if len(id) != 40 {
				t.Errorf("id %q is not 40 hex characters", id)
			}
		}
		one := c.do("GET", "/api/machines/"+linux, nil).json(t)
		if one["id"] != linux || !strings.HasSuffix(one["@odata.context"].(string), "#Machines/$entity") {
			t.Errorf("get machine = %v", one)
		}
	})

	t.Run("09_Alerts", func(t *testing.T) {
		plain := c.do("GET", "/api/alerts", nil).json(t)["value"].([]any)
		if len(plain) == 0 {
			t.Fatal("no alerts at start")
		}
		for _, x := range plain {
			if ev := x.(map[string]any)["evidence"].([]any); len(ev) != 0 {
				t.Fatalf("evidence without $expand = %v, want []", ev)
			}
		}
		expanded := c.do("GET", "/api/alerts?$expand=evidence", nil).json(t)["value"].([]any)
		a := expanded[0].(map[string]any)
		if len(a["evidence"].([]any)) == 0 || len(a["mitreTechniques"].([]any)) == 0 {
			t.Errorf("expanded alert = %v, want evidence and mitreTechniques", a)
		}
		id := a["id"].(string)
		r := c.do("PATCH", "/api/alerts/"+id, map[string]string{"status": "Resolved", "classification": "FalsePositive", "determination": "NotMalicious", "comment": "checked"})
		p := r.json(t)
		if r.status != 200 || p["status"] != "Resolved" || p["determination"] != "Clean" || p["title"] != a["title"] || p["resolvedTime"] == nil {
			t.Errorf("PATCH = %d %v, want the full updated alert", r.status, p)
		}
		if cm := p["comments"].([]any); len(cm) != 1 || cm[0].(map[string]any)["comment"] != "checked" {
			t.Errorf("comments = %v", cm)
		}
		mid := a["machineId"].(string)
		perMachine := c.do("GET", "/api/machines/"+mid+"/alerts", nil).json(t)["value"].([]any)
		if r := c.do("GET", "/api/machines/"+mid+"/alerts/$count", nil); r.status != 200 || string(r.body) != fmt.Sprint(len(perMachine)) || len(perMachine) == 0 {
			t.Errorf("$count = %d %q, want %d", r.status, r.body, len(perMachine))
		}
		if r := c.do("PATCH", "/api/alerts/"+id, map[string]string{"status": "Done"}); r.status != 400 {
			t.Errorf("invalid status = %d, want 400", r.status)
		}
	})

	t.Run("10_OData", func(t *testing.T) {
		count := func(q string) (int, map[string]any) {
			t.Helper()
			r := c.do("GET", "/api/machines?"+q, nil)
			if r.status != 200 {
				t.Fatalf("%s = %d %s", q, r.status, r.body)
			}
			m := r.json(t)
			return len(m["value"].([]any)), m
		}
		var win int
		for _, m := range s.Machines() {
			if strings.HasPrefix(m.OSPlatform, "Windows") {
				win++
			}
		}
		if n, _ := count("$filter=" + url.QueryEscape("startswith(osPlatform,'Windows')")); n != win {
			t.Errorf("startswith filter = %d machines, want %d", n, win)
		}
		if n, _ := count("$filter=" + url.QueryEscape("id eq '"+linux+"' or id eq '"+windows+"'")); n != 2 {
			t.Errorf("or filter = %d, want 2", n)
		}
		if n, _ := count("$top=5&$skip=28"); n != 2 {
			t.Errorf("$top=5&$skip=28 = %d, want 2", n)
		}
		if r := c.do("GET", "/api/machines?$top=10001", nil); r.status != 400 || r.errorCode(t) != "ODataError" {
			t.Errorf("$top=10001 = %d %s, want 400 ODataError", r.status, r.body)
		}
		if r := c.do("GET", "/api/machineactions?$filter="+url.QueryEscape("status eq 'Pending' and"), nil); r.status != 400 || r.errorCode(t) != "ODataError" {
			t.Errorf("truncated filter = %d, want 400 ODataError", r.status)
		}
		if r := c.do("GET", "/api/alerts?$filter="+url.QueryEscape("lastUpdateTime ge 2024-05-01T00:00:00Z and severity ne 'Informational'"), nil); r.status != 200 {
			t.Errorf("alert date filter = %d %s", r.status, r.body)
		}
	})

	t.Run("10_NextLink", func(t *testing.T) {
		small := MustStart(t, Options{Seed: 7, Machines: 17, Limits: Limits{MaxPageSize: 5}})
		sc := newClient(t, small, App{})
		var ids []string
		next := "/api/machines?$filter=" + url.QueryEscape("onboardingStatus eq 'Onboarded'")
		for pages := 0; next != ""; pages++ {
			if pages > 10 {
				t.Fatal("nextLink loops")
			}
			m := sc.do("GET", next, nil).json(t)
			for _, v := range m["value"].([]any) {
				ids = append(ids, v.(map[string]any)["id"].(string))
			}
			next, _ = m["@odata.nextLink"].(string)
		}
		if len(ids) != 17 {
			t.Errorf("following nextLinks gave %d machines, want 17", len(ids))
		}
		if m := sc.do("GET", "/api/machines?$top=5", nil).json(t); m["@odata.nextLink"] != nil {
			t.Errorf("nextLink with $top = %v, want none", m["@odata.nextLink"])
		}
	})

	t.Run("11_Headers", func(t *testing.T) {
		for _, path := range []string{"/api/machines", "/api/alerts", "/api/machines/nosuch"} {
			r := c.do("GET", path, nil)
			if got := r.header.Get("Content-Type"); got != odataContentType {
				t.Errorf("%s Content-Type = %q", path, got)
			}
			if got := r.header.Get("OData-Version"); got != "4.0" {
				t.Errorf("%s OData-Version = %q", path, got)
			}
		}
		m := c.do("GET", "/api/machines", nil).json(t)
		if ctx := m["@odata.context"].(string); ctx != s.APIURL()+"/api/$metadata#Machines" {
			t.Errorf("@odata.context = %q", ctx)
		}
	})

	t.Run("Stats", func(t *testing.T) {
		r := (&client{tb: t, sim: s}).do("GET", "/_sim/stats", nil)
		var st Stats
		if r.status != 200 || json.Unmarshal(r.body, &st) != nil {
			t.Fatalf("stats = %d %s", r.status, r.body)
		}
		if st.SessionsStarted < 2 || st.RejectedActiveRequest < 1 || st.CallsByEndpoint["ListMachines"] == 0 {
			t.Errorf("stats = %+v", st)
		}
		if got := fmt.Sprint(s.Stats().SessionsStarted); got != fmt.Sprint(st.SessionsStarted) {
			t.Errorf("Stats() = %s, /_sim/stats = %d", got, st.SessionsStarted)
		}
	})
}
