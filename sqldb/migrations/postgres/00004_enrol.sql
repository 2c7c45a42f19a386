-- Enrolment tokens of XDR connections, and the record of which upload token an enrolment
-- issued, on PostgreSQL. Keep it equivalent to migrations/sqlite/00004_enrol.sql.

-- +goose Up
-- A connection's bootstrap script carries one of these; only the hash is stored.
CREATE TABLE enrol_tokens (
	id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	connection_id BIGINT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
	purpose       TEXT NOT NULL CHECK (purpose IN ('enrol')),
	prefix        TEXT NOT NULL,
	hash          TEXT NOT NULL UNIQUE,
	created_at    TIMESTAMPTZ NOT NULL,
	expires_at    TIMESTAMPTZ NOT NULL,
	revoked_at    TIMESTAMPTZ
);
CREATE INDEX enrol_tokens_connection_idx ON enrol_tokens (connection_id);

-- enrol_token_id names the enrolment token that obtained an upload token. It has no foreign
-- key: expired enrolment tokens are deleted, and the acquisition must stay enrolled. The
-- partial unique index is what refuses a second enrolment of one acquisition, also between
-- several servers.
ALTER TABLE upload_tokens ADD COLUMN enrol_token_id BIGINT;
CREATE UNIQUE INDEX upload_tokens_enrolled_idx ON upload_tokens (acquisition_id) WHERE enrol_token_id IS NOT NULL;

-- +goose Down
DROP INDEX upload_tokens_enrolled_idx;
ALTER TABLE upload_tokens DROP COLUMN enrol_token_id;
DROP TABLE enrol_tokens;
