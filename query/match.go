package query

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/quarry-dfir/quarry"
)

// topFields are the Event fields a query names directly (case-insensitively).
var topFields = []string{"timestamp", "timestamp_desc", "source", "host", "user", "message", "path", "severity"}

// FieldRef is where a query field name points in an Event.
type FieldRef struct {
	Top string // a top-level field name in lower case, or "" for a key of Event.Fields
	Key string // the Event.Fields key, when Top is ""
}

// LookupField resolves a field name as written in a query: timestamp, timestamp_desc, source, host,
// user, message, path and severity (in any case) are Event's own fields; any other name is a key of
// Event.Fields, and "fields.X" names the key X even when X is also a top-level name. Fields keys are matched exactly first
// and then case-insensitively (see Match), so Key is the name as typed.
func LookupField(name string) FieldRef {
	for _, f := range topFields {
		if strings.EqualFold(name, f) {
			return FieldRef{Top: f}
		}
	}
	if len(name) > len("fields.") && strings.EqualFold(name[:len("fields.")], "fields.") {
		return FieldRef{Key: name[len("fields."):]}
	}
	return FieldRef{Key: name}
}

func isTimestampField(name string) bool { return LookupField(name).Top == "timestamp" }

// Match reports whether ev matches n. The rules, which a SQL compilation should follow:
//
//   - Free text (a Term without a field) matches when its value occurs, ignoring case, in the
//     message, host, user, source or the text of any Fields value. A wildcard term must match the
//     whole of one of those texts or one whitespace-separated word of them.
//   - message is a text field: a term or phrase matches when it occurs in it (ignoring case), a
//     wildcard when it matches the whole message or one word of it.
//   - Every other field is a keyword field: a term or phrase matches the whole value. Values that
//     both parse as decimal numbers compare as numbers (EventID:4625 matches int64 4625 and
//     "4625"); a time value (timestamp, or a time.Time in Fields) equals a date when it falls on
//     that UTC day and an RFC 3339 time when it is the same instant; other values compare as text,
//     ignoring case. A wildcard term matches the whole value's text, ignoring case; a time's text is
//     RFC 3339 in UTC.
//   - A range compares times when the value is a time (a date bound covers its whole UTC day:
//     [2024-01-01 TO 2024-01-31] is every instant of January 1 to 31, {2024-01-01 TO … excludes
//     January 1); numbers when every bound given is a number (a value that is not a number is then
//     outside the range); and otherwise the lower-cased texts, byte-wise. [* TO *] matches any
//     value that is present.
//   - A field that is absent, or a top-level text field that is empty, matches no term or range
//     (so NOT user:x matches events without a user). A list value matches when any element does.
//   - A Fields key is found exactly, then ignoring case, then by walking nested maps along the dots
//     of the name (process.name finds Fields["process"]["name"]).
func Match(n Node, ev *quarry.Event) bool {
	switch n := n.(type) {
	case *And:
		for _, c := range n.Children {
			if !Match(c, ev) {
				return false
			}
		}
		return true
	case *Or:
		for _, c := range n.Children {
			if Match(c, ev) {
				return true
			}
		}
		return false
	case *Not:
		return !Match(n.Child, ev)
	case *Term:
		return matchTerm(n, ev)
	case *Range:
		for _, v := range fieldValues(ev, LookupField(n.Field)) {
			if matchRange(n, v) {
				return true
			}
		}
	}
	return false
}

func matchTerm(t *Term, ev *quarry.Event) bool {
	if t.Field == "" {
		for _, s := range []string{ev.Message, ev.Host, ev.User, ev.Source} {
			if matchText(t, s) {
				return true
			}
		}
		for _, v := range fieldScalars(ev.Fields) {
			if matchText(t, text(v)) {
				return true
			}
		}
		return false
	}
	ref := LookupField(t.Field)
	if ref.Top == "message" {
		return ev.Message != "" && matchText(t, ev.Message)
	}
	for _, v := range fieldValues(ev, ref) {
		if matchKeyword(t, v) {
			return true
		}
	}
	return false
}

// matchText matches t against a text field: contained, or for a wildcard the whole or one word.
func matchText(t *Term, s string) bool {
	s = strings.ToLower(s)
	if !t.Wildcard {
		return strings.Contains(s, strings.ToLower(t.Value))
	}
	g := compileGlob(strings.ToLower(t.Value))
	if g.match(s) {
		return true
	}
	for _, w := range strings.FieldsFunc(s, unicode.IsSpace) {
		if g.match(w) {
			return true
		}
	}
	return false
}

func matchKeyword(t *Term, v any) bool {
	if t.Wildcard {
		return globMatch(strings.ToLower(t.Value), strings.ToLower(text(v)))
	}
	if tv, ok := v.(time.Time); ok {
		if want, day, ok := parseTime(t.Value); ok {
			if day {
				return !tv.Before(want) && tv.Before(want.AddDate(0, 0, 1))
			}
			return tv.Equal(want)
		}
	} else if a, ok := number(v); ok {
		if b, ok := parseNumber(t.Value); ok {
			return compareNum(a, b) == 0
		}
	}
	return strings.EqualFold(text(v), t.Value)
}

func matchRange(r *Range, v any) bool {
	if tv, ok := v.(time.Time); ok {
		if r.Lo != "" {
			lo, day, ok := parseTime(r.Lo)
			if !ok {
				return false
			}
			if day && !r.IncLo {
				lo = lo.AddDate(0, 0, 1) // after the whole day
			}
			if tv.Before(lo) || (!day && !r.IncLo && tv.Equal(lo)) {
				return false
			}
		}
		if r.Hi != "" {
			hi, day, ok := parseTime(r.Hi)
			if !ok {
				return false
			}
			if day && r.IncHi {
				hi = hi.AddDate(0, 0, 1) // up to the end of the day
			}
			if tv.After(hi) || ((day || !r.IncHi) && tv.Equal(hi)) {
				return false
			}
		}
		return true
	}
	lo, loOK := parseNumber(r.Lo)
	hi, hiOK := parseNumber(r.Hi)
	if (loOK || r.Lo == "") && (hiOK || r.Hi == "") && (loOK || hiOK) {
		// A numeric range: values that are not numbers are outside it.
		a, ok := number(v)
		return ok && (r.Lo == "" || inLo(compareNum(a, lo), r.IncLo)) &&
			(r.Hi == "" || inHi(compareNum(a, hi), r.IncHi))
	}
	s := strings.ToLower(text(v))
	return (r.Lo == "" || inLo(strings.Compare(s, strings.ToLower(r.Lo)), r.IncLo)) &&
		(r.Hi == "" || inHi(strings.Compare(s, strings.ToLower(r.Hi)), r.IncHi))
}

// inLo and inHi say whether a value that compares as c to a bound is within it.
func inLo(c int, inclusive bool) bool { return c > 0 || (c == 0 && inclusive) }
func inHi(c int, inclusive bool) bool { return c < 0 || (c == 0 && inclusive) }

// fieldValues returns the scalar values of a field in ev; none when it is absent or empty.
func fieldValues(ev *quarry.Event, ref FieldRef) []any {
	str := func(s string) []any {
		if s == "" {
			return nil
		}
		return []any{s}
	}
	switch ref.Top {
	case "timestamp":
		if ev.Timestamp.IsZero() {
			return nil
		}
		return []any{ev.Timestamp}
	case "timestamp_desc":
		return str(ev.TimestampDesc)
	case "source":
		return str(ev.Source)
	case "host":
		return str(ev.Host)
	case "user":
		return str(ev.User)
	case "message":
		return str(ev.Message)
	case "path":
		return str(ev.Path)
	case "severity":
		return str(ev.Severity)
	}
	v, ok := lookupKey(ev.Fields, ref.Key)
	if !ok {
		return nil
	}
	return appendScalars(nil, v, 0)
}

// lookupKey finds key in m: exactly, then ignoring case (the smallest such key, for determinism),
// then along the dots through nested maps.
func lookupKey(m map[string]any, key string) (any, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	var found []string
	for k := range m {
		if strings.EqualFold(k, key) {
			found = append(found, k)
		}
	}
	if len(found) > 0 {
		sort.Strings(found)
		return m[found[0]], true
	}
	head, rest, ok := strings.Cut(key, ".")
	if !ok {
		return nil, false
	}
	sub, isMap := m[head].(map[string]any)
	if !isMap {
		return nil, false
	}
	return lookupKey(sub, rest)
}

// fieldScalars returns every scalar value of a Fields map, in no particular order.
func fieldScalars(m map[string]any) []any {
	var out []any
	for _, v := range m {
		out = appendScalars(out, v, 0)
	}
	return out
}

// appendScalars flattens lists (to a small depth) into their elements. Maps are not scalars.
func appendScalars(dst []any, v any, depth int) []any {
	switch v := v.(type) {
	case nil, map[string]any:
		return dst
	case []any:
		if depth < 4 {
			for _, e := range v {
				dst = appendScalars(dst, e, depth+1)
			}
		}
		return dst
	case []string:
		for _, e := range v {
			dst = append(dst, e)
		}
		return dst
	case []int64:
		for _, e := range v {
			dst = append(dst, e)
		}
		return dst
	case []uint64:
		for _, e := range v {
			dst = append(dst, e)
		}
		return dst
	case []float64:
		for _, e := range v {
			dst = append(dst, e)
		}
		return dst
	case []bool:
		for _, e := range v {
			dst = append(dst, e)
		}
		return dst
	case []time.Time:
		for _, e := range v {
			dst = append(dst, e)
		}
		return dst
	}
	return append(dst, v)
}

// text is the string form of a scalar that text comparisons use.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32)
	}
	if n, ok := number(v); ok {
		switch n.kind {
		case numInt:
			return strconv.FormatInt(n.i, 10)
		case numUint:
			return strconv.FormatUint(n.u, 10)
		}
	}
	return ""
}

// parseTime reads a date (2024-01-31, meaning the whole UTC day, day=true) or a time: RFC 3339, or
// without a zone (then UTC), with "T" or a space.
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

// num is a number that compares exactly when both sides are integers.
type num struct {
	kind int
	i    int64
	u    uint64
	f    float64
}

const (
	numInt = iota
	numUint
	numFloat
)

func (n num) float() float64 {
	switch n.kind {
	case numInt:
		return float64(n.i)
	case numUint:
		return float64(n.u)
	}
	return n.f
}

func compareNum(a, b num) int {
	switch {
	case a.kind == numInt && b.kind == numInt:
		return cmp3(a.i < b.i, a.i > b.i)
	case a.kind == numUint && b.kind == numUint:
		return cmp3(a.u < b.u, a.u > b.u)
	case a.kind == numInt && b.kind == numUint:
		if a.i < 0 {
			return -1
		}
		return cmp3(uint64(a.i) < b.u, uint64(a.i) > b.u)
	case a.kind == numUint && b.kind == numInt:
		return -compareNum(b, a)
	}
	af, bf := a.float(), b.float()
	return cmp3(af < bf, af > bf)
}

func cmp3(less, more bool) int {
	if less {
		return -1
	} else if more {
		return 1
	}
	return 0
}

// number returns v as a number: Go numeric types, or a string that parseNumber accepts.
func number(v any) (num, bool) {
	switch v := v.(type) {
	case int:
		return num{kind: numInt, i: int64(v)}, true
	case int8:
		return num{kind: numInt, i: int64(v)}, true
	case int16:
		return num{kind: numInt, i: int64(v)}, true
	case int32:
		return num{kind: numInt, i: int64(v)}, true
	case int64:
		return num{kind: numInt, i: v}, true
	case uint:
		return num{kind: numUint, u: uint64(v)}, true
	case uint8:
		return num{kind: numUint, u: uint64(v)}, true
	case uint16:
		return num{kind: numUint, u: uint64(v)}, true
	case uint32:
		return num{kind: numUint, u: uint64(v)}, true
	case uint64:
		return num{kind: numUint, u: v}, true
	case float32:
		return finite(float64(v))
	case float64:
		return finite(v)
	case string:
		return parseNumber(v)
	}
	return num{}, false
}

func finite(f float64) (num, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return num{}, false
	}
	return num{kind: numFloat, f: f}, true
}

// Number reads s as Match reads a number and returns its float64 value: Match compares two
// numbers as float64 unless both are integers, and integers that are equal have one float64.
// A store that compiles queries (sqldb) uses it to agree with Match on what a number is.
func Number(s string) (float64, bool) {
	n, ok := parseNumber(s)
	if !ok {
		return 0, false
	}
	return n.float(), true
}

// parseNumber accepts decimal integers and floats (1, -4, 2.5, 1e3); not hex, not "inf" or "nan",
// so that text such as "nan" or "0x10" stays text.
func parseNumber(s string) (num, bool) {
	if s == "" || len(s) > 64 {
		return num{}, false
	}
	digit := false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r == '+' || r == '-' || r == '.' || r == 'e' || r == 'E':
		default:
			return num{}, false
		}
	}
	if !digit {
		return num{}, false
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return num{kind: numInt, i: i}, true
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return num{kind: numUint, u: u}, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return num{}, false
	}
	return finite(f)
}
