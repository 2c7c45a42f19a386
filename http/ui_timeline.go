package http

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// The timeline page works without JavaScript: the filters are a GET form, paging and facets are
// links, a star is a small POST form and an event opens on its own page. timeline.js adds the
// histogram, the drawer, in-place stars and the confirmations of bulk actions, through the API.
func (s *Server) timelinePages() {
	if s.Events == nil {
		return
	}
	s.page("GET /projects/{id}/timeline", quarry.RoleViewer, "", s.handleTimelinePage)
	s.page("GET /projects/{id}/timeline/events/{eid}", quarry.RoleViewer, "", s.handleEventPage)
	s.page("POST /projects/{id}/timeline/star", quarry.RoleAnalyst, "event.star", s.handleTimelineStar)
	s.page("POST /projects/{id}/timeline/comment", quarry.RoleAnalyst, "event.comment", s.handleTimelineComment)
	s.page("GET /projects/{id}/overview", quarry.RoleViewer, "", s.handleOverviewPage)
}

const timelinePageSize = 50

// timelineFacets are the sidebar's fields; those with Param filter by it, the rest add a term
// to the query.
var timelineFacets = []struct{ Field, Label, Param string }{
	{"host", "Hosts", "host"},
	{"source", "Sources", "source"},
	{"user", "Users", ""},
	{"EventID", "Event IDs", ""},
}

type timelineRow struct {
	*quarry.Event
	Time string
	Link string // the event's own page
}

type facetLink struct {
	Value  string
	Count  int64
	URL    string
	Active bool
}

type facetGroup struct {
	Field, Label string
	Values       []facetLink
}

// chip is an active host, source or severity filter with the link that removes it.
type chip struct {
	Label, Remove string
}

// timelineURL is the timeline page for the filter v (which it does not change).
func timelineURL(projectID int64, v url.Values) string {
	u := fmt.Sprintf("/projects/%d/timeline", projectID)
	if q := v.Encode(); q != "" {
		u += "?" + q
	}
	return u
}

// filterValues keeps the parameters that select events (not the page) in a stable form.
func filterValues(v url.Values) url.Values {
	out := url.Values{}
	for _, k := range []string{"q", "from", "to", "host", "source", "severity", "starred", "evidence_id", "order", "exact_total"} {
		for _, x := range v[k] {
			if x = strings.TrimSpace(x); x != "" {
				out.Add(k, x)
			}
		}
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, x := range v {
		out[k] = slices.Clone(x)
	}
	return out
}

func withValue(v url.Values, key, value string) url.Values {
	out := cloneValues(v)
	if !slices.Contains(out[key], value) {
		out.Add(key, value)
	}
	return out
}

func withoutValue(v url.Values, key, value string) url.Values {
	out := cloneValues(v)
	out[key] = slices.DeleteFunc(out[key], func(x string) bool { return x == value })
	if len(out[key]) == 0 {
		delete(out, key)
	}
	return out
}

// quoteTerm writes value as a query phrase, which matches a keyword field's whole value.
func quoteTerm(field, value string) string {
	var b strings.Builder
	b.WriteString(field)
	b.WriteString(`:"`)
	for _, r := range value {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// andQuery narrows a query by a term; a query with OR is bracketed so the term applies to all.
func andQuery(q, term string) string {
	q = strings.TrimSpace(q)
	switch {
	case q == "":
		return term
	case strings.Contains(q, term):
		return q
	case strings.Contains(q, " OR ") || strings.Contains(q, "||"):
		return "(" + q + ") AND " + term
	}
	return q + " AND " + term
}

func (s *Server) handleTimelinePage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	raw := r.URL.Query()
	fv := filterValues(raw)
	data := map[string]any{
		"Project": p, "Tab": "timeline", "Q": raw.Get("q"), "From": raw.Get("from"), "To": raw.Get("to"),
		"Starred": raw.Get("starred") == "true", "Desc": raw.Get("order") == "desc",
		"Hosts": cleanList(raw["host"]), "Sources": cleanList(raw["source"]), "EvidenceID": raw.Get("evidence_id"),
		"Severity": map[string]bool{}, "CanEdit": info(r).actor.Role.AtLeast(quarry.RoleAnalyst),
		"Filter": fv.Encode(), "Back": r.URL.RequestURI(),
		"ExportJSONL": fmt.Sprintf("/api/v1/projects/%d/events/export?%s", p.ID, withValue(fv, "format", "jsonl").Encode()),
		"ExportCSV":   fmt.Sprintf("/api/v1/projects/%d/events/export?%s", p.ID, withValue(fv, "format", "csv").Encode()),
		"Histogram":   fmt.Sprintf("/api/v1/projects/%d/events/histogram?%s", p.ID, fv.Encode()),
		"Base":        timelineURL(p.ID, nil),
	}
	sevs := data["Severity"].(map[string]bool)
	for _, v := range raw["severity"] {
		sevs[v] = true
	}
	allSev := cloneValues(fv)
	delete(allSev, "severity")
	keySev := cloneValues(allSev)
	keySev["severity"] = []string{quarry.SeverityAlarm, quarry.SeveritySuspicious}
	data["AllURL"], data["KeyURL"] = timelineURL(p.ID, allSev), timelineURL(p.ID, keySev)
	data["KeyActive"] = len(fv["severity"]) == 2 && sevs[quarry.SeverityAlarm] && sevs[quarry.SeveritySuspicious]
	if fv.Has("from") || fv.Has("to") {
		z := cloneValues(fv)
		delete(z, "from")
		delete(z, "to")
		data["ResetZoom"] = timelineURL(p.ID, z)
	}
	var chips []chip
	for _, k := range []string{"host", "source", "severity"} {
		for _, v := range fv[k] {
			chips = append(chips, chip{Label: k + ": " + v, Remove: timelineURL(p.ID, withoutValue(fv, k, v))})
		}
	}
	if fv.Has("evidence_id") {
		z := cloneValues(fv)
		delete(z, "evidence_id")
		chips = append(chips, chip{Label: "evidence: " + fv.Get("evidence_id"), Remove: timelineURL(p.ID, z)})
	}
	data["Chips"] = chips

	status := http.StatusOK
	f, err := eventFilter(p.ID, raw, timelinePageSize)
	if err == nil {
		var page *quarry.EventPage
		if page, err = s.Events.FindEvents(r.Context(), s.countUpTo(f)); err == nil {
			rows := make([]timelineRow, len(page.Events))
			for i, e := range page.Events {
				back := url.Values{"back": {r.URL.RequestURI()}}
				rows[i] = timelineRow{Event: e, Time: e.Timestamp.UTC().Format("2006-01-02 15:04:05.000000"),
					Link: fmt.Sprintf("/projects/%d/timeline/events/%d?%s", p.ID, e.ID, back.Encode())}
			}
			data["Rows"], data["Total"], data["TotalExact"] = rows, page.Total, page.TotalExact
			if !page.TotalExact {
				all := cloneValues(raw)
				all.Set("exact_total", "true")
				data["CountAll"] = fmt.Sprintf("/projects/%d/timeline?%s", p.ID, all.Encode())
			}
			if page.Next != "" {
				next := cloneValues(raw)
				next.Set("cursor", page.Next)
				data["NextURL"] = timelineURL(p.ID, next)
			}
			if raw.Get("cursor") != "" {
				first := cloneValues(raw)
				first.Del("cursor")
				data["FirstURL"] = timelineURL(p.ID, first)
			}
			f.Cursor = ""
			groups, ferr := s.facetGroups(r, p.ID, f, fv)
			if ferr != nil {
				return ferr
			}
			data["Facets"] = groups
		}
	}
	if err != nil {
		err = queryError(err)
		if quarry.ErrorCode(err) != quarry.EINVALID {
			return err
		}
		// A mistake in the filter is shown where it was made, with the form as typed.
		status = http.StatusBadRequest
		if quarry.ErrorField(err) == "q" {
			data["QueryError"] = quarry.ErrorMessage(err)
		} else {
			data["FilterError"] = quarry.ErrorMessage(err)
		}
	}
	return s.render(w, r, status, "timeline", view{Title: "Timeline · " + p.Name, Nav: "projects", Data: data})
}

func (s *Server) facetGroups(r *http.Request, projectID int64, f quarry.EventFilter, fv url.Values) ([]facetGroup, error) {
	groups := make([]facetGroup, 0, len(timelineFacets))
	for _, tf := range timelineFacets {
		vals, err := s.Events.Facet(r.Context(), f, tf.Field, 10)
		if err != nil {
			return nil, err
		}
		g := facetGroup{Field: tf.Field, Label: tf.Label}
		for _, v := range vals {
			if v.Value == "" {
				continue
			}
			l := facetLink{Value: v.Value, Count: v.Count}
			if tf.Param != "" {
				l.Active = slices.Contains(fv[tf.Param], v.Value)
				l.URL = timelineURL(projectID, withValue(fv, tf.Param, v.Value))
			} else {
				nv := cloneValues(fv)
				nv.Set("q", andQuery(fv.Get("q"), quoteTerm(tf.Field, v.Value)))
				l.URL = timelineURL(projectID, nv)
			}
			g.Values = append(g.Values, l)
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// fieldRow is one key of an event's Fields as the detail view shows it.
type fieldRow struct{ Key, Value string }

func fieldText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case nil:
		return ""
	}
	b, err := json.Marshal(jsonSafe(v))
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// safeBack keeps a "back" link inside the project's pages.
func safeBack(projectID int64, back string) string {
	prefix := fmt.Sprintf("/projects/%d/", projectID)
	if !strings.HasPrefix(back, prefix) || strings.ContainsAny(back, "\\\r\n") {
		return timelineURL(projectID, nil)
	}
	return back
}

func (s *Server) handleEventPage(w http.ResponseWriter, r *http.Request) error {
	p, e, err := s.projectEvent(r)
	if err != nil {
		return err
	}
	cs, err := s.Events.FindComments(r.Context(), p.ID, e.ID)
	if err != nil {
		return err
	}
	rows := make([]fieldRow, 0, len(e.Fields))
	for k, v := range e.Fields {
		rows = append(rows, fieldRow{k, fieldText(v)})
	}
	sort.Slice(rows, func(i, j int) bool { return strings.ToLower(rows[i].Key) < strings.ToLower(rows[j].Key) })
	back := safeBack(p.ID, r.URL.Query().Get("back"))
	data := map[string]any{
		"Project": p, "Event": e, "Time": formatMicro(e.Timestamp), "Fields": rows, "Comments": cs, "Back": back,
		"Self":    fmt.Sprintf("/projects/%d/timeline/events/%d?%s", p.ID, e.ID, url.Values{"back": {back}}.Encode()),
		"CanEdit": info(r).actor.Role.AtLeast(quarry.RoleAnalyst),
	}
	v := view{Title: fmt.Sprintf("Event %d · %s", e.ID, p.Name), Nav: "projects", Data: data}
	if r.Header.Get("HX-Request") == "true" {
		return s.renderPart(w, r, "event", "event-detail", v)
	}
	return s.render(w, r, http.StatusOK, "event", v)
}

// formSelection reads a bulk form: event ids ("id"), or scope=query with the filter encoded as
// the timeline URL's query string ("filter").
func formSelection(r *http.Request, projectID int64) (selection, error) {
	if err := r.ParseForm(); err != nil {
		return selection{}, quarry.Errorf(quarry.EINVALID, "The form could not be read.")
	}
	if r.PostForm.Get("scope") == "query" {
		q, err := url.ParseQuery(r.PostForm.Get("filter"))
		if err != nil {
			return selection{}, quarry.FieldError("filter", "The filter could not be read.")
		}
		return newSelection(projectID, nil, filterValues(q))
	}
	var ids []int64
	for _, s := range r.PostForm["id"] {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return selection{}, quarry.FieldError("id", "Event ids are numbers.")
		}
		ids = append(ids, id)
	}
	return newSelection(projectID, ids, nil)
}

func (s *Server) handleTimelineStar(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	auditTarget(r, "project", p.ID, nil)
	sel, err := formSelection(r, p.ID)
	if err != nil {
		return err
	}
	if _, err := s.star(r, p.ID, sel, r.PostForm.Get("star") != "false"); err != nil {
		return err
	}
	http.Redirect(w, r, safeBack(p.ID, r.PostForm.Get("back")), http.StatusSeeOther)
	return nil
}

func (s *Server) handleTimelineComment(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	auditTarget(r, "project", p.ID, nil)
	sel, err := formSelection(r, p.ID)
	if err != nil {
		return err
	}
	if _, err := s.comment(r, p.ID, sel, r.PostForm.Get("text")); err != nil {
		return err
	}
	http.Redirect(w, r, safeBack(p.ID, r.PostForm.Get("back")), http.StatusSeeOther)
	return nil
}

// evidenceRow is an evidence item with its processing report laid out for the overview.
type evidenceRow struct {
	*quarry.Evidence
	Percent  int
	Parsers  []parserRow
	Duration string
}

type parserRow struct {
	Name string
	*quarry.ParserReport
}

func (s *Server) handleOverviewPage(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	data := map[string]any{"Project": p, "Tab": "overview", "CanReprocess": s.Reprocessor != nil}
	if s.Acquisitions != nil {
		as, total, err := s.Acquisitions.FindAcquisitions(ctx, quarry.AcquisitionFilter{ProjectID: &p.ID, Limit: 1000})
		if err != nil {
			return err
		}
		data["Acquisitions"], data["AcquisitionTotal"] = as, total
	}
	if s.Evidence != nil {
		es, total, err := s.Evidence.FindEvidence(ctx, quarry.EvidenceFilter{ProjectID: &p.ID, Limit: 200})
		if err != nil {
			return err
		}
		rows := make([]evidenceRow, len(es))
		problems := 0
		for i, e := range es {
			row := evidenceRow{Evidence: e}
			if pr := e.Processing; pr != nil {
				if pr.FilesTotal > 0 {
					row.Percent = min(100, pr.FilesDone*100/pr.FilesTotal)
				}
				for name, rep := range pr.Parsers {
					row.Parsers = append(row.Parsers, parserRow{name, rep})
				}
				sort.Slice(row.Parsers, func(a, b int) bool { return row.Parsers[a].Name < row.Parsers[b].Name })
				if !pr.StartedAt.IsZero() {
					end := time.Now()
					if pr.EndedAt != nil {
						end = *pr.EndedAt
					}
					row.Duration = end.Sub(pr.StartedAt).Round(time.Second).String()
				}
				problems += pr.ProblemsTotal
			}
			rows[i] = row
		}
		data["Evidence"], data["EvidenceTotal"], data["Problems"] = rows, total, problems
	}
	f := quarry.EventFilter{ProjectID: p.ID, Limit: 1}
	page, err := s.Events.FindEvents(ctx, f)
	if err != nil {
		return err
	}
	data["EventTotal"] = page.Total
	if b, ok := s.Events.(interface {
		SearchBacklog(context.Context) (int64, error)
	}); ok {
		// Across projects: the index is one. Queries stay exact; only free text is slower.
		if n, err := b.SearchBacklog(ctx); err == nil && n > 0 {
			data["SearchBacklog"] = n
		}
	}
	for _, facet := range []struct{ key, field string }{{"Sources", "source"}, {"Hosts", "host"}, {"Severities", "severity"}} {
		vals, err := s.Events.Facet(ctx, quarry.EventFilter{ProjectID: p.ID}, facet.field, 50)
		if err != nil {
			return err
		}
		links := make([]facetLink, len(vals))
		for i, v := range vals {
			links[i] = facetLink{Value: v.Value, Count: v.Count}
			if v.Value != "" {
				links[i].URL = timelineURL(p.ID, url.Values{facet.field: {v.Value}})
			} else if facet.field == "severity" {
				links[i].URL = timelineURL(p.ID, url.Values{"severity": {"none"}})
			}
		}
		data[facet.key] = links
	}
	return s.render(w, r, http.StatusOK, "overview", view{Title: "Overview · " + p.Name, Nav: "projects", Data: data})
}
