package http

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// decodeJSON reads a JSON object into v, refusing unknown fields, trailing data and bodies over
// maxJSONBody, with errors that name the field at fault.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return quarry.Errorf(quarry.EINVALID, "Send the body as application/json (got %q).", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return quarry.Errorf(quarry.EINVALID, "The body must hold one JSON object and nothing after it.")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return quarry.Errorf(quarry.EINVALID, "The request body is empty; send a JSON object.")
	case errors.As(err, &syn):
		return quarry.Errorf(quarry.EINVALID, "The body is not valid JSON (at byte %d).", syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return quarry.Errorf(quarry.EINVALID, "The body must be a JSON object.")
		}
		return quarry.FieldError(field, "Field %q must be a %s, not %s.", field, typeName(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &tooBig):
		return quarry.Errorf(quarry.EINVALID, "The body is larger than %d bytes.", tooBig.Limit)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return quarry.FieldError(field, "Unknown field %q.", field)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return quarry.Errorf(quarry.EINVALID, "The body is not valid JSON (it ends too early).")
	}
	return quarry.Errorf(quarry.EINVALID, "The body is not valid JSON.")
}

func typeName(kind string) string {
	switch kind {
	case "bool":
		return "boolean"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "number"
	case "slice":
		return "list"
	case "map", "struct":
		return "object"
	}
	return kind
}

// pathID parses a numeric path parameter; a malformed id is "not found" like any unknown id.
func pathID(r *http.Request, name, what string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, quarry.Errorf(quarry.ENOTFOUND, "No %s with id %q.", what, r.PathValue(name))
	}
	return id, nil
}

// paging reads offset/limit from page & per_page (1-based pages, as design.md's host list) or
// offset & limit, whichever the caller uses.
func paging(r *http.Request, def, max int) (offset, limit int, err error) {
	q := r.URL.Query()
	limit = def
	for _, name := range []string{"per_page", "limit"} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > max {
				return 0, 0, quarry.FieldError(name, "%s must be a number from 1 to %d.", name, max)
			}
			limit = n
		}
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			return 0, 0, quarry.FieldError("page", "page must be a number from 1.")
		}
		offset = (n - 1) * limit
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, quarry.FieldError("offset", "offset must be a number from 0.")
		}
		offset = n
	}
	return offset, limit, nil
}

func queryTime(r *http.Request, name string) (*time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, quarry.FieldError(name, "%s must be an RFC 3339 time such as 2026-11-25T10:00:00Z.", name)
	}
	return &t, nil
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) error {
	a := quarry.ActorFromContext(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"user": a.User, "role": a.Role, "via_token": a.TokenID != 0})
	return nil
}

func (s *Server) handleListExperiments(w http.ResponseWriter, r *http.Request) error {
	exps, err := s.Experiments.FindExperiments(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"experiments": exps})
	return nil
}

func (s *Server) handleSetExperiment(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	name := r.PathValue("name")
	auditTarget(r, "experiment", name, nil)
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Enabled == nil {
		return quarry.FieldError("enabled", "Field \"enabled\" (true or false) is required.")
	}
	e, err := s.Experiments.SetExperiment(r.Context(), name, *body.Enabled)
	if err != nil {
		return err
	}
	auditTarget(r, "experiment", name, map[string]any{"enabled": e.Enabled})
	writeJSON(w, http.StatusOK, e)
	return nil
}

func (s *Server) handleListProjects(w http.ResponseWriter, r *http.Request) error {
	offset, limit, err := paging(r, 50, 500)
	if err != nil {
		return err
	}
	f := quarry.ProjectFilter{Offset: offset, Limit: limit}
	if q := r.URL.Query().Get("q"); q != "" {
		f.Name = &q
	}
	ps, total, err := s.Projects.FindProjects(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": nonNil(ps), "total": total})
	return nil
}

func (s *Server) handleCreateProject(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	p, err := s.createProject(r, body.Name, body.Description)
	if err != nil {
		return err
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/projects/%d", p.ID))
	writeJSON(w, http.StatusCreated, p)
	return nil
}

// createProject is shared by the API and the UI form.
func (s *Server) createProject(r *http.Request, name, description string) (*quarry.Project, error) {
	p := &quarry.Project{Name: name, Description: description, CreatedBy: quarry.UserIDFromContext(r.Context())}
	auditTarget(r, "project", "", map[string]any{"name": name})
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := s.Projects.CreateProject(r.Context(), p); err != nil {
		return nil, err
	}
	auditTarget(r, "project", p.ID, map[string]any{"name": p.Name})
	return p, nil
}

func (s *Server) handleGetProject(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// auditFilter reads the audit filters shared by the API and the UI page.
func auditFilter(r *http.Request) (quarry.AuditFilter, error) {
	q := r.URL.Query()
	f := quarry.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), TargetType: q.Get("target_type"), TargetID: q.Get("target_id")}
	var err error
	if f.From, err = queryTime(r, "from"); err != nil {
		return f, err
	}
	if f.To, err = queryTime(r, "to"); err != nil {
		return f, err
	}
	f.Offset, f.Limit, err = paging(r, 100, 1000)
	return f, err
}

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) error {
	f, err := auditFilter(r)
	if err != nil {
		return err
	}
	es, total, err := s.Audit.FindAuditEntries(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": nonNil(es), "total": total})
	return nil
}

func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request) error {
	offset, limit, err := paging(r, 100, 1000)
	if err != nil {
		return err
	}
	us, total, err := s.Users.FindUsers(r.Context(), quarry.UserFilter{Offset: offset, Limit: limit})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": nonNil(us), "total": total})
	return nil
}

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Username string      `json:"username"`
		Password string      `json:"password"`
		Role     quarry.Role `json:"role"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	auditTarget(r, "user", body.Username, map[string]any{"role": body.Role})
	u, err := s.Auth.CreateUser(r.Context(), body.Username, body.Password, body.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) error {
	uid := quarry.UserIDFromContext(r.Context())
	ts, total, err := s.Tokens.FindTokens(r.Context(), quarry.TokenFilter{UserID: &uid, Limit: 1000})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": nonNil(ts), "total": total})
	return nil
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name      string      `json:"name"`
		Role      quarry.Role `json:"role"`
		ExpiresIn string      `json:"expires_in"` // Go duration, e.g. "720h"; default 30 days
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	ttl := 30 * 24 * time.Hour
	if body.ExpiresIn != "" {
		d, err := time.ParseDuration(body.ExpiresIn)
		if err != nil {
			return quarry.FieldError("expires_in", "expires_in must be a duration such as \"720h\".")
		}
		ttl = d
	}
	t, secret, err := s.createToken(r, body.Name, body.Role, ttl)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": t, "secret": secret})
	return nil
}

func (s *Server) createToken(r *http.Request, name string, role quarry.Role, ttl time.Duration) (*quarry.APIToken, string, error) {
	a := quarry.ActorFromContext(r.Context())
	auditTarget(r, "token", "", map[string]any{"name": name})
	// A token cannot grant more than the credential that creates it.
	if role == "" {
		role = a.Role
	}
	if !a.Role.AtLeast(role) {
		return nil, "", quarry.FieldError("role", "A token cannot have more rights than you have now (%s).", a.Role)
	}
	t, secret, err := s.Auth.CreateToken(r.Context(), a.User.ID, name, role, ttl)
	if err != nil {
		return nil, "", err
	}
	auditTarget(r, "token", t.ID, map[string]any{"name": t.Name, "role": t.Role, "expires_at": t.ExpiresAt})
	return t, secret, nil
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "token")
	if err != nil {
		return err
	}
	if err := s.revokeToken(r, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// revokeToken lets users revoke their own tokens and admins anyone's.
func (s *Server) revokeToken(r *http.Request, id int64) error {
	auditTarget(r, "token", id, nil)
	a := quarry.ActorFromContext(r.Context())
	t, err := s.Tokens.FindTokenByID(r.Context(), id)
	if err != nil {
		return err
	}
	if t.UserID != a.User.ID && !a.Role.AtLeast(quarry.RoleAdmin) {
		return quarry.Errorf(quarry.ENOTFOUND, "No token with id %d.", id)
	}
	return s.Tokens.RevokeToken(r.Context(), id, time.Now().UTC())
}

// nonNil makes empty lists encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
