package quarry

import (
	"context"
	"regexp"
	"time"
)

// Role is what a user may do. Roles are ordered: an admin can do all an analyst can, an
// analyst all a viewer can.
type Role string

const (
	RoleViewer  Role = "viewer"  // reads projects, timelines and settings
	RoleAnalyst Role = "analyst" // also creates projects, acquisitions and annotations
	RoleAdmin   Role = "admin"   // also manages users, connections, experiments; reads the audit log
)

// Roles lists the roles from least to most privileged.
var Roles = []Role{RoleViewer, RoleAnalyst, RoleAdmin}

func (r Role) rank() int {
	for i, x := range Roles {
		if x == r {
			return i + 1
		}
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// AtLeast reports whether r grants everything min grants.
func (r Role) AtLeast(min Role) bool { return r.Valid() && r.rank() >= min.rank() }

// MinRole returns the less privileged of a and b: a token never grants more than its user has.
func MinRole(a, b Role) Role {
	if a.rank() <= b.rank() {
		return a
	}
	return b
}

// User is a local account.
type User struct {
	ID           int64      `json:"id"`
	Username     string     `json:"username"`
	Role         Role       `json:"role"`
	PasswordHash string     `json:"-"`
	Disabled     bool       `json:"disabled"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	LastLoginAt  *time.Time `json:"last_login_at,omitempty"`
}

var usernameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$`)

// Validate checks the fields a caller sets.
func (u *User) Validate() error {
	if !usernameRE.MatchString(u.Username) {
		return FieldError("username", "Username must be 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.")
	}
	if !u.Role.Valid() {
		return FieldError("role", "Role must be one of viewer, analyst, admin.")
	}
	if u.PasswordHash == "" {
		return FieldError("password", "Password is required.")
	}
	return nil
}

// UserFilter selects users; zero fields match everything.
type UserFilter struct {
	ID       *int64
	Username *string
	Offset   int
	Limit    int
}

// UserUpdate changes a user; nil fields are left alone.
type UserUpdate struct {
	Role         *Role
	PasswordHash *string
	Disabled     *bool
	LastLoginAt  *time.Time
}

// UserService stores users. Find by id/username returns ENOTFOUND when there is none;
// CreateUser returns ECONFLICT for a taken username.
type UserService interface {
	FindUserByID(ctx context.Context, id int64) (*User, error)
	FindUserByUsername(ctx context.Context, username string) (*User, error)
	FindUsers(ctx context.Context, filter UserFilter) ([]*User, int, error)
	CreateUser(ctx context.Context, user *User) error
	UpdateUser(ctx context.Context, id int64, upd UserUpdate) (*User, error)

	// RecordLoginFailure and CountLoginFailures back login throttling; they live in the store so
	// that the throttle holds across several server processes.
	RecordLoginFailure(ctx context.Context, username, ip string, at time.Time) error
	CountLoginFailures(ctx context.Context, username, ip string, since time.Time) (byUser, byIP int, err error)
	DeleteLoginFailuresBefore(ctx context.Context, before time.Time) (int, error)
}
