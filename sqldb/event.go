package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/query"
	"modernc.org/sqlite"
)

// EventService stores timeline events (issue #8).
//
// Times are kept to the microsecond, like every time in the database. Fields keep their Go types
// through the store: strings, int64, uint64, float64, bool, time.Time (in UTC), nil, lists
// ([]any and []string, []int64, []uint64, []float64, []bool, []time.Time) and nested
// map[string]any. Other integer types come back as int64 or uint64 and float32 as float64; any
// other type is refused with EINVALID. A query selects exactly the events that query.Match
// accepts for the event as the store returns it.
type EventService struct {
	db     *DB
	c      compiler
	window int // pageWindow; tests make it small
}

var _ quarry.EventService = (*EventService)(nil)

// NewEventService returns an EventService on db.
func NewEventService(db *DB) *EventService {
	return &EventService{db: db, c: compiler{dialect: db.dialect}, window: pageWindow}
}

// Limits of the event store.
const (
	// insertBatch is how many events one INSERT statement writes.
	insertBatch = 200
	// maxHistogramBuckets bounds what a caller-chosen step may ask for.
	maxHistogramBuckets = 10000
	// maxCommentLength is the longest comment, in characters.
	maxCommentLength = 10000
)

const eventColumns = `e.id, e.project_id, e.evidence_id, e.ts, e.timestamp_desc, e.source, e.host, e.username, e.message,
	e.path, e.fields, e.field_types, e.severity, e.detections, e.starred, e.comments`

func init() {
	// quarry_match(query, ts, timestamp_desc, source, host, username, message, path, severity,
	// fields, field_types) is query.Match on a row, so that SQLite counts, pages and updates
	// exactly what Match accepts. fields is '' when the query does not read them.
	sqlite.MustRegisterDeterministicScalarFunction("quarry_match", 11, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		text, _ := args[0].(string)
		pq, err := cachedQuery(text)
		if err != nil {
			return nil, err
		}
		ev := &quarry.Event{}
		ts, _ := args[1].(int64)
		ev.Timestamp = time.UnixMicro(ts).UTC()
		for i, p := range []*string{&ev.TimestampDesc, &ev.Source, &ev.Host, &ev.User, &ev.Message, &ev.Path, &ev.Severity} {
			*p = sqliteText(args[2+i])
		}
		fields := sqliteText(args[9])
		if fields != "" && pq.monotone && query.Match(pq.node, ev) {
			return int64(1), nil
		}
		if fields != "" {
			if ev.Fields, err = decodeFields(fields, sqliteText(args[10])); err != nil {
				return nil, err
			}
		}
		if query.Match(pq.node, ev) {
			return int64(1), nil
		}
		return int64(0), nil
	})
}

func sqliteText(v driver.Value) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// scanEvent reads eventColumns.
func scanEvent(s interface{ Scan(...any) error }) (*quarry.Event, error) {
	var ev quarry.Event
	var ts int64
	var fields, types, detections string
	err := s.Scan(&ev.ID, &ev.ProjectID, &ev.EvidenceID, &ts, &ev.TimestampDesc, &ev.Source, &ev.Host, &ev.User, &ev.Message,
		&ev.Path, &fields, &types, &ev.Severity, &detections, &ev.Starred, &ev.Comments)
	if err != nil {
		return nil, err
	}
	ev.Timestamp = time.UnixMicro(ts).UTC()
	if ev.Fields, err = decodeFields(fields, types); err != nil {
		return nil, fmt.Errorf("event %d: %w", ev.ID, err)
	}
	if detections != "" {
		if err := json.Unmarshal([]byte(detections), &ev.Detections); err != nil {
			return nil, fmt.Errorf("event %d: decode detections: %w", ev.ID, err)
		}
	}
	return &ev, nil
}

// InsertEvents validates and writes events in one transaction, setting their IDs and cutting
// their Timestamp to the microsecond (as stored). Their Starred and Comments are the store's and
// start cleared.
func (s *EventService) InsertEvents(ctx context.Context, events []*quarry.Event) error {
	if len(events) == 0 {
		return nil
	}
	type row struct {
		fields, types, detections, doc string
	}
	rows := make([]row, len(events))
	for i, ev := range events {
		if err := validateEvent(ev); err != nil {
			return err
		}
		fields, types, err := encodeFields(ev.Fields)
		if err != nil {
			return err
		}
		r := row{fields: fields, types: types}
		if s.db.search == nil {
			// PostgreSQL stores the document with the event; SQLite's indexer builds it (search.go).
			r.doc = searchDoc(ev)
		}
		if len(ev.Detections) > 0 {
			b, err := json.Marshal(ev.Detections)
			if err != nil {
				return fmt.Errorf("insert events: encode detections: %w", err)
			}
			r.detections = string(b)
		}
		rows[i] = r
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ids, err := s.reserveIDs(ctx, tx, len(events))
	if err != nil {
		return translate(err, "insert events", "", "")
	}
	cols := "id, project_id, evidence_id, ts, timestamp_desc, source, host, username, message, path, fields, field_types, severity, detections"
	ncol := 14
	if s.db.dialect == DialectPostgres {
		cols += ", doc"
		ncol++
	}
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	prepare := func(table, cols string, ncol, n int) (*sql.Stmt, error) {
		key := n
		if table == "events_fts" {
			key = -n
		}
		if st := stmts[key]; st != nil {
			return st, nil
		}
		one := "(" + strings.TrimSuffix(strings.Repeat("?, ", ncol), ", ") + ")"
		q := "INSERT INTO " + table + " (" + cols + ") VALUES " + strings.TrimSuffix(strings.Repeat(one+", ", n), ", ")
		st, err := tx.tx.PrepareContext(ctx, s.db.rebind(q))
		if err != nil {
			return nil, err
		}
		stmts[key] = st
		return st, nil
	}
	args := make([]any, 0, insertBatch*ncol)
	for start := 0; start < len(events); start += insertBatch {
		end := min(start+insertBatch, len(events))
		st, err := prepare("events", cols, ncol, end-start)
		if err != nil {
			return translate(err, "insert events", "", "")
		}
		args = args[:0]
		for i := start; i < end; i++ {
			ev, r := events[i], rows[i]
			args = append(args, ids[i], ev.ProjectID, ev.EvidenceID, ev.Timestamp.UnixMicro(), ev.TimestampDesc, ev.Source, ev.Host, ev.User,
				ev.Message, ev.Path, r.fields, r.types, ev.Severity, r.detections)
			if s.db.dialect == DialectPostgres {
				args = append(args, r.doc)
			}
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return translate(err, "insert events", "", "")
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if s.db.search != nil {
		s.db.kickSearch()
	}
	for i, ev := range events {
		ev.ID = ids[i]
		ev.Timestamp = time.UnixMicro(ev.Timestamp.UnixMicro()).UTC()
		ev.Starred, ev.Comments = false, 0
	}
	return nil
}

// reserveIDs returns n new event ids, in increasing order. On SQLite the write transaction holds
// the database's write lock, so the next ids are free; PostgreSQL hands them out from the
// identity's sequence.
func (s *EventService) reserveIDs(ctx context.Context, tx *Tx, n int) ([]int64, error) {
	ids := make([]int64, 0, n)
	if s.db.dialect == DialectSQLite {
		var last int64
		err := tx.queryRow(ctx, `SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
			COALESCE((SELECT MAX(id) FROM events), 0))`).Scan(&last)
		if err != nil {
			return nil, err
		}
		for i := range n {
			ids = append(ids, last+1+int64(i))
		}
		return ids, nil
	}
	rows, err := tx.query(ctx, "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, ?)", n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if len(ids) != n {
		return nil, fmt.Errorf("reserved %d ids, want %d", len(ids), n)
	}
	return ids, nil
}

func validateEvent(ev *quarry.Event) error {
	if ev == nil {
		return quarry.Errorf(quarry.EINVALID, "An event is missing.")
	}
	if ev.ProjectID <= 0 {
		return quarry.FieldError("project_id", "Events need a project.")
	}
	switch ev.Severity {
	case "", quarry.SeveritySuspicious, quarry.SeverityAlarm:
	default:
		return quarry.FieldError("severity", "Unknown severity %q.", ev.Severity)
	}
	for _, s := range []string{ev.TimestampDesc, ev.Source, ev.Host, ev.User, ev.Message, ev.Path} {
		if err := checkText(s); err != nil {
			return err
		}
	}
	for _, d := range ev.Detections {
		for _, s := range append([]string{d.RuleID, d.Title, d.Level, d.Kind}, d.Tags...) {
			if err := checkText(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkText refuses text that PostgreSQL cannot store, on SQLite too.
func checkText(s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return quarry.Errorf(quarry.EINVALID, "Event text must be valid UTF-8 without NUL characters.")
	}
	return nil
}

// Fields encoding. The fields column is a JSON object in which every scalar is its text as
// query.Match sees it; field_types mirrors it with the type of each value that is not a string:
// "i" int64, "u" uint64, "f" float64, "b" bool, "t" time.Time, "[]s" and the like for typed lists,
// an array for []any and an object for nested maps. It is "" when every value is a string.

// scalarText returns the text of a scalar the way query.Match's text does, and whether v is one.
func scalarText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano), true
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 64), true
	case int:
		return strconv.FormatInt(int64(v), 10), true
	case int8:
		return strconv.FormatInt(int64(v), 10), true
	case int16:
		return strconv.FormatInt(int64(v), 10), true
	case int32:
		return strconv.FormatInt(int64(v), 10), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case uint:
		return strconv.FormatUint(uint64(v), 10), true
	case uint8:
		return strconv.FormatUint(uint64(v), 10), true
	case uint16:
		return strconv.FormatUint(uint64(v), 10), true
	case uint32:
		return strconv.FormatUint(uint64(v), 10), true
	case uint64:
		return strconv.FormatUint(v, 10), true
	}
	return "", false
}

// typedList returns the elements of a typed slice.
func typedList(v any) ([]any, bool) {
	var out []any
	switch v := v.(type) {
	case []string:
		for _, e := range v {
			out = append(out, e)
		}
	case []int64:
		for _, e := range v {
			out = append(out, e)
		}
	case []uint64:
		for _, e := range v {
			out = append(out, e)
		}
	case []float64:
		for _, e := range v {
			out = append(out, e)
		}
	case []bool:
		for _, e := range v {
			out = append(out, e)
		}
	case []time.Time:
		for _, e := range v {
			out = append(out, e)
		}
	default:
		return nil, false
	}
	return out, true
}

func scalarType(v any) string {
	switch v.(type) {
	case string:
		return ""
	case bool:
		return "b"
	case time.Time:
		return "t"
	case float64, float32:
		return "f"
	case int, int8, int16, int32, int64:
		return "i"
	case uint, uint8, uint16, uint32, uint64:
		return "u"
	}
	return "?"
}

func encodeFields(m map[string]any) (fields, types string, err error) {
	if len(m) == 0 {
		return "{}", "", nil
	}
	if fields, types, ok, err := encodeFlat(m); ok || err != nil {
		return fields, types, err
	}
	vals, typs, err := encodeValue(m, 0)
	if err != nil {
		return "", "", err
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return "", "", fmt.Errorf("encode fields: %w", err)
	}
	fields = string(b)
	if typs != nil {
		b, err := json.Marshal(typs)
		if err != nil {
			return "", "", fmt.Errorf("encode field types: %w", err)
		}
		types = string(b)
	}
	return fields, types, nil
}

// encodeFlat is encodeFields for the common case, fields that are all scalars, without
// reflection: it is most of the cost of an insert that is not SQLite's. ok is false when a value
// is not a scalar. The JSON is json.Marshal's but for escapes, which every reader decodes.
func encodeFlat(m map[string]any) (fields, types string, ok bool, err error) {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != nil {
			if _, scalar := scalarText(v); !scalar {
				return "", "", false, nil
			}
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := make([]byte, 0, 256)
	var t []byte
	b = append(b, '{')
	for i, k := range keys {
		if err := checkText(k); err != nil {
			return "", "", false, err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		v := m[k]
		if v == nil {
			b = append(b, "null"...)
			continue
		}
		text, _ := scalarText(v)
		if str, isString := v.(string); isString {
			if err := checkText(str); err != nil {
				return "", "", false, err
			}
		}
		b = appendJSONString(b, text)
		if typ := scalarType(v); typ != "" {
			if t == nil {
				t = append(make([]byte, 0, 64), '{')
			} else {
				t = append(t, ',')
			}
			t = appendJSONString(t, k)
			t = append(t, ':')
			t = appendJSONString(t, typ)
		}
	}
	b = append(b, '}')
	if t != nil {
		t = append(t, '}')
	}
	return string(b), string(t), true, nil
}

// appendJSONString appends s, valid UTF-8, as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// encodeValue returns v's JSON value (texts) and its types (nil when all are strings or nil).
func encodeValue(v any, depth int) (val, typ any, err error) {
	if depth > 32 {
		return nil, nil, quarry.Errorf(quarry.EINVALID, "Event fields nest too deep.")
	}
	switch v := v.(type) {
	case nil:
		return nil, nil, nil
	case string:
		if err := checkText(v); err != nil {
			return nil, nil, err
		}
		return v, nil, nil
	case map[string]any:
		vals := make(map[string]any, len(v))
		var typs map[string]any
		for k, e := range v {
			if err := checkText(k); err != nil {
				return nil, nil, err
			}
			ev, et, err := encodeValue(e, depth+1)
			if err != nil {
				return nil, nil, err
			}
			vals[k] = ev
			if et != nil {
				if typs == nil {
					typs = map[string]any{}
				}
				typs[k] = et
			}
		}
		if typs == nil {
			return vals, nil, nil
		}
		return vals, typs, nil
	case []any:
		vals := make([]any, len(v))
		typs := make([]any, len(v))
		any := false
		for i, e := range v {
			ev, et, err := encodeValue(e, depth+1)
			if err != nil {
				return nil, nil, err
			}
			vals[i] = ev
			if et != nil {
				typs[i], any = et, true
			} else {
				typs[i] = ""
			}
		}
		if !any {
			return vals, nil, nil
		}
		return vals, typs, nil
	}
	if s, ok := scalarText(v); ok {
		return s, scalarType(v), nil
	}
	if list, ok := typedList(v); ok {
		vals := make([]any, len(list))
		for i, e := range list {
			s, _ := scalarText(e)
			if err := checkText(s); err != nil {
				return nil, nil, err
			}
			vals[i] = s
		}
		if len(list) == 0 {
			// An empty typed list has no element to take the type from.
			return vals, "[]" + map[string]string{"[]string": "s", "[]int64": "i", "[]uint64": "u", "[]float64": "f", "[]bool": "b", "[]time.Time": "t"}[fmt.Sprintf("%T", v)], nil
		}
		t := scalarType(list[0])
		if t == "" {
			t = "s"
		}
		return vals, "[]" + t, nil
	}
	return nil, nil, quarry.Errorf(quarry.EINVALID, "Event fields cannot hold a %T.", v)
}

func decodeFields(fields, types string) (map[string]any, error) {
	if fields == "" || fields == "{}" {
		return nil, nil
	}
	var vals map[string]any
	if err := json.Unmarshal([]byte(fields), &vals); err != nil {
		return nil, fmt.Errorf("decode fields: %w", err)
	}
	if types == "" {
		return vals, nil
	}
	var typs map[string]any
	if err := json.Unmarshal([]byte(types), &typs); err != nil {
		return nil, fmt.Errorf("decode field types: %w", err)
	}
	for k, t := range typs {
		v, err := decodeValue(vals[k], t)
		if err != nil {
			return nil, fmt.Errorf("decode field %q: %w", k, err)
		}
		vals[k] = v
	}
	return vals, nil
}

func decodeValue(v, t any) (any, error) {
	switch t := t.(type) {
	case nil:
		return v, nil
	case string:
		if v == nil {
			return nil, nil
		}
		if strings.HasPrefix(t, "[]") {
			list, _ := v.([]any)
			return decodeList(list, t[2:])
		}
		s, _ := v.(string)
		return decodeScalar(s, t)
	case []any:
		list, _ := v.([]any)
		if len(list) != len(t) {
			return nil, errors.New("types do not fit the list")
		}
		out := make([]any, len(list))
		for i := range list {
			var err error
			if out[i], err = decodeValue(list[i], t[i]); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		m, _ := v.(map[string]any)
		for k, et := range t {
			var err error
			if m[k], err = decodeValue(m[k], et); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("unknown type %v", t)
}

func decodeScalar(s, t string) (any, error) {
	switch t {
	case "", "s":
		return s, nil
	case "i":
		return strconv.ParseInt(s, 10, 64)
	case "u":
		return strconv.ParseUint(s, 10, 64)
	case "f":
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, err
		}
		return f, nil
	case "b":
		return strconv.ParseBool(s)
	case "t":
		return time.Parse(time.RFC3339Nano, s)
	}
	return nil, fmt.Errorf("unknown type %q", t)
}

func decodeList(list []any, t string) (any, error) {
	texts := make([]string, len(list))
	for i, e := range list {
		texts[i], _ = e.(string)
	}
	var err error
	conv := func(s string) any {
		v, e := decodeScalar(s, t)
		if e != nil {
			err = e
		}
		return v
	}
	switch t {
	case "s":
		return texts, nil
	case "i":
		out := make([]int64, len(texts))
		for i, s := range texts {
			out[i], _ = conv(s).(int64)
		}
		return out, err
	case "u":
		out := make([]uint64, len(texts))
		for i, s := range texts {
			out[i], _ = conv(s).(uint64)
		}
		return out, err
	case "f":
		out := make([]float64, len(texts))
		for i, s := range texts {
			out[i], _ = conv(s).(float64)
		}
		return out, err
	case "b":
		out := make([]bool, len(texts))
		for i, s := range texts {
			out[i], _ = conv(s).(bool)
		}
		return out, err
	case "t":
		out := make([]time.Time, len(texts))
		for i, s := range texts {
			out[i], _ = conv(s).(time.Time)
		}
		return out, err
	}
	return nil, fmt.Errorf("unknown list type %q", t)
}

// selection is an EventFilter made into SQL: conditions on events e, and the query that rows
// must also pass in Go (PostgreSQL, when SQL alone is not exact).
type selection struct {
	w       where
	q       *compiled
	goMatch bool
	// On SQLite, when the query needs Match: the conditions without the query (base) and the
	// query's exact condition without its narrowing one (exact), for windowed pages.
	base  where
	exact *cond
}

func (s *EventService) selection(f quarry.EventFilter) (*selection, error) {
	if f.ProjectID <= 0 {
		return nil, quarry.FieldError("project_id", "A project is needed.")
	}
	sel := &selection{}
	w := &sel.w
	w.add("e.project_id = ?", f.ProjectID)
	if !f.From.IsZero() {
		w.add("e.ts >= ?", ceilMicro(f.From))
	}
	if !f.To.IsZero() {
		w.add("e.ts < ?", ceilMicro(f.To))
	}
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		args := make([]any, len(vals))
		for i, v := range vals {
			args[i] = v
		}
		w.add(col+" IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", ")+")", args...)
	}
	in("e.host", f.Hosts)
	in("e.source", f.Sources)
	if len(f.Severities) > 0 {
		sev := make([]string, len(f.Severities))
		for i, v := range f.Severities {
			switch v {
			case "none":
				v = ""
			case quarry.SeverityAlarm, quarry.SeveritySuspicious:
			default:
				return nil, quarry.FieldError("severity", "Unknown severity %q.", v)
			}
			sev[i] = v
		}
		in("e.severity", sev)
	}
	if f.EvidenceID != 0 {
		w.add("e.evidence_id = ?", f.EvidenceID)
	}
	if f.Starred {
		w.add("e.starred = ?", true)
	}
	if strings.TrimSpace(f.Query) != "" {
		if strings.IndexByte(f.Query, 0) >= 0 {
			// Events cannot hold NUL, and the databases cannot take it as a parameter.
			return nil, quarry.FieldError("query", "The query cannot contain NUL characters.")
		}
		q, err := s.c.compile(f.Query)
		if err != nil {
			return nil, err
		}
		sel.q = q
		nBase, nBaseArgs := len(w.conds), len(w.args)
		if q.sup.isConst() {
			if !q.sup.val {
				w.add("1 = 0")
			}
		} else {
			w.add("("+q.sup.sql+")", q.sup.args...) // parenthesised: where joins with AND
		}
		if !q.exact {
			if s.db.dialect == DialectSQLite {
				fields := "''"
				if q.fields {
					fields = "e.fields"
				}
				// Rows that sub accepts match for sure; only the others need Match.
				m := cond{sql: "quarry_match(?, e.ts, e.timestamp_desc, e.source, e.host, e.username, e.message, e.path, e.severity, " + fields + ", e.field_types) = 1",
					args: []any{q.text}}
				m = or([]cond{q.sub, m})
				sel.base = where{conds: append([]string(nil), w.conds[:nBase]...), args: append([]any(nil), w.args[:nBaseArgs]...)}
				sel.exact = &m
				w.add("("+m.sql+")", m.args...)
			} else {
				sel.goMatch = true
			}
		}
	}
	return sel, nil
}

// match reports whether ev passes the part of the selection SQL could not do.
func (sel *selection) match(ev *quarry.Event) bool {
	return !sel.goMatch || query.Match(sel.q.node, ev)
}

// each streams the selected events in timeline order to fn, after the cursor (ts, id) when
// after is set. fn returns false to stop.
func (s *EventService) each(ctx context.Context, tx *Tx, sel *selection, desc bool, after *[2]int64, limit int, fn func(*quarry.Event) (bool, error)) error {
	w := sel.w
	w.conds = append([]string(nil), w.conds...)
	w.args = append([]any(nil), w.args...)
	if k := keyset(desc, after); k != nil {
		w.add(k.sql, k.args...)
	}
	order := " ORDER BY e.ts, e.id"
	if desc {
		order = " ORDER BY e.ts DESC, e.id DESC"
	}
	args := w.args
	if limit > 0 && !sel.goMatch {
		order += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := tx.query(ctx, "SELECT "+eventColumns+" FROM events e"+w.String()+order, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return err
		}
		if !sel.match(ev) {
			continue
		}
		more, err := fn(ev)
		if err != nil || !more {
			return err
		}
	}
	return rows.Err()
}

// count returns how many events the selection selects, stopping at upTo when it is above 0.
func (s *EventService) count(ctx context.Context, tx *Tx, sel *selection, upTo int64) (int64, error) {
	if !sel.goMatch {
		var n int64
		if upTo > 0 {
			args := append(append([]any(nil), sel.w.args...), upTo)
			err := tx.queryRow(ctx, "SELECT COUNT(*) FROM (SELECT 1 FROM events e"+sel.w.String()+" LIMIT ?) c", args...).Scan(&n)
			return n, err
		}
		err := tx.queryRow(ctx, "SELECT COUNT(*) FROM events e"+sel.w.String(), sel.w.args...).Scan(&n)
		return n, err
	}
	var n int64
	err := s.each(ctx, tx, sel, false, nil, 0, func(*quarry.Event) (bool, error) {
		n++
		return upTo <= 0 || n < upTo, nil
	})
	return n, err
}

// FindEvents returns a page of the events f selects, and how many it selects in all.
func (s *EventService) FindEvents(ctx context.Context, f quarry.EventFilter) (*quarry.EventPage, error) {
	return s.findEvents(ctx, f, true)
}

// FindEventsPage is FindEvents without the Total (it is -1). Counting every selected event is
// most of the cost of a broad query on a large timeline, while a page stops at its last event;
// a UI can show the page at once and ask CountEvents for the total next to it.
func (s *EventService) FindEventsPage(ctx context.Context, f quarry.EventFilter) (*quarry.EventPage, error) {
	return s.findEvents(ctx, f, false)
}

// CountEvents returns how many events f selects (FindEvents' Total).
func (s *EventService) CountEvents(ctx context.Context, f quarry.EventFilter) (int64, error) {
	sel, err := s.selection(f)
	if err != nil {
		return 0, err
	}
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	n, err := s.count(ctx, tx, sel, 0)
	return n, translate(err, "count events", "", "")
}

func (s *EventService) findEvents(ctx context.Context, f quarry.EventFilter, total bool) (*quarry.EventPage, error) {
	sel, err := s.selection(f)
	if err != nil {
		return nil, err
	}
	var after *[2]int64
	if f.Cursor != "" {
		ts, id, err := decodeCursor(f.Cursor, f.Desc)
		if err != nil {
			return nil, err
		}
		after = &[2]int64{ts, id}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	page := &quarry.EventPage{Events: []*quarry.Event{}, Total: -1}
	if total {
		if page.Total, err = s.count(ctx, tx, sel, f.TotalUpTo); err != nil {
			return nil, translate(err, "find events", "", "")
		}
		page.TotalExact = f.TotalUpTo <= 0 || page.Total < f.TotalUpTo
	}
	var got []*quarry.Event
	if sel.exact != nil {
		// The query needs Match. A term that many events have makes its trigram search cost about
		// as much as counting them, while the first page is usually among the next few thousand
		// events of the timeline: look there first, without the trigram search.
		if got, after, err = s.windowPage(ctx, tx, sel, f.Desc, after, limit+1); err != nil {
			return nil, translate(err, "find events", "", "")
		}
	}
	if len(got) <= limit && after != nil || sel.exact == nil {
		err = s.each(ctx, tx, sel, f.Desc, after, limit+1-len(got), func(ev *quarry.Event) (bool, error) {
			got = append(got, ev)
			return len(got) <= limit, nil
		})
		if err != nil {
			return nil, translate(err, "find events", "", "")
		}
	}
	more := len(got) > limit
	page.Events = append(page.Events, got[:min(len(got), limit)]...)
	if more {
		last := page.Events[len(page.Events)-1]
		page.Next = encodeCursor(f.Desc, last.Timestamp.UnixMicro(), last.ID)
	}
	return page, nil
}

// pageWindow is how many events of the timeline windowPage looks at.
const pageWindow = 5000

// windowPage returns up to n selected events among the s.window events that follow the cursor
// (in the filter's order, before the query), and where to continue: nil when the window held
// every remaining event, else its last event's (ts, id).
func (s *EventService) windowPage(ctx context.Context, tx *Tx, sel *selection, desc bool, after *[2]int64, n int) ([]*quarry.Event, *[2]int64, error) {
	inner := sel.base
	inner.conds = append([]string(nil), inner.conds...)
	inner.args = append([]any(nil), inner.args...)
	if k := keyset(desc, after); k != nil {
		inner.add(k.sql, k.args...)
	}
	order := " ORDER BY e.ts, e.id"
	if desc {
		order = " ORDER BY e.ts DESC, e.id DESC"
	}
	args := append(append(append([]any(nil), inner.args...), s.window), sel.exact.args...)
	rows, err := tx.query(ctx, "SELECT "+eventColumns+" FROM (SELECT * FROM events e"+inner.String()+order+" LIMIT ?) AS e WHERE "+
		sel.exact.sql+order+" LIMIT ?", append(args, n)...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var got []*quarry.Event
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, nil, err
		}
		got = append(got, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(got) >= n {
		return got, nil, nil
	}
	var last [2]int64
	err = tx.queryRow(ctx, "SELECT e.ts, e.id FROM events e"+inner.String()+order+" LIMIT 1 OFFSET ?", append(inner.args, s.window-1)...).Scan(&last[0], &last[1])
	if errors.Is(err, sql.ErrNoRows) {
		return got, nil, nil // the window reached the end
	}
	if err != nil {
		return nil, nil, err
	}
	return got, &last, nil
}

// keyset is the condition that an event comes after the cursor position in the order.
func keyset(desc bool, after *[2]int64) *cond {
	if after == nil {
		return nil
	}
	if desc {
		return &cond{sql: "(e.ts < ? OR (e.ts = ? AND e.id < ?))", args: []any{after[0], after[0], after[1]}}
	}
	return &cond{sql: "(e.ts > ? OR (e.ts = ? AND e.id > ?))", args: []any{after[0], after[0], after[1]}}
}

// FindEventByID returns event id of the project, or ENOTFOUND.
func (s *EventService) FindEventByID(ctx context.Context, projectID, id int64) (*quarry.Event, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	ev, err := scanEvent(tx.queryRow(ctx, "SELECT "+eventColumns+" FROM events e WHERE e.id = ? AND e.project_id = ?", id, projectID))
	if err != nil {
		return nil, translate(err, "find event", "Event not found.", "")
	}
	return ev, nil
}

// EachEvent streams every event f selects to fn, in timeline order, in one read transaction.
func (s *EventService) EachEvent(ctx context.Context, f quarry.EventFilter, fn func(*quarry.Event) error) error {
	sel, err := s.selection(f)
	if err != nil {
		return err
	}
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var fnErr error
	err = s.each(ctx, tx, sel, f.Desc, nil, 0, func(ev *quarry.Event) (bool, error) {
		if err := fn(ev); err != nil {
			fnErr = err
			return false, nil
		}
		return true, nil
	})
	if fnErr != nil {
		return fnErr
	}
	return translate(err, "each event", "", "")
}

// histogramSteps are the round steps Histogram chooses from.
var histogramSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 30 * 24 * time.Hour,
	60 * 24 * time.Hour, 90 * 24 * time.Hour, 180 * 24 * time.Hour, 365 * 24 * time.Hour,
}

// autoStep returns the smallest round step that cuts span into at most 120 buckets.
func autoStep(span time.Duration) time.Duration {
	for _, st := range histogramSteps {
		if span <= 120*st {
			return st
		}
	}
	st := histogramSteps[len(histogramSteps)-1]
	for span > 120*st {
		st *= 2
	}
	return st
}

// Histogram counts the selected events in buckets of step, every bucket of the range included.
// Buckets start at multiples of step since the Unix epoch (UTC midnight for days).
func (s *EventService) Histogram(ctx context.Context, f quarry.EventFilter, step time.Duration) ([]quarry.HistogramBucket, time.Duration, error) {
	if step < 0 || (step > 0 && step < time.Microsecond) {
		return nil, 0, quarry.FieldError("step", "The step must be at least a microsecond.")
	}
	sel, err := s.selection(f)
	if err != nil {
		return nil, 0, err
	}
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	// The range: the filter's, or the selected events'.
	var lo, hi int64 // [lo, hi) in microseconds
	if !f.From.IsZero() && !f.To.IsZero() {
		lo, hi = ceilMicro(f.From), ceilMicro(f.To)
	} else {
		var first, last sql.NullInt64
		if !sel.goMatch {
			err = tx.queryRow(ctx, "SELECT MIN(e.ts), MAX(e.ts) FROM events e"+sel.w.String(), sel.w.args...).Scan(&first, &last)
		} else {
			err = s.each(ctx, tx, sel, false, nil, 0, func(ev *quarry.Event) (bool, error) {
				us := ev.Timestamp.UnixMicro()
				if !first.Valid || us < first.Int64 {
					first = sql.NullInt64{Int64: us, Valid: true}
				}
				if !last.Valid || us > last.Int64 {
					last = sql.NullInt64{Int64: us, Valid: true}
				}
				return true, nil
			})
		}
		if err != nil {
			return nil, 0, translate(err, "histogram", "", "")
		}
		if !first.Valid {
			if step == 0 {
				step = time.Second
			}
			return []quarry.HistogramBucket{}, step, nil
		}
		lo, hi = first.Int64, last.Int64+1
		if !f.From.IsZero() {
			lo = ceilMicro(f.From)
		}
		if !f.To.IsZero() {
			hi = ceilMicro(f.To)
		}
	}
	if hi <= lo {
		if step == 0 {
			step = time.Second
		}
		return []quarry.HistogramBucket{}, step, nil
	}
	if step == 0 {
		step = autoStep(time.Duration(hi-lo) * time.Microsecond)
	}
	stepUs := max(step.Microseconds(), 1)
	start := floorDiv(lo, stepUs) * stepUs
	n := (hi - start + stepUs - 1) / stepUs
	if n > maxHistogramBuckets {
		return nil, 0, quarry.FieldError("step", "The step is too small for the time range (%d buckets; at most %d).", n, maxHistogramBuckets)
	}
	counts := make([]int64, n)
	w := sel.w
	w.conds = append(append([]string(nil), w.conds...), "e.ts >= ?", "e.ts < ?")
	w.args = append(append([]any(nil), w.args...), start, hi)
	if !sel.goMatch {
		rows, err := tx.query(ctx, "SELECT (e.ts - ?) / ?, COUNT(*) FROM events e"+w.String()+" GROUP BY 1", append([]any{start, stepUs}, w.args...)...)
		if err != nil {
			return nil, 0, translate(err, "histogram", "", "")
		}
		defer rows.Close()
		for rows.Next() {
			var b, c int64
			if err := rows.Scan(&b, &c); err != nil {
				return nil, 0, translate(err, "histogram", "", "")
			}
			if b >= 0 && b < n {
				counts[b] += c
			}
		}
		if err := rows.Err(); err != nil {
			return nil, 0, translate(err, "histogram", "", "")
		}
	} else {
		sub := &selection{w: w, q: sel.q, goMatch: true}
		err := s.each(ctx, tx, sub, false, nil, 0, func(ev *quarry.Event) (bool, error) {
			if b := (ev.Timestamp.UnixMicro() - start) / stepUs; b >= 0 && b < n {
				counts[b]++
			}
			return true, nil
		})
		if err != nil {
			return nil, 0, translate(err, "histogram", "", "")
		}
	}
	out := make([]quarry.HistogramBucket, n)
	for i := range out {
		out[i] = quarry.HistogramBucket{Start: time.UnixMicro(start + int64(i)*stepUs).UTC(), Count: counts[i]}
	}
	return out, time.Duration(stepUs) * time.Microsecond, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// facetColumns are the event columns Facet counts directly.
var facetColumns = map[string]string{
	"host": "e.host", "source": "e.source", "user": "e.username", "severity": "e.severity",
	"timestamp_desc": "e.timestamp_desc", "path": "e.path",
}

// Facet returns the limit (default 10, at most 1000) most frequent values of field among the
// selected events, most frequent first. field is host, source, user, severity, timestamp_desc,
// path, or a key of Fields, found exactly (lists count each element; nested maps are not values).
// Events without the field are not counted; top-level fields count "" (severity "" is none).
func (s *EventService) Facet(ctx context.Context, f quarry.EventFilter, field string, limit int) ([]quarry.FacetValue, error) {
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, MaxLimit)
	ref := query.LookupField(field)
	col := facetColumns[ref.Top]
	if field == "" || (ref.Top != "" && col == "") {
		return nil, quarry.FieldError("field", "Cannot count the values of %q.", field)
	}
	if err := checkText(ref.Key); err != nil {
		return nil, err
	}
	sel, err := s.selection(f)
	if err != nil {
		return nil, err
	}
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	out := []quarry.FacetValue{}
	if sel.goMatch {
		counts := map[string]int64{}
		err := s.each(ctx, tx, sel, false, nil, 0, func(ev *quarry.Event) (bool, error) {
			for _, v := range facetValues(ev, ref) {
				counts[v]++
			}
			return true, nil
		})
		if err != nil {
			return nil, translate(err, "facet", "", "")
		}
		for v, c := range counts {
			out = append(out, quarry.FacetValue{Value: v, Count: c})
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Count != out[j].Count {
				return out[i].Count > out[j].Count
			}
			return out[i].Value < out[j].Value
		})
		if len(out) > limit {
			out = out[:limit]
		}
		return out, nil
	}
	var q string
	var args []any
	switch {
	case col != "":
		q = "SELECT " + col + ", COUNT(*) AS n FROM events e" + sel.w.String() + " GROUP BY " + col
		args = sel.w.args
	case s.db.dialect == DialectSQLite:
		if strings.ContainsAny(ref.Key, "\"\\") {
			return nil, quarry.FieldError("field", "Cannot count the values of %q.", field)
		}
		path := `$."` + ref.Key + `"`
		q = "SELECT j.value, COUNT(*) AS n FROM events e, json_each(e.fields, ?) j" + sel.w.String() +
			" AND j.type = 'text' AND json_type(e.fields, ?) IN ('text', 'array') GROUP BY j.value"
		args = append(append([]any{path}, sel.w.args...), path)
	default:
		q = `SELECT v.value, COUNT(*) AS n FROM events e CROSS JOIN LATERAL jsonb_array_elements(
			CASE jsonb_typeof(e.fields -> ?::text) WHEN 'array' THEN e.fields -> ?::text ELSE jsonb_build_array(e.fields -> ?::text) END) AS a(elem)
			CROSS JOIN LATERAL (SELECT a.elem #>> '{}' AS value) AS v` + sel.w.String() + " AND jsonb_typeof(a.elem) = 'string' GROUP BY v.value"
		args = append([]any{ref.Key, ref.Key, ref.Key}, sel.w.args...)
	}
	rows, err := tx.query(ctx, q+" ORDER BY n DESC, 1 LIMIT ?", append(args, limit)...)
	if err != nil {
		return nil, translate(err, "facet", "", "")
	}
	defer rows.Close()
	for rows.Next() {
		var v quarry.FacetValue
		if err := rows.Scan(&v.Value, &v.Count); err != nil {
			return nil, translate(err, "facet", "", "")
		}
		out = append(out, v)
	}
	return out, translate(rows.Err(), "facet", "", "")
}

// facetValues returns what Facet counts for ev, as the SQL of Facet does.
func facetValues(ev *quarry.Event, ref query.FieldRef) []string {
	switch ref.Top {
	case "host":
		return []string{ev.Host}
	case "source":
		return []string{ev.Source}
	case "user":
		return []string{ev.User}
	case "severity":
		return []string{ev.Severity}
	case "timestamp_desc":
		return []string{ev.TimestampDesc}
	case "path":
		return []string{ev.Path}
	}
	v, ok := ev.Fields[ref.Key]
	if !ok {
		return nil
	}
	if s, ok := scalarText(v); ok {
		return []string{s}
	}
	list, ok := typedList(v)
	if !ok {
		list, _ = v.([]any)
	}
	var out []string
	for _, e := range list {
		if s, ok := scalarText(e); ok {
			out = append(out, s)
		}
	}
	return out
}

// StarEvents sets or clears the star of the project's events ids and returns how many changed.
func (s *EventService) StarEvents(ctx context.Context, projectID int64, ids []int64, starred bool) (int64, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var n int64
	for chunk := range chunks(ids, 500) {
		args := []any{starred, projectID, starred}
		for _, id := range chunk {
			args = append(args, id)
		}
		res, err := tx.exec(ctx, "UPDATE events SET starred = ? WHERE project_id = ? AND starred <> ? AND id IN ("+placeholders(len(chunk))+")", args...)
		if err != nil {
			return 0, translate(err, "star events", "", "")
		}
		c, _ := res.RowsAffected()
		n += c
	}
	return n, tx.Commit()
}

// StarQuery sets or clears the star of every event f selects and returns how many changed.
func (s *EventService) StarQuery(ctx context.Context, f quarry.EventFilter, starred bool) (int64, error) {
	sel, err := s.selection(f)
	if err != nil {
		return 0, err
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if sel.goMatch {
		ids, err := s.selectedIDs(ctx, tx, sel)
		if err != nil {
			return 0, translate(err, "star events", "", "")
		}
		var n int64
		for chunk := range chunks(ids, 500) {
			args := []any{starred, starred}
			for _, id := range chunk {
				args = append(args, id)
			}
			res, err := tx.exec(ctx, "UPDATE events SET starred = ? WHERE starred <> ? AND id IN ("+placeholders(len(chunk))+")", args...)
			if err != nil {
				return 0, translate(err, "star events", "", "")
			}
			c, _ := res.RowsAffected()
			n += c
		}
		return n, tx.Commit()
	}
	res, err := tx.exec(ctx, "UPDATE events SET starred = ? WHERE starred <> ? AND id IN (SELECT e.id FROM events e"+sel.w.String()+")",
		append([]any{starred, starred}, sel.w.args...)...)
	if err != nil {
		return 0, translate(err, "star events", "", "")
	}
	n, _ := res.RowsAffected()
	return n, tx.Commit()
}

// selectedIDs returns the ids of the selected events.
func (s *EventService) selectedIDs(ctx context.Context, tx *Tx, sel *selection) ([]int64, error) {
	var ids []int64
	err := s.each(ctx, tx, sel, false, nil, 0, func(ev *quarry.Event) (bool, error) {
		ids = append(ids, ev.ID)
		return true, nil
	})
	return ids, err
}

// CommentEvents adds c's text, by c.Author, to the project's events ids or, when ids is empty,
// to every event f selects; it returns how many events got the comment. f.ProjectID is the
// project in both cases; c's ID, ProjectID, EventID and CreatedAt are set by the store.
func (s *EventService) CommentEvents(ctx context.Context, f quarry.EventFilter, ids []int64, c quarry.EventComment) (int64, error) {
	c.Text = strings.TrimSpace(c.Text)
	switch {
	case c.Text == "":
		return 0, quarry.FieldError("text", "The comment is empty.")
	case utf8.RuneCountInString(c.Text) > maxCommentLength:
		return 0, quarry.FieldError("text", "The comment is longer than %d characters.", maxCommentLength)
	case strings.TrimSpace(c.Author) == "":
		return 0, quarry.FieldError("author", "A comment needs an author.")
	}
	if err := checkText(c.Text); err != nil {
		return 0, err
	}
	if err := checkText(c.Author); err != nil {
		return 0, err
	}
	var sel *selection
	if len(ids) == 0 {
		var err error
		if sel, err = s.selection(f); err != nil {
			return 0, err
		}
	} else if f.ProjectID <= 0 {
		return 0, quarry.FieldError("project_id", "A project is needed.")
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if sel != nil && !sel.goMatch {
		// Everything in SQL: the comments, then the counts of the events that got one.
		res, err := tx.exec(ctx, "INSERT INTO event_comments (project_id, event_id, author, text, created_at) SELECT e.project_id, e.id, ?, ?, ? FROM events e"+
			sel.w.String()+" ORDER BY e.id", append([]any{c.Author, c.Text, tx.now}, sel.w.args...)...)
		if err != nil {
			return 0, translate(err, "comment events", "", "")
		}
		n, _ := res.RowsAffected()
		if _, err := tx.exec(ctx, "UPDATE events SET comments = comments + 1 WHERE id IN (SELECT e.id FROM events e"+sel.w.String()+")", sel.w.args...); err != nil {
			return 0, translate(err, "comment events", "", "")
		}
		return n, tx.Commit()
	}
	if sel != nil {
		if ids, err = s.selectedIDs(ctx, tx, sel); err != nil {
			return 0, translate(err, "comment events", "", "")
		}
	}
	var n int64
	for chunk := range chunks(dedupe(ids), 500) {
		args := []any{c.Author, c.Text, tx.now, f.ProjectID}
		for _, id := range chunk {
			args = append(args, id)
		}
		res, err := tx.exec(ctx, "INSERT INTO event_comments (project_id, event_id, author, text, created_at) SELECT e.project_id, e.id, ?, ?, ? FROM events e WHERE e.project_id = ? AND e.id IN ("+
			placeholders(len(chunk))+") ORDER BY e.id", args...)
		if err != nil {
			return 0, translate(err, "comment events", "", "")
		}
		c, _ := res.RowsAffected()
		n += c
		if _, err := tx.exec(ctx, "UPDATE events SET comments = comments + 1 WHERE project_id = ? AND id IN ("+placeholders(len(chunk))+")", args[3:]...); err != nil {
			return 0, translate(err, "comment events", "", "")
		}
	}
	return n, tx.Commit()
}

// FindComments returns the comments of the project's event, oldest first; ENOTFOUND when the
// project has no such event.
func (s *EventService) FindComments(ctx context.Context, projectID, eventID int64) ([]*quarry.EventComment, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	n, err := tx.count(ctx, "SELECT COUNT(*) FROM events WHERE id = ? AND project_id = ?", eventID, projectID)
	if err != nil {
		return nil, translate(err, "find comments", "", "")
	}
	if n == 0 {
		return nil, quarry.Errorf(quarry.ENOTFOUND, "Event not found.")
	}
	rows, err := tx.query(ctx, "SELECT id, project_id, event_id, author, text, created_at FROM event_comments WHERE event_id = ? ORDER BY id", eventID)
	if err != nil {
		return nil, translate(err, "find comments", "", "")
	}
	defer rows.Close()
	list := []*quarry.EventComment{}
	for rows.Next() {
		var c quarry.EventComment
		if err := rows.Scan(&c.ID, &c.ProjectID, &c.EventID, &c.Author, &c.Text, timeCol(&c.CreatedAt)); err != nil {
			return nil, translate(err, "find comments", "", "")
		}
		list = append(list, &c)
	}
	return list, translate(rows.Err(), "find comments", "", "")
}

// UpdateEventDetections stores the Severity and Detections of events, found by ID and ProjectID;
// an event that is gone is skipped (it was deleted by a reprocess meanwhile).
func (s *EventService) UpdateEventDetections(ctx context.Context, events []*quarry.Event) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, ev := range events {
		switch ev.Severity {
		case "", quarry.SeveritySuspicious, quarry.SeverityAlarm:
		default:
			return quarry.Errorf(quarry.EINVALID, "Unknown severity %q.", ev.Severity)
		}
		detections := ""
		if len(ev.Detections) > 0 {
			b, err := json.Marshal(ev.Detections)
			if err != nil {
				return fmt.Errorf("update detections: %w", err)
			}
			detections = string(b)
		}
		if _, err := tx.exec(ctx, "UPDATE events SET severity = ?, detections = ? WHERE id = ? AND project_id = ?",
			ev.Severity, detections, ev.ID, ev.ProjectID); err != nil {
			return translate(err, "update detections", "", "")
		}
	}
	return tx.Commit()
}

// DeleteEvidenceEvents removes the events of an evidence item, with their comments and their
// entries in the full-text index, and returns how many events it removed.
func (s *EventService) DeleteEvidenceEvents(ctx context.Context, evidenceID int64) (int64, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, "DELETE FROM event_comments WHERE event_id IN (SELECT id FROM events WHERE evidence_id = ?)", evidenceID); err != nil {
		return 0, translate(err, "delete events", "", "")
	}
	var ids []int64
	if s.db.search != nil {
		rows, err := tx.query(ctx, "SELECT id FROM events WHERE evidence_id = ? ORDER BY id", evidenceID)
		if err != nil {
			return 0, translate(err, "delete events", "", "")
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return 0, translate(err, "delete events", "", "")
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, translate(err, "delete events", "", "")
		}
	}
	res, err := tx.exec(ctx, "DELETE FROM events WHERE evidence_id = ?", evidenceID)
	if err != nil {
		return 0, translate(err, "delete events", "", "")
	}
	n, _ := res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	if err := s.db.forgetSearch(ctx, ids); err != nil {
		return n, fmt.Errorf("delete events: forget them in the full-text index: %w", err)
	}
	return n, nil
}

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

// chunks yields s in pieces of at most n.
func chunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

func dedupe(ids []int64) []int64 {
	seen := make(map[int64]bool, len(ids))
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
