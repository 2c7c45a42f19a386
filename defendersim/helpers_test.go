package defendersim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// MustStart starts an emulator on loopback with a data folder in the test's temp dir.
func MustStart(tb testing.TB, opts Options) *Sim {
	tb.Helper()
	if opts.DataDir == "" {
		opts.DataDir = tb.TempDir()
	}
	if opts.Machines == 0 {
		opts.Machines = 20
	}
	s, err := Start(context.Background(), opts)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// client talks raw HTTP to the emulator with one app's token, never through package defender.
type client struct {
	tb    testing.TB
	sim   *Sim
	token string
}

// newClient gets a v2 token for app (the default app when zero) over HTTP.
func newClient(tb testing.TB, s *Sim, app App) *client {
	tb.Helper()
	if app.ClientID == "" {
		app = s.DefaultApp()
	}
	form := url.Values{
		"grant_type": {"client_credentials"}, "client_id": {app.ClientID}, "client_secret": {app.ClientSecret},
		"scope": {mdeResource + "/.default"},
	}
	tenant := app.TenantID
	if tenant == "" {
		tenant = s.TenantID()
	}
	resp, err := s.HTTPClient().PostForm(s.AuthorityURL()+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		tb.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&tok) != nil || tok.AccessToken == "" {
		tb.Fatalf("token: status %d", resp.StatusCode)
	}
	return &client{tb: tb, sim: s, token: tok.AccessToken}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

// errorCode returns error.code of an MDE error envelope.
func (r response) errorCode(tb testing.TB) string {
	tb.Helper()
	e, _ := r.json(tb)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func (c *client) do(method, path string, body any) response {
	c.tb.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/json"
	default:
		j, _ := json.Marshal(b)
		rd, ctype = bytes.NewReader(j), "application/json"
	}
	return c.raw(method, path, rd, ctype)
}

func (c *client) raw(method, path string, body io.Reader, ctype string) response {
	c.tb.Helper()
	u := path
	if !strings.HasPrefix(path, "https://") {
		u = c.sim.APIURL() + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		c.tb.Fatalf("request: %v", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.sim.HTTPClient().Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// upload puts a file in the library with the documented multipart form.
func (c *client) upload(name string, data []byte, fields map[string]string) response {
	c.tb.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(data)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.Close()
	return c.raw("POST", "/api/libraryfiles", &buf, mw.FormDataContentType())
}

func (c *client) mustUpload(name string, data []byte) {
	c.tb.Helper()
	if r := c.upload(name, data, map[string]string{"HasParameters": "true", "OverrideIfExists": "true"}); r.status != 200 {
		c.tb.Fatalf("upload %s: %d %s", name, r.status, r.body)
	}
}

func runScriptBody(script, args string) map[string]any {
	params := []map[string]string{{"key": "ScriptName", "value": script}}
	if args != "" {
		params = append(params, map[string]string{"key": "Args", "value": args})
	}
	return map[string]any{"Commands": []map[string]any{{"type": "RunScript", "params": params}}, "Comment": "test"}
}

// startLR posts a runliveresponse and returns the action id.
func (c *client) startLR(machineID string, body any) string {
	c.tb.Helper()
	r := c.do("POST", "/api/machines/"+machineID+"/runliveresponse", body)
	if r.status != 201 {
		c.tb.Fatalf("runliveresponse on %s: %d %s", machineID, r.status, r.body)
	}
	return r.json(c.tb)["id"].(string)
}

// waitFinal polls an action until it is final and returns it. The ceiling only stops a hung test;
// what is asserted never depends on wall-clock time.
func (c *client) waitFinal(id string) map[string]any {
	c.tb.Helper()
	for range 2000 {
		r := c.do("GET", "/api/machineactions/"+id, nil)
		m := r.json(c.tb)
		if st, _ := m["status"].(string); isFinal(st) {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.tb.Fatalf("action %s never finished", id)
	return nil
}

// download fetches a result link without any Authorization header.
func download(tb testing.TB, s *Sim, link string) response {
	tb.Helper()
	resp, err := s.HTTPClient().Get(link)
	if err != nil {
		tb.Fatalf("download: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// onlineMachine returns a device that is steadily online with the given OS family.
func onlineMachine(tb testing.TB, s *Sim, family string) string {
	tb.Helper()
	for _, d := range s.devices {
		if d.host.OS == family && d.flap == 0 && d.online {
			return d.m.ID
		}
	}
	tb.Fatalf("no online %s device", family)
	return ""
}

var guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
