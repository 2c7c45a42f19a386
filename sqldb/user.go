package sqldb

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/quarry-dfir/quarry"
)

// UserService stores users and login failures.
type UserService struct {
	db *DB
}

var _ quarry.UserService = (*UserService)(nil)

// NewUserService returns a UserService on db.
func NewUserService(db *DB) *UserService { return &UserService{db: db} }

const userColumns = "id, username, role, password_hash, disabled, created_at, updated_at, last_login_at"

func scanUser(s interface{ Scan(...any) error }) (*quarry.User, error) {
	var u quarry.User
	err := s.Scan(&u.ID, &u.Username, &u.Role, &u.PasswordHash, &u.Disabled,
		timeCol(&u.CreatedAt), timeCol(&u.UpdatedAt), nullTimeCol(&u.LastLoginAt))
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// FindUserByID returns the user with id, or ENOTFOUND.
func (s *UserService) FindUserByID(ctx context.Context, id int64) (*quarry.User, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return findUserByID(ctx, tx, id)
}

// FindUserByUsername returns the user named username (case-insensitively), or ENOTFOUND.
func (s *UserService) FindUserByUsername(ctx context.Context, username string) (*quarry.User, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	u, err := scanUser(tx.queryRow(ctx, "SELECT "+userColumns+" FROM users WHERE lower(username) = ?", strings.ToLower(username)))
	return u, translate(err, "find user by username", "User not found.", "")
}

// FindUsers returns the users matching filter, ordered by username, and how many match in all.
func (s *UserService) FindUsers(ctx context.Context, filter quarry.UserFilter) ([]*quarry.User, int, error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	return findUsers(ctx, tx, filter)
}

// CreateUser validates and stores user, setting its ID and times. A taken username (in any
// case) is ECONFLICT.
func (s *UserService) CreateUser(ctx context.Context, user *quarry.User) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := createUser(ctx, tx, user); err != nil {
		return err
	}
	return tx.Commit()
}

// UpdateUser applies upd to the user with id and returns the result; ENOTFOUND if there is none.
func (s *UserService) UpdateUser(ctx context.Context, id int64, upd quarry.UserUpdate) (*quarry.User, error) {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	u, err := updateUser(ctx, tx, id, upd)
	if err != nil {
		return nil, err
	}
	return u, tx.Commit()
}

// RecordLoginFailure notes a failed login for username (case-insensitively) from ip.
func (s *UserService) RecordLoginFailure(ctx context.Context, username, ip string, at time.Time) error {
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	_, err = tx.exec(ctx, "INSERT INTO login_failures (username, ip, at) VALUES (?, ?, ?)", strings.ToLower(username), ip, at)
	if err != nil {
		return translate(err, "record login failure", "", "")
	}
	return tx.Commit()
}

// CountLoginFailures counts failures at or after since for username and, separately, for ip.
func (s *UserService) CountLoginFailures(ctx context.Context, username, ip string, since time.Time) (byUser, byIP int, err error) {
	tx, err := s.db.begin(ctx, true)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	if byUser, err = tx.count(ctx, "SELECT COUNT(*) FROM login_failures WHERE username = ? AND at >= ?", strings.ToLower(username), since); err != nil {
		return 0, 0, translate(err, "count login failures by user", "", "")
	}
	if byIP, err = tx.count(ctx, "SELECT COUNT(*) FROM login_failures WHERE ip = ? AND at >= ?", ip, since); err != nil {
		return 0, 0, translate(err, "count login failures by ip", "", "")
	}
	return byUser, byIP, nil
}

// DeleteLoginFailuresBefore forgets failures older than before and returns how many.
func (s *UserService) DeleteLoginFailuresBefore(ctx context.Context, before time.Time) (int, error) {
	return s.db.deleteMany(ctx, "delete login failures", "DELETE FROM login_failures WHERE at < ?", before)
}

func findUserByID(ctx context.Context, tx *Tx, id int64) (*quarry.User, error) {
	u, err := scanUser(tx.queryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id))
	return u, translate(err, "find user", "User not found.", "")
}

func findUsers(ctx context.Context, tx *Tx, filter quarry.UserFilter) ([]*quarry.User, int, error) {
	var w where
	if filter.ID != nil {
		w.add("id = ?", *filter.ID)
	}
	if filter.Username != nil {
		w.add("lower(username) = ?", strings.ToLower(*filter.Username))
	}
	var users []*quarry.User
	total, err := findPage(ctx, tx, "SELECT "+userColumns, "FROM users", &w, "lower(username), id", filter.Offset, filter.Limit,
		func(rows *sql.Rows) error {
			u, err := scanUser(rows)
			users = append(users, u)
			return err
		})
	if err != nil {
		return nil, 0, translate(err, "find users", "", "")
	}
	return users, total, nil
}

func createUser(ctx context.Context, tx *Tx, u *quarry.User) error {
	if err := u.Validate(); err != nil {
		return err
	}
	u.CreatedAt, u.UpdatedAt = tx.now, tx.now
	u.LastLoginAt = storedTimePtr(u.LastLoginAt)
	err := tx.queryRow(ctx, `INSERT INTO users (username, role, password_hash, disabled, created_at, updated_at, last_login_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		u.Username, u.Role, u.PasswordHash, u.Disabled, u.CreatedAt, u.UpdatedAt, u.LastLoginAt).Scan(&u.ID)
	return translate(err, "create user", "", "The username "+u.Username+" is already taken.")
}

func updateUser(ctx context.Context, tx *Tx, id int64, upd quarry.UserUpdate) (*quarry.User, error) {
	u, err := findUserByID(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	edited := upd.Role != nil || upd.PasswordHash != nil || upd.Disabled != nil
	if upd.Role != nil {
		u.Role = *upd.Role
	}
	if upd.PasswordHash != nil {
		u.PasswordHash = *upd.PasswordHash
	}
	if upd.Disabled != nil {
		u.Disabled = *upd.Disabled
	}
	if upd.LastLoginAt != nil {
		u.LastLoginAt = storedTimePtr(upd.LastLoginAt)
	}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	// A login is not an edit of the account, so it leaves updated_at alone.
	if edited {
		u.UpdatedAt = tx.now
	}
	_, err = tx.exec(ctx, "UPDATE users SET role = ?, password_hash = ?, disabled = ?, updated_at = ?, last_login_at = ? WHERE id = ?",
		u.Role, u.PasswordHash, u.Disabled, u.UpdatedAt, u.LastLoginAt, id)
	if err != nil {
		return nil, translate(err, "update user", "", "")
	}
	return u, nil
}

// execCount runs an UPDATE or DELETE and returns how many rows it touched.
func execCount(ctx context.Context, tx *Tx, query string, args ...any) (int, error) {
	res, err := tx.exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
