package sqldb

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/query"
)

// How a query becomes SQL.
//
// The semantics of a query are query.Match's, and Match is what decides: on SQLite it runs inside
// the query as the function quarry_match (registered with the driver in event.go), on PostgreSQL
// in Go on the rows the database returns. SQL only saves Match work, with two conditions per node:
//
//   - sup is true of every event the node matches (a superset). The search document (searchDoc)
//     holds the folded text of every value, so a term that must occur in some value can only
//     match rows whose document has its trigrams, which the trigram indexes (FTS5 on SQLite,
//     pg_trgm on PostgreSQL) find without a scan.
//   - sub is true only of events the node matches (a subset): the value byte for byte in its
//     column or Fields key, a LIKE that ignores at most the case of ASCII letters. Rows that sub
//     accepts skip Match.
//
// NOT x narrows to NOT sub(x) and is sure for NOT sup(x). Timestamp terms and ranges are exact
// (sup = sub), and a query made of them needs no Match at all.
//
// The conditions compare the values as the store keeps them (see encodeFields), so what a query
// selects is what Match accepts on the event as FindEventByID returns it.

// cond is a SQL condition with its arguments. The zero value with always set is TRUE or FALSE.
type cond struct {
	sql  string
	args []any
	// When sql is "", val is the condition's constant value.
	val bool
}

var (
	condTrue  = cond{val: true}
	condFalse = cond{val: false}
)

func (c cond) isConst() bool { return c.sql == "" }

// compiled is a query compiled for one dialect.
type compiled struct {
	node   query.Node
	text   string // the query as typed, for quarry_match
	sup    cond
	sub    cond // without trigram searches
	exact  bool // sup is exactly the query: no Match needed
	fields bool // the query reads Fields (free text or a Fields key), so Match needs them decoded
}

// compiler turns query trees into conditions for one dialect.
type compiler struct {
	dialect string
	// noIndex leaves the trigram searches out (as TRUE): for the sub condition that decides
	// row by row whether Match must run, where a search would be evaluated in full.
	noIndex bool
}

func (c *compiler) compile(text string) (*compiled, error) {
	n, err := query.Parse(text)
	if err != nil {
		return nil, err // a *query.SyntaxError: EINVALID with its column
	}
	sup, sub := c.node(n)
	q := &compiled{node: n, text: text, sup: sup, sub: sub}
	q.exact = sameCond(sup, sub)
	if !q.exact {
		// Replacing a search (part of a sup) with TRUE keeps a sub a subset.
		_, q.sub = (&compiler{dialect: c.dialect, noIndex: true}).node(n)
	}
	query.Walk(n, func(n query.Node) bool {
		switch n := n.(type) {
		case *query.Term:
			if n.Field == "" || query.LookupField(n.Field).Top == "" {
				q.fields = true
			}
		case *query.Range:
			if query.LookupField(n.Field).Top == "" {
				q.fields = true
			}
		}
		return true
	})
	return q, nil
}

// sameCond reports whether two conditions are the same, so that the one is exact.
func sameCond(a, b cond) bool {
	if a.isConst() || b.isConst() {
		return a.isConst() && b.isConst() && a.val == b.val
	}
	if a.sql != b.sql || len(a.args) != len(b.args) {
		return false
	}
	for i := range a.args {
		if a.args[i] != b.args[i] {
			return false
		}
	}
	return true
}

// node returns sup and sub for n.
func (c *compiler) node(n query.Node) (sup, sub cond) {
	switch n := n.(type) {
	case *query.And:
		sups, subs := make([]cond, len(n.Children)), make([]cond, len(n.Children))
		for i, ch := range n.Children {
			sups[i], subs[i] = c.node(ch)
		}
		return and(sups), and(subs)
	case *query.Or:
		sups, subs := make([]cond, len(n.Children)), make([]cond, len(n.Children))
		for i, ch := range n.Children {
			sups[i], subs[i] = c.node(ch)
		}
		return or(sups), or(subs)
	case *query.Not:
		s, b := c.node(n.Child)
		return not(b), not(s)
	case *query.Term:
		return c.term(n)
	case *query.Range:
		return c.rng(n)
	}
	return condTrue, condFalse
}

func and(cs []cond) cond {
	var parts []string
	var args []any
	for _, c := range cs {
		if c.isConst() {
			if !c.val {
				return condFalse
			}
			continue
		}
		parts = append(parts, "("+c.sql+")")
		args = append(args, c.args...)
	}
	if len(parts) == 0 {
		return condTrue
	}
	return cond{sql: strings.Join(parts, " AND "), args: args}
}

func or(cs []cond) cond {
	var parts []string
	var args []any
	for _, c := range cs {
		if c.isConst() {
			if c.val {
				return condTrue
			}
			continue
		}
		parts = append(parts, "("+c.sql+")")
		args = append(args, c.args...)
	}
	if len(parts) == 0 {
		return condFalse
	}
	return cond{sql: strings.Join(parts, " OR "), args: args}
}

func not(c cond) cond {
	if c.isConst() {
		return cond{val: !c.val}
	}
	// A leaf may be NULL (a Fields key that is absent), and NOT NULL is NULL, not TRUE.
	return cond{sql: "NOT COALESCE((" + c.sql + "), FALSE)", args: c.args}
}

// contains is the condition that the search document contains s (folded already). Fewer than
// three characters cannot use the trigram index, so they narrow nothing.
func (c *compiler) contains(s string) cond {
	if utf8.RuneCountInString(s) < 3 || c.noIndex {
		return condTrue
	}
	if c.dialect == DialectSQLite {
		// The index has the events up to its watermark; every later one is a candidate (search.go).
		return cond{sql: `e.id IN (SELECT rowid FROM search.events_fts WHERE events_fts MATCH ?
			UNION ALL SELECT id FROM events WHERE id > (SELECT indexed_to FROM search.search_state))`, args: []any{ftsTrigrams(s)}}
	}
	return cond{sql: `e.doc LIKE ? ESCAPE '\'`, args: []any{"%" + likeEscape(s) + "%"}}
}

// ftsTrigrams returns the FTS5 query for rows whose document has every trigram that covers s
// (s has at least three characters). The index keeps no positions (detail=none), which makes it
// several times smaller and faster to build; without positions it cannot check that the trigrams
// are adjacent, so it finds a superset of the rows that contain s, which is all it is used for.
func ftsTrigrams(s string) string {
	r := []rune(s)
	var parts []string
	seen := map[string]bool{}
	add := func(i int) {
		t := string(r[i : i+3])
		if !seen[t] {
			seen[t] = true
			parts = append(parts, `"`+strings.ReplaceAll(t, `"`, `""`)+`"`)
		}
	}
	// Short strings (a value, a number) take every trigram, which narrows best; long ones the
	// trigrams that do not overlap, and the last, so that every character is in one.
	step := 1
	if len(r) > 12 {
		step = 3
	}
	for i := 0; i+3 <= len(r); i += step {
		add(i)
	}
	add(len(r) - 3)
	return strings.Join(parts, " AND ")
}

// term compiles a term: exact for timestamps, otherwise narrowed by the search document.
func (c *compiler) term(t *query.Term) (sup, sub cond) {
	ref := query.LookupField(t.Field)
	switch {
	case t.Field == "":
		// Free text: the value occurs in a text, or (wildcard) its longest literal run does.
		if t.Wildcard {
			return c.contains(longestRun(t.Value, false, false)), c.likeAny(freeTextColumns, globToLike(t.Value))
		}
		return c.contains(fold(t.Value)), c.likeAny(freeTextColumns, "%"+likeEscape(t.Value)+"%")
	case ref.Top == "timestamp":
		if t.Wildcard {
			return condTrue, condFalse
		}
		tm, day, ok := parseTime(t.Value)
		if !ok {
			return condFalse, condFalse // the parser refuses these; nothing could match
		}
		var e cond
		if day {
			e = cond{sql: "e.ts >= ? AND e.ts < ?", args: []any{ceilMicro(tm), ceilMicro(tm.AddDate(0, 0, 1))}}
		} else if tm.Nanosecond()%1000 != 0 {
			return condFalse, condFalse // stored times have microseconds
		} else {
			e = cond{sql: "e.ts = ?", args: []any{tm.UnixMicro()}}
		}
		e = and([]cond{{sql: "e.ts <> ?", args: []any{zeroMicro}}, e})
		return e, e
	case ref.Top == "message":
		if t.Wildcard {
			return c.contains(longestRun(t.Value, false, false)), nonEmpty("e.message", c.likeAny([]string{"e.message"}, globToLike(t.Value)))
		}
		return c.contains(fold(t.Value)), nonEmpty("e.message", c.likeAny([]string{"e.message"}, "%"+likeEscape(t.Value)+"%"))
	}
	sup, sub = c.keyword(t, ref)
	// The value itself, byte for byte, matches in every branch of Match's keyword comparison (the
	// same text, the same number, the same instant), and a whole-value LIKE implies the glob.
	if col := keywordColumns[ref.Top]; col != "" {
		if t.Wildcard {
			return sup, nonEmpty(col, c.likeAny([]string{col}, globToLike(t.Value)))
		}
		return sup, nonEmpty(col, cond{sql: col + " = ?", args: []any{t.Value}})
	}
	if ref.Top == "" {
		if t.Wildcard {
			return sup, c.fieldText(ref.Key, "LIKE", globToLike(t.Value))
		}
		return sup, c.fieldText(ref.Key, "=", t.Value)
	}
	return sup, condFalse
}

// nonEmpty adds to c that col is not empty: an empty top-level field matches no term (free text
// is not a field, and "*" matches its empty texts).
func nonEmpty(col string, c cond) cond {
	return and([]cond{{sql: col + " <> ''"}, c})
}

// keywordColumns are the columns of the top-level keyword fields.
var keywordColumns = map[string]string{
	"host": "e.host", "user": "e.username", "source": "e.source", "path": "e.path",
	"timestamp_desc": "e.timestamp_desc", "severity": "e.severity",
}

// freeTextColumns are the top-level texts free text searches (besides Fields).
var freeTextColumns = []string{"e.message", "e.host", "e.username", "e.source"}

// likeAny is the condition that one of cols is LIKE pattern (escaped with \). LIKE is a sub
// condition: on SQLite it ignores the case of ASCII letters only, on PostgreSQL none, so a match
// is a match of Match's case-insensitive comparison too.
func (c *compiler) likeAny(cols []string, pattern string) cond {
	parts := make([]cond, len(cols))
	for i, col := range cols {
		parts[i] = cond{sql: col + ` LIKE ? ESCAPE '\'`, args: []any{pattern}}
	}
	return or(parts)
}

// fieldText is the condition that Fields has the key exactly, with a text (not a list or a map)
// that is op (= or LIKE) arg. It is a sub condition for Fields keys: Match looks up the exact key
// first.
func (c *compiler) fieldText(key, op, arg string) cond {
	escape := ""
	if op == "LIKE" {
		escape = ` ESCAPE '\'`
	}
	if c.dialect == DialectSQLite {
		if strings.ContainsAny(key, `"\`) || strings.ContainsFunc(key, unicode.IsControl) {
			return condFalse // no JSON path names it
		}
		path := `$."` + key + `"`
		return cond{sql: "json_type(e.fields, ?) = 'text' AND json_extract(e.fields, ?) " + op + " ?" + escape, args: []any{path, path, arg}}
	}
	return cond{sql: "jsonb_typeof(e.fields -> ?::text) = 'string' AND e.fields ->> ?::text " + op + " ?" + escape, args: []any{key, key, arg}}
}

// globToLike turns a glob pattern of the query language into a LIKE pattern escaped with \.
func globToLike(pattern string) string {
	var b strings.Builder
	for i := 0; i < len(pattern); {
		r, size := utf8.DecodeRuneInString(pattern[i:])
		i += size
		switch r {
		case '*':
			b.WriteByte('%')
			continue
		case '?':
			b.WriteByte('_')
			continue
		case '\\':
			if i < len(pattern) {
				r, size = utf8.DecodeRuneInString(pattern[i:])
				i += size
			}
		}
		switch r {
		case '%', '_', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// keyword compiles the superset condition of a keyword field's term.
func (c *compiler) keyword(t *query.Term, ref query.FieldRef) (sup, sub cond) {
	// A keyword field: the whole value. path, timestamp_desc and severity are not in the search
	// document (few distinct values that would cost much of its size), so they narrow nothing.
	switch ref.Top {
	case "path", "timestamp_desc", "severity":
		return condTrue, condFalse
	}
	if t.Wildcard {
		return c.contains(longestRun(t.Value, true, true)), condFalse
	}
	if n, ok := parseNumber(t.Value); ok {
		return c.contains(numberMark + canonicalNumber(n) + valueSep), condFalse
	}
	if _, day, ok := parseTime(t.Value); ok {
		if day {
			return c.contains(valueSep + fold(t.Value)), condFalse
		}
		return condTrue, condFalse // the same instant may be written otherwise
	}
	return c.contains(valueSep + fold(t.Value) + valueSep), condFalse
}

// rng compiles a range: exact on timestamp, not narrowed elsewhere.
func (c *compiler) rng(r *query.Range) (sup, sub cond) {
	if query.LookupField(r.Field).Top != "timestamp" {
		return condTrue, condFalse
	}
	parts := []cond{{sql: "e.ts <> ?", args: []any{zeroMicro}}}
	if r.Lo != "" {
		lo, day, ok := parseTime(r.Lo)
		if !ok {
			return condFalse, condFalse
		}
		switch {
		case day && !r.IncLo:
			parts = append(parts, cond{sql: "e.ts >= ?", args: []any{ceilMicro(lo.AddDate(0, 0, 1))}})
		case day || r.IncLo:
			parts = append(parts, cond{sql: "e.ts >= ?", args: []any{ceilMicro(lo)}})
		default:
			parts = append(parts, cond{sql: "e.ts > ?", args: []any{lo.UnixMicro()}})
		}
	}
	if r.Hi != "" {
		hi, day, ok := parseTime(r.Hi)
		if !ok {
			return condFalse, condFalse
		}
		switch {
		case day && r.IncHi:
			parts = append(parts, cond{sql: "e.ts < ?", args: []any{ceilMicro(hi.AddDate(0, 0, 1))}})
		case day || !r.IncHi:
			parts = append(parts, cond{sql: "e.ts < ?", args: []any{ceilMicro(hi)}})
		default:
			parts = append(parts, cond{sql: "e.ts <= ?", args: []any{hi.UnixMicro()}})
		}
	}
	e := and(parts)
	return e, e
}

// zeroMicro is the zero time.Time in microseconds: an event without a time, which no timestamp
// term matches.
var zeroMicro = time.Time{}.UnixMicro()

// ceilMicro is the smallest microsecond at or after t. (UnixMicro rounds down.)
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return us
}

// longestRun returns the longest run of literal characters of a glob pattern, folded, or "" when
// it is shorter than three characters. A run that starts (ends) the pattern starts (ends) the
// value, so when anchored, the value separators of the search document make it longer.
func longestRun(pattern string, anchorStart, anchorEnd bool) string {
	var runs []string
	var cur strings.Builder
	first := true
	flush := func(end bool) {
		s := fold(cur.String())
		if first && anchorStart {
			s = valueSep + s
		}
		if end && anchorEnd {
			s += valueSep
		}
		runs = append(runs, s)
		cur.Reset()
		first = false
	}
	for i := 0; i < len(pattern); {
		r, size := utf8.DecodeRuneInString(pattern[i:])
		i += size
		switch r {
		case '*', '?':
			flush(false)
			continue
		case '\\':
			if i < len(pattern) {
				r, size = utf8.DecodeRuneInString(pattern[i:])
				i += size
			}
		}
		cur.WriteRune(r)
	}
	flush(true)
	best := ""
	for _, r := range runs {
		if utf8.RuneCountInString(r) > utf8.RuneCountInString(best) {
			best = r
		}
	}
	return best
}

// The search document of an event: each value is preceded by valueSep, numbers are repeated in a
// canonical form after numberMark, and the last value is followed by valueSep. So "occurs in a
// value" is a substring of the document, "is a whole value" is valueSep+v+valueSep, and "equals
// the number n" is numberMark+canonical(n)+valueSep, which is at least three characters long even
// for one digit.
const (
	valueSep   = "\x1e"
	numberMark = "\x1f"
)

// searchDoc builds the search document of ev: every text the query language can look at, folded,
// except path, timestamp_desc and severity (see term).
func searchDoc(ev *quarry.Event) string {
	var b strings.Builder
	add := func(s string) {
		if s == "" {
			return
		}
		b.WriteString(valueSep)
		foldTo(&b, s)
		if n, ok := parseNumber(s); ok {
			b.WriteString(valueSep)
			b.WriteString(numberMark)
			b.WriteString(canonicalNumber(n))
		}
	}
	for _, s := range []string{ev.Message, ev.Host, ev.User, ev.Source} {
		add(s)
	}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 16 {
			return
		}
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e, depth+1)
			}
		case []any:
			for _, e := range v {
				walk(e, depth+1)
			}
		case nil:
		default:
			if s, ok := scalarText(v); ok {
				add(s)
			} else if list, ok := typedList(v); ok {
				for _, e := range list {
					walk(e, depth+1)
				}
			}
		}
	}
	for _, v := range ev.Fields {
		walk(v, 0)
	}
	b.WriteString(valueSep)
	return b.String()
}

// fold maps text so that texts that query.Match treats as equal ignoring case (strings.ToLower
// and strings.EqualFold) map to the same: each rune becomes the smallest rune of the case
// folding orbit of its lower case. It is coarser than either, which is all a superset needs.
func fold(s string) string {
	var b strings.Builder
	foldTo(&b, s)
	return b.String()
}

func foldTo(b *strings.Builder, s string) {
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteByte(byte(r))
		default:
			b.WriteRune(foldRune(r))
		}
	}
}

func foldRune(r rune) rune {
	r = unicode.ToLower(r)
	min := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < min {
			min = f
		}
	}
	return min
}

// canonicalNumber writes a number so that numbers query.Match finds equal write the same.
func canonicalNumber(n num) string {
	if n.f == 0 {
		return "0" // and not "-0", which Match finds equal
	}
	return strconv.FormatFloat(n.f, 'g', -1, 64)
}

// num is a number as query.Match's parseNumber reads it, kept as its float64 value: Match compares
// two numbers as float64 unless both are integers, and integers that are equal have one float64.
type num struct{ f float64 }

// parseNumber accepts what query.Match accepts as a number.
func parseNumber(s string) (num, bool) {
	f, ok := query.Number(s)
	return num{f}, ok
}

// parseTime reads a time as query.Match does: a date (the whole UTC day) or RFC 3339, or without
// a zone (UTC), with "T" or a space.
func parseTime(s string) (t time.Time, day, ok bool) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, true, true
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), false, true
		}
	}
	return time.Time{}, false, false
}

// Cursors are (ts, id) of the last event of a page, and the order they were made for.

func encodeCursor(desc bool, ts, id int64) string {
	d := "a"
	if desc {
		d = "d"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("e1.%s.%d.%d", d, ts, id)))
}

func decodeCursor(s string, desc bool) (ts, id int64, err error) {
	bad := quarry.Errorf(quarry.EINVALID, "The cursor is not valid for this query.")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) > 64 {
		return 0, 0, bad
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 4 || parts[0] != "e1" || (parts[1] == "d") != desc || (parts[1] != "a" && parts[1] != "d") {
		return 0, 0, bad
	}
	ts, err1 := strconv.ParseInt(parts[2], 10, 64)
	id, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || id <= 0 {
		return 0, 0, bad
	}
	return ts, id, nil
}

// matchCache keeps parsed queries for quarry_match, which gets the query text on every row.
var matchCache struct {
	sync.Mutex
	m map[string]*parsedQuery
}

// parsedQuery is a query for quarry_match. A query without NOT is monotone in the event's Fields:
// more fields can only make it match more, so when it matches the event without its Fields it
// matches the event, and decoding them (the dearest part of a match) can be skipped.
type parsedQuery struct {
	node     query.Node
	monotone bool
}

func cachedQuery(text string) (*parsedQuery, error) {
	matchCache.Lock()
	pq, ok := matchCache.m[text]
	matchCache.Unlock()
	if ok {
		return pq, nil
	}
	n, err := query.Parse(text)
	if err != nil {
		return nil, err
	}
	pq = &parsedQuery{node: n, monotone: true}
	query.Walk(n, func(n query.Node) bool {
		if _, ok := n.(*query.Not); ok {
			pq.monotone = false
		}
		return pq.monotone
	})
	matchCache.Lock()
	if matchCache.m == nil || len(matchCache.m) > 256 {
		matchCache.m = map[string]*parsedQuery{}
	}
	matchCache.m[text] = pq
	matchCache.Unlock()
	return pq, nil
}
