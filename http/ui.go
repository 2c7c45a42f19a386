package http

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	fsrv := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Static files are versioned by name (htmx-2.0.11.min.js) or tiny; a day of caching is safe.
		w.Header().Set("Cache-Control", "public, max-age=86400")
		fsrv.ServeHTTP(w, r)
	})
}

// pages holds one template set per page, each joined with the shared layout.
type pages struct {
	byName map[string]*template.Template
}

var funcs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return fmt.Sprint(t)
	},
	"atLeast": func(a *quarry.Actor, role any) bool { return a != nil && a.Role.AtLeast(quarry.Role(fmt.Sprint(role))) },
	"add":     func(a, b int) int { return a + b },
	"list":    func(v ...any) []any { return v },
	"bytes":   humanBytes,
	"json": func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	},
}

func loadPages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("http: parse template %s: %w", n, err)
		}
		p.byName[base] = t
	}
	return p, nil
}

// view is what every page template receives.
type view struct {
	Title   string
	Nav     string // which navigation item is current
	Actor   *quarry.Actor
	CSRF    string
	Version string
	Flash   string
	Error   string
	Data    any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) error {
	t, ok := s.pages.byName[page]
	if !ok {
		return fmt.Errorf("http: no template %q", page)
	}
	i := info(r)
	v.Actor, v.Version = i.actor, s.Version
	if i.session != nil {
		v.CSRF = i.session.CSRFToken
	}
	var buf bytes.Buffer // render fully first so a template error never sends half a page
	if err := t.Execute(&buf, v); err != nil {
		return fmt.Errorf("http: render %s: %w", page, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if err := s.render(w, r, status, "error", view{Title: http.StatusText(status), Error: msg}); err != nil {
		s.Logger.Error("render error page", "err", err)
		http.Error(w, msg, status)
	}
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// safeNext keeps post-login redirects on this site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/projects"
	}
	return next
}

func (s *Server) uiRoutes() {
	s.page("GET /{$}", quarry.RoleViewer, "", func(w http.ResponseWriter, r *http.Request) error {
		http.Redirect(w, r, "/projects", http.StatusSeeOther)
		return nil
	})
	s.page("GET /login", "", "", s.handleLoginPage)
	s.page("POST /login", "", "", s.handleLogin)
	s.page("POST /logout", quarry.RoleViewer, "auth.logout", s.handleLogout)

	s.page("GET /projects", quarry.RoleViewer, "", s.handleProjectsPage)
	s.page("POST /projects", quarry.RoleAnalyst, "project.create", s.handleProjectsCreate)
	s.page("GET /projects/{id}", quarry.RoleViewer, "", s.handleProjectPage)
	s.alertPages()

	s.page("GET /settings", quarry.RoleViewer, "", func(w http.ResponseWriter, r *http.Request) error {
		http.Redirect(w, r, "/settings/experiments", http.StatusSeeOther)
		return nil
	})
	s.page("GET /settings/experiments", quarry.RoleViewer, "", s.handleExperimentsPage)
	s.page("POST /settings/experiments/{name}", quarry.RoleAdmin, "experiment.set", s.handleExperimentToggle)
	s.page("GET /settings/audit", quarry.RoleAdmin, "", s.handleAuditPage)
	s.page("GET /settings/users", quarry.RoleAdmin, "", s.handleUsersPage)
	s.page("POST /settings/users", quarry.RoleAdmin, "user.create", s.handleUsersCreate)
	s.connectionPages()
	s.intakePages()
	s.iocPages()
	s.acquisitionPages()
	s.timelinePages()
	s.page("GET /settings/tokens", quarry.RoleViewer, "", s.handleTokensPage)
	s.page("POST /settings/tokens", quarry.RoleViewer, "token.create", s.handleTokensCreate)
	s.page("POST /settings/tokens/{id}/revoke", quarry.RoleViewer, "token.revoke", s.handleTokensRevoke)
}

func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) error {
	if info(r).actor != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return nil
	}
	return s.renderLogin(w, r, http.StatusOK, "")
}

// renderLogin sets a fresh double-submit CSRF cookie: the login form has no session to carry one.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	token, _ := auth.NewSecret("")
	http.SetCookie(w, &http.Cookie{Name: loginCSRF, Value: token, Path: "/login", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secureCookies(r), MaxAge: 3600})
	return s.render(w, r, status, "login", view{Title: "Sign in", Error: msg, CSRF: token, Data: map[string]string{"Next": r.URL.Query().Get("next"), "CSRF": token}})
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return s.renderLogin(w, r, http.StatusBadRequest, "The form could not be read.")
	}
	c, err := r.Cookie(loginCSRF)
	if err != nil || c.Value == "" || c.Value != r.PostFormValue(csrfField) {
		return s.renderLogin(w, r, http.StatusForbidden, "The sign-in form expired. Please try again.")
	}
	sess, secret, _, err := s.Auth.Login(r.Context(), r.PostFormValue("username"), r.PostFormValue("password"), s.clientIP(r), r.UserAgent())
	if err != nil {
		code := quarry.ErrorCode(err)
		if code == quarry.EUNAUTHORIZED || code == quarry.ETHROTTLED {
			return s.renderLogin(w, r, ErrorStatus(code), quarry.ErrorMessage(err))
		}
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: loginCSRF, Value: "", Path: "/login", MaxAge: -1})
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: secret, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: s.secureCookies(r), Expires: sess.CreatedAt.Add(7 * 24 * time.Hour),
	})
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
	return nil
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) error {
	i := info(r)
	auditTarget(r, "session", i.session.ID, nil)
	if err := s.Auth.Logout(r.Context(), i.session); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secureCookies(r)})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

type pager struct {
	Offset, Limit, Total int
	BaseQuery            url.Values
}

func (p pager) Prev() string {
	if p.Offset == 0 {
		return ""
	}
	return p.link(max(0, p.Offset-p.Limit))
}

func (p pager) Next() string {
	if p.Offset+p.Limit >= p.Total {
		return ""
	}
	return p.link(p.Offset + p.Limit)
}

func (p pager) link(offset int) string {
	q := url.Values{}
	for k, v := range p.BaseQuery {
		q[k] = v
	}
	q.Set("offset", strconv.Itoa(offset))
	q.Set("limit", strconv.Itoa(p.Limit))
	return "?" + q.Encode()
}

func (p pager) From() int { return min(p.Offset+1, p.Total) }
func (p pager) To() int   { return min(p.Offset+p.Limit, p.Total) }

func (s *Server) handleProjectsPage(w http.ResponseWriter, r *http.Request) error {
	return s.projectsPage(w, r, http.StatusOK, "", nil)
}

func (s *Server) projectsPage(w http.ResponseWriter, r *http.Request, status int, formErr string, form map[string]string) error {
	offset, limit, err := paging(r, 50, 500)
	if err != nil {
		return err
	}
	f := quarry.ProjectFilter{Offset: offset, Limit: limit}
	q := r.URL.Query().Get("q")
	if q != "" {
		f.Name = &q
	}
	ps, total, err := s.Projects.FindProjects(r.Context(), f)
	if err != nil {
		return err
	}
	return s.render(w, r, status, "projects", view{Title: "Projects", Nav: "projects", Error: formErr, Data: map[string]any{
		"Projects": ps, "Q": q, "Form": form,
		"Pager": pager{Offset: offset, Limit: limit, Total: total, BaseQuery: url.Values{"q": {q}}},
	}})
}

func (s *Server) handleProjectsCreate(w http.ResponseWriter, r *http.Request) error {
	name, desc := r.PostFormValue("name"), r.PostFormValue("description")
	p, err := s.createProject(r, name, desc)
	if code := quarry.ErrorCode(err); code == quarry.EINVALID || code == quarry.ECONFLICT {
		return s.projectsPage(w, r, ErrorStatus(code), quarry.ErrorMessage(err), map[string]string{"Name": name, "Description": desc})
	} else if err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/projects/%d", p.ID), http.StatusSeeOther)
	return nil
}

func (s *Server) handleProjectPage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	data := map[string]any{"Project": p}
	if s.Acquisitions != nil {
		as, total, err := s.Acquisitions.FindAcquisitions(r.Context(), quarry.AcquisitionFilter{ProjectID: &p.ID, Limit: 100})
		if err != nil {
			return err
		}
		data["Acquisitions"], data["AcquisitionTotal"] = as, total
	}
	if s.Evidence != nil {
		es, total, err := s.Evidence.FindEvidence(r.Context(), quarry.EvidenceFilter{ProjectID: &p.ID, Limit: 100})
		if err != nil {
			return err
		}
		data["Evidence"], data["EvidenceTotal"] = es, total
	}
	return s.render(w, r, http.StatusOK, "project", view{Title: p.Name, Nav: "projects", Data: data})
}

func (s *Server) handleExperimentsPage(w http.ResponseWriter, r *http.Request) error {
	exps, err := s.Experiments.FindExperiments(r.Context())
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "experiments", view{Title: "Experiments", Nav: "settings", Data: map[string]any{"Experiments": exps, "Tab": "experiments"}})
}

func (s *Server) handleExperimentToggle(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	enabled := r.PostFormValue("enabled") == "true"
	auditTarget(r, "experiment", name, map[string]any{"enabled": enabled})
	if _, err := s.Experiments.SetExperiment(r.Context(), name, enabled); err != nil {
		return err
	}
	http.Redirect(w, r, "/settings/experiments", http.StatusSeeOther)
	return nil
}

func (s *Server) handleAuditPage(w http.ResponseWriter, r *http.Request) error {
	f, err := auditFilter(r)
	if err != nil {
		return err
	}
	es, total, err := s.Audit.FindAuditEntries(r.Context(), f)
	if err != nil {
		return err
	}
	base := r.URL.Query()
	base.Del("offset")
	base.Del("limit")
	return s.render(w, r, http.StatusOK, "audit", view{Title: "Audit log", Nav: "settings", Data: map[string]any{
		"Entries": es, "Filter": r.URL.Query(), "Tab": "audit",
		"Pager": pager{Offset: f.Offset, Limit: f.Limit, Total: total, BaseQuery: base},
	}})
}

func (s *Server) handleUsersPage(w http.ResponseWriter, r *http.Request) error {
	return s.usersPage(w, r, http.StatusOK, "", "")
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, status int, flash, formErr string) error {
	us, total, err := s.Users.FindUsers(r.Context(), quarry.UserFilter{Limit: 1000})
	if err != nil {
		return err
	}
	return s.render(w, r, status, "users", view{Title: "Users", Nav: "settings", Flash: flash, Error: formErr, Data: map[string]any{"Users": us, "Total": total, "Roles": quarry.Roles, "Tab": "users"}})
}

func (s *Server) handleUsersCreate(w http.ResponseWriter, r *http.Request) error {
	username, role := r.PostFormValue("username"), quarry.Role(r.PostFormValue("role"))
	auditTarget(r, "user", username, map[string]any{"role": role})
	u, err := s.Auth.CreateUser(r.Context(), username, r.PostFormValue("password"), role)
	if code := quarry.ErrorCode(err); code == quarry.EINVALID || code == quarry.ECONFLICT {
		return s.usersPage(w, r, ErrorStatus(code), "", quarry.ErrorMessage(err))
	} else if err != nil {
		return err
	}
	return s.usersPage(w, r, http.StatusOK, fmt.Sprintf("User %s created.", u.Username), "")
}

func (s *Server) handleTokensPage(w http.ResponseWriter, r *http.Request) error {
	return s.tokensPage(w, r, http.StatusOK, nil, "", "")
}

func (s *Server) tokensPage(w http.ResponseWriter, r *http.Request, status int, created map[string]any, flash, formErr string) error {
	uid := quarry.UserIDFromContext(r.Context())
	ts, _, err := s.Tokens.FindTokens(r.Context(), quarry.TokenFilter{UserID: &uid, Limit: 1000})
	if err != nil {
		return err
	}
	now := time.Now()
	type row struct {
		*quarry.APIToken
		Active bool
	}
	rows := make([]row, len(ts))
	for i, t := range ts {
		rows[i] = row{t, t.Active(now)}
	}
	return s.render(w, r, status, "tokens", view{Title: "API tokens", Nav: "settings", Flash: flash, Error: formErr, Data: map[string]any{"Tokens": rows, "Created": created, "Roles": quarry.Roles, "Tab": "tokens"}})
}

func (s *Server) handleTokensCreate(w http.ResponseWriter, r *http.Request) error {
	days, err := strconv.Atoi(r.PostFormValue("days"))
	if err != nil || days < 1 {
		days = 30
	}
	t, secret, err := s.createToken(r, r.PostFormValue("name"), quarry.Role(r.PostFormValue("role")), time.Duration(days)*24*time.Hour)
	if code := quarry.ErrorCode(err); code == quarry.EINVALID {
		return s.tokensPage(w, r, http.StatusBadRequest, nil, "", quarry.ErrorMessage(err))
	} else if err != nil {
		return err
	}
	return s.tokensPage(w, r, http.StatusCreated, map[string]any{"Token": t, "Secret": secret}, "", "")
}

func (s *Server) handleTokensRevoke(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "token")
	if err != nil {
		return err
	}
	if err := s.revokeToken(r, id); err != nil {
		return err
	}
	http.Redirect(w, r, "/settings/tokens", http.StatusSeeOther)
	return nil
}

// humanBytes writes a byte count the way an analyst reads it (binary units).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
