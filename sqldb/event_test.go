package sqldb_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/query"
	"github.com/quarry-dfir/quarry/sqldb"
	"github.com/quarry-dfir/quarry/sqldb/sqldbtest"
)

var evBase = time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)

func TestEventService_RoundTrip(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := sqldb.NewEventService(db)
		p := mustCreateProject(t, db, "case")
		other := mustCreateProject(t, db, "other")
		when := time.Date(2024, 3, 1, 10, 0, 0, 123456000, time.UTC)
		ev := &quarry.Event{
			ProjectID: p.ID, EvidenceID: 7, Timestamp: when.Add(789), TimestampDesc: "Event Time", Source: "evtx",
			Host: "WEB01", User: "CORP\\alice", Message: "An account failed to log on", Path: "C/Windows/System32/winevt/Security.evtx",
			Fields: map[string]any{
				"EventID": int64(4625), "Big": uint64(18446744073709551615), "Ratio": 0.5, "Whole": float64(3), "Admin": true,
				"When": when, "Channel": "Security", "Empty": "", "Null": nil,
				"Strings": []string{"a", "b"}, "Ints": []int64{1, -2}, "Uints": []uint64{3}, "Floats": []float64{1.5}, "Bools": []bool{false},
				"Times": []time.Time{when}, "Mixed": []any{"x", int64(1), 2.5, true, when, nil, []any{uint64(4)}},
				"process":   map[string]any{"name": "cmd.exe", "pid": int64(42), "args": []string{"/c", "dir"}},
				"EmptyList": []string{}, "Unicode": "Ünïcødé ✓",
			},
			Severity:   quarry.SeverityAlarm,
			Detections: []quarry.Detection{{RuleID: "r1", Title: "Failed logon", Level: "high", Tags: []string{"attack.t1110"}, Kind: "sigma"}},
		}
		if err := s.InsertEvents(ctx, []*quarry.Event{ev}); err != nil {
			t.Fatalf("InsertEvents: %v", err)
		}
		if ev.ID == 0 || !ev.Timestamp.Equal(when) {
			t.Fatalf("InsertEvents set ID %d, Timestamp %v; want an id and %v", ev.ID, ev.Timestamp, when)
		}
		got, err := s.FindEventByID(ctx, p.ID, ev.ID)
		if err != nil {
			t.Fatalf("FindEventByID: %v", err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("FindEventByID =\n%#v\nwant\n%#v", got, ev)
		}
		if _, err := s.FindEventByID(ctx, other.ID, ev.ID); quarry.ErrorCode(err) != quarry.ENOTFOUND {
			t.Errorf("FindEventByID(other project) = %v, want ENOTFOUND", err)
		}
		if db.Dialect() == sqldb.DialectPostgres {
			// pg_trgm is available here: the search document must have its index.
			var n int
			err := db.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'events_doc_trgm_idx'").Scan(&n)
			if err != nil || n != 1 {
				t.Errorf("trigram index: %d, %v; want it", n, err)
			}
		}
		for _, bad := range []*quarry.Event{
			{ProjectID: 0},
			{ProjectID: p.ID, Severity: "high"},
			{ProjectID: p.ID, Message: "nul\x00"},
			{ProjectID: p.ID, Fields: map[string]any{"x": struct{}{}}},
			{ProjectID: p.ID, Fields: map[string]any{"x": []int{1}}},
			{ProjectID: p.ID, Fields: map[string]any{"x": "\xff"}},
		} {
			if err := s.InsertEvents(ctx, []*quarry.Event{bad}); quarry.ErrorCode(err) != quarry.EINVALID {
				t.Errorf("InsertEvents(%+v) = %v, want EINVALID", bad, err)
			}
		}
	})
}

func mustInsert(t *testing.T, s *sqldb.EventService, events []*quarry.Event) {
	t.Helper()
	if err := s.InsertEvents(context.Background(), events); err != nil {
		t.Fatalf("InsertEvents: %v", err)
	}
}

func TestEventService_FindEvents(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := sqldb.NewEventService(db)
		p := mustCreateProject(t, db, "case")
		other := mustCreateProject(t, db, "other")
		var events []*quarry.Event
		for i := range 25 {
			sev := ""
			if i%5 == 0 {
				sev = quarry.SeverityAlarm
			}
			events = append(events, &quarry.Event{ProjectID: p.ID, EvidenceID: int64(1 + i%2), Timestamp: evBase.Add(time.Duration(i/2) * time.Minute),
				Source: "evtx", Host: []string{"web01", "db01"}[i%2], Message: "logon", Severity: sev,
				Fields: map[string]any{"EventID": int64(4624 + i%2)}})
		}
		mustInsert(t, s, events)
		mustInsert(t, s, []*quarry.Event{{ProjectID: other.ID, Timestamp: evBase, Message: "logon", Host: "web01"}})

		t.Run("Pages", func(t *testing.T) {
			for _, desc := range []bool{false, true} {
				var ids []int64
				cursor := ""
				for range 10 {
					page, err := s.FindEvents(ctx, quarry.EventFilter{ProjectID: p.ID, Query: "logon", Limit: 7, Cursor: cursor, Desc: desc})
					if err != nil {
						t.Fatal(err)
					}
					if page.Total != 25 {
						t.Fatalf("Total = %d, want 25", page.Total)
					}
					for _, ev := range page.Events {
						ids = append(ids, ev.ID)
					}
					if cursor = page.Next; cursor == "" {
						break
					}
				}
				want := make([]int64, 0, 25)
				for _, ev := range events {
					want = append(want, ev.ID)
				}
				if desc {
					for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
						want[i], want[j] = want[j], want[i]
					}
				}
				if !reflect.DeepEqual(ids, want) {
					t.Errorf("desc=%v: paged ids %v, want %v", desc, ids, want)
				}
			}
		})
		t.Run("Filters", func(t *testing.T) {
			for _, tt := range []struct {
				name string
				f    quarry.EventFilter
				want int64
			}{
				{"All", quarry.EventFilter{}, 25},
				{"Host", quarry.EventFilter{Hosts: []string{"web01"}}, 13},
				{"Severity", quarry.EventFilter{Severities: []string{quarry.SeverityAlarm}}, 5},
				{"SeverityNone", quarry.EventFilter{Severities: []string{"none"}}, 20},
				{"Evidence", quarry.EventFilter{EvidenceID: 2}, 12},
				{"FromTo", quarry.EventFilter{From: evBase.Add(time.Minute), To: evBase.Add(3 * time.Minute)}, 4},
				{"Query", quarry.EventFilter{Query: "EventID:4625 AND host:DB01"}, 12},
				{"QueryTime", quarry.EventFilter{Query: "timestamp:[2024-03-01T10:02:00Z TO *]"}, 21},
				{"Sources", quarry.EventFilter{Sources: []string{"syslog"}}, 0},
			} {
				tt.f.ProjectID = p.ID
				page, err := s.FindEvents(ctx, tt.f)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if page.Total != tt.want || int64(len(page.Events)) != tt.want {
					t.Errorf("%s: Total %d, %d events; want %d", tt.name, page.Total, len(page.Events), tt.want)
				}
			}
		})
		t.Run("ErrInvalid", func(t *testing.T) {
			_, err := s.FindEvents(ctx, quarry.EventFilter{ProjectID: p.ID, Query: "host:(web01"})
			var se *query.SyntaxError
			if quarry.ErrorCode(err) != quarry.EINVALID || !errors.As(err, &se) {
				t.Errorf("FindEvents(bad query) = %v, want the *query.SyntaxError", err)
			}
			for _, cursor := range []string{"x", "ZTEuYS4xLjE", "ZTEuZC4xLjE", "'; DROP TABLE events; --"} {
				if _, err := s.FindEvents(ctx, quarry.EventFilter{ProjectID: p.ID, Cursor: cursor}); quarry.ErrorCode(err) != quarry.EINVALID && cursor != "ZTEuYS4xLjE" {
					t.Errorf("FindEvents(cursor %q) = %v, want EINVALID", cursor, err)
				}
			}
			if _, err := s.FindEvents(ctx, quarry.EventFilter{ProjectID: p.ID, Severities: []string{"x"}}); quarry.ErrorCode(err) != quarry.EINVALID {
				t.Errorf("FindEvents(severity x) = %v, want EINVALID", err)
			}
		})
		t.Run("Histogram", func(t *testing.T) {
			buckets, step, err := s.Histogram(ctx, quarry.EventFilter{ProjectID: p.ID}, 0)
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			for _, b := range buckets {
				sum += b.Count
			}
			if step != 10*time.Second || sum != 25 || len(buckets) != 73 || !buckets[0].Start.Equal(evBase) || buckets[0].Count != 2 {
				t.Errorf("Histogram = step %v, %d buckets, sum %d, first %+v", step, len(buckets), sum, buckets[0])
			}
			buckets, _, err = s.Histogram(ctx, quarry.EventFilter{ProjectID: p.ID, Query: "EventID:4624"}, time.Hour)
			if err != nil || len(buckets) != 1 || buckets[0].Count != 13 {
				t.Errorf("Histogram(hour) = %+v, %v", buckets, err)
			}
		})
		t.Run("Facet", func(t *testing.T) {
			got, err := s.Facet(ctx, quarry.EventFilter{ProjectID: p.ID}, "host", 10)
			want := []quarry.FacetValue{{Value: "web01", Count: 13}, {Value: "db01", Count: 12}}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("Facet(host) = %v, %v; want %v", got, err, want)
			}
			got, err = s.Facet(ctx, quarry.EventFilter{ProjectID: p.ID, Query: "logon"}, "EventID", 1)
			want = []quarry.FacetValue{{Value: "4624", Count: 13}}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("Facet(EventID) = %v, %v; want %v", got, err, want)
			}
		})
		t.Run("StarAndComment", func(t *testing.T) {
			n, err := s.StarEvents(ctx, p.ID, []int64{events[0].ID, events[1].ID, events[1].ID}, true)
			if err != nil || n != 2 {
				t.Fatalf("StarEvents = %d, %v; want 2", n, err)
			}
			if n, err := s.StarEvents(ctx, other.ID, []int64{events[2].ID}, true); err != nil || n != 0 {
				t.Fatalf("StarEvents(other project) = %d, %v; want 0", n, err)
			}
			n, err = s.StarQuery(ctx, quarry.EventFilter{ProjectID: p.ID, Query: "host:db01"}, true)
			if err != nil || n != 11 {
				t.Fatalf("StarQuery = %d, %v; want 11", n, err)
			}
			page, err := s.FindEvents(ctx, quarry.EventFilter{ProjectID: p.ID, Starred: true})
			if err != nil || page.Total != 13 || !page.Events[0].Starred {
				t.Fatalf("FindEvents(starred) = %+v, %v", page, err)
			}
			c := quarry.EventComment{Author: "alice", Text: " looks bad "}
			n, err = s.CommentEvents(ctx, quarry.EventFilter{ProjectID: p.ID}, []int64{events[0].ID}, c)
			if err != nil || n != 1 {
				t.Fatalf("CommentEvents(ids) = %d, %v", n, err)
			}
			n, err = s.CommentEvents(ctx, quarry.EventFilter{ProjectID: p.ID, Query: "EventID:4624 AND severity:alarm"}, nil, c)
			if err != nil || n != 3 {
				t.Fatalf("CommentEvents(query) = %d, %v; want 3", n, err)
			}
			list, err := s.FindComments(ctx, p.ID, events[0].ID)
			if err != nil || len(list) != 2 || list[0].Text != "looks bad" || list[0].Author != "alice" || list[0].CreatedAt.IsZero() {
				t.Fatalf("FindComments = %+v, %v", list, err)
			}
			ev, err := s.FindEventByID(ctx, p.ID, events[0].ID)
			if err != nil || ev.Comments != 2 || !ev.Starred {
				t.Fatalf("FindEventByID = %+v, %v", ev, err)
			}
			if _, err := s.FindComments(ctx, other.ID, events[0].ID); quarry.ErrorCode(err) != quarry.ENOTFOUND {
				t.Errorf("FindComments(other project) = %v, want ENOTFOUND", err)
			}
			if _, err := s.CommentEvents(ctx, quarry.EventFilter{ProjectID: p.ID}, []int64{events[0].ID}, quarry.EventComment{Author: "a"}); quarry.ErrorCode(err) != quarry.EINVALID {
				t.Errorf("CommentEvents(empty) = %v, want EINVALID", err)
			}
		})
		t.Run("EachAndDelete", func(t *testing.T) {
			var n int
			err := s.EachEvent(ctx, quarry.EventFilter{ProjectID: p.ID, EvidenceID: 1, Query: "logon"}, func(*quarry.Event) error { n++; return nil })
			if err != nil || n != 13 {
				t.Fatalf("EachEvent = %d, %v; want 13", n, err)
			}
			stop := errors.New("stop")
			if err := s.EachEvent(ctx, quarry.EventFilter{ProjectID: p.ID}, func(*quarry.Event) error { return stop }); err != stop {
				t.Fatalf("EachEvent = %v, want fn's error", err)
			}
			// Index everything first, so that the delete has index entries to remove.
			for {
				n, err := s.IndexSearch(ctx, 7)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
			}
			if backlog, err := s.SearchBacklog(ctx); err != nil || backlog != 0 {
				t.Fatalf("SearchBacklog after indexing = %d, %v", backlog, err)
			}
			deleted, err := s.DeleteEvidenceEvents(ctx, 1)
			if err != nil || deleted != 13 {
				t.Fatalf("DeleteEvidenceEvents = %d, %v", deleted, err)
			}
			page, err := s.FindEvents(ctx, quarry.EventFilter{ProjectID: p.ID, Query: "logon"})
			if err != nil || page.Total != 12 {
				t.Fatalf("after delete: %+v, %v", page, err)
			}
			if _, err := s.FindComments(ctx, p.ID, events[0].ID); quarry.ErrorCode(err) != quarry.ENOTFOUND {
				t.Errorf("FindComments(deleted) = %v, want ENOTFOUND", err)
			}
			if db.Dialect() == sqldb.DialectSQLite {
				var fts int
				if err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM search.events_fts WHERE events_fts MATCH '"LOG" AND "GON"'`).Scan(&fts); err != nil || fts != 13 {
					t.Errorf("FTS rows after delete = %d, %v; want 13 (12 + other project)", fts, err)
				}
			}
		})
	})
}
