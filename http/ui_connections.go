package http

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/xdr"
)

func (s *Server) connectionPages() {
	s.page("GET /settings/integrations", quarry.RoleViewer, "", s.handleIntegrationsPage)
	s.page("POST /settings/integrations", quarry.RoleAdmin, "connection.create", s.handleIntegrationsCreate)
	s.page("POST /settings/integrations/{id}/check", quarry.RoleAdmin, "connection.check", s.handleIntegrationsCheck)
	s.page("POST /settings/integrations/{id}/secret", quarry.RoleAdmin, "connection.update", s.handleIntegrationsSecret)
	s.page("GET /settings/integrations/{id}/delete", quarry.RoleAdmin, "", s.handleIntegrationsDeletePage)
	s.page("POST /settings/integrations/{id}/delete", quarry.RoleAdmin, "connection.delete", s.handleIntegrationsDelete)

	s.page("GET /projects/{id}/import", quarry.RoleViewer, "", s.handleImportPage)
	s.page("GET /projects/{id}/import/xdr/{provider}", quarry.RoleViewer, "", s.handleImportHostsPage)
	s.page("POST /projects/{id}/import/xdr/{provider}/refresh", quarry.RoleAnalyst, "connection.refresh_hosts", s.handleImportRefresh)
}

func (s *Server) integrationsPage(w http.ResponseWriter, r *http.Request, status int, flash, formErr string, form *connectionInput, checked *xdr.CheckResult) error {
	cs, _, err := s.Connections.FindConnections(r.Context(), quarry.ConnectionFilter{Limit: 1000})
	if err != nil {
		return err
	}
	if form == nil {
		form = &connectionInput{Provider: "defender"}
	}
	return s.render(w, r, status, "integrations", view{Title: "Integrations", Nav: "settings", Flash: flash, Error: formErr, Data: map[string]any{
		"Tab": "integrations", "Connections": cs, "Providers": providers(), "Form": form, "Checked": checked,
	}})
}

func (s *Server) handleIntegrationsPage(w http.ResponseWriter, r *http.Request) error {
	return s.integrationsPage(w, r, http.StatusOK, r.URL.Query().Get("flash"), "", nil, nil)
}

func (s *Server) handleIntegrationsCreate(w http.ResponseWriter, r *http.Request) error {
	in := connectionInput{
		Provider: r.PostFormValue("provider"), Name: r.PostFormValue("name"), TenantID: r.PostFormValue("tenant_id"),
		ClientID: r.PostFormValue("client_id"), ClientSecret: r.PostFormValue("client_secret"), Cloud: r.PostFormValue("cloud"),
		APIURL: r.PostFormValue("api_url"), AuthorityURL: r.PostFormValue("authority_url"), CACert: r.PostFormValue("ca_cert"),
	}
	c, res, err := s.createConnection(r, in)
	if code := quarry.ErrorCode(err); code == quarry.EINVALID || code == quarry.ECONFLICT {
		in.ClientSecret = "" // never echoed back into the page
		return s.integrationsPage(w, r, ErrorStatus(code), "", quarry.ErrorMessage(err), &in, res)
	} else if err != nil {
		return err
	}
	return s.integrationsPage(w, r, http.StatusCreated, fmt.Sprintf("Connection %q added: %s", c.Name, res.Message), "", nil, res)
}

func (s *Server) handleIntegrationsCheck(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "connection")
	if err != nil {
		return err
	}
	auditTarget(r, "connection", id, nil)
	c, res, err := s.Integrations.Check(r.Context(), id)
	if err != nil {
		return err
	}
	auditTarget(r, "connection", id, map[string]any{"ok": res.OK, "missing": res.Missing})
	return s.integrationsPage(w, r, http.StatusOK, fmt.Sprintf("Checked %q: %s", c.Name, res.Message), "", nil, res)
}

func (s *Server) handleIntegrationsSecret(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "connection")
	if err != nil {
		return err
	}
	auditTarget(r, "connection", id, map[string]any{"secret": "replaced"})
	c, res, err := s.Integrations.RotateSecret(r.Context(), id, r.PostFormValue("client_secret"))
	if quarry.ErrorCode(err) == quarry.EINVALID {
		return s.integrationsPage(w, r, http.StatusBadRequest, "", quarry.ErrorMessage(err), nil, res)
	} else if err != nil {
		return err
	}
	return s.integrationsPage(w, r, http.StatusOK, fmt.Sprintf("Secret of %q replaced. %s", c.Name, res.Message), "", nil, res)
}

func (s *Server) handleIntegrationsDeletePage(w http.ResponseWriter, r *http.Request) error {
	c, err := s.connection(r)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "connection_delete", view{Title: "Delete connection", Nav: "settings", Data: map[string]any{"Connection": c}})
}

func (s *Server) handleIntegrationsDelete(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "connection")
	if err != nil {
		return err
	}
	auditTarget(r, "connection", id, nil)
	if r.PostFormValue("confirm") != "yes" {
		return quarry.FieldError("confirm", "Confirm the deletion.")
	}
	if err := s.Connections.DeleteConnection(r.Context(), id); err != nil {
		return err
	}
	http.Redirect(w, r, "/settings/integrations?flash="+url.QueryEscape("Connection deleted. Past acquisitions stay readable."), http.StatusSeeOther)
	return nil
}

// project reads the {id} path parameter as a project.
func (s *Server) project(r *http.Request) (*quarry.Project, error) {
	id, err := pathID(r, "id", "project")
	if err != nil {
		return nil, err
	}
	return s.Projects.FindProjectByID(r.Context(), id)
}

func (s *Server) experimentOn(r *http.Request, name string) (bool, error) {
	e, err := s.Experiments.FindExperiment(r.Context(), name)
	if err != nil {
		return false, err
	}
	return e.Enabled, nil
}

func (s *Server) handleImportPage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	on, err := s.experimentOn(r, quarry.ExperimentDefenderXDR)
	if err != nil {
		return err
	}
	var xdrs []providerInfo
	if on {
		xdrs = providers()
	}
	return s.render(w, r, http.StatusOK, "import", view{Title: "Import · " + p.Name, Nav: "projects", Data: map[string]any{"Project": p, "Providers": xdrs}})
}

// importConnection picks the connection the host list shows: the one asked for, or the first
// live connection of the provider.
func (s *Server) importConnection(r *http.Request, provider string) (*quarry.Connection, []*quarry.Connection, error) {
	cs, _, err := s.Connections.FindConnections(r.Context(), quarry.ConnectionFilter{Provider: &provider, Limit: 1000})
	if err != nil || len(cs) == 0 {
		return nil, cs, err
	}
	if v := r.URL.Query().Get("connection"); v != "" {
		id, _ := strconv.ParseInt(v, 10, 64)
		for _, c := range cs {
			if c.ID == id {
				return c, cs, nil
			}
		}
		return nil, cs, quarry.Errorf(quarry.ENOTFOUND, "No %s connection with id %q.", provider, v)
	}
	return cs[0], cs, nil
}

func (s *Server) handleImportHostsPage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	on, err := s.experimentOn(r, quarry.ExperimentDefenderXDR)
	if err != nil {
		return err
	}
	prov, ok := xdr.Lookup(r.PathValue("provider"))
	if !on || !ok {
		return quarry.Errorf(quarry.ENOTFOUND, "XDR import is an experiment that is turned off. An admin can turn on \"Microsoft Defender XDR integration (beta)\" in Settings > Experiments.")
	}
	conn, conns, err := s.importConnection(r, prov.ID())
	if err != nil {
		return err
	}
	data := map[string]any{"Project": p, "Provider": providerInfo{ID: prov.ID(), Name: prov.Name()}, "Connections": conns, "Connection": conn, "Query": r.URL.Query(), "CanAcquire": s.Acquirer != nil}
	if conn != nil {
		f, page, err := hostFilter(r, conn.ID)
		if err != nil {
			return err
		}
		hp, err := s.Integrations.ListHosts(r.Context(), f, false)
		if err != nil {
			data["ListError"] = quarry.ErrorMessage(err)
			if quarry.ErrorCode(err) == quarry.EINTERNAL {
				s.Logger.Error("list hosts", "connection", conn.ID, "err", err)
			}
		} else {
			base := r.URL.Query()
			base.Del("page")
			data["Hosts"], data["Total"], data["FetchedAt"] = hp.Hosts, hp.Total, hp.FetchedAt
			data["Page"], data["PerPage"] = page, f.Limit
			data["Pager"] = hostPager{Page: page, PerPage: f.Limit, Total: hp.Total, Base: base}
		}
	}
	return s.render(w, r, http.StatusOK, "import_hosts", view{Title: prov.Name() + " hosts · " + p.Name, Nav: "projects", Data: data})
}

// hostPager links pages of the host list with page/per_page, as the API does.
type hostPager struct {
	Page, PerPage, Total int
	Base                 url.Values
}

func (p hostPager) Pages() int { return max(1, (p.Total+p.PerPage-1)/p.PerPage) }
func (p hostPager) From() int  { return min((p.Page-1)*p.PerPage+1, p.Total) }
func (p hostPager) To() int    { return min(p.Page*p.PerPage, p.Total) }
func (p hostPager) Link(page int) string {
	q := url.Values{}
	for k, v := range p.Base {
		q[k] = v
	}
	q.Set("page", strconv.Itoa(page))
	return "?" + q.Encode()
}
func (p hostPager) Prev() string {
	if p.Page <= 1 {
		return ""
	}
	return p.Link(p.Page - 1)
}
func (p hostPager) Next() string {
	if p.Page >= p.Pages() {
		return ""
	}
	return p.Link(p.Page + 1)
}

func (s *Server) handleImportRefresh(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	id, _ := strconv.ParseInt(r.PostFormValue("connection"), 10, 64)
	c, err := s.Connections.FindConnectionByID(r.Context(), id)
	if err != nil {
		return err
	}
	auditTarget(r, "connection", c.ID, nil)
	if err := s.Integrations.Refresh(r.Context(), c); err != nil {
		return err
	}
	back := r.PostFormValue("back")
	if !strings.HasPrefix(back, fmt.Sprintf("/projects/%d/import/", p.ID)) {
		back = fmt.Sprintf("/projects/%d/import/xdr/%s?connection=%d", p.ID, url.PathEscape(r.PathValue("provider")), c.ID)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}
