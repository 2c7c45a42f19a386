package sqldb_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quarry-dfir/quarry"
	"github.com/quarry-dfir/quarry/sqldb"
)

func textEvents(projectID int64, word string, n int) []*quarry.Event {
	events := make([]*quarry.Event, n)
	for i := range events {
		events[i] = &quarry.Event{ProjectID: projectID, EvidenceID: 1, Timestamp: time.Date(2024, 5, 1, 0, 0, i, 0, time.UTC),
			TimestampDesc: "Event Time", Source: "syslog", Host: "h", Message: fmt.Sprintf("%s number %d", word, i),
			Fields: map[string]any{"program": word + "d"}}
	}
	return events
}

func indexAll(t *testing.T, s *sqldb.EventService) {
	t.Helper()
	for {
		n, err := s.IndexSearch(context.Background(), 1000)
		if err != nil {
			t.Fatalf("IndexSearch: %v", err)
		}
		if n == 0 {
			return
		}
	}
}

func countQuery(t *testing.T, s *sqldb.EventService, projectID int64, q string) int64 {
	t.Helper()
	page, err := s.FindEvents(context.Background(), quarry.EventFilter{ProjectID: projectID, Query: q})
	if err != nil {
		t.Fatalf("FindEvents(%q): %v", q, err)
	}
	return page.Total
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkpoint folds the WAL into the database file, so that copying the file copies the database.
func checkpoint(t *testing.T, db *sqldb.DB) {
	t.Helper()
	if _, err := db.SQL().Exec("PRAGMA main.wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
}

// TestSearchFileBelongsToItsDatabase: a search file beside a database that is not the one it
// indexed (replaced by another, or restored from an older copy) is rebuilt, never trusted: an
// event it claims to have indexed with another text would be missed by queries.
func TestSearchFileBelongsToItsDatabase(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []string{"replaced", "restored"} {
		t.Run(tc, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "quarry.db")
			db, err := sqldb.OpenAndMigrate(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			p := mustCreateProject(t, db, "p")
			s := sqldb.NewEventService(db)
			mustInsert(t, s, textEvents(p.ID, "alpha", 10))
			checkpoint(t, db)
			copyFile(t, path, filepath.Join(dir, "old.db"))
			mustInsert(t, s, textEvents(p.ID, "bravo", 10))
			indexAll(t, s)
			if got := countQuery(t, s, p.ID, "bravo"); got != 10 {
				t.Fatalf("bravo before = %d, want 10", got)
			}
			db.Close()

			switch tc {
			case "replaced": // another database, same path: ids start again at 1
				os.Remove(path)
				db, err = sqldb.OpenAndMigrate(ctx, path)
				if err != nil {
					t.Fatal(err)
				}
				p = mustCreateProject(t, db, "p")
			case "restored": // the copy taken before the bravo events: ids 11 on are free again
				copyFile(t, filepath.Join(dir, "old.db"), path)
				db, err = sqldb.OpenAndMigrate(ctx, path)
				if err != nil {
					t.Fatal(err)
				}
			}
			defer db.Close()
			s = sqldb.NewEventService(db)
			mustInsert(t, s, textEvents(p.ID, "charlie", 20))
			if got := countQuery(t, s, p.ID, "charlie"); got != 20 {
				t.Errorf("charlie = %d, want 20: the old search file answered for new events", got)
			}
			if got := countQuery(t, s, p.ID, "bravo"); got != 0 {
				t.Errorf("bravo = %d, want 0", got)
			}
			indexAll(t, s)
			if got := countQuery(t, s, p.ID, "charlie"); got != 20 {
				t.Errorf("charlie after indexing = %d, want 20", got)
			}
		})
	}
}

// TestSearchIndexerRunsBehindInserts: with the indexer running while events are inserted and
// queried, every query is exact, and the indexer catches up.
func TestSearchIndexerRunsBehindInserts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqldb.OpenAndMigrate(ctx, filepath.Join(t.TempDir(), "quarry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := mustCreateProject(t, db, "p")
	s := sqldb.NewEventService(db)
	var wg sync.WaitGroup
	wg.Go(func() { s.RunSearchIndexer(ctx, slog.New(slog.DiscardHandler)) })
	want := int64(0)
	for i := range 20 {
		mustInsert(t, s, textEvents(p.ID, "delta", 97))
		want += 97
		if got := countQuery(t, s, p.ID, "delta"); got != want {
			t.Fatalf("round %d: delta = %d, want %d", i, got, want)
		}
		if got := countQuery(t, s, p.ID, `"number 96"`); got != int64(i+1) {
			t.Fatalf("round %d: \"number 96\" = %d, want %d", i, got, i+1)
		}
	}
	// The indexer catches up (it is woken by every insert; nothing here waits on a clock).
	for {
		backlog, err := s.SearchBacklog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if backlog == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if got := countQuery(t, s, p.ID, "delta"); got != want {
		t.Fatalf("after indexing: delta = %d, want %d", got, want)
	}
	var rows int64
	if err := db.SQL().QueryRowContext(context.Background(), "SELECT count(*) FROM search.events_fts").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != want {
		t.Errorf("search index has %d rows, want %d", rows, want)
	}
}

// TestIndexerWritesBesideWriters: the indexer writes the search file while another transaction
// holds the database's write lock. Every pool connection attaches the search file read-only, so
// BEGIN IMMEDIATE does not lock it too; attached writable, the indexer would wait for the writer.
func TestIndexerWritesBesideWriters(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.OpenAndMigrate(ctx, filepath.Join(t.TempDir(), "quarry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := mustCreateProject(t, db, "p")
	s := sqldb.NewEventService(db)
	mustInsert(t, s, textEvents(p.ID, "echo", 50))
	tx, err := db.SQL().BeginTx(ctx, nil) // BEGIN IMMEDIATE: the database's write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE projects SET description = 'busy' WHERE id = ?", p.ID); err != nil {
		t.Fatal(err)
	}
	// A locked search file would make the indexer fail with SQLITE_BUSY after the busy timeout.
	if n, err := s.IndexSearch(ctx, 1000); err != nil || n != 50 {
		t.Fatalf("IndexSearch beside a writer = %d, %v", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := countQuery(t, s, p.ID, "echo"); got != 50 {
		t.Errorf("echo = %d, want 50", got)
	}
}
