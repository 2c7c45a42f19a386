package quarry

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"
)

// IOCList is a project's list of indicators of compromise (issue #9): hashes, addresses and
// networks, domains, URLs and file names that processing looks for in every event and file.
// Indicators holds the list in the text form of package ioc, one normalised indicator a line;
// the HTTP layer parses what an analyst enters or imports (text, MISP) into it.
type IOCList struct {
	ID          int64     `json:"id"`
	ProjectID   int64     `json:"project_id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Level       string    `json:"level"` // the level of its detections; default "high"
	Indicators  string    `json:"indicators"`
	Count       int       `json:"count"` // how many indicators it holds
	CreatedBy   int64     `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Levels of a detection, from a Sigma rule or an IOC list, lowest first.
var Levels = []string{"informational", "low", "medium", "high", "critical"}

// MaxIOCListSize bounds the text of one list (about a million indicators).
const MaxIOCListSize = 64 << 20

// Validate checks the fields a caller sets; it trims the name and defaults the level.
func (l *IOCList) Validate() error {
	l.Name = strings.TrimSpace(l.Name)
	if l.Name == "" {
		return FieldError("name", "List name is required.")
	}
	if utf8.RuneCountInString(l.Name) > 200 {
		return FieldError("name", "List name must be at most 200 characters.")
	}
	if utf8.RuneCountInString(l.Description) > 5000 {
		return FieldError("description", "Description must be at most 5000 characters.")
	}
	if l.Level == "" {
		l.Level = "high"
	}
	known := false
	for _, lv := range Levels {
		known = known || lv == l.Level
	}
	if !known {
		return FieldError("level", "Level must be one of %s.", strings.Join(Levels, ", "))
	}
	if len(l.Indicators) > MaxIOCListSize {
		return FieldError("indicators", "The list is larger than %d MiB; split it.", MaxIOCListSize>>20)
	}
	if !utf8.ValidString(l.Indicators) || strings.IndexByte(l.Indicators, 0) >= 0 {
		return FieldError("indicators", "Indicators must be UTF-8 text.")
	}
	return nil
}

// IOCService stores IOC lists. FindIOCListByID returns ENOTFOUND when there is none; a name in
// use in the project (in any case) is ECONFLICT.
type IOCService interface {
	FindIOCListByID(ctx context.Context, id int64) (*IOCList, error)
	// FindIOCLists returns a project's lists, by name; without their Indicators when brief.
	FindIOCLists(ctx context.Context, projectID int64, brief bool) ([]*IOCList, error)
	CreateIOCList(ctx context.Context, l *IOCList) error
	// UpdateIOCList replaces the name, description, level and indicators of list l.ID.
	UpdateIOCList(ctx context.Context, l *IOCList) error
	DeleteIOCList(ctx context.Context, id int64) error
}
