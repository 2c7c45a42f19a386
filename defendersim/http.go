package defendersim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The response headers a real capture shows on every API response (§2.1, §11.11).
const (
	odataContentType = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
	odataVersion     = "4.0"
)

// apiError is an MDE error: status, the stable code and a message (§2.4).
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, code, format, args...)
}

func notFound(format string, args ...any) *apiError {
	return errf(http.StatusNotFound, "ResourceNotFound", format, args...)
}

// writeAPIError writes the `{"error":{"code","message","target"}}` envelope with a fresh GUID target.
func writeAPIError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", odataContentType)
	h.Set("OData-Version", odataVersion)
	if e.status == http.StatusTooManyRequests {
		secs := int(math.Ceil(e.retryAfter.Seconds()))
		h.Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": e.code, "message": e.msg, "target": newGUID()}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", odataContentType)
	w.Header().Set("OData-Version", odataVersion)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type rateClass int

const (
	rateNone rateClass = iota
	rateDefault
	rateLiveResponse
	ratePackageURI
)

// route is one API operation. Literal segments match case-insensitively; "*" takes a path variable.
type route struct {
	method  string
	pattern []string
	name    string   // operation name, the key in calls_by_endpoint
	perms   []string // any one of them grants access
	rate    rateClass
	handle  func(*call) error
}

// call is one authenticated API request.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	vars   []string
	claims claims
	now    time.Time
}

// context is the `@odata.context` for entity set `set`, echoing the host that was called (§0).
func (c *call) context(set string) string {
	return "https://" + c.r.Host + "/api/$metadata#" + set
}

func (c *call) requestor() string { return c.claims.AppID }

var (
	readMachine  = []string{"Machine.Read.All", "Machine.ReadWrite.All"}
	readAlert    = []string{"Alert.Read.All", "Alert.ReadWrite.All"}
	writeAlert   = []string{"Alert.ReadWrite.All"}
	manageLib    = []string{"Library.Manage"}
	liveResponse = []string{"Machine.LiveResponse"}
	anyAction    = []string{"Machine.CollectForensics", "Machine.Isolate", "Machine.RestrictExecution", "Machine.Scan",
		"Machine.Offboard", "Machine.StopAndQuarantine", "Machine.LiveResponse"}
)

func (s *Sim) apiRoutes() []route {
	return []route{
		{"GET", []string{"machines"}, "ListMachines", readMachine, rateDefault, s.listMachines},
		{"GET", []string{"machines", "*"}, "GetMachine", readMachine, rateDefault, s.getMachine},
		{"GET", []string{"machines", "*", "alerts"}, "ListMachineAlerts", readAlert, rateDefault, s.listMachineAlerts},
		{"GET", []string{"machines", "*", "alerts", "$count"}, "CountMachineAlerts", readAlert, rateDefault, s.countMachineAlerts},
		{"POST", []string{"machines", "*", "runliveresponse"}, "RunLiveResponse", liveResponse, rateLiveResponse, s.runLiveResponse},
		{"POST", []string{"machines", "*", "collectinvestigationpackage"}, "CollectInvestigationPackage", []string{"Machine.CollectForensics"}, rateDefault, s.simpleAction("CollectInvestigationPackage")},
		{"POST", []string{"machines", "*", "isolate"}, "Isolate", []string{"Machine.Isolate"}, rateDefault, s.simpleAction("Isolate")},
		{"POST", []string{"machines", "*", "unisolate"}, "Unisolate", []string{"Machine.Isolate"}, rateDefault, s.simpleAction("Unisolate")},
		{"POST", []string{"machines", "*", "runantivirusscan"}, "RunAntiVirusScan", []string{"Machine.Scan"}, rateDefault, s.simpleAction("RunAntiVirusScan")},
		{"GET", []string{"machineactions"}, "ListMachineActions", readMachine, rateDefault, s.listActions},
		{"GET", []string{"machineactions", "*"}, "GetMachineAction", readMachine, rateDefault, s.getAction},
		{"POST", []string{"machineactions", "*", "cancel"}, "CancelMachineAction", anyAction, rateDefault, s.cancelAction},
		{"GET", []string{"machineactions", "*", "getliveresponseresultdownloadlink(*)"}, "GetLiveResponseResultDownloadLink", readMachine, rateDefault, s.resultLink},
		{"GET", []string{"machineactions", "*", "getpackageuri"}, "GetPackageUri", readMachine, ratePackageURI, s.packageURI},
		{"GET", []string{"libraryfiles"}, "ListLibraryFiles", manageLib, rateDefault, s.listLibrary},
		{"POST", []string{"libraryfiles"}, "UploadLibraryFile", manageLib, rateDefault, s.uploadLibrary},
		{"DELETE", []string{"libraryfiles", "*"}, "DeleteLibraryFile", manageLib, rateDefault, s.deleteLibrary},
		{"GET", []string{"alerts"}, "ListAlerts", readAlert, rateDefault, s.listAlerts},
		{"GET", []string{"alerts", "*"}, "GetAlert", readAlert, rateDefault, s.getAlert},
		{"PATCH", []string{"alerts", "*"}, "UpdateAlert", writeAlert, rateDefault, s.updateAlert},
	}
}

// match reports whether segs fit the pattern and returns the path variables. A pattern segment
// "name(*)" is an OData function call whose argument list becomes a variable.
func (rt *route) match(segs []string) ([]string, bool) {
	if len(segs) != len(rt.pattern) {
		return nil, false
	}
	var vars []string
	for i, p := range rt.pattern {
		seg := segs[i]
		switch {
		case p == "*":
			if seg == "" {
				return nil, false
			}
			vars = append(vars, seg)
		case strings.HasSuffix(p, "(*)"):
			name := strings.TrimSuffix(p, "(*)")
			if len(seg) < len(name)+2 || !strings.EqualFold(seg[:len(name)], name) || seg[len(name)] != '(' || !strings.HasSuffix(seg, ")") {
				return nil, false
			}
			vars = append(vars, seg[len(name)+1:len(seg)-1])
		default:
			if !strings.EqualFold(seg, p) {
				return nil, false
			}
		}
	}
	return vars, true
}

// splitPath splits an escaped URL path into unescaped segments.
func splitPath(escaped string) []string {
	parts := strings.Split(strings.Trim(escaped, "/"), "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	return parts
}

func (s *Sim) routes() http.Handler {
	api := s.apiRoutes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			// A bug in one handler must not take the emulator down with it.
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("defendersim: handler panic", "path", r.URL.Path, "panic", v)
				writeAPIError(w, errf(http.StatusInternalServerError, "InternalServerError", "An internal error occurred"))
			}
		}()
		segs := splitPath(r.URL.EscapedPath())
		if f := s.takeFault(r); f != nil {
			s.writeFault(w, segs, f)
			return
		}
		switch {
		case len(segs) >= 1 && strings.EqualFold(segs[0], "api"):
			s.serveAPI(w, r, segs[1:], api)
		case len(segs) == 2 && strings.EqualFold(segs[0], "_sim") && strings.EqualFold(segs[1], "stats"):
			s.handleStats(w, r)
		case len(segs) >= 1 && segs[0] == "_blob":
			s.handleBlob(w, r, segs[1:])
		default:
			s.serveEntra(w, r, segs)
		}
	})
}

func (s *Sim) serveEntra(w http.ResponseWriter, r *http.Request, segs []string) {
	eq := func(want ...string) bool {
		if len(segs) != len(want)+1 {
			return false
		}
		for i, x := range want {
			if !strings.EqualFold(segs[i+1], x) {
				return false
			}
		}
		return true
	}
	tenant := segs[0]
	switch {
	case eq("oauth2", "token"):
		s.handleToken(w, r, tenant, false)
	case eq("oauth2", "v2.0", "token"):
		s.handleToken(w, r, tenant, true)
	case eq("v2.0", ".well-known", "openid-configuration"):
		s.handleOpenID(w, r, tenant, true)
	case eq(".well-known", "openid-configuration"):
		s.handleOpenID(w, r, tenant, false)
	case eq("discovery", "v2.0", "keys"), eq("discovery", "keys"):
		s.handleKeys(w, r)
	case strings.EqualFold(tenant, "common") && eq("discovery", "instance"):
		s.handleInstanceDiscovery(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request, segs []string, routes []route) {
	if len(segs) > 0 && strings.EqualFold(segs[0], "v1.0") {
		segs = segs[1:]
	}
	var rt *route
	var vars []string
	methodMismatch := false
	for i := range routes {
		v, ok := routes[i].match(segs)
		if !ok {
			continue
		}
		if routes[i].method != r.Method {
			methodMismatch = true
			continue
		}
		rt, vars = &routes[i], v
		break
	}
	name := "Unknown"
	if rt != nil {
		name = rt.name
	}
	s.count(name)
	s.log.Debug("defendersim: request", "op", name, "method", r.Method, "path", r.URL.Path)
	now := time.Now()
	cl, aerr := s.authenticate(r, now)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if rt == nil {
		if methodMismatch {
			writeAPIError(w, errf(http.StatusMethodNotAllowed, "BadRequest", "The requested resource does not support http method '%s'.", r.Method))
			return
		}
		writeAPIError(w, errf(http.StatusNotFound, "NotFound", "No API matches the path %s", r.URL.Path))
		return
	}
	if !hasAnyRole(cl.Roles, rt.perms) {
		writeAPIError(w, errf(http.StatusForbidden, "Forbidden",
			"The application does not have any of the required application permissions (%s) to access the resource.", strings.Join(rt.perms, ", ")))
		return
	}
	if ok, wait := s.allowRate(cl.AppID, rt, now); !ok {
		s.mu.Lock()
		s.stats.RejectedRate++
		if s.stats.RateRejectedByEndpoint == nil {
			s.stats.RateRejectedByEndpoint = map[string]int{}
		}
		s.stats.RateRejectedByEndpoint[rt.name]++
		s.mu.Unlock()
		e := errf(http.StatusTooManyRequests, "TooManyRequests", "API calls quota exceeded! Maximum allowed calls for %s exceeded. Please retry after %d seconds.", rt.name, int(math.Ceil(wait.Seconds())))
		e.retryAfter = wait
		writeAPIError(w, e)
		return
	}
	c := &call{w: w, r: r, vars: vars, claims: cl, now: now}
	if err := rt.handle(c); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			id := newGUID()
			s.log.Error("defendersim: internal error", "op", rt.name, "id", id, "err", err)
			ae = errf(http.StatusInternalServerError, "InternalServerError", "An internal error occurred (%s)", id)
		}
		writeAPIError(w, ae)
	}
}

func (s *Sim) authenticate(r *http.Request, now time.Time) (claims, *apiError) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return claims{}, errf(http.StatusUnauthorized, "Unauthorized", "Authorization header is missing or is not a bearer token")
	}
	cl, err := s.verify(strings.TrimSpace(tok), now)
	if err != nil {
		return claims{}, errf(http.StatusUnauthorized, "Unauthorized", "The access token is invalid or expired")
	}
	if !strings.EqualFold(cl.TID, s.tenantID) {
		return claims{}, errf(http.StatusUnauthorized, "Unauthorized", "The access token was issued for another tenant")
	}
	if !mdeAudiences[normalizeResource(cl.Aud)] {
		return claims{}, errf(http.StatusForbidden, "Forbidden", "The access token audience '%s' is not valid for this API", cl.Aud)
	}
	return cl, nil
}

func hasAnyRole(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

func (s *Sim) allowRate(app string, rt *route, now time.Time) (bool, time.Duration) {
	minute, hour := s.clock.real(time.Minute), s.clock.real(time.Hour)
	l := s.limits
	switch rt.rate {
	case rateDefault:
		return s.rate.allow(app+"|"+rt.name, now, window{l.PerMinute, minute}, window{l.PerHour, hour})
	case rateLiveResponse:
		return s.rate.allow(app+"|"+rt.name, now, window{l.LiveResponsePerMinute, minute})
	case ratePackageURI:
		return s.rate.allow(app+"|"+rt.name, now, window{l.PackageURIPerMinute, minute}, window{l.PackageURIPerHour, hour})
	}
	return true, 0
}

func (s *Sim) count(name string) {
	s.mu.Lock()
	s.stats.CallsByEndpoint[name]++
	s.mu.Unlock()
}

// decodeBody reads a JSON object and checks its keys case-sensitively against allowed (§2.2, §11.3):
// a key the API does not know is InvalidRequestBody, a missing required one MissingRequiredParameter.
func decodeBody(c *call, allowed []string, required []string) (map[string]json.RawMessage, error) {
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, 1<<20)
	var m map[string]json.RawMessage
	dec := json.NewDecoder(c.r.Body)
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, badRequest("InvalidRequestBody", "Request body is not a valid JSON object")
	}
	if dec.More() {
		return nil, badRequest("InvalidRequestBody", "Request body has data after the JSON object")
	}
	return m, checkKeys(m, allowed, required, "")
}

func checkKeys(m map[string]json.RawMessage, allowed, required []string, where string) error {
	for k := range m {
		found := false
		for _, a := range allowed {
			if k == a {
				found = true
				break
			}
		}
		if !found {
			return badRequest("InvalidRequestBody", "Unknown property '%s'%s; expected one of %s (names are case-sensitive)", k, where, strings.Join(allowed, ", "))
		}
	}
	for _, req := range required {
		if v, ok := m[req]; !ok || string(v) == "null" {
			return badRequest("MissingRequiredParameter", "Missing required parameter '%s'%s", req, where)
		}
	}
	return nil
}

// fault is a FailNext rule.
type fault struct {
	method, prefix string
	status, n      int
}

// FailNext makes the next n requests whose method matches (empty = any) and whose path starts with
// pathPrefix (case-insensitive) fail with status and the MDE error envelope.
func (s *Sim) FailNext(method, pathPrefix string, status int, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{method: strings.ToUpper(method), prefix: strings.ToLower(pathPrefix), status: status, n: n})
}

func (s *Sim) takeFault(r *http.Request) *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := strings.ToLower(r.URL.Path)
	for i, f := range s.faults {
		if (f.method == "" || f.method == r.Method) && strings.HasPrefix(p, f.prefix) {
			f.n--
			if f.n <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			return f
		}
	}
	return nil
}

func (s *Sim) writeFault(w http.ResponseWriter, segs []string, f *fault) {
	if len(segs) > 1 && strings.EqualFold(segs[1], "oauth2") {
		entraError(w, f.status, "temporarily_unavailable", 50196, "Injected failure.")
		return
	}
	code := map[int]string{
		400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
		429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout",
	}[f.status]
	if code == "" {
		code = http.StatusText(f.status)
	}
	e := errf(f.status, code, "Injected failure")
	e.retryAfter = time.Second
	writeAPIError(w, e)
}
