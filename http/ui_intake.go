package http

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

func (s *Server) intakePages() {
	if s.Intake == nil {
		return
	}
	s.page("GET /projects/{id}/import/collector", quarry.RoleViewer, "", s.handleCollectorPage)
	s.page("POST /projects/{id}/import/collector", quarry.RoleAnalyst, "acquisition.create", s.handleCollectorCreate)
	s.page("GET /projects/{id}/import/package", quarry.RoleViewer, "", s.handlePackageImportPage)
	if s.Reprocessor != nil && s.Evidence != nil {
		// Processing audits reprocess requests itself.
		s.page("POST /projects/{id}/evidence/{eid}/reprocess", quarry.RoleAnalyst, "", s.handleReprocessForm)
	}
}

func (s *Server) handleCollectorPage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "import_collector", view{Title: "Collect with quarry-host · " + p.Name, Nav: "projects", Data: map[string]any{"Project": p}})
}

// handleCollectorCreate opens a manual acquisition and shows its collector command once.
func (s *Server) handleCollectorCreate(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	hours, err := strconv.Atoi(r.PostFormValue("hours"))
	if err != nil || hours < 1 || hours > 168 {
		hours = 24
	}
	a, token, t, err := s.Intake.CreateManualUpload(r.Context(), p.ID, r.PostFormValue("host_name"), time.Duration(hours)*time.Hour)
	if quarry.ErrorCode(err) == quarry.EINVALID {
		return s.render(w, r, http.StatusBadRequest, "import_collector", view{Title: "Collect with quarry-host", Nav: "projects", Error: quarry.ErrorMessage(err), Data: map[string]any{"Project": p}})
	} else if err != nil {
		return err
	}
	auditTarget(r, "acquisition", a.ID, map[string]any{"project_id": p.ID, "host_name": a.HostName, "source": a.Source, "token_prefix": t.Prefix, "expires_at": t.ExpiresAt})
	server := strings.TrimSuffix(s.PublicURL.String(), "/")
	return s.render(w, r, http.StatusCreated, "import_collector", view{Title: "Collect with quarry-host", Nav: "projects", Data: map[string]any{
		"Project": p,
		"Created": map[string]any{
			"AcquisitionID": a.ID, "ExpiresAt": t.ExpiresAt, "Server": server,
			"Command": fmt.Sprintf("quarry-host collect --server %s --token %s", server, token),
		},
	}})
}
