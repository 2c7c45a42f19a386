-- Acquisitions, evidence, its chain of custody and upload tokens, on PostgreSQL. Keep it
-- equivalent to migrations/sqlite/00003_evidence.sql.

-- +goose Up
-- progress_* are the collector's latest heartbeat. evidence_id has no foreign key: evidence
-- points back at its acquisition, and the two are written in one transaction.
CREATE TABLE acquisitions (
	id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	project_id          BIGINT NOT NULL REFERENCES projects (id),
	connection_id       BIGINT REFERENCES connections (id),
	host_id             TEXT NOT NULL,
	host_name           TEXT NOT NULL,
	source              TEXT NOT NULL CHECK (source IN ('xdr', 'manual')),
	profile             TEXT NOT NULL,
	state               TEXT NOT NULL,
	error               TEXT NOT NULL,
	progress_phase      TEXT NOT NULL,
	progress_files_done BIGINT NOT NULL,
	progress_bytes_done BIGINT NOT NULL,
	progress_bytes_total BIGINT NOT NULL,
	evidence_id         BIGINT,
	last_heartbeat_at   TIMESTAMPTZ,
	created_by          BIGINT REFERENCES users (id) ON DELETE SET NULL,
	created_at          TIMESTAMPTZ NOT NULL,
	updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX acquisitions_project_idx ON acquisitions (project_id, created_at);
CREATE INDEX acquisitions_state_idx ON acquisitions (state);

CREATE TABLE acquisition_history (
	id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	acquisition_id BIGINT NOT NULL REFERENCES acquisitions (id) ON DELETE CASCADE,
	state          TEXT NOT NULL,
	at             TIMESTAMPTZ NOT NULL
);
CREATE INDEX acquisition_history_acquisition_idx ON acquisition_history (acquisition_id, id);

-- One package per acquisition: the unique index is what refuses a second one.
CREATE TABLE evidence (
	id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	project_id        BIGINT NOT NULL REFERENCES projects (id),
	acquisition_id    BIGINT NOT NULL UNIQUE REFERENCES acquisitions (id),
	sha256            TEXT NOT NULL,
	size              BIGINT NOT NULL,
	blob_key          TEXT NOT NULL,
	received_at       TIMESTAMPTZ NOT NULL,
	received_from_ip  TEXT NOT NULL,
	token_id          BIGINT NOT NULL,
	token_prefix      TEXT NOT NULL,
	collector_version TEXT NOT NULL,
	hostname          TEXT NOT NULL,
	manifest          TEXT NOT NULL, -- JSON object, as on SQLite
	state             TEXT NOT NULL
);
CREATE INDEX evidence_project_idx ON evidence (project_id, received_at);

-- The chain of custody is append-only, like audit_log. evidence_id is NULL for packages
-- rejected before they became evidence; acquisition_id names them then.
CREATE TABLE custody_log (
	id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	evidence_id    BIGINT REFERENCES evidence (id),
	acquisition_id BIGINT NOT NULL REFERENCES acquisitions (id),
	at             TIMESTAMPTZ NOT NULL,
	actor          TEXT NOT NULL,
	action         TEXT NOT NULL,
	details        TEXT -- JSON object
);
CREATE INDEX custody_log_acquisition_idx ON custody_log (acquisition_id, id);
CREATE INDEX custody_log_evidence_idx ON custody_log (evidence_id, id);

-- +goose StatementBegin
CREATE FUNCTION custody_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'custody_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER custody_log_no_update BEFORE UPDATE ON custody_log
	FOR EACH ROW EXECUTE FUNCTION custody_log_append_only();
CREATE TRIGGER custody_log_no_delete BEFORE DELETE ON custody_log
	FOR EACH ROW EXECUTE FUNCTION custody_log_append_only();
CREATE TRIGGER custody_log_no_truncate BEFORE TRUNCATE ON custody_log
	FOR EACH STATEMENT EXECUTE FUNCTION custody_log_append_only();

-- upload_id is the tus upload the token created; one per token.
CREATE TABLE upload_tokens (
	id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	acquisition_id BIGINT NOT NULL REFERENCES acquisitions (id) ON DELETE CASCADE,
	purpose        TEXT NOT NULL CHECK (purpose IN ('upload')),
	prefix         TEXT NOT NULL,
	hash           TEXT NOT NULL UNIQUE,
	upload_id      TEXT NOT NULL,
	created_at     TIMESTAMPTZ NOT NULL,
	expires_at     TIMESTAMPTZ NOT NULL,
	revoked_at     TIMESTAMPTZ
);
CREATE INDEX upload_tokens_acquisition_idx ON upload_tokens (acquisition_id);

-- +goose Down
DROP TABLE upload_tokens;
DROP TABLE custody_log;
DROP FUNCTION custody_log_append_only();
DROP TABLE evidence;
DROP TABLE acquisition_history;
DROP TABLE acquisitions;
