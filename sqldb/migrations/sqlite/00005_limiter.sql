-- The Live Response launch limiter's ledger (scheduler/limit), on SQLite. Keep it equivalent to
-- migrations/postgres/00005_limiter.sql. It depends on no migration after 00003.

-- +goose Up
-- One row per Live Response action: live while released_at is NULL. The partial unique index
-- is the database's own refusal of a second live action on one device. There are no foreign
-- keys: the ledger names connections and acquisitions only to count and release, connections
-- are never deleted for real, and checking keys would lengthen the transaction every launch
-- waits on.
CREATE TABLE lr_leases (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	connection_id  INTEGER NOT NULL,
	host_id        TEXT NOT NULL,
	acquisition_id INTEGER NOT NULL,
	acquired_at    TEXT NOT NULL,
	released_at    TEXT,
	release_reason TEXT NOT NULL DEFAULT '' CHECK (release_reason IN ('', 'ended', 'expired'))
);
CREATE UNIQUE INDEX lr_leases_live_host ON lr_leases (connection_id, host_id) WHERE released_at IS NULL;
CREATE INDEX lr_leases_live_acquired ON lr_leases (acquired_at) WHERE released_at IS NULL;
CREATE INDEX lr_leases_acquisition ON lr_leases (acquisition_id) WHERE released_at IS NULL;

-- Launch times inside the rate window; older ones are pruned on every launch attempt.
CREATE TABLE lr_launches (
	connection_id INTEGER NOT NULL,
	at            TEXT NOT NULL
);
CREATE INDEX lr_launches_connection_at ON lr_launches (connection_id, at);

-- +goose Down
DROP TABLE lr_launches;
DROP TABLE lr_leases;
