package http

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/collectorbin"
)

// intakeRoutes mounts the collector-facing endpoints (upload tokens, not user credentials:
// they bypass s.api's authentication) and the analysts' acquisition and evidence API.
func (s *Server) intakeRoutes() {
	if s.Intake != nil {
		h := s.Intake.Handler()
		s.mux.Handle("/api/v1/uploads/", h)
		s.mux.Handle("/api/v1/collector/", h)
		if s.CollectorDownloads != nil {
			s.mux.Handle(collectorbin.DownloadPrefix, s.CollectorDownloads)
		}
		s.api("POST /api/v1/projects/{id}/uploads", quarry.RoleAnalyst, "acquisition.create", s.handleCreateUpload)
		s.api("POST /api/v1/projects/{id}/imports", quarry.RoleAnalyst, "evidence.import", s.handleImport)
	}
	if s.Acquisitions != nil {
		s.api("GET /api/v1/projects/{id}/acquisitions", quarry.RoleViewer, "", s.handleListAcquisitions)
		s.api("GET /api/v1/acquisitions/{id}", quarry.RoleViewer, "", s.handleGetAcquisition)
	}
	if s.Evidence != nil {
		s.api("GET /api/v1/projects/{id}/evidence", quarry.RoleViewer, "", s.handleListEvidence)
		s.api("GET /api/v1/evidence/{id}", quarry.RoleViewer, "", s.handleGetEvidence)
		if s.Reprocessor != nil {
			// Processing audits reprocess requests itself, refusals included.
			s.api("POST /api/v1/evidence/{id}/reprocess", quarry.RoleAnalyst, "", s.handleReprocess)
		}
	}
}

// WriteAPIError writes err as the API's JSON error envelope; intake uses it so that the
// collector endpoints answer errors like every other route.
func (s *Server) WriteAPIError(w http.ResponseWriter, r *http.Request, err error) {
	writeError(s.Logger, w, r, err)
}

// ClientIP is the source address of r, honouring TrustProxyHeaders.
func (s *Server) ClientIP(r *http.Request) string { return s.clientIP(r) }

// handleCreateUpload opens a manual acquisition for a collector an analyst runs by hand, and
// returns its upload token once. The token is never logged or audited; its prefix is.
func (s *Server) handleCreateUpload(w http.ResponseWriter, r *http.Request) error {
	projectID, err := pathID(r, "id", "project")
	if err != nil {
		return err
	}
	var body struct {
		HostName  string `json:"host_name"`
		ExpiresIn string `json:"expires_in"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	var ttl time.Duration
	if body.ExpiresIn != "" {
		if ttl, err = time.ParseDuration(body.ExpiresIn); err != nil || ttl <= 0 {
			return quarry.FieldError("expires_in", "expires_in must be a duration such as 24h.")
		}
	}
	if _, err := s.Projects.FindProjectByID(r.Context(), projectID); err != nil {
		return err
	}
	a, token, t, err := s.Intake.CreateManualUpload(r.Context(), projectID, body.HostName, ttl)
	if err != nil {
		return err
	}
	auditTarget(r, "acquisition", a.ID, map[string]any{"project_id": projectID, "host_name": a.HostName, "source": a.Source, "token_prefix": t.Prefix, "expires_at": t.ExpiresAt})
	server := strings.TrimSuffix(s.PublicURL.String(), "/")
	w.Header().Set("Location", fmt.Sprintf("/api/v1/acquisitions/%d", a.ID))
	writeJSON(w, http.StatusCreated, map[string]any{
		"acquisition_id": a.ID,
		"upload_token":   token,
		"server_url":     server,
		"command":        fmt.Sprintf("quarry-host collect --server %s --token %s", server, token),
	})
	return nil
}

// projectPage reads the project of a project-scoped list (which must exist) and its paging.
func (s *Server) projectPage(r *http.Request) (projectID int64, offset, limit int, err error) {
	p, err := s.project(r)
	if err != nil {
		return 0, 0, 0, err
	}
	offset, limit, err = paging(r, 100, 1000)
	return p.ID, offset, limit, err
}

func (s *Server) handleListAcquisitions(w http.ResponseWriter, r *http.Request) error {
	projectID, offset, limit, err := s.projectPage(r)
	if err != nil {
		return err
	}
	f := quarry.AcquisitionFilter{ProjectID: &projectID, Offset: offset, Limit: limit}
	if st := r.URL.Query().Get("state"); st != "" {
		f.State = &st
	}
	list, total, err := s.Acquisitions.FindAcquisitions(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"acquisitions": nonNil(list), "total": total})
	return nil
}

func (s *Server) handleGetAcquisition(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "acquisition")
	if err != nil {
		return err
	}
	a, err := s.Acquisitions.FindAcquisitionByID(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) handleListEvidence(w http.ResponseWriter, r *http.Request) error {
	projectID, offset, limit, err := s.projectPage(r)
	if err != nil {
		return err
	}
	list, total, err := s.Evidence.FindEvidence(r.Context(), quarry.EvidenceFilter{ProjectID: &projectID, Offset: offset, Limit: limit})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"evidence": nonNil(list), "total": total})
	return nil
}

func (s *Server) handleGetEvidence(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "evidence")
	if err != nil {
		return err
	}
	e, err := s.Evidence.FindEvidenceByID(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}
