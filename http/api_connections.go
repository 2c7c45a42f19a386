package http

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/integration"
	"github.com/quarry-dfir/quarry/xdr"
)

func (s *Server) connectionRoutes() {
	s.api("GET /api/v1/providers", quarry.RoleViewer, "", s.handleListProviders)
	s.api("GET /api/v1/connections", quarry.RoleViewer, "", s.handleListConnections)
	s.api("POST /api/v1/connections", quarry.RoleAdmin, "connection.create", s.handleCreateConnection)
	s.api("GET /api/v1/connections/{id}", quarry.RoleViewer, "", s.handleGetConnection)
	s.api("PATCH /api/v1/connections/{id}", quarry.RoleAdmin, "connection.update", s.handleUpdateConnection)
	s.api("DELETE /api/v1/connections/{id}", quarry.RoleAdmin, "connection.delete", s.handleDeleteConnection)
	s.api("POST /api/v1/connections/{id}/check", quarry.RoleAdmin, "connection.check", s.handleCheckConnection)
	s.api("GET /api/v1/connections/{id}/hosts", quarry.RoleViewer, "", s.handleListHosts)
	s.api("POST /api/v1/connections/{id}/hosts/refresh", quarry.RoleAnalyst, "connection.refresh_hosts", s.handleRefreshHosts)
}

// providerInfo is what a client needs to build a connection form for a provider.
type providerInfo struct {
	ID           string           `json:"id"`
	Name         string           `json:"name"`
	Clouds       []xdr.Cloud      `json:"clouds"`
	Permissions  []xdr.Permission `json:"permissions"`
	Capabilities xdr.Capabilities `json:"capabilities"`
}

func providers() []providerInfo {
	var out []providerInfo
	for _, p := range xdr.Providers() {
		out = append(out, providerInfo{ID: p.ID(), Name: p.Name(), Clouds: p.Clouds(), Permissions: p.Permissions(), Capabilities: p.Capabilities()})
	}
	return out
}

func (s *Server) handleListProviders(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"providers": nonNil(providers())})
	return nil
}

func (s *Server) handleListConnections(w http.ResponseWriter, r *http.Request) error {
	offset, limit, err := paging(r, 100, 1000)
	if err != nil {
		return err
	}
	cs, total, err := s.Connections.FindConnections(r.Context(), quarry.ConnectionFilter{Offset: offset, Limit: limit, IncludeDeleted: r.URL.Query().Get("deleted") == "true"})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"connections": nonNil(cs), "total": total})
	return nil
}

// connectionInput is the body of POST /connections (design.md's names).
type connectionInput struct {
	Provider     string `json:"provider"`
	Name         string `json:"name"`
	TenantID     string `json:"tenant_id"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Cloud        string `json:"cloud"`
	APIURL       string `json:"api_url"`
	AuthorityURL string `json:"authority_url"`
	CACert       string `json:"ca_cert"`
}

func (in connectionInput) toNew() integration.NewConnection {
	return integration.NewConnection{
		Provider: in.Provider, Name: in.Name, TenantID: in.TenantID, ClientID: in.ClientID, ClientSecret: in.ClientSecret,
		Cloud: in.Cloud, APIURL: in.APIURL, AuthorityURL: in.AuthorityURL, CACertPEM: in.CACert,
	}
}

// connectionWithCheck is a connection plus the check that just ran on it.
type connectionWithCheck struct {
	*quarry.Connection
	Check *xdr.CheckResult `json:"check,omitempty"`
}

func (s *Server) createConnection(r *http.Request, in connectionInput) (*quarry.Connection, *xdr.CheckResult, error) {
	auditTarget(r, "connection", "", map[string]any{"provider": in.Provider, "name": in.Name, "tenant_id": in.TenantID, "client_id": in.ClientID})
	c, res, err := s.Integrations.Create(r.Context(), in.toNew())
	if err != nil {
		return nil, res, err
	}
	auditTarget(r, "connection", c.ID, map[string]any{"provider": c.Provider, "name": c.Name, "health": c.Health})
	return c, res, nil
}

func (s *Server) handleCreateConnection(w http.ResponseWriter, r *http.Request) error {
	var in connectionInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	c, res, err := s.createConnection(r, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/connections/%d", c.ID))
	writeJSON(w, http.StatusCreated, connectionWithCheck{c, res})
	return nil
}

func (s *Server) connection(r *http.Request) (*quarry.Connection, error) {
	id, err := pathID(r, "id", "connection")
	if err != nil {
		return nil, err
	}
	return s.Connections.FindConnectionByID(r.Context(), id)
}

func (s *Server) handleGetConnection(w http.ResponseWriter, r *http.Request) error {
	c, err := s.connection(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *Server) handleUpdateConnection(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name         *string `json:"name"`
		ClientSecret *string `json:"client_secret"`
	}
	id, err := pathID(r, "id", "connection")
	if err != nil {
		return err
	}
	auditTarget(r, "connection", id, nil)
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	var res *xdr.CheckResult
	c, err := s.Connections.FindConnectionByID(r.Context(), id)
	if err != nil {
		return err
	}
	if body.ClientSecret != nil {
		if c, res, err = s.Integrations.RotateSecret(r.Context(), id, *body.ClientSecret); err != nil {
			return err
		}
		auditTarget(r, "connection", id, map[string]any{"secret": "replaced"})
	}
	if body.Name != nil {
		if c, err = s.Integrations.Rename(r.Context(), id, *body.Name); err != nil {
			return err
		}
		i := info(r)
		if i.details == nil {
			i.details = map[string]any{}
		}
		i.details["name"] = c.Name
	}
	writeJSON(w, http.StatusOK, connectionWithCheck{c, res})
	return nil
}

func (s *Server) handleDeleteConnection(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "connection")
	if err != nil {
		return err
	}
	auditTarget(r, "connection", id, nil)
	if err := s.Connections.DeleteConnection(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleCheckConnection(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "connection")
	if err != nil {
		return err
	}
	auditTarget(r, "connection", id, nil)
	_, res, err := s.Integrations.Check(r.Context(), id)
	if err != nil {
		return err
	}
	auditTarget(r, "connection", id, map[string]any{"ok": res.OK, "missing": res.Missing})
	writeJSON(w, http.StatusOK, res)
	return nil
}

// hostFilter reads the host list's query parameters, shared by the API and the import page.
func hostFilter(r *http.Request, connectionID int64) (quarry.HostFilter, int, error) {
	q := r.URL.Query()
	f := quarry.HostFilter{ConnectionID: connectionID, Query: q.Get("q"), OS: q.Get("os"), Health: q.Get("health"), Risk: q.Get("risk"), Tag: q.Get("tag")}
	switch f.OS {
	case "", "windows", "linux", "macos", "other":
	default:
		return f, 0, quarry.FieldError("os", "os must be windows, linux, macos or other.")
	}
	if v := q.Get("online"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, 0, quarry.FieldError("online", "online must be true or false.")
		}
		f.Online = &b
	}
	if q.Get("per_page") == "" && q.Get("limit") == "" {
		q.Set("per_page", "50")
		r.URL.RawQuery = q.Encode()
	}
	offset, limit, err := paging(r, 50, 100)
	if err != nil {
		return f, 0, err
	}
	f.Offset, f.Limit = offset, limit
	return f, offset/limit + 1, nil
}

func (s *Server) handleListHosts(w http.ResponseWriter, r *http.Request) error {
	c, err := s.connection(r)
	if err != nil {
		return err
	}
	f, page, err := hostFilter(r, c.ID)
	if err != nil {
		return err
	}
	refresh, _ := strconv.ParseBool(r.URL.Query().Get("refresh"))
	hp, err := s.Integrations.ListHosts(r.Context(), f, refresh)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"hosts": nonNil(hp.Hosts), "page": page, "per_page": f.Limit, "total": hp.Total, "fetched_at": hp.FetchedAt.Format(time.RFC3339),
	})
	return nil
}

func (s *Server) handleRefreshHosts(w http.ResponseWriter, r *http.Request) error {
	c, err := s.connection(r)
	if err != nil {
		return err
	}
	auditTarget(r, "connection", c.ID, nil)
	if err := s.Integrations.Refresh(r.Context(), c); err != nil {
		return err
	}
	inv, err := s.Hosts.FindInventory(r.Context(), c.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, inv)
	return nil
}
