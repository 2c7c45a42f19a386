package http

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/query"
)

// Limits of the events API.
const (
	eventPageDefault  = 100
	eventPageMax      = 1000
	maxSelectIDs      = 10_000 // ids in one star or comment request
	maxCommentLen     = 10_000 // characters
	maxFacetFields    = 10
	maxHistogramBins  = 5000
	exportFlushEvery  = 500 // rows between flushes of a streamed export
	timestampMicroFmt = "2006-01-02T15:04:05.000000Z07:00"
)

func (s *Server) eventRoutes() {
	if s.Events == nil {
		return
	}
	s.api("GET /api/v1/projects/{id}/events", quarry.RoleViewer, "", s.handleListEvents)
	s.api("GET /api/v1/projects/{id}/events/histogram", quarry.RoleViewer, "", s.handleEventHistogram)
	s.api("GET /api/v1/projects/{id}/events/facets", quarry.RoleViewer, "", s.handleEventFacets)
	s.api("GET /api/v1/projects/{id}/events/export", quarry.RoleViewer, "", s.handleExportEvents)
	s.api("GET /api/v1/projects/{id}/events/{eid}", quarry.RoleViewer, "", s.handleGetEvent)
	s.api("POST /api/v1/projects/{id}/events/star", quarry.RoleAnalyst, "event.star", s.handleStarEvents)
	s.api("POST /api/v1/projects/{id}/events/comments", quarry.RoleAnalyst, "event.comment", s.handleCommentEvents)
}

// eventFilter reads the timeline filter that the events API, its export, the histogram, the
// facets and the timeline page share, so that a URL means the same thing everywhere:
// q, from, to, host*, source*, severity*, starred, evidence_id, order, limit, cursor.
func eventFilter(projectID int64, v url.Values, defLimit int) (quarry.EventFilter, error) {
	f := quarry.EventFilter{ProjectID: projectID, Query: strings.TrimSpace(v.Get("q")), Limit: defLimit}
	if f.Query != "" {
		// The store parses it again; parsing here gives the analyst the column of the mistake
		// under the field's name before any database work.
		if _, err := query.Parse(f.Query); err != nil {
			return f, queryError(err)
		}
	}
	var err error
	if f.From, err = parseWhen("from", v.Get("from"), false); err != nil {
		return f, err
	}
	if f.To, err = parseWhen("to", v.Get("to"), true); err != nil {
		return f, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, quarry.FieldError("to", "to must be after from.")
	}
	f.Hosts = cleanList(v["host"])
	f.Sources = cleanList(v["source"])
	for _, sev := range cleanList(v["severity"]) {
		switch sev {
		case quarry.SeverityAlarm, quarry.SeveritySuspicious, "none":
			if !slices.Contains(f.Severities, sev) {
				f.Severities = append(f.Severities, sev)
			}
		default:
			return f, quarry.FieldError("severity", "severity must be alarm, suspicious or none, not %q.", sev)
		}
	}
	if s := v.Get("starred"); s != "" {
		if f.Starred, err = strconv.ParseBool(s); err != nil {
			return f, quarry.FieldError("starred", "starred must be true or false.")
		}
	}
	if s := v.Get("evidence_id"); s != "" {
		if f.EvidenceID, err = strconv.ParseInt(s, 10, 64); err != nil || f.EvidenceID <= 0 {
			return f, quarry.FieldError("evidence_id", "evidence_id must be a positive number.")
		}
	}
	switch v.Get("order") {
	case "", "asc":
	case "desc":
		f.Desc = true
	default:
		return f, quarry.FieldError("order", "order must be asc or desc.")
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > eventPageMax {
			return f, quarry.FieldError("limit", "limit must be a number from 1 to %d.", eventPageMax)
		}
		f.Limit = n
	}
	f.Cursor = v.Get("cursor")
	f.TotalUpTo = DefaultEventTotalUpTo
	if s := v.Get("exact_total"); s != "" {
		exact, err := strconv.ParseBool(s)
		if err != nil {
			return f, quarry.FieldError("exact_total", "exact_total must be true or false.")
		}
		if exact {
			f.TotalUpTo = 0
		}
	}
	return f, nil
}

// DefaultEventTotalUpTo is where a listing stops counting unless exact_total is asked for
// (Server.EventTotalUpTo changes it): past it the page comes back at once with "total_exact":
// false (the UI shows "10000+"), while an exact count of millions of events takes seconds.
const DefaultEventTotalUpTo = 10000

// countUpTo applies Server.EventTotalUpTo to a filter that counts up to the default.
func (s *Server) countUpTo(f quarry.EventFilter) quarry.EventFilter {
	if f.TotalUpTo > 0 && s.EventTotalUpTo > 0 {
		f.TotalUpTo = s.EventTotalUpTo
	}
	return f
}

// queryError gives a query syntax error the field "q", keeping its message (which names the
// column) for the analyst.
func queryError(err error) error {
	var se *query.SyntaxError
	if errors.As(err, &se) {
		return &quarry.Error{Code: quarry.EINVALID, Field: "q", Message: "Query " + se.Error() + ".", Err: err}
	}
	return err
}

// cleanList drops empty values and splits none: a host name may contain a comma.
func cleanList(vs []string) []string {
	var out []string
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// parseWhen reads a time bound: RFC 3339, a date-time without zone (UTC, as a datetime-local
// input sends it) or a date. A date as the upper bound means the end of that day, so that
// from=2026-11-20&to=2026-11-20 is that whole day, as the query language reads dates.
func parseWhen(name, v string, upper bool) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		if upper {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	return time.Time{}, quarry.FieldError(name, "%s must be an RFC 3339 time such as 2026-11-25T10:00:00Z or a date such as 2026-11-25.", name)
}

// eventJSON is an event as the API shows it.
type eventJSON struct {
	ID            int64              `json:"id"`
	Timestamp     string             `json:"timestamp"` // RFC 3339, microseconds, UTC
	Datetime      string             `json:"datetime"`  // the same instant, Timesketch's name for it
	TimestampDesc string             `json:"timestamp_desc"`
	Source        string             `json:"source"`
	Host          string             `json:"host"`
	User          string             `json:"user"`
	Message       string             `json:"message"`
	Path          string             `json:"path"`
	EvidenceID    int64              `json:"evidence_id"`
	Fields        map[string]any     `json:"fields"`
	Severity      string             `json:"severity"`
	Detections    []quarry.Detection `json:"detections"`
	Starred       bool               `json:"starred"`
	Comments      int                `json:"comments"`
}

// eventDetailJSON is one event with its comments, oldest first.
type eventDetailJSON struct {
	eventJSON
	CommentList []*quarry.EventComment `json:"comment_list"`
}

func toEventJSON(e *quarry.Event) eventJSON {
	ts := formatMicro(e.Timestamp)
	fields, _ := jsonSafe(e.Fields).(map[string]any)
	if fields == nil {
		fields = map[string]any{}
	}
	return eventJSON{
		ID: e.ID, Timestamp: ts, Datetime: ts, TimestampDesc: e.TimestampDesc, Source: e.Source, Host: e.Host,
		User: e.User, Message: e.Message, Path: e.Path, EvidenceID: e.EvidenceID, Fields: fields,
		Severity: e.Severity, Detections: nonNil(e.Detections), Starred: e.Starred, Comments: e.Comments,
	}
}

func formatMicro(t time.Time) string { return t.UTC().Format(timestampMicroFmt) }

// jsonSafe returns v with what encoding/json refuses replaced: a parser may have read a NaN or
// an infinity from a hostile file, and one such value must not break a page or an export.
func jsonSafe(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
	case float32:
		return jsonSafe(float64(x))
	case []float64:
		out := make([]any, len(x))
		for i, f := range x {
			out[i] = jsonSafe(f)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonSafe(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonSafe(e)
		}
		return out
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return v
}

func (s *Server) handleListEvents(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	f, err := eventFilter(p.ID, r.URL.Query(), eventPageDefault)
	if err != nil {
		return err
	}
	page, err := s.Events.FindEvents(r.Context(), s.countUpTo(f))
	if err != nil {
		return queryError(err)
	}
	events := make([]eventJSON, len(page.Events))
	for i, e := range page.Events {
		events[i] = toEventJSON(e)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next": page.Next, "total": page.Total, "total_exact": page.TotalExact})
	return nil
}

// projectEvent finds an event of the project named in the path; other projects' events are
// "not found", whatever their id.
func (s *Server) projectEvent(r *http.Request) (*quarry.Project, *quarry.Event, error) {
	p, err := s.project(r)
	if err != nil {
		return nil, nil, err
	}
	id, err := pathID(r, "eid", "event")
	if err != nil {
		return nil, nil, err
	}
	e, err := s.Events.FindEventByID(r.Context(), p.ID, id)
	if err != nil {
		return nil, nil, err
	}
	if e.ProjectID != 0 && e.ProjectID != p.ID {
		return nil, nil, quarry.Errorf(quarry.ENOTFOUND, "No event %d in this project.", id)
	}
	return p, e, nil
}

func (s *Server) handleGetEvent(w http.ResponseWriter, r *http.Request) error {
	p, e, err := s.projectEvent(r)
	if err != nil {
		return err
	}
	cs, err := s.Events.FindComments(r.Context(), p.ID, e.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, eventDetailJSON{toEventJSON(e), nonNil(cs)})
	return nil
}

func (s *Server) handleEventHistogram(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	f, err := eventFilter(p.ID, r.URL.Query(), 0)
	if err != nil {
		return err
	}
	var step time.Duration
	if v := r.URL.Query().Get("step"); v != "" {
		if step, err = time.ParseDuration(v); err != nil || step < time.Second {
			return quarry.FieldError("step", "step must be a duration of at least 1s, such as 1h or 15m.")
		}
		if !f.From.IsZero() && !f.To.IsZero() && f.To.Sub(f.From)/step > maxHistogramBins {
			return quarry.FieldError("step", "step %s makes more than %d buckets over this range; choose a longer one.", step, maxHistogramBins)
		}
	}
	bs, step, err := s.Events.Histogram(r.Context(), f, step)
	if err != nil {
		return queryError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"buckets": nonNil(bs), "step": step.String(), "step_seconds": step.Seconds()})
	return nil
}

func (s *Server) handleEventFacets(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	v := r.URL.Query()
	f, err := eventFilter(p.ID, v, 0)
	if err != nil {
		return err
	}
	f.Cursor = ""
	fields := cleanList(v["field"])
	if len(fields) == 0 {
		fields = []string{"host", "source", "user"}
	}
	if len(fields) > maxFacetFields {
		return quarry.FieldError("field", "At most %d fields at once.", maxFacetFields)
	}
	limit := 10
	if s := v.Get("size"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 100 {
			return quarry.FieldError("size", "size must be a number from 1 to 100.")
		}
	}
	out := make(map[string][]quarry.FacetValue, len(fields))
	for _, field := range fields {
		vals, err := s.Events.Facet(r.Context(), f, field, limit)
		if err != nil {
			return queryError(err)
		}
		out[field] = nonNil(vals)
	}
	writeJSON(w, http.StatusOK, map[string]any{"facets": out})
	return nil
}

// filterJSON is the filter of a bulk action, in the names of the URL parameters.
type filterJSON struct {
	Q          string   `json:"q"`
	From       string   `json:"from"`
	To         string   `json:"to"`
	Host       []string `json:"host"`
	Source     []string `json:"source"`
	Severity   []string `json:"severity"`
	Starred    bool     `json:"starred"`
	EvidenceID int64    `json:"evidence_id"`
}

func (j *filterJSON) values() url.Values {
	v := url.Values{"q": {j.Q}, "from": {j.From}, "to": {j.To}, "host": j.Host, "source": j.Source, "severity": j.Severity}
	if j.Starred {
		v.Set("starred", "true")
	}
	if j.EvidenceID != 0 {
		v.Set("evidence_id", strconv.FormatInt(j.EvidenceID, 10))
	}
	return v
}

// selection is what a bulk action applies to: listed events or every event a filter selects.
type selection struct {
	ids    []int64
	filter *quarry.EventFilter
}

func newSelection(projectID int64, ids []int64, q url.Values) (selection, error) {
	if (len(ids) == 0) == (q == nil) {
		return selection{}, quarry.FieldError("ids", "Send either \"ids\" (a list of event ids) or \"query\" (a filter), not both or neither.")
	}
	if q == nil {
		if len(ids) > maxSelectIDs {
			return selection{}, quarry.FieldError("ids", "At most %d ids at once; use a query for more.", maxSelectIDs)
		}
		for _, id := range ids {
			if id <= 0 {
				return selection{}, quarry.FieldError("ids", "Event ids are positive numbers.")
			}
		}
		return selection{ids: ids}, nil
	}
	f, err := eventFilter(projectID, q, 0)
	if err != nil {
		return selection{}, err
	}
	f.Cursor, f.Limit, f.Desc = "", 0, false
	return selection{filter: &f}, nil
}

// auditDetails says what a bulk action selected, briefly: the ids (at most 100) or the filter.
func (sel selection) auditDetails(d map[string]any) map[string]any {
	if sel.filter != nil {
		f := sel.filter
		d["query"] = map[string]any{"q": f.Query, "hosts": f.Hosts, "sources": f.Sources, "severities": f.Severities,
			"from": f.From, "to": f.To, "starred": f.Starred, "evidence_id": f.EvidenceID}
	} else {
		d["ids"] = sel.ids[:min(len(sel.ids), 100)]
		d["ids_total"] = len(sel.ids)
	}
	return d
}

// star sets or clears the star of a selection; shared by the API and the timeline page.
func (s *Server) star(r *http.Request, projectID int64, sel selection, starred bool) (int64, error) {
	auditTarget(r, "project", projectID, sel.auditDetails(map[string]any{"starred": starred}))
	var n int64
	var err error
	if sel.filter != nil {
		n, err = s.Events.StarQuery(r.Context(), *sel.filter, starred)
	} else {
		n, err = s.Events.StarEvents(r.Context(), projectID, sel.ids, starred)
	}
	if err != nil {
		return 0, queryError(err)
	}
	auditTarget(r, "project", projectID, sel.auditDetails(map[string]any{"starred": starred, "changed": n}))
	return n, nil
}

// comment adds text to each event of a selection; shared by the API and the timeline page.
func (s *Server) comment(r *http.Request, projectID int64, sel selection, text string) (int64, error) {
	text = strings.TrimSpace(text)
	auditTarget(r, "project", projectID, sel.auditDetails(map[string]any{"length": len(text)}))
	if text == "" {
		return 0, quarry.FieldError("text", "Write a comment first.")
	}
	if n := len([]rune(text)); n > maxCommentLen {
		return 0, quarry.FieldError("text", "A comment holds at most %d characters (this one has %d).", maxCommentLen, n)
	}
	a := quarry.ActorFromContext(r.Context())
	c := quarry.EventComment{ProjectID: projectID, Author: a.Name(), Text: text, CreatedAt: time.Now().UTC()}
	f := quarry.EventFilter{ProjectID: projectID}
	if sel.filter != nil {
		f = *sel.filter
	}
	n, err := s.Events.CommentEvents(r.Context(), f, sel.ids, c)
	if err != nil {
		return 0, queryError(err)
	}
	auditTarget(r, "project", projectID, sel.auditDetails(map[string]any{"length": len(text), "commented": n}))
	return n, nil
}

func (s *Server) handleStarEvents(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	auditTarget(r, "project", p.ID, nil)
	var body struct {
		IDs     []int64     `json:"ids"`
		Query   *filterJSON `json:"query"`
		Starred *bool       `json:"starred"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	starred := true // starring is what the button does; clearing says so
	if body.Starred != nil {
		starred = *body.Starred
	}
	var q url.Values
	if body.Query != nil {
		q = body.Query.values()
	}
	sel, err := newSelection(p.ID, body.IDs, q)
	if err != nil {
		return err
	}
	n, err := s.star(r, p.ID, sel, starred)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"changed": n, "starred": starred})
	return nil
}

func (s *Server) handleCommentEvents(w http.ResponseWriter, r *http.Request) error {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	auditTarget(r, "project", p.ID, nil)
	var body struct {
		IDs   []int64     `json:"ids"`
		Query *filterJSON `json:"query"`
		Text  string      `json:"text"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	var q url.Values
	if body.Query != nil {
		q = body.Query.values()
	}
	sel, err := newSelection(p.ID, body.IDs, q)
	if err != nil {
		return err
	}
	n, err := s.comment(r, p.ID, sel, body.Text)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"commented": n})
	return nil
}

// exportWriter writes one event of an export.
type exportWriter interface {
	header() error
	event(e *quarry.Event) error
	flush() error
}

// handleExportEvents streams every event the filter selects as JSON lines or CSV. Rows are
// written as the store yields them and flushed every exportFlushEvery rows, so an export of
// millions of events holds one buffer, not the result. An error after the first bytes were sent
// cannot change the status any more; the connection is then cut so that the client sees a
// failed download rather than a silently short file.
func (s *Server) handleExportEvents(w http.ResponseWriter, r *http.Request) (err error) {
	p, err := s.project(r)
	if err != nil {
		return err
	}
	v := r.URL.Query()
	format := v.Get("format")
	if format == "" {
		format = "jsonl"
	}
	if format != "jsonl" && format != "csv" {
		return quarry.FieldError("format", "format must be jsonl or csv.")
	}
	f, err := eventFilter(p.ID, v, 0)
	if err != nil {
		return err
	}
	f.Cursor, f.Limit = "", 0

	// An export copies evidence out of Quarry: it is audited like a change, though it is a GET
	// (a link in the UI, so it carries no CSRF token and is registered without an action).
	ri := info(r)
	ri.auditAction = "event.export"
	rows := 0
	defer func() {
		auditTarget(r, "project", p.ID, map[string]any{"format": format, "q": f.Query, "hosts": f.Hosts, "sources": f.Sources,
			"severities": f.Severities, "starred": f.Starred, "from": f.From, "to": f.To, "rows": rows})
		if ri.actor != nil {
			s.recordAudit(r, ri, err)
		}
	}()

	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	var ew exportWriter
	if format == "csv" {
		ew = &csvExport{w: csv.NewWriter(bw), bw: bw}
	} else {
		ew = &jsonlExport{bw: bw, enc: json.NewEncoder(bw)}
	}
	name := fmt.Sprintf("quarry-project-%d-events.%s", p.ID, format)
	h := w.Header()
	if format == "csv" {
		h.Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		h.Set("Content-Type", "application/x-ndjson; charset=utf-8")
	}
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	flush := func() error {
		if err := ew.flush(); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	err = ew.header()
	if err == nil {
		err = s.Events.EachEvent(r.Context(), f, func(e *quarry.Event) error {
			if err := ew.event(e); err != nil {
				return err
			}
			rows++
			if rows%exportFlushEvery == 0 {
				return flush()
			}
			return nil
		})
	}
	if err == nil {
		err = flush()
	}
	if err == nil {
		return nil
	}
	if cw.n == 0 {
		// Nothing reached the client: answer with a proper error instead of a file.
		for _, k := range []string{"Content-Disposition", "Content-Type"} {
			h.Del(k)
		}
		return queryError(err)
	}
	s.Logger.Warn("event export cut short", "project", p.ID, "rows", rows, "err", err)
	s.recordAudit(r, ri, err)
	ri.actor = nil // recorded; the deferred call must not record it again
	panic(http.ErrAbortHandler)
}

// countingWriter tells whether anything reached the response.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// jsonlExport writes Timesketch-ready JSON lines: message, datetime (ISO 8601), timestamp
// (microseconds since the epoch) and timestamp_desc, our own columns, and each Fields key at the
// top level unless it clashes with one of those (it then gets the prefix "field_").
type jsonlExport struct {
	bw  *bufio.Writer
	enc *json.Encoder
}

func (j *jsonlExport) header() error { j.enc.SetEscapeHTML(false); return nil }
func (j *jsonlExport) flush() error  { return nil }

var exportReserved = map[string]bool{
	"message": true, "datetime": true, "timestamp": true, "timestamp_desc": true, "source": true, "host": true,
	"user": true, "path": true, "evidence_id": true, "severity": true, "detections": true, "tag": true, "tags": true,
	"id": true, "comments": true,
}

func (j *jsonlExport) event(e *quarry.Event) error {
	m := make(map[string]any, 14+len(e.Fields))
	// Keys that clash go aside only after all others are placed, so that where a key lands does
	// not depend on map order.
	var clashes []string
	for k, v := range e.Fields {
		if exportReserved[k] {
			clashes = append(clashes, k)
			continue
		}
		m[k] = jsonSafe(v)
	}
	slices.Sort(clashes)
	for _, k := range clashes {
		key := "field_" + k
		for _, taken := m[key]; taken || exportReserved[key]; _, taken = m[key] {
			key = "field_" + key
		}
		m[key] = jsonSafe(e.Fields[k])
	}
	m["id"] = e.ID
	m["message"] = e.Message
	m["datetime"] = formatMicro(e.Timestamp)
	m["timestamp"] = e.Timestamp.UnixMicro()
	m["timestamp_desc"] = e.TimestampDesc
	m["source"] = e.Source
	m["host"] = e.Host
	m["user"] = e.User
	m["path"] = e.Path
	m["evidence_id"] = e.EvidenceID
	m["severity"] = e.Severity
	m["detections"] = nonNil(e.Detections)
	tags := []string{}
	if e.Starred {
		tags = append(tags, "starred")
	}
	m["tag"] = tags
	m["comments"] = e.Comments
	return j.enc.Encode(m)
}

// csvColumns are the export's fixed columns; fields holds the rest as one JSON object.
var csvColumns = []string{"datetime", "timestamp_desc", "source", "host", "user", "message", "path", "severity", "detections", "fields"}

type csvExport struct {
	w   *csv.Writer
	bw  *bufio.Writer
	row []string
}

func (c *csvExport) header() error { return c.w.Write(csvColumns) }

func (c *csvExport) flush() error {
	c.w.Flush()
	return c.w.Error()
}

func (c *csvExport) event(e *quarry.Event) error {
	fields := "{}"
	if len(e.Fields) > 0 {
		b, err := json.Marshal(jsonSafe(e.Fields))
		if err != nil {
			return fmt.Errorf("export event %d: %w", e.ID, err)
		}
		fields = string(b)
	}
	var dets []string
	for _, d := range e.Detections {
		dets = append(dets, d.Title+" ("+d.RuleID+")")
	}
	c.row = append(c.row[:0], formatMicro(e.Timestamp), e.TimestampDesc, e.Source, e.Host, e.User, e.Message, e.Path, e.Severity, strings.Join(dets, "; "), fields)
	for i, cell := range c.row {
		c.row[i] = spreadsheetSafe(cell)
	}
	return c.w.Write(c.row)
}

// spreadsheetSafe neutralises formula injection: a cell that a spreadsheet would run as a
// formula (starting with = + - @, or a tab or carriage return that hides one) gets a leading
// apostrophe, which spreadsheets show as text. Event text comes from the examined host, which
// an attacker may have written.
func spreadsheetSafe(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}
