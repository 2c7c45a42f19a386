-- Quarry's initial schema on SQLite. Keep it equivalent to migrations/postgres/00001_init.sql.
-- Times are TEXT in RFC 3339 UTC with six fraction digits, so text order is time order.
-- AUTOINCREMENT keeps ids from being reused after deletes, as PostgreSQL identities are not:
-- the audit log names targets by id.

-- +goose Up
CREATE TABLE users (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	username      TEXT NOT NULL,
	role          TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL,
	last_login_at TEXT
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE sessions (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	token_hash   TEXT NOT NULL UNIQUE,
	csrf_token   TEXT NOT NULL,
	user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	ip           TEXT NOT NULL,
	user_agent   TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	expires_at   TEXT NOT NULL,
	last_seen_at TEXT NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE api_tokens (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	prefix       TEXT NOT NULL,
	hash         TEXT NOT NULL UNIQUE,
	role         TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	expires_at   TEXT NOT NULL,
	last_used_at TEXT,
	revoked_at   TEXT
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);
CREATE INDEX api_tokens_expires_at_idx ON api_tokens (expires_at);
CREATE INDEX api_tokens_revoked_at_idx ON api_tokens (revoked_at);

CREATE TABLE login_failures (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	username TEXT NOT NULL, -- lower case
	ip       TEXT NOT NULL,
	at       TEXT NOT NULL
);
CREATE INDEX login_failures_username_at_idx ON login_failures (username, at);
CREATE INDEX login_failures_ip_at_idx ON login_failures (ip, at);
CREATE INDEX login_failures_at_idx ON login_failures (at);

-- No foreign key on actor_id: entries outlive the users they name.
CREATE TABLE audit_log (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	at          TEXT NOT NULL,
	actor_id    INTEGER,
	actor       TEXT NOT NULL,
	action      TEXT NOT NULL,
	target_type TEXT NOT NULL,
	target_id   TEXT NOT NULL,
	ip          TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	details     TEXT -- JSON object
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_at_idx ON audit_log (actor, at);
CREATE INDEX audit_log_action_at_idx ON audit_log (action, at);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);

-- +goose StatementBegin
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
	SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
	SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd

-- name_key is the name lower-cased in Go, so that uniqueness and search fold case the same
-- way on both dialects (SQLite's lower() folds ASCII only).
CREATE TABLE projects (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	name        TEXT NOT NULL,
	name_key    TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL,
	created_by  INTEGER REFERENCES users (id) ON DELETE SET NULL,
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL
);
CREATE INDEX projects_created_at_idx ON projects (created_at);

CREATE TABLE experiments (
	name       TEXT PRIMARY KEY,
	enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
	updated_at TEXT NOT NULL,
	updated_by TEXT NOT NULL
);

-- +goose Down
DROP TABLE experiments;
DROP TABLE projects;
DROP TABLE audit_log;
DROP TABLE login_failures;
DROP TABLE api_tokens;
DROP TABLE sessions;
DROP TABLE users;
