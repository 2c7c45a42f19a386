package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/ioc"
)

// iocRoutes mounts the API of projects' IOC lists (issue #9).
func (s *Server) iocRoutes() {
	if s.IOCs == nil {
		return
	}
	s.api("GET /api/v1/projects/{id}/iocs", quarry.RoleViewer, "", s.handleListIOCs)
	s.api("POST /api/v1/projects/{id}/iocs", quarry.RoleAnalyst, "ioc_list.create", s.handleCreateIOCs)
	s.api("GET /api/v1/iocs/{id}", quarry.RoleViewer, "", s.handleGetIOCs)
	s.api("PUT /api/v1/iocs/{id}", quarry.RoleAnalyst, "ioc_list.update", s.handleUpdateIOCs)
	s.api("DELETE /api/v1/iocs/{id}", quarry.RoleAnalyst, "ioc_list.delete", s.handleDeleteIOCs)
}

// Retagger queues the retagging of a project's events (processing.Processor.QueueRetag).
type Retagger interface {
	QueueRetag(ctx context.Context, projectID int64) error
}

// retag queues the retagging of the project's events after a list changed. The list is saved
// either way; a failure is logged and said in the answer.
func (s *Server) retag(r *http.Request, projectID int64) bool {
	if s.Retagger == nil {
		return false
	}
	if err := s.Retagger.QueueRetag(r.Context(), projectID); err != nil {
		s.Logger.Warn("IOC list changed but the project's events could not be queued for retagging", "project", projectID, "err", err)
		return false
	}
	return true
}

// iocInput is what an analyst sends for a list: the indicators as text (one a line, with an
// optional type prefix and description) or a MISP JSON export.
type iocInput struct {
	Name          string `json:"name"`
	Description   string `json:"description"`
	Level         string `json:"level"`
	Format        string `json:"format"` // "text" (default) or "misp"
	Content       string `json:"content"`
	IncludeNonIDS bool   `json:"include_non_ids"` // MISP: also attributes not marked for detection
}

// iocParsed is a list ready to store, with what was left out of it and why.
type iocParsed struct {
	list     *quarry.IOCList
	problems []ioc.Problem
	more     int
	skipped  map[string]int
}

// readIOCInput reads a list from a JSON body or a multipart form (fields name, description,
// level, format, include_non_ids and the file "file") and parses its indicators.
func readIOCInput(w http.ResponseWriter, r *http.Request) (*iocParsed, error) {
	var in iocInput
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	r.Body = http.MaxBytesReader(w, r.Body, quarry.MaxIOCListSize+1<<20)
	switch mt {
	case "multipart/form-data":
		mr, err := r.MultipartReader()
		if err != nil {
			return nil, quarry.Errorf(quarry.EINVALID, "Bad multipart body: %v.", err)
		}
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, quarry.Errorf(quarry.EINVALID, "Bad multipart body: %v.", err)
			}
			limit := int64(10000)
			if part.FormName() == "file" {
				limit = quarry.MaxIOCListSize
			}
			b, err := io.ReadAll(io.LimitReader(part, limit+1))
			if err != nil {
				return nil, quarry.Errorf(quarry.EINVALID, "Bad multipart body: %v.", err)
			}
			if int64(len(b)) > limit {
				return nil, quarry.FieldError(part.FormName(), "%s is too large (at most %d bytes).", part.FormName(), limit)
			}
			switch v := string(b); part.FormName() {
			case "name":
				in.Name = v
			case "description":
				in.Description = v
			case "level":
				in.Level = v
			case "format":
				in.Format = v
			case "include_non_ids":
				in.IncludeNonIDS = v == "true" || v == "on" || v == "1"
			case "file", "content":
				in.Content = v
			}
		}
	case "application/json", "":
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return nil, jsonError(err)
		}
	default:
		return nil, quarry.Errorf(quarry.EINVALID, "Send the list as application/json or multipart/form-data (got %q).", mt)
	}
	return parseIOCInput(in)
}

// parseIOCInput parses the indicators of in into a list ready to store.
func parseIOCInput(in iocInput) (*iocParsed, error) {
	opt := ioc.Options{IncludeNonIDS: in.IncludeNonIDS, MaxBytes: quarry.MaxIOCListSize}
	var res *ioc.Result
	var err error
	switch strings.ToLower(in.Format) {
	case "", "text":
		res, err = ioc.ParseText(strings.NewReader(in.Content), opt)
	case "misp":
		res, err = ioc.ParseMISP(strings.NewReader(in.Content), opt)
	default:
		return nil, quarry.FieldError("format", "format must be text or misp.")
	}
	if err != nil {
		return nil, err
	}
	if len(res.Indicators) == 0 && strings.TrimSpace(in.Content) != "" {
		msg := "No indicator could be read from the content."
		if len(res.Problems) > 0 {
			p := res.Problems[0]
			msg = fmt.Sprintf("No indicator could be read from the content; line %d: %s.", p.Line, strings.TrimSuffix(p.Reason, "."))
		}
		return nil, quarry.FieldError("content", "%s", msg)
	}
	var text strings.Builder
	if err := ioc.FormatText(&text, res.Indicators); err != nil {
		return nil, err
	}
	l := &quarry.IOCList{Name: in.Name, Description: in.Description, Level: strings.ToLower(in.Level), Indicators: text.String()}
	return &iocParsed{list: l, problems: res.Problems, more: res.MoreProblems, skipped: res.Skipped}, nil
}

func (p *iocParsed) response(retagging bool) map[string]any {
	l := *p.list
	l.Indicators = ""
	return map[string]any{"list": l, "problems": nonNil(p.problems), "more_problems": p.more, "skipped": p.skipped, "retagging": retagging}
}

func (s *Server) handleListIOCs(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	lists, err := s.IOCs.FindIOCLists(r.Context(), p.ID, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"lists": lists})
	return nil
}

func (s *Server) handleCreateIOCs(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	in, err := readIOCInput(w, r)
	if err != nil {
		return err
	}
	in.list.ProjectID = p.ID
	if err := s.IOCs.CreateIOCList(r.Context(), in.list); err != nil {
		return err
	}
	auditTarget(r, "ioc_list", in.list.ID, map[string]any{"project_id": p.ID, "name": in.list.Name, "indicators": in.list.Count, "problems": len(in.problems) + in.more})
	w.Header().Set("Location", fmt.Sprintf("/api/v1/iocs/%d", in.list.ID))
	writeJSON(w, http.StatusCreated, in.response(s.retag(r, p.ID)))
	return nil
}

func (s *Server) handleGetIOCs(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "IOC list")
	if err != nil {
		return err
	}
	l, err := s.IOCs.FindIOCListByID(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}

func (s *Server) handleUpdateIOCs(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "IOC list")
	if err != nil {
		return err
	}
	in, err := readIOCInput(w, r)
	if err != nil {
		return err
	}
	in.list.ID = id
	if err := s.IOCs.UpdateIOCList(r.Context(), in.list); err != nil {
		return err
	}
	auditTarget(r, "ioc_list", id, map[string]any{"project_id": in.list.ProjectID, "name": in.list.Name, "indicators": in.list.Count})
	writeJSON(w, http.StatusOK, in.response(s.retag(r, in.list.ProjectID)))
	return nil
}

func (s *Server) handleDeleteIOCs(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "IOC list")
	if err != nil {
		return err
	}
	l, err := s.IOCs.FindIOCListByID(r.Context(), id)
	if err != nil {
		return err
	}
	if err := s.IOCs.DeleteIOCList(r.Context(), id); err != nil {
		return err
	}
	auditTarget(r, "ioc_list", id, map[string]any{"project_id": l.ProjectID, "name": l.Name})
	s.retag(r, l.ProjectID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
