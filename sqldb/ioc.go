package sqldb

import (
	"context"
	"database/sql"
	"strings"

	"github.com/quarry-dfir/quarry"
)

// IOCService stores projects' IOC lists.
type IOCService struct {
	db *DB
}

var _ quarry.IOCService = (*IOCService)(nil)

// NewIOCService returns an IOCService on db.
func NewIOCService(db *DB) *IOCService { return &IOCService{db: db} }

func iocColumns(brief bool) string {
	indicators := "indicators"
	if brief {
		indicators = "''"
	}
	return "id, project_id, name, description, level, " + indicators + ", count, created_by, created_at, updated_at"
}

func scanIOCList(s interface{ Scan(...any) error }) (*quarry.IOCList, error) {
	var l quarry.IOCList
	var createdBy sql.NullInt64
	err := s.Scan(&l.ID, &l.ProjectID, &l.Name, &l.Description, &l.Level, &l.Indicators, &l.Count, &createdBy,
		timeCol(&l.CreatedAt), timeCol(&l.UpdatedAt))
	if err != nil {
		return nil, err
	}
	l.CreatedBy = createdBy.Int64
	return &l, nil
}

// FindIOCListByID returns the list with id, or ENOTFOUND.
func (s *IOCService) FindIOCListByID(ctx context.Context, id int64) (*quarry.IOCList, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	l, err := scanIOCList(tx.queryRow(ctx, "SELECT "+iocColumns(false)+" FROM ioc_lists WHERE id = ?", id))
	return l, translate(err, "find IOC list", "IOC list not found.", "")
}

// FindIOCLists returns the project's lists by name; brief leaves their Indicators out.
func (s *IOCService) FindIOCLists(ctx context.Context, projectID int64, brief bool) ([]*quarry.IOCList, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.query(ctx, "SELECT "+iocColumns(brief)+" FROM ioc_lists WHERE project_id = ? ORDER BY name_key, id", projectID)
	if err != nil {
		return nil, translate(err, "find IOC lists", "", "")
	}
	defer rows.Close()
	lists := []*quarry.IOCList{}
	for rows.Next() {
		l, err := scanIOCList(rows)
		if err != nil {
			return nil, translate(err, "find IOC lists", "", "")
		}
		lists = append(lists, l)
	}
	return lists, translate(rows.Err(), "find IOC lists", "", "")
}

// CreateIOCList validates and stores l, setting its ID, times, Count and CreatedBy (from the
// actor in ctx when zero).
func (s *IOCService) CreateIOCList(ctx context.Context, l *quarry.IOCList) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if l.CreatedBy == 0 {
		l.CreatedBy = quarry.UserIDFromContext(ctx)
	}
	l.Count = countLines(l.Indicators)
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	createdBy := sql.NullInt64{Int64: l.CreatedBy, Valid: l.CreatedBy != 0}
	l.CreatedAt, l.UpdatedAt = tx.now, tx.now
	err = tx.queryRow(ctx, `INSERT INTO ioc_lists (project_id, name, name_key, description, level, indicators, count, created_by, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		l.ProjectID, l.Name, nameKey(l.Name), l.Description, l.Level, l.Indicators, l.Count, createdBy, l.CreatedAt, l.UpdatedAt).Scan(&l.ID)
	if err := translate(err, "create IOC list", "", "The project already has a list named "+l.Name+"."); err != nil {
		return err
	}
	return tx.Commit()
}

// UpdateIOCList replaces the name, description, level and indicators of the list l.ID; the
// project and creator stay. It sets l's other fields from the store.
func (s *IOCService) UpdateIOCList(ctx context.Context, l *quarry.IOCList) error {
	if err := l.Validate(); err != nil {
		return err
	}
	l.Count = countLines(l.Indicators)
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	l.UpdatedAt = tx.now
	var createdBy sql.NullInt64
	err = tx.queryRow(ctx, `UPDATE ioc_lists SET name = ?, name_key = ?, description = ?, level = ?, indicators = ?, count = ?, updated_at = ?
		WHERE id = ? RETURNING project_id, created_by, created_at`,
		l.Name, nameKey(l.Name), l.Description, l.Level, l.Indicators, l.Count, l.UpdatedAt, l.ID).Scan(&l.ProjectID, &createdBy, timeCol(&l.CreatedAt))
	if err := translate(err, "update IOC list", "IOC list not found.", "The project already has a list named "+l.Name+"."); err != nil {
		return err
	}
	l.CreatedBy = createdBy.Int64
	return tx.Commit()
}

// DeleteIOCList removes the list with id, or returns ENOTFOUND.
func (s *IOCService) DeleteIOCList(ctx context.Context, id int64) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.exec(ctx, "DELETE FROM ioc_lists WHERE id = ?", id)
	if err != nil {
		return translate(err, "delete IOC list", "", "")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return quarry.Errorf(quarry.ENOTFOUND, "IOC list not found.")
	}
	return tx.Commit()
}

// countLines counts the indicators of a list in text form: its lines that are not blank or a
// comment.
func countLines(text string) int {
	n := 0
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			n++
		}
	}
	return n
}
