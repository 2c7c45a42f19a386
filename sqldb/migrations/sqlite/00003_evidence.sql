-- Acquisitions, evidence, its chain of custody and upload tokens, on SQLite. Keep it
-- equivalent to migrations/postgres/00003_evidence.sql.

-- +goose Up
-- progress_* are the collector's latest heartbeat. evidence_id has no foreign key: evidence
-- points back at its acquisition, and the two are written in one transaction.
CREATE TABLE acquisitions (
	id                  INTEGER PRIMARY KEY AUTOINCREMENT,
	project_id          INTEGER NOT NULL REFERENCES projects (id),
	connection_id       INTEGER REFERENCES connections (id),
	host_id             TEXT NOT NULL,
	host_name           TEXT NOT NULL,
	source              TEXT NOT NULL CHECK (source IN ('xdr', 'manual')),
	profile             TEXT NOT NULL,
	state               TEXT NOT NULL,
	error               TEXT NOT NULL,
	progress_phase      TEXT NOT NULL,
	progress_files_done INTEGER NOT NULL,
	progress_bytes_done INTEGER NOT NULL,
	progress_bytes_total INTEGER NOT NULL,
	evidence_id         INTEGER,
	last_heartbeat_at   TEXT,
	created_by          INTEGER REFERENCES users (id) ON DELETE SET NULL,
	created_at          TEXT NOT NULL,
	updated_at          TEXT NOT NULL
);
CREATE INDEX acquisitions_project_idx ON acquisitions (project_id, created_at);
CREATE INDEX acquisitions_state_idx ON acquisitions (state);

CREATE TABLE acquisition_history (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	acquisition_id INTEGER NOT NULL REFERENCES acquisitions (id) ON DELETE CASCADE,
	state          TEXT NOT NULL,
	at             TEXT NOT NULL
);
CREATE INDEX acquisition_history_acquisition_idx ON acquisition_history (acquisition_id, id);

-- One package per acquisition: the unique index is what refuses a second one.
CREATE TABLE evidence (
	id                INTEGER PRIMARY KEY AUTOINCREMENT,
	project_id        INTEGER NOT NULL REFERENCES projects (id),
	acquisition_id    INTEGER NOT NULL UNIQUE REFERENCES acquisitions (id),
	sha256            TEXT NOT NULL,
	size              INTEGER NOT NULL,
	blob_key          TEXT NOT NULL,
	received_at       TEXT NOT NULL,
	received_from_ip  TEXT NOT NULL,
	token_id          INTEGER NOT NULL,
	token_prefix      TEXT NOT NULL,
	collector_version TEXT NOT NULL,
	hostname          TEXT NOT NULL,
	manifest          TEXT NOT NULL, -- JSON object: the manifest summary
	state             TEXT NOT NULL
);
CREATE INDEX evidence_project_idx ON evidence (project_id, received_at);

-- The chain of custody is append-only, like audit_log. evidence_id is NULL for packages
-- rejected before they became evidence; acquisition_id names them then.
CREATE TABLE custody_log (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	evidence_id    INTEGER REFERENCES evidence (id),
	acquisition_id INTEGER NOT NULL REFERENCES acquisitions (id),
	at             TEXT NOT NULL,
	actor          TEXT NOT NULL,
	action         TEXT NOT NULL,
	details        TEXT -- JSON object
);
CREATE INDEX custody_log_acquisition_idx ON custody_log (acquisition_id, id);
CREATE INDEX custody_log_evidence_idx ON custody_log (evidence_id, id);

-- +goose StatementBegin
CREATE TRIGGER custody_log_no_update BEFORE UPDATE ON custody_log
BEGIN
	SELECT RAISE(ABORT, 'custody_log is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER custody_log_no_delete BEFORE DELETE ON custody_log
BEGIN
	SELECT RAISE(ABORT, 'custody_log is append-only');
END;
-- +goose StatementEnd

-- upload_id is the tus upload the token created; one per token.
CREATE TABLE upload_tokens (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	acquisition_id INTEGER NOT NULL REFERENCES acquisitions (id) ON DELETE CASCADE,
	purpose        TEXT NOT NULL CHECK (purpose IN ('upload')),
	prefix         TEXT NOT NULL,
	hash           TEXT NOT NULL UNIQUE,
	upload_id      TEXT NOT NULL,
	created_at     TEXT NOT NULL,
	expires_at     TEXT NOT NULL,
	revoked_at     TEXT
);
CREATE INDEX upload_tokens_acquisition_idx ON upload_tokens (acquisition_id);

-- +goose Down
DROP TABLE upload_tokens;
DROP TABLE custody_log;
DROP TABLE evidence;
DROP TABLE acquisition_history;
DROP TABLE acquisitions;
