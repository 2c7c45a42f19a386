package sqldb

// The SQLite full-text index of the timeline (issue #8).
//
// On SQLite the trigram index of the events' search documents is about two thirds of the cost
// of writing an event. Kept in the database, it held the write lock that River, heartbeats and
// every other writer wait for, and it ran on the one core that wrote. So it lives in a file of
// its own beside the database (<database>-search) and an indexer fills it behind the inserts:
//
//   - InsertEvents writes events to the database only, and wakes the indexer.
//   - The indexer (EventService.RunSearchIndexer) reads the events past its watermark, builds
//     their search documents and writes them, with the new watermark, to the search file in one
//     transaction of its own pool. It writes while other transactions write the database.
//   - Every connection of the database's pool attaches the search file read-only (sqldb.go). A
//     query's text condition takes the candidates the index gives for the events up to the
//     watermark, and every event past it: query.Match decides each candidate anyway, so results
//     are exact whether the index has caught up or not; only their cost differs.
//
// Event ids only grow (AUTOINCREMENT, and one writer at a time), so "past the watermark" is
// exactly "not indexed yet". The search file is derived data: when it is missing, belongs to
// another database (search_index.token) or is ahead of the database (restored from a backup),
// it is emptied and built again from the events.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// searchChunk is how many events the indexer takes in one transaction. Larger chunks make
// fewer, larger index segments (less merging later) at the cost of memory for their documents.
const searchChunk = 10000

const searchSchema = `
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5 (doc, content = '', contentless_delete = 1, detail = none, tokenize = 'trigram');
CREATE TABLE IF NOT EXISTS search_state (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	token      TEXT NOT NULL,    -- search_index.token of the database it indexes
	indexed_to INTEGER NOT NULL  -- every event with an id up to this one is in events_fts
);
INSERT OR IGNORE INTO search_state (id, token, indexed_to) VALUES (1, '', 0);`

// openSearch opens the search file at path with the database's parameters and creates its tables.
func (db *DB) openSearch(ctx context.Context, path string, params url.Values) error {
	uri, err := sqliteURI(path)
	if err != nil {
		return err
	}
	sdb, err := sql.Open("sqlite", uri+"?"+params.Encode())
	if err != nil {
		return err
	}
	// One connection: the indexer is its only steady user.
	sdb.SetMaxOpenConns(1)
	db.search, db.searchKick = sdb, make(chan struct{}, 1)
	var exists int
	if err := sdb.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name = 'events_fts'").Scan(&exists); err != nil {
		return fmt.Errorf("open search file %s: %w", path, err)
	}
	if _, err := sdb.ExecContext(ctx, searchSchema); err != nil {
		return fmt.Errorf("open search file %s: %w", path, err)
	}
	if exists == 0 {
		// Merge segments 16 at a time: less rewriting while the index grows.
		if _, err := sdb.ExecContext(ctx, "INSERT INTO events_fts (events_fts, rank) VALUES ('automerge', 16)"); err != nil {
			return fmt.Errorf("open search file %s: %w", path, err)
		}
	}
	return nil
}

// checkSearch empties the search file when it is not this database's index: another
// database's, or ahead of this one's events. It runs after the migrations.
func (db *DB) checkSearch(ctx context.Context) error {
	if db.search == nil {
		return nil
	}
	var token string
	var seq int64
	err := db.sql.QueryRowContext(ctx, `SELECT token, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)
		FROM search_index`).Scan(&token, &seq)
	if err != nil {
		return fmt.Errorf("check search file: %w", err)
	}
	db.searchMu.Lock()
	defer db.searchMu.Unlock()
	var have string
	var to int64
	if err := db.search.QueryRowContext(ctx, "SELECT token, indexed_to FROM search_state").Scan(&have, &to); err != nil {
		return fmt.Errorf("check search file: %w", err)
	}
	if have == token && to <= seq {
		return nil
	}
	tx, err := db.search.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("reset search file: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO events_fts (events_fts) VALUES ('delete-all')"); err != nil {
		return fmt.Errorf("reset search file: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE search_state SET token = ?, indexed_to = 0", token); err != nil {
		return fmt.Errorf("reset search file: %w", err)
	}
	return tx.Commit()
}

// kickSearch tells the indexer that events were written.
func (db *DB) kickSearch() {
	select {
	case db.searchKick <- struct{}{}:
	default:
	}
}

// IndexSearch adds up to max events that the full-text index does not have yet to it and returns
// how many it added; 0 means it has caught up. Only SQLite has such an index; on PostgreSQL the
// search document is written with the event and IndexSearch does nothing.
func (s *EventService) IndexSearch(ctx context.Context, max int) (int, error) {
	db := s.db
	if db.search == nil {
		return 0, nil
	}
	db.searchMu.Lock()
	defer db.searchMu.Unlock()
	var to int64
	if err := db.search.QueryRowContext(ctx, "SELECT indexed_to FROM search_state").Scan(&to); err != nil {
		return 0, fmt.Errorf("index events: %w", err)
	}
	ids, docs, err := s.searchDocs(ctx, to, max)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	tx, err := db.search.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("index events: %w", err)
	}
	defer tx.Rollback()
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	args := make([]any, 0, 2*insertBatch)
	for start := 0; start < len(ids); start += insertBatch {
		end := min(start+insertBatch, len(ids))
		st := stmts[end-start]
		if st == nil {
			q := "INSERT INTO events_fts (rowid, doc) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?), ", end-start), ", ")
			if st, err = tx.PrepareContext(ctx, q); err != nil {
				return 0, fmt.Errorf("index events: %w", err)
			}
			stmts[end-start] = st
		}
		args = args[:0]
		for i := start; i < end; i++ {
			args = append(args, ids[i], docs[i])
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return 0, fmt.Errorf("index events: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE search_state SET indexed_to = ?", ids[len(ids)-1]); err != nil {
		return 0, fmt.Errorf("index events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("index events: %w", err)
	}
	return len(ids), nil
}

// searchDocs reads up to max events after id from the database and builds their search documents.
func (s *EventService) searchDocs(ctx context.Context, after int64, max int) ([]int64, []string, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	rows, err := tx.query(ctx, `SELECT id, message, host, username, source, fields, field_types FROM events
		WHERE id > ? ORDER BY id LIMIT ?`, after, max)
	if err != nil {
		return nil, nil, fmt.Errorf("index events: %w", err)
	}
	defer rows.Close()
	var ids []int64
	var docs []string
	for rows.Next() {
		var ev quarry.Event
		var fields, types string
		if err := rows.Scan(&ev.ID, &ev.Message, &ev.Host, &ev.User, &ev.Source, &fields, &types); err != nil {
			return nil, nil, fmt.Errorf("index events: %w", err)
		}
		if ev.Fields, err = decodeFields(fields, types); err != nil {
			return nil, nil, fmt.Errorf("index event %d: %w", ev.ID, err)
		}
		ids = append(ids, ev.ID)
		docs = append(docs, searchDoc(&ev))
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("index events: %w", err)
	}
	return ids, docs, nil
}

// SearchBacklog returns about how many events the full-text index does not have yet (0 on
// PostgreSQL): the ids past its watermark, so events deleted there still count until the indexer
// passes them. It is cheap at any size. Queries are exact either way; these events are only
// checked one by one.
func (s *EventService) SearchBacklog(ctx context.Context) (int64, error) {
	if s.db.search == nil {
		return 0, nil
	}
	var n int64
	err := s.db.sql.QueryRowContext(ctx, "SELECT MAX(0, COALESCE((SELECT MAX(id) FROM events), 0) - (SELECT indexed_to FROM search.search_state))").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count events to index: %w", err)
	}
	return n, nil
}

// RunSearchIndexer keeps the full-text index up with the events until ctx ends: at once when
// InsertEvents wrote some, and every few seconds in case another process did. It does nothing
// on PostgreSQL.
func (s *EventService) RunSearchIndexer(ctx context.Context, logger *slog.Logger) {
	if s.db.search == nil {
		return
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	failures := 0
	for {
		n, err := s.IndexSearch(ctx, searchChunk)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			failures++
			if failures == 1 || failures%60 == 0 {
				logger.Warn("full-text index: cannot index events; queries stay exact but slower", "err", err, "failures", failures)
			}
		case n > 0:
			failures = 0
			continue
		default:
			failures = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-s.db.searchKick:
		case <-tick.C:
		}
	}
}

// forgetSearch removes deleted events from the full-text index. Left there they would only be
// candidates that no event answers, so a failure costs space, not correctness.
func (db *DB) forgetSearch(ctx context.Context, ids []int64) error {
	if db.search == nil || len(ids) == 0 {
		return nil
	}
	db.searchMu.Lock()
	defer db.searchMu.Unlock()
	tx, err := db.search.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for part := range chunks(ids, 500) {
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM events_fts WHERE rowid IN ("+placeholders(len(part))+")", args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}
