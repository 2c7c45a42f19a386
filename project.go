package quarry

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"
)

// Project groups the evidence, acquisitions and timeline of one investigation.
type Project struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedBy   int64     `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Validate checks the fields a caller sets; it trims the name.
func (p *Project) Validate() error {
	p.Name = strings.TrimSpace(p.Name)
	if p.Name == "" {
		return FieldError("name", "Project name is required.")
	}
	if utf8.RuneCountInString(p.Name) > 200 {
		return FieldError("name", "Project name must be at most 200 characters.")
	}
	if utf8.RuneCountInString(p.Description) > 5000 {
		return FieldError("description", "Description must be at most 5000 characters.")
	}
	return nil
}

// ProjectFilter selects projects, newest first; zero fields match everything.
type ProjectFilter struct {
	ID     *int64
	Name   *string // case-insensitive substring
	Offset int
	Limit  int
}

// ProjectService stores projects. FindProjectByID returns ENOTFOUND when there is none;
// CreateProject returns ECONFLICT for a name already in use.
type ProjectService interface {
	FindProjectByID(ctx context.Context, id int64) (*Project, error)
	FindProjects(ctx context.Context, filter ProjectFilter) ([]*Project, int, error)
	CreateProject(ctx context.Context, p *Project) error
}
