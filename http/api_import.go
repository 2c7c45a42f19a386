package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/intake"
)

// handleImport receives a package an analyst uploads into a project: our own zip, or a
// folder-structured zip, tar or tar.gz (KAPE, Velociraptor, UAC). The body is the archive
// itself (host_name and filename in the query string), or multipart/form-data with the fields
// host_name and then file. Either way it streams to disk; nothing holds the archive in memory.
func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) error {
	projectID, err := pathID(r, "id", "project")
	if err != nil {
		return err
	}
	if _, err := s.Projects.FindProjectByID(r.Context(), projectID); err != nil {
		return err
	}
	in := intake.Import{ProjectID: projectID, HostName: r.URL.Query().Get("host_name"), FileName: r.URL.Query().Get("filename"),
		IP: s.clientIP(r), Actor: "user:system"}
	if a := info(r).actor; a != nil {
		in.Actor = "user:" + a.Name()
		if a.User != nil {
			in.ActorID = a.User.ID
		}
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr, err := r.MultipartReader()
		if err != nil {
			return quarry.Errorf(quarry.EINVALID, "Bad multipart body: %v.", err)
		}
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return quarry.FieldError("file", "The form has no file part.")
			} else if err != nil {
				return quarry.Errorf(quarry.EINVALID, "Bad multipart body: %v.", err)
			}
			switch part.FormName() {
			case "host_name":
				b, _ := io.ReadAll(io.LimitReader(part, 256))
				in.HostName = strings.TrimSpace(string(b))
				continue
			case "file":
				in.FileName, in.Body = part.FileName(), part
			default:
				continue
			}
			break
		}
	} else {
		in.Body = r.Body
	}
	if in.FileName == "" {
		in.FileName = "upload"
	}
	a, e, err := s.Intake.Import(r.Context(), in)
	if err != nil {
		return err
	}
	auditTarget(r, "evidence", e.ID, map[string]any{"project_id": projectID, "acquisition_id": a.ID, "host_name": a.HostName,
		"sha256": e.SHA256, "size": e.Size, "filename": in.FileName})
	w.Header().Set("Location", fmt.Sprintf("/api/v1/evidence/%d", e.ID))
	writeJSON(w, http.StatusCreated, map[string]any{"acquisition": a, "evidence": e})
	return nil
}

// Reprocessor runs processing again on an evidence item (package processing implements it).
type Reprocessor interface {
	Reprocess(ctx context.Context, evidenceID int64) error
}

// handleReprocess deletes an evidence item's events and processes its package again, for
// when parsers or rules improved. The package itself is never touched.
func (s *Server) handleReprocess(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "evidence")
	if err != nil {
		return err
	}
	if err := s.Reprocessor.Reprocess(r.Context(), id); err != nil {
		return err
	}
	e, err := s.Evidence.FindEvidenceByID(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, e)
	return nil
}

// handleReprocessForm is the overview's Reprocess button.
func (s *Server) handleReprocessForm(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	id, err := pathID(r, "eid", "evidence")
	if err != nil {
		return err
	}
	if e, err := s.Evidence.FindEvidenceByID(r.Context(), id); err != nil {
		return err
	} else if e.ProjectID != p.ID {
		return quarry.Errorf(quarry.ENOTFOUND, "Evidence not found.")
	}
	if err := s.Reprocessor.Reprocess(r.Context(), id); err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/projects/%d/overview#evidence-%d", p.ID, id), http.StatusSeeOther)
	return nil
}

func (s *Server) handlePackageImportPage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "import_package", view{Title: "Upload a package · " + p.Name, Nav: "projects", Data: map[string]any{"Project": p}})
}
