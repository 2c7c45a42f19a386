-- Enrolment tokens of XDR connections, and the record of which upload token an enrolment
-- issued, on SQLite. Keep it equivalent to migrations/postgres/00004_enrol.sql.

-- +goose Up
-- A connection's bootstrap script carries one of these; only the hash is stored.
CREATE TABLE enrol_tokens (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
	purpose       TEXT NOT NULL CHECK (purpose IN ('enrol')),
	prefix        TEXT NOT NULL,
	hash          TEXT NOT NULL UNIQUE,
	created_at    TEXT NOT NULL,
	expires_at    TEXT NOT NULL,
	revoked_at    TEXT
);
CREATE INDEX enrol_tokens_connection_idx ON enrol_tokens (connection_id);

-- enrol_token_id names the enrolment token that obtained an upload token. It has no foreign
-- key: expired enrolment tokens are deleted, and the acquisition must stay enrolled. The
-- partial unique index is what refuses a second enrolment of one acquisition, also between
-- several servers.
ALTER TABLE upload_tokens ADD COLUMN enrol_token_id INTEGER;
CREATE UNIQUE INDEX upload_tokens_enrolled_idx ON upload_tokens (acquisition_id) WHERE enrol_token_id IS NOT NULL;

-- +goose Down
DROP INDEX upload_tokens_enrolled_idx;
ALTER TABLE upload_tokens DROP COLUMN enrol_token_id;
DROP TABLE enrol_tokens;
