package sqldb

import (
	"context"
	"database/sql"
	"strings"

	"github.com/quarry-dfir/quarry"
)

// ProjectService stores projects.
type ProjectService struct {
	db *DB
}

var _ quarry.ProjectService = (*ProjectService)(nil)

// NewProjectService returns a ProjectService on db.
func NewProjectService(db *DB) *ProjectService { return &ProjectService{db: db} }

const projectColumns = "id, name, description, created_by, created_at, updated_at"

func scanProject(s interface{ Scan(...any) error }) (*quarry.Project, error) {
	var p quarry.Project
	var createdBy sql.NullInt64
	if err := s.Scan(&p.ID, &p.Name, &p.Description, &createdBy, timeCol(&p.CreatedAt), timeCol(&p.UpdatedAt)); err != nil {
		return nil, err
	}
	p.CreatedBy = createdBy.Int64
	return &p, nil
}

// nameKey is how names are compared: case-insensitively, the same way on both dialects.
func nameKey(name string) string { return strings.ToLower(name) }

// FindProjectByID returns the project with id, or ENOTFOUND.
func (s *ProjectService) FindProjectByID(ctx context.Context, id int64) (*quarry.Project, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	p, err := scanProject(tx.queryRow(ctx, "SELECT "+projectColumns+" FROM projects WHERE id = ?", id))
	return p, translate(err, "find project", "Project not found.", "")
}

// FindProjects returns the projects matching filter, newest first, and how many match in all.
func (s *ProjectService) FindProjects(ctx context.Context, filter quarry.ProjectFilter) ([]*quarry.Project, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	return findProjects(ctx, tx, filter)
}

// CreateProject validates and stores p, setting its ID and times, and CreatedBy from the actor
// in ctx when it is zero. A name in use (in any case) is ECONFLICT.
func (s *ProjectService) CreateProject(ctx context.Context, p *quarry.Project) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createProject(ctx, tx, p); err != nil {
		return err
	}
	return tx.Commit()
}

func findProjects(ctx context.Context, tx *Tx, filter quarry.ProjectFilter) ([]*quarry.Project, int, error) {
	var w where
	if filter.ID != nil {
		w.add("id = ?", *filter.ID)
	}
	if filter.Name != nil {
		w.add(`name_key LIKE ? ESCAPE '\'`, "%"+likeEscape(nameKey(*filter.Name))+"%")
	}
	var projects []*quarry.Project
	total, err := findPage(ctx, tx, "SELECT "+projectColumns, "FROM projects", &w, "created_at DESC, id DESC", filter.Offset, filter.Limit,
		func(rows *sql.Rows) error {
			p, err := scanProject(rows)
			projects = append(projects, p)
			return err
		})
	if err != nil {
		return nil, 0, translate(err, "find projects", "", "")
	}
	return projects, total, nil
}

func createProject(ctx context.Context, tx *Tx, p *quarry.Project) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.CreatedBy == 0 {
		p.CreatedBy = quarry.UserIDFromContext(ctx)
	}
	createdBy := sql.NullInt64{Int64: p.CreatedBy, Valid: p.CreatedBy != 0}
	p.CreatedAt, p.UpdatedAt = tx.now, tx.now
	err := tx.queryRow(ctx, `INSERT INTO projects (name, name_key, description, created_by, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		p.Name, nameKey(p.Name), p.Description, createdBy, p.CreatedAt, p.UpdatedAt).Scan(&p.ID)
	return translate(err, "create project", "", "A project named "+p.Name+" already exists.")
}
