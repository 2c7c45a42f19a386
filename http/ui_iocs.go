package http

import (
	"fmt"
	"net/http"

	"github.com/quarry-dfir/quarry"
)

// iocPages mounts a project's IOC lists page. The form posts text (a file is read into it by
// the browser), so the CSRF field and the list arrive in one urlencoded body.
func (s *Server) iocPages() {
	if s.IOCs == nil {
		return
	}
	s.page("GET /projects/{id}/iocs", quarry.RoleViewer, "", s.handleIOCPage)
	s.page("POST /projects/{id}/iocs", quarry.RoleAnalyst, "ioc_list.create", s.handleIOCCreateForm)
	s.page("POST /projects/{id}/iocs/{lid}/delete", quarry.RoleAnalyst, "ioc_list.delete", s.handleIOCDeleteForm)
}

func (s *Server) iocView(r *http.Request, p *quarry.Project, data map[string]any) (view, error) {
	lists, err := s.IOCs.FindIOCLists(r.Context(), p.ID, true)
	if err != nil {
		return view{}, err
	}
	data["Project"], data["Lists"], data["Levels"] = p, lists, quarry.Levels
	return view{Title: "IOC lists · " + p.Name, Nav: "projects", Data: data}, nil
}

func (s *Server) handleIOCPage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	v, err := s.iocView(r, p, map[string]any{})
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "iocs", v)
}

func (s *Server) handleIOCCreateForm(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	in := iocInput{Name: r.PostFormValue("name"), Description: r.PostFormValue("description"), Level: r.PostFormValue("level"),
		Format: r.PostFormValue("format"), Content: r.PostFormValue("content"), IncludeNonIDS: r.PostFormValue("include_non_ids") != ""}
	parsed, err := parseIOCInput(in)
	if err == nil {
		parsed.list.ProjectID = p.ID
		err = s.IOCs.CreateIOCList(r.Context(), parsed.list)
	}
	if quarry.ErrorCode(err) == quarry.EINVALID || quarry.ErrorCode(err) == quarry.ECONFLICT {
		v, verr := s.iocView(r, p, map[string]any{"Form": in})
		if verr != nil {
			return verr
		}
		v.Error = quarry.ErrorMessage(err)
		return s.render(w, r, http.StatusBadRequest, "iocs", v)
	} else if err != nil {
		return err
	}
	auditTarget(r, "ioc_list", parsed.list.ID, map[string]any{"project_id": p.ID, "name": parsed.list.Name, "indicators": parsed.list.Count, "problems": len(parsed.problems) + parsed.more})
	v, err := s.iocView(r, p, map[string]any{"Created": parsed.list, "Problems": parsed.problems, "MoreProblems": parsed.more,
		"Skipped": parsed.skipped, "Retagging": s.retag(r, p.ID)})
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusCreated, "iocs", v)
}

func (s *Server) handleIOCDeleteForm(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	id, err := pathID(r, "lid", "IOC list")
	if err != nil {
		return err
	}
	l, err := s.IOCs.FindIOCListByID(r.Context(), id)
	if err != nil {
		return err
	}
	if l.ProjectID != p.ID {
		return quarry.Errorf(quarry.ENOTFOUND, "IOC list not found.")
	}
	if err := s.IOCs.DeleteIOCList(r.Context(), id); err != nil {
		return err
	}
	auditTarget(r, "ioc_list", id, map[string]any{"project_id": p.ID, "name": l.Name})
	s.retag(r, p.ID)
	http.Redirect(w, r, fmt.Sprintf("/projects/%d/iocs", p.ID), http.StatusSeeOther)
	return nil
}
