package http

import (
	"context"
	"net/http"

	"github.com/quarry-dfir/quarry"
)

// Acquirer starts, cancels and retries acquisitions through an XDR platform (the scheduler).
type Acquirer interface {
	Acquire(ctx context.Context, projectID, connectionID int64, hostIDs []string, profile string, force bool) ([]*quarry.Acquisition, error)
	Cancel(ctx context.Context, id int64) (*quarry.Acquisition, error)
	Retry(ctx context.Context, id int64) (*quarry.Acquisition, error)
}

func (s *Server) acquisitionRoutes() {
	if s.Acquirer == nil {
		return
	}
	s.api("POST /api/v1/projects/{id}/acquisitions", quarry.RoleAnalyst, "acquisition.create", s.handleAcquire)
	s.api("POST /api/v1/acquisitions/{id}/cancel", quarry.RoleAnalyst, "acquisition.cancel", s.handleCancelAcquisition)
	s.api("POST /api/v1/acquisitions/{id}/retry", quarry.RoleAnalyst, "acquisition.retry", s.handleRetryAcquisition)
}

// acquisitionRef is the short form design.md gives for created acquisitions.
type acquisitionRef struct {
	ID     int64  `json:"id"`
	HostID string `json:"host_id"`
	State  string `json:"state"`
}

// acquire is shared by the API and the import page.
func (s *Server) acquire(r *http.Request, projectID, connectionID int64, hostIDs []string, profile string, force bool) ([]*quarry.Acquisition, error) {
	auditTarget(r, "project", projectID, map[string]any{"connection_id": connectionID, "hosts": len(hostIDs), "profile": profile, "force": force})
	if len(hostIDs) == 0 {
		return nil, quarry.FieldError("host_ids", "Choose at least one host.")
	}
	if len(hostIDs) > 10000 {
		return nil, quarry.FieldError("host_ids", "At most 10,000 hosts per request.")
	}
	if profile == "" {
		profile = "triage"
	}
	as, err := s.Acquirer.Acquire(r.Context(), projectID, connectionID, hostIDs, profile, force)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(as))
	for i, a := range as {
		ids[i] = a.ID
	}
	auditTarget(r, "project", projectID, map[string]any{"connection_id": connectionID, "acquisitions": ids, "profile": profile, "force": force})
	return as, nil
}

func (s *Server) handleAcquire(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	var body struct {
		ConnectionID int64    `json:"connection_id"`
		HostIDs      []string `json:"host_ids"`
		Profile      string   `json:"profile"`
		Force        bool     `json:"force"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.ConnectionID <= 0 {
		return quarry.FieldError("connection_id", "connection_id is required.")
	}
	as, err := s.acquire(r, p.ID, body.ConnectionID, body.HostIDs, body.Profile, body.Force)
	if err != nil {
		return err
	}
	refs := make([]acquisitionRef, len(as))
	for i, a := range as {
		refs[i] = acquisitionRef{ID: a.ID, HostID: a.HostID, State: a.State}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"acquisitions": refs})
	return nil
}

func (s *Server) handleCancelAcquisition(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "acquisition")
	if err != nil {
		return err
	}
	auditTarget(r, "acquisition", id, nil)
	a, err := s.Acquirer.Cancel(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) handleRetryAcquisition(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "acquisition")
	if err != nil {
		return err
	}
	auditTarget(r, "acquisition", id, nil)
	a, err := s.Acquirer.Retry(r.Context(), id)
	if err != nil {
		return err
	}
	auditTarget(r, "acquisition", id, map[string]any{"new_acquisition": a.ID})
	writeJSON(w, http.StatusCreated, a)
	return nil
}
