package http

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// handlerFunc is a handler that returns its error to the one place that writes errors.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

const (
	sessionCookie = "quarry_session"
	loginCSRF     = "quarry_login_csrf" // double-submit token for the login form (no session yet)
	csrfHeader    = "X-CSRF-Token"
	csrfField     = "csrf"
	maxJSONBody   = 1 << 20
)

// reqInfo travels in the request context: who is calling, through what, and what the audit
// entry of a state-changing request should name.
type reqInfo struct {
	actor       *quarry.Actor
	session     *quarry.Session
	targetType  string
	targetID    string
	details     map[string]any
	auditAction string
}

type reqInfoKey struct{}

func info(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// auditTarget names what a state-changing request acted on, for its audit entry.
func auditTarget(r *http.Request, typ string, id any, details map[string]any) {
	i := info(r)
	i.targetType, i.targetID, i.details = typ, fmt.Sprint(id), details
}

// api registers a JSON API route. min is the least role allowed ("" = no login needed); a
// non-empty action marks the route state-changing: it is audited, successful or not.
func (s *Server) api(pattern string, min quarry.Role, action string, h handlerFunc) {
	s.route(pattern, min, action, h, false)
}

// page registers a web UI route with the same rules as api, rendering errors as HTML.
func (s *Server) page(pattern string, min quarry.Role, action string, h handlerFunc) {
	s.route(pattern, min, action, h, true)
}

func (s *Server) route(pattern string, min quarry.Role, action string, h handlerFunc, html bool) {
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		ri := &reqInfo{auditAction: action}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		err := s.authenticate(r, ri, min, html, action != "")
		if err == nil {
			if ri.actor != nil {
				r = r.WithContext(quarry.NewContextWithActor(r.Context(), ri.actor))
			}
			err = h(rw, r)
		}
		if err != nil {
			s.fail(rw, r, err, html)
		}
		if action != "" && ri.actor != nil {
			s.recordAudit(r, ri, err)
		}
		route := pattern
		s.requests.WithLabelValues(route, fmt.Sprintf("%dxx", rw.status/100)).Inc()
		s.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		s.Logger.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rw.status, "dur", time.Since(start))
	}))
}

// authenticate resolves the caller and checks role and CSRF. API callers use a bearer token or,
// from the UI, the session cookie plus the CSRF header; UI callers use the session cookie and
// the CSRF form field on every state-changing request.
func (s *Server) authenticate(r *http.Request, ri *reqInfo, min quarry.Role, html, mutating bool) error {
	ip := s.clientIP(r)
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && !html {
		a, err := s.Auth.AuthenticateToken(r.Context(), strings.TrimSpace(bearer), ip)
		if err != nil {
			return err
		}
		ri.actor = a
	} else if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		a, sess, err := s.Auth.AuthenticateSession(r.Context(), c.Value, ip)
		if err != nil {
			if min == "" {
				return nil // a stale cookie on a public page is no error
			}
			return err
		}
		ri.actor, ri.session = a, sess
		if mutating || !isSafeMethod(r.Method) {
			sent := r.Header.Get(csrfHeader)
			if sent == "" && html {
				sent = r.PostFormValue(csrfField)
			}
			if subtle.ConstantTimeCompare([]byte(sent), []byte(sess.CSRFToken)) != 1 {
				return quarry.Errorf(quarry.EFORBIDDEN, "The form has expired or did not come from Quarry. Reload the page and try again.")
			}
		}
	}
	if min == "" {
		return nil
	}
	if ri.actor == nil {
		if html {
			return errLoginNeeded
		}
		return quarry.Errorf(quarry.EUNAUTHORIZED, "Authentication required: send 'Authorization: Bearer <token>'.")
	}
	if !ri.actor.Role.AtLeast(min) {
		return quarry.Errorf(quarry.EFORBIDDEN, "This needs the %s role; you have %s.", min, ri.actor.Role)
	}
	return nil
}

var errLoginNeeded = quarry.Errorf(quarry.EUNAUTHORIZED, "Please sign in.")

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, html bool) {
	if !html {
		writeError(s.Logger, w, r, err)
		return
	}
	if quarry.ErrorCode(err) == quarry.EUNAUTHORIZED {
		// Expired or missing session: back to the login page, then to where the user was.
		target := "/login"
		if r.Method == http.MethodGet {
			target += "?next=" + urlQueryEscape(r.URL.RequestURI())
		}
		if r.Header.Get("HX-Request") == "true" {
			w.Header().Set("HX-Redirect", target)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	status, body := describeError(s.Logger, r, err)
	s.renderError(w, r, status, body.Error.Message)
}

func (s *Server) recordAudit(r *http.Request, ri *reqInfo, err error) {
	e := quarry.NewAuditEntry(r.Context(), ri.auditAction, ri.targetType, ri.targetID)
	if ri.actor != nil {
		e.Actor, e.IP = ri.actor.Name(), ri.actor.IP
		id := ri.actor.User.ID
		e.ActorID = &id
	}
	e.Details = ri.details
	if err != nil {
		e.Outcome = quarry.OutcomeFailure
		if e.Details == nil {
			e.Details = map[string]any{}
		}
		e.Details["error"] = quarry.ErrorCode(err)
	}
	if ri.actor != nil && ri.actor.TokenID != 0 {
		if e.Details == nil {
			e.Details = map[string]any{}
		}
		e.Details["token_id"] = ri.actor.TokenID
	}
	// The audit write must not depend on the request's context: a client that hangs up after a
	// change must still leave its trace.
	if aerr := s.Audit.RecordAudit(context.WithoutCancel(r.Context()), e); aerr != nil {
		s.Logger.Error("audit write failed", "action", e.Action, "actor", e.Actor, "err", aerr)
	}
}

// clientIP is the request's source address: the peer, or the first X-Forwarded-For hop when the
// server is configured to sit behind a trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	if s.TrustProxyHeaders {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if ip := net.ParseIP(strings.TrimSpace(first)); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) secureCookies(r *http.Request) bool {
	return r.TLS != nil || (s.PublicURL != nil && s.PublicURL.Scheme == "https")
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic in a handler into a logged internal error instead of a dropped
// connection and a stack trace.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				writeError(s.Logger, w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
