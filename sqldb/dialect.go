package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/quarry-dfir/quarry"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Tx is a transaction that speaks the database's dialect: queries are written once, with ?
// placeholders, and time arguments may be passed as time.Time or *time.Time.
type Tx struct {
	tx       *sql.Tx
	db       *DB
	now      time.Time // the transaction's clock reading, so one change stamps one time
	queued   bool      // it holds a place in db.writers until it ends
	finished bool
}

// begin starts a transaction. On SQLite a read-write transaction waits for its turn among this
// process's writers (DB.writers), then takes the write lock at once.
func (db *DB) begin(ctx context.Context, readOnly bool) (*Tx, error) {
	queued := false
	if db.writers != nil && !readOnly {
		// Bounded like SQLite's own wait: a writer that nests a second write transaction
		// (a bug) gets SQLite's busy error after the timeout instead of hanging for ever.
		t := time.NewTimer(sqliteBusyTimeout)
		select {
		case db.writers <- struct{}{}:
			queued = true
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("begin: %w", ctx.Err())
		}
		t.Stop()
	}
	tx, err := db.sql.BeginTx(ctx, &sql.TxOptions{ReadOnly: readOnly})
	if err != nil {
		if queued {
			<-db.writers
		}
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &Tx{tx: tx, db: db, now: db.now(), queued: queued}, nil
}

// end gives the transaction's place among the writers to the next.
func (tx *Tx) end() {
	if !tx.finished {
		tx.finished = true
		if tx.queued {
			<-tx.db.writers
		}
	}
}

// Commit commits the transaction.
func (tx *Tx) Commit() error {
	defer tx.end()
	if err := tx.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Rollback aborts the transaction; after Commit it does nothing, so it can be deferred.
func (tx *Tx) Rollback() error {
	defer tx.end()
	return tx.tx.Rollback()
}

func (tx *Tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	args, err := tx.db.args(args)
	if err != nil {
		return nil, err
	}
	return tx.tx.ExecContext(ctx, tx.db.rebind(query), args...)
}

func (tx *Tx) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	args, err := tx.db.args(args)
	if err != nil {
		return nil, err
	}
	return tx.tx.QueryContext(ctx, tx.db.rebind(query), args...)
}

// row is a *sql.Row, or the error that kept the query from running.
type row struct {
	row *sql.Row
	err error
}

func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return r.row.Scan(dest...)
}

func (tx *Tx) queryRow(ctx context.Context, query string, args ...any) row {
	args, err := tx.db.args(args)
	if err != nil {
		return row{err: err}
	}
	return row{row: tx.tx.QueryRowContext(ctx, tx.db.rebind(query), args...)}
}

// count runs a SELECT COUNT(*) query.
func (tx *Tx) count(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	err := tx.queryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// rebind turns ? placeholders into PostgreSQL's $1, $2, …. Question marks inside quoted
// literals are left alone.
func (db *DB) rebind(query string) string {
	if db.dialect != DialectPostgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n, quoted := 0, false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// sqliteTimeFormat is RFC 3339 in UTC with a fixed number of fraction digits, so that SQLite's
// text comparison orders times correctly (RFC3339Nano drops trailing zeros, which breaks that).
const sqliteTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// storedTime returns t as the database keeps it: UTC, to the microsecond (PostgreSQL's
// precision, applied on SQLite too so both dialects return the same value).
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// storedTimePtr is storedTime for optional times.
func storedTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	st := storedTime(*t)
	return &st
}

// args converts time arguments into the dialect's encoding. It refuses text that PostgreSQL
// cannot store (NUL bytes, invalid UTF-8), on SQLite too, so both dialects accept the same.
func (db *DB) args(args []any) ([]any, error) {
	out := make([]any, len(args))
	for i, a := range args {
		switch a := a.(type) {
		case time.Time:
			out[i] = db.timeValue(a)
		case *time.Time:
			if a != nil {
				out[i] = db.timeValue(*a)
			}
		case string:
			if !utf8.ValidString(a) || strings.IndexByte(a, 0) >= 0 {
				return nil, quarry.Errorf(quarry.EINVALID, "Text must be valid UTF-8 without NUL characters.")
			}
			out[i] = a
		default:
			out[i] = a
		}
	}
	return out, nil
}

func (db *DB) timeValue(t time.Time) any {
	t = storedTime(t)
	if db.dialect == DialectSQLite {
		return t.Format(sqliteTimeFormat)
	}
	return t
}

// timeScanner scans a time column of either dialect (TIMESTAMPTZ, or RFC 3339 text) into a
// time.Time or, for nullable columns, a *time.Time. Times come back in UTC.
type timeScanner struct {
	t  *time.Time
	pt **time.Time
}

func timeCol(t *time.Time) *timeScanner       { return &timeScanner{t: t} }
func nullTimeCol(pt **time.Time) *timeScanner { return &timeScanner{pt: pt} }

// Scan implements sql.Scanner.
func (s *timeScanner) Scan(src any) error {
	var t time.Time
	switch v := src.(type) {
	case nil:
		if s.pt == nil {
			return errors.New("scan time: NULL in a NOT NULL time")
		}
		*s.pt = nil
		return nil
	case time.Time:
		t = v
	case string:
		return s.parse(v)
	case []byte:
		return s.parse(string(v))
	default:
		return fmt.Errorf("scan time: unsupported type %T", src)
	}
	return s.set(t)
}

func (s *timeScanner) parse(v string) error {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return fmt.Errorf("scan time: %w", err)
	}
	return s.set(t)
}

func (s *timeScanner) set(t time.Time) error {
	t = t.UTC()
	if s.pt != nil {
		*s.pt = &t
	} else {
		*s.t = t
	}
	return nil
}

// Database error classes, found by code and never by message.
const (
	errClassNone = iota
	errClassUnique
	errClassForeignKey
)

func errClass(err error) int {
	var pgErr *pgconn.PgError
	var liteErr *sqlite.Error
	switch {
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case "23505": // unique_violation
			return errClassUnique
		case "23503": // foreign_key_violation
			return errClassForeignKey
		}
	case errors.As(err, &liteErr):
		switch liteErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return errClassUnique
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return errClassForeignKey
		}
	}
	return errClassNone
}

// translate turns the database errors that callers branch on into *quarry.Error: no rows
// becomes ENOTFOUND with notFound, a unique violation ECONFLICT with conflict, a foreign key
// violation EINVALID. Anything else is wrapped with op as context.
func translate(err error, op, notFound, conflict string) error {
	if err == nil {
		return nil
	}
	var qerr *quarry.Error
	switch {
	case errors.As(err, &qerr):
		return err
	case errors.Is(err, sql.ErrNoRows) && notFound != "":
		return &quarry.Error{Code: quarry.ENOTFOUND, Message: notFound, Err: err}
	}
	switch errClass(err) {
	case errClassUnique:
		if conflict != "" {
			return &quarry.Error{Code: quarry.ECONFLICT, Message: conflict, Err: err}
		}
	case errClassForeignKey:
		return &quarry.Error{Code: quarry.EINVALID, Message: "It refers to something that does not exist.", Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Paging limits for Find… methods.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// page returns the LIMIT and OFFSET to use for a filter's values: a zero or negative limit
// gets the default, a large one the cap, a negative offset zero.
func page(offset, limit int) (int, int) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return max(offset, 0), min(limit, MaxLimit)
}

// likeEscape escapes s for use in LIKE … ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// where collects the conditions and arguments of a query's WHERE clause.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// findPage runs the count and the paged select of a Find… method. sel is the SELECT up to the
// FROM clause; from is the FROM clause without WHERE; order the ORDER BY clause; scan reads
// one row.
func findPage(ctx context.Context, tx *Tx, sel, from string, w *where, order string, offset, limit int, scan func(*sql.Rows) error) (int, error) {
	total, err := tx.count(ctx, "SELECT COUNT(*) "+from+w.String(), w.args...)
	if err != nil {
		return 0, err
	}
	offset, limit = page(offset, limit)
	if total <= offset {
		return total, nil
	}
	args := append(append([]any(nil), w.args...), limit, offset)
	rows, err := tx.query(ctx, sel+" "+from+w.String()+" ORDER BY "+order+" LIMIT ? OFFSET ?", args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return 0, err
		}
	}
	return total, rows.Err()
}
