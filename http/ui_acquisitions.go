package http

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

func (s *Server) acquisitionPages() {
	if s.Acquisitions == nil {
		return
	}
	s.page("GET /projects/{id}/acquisitions", quarry.RoleViewer, "", s.handleAcquisitionsPage)
	if s.Acquirer == nil {
		return
	}
	s.page("POST /projects/{id}/import/xdr/{provider}/acquire", quarry.RoleAnalyst, "acquisition.create", s.handleAcquireForm)
	s.page("POST /projects/{id}/acquisitions/{aid}/cancel", quarry.RoleAnalyst, "acquisition.cancel", s.handleAcquisitionAction)
	s.page("POST /projects/{id}/acquisitions/{aid}/retry", quarry.RoleAnalyst, "acquisition.retry", s.handleAcquisitionAction)
}

// acquisitionRow is one acquisition as the page shows it.
type acquisitionRow struct {
	*quarry.Acquisition
	Percent int           // of bytes, when the collector reported a total
	Elapsed time.Duration // since creation, until a final state
	Final   bool          // collection is over (the package arrived, or it never will); no cancel
}

// collecting reports whether an acquisition is still on its way to a package.
func collecting(state string) bool {
	switch state {
	case "queued", "waiting_for_slot", "launching", "offline_pending", "collecting", "uploading":
		return true
	}
	return false
}

func (s *Server) acquisitionsData(r *http.Request, p *quarry.Project) (map[string]any, error) {
	as, total, err := s.Acquisitions.FindAcquisitions(r.Context(), quarry.AcquisitionFilter{ProjectID: &p.ID, Limit: 1000})
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	rows := make([]acquisitionRow, len(as))
	now := time.Now()
	for i, a := range as {
		counts[a.State]++
		row := acquisitionRow{Acquisition: a, Final: !collecting(a.State)}
		if a.Progress.BytesTotal > 0 {
			row.Percent = int(min(100, a.Progress.BytesDone*100/a.Progress.BytesTotal))
		}
		end := now
		if row.Final {
			end = a.UpdatedAt
		}
		row.Elapsed = end.Sub(a.CreatedAt).Round(time.Second)
		rows[i] = row
	}
	type stateCount struct {
		State string
		N     int
	}
	var summary []stateCount
	for _, st := range []string{"queued", "waiting_for_slot", "launching", "offline_pending", "collecting", "uploading", "received", "processing", "completed", "failed", "cancelled", "expired"} {
		if counts[st] > 0 {
			summary = append(summary, stateCount{st, counts[st]})
		}
	}
	return map[string]any{"Project": p, "Rows": rows, "Total": total, "Summary": summary, "CanAct": s.Acquirer != nil}, nil
}

func (s *Server) handleAcquisitionsPage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	data, err := s.acquisitionsData(r, p)
	if err != nil {
		return err
	}
	if r.Header.Get("HX-Request") == "true" {
		// The page refreshes its table every few seconds; send only that part.
		return s.renderPart(w, r, "acquisitions", "acquisition-table", view{Data: data})
	}
	return s.render(w, r, http.StatusOK, "acquisitions", view{Title: "Acquisitions · " + p.Name, Nav: "projects", Data: data})
}

// renderPart renders one named template of a page, for htmx swaps.
func (s *Server) renderPart(w http.ResponseWriter, r *http.Request, page, name string, v view) error {
	t, ok := s.pages.byName[page]
	if !ok {
		return fmt.Errorf("http: no template %q", page)
	}
	i := info(r)
	v.Actor = i.actor
	if i.session != nil {
		v.CSRF = i.session.CSRFToken
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, v); err != nil {
		return fmt.Errorf("http: render %s/%s: %w", page, name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, err := w.Write(buf.Bytes())
	return err
}

func (s *Server) handleAcquireForm(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	connID, _ := strconv.ParseInt(r.PostFormValue("connection"), 10, 64)
	var hosts []string
	for _, h := range strings.Split(r.PostFormValue("host_ids"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if _, err := s.acquire(r, p.ID, connID, hosts, r.PostFormValue("profile"), r.PostFormValue("force") == "true"); err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/projects/%d/acquisitions", p.ID), http.StatusSeeOther)
	return nil
}

// handleAcquisitionAction cancels or retries one acquisition from the page.
func (s *Server) handleAcquisitionAction(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	id, err := pathID(r, "aid", "acquisition")
	if err != nil {
		return err
	}
	a, err := s.Acquisitions.FindAcquisitionByID(r.Context(), id)
	if err != nil {
		return err
	}
	if a.ProjectID != p.ID {
		return quarry.Errorf(quarry.ENOTFOUND, "No acquisition %d in this project.", id)
	}
	auditTarget(r, "acquisition", id, nil)
	if strings.HasSuffix(r.URL.Path, "/cancel") {
		_, err = s.Acquirer.Cancel(r.Context(), id)
	} else {
		var n *quarry.Acquisition
		if n, err = s.Acquirer.Retry(r.Context(), id); err == nil {
			auditTarget(r, "acquisition", id, map[string]any{"new_acquisition": n.ID})
		}
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/projects/%d/acquisitions", p.ID), http.StatusSeeOther)
	return nil
}
