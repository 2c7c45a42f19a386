package sqldb_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/query"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

// words are the texts random events are made of: cases, unicode (including letters whose lower
// case and case folding disagree), numbers written several ways, dates, times, glob characters.
var words = []string{
	"logon", "Logon", "LOGON", "failed", "Failed", "powershell.exe", "PowerShell", "cmd.exe", `C:\Windows\System32`,
	"root", "ROOT", "admin", "Administrator", "sshd", "sudo", "web01", "WEB01", "db01", "Ünïcødé", "ünïcødé", "straße",
	"STRASSE", "ΣΊΣΥΦΟΣ", "σίσυφος", "\u212a", "k", "\u017f", "s", "\u0130", "i", "x", "ab", "a b", "4625", "04625", "4625.0",
	"4.625e3", "+4625", "4624", "-5", "0", "-0", "0.5", "1e400", "nan", "true", "FALSE", "2024-01-01", "2024-01-01T10:00:00Z",
	"2024-01-01T12:00:00+02:00", "2024-01-02", "*", "?", "a*b", "x?y", "\"quoted\"", "back\\slash", "tab\there", "new\nline",
	"dotted.name", "a:b", "fe80::1", "(paren)", "-dash", "EventID", "hello world", "the quick brown fox", "",
}

func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }

func randText(r *rand.Rand) string {
	n := r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = pick(r, words)
	}
	return strings.Join(parts, pick(r, []string{" ", " ", "", "-", "\t"}))
}

var genBase = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func randTime(r *rand.Rand) time.Time {
	t := genBase.Add(time.Duration(r.Int64N(int64(72*time.Hour))) / time.Microsecond * time.Microsecond)
	switch r.IntN(6) {
	case 0:
		return t.Truncate(time.Hour)
	case 1:
		return genBase.AddDate(0, 0, r.IntN(3))
	}
	return t
}

func randScalar(r *rand.Rand) any {
	switch r.IntN(12) {
	case 0:
		return pick(r, []int64{4625, 4624, -5, 0, 1, 42, math.MaxInt64, math.MinInt64})
	case 1:
		return pick(r, []uint64{4625, 0, 7, math.MaxUint64})
	case 2:
		return pick(r, []float64{4625, 0.5, -0.0, 1e21, 3.25, 4624.999, math.Inf(1), math.NaN(), 1e-7})
	case 3:
		return r.IntN(2) == 0
	case 4:
		t := randTime(r)
		if r.IntN(3) == 0 {
			t = t.In(time.FixedZone("CEST", 2*3600))
		}
		return t
	}
	return randText(r)
}

func randValue(r *rand.Rand, depth int) any {
	switch r.IntN(14) {
	case 0:
		return []string{randText(r), randText(r)}
	case 1:
		return []int64{4625, int64(r.IntN(10))}
	case 2:
		return []float64{0.5, float64(r.IntN(5))}
	case 3:
		return []time.Time{randTime(r)}
	case 4:
		return []any{randScalar(r), randScalar(r), nil}
	case 5:
		if depth < 2 {
			return map[string]any{"name": randScalar(r), "id": randValue(r, depth+1)}
		}
	case 6:
		return []uint64{1, 4625}
	case 7:
		return []bool{true}
	}
	return randScalar(r)
}

var keys = []string{"EventID", "eventid", "Channel", "CommandLine", "src_ip", "Count", "Ratio", "When", "Tags", "process", "process.name", "Empty"}

func randEvent(r *rand.Rand, projectID int64) *quarry.Event {
	ev := &quarry.Event{
		ProjectID: projectID, EvidenceID: int64(1 + r.IntN(3)), Timestamp: randTime(r),
		TimestampDesc: pick(r, []string{"Event Time", "Last Login", "", "Modification Time"}),
		Source:        pick(r, []string{"evtx", "syslog", "auth.log", "bash_history", ""}),
		Host:          pick(r, []string{"web01", "WEB01", "db01", "Ünïcødé", "", "4625", "10.0.0.1"}),
		User:          pick(r, []string{"root", "ROOT", "alice", "", "\u212a", "s", "\u017f", "4625.0"}),
		Message:       randText(r),
		Path:          pick(r, []string{"/var/log/auth.log", `C:\Windows\System32\winevt\Security.evtx`, ""}),
		Severity:      pick(r, []string{"", "", quarry.SeverityAlarm, quarry.SeveritySuspicious}),
	}
	if r.IntN(10) > 0 {
		ev.Fields = map[string]any{}
		for range r.IntN(5) {
			ev.Fields[pick(r, keys)] = randValue(r, 0)
		}
		if r.IntN(3) == 0 {
			ev.Fields["EventID"] = pick(r, []any{int64(4625), "4625", int64(4624), "4624", 4625.0, uint64(4625)})
		}
	}
	return ev
}

// matchQueries has every form of the query language, with the values the events hold.
var matchQueries = []string{
	// Free text, short and long, unicode, cases.
	"logon", "LOGON", "fail", "x", "ab", "a b", "4625", "ünï", "ÜNÏCØDÉ", "STRASSE", "straße", "σίσυφος", "ΣΊΣΥΦΟΣ", "\u212a", "k", "s", "\u017f", "\u0130", "i",
	`"hello world"`, `"quick brown"`, `"a b"`, `"tab\there"`, `back\\slash`, `"\"quoted\""`, "true", "2024-01-01", `a\:b`, `fe80\:\:1`,
	// Wildcards.
	"log*", "*shell*", "pow?rshell*", "*.exe", "?", "*", "s*", `a\*b`, `x\?y`, "*4625*", "l?gon",
	// Fields.
	"host:web01", "host:WEB01", "host:web*", "host:*01", "host:4625", "host:04625", "user:root", `user:"ROOT"`, "user:k", "user:\u212a", "user:s", "user:4625",
	"source:evtx", "source:auth.log", "severity:alarm", "severity:ALARM", "timestamp_desc:\"Event Time\"", "path:*Security*", `path:"/var/log/auth.log"`,
	"message:logon", "message:log*", "message:\"failed logon\"", "message:?", "message:*", "Message:LOGON",
	"EventID:4625", "eventid:4625", "EventID:4625.0", "EventID:\"4625\"", "EventID:4.625e3", "EventID:046*", "EventID:46?5", "EventID:4624",
	"fields.EventID:4625", "fields.eventid:4625", "FIELDS.EVENTID:4625",
	"Channel:logon", "CommandLine:*exe*", "src_ip:fe80::1", "Count:0", "Count:-0", "Count:0.5", "Count:true", "Count:nan", "Count:1e400",
	"Ratio:0.5", "Ratio:1e21", "Ratio:4624.999", "Ratio:1e-7", "When:2024-01-01", "When:2024-01-02", "When:2024-01-01T10:00:00Z",
	"When:2024-01-01T12:00:00+02:00", "When:2024-01-0*", "When:*Z",
	"process.name:logon", "process.name:*", "process.id:4625", "process:logon", "Tags:4625", "Tags:0.5",
	"Empty:*", "nosuchfield:*",
	// Ranges.
	"EventID:[4600 TO 4625]", "EventID:{4600 TO 4625}", "EventID:[4625 TO *]", "EventID:[* TO 4624]", "EventID:[* TO *]",
	"Count:[-10 TO 0]", "Count:{-5 TO 1}", "Ratio:[0.1 TO 1]", "Ratio:[1e20 TO *]",
	"host:[a TO m]", "host:{db01 TO web01]", "user:[r TO s]", "host:[* TO *]", "user:[* TO *]", "message:[a TO c]",
	"When:[2024-01-01 TO 2024-01-01]", "When:{2024-01-01 TO 2024-01-03}", "When:[2024-01-01T10:00:00Z TO *]", "When:[a TO z]",
	"timestamp:[2024-01-01 TO 2024-01-01]", "timestamp:{2024-01-01 TO *]", "timestamp:[2024-01-02T00:00:00Z TO 2024-01-02T12:00:00Z}",
	"timestamp:{2024-01-01T00:00:00Z TO 2024-01-02}", "timestamp:[* TO 2024-01-02T00:00:00Z]", "timestamp:[* TO *]",
	"timestamp:2024-01-02", "timestamp:2024-01-01T00:00:00Z", "timestamp:2024-01-01T02:00:00+02:00", "timestamp:2024-01-0*",
	"process.id:[0 TO 5000]", "Tags:[a TO z]",
	// Boolean structure.
	"logon AND failed", "logon OR root", "NOT logon", "-logon", "logon -failed", "NOT host:web01", "NOT user:*",
	"(logon OR sshd) AND NOT host:db01", "host:(web01 OR db01)", "user:(root OR admin) AND NOT (EventID:4625 OR Count:0)",
	"NOT (NOT logon)", "severity:alarm OR severity:suspicious", "NOT EventID:[4600 TO 4625] AND x",
	"timestamp:2024-01-01 AND NOT logon", "NOT timestamp:[2024-01-02 TO *]", "log* AND NOT *shell*", "a && b || NOT c",
}

// checkQuery compares the store's answer for q with query.Match on the events as inserted.
func checkQuery(t *testing.T, s *sqldb.EventService, projectID int64, events []*quarry.Event, q string) {
	t.Helper()
	ctx := context.Background()
	n, err := query.Parse(q)
	if err != nil {
		t.Fatalf("query %q does not parse: %v", q, err)
	}
	var want []int64
	byID := map[int64]*quarry.Event{}
	for _, ev := range events {
		byID[ev.ID] = ev
		if query.Match(n, ev) {
			want = append(want, ev.ID)
		}
	}
	var got []int64
	if err := s.EachEvent(ctx, quarry.EventFilter{ProjectID: projectID, Query: q}, func(ev *quarry.Event) error {
		got = append(got, ev.ID)
		return nil
	}); err != nil {
		t.Errorf("EachEvent(%q): %v", q, err)
		return
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		missing, extra := diff(want, got), diff(got, want)
		t.Errorf("query %q: store selects %d events, Match %d; missing %v, extra %v", q, len(got), len(want), head(missing), head(extra))
		for _, id := range append(head(missing), head(extra)...)[:1] {
			t.Logf("event %d: %+v", id, events[slices.IndexFunc(events, func(ev *quarry.Event) bool { return ev.ID == id })])
		}
		return
	}
	// Pages, in both orders, through the window and the search after it.
	for _, desc := range []bool{false, true} {
		var paged []int64
		cursor := ""
		for {
			f := quarry.EventFilter{ProjectID: projectID, Query: q, Limit: 500, Cursor: cursor, Desc: desc}
			var page *quarry.EventPage
			var err error
			if cursor == "" && !desc {
				page, err = s.FindEvents(ctx, f)
				if err != nil || page.Total != int64(len(want)) || !page.TotalExact {
					t.Errorf("FindEvents(%q) Total = %v, %v; want %d", q, page, err, len(want))
					return
				}
				// A capped count says how far it got and whether it stopped.
				for _, upTo := range []int64{1, 7, int64(len(want)), int64(len(want)) + 1} {
					if upTo == 0 {
						continue // counts all
					}
					capped := f
					capped.TotalUpTo = upTo
					c, err := s.FindEvents(ctx, capped)
					wantTotal, wantExact := min(int64(len(want)), upTo), int64(len(want)) < upTo
					if err != nil || c.Total != wantTotal || c.TotalExact != wantExact {
						t.Errorf("FindEvents(%q, TotalUpTo %d) Total = %d exact %v (%v); want %d exact %v", q, upTo, c.Total, c.TotalExact, err, wantTotal, wantExact)
						return
					}
				}
			} else if page, err = s.FindEventsPage(ctx, f); err != nil {
				t.Errorf("FindEventsPage(%q): %v", q, err)
				return
			}
			for _, ev := range page.Events {
				paged = append(paged, ev.ID)
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		ordered := slices.IsSortedFunc(paged, func(a, b int64) int {
			ea, eb := byID[a], byID[b]
			c := ea.Timestamp.Compare(eb.Timestamp)
			if c == 0 {
				c = int(a - b)
			}
			if desc {
				c = -c
			}
			return c
		})
		slices.Sort(paged)
		if !slices.Equal(paged, want) || !ordered {
			t.Errorf("FindEvents(%q, desc %v) pages: %d events (in order: %v), want %d", q, desc, len(paged), ordered, len(want))
		}
	}
}

func diff(a, b []int64) []int64 {
	var out []int64
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			out = append(out, x)
		}
	}
	return out
}

func head(s []int64) []int64 { return s[:min(len(s), 5)] }

// TestEventQueryMatchesMatch is the differential test: for every query form the store selects
// exactly the events that query.Match accepts.
func TestEventQueryMatchesMatch(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		t.Parallel() // the dialects side by side
		s := sqldb.NewEventService(db)
		sqldb.SetEventPageWindow(s, 300)
		p := mustCreateProject(t, db, "diff")
		other := mustCreateProject(t, db, "other")
		r := rand.New(rand.NewPCG(1, 2))
		var events []*quarry.Event
		for range 2000 {
			events = append(events, randEvent(r, p.ID))
		}
		mustInsert(t, s, events)
		mustInsert(t, s, []*quarry.Event{randEvent(r, other.ID), randEvent(r, other.ID)})
		// Most events in the full-text index, the last 202 not: a text condition then takes
		// candidates from the index and from the events past its watermark, and both must be
		// exact. (Each unindexed event is checked by Match for every query, which under the race
		// detector is most of this test's time, so the unindexed part is kept small.)
		if n, err := s.IndexSearch(context.Background(), 1800); err != nil || (db.Dialect() == sqldb.DialectSQLite && n != 1800) {
			t.Fatalf("IndexSearch = %d, %v", n, err)
		}
		slices.SortFunc(events, func(a, b *quarry.Event) int { return int(a.ID - b.ID) })
		for _, q := range matchQueries {
			checkQuery(t, s, p.ID, events, q)
		}
		// Random combinations of the same leaves.
		for range 60 {
			checkQuery(t, s, p.ID, events, randQuery(r, 0))
		}
	})
}

func randQuery(r *rand.Rand, depth int) string {
	leaf := func() string {
		q := pick(r, matchQueries)
		if _, err := query.Parse(q); err != nil || strings.ContainsAny(q, "()") {
			return "logon"
		}
		if strings.Contains(q, " ") {
			return "(" + q + ")"
		}
		return q
	}
	if depth > 2 {
		return leaf()
	}
	switch r.IntN(5) {
	case 0:
		return "(" + randQuery(r, depth+1) + " OR " + randQuery(r, depth+1) + ")"
	case 1:
		return randQuery(r, depth+1) + " AND " + randQuery(r, depth+1)
	case 2:
		return "NOT " + leaf()
	}
	return leaf()
}

// FuzzEventQuery feeds arbitrary queries to the store: they either select events or are refused
// as EINVALID, never another error, and what they select is what Match accepts.
func FuzzEventQuery(f *testing.F) {
	for _, q := range matchQueries {
		f.Add(q)
	}
	f.Add(`"'; DROP TABLE events; --"`)
	f.Add(`host:x" OR 1=1 --`)
	db := sqldbtest.Open(f, sqldb.DialectSQLite)
	s := sqldb.NewEventService(db)
	p := &quarry.Project{Name: "fuzz"}
	if err := sqldb.NewProjectService(db).CreateProject(context.Background(), p); err != nil {
		f.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var events []*quarry.Event
	for range 300 {
		events = append(events, randEvent(r, p.ID))
	}
	if err := s.InsertEvents(context.Background(), events); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		_, perr := query.Parse(q)
		page, err := s.FindEvents(context.Background(), quarry.EventFilter{ProjectID: p.ID, Query: q, Limit: 1000})
		switch {
		case strings.TrimSpace(q) == "":
			if err != nil {
				t.Fatalf("FindEvents(blank) = %v", err)
			}
			return
		case perr != nil || strings.IndexByte(q, 0) >= 0:
			// Refused: syntax errors, and NUL, which no event can hold.
			if quarry.ErrorCode(err) != quarry.EINVALID {
				t.Fatalf("FindEvents(%q) = %v, want EINVALID (%v)", q, err, perr)
			}
			return
		case err != nil:
			t.Fatalf("FindEvents(%q) = %v", q, err)
		}
		n, _ := query.Parse(q)
		var want int64
		for _, ev := range events {
			if query.Match(n, ev) {
				want++
			}
		}
		if page.Total != want {
			t.Fatalf("FindEvents(%q) Total = %d, Match accepts %d", q, page.Total, want)
		}
	})
}
