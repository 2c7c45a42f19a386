-- XDR connections and the cached host inventory, on PostgreSQL. Keep it equivalent to
-- migrations/sqlite/00002_connections.sql.
-- The keys that Quarry orders by are COLLATE "C": byte order, as on SQLite, so both dialects
-- page through hosts in the same order whatever the database's collation.

-- +goose Up
CREATE TABLE connections (
	id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	provider       TEXT NOT NULL,
	name           TEXT NOT NULL,
	name_key       TEXT COLLATE "C" NOT NULL,
	tenant_id      TEXT NOT NULL,
	client_id      TEXT NOT NULL,
	cloud          TEXT NOT NULL,
	api_url        TEXT NOT NULL,
	authority_url  TEXT NOT NULL,
	ca_cert_pem    TEXT NOT NULL,
	secret_sealed  TEXT NOT NULL,
	secret_set_at  TIMESTAMPTZ NOT NULL,
	health         TEXT NOT NULL CHECK (health IN ('unknown', 'ok', 'failed')),
	health_message TEXT NOT NULL,
	checked_at     TIMESTAMPTZ,
	granted        TEXT NOT NULL, -- JSON array, as on SQLite
	missing        TEXT NOT NULL, -- JSON array, as on SQLite
	created_by     BIGINT REFERENCES users (id) ON DELETE SET NULL,
	created_at     TIMESTAMPTZ NOT NULL,
	updated_at     TIMESTAMPTZ NOT NULL,
	deleted_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX connections_name_key ON connections (name_key) WHERE deleted_at IS NULL;

CREATE TABLE xdr_hosts (
	connection_id BIGINT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
	host_id       TEXT COLLATE "C" NOT NULL,
	name          TEXT NOT NULL,
	name_key      TEXT COLLATE "C" NOT NULL,
	os            TEXT NOT NULL,
	os_version    TEXT NOT NULL,
	arch          TEXT NOT NULL,
	online        BOOLEAN NOT NULL,
	last_seen     TIMESTAMPTZ NOT NULL,
	ip            TEXT NOT NULL,
	ip_key        TEXT COLLATE "C" NOT NULL,
	health        TEXT NOT NULL,
	health_key    TEXT NOT NULL,
	risk          TEXT NOT NULL,
	risk_key      TEXT NOT NULL,
	tags          TEXT NOT NULL, -- JSON array, as on SQLite
	PRIMARY KEY (connection_id, host_id)
);
-- Paging walks this index in order. The other filters are checked on the way: a connection
-- holds at most tens of thousands of hosts, and each further index slows every replace (one
-- on os cost about a fifth of ReplaceHosts). Tags have their own table, keyed for the filter.
CREATE INDEX xdr_hosts_name_idx ON xdr_hosts (connection_id, name_key, host_id);

-- Only the code that replaces a connection's hosts writes tags, and it deletes them with the
-- hosts. There is no foreign key to xdr_hosts: checking one per tag row made replacing an
-- inventory many times slower, on PostgreSQL by orders of magnitude once its cached plan for
-- the check went stale.
CREATE TABLE xdr_host_tags (
	connection_id BIGINT NOT NULL,
	host_id       TEXT COLLATE "C" NOT NULL,
	tag_key       TEXT NOT NULL,
	PRIMARY KEY (connection_id, tag_key, host_id)
);

CREATE TABLE xdr_inventories (
	connection_id BIGINT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
	fetched_at    TIMESTAMPTZ NOT NULL,
	hosts         INTEGER NOT NULL
);

-- +goose Down
DROP TABLE xdr_inventories;
DROP TABLE xdr_host_tags;
DROP TABLE xdr_hosts;
DROP TABLE connections;
