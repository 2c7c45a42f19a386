-- The Live Response launch limiter's ledger (scheduler/limit), on PostgreSQL. Keep it
-- equivalent to migrations/sqlite/00005_limiter.sql, whose comments explain the tables. It
-- depends on no migration after 00003.

-- +goose Up
CREATE TABLE lr_leases (
	id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	connection_id  BIGINT NOT NULL,
	host_id        TEXT NOT NULL,
	acquisition_id BIGINT NOT NULL,
	acquired_at    TIMESTAMPTZ NOT NULL,
	released_at    TIMESTAMPTZ,
	release_reason TEXT NOT NULL DEFAULT '' CHECK (release_reason IN ('', 'ended', 'expired'))
);
CREATE UNIQUE INDEX lr_leases_live_host ON lr_leases (connection_id, host_id) WHERE released_at IS NULL;
CREATE INDEX lr_leases_live_acquired ON lr_leases (acquired_at) WHERE released_at IS NULL;
CREATE INDEX lr_leases_acquisition ON lr_leases (acquisition_id) WHERE released_at IS NULL;

CREATE TABLE lr_launches (
	connection_id BIGINT NOT NULL,
	at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX lr_launches_connection_at ON lr_launches (connection_id, at);

-- +goose Down
DROP TABLE lr_launches;
DROP TABLE lr_leases;
