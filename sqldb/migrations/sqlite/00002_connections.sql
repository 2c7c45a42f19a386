-- XDR connections and the cached host inventory, on SQLite. Keep it equivalent to
-- migrations/postgres/00002_connections.sql.

-- +goose Up
-- Connections are soft-deleted (past acquisitions name them), so a name is unique only among
-- live ones. name_key is the name lower-cased in Go, as for projects. granted and missing are
-- JSON arrays of permission names from the latest check.
CREATE TABLE connections (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	provider       TEXT NOT NULL,
	name           TEXT NOT NULL,
	name_key       TEXT NOT NULL,
	tenant_id      TEXT NOT NULL,
	client_id      TEXT NOT NULL,
	cloud          TEXT NOT NULL,
	api_url        TEXT NOT NULL,
	authority_url  TEXT NOT NULL,
	ca_cert_pem    TEXT NOT NULL,
	secret_sealed  TEXT NOT NULL,
	secret_set_at  TEXT NOT NULL,
	health         TEXT NOT NULL CHECK (health IN ('unknown', 'ok', 'failed')),
	health_message TEXT NOT NULL,
	checked_at     TEXT,
	granted        TEXT NOT NULL, -- JSON array
	missing        TEXT NOT NULL, -- JSON array
	created_by     INTEGER REFERENCES users (id) ON DELETE SET NULL,
	created_at     TEXT NOT NULL,
	updated_at     TEXT NOT NULL,
	deleted_at     TEXT
);
CREATE UNIQUE INDEX connections_name_key ON connections (name_key) WHERE deleted_at IS NULL;

-- The inventory cache is replaced whole on every fetch. The *_key columns are lower-cased in
-- Go so that case-insensitive filters and the order by name are the same on both dialects;
-- tags is the JSON array as the platform gave it, xdr_host_tags the same tags for filtering.
CREATE TABLE xdr_hosts (
	connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
	host_id       TEXT NOT NULL,
	name          TEXT NOT NULL,
	name_key      TEXT NOT NULL,
	os            TEXT NOT NULL,
	os_version    TEXT NOT NULL,
	arch          TEXT NOT NULL,
	online        INTEGER NOT NULL CHECK (online IN (0, 1)),
	last_seen     TEXT NOT NULL,
	ip            TEXT NOT NULL,
	ip_key        TEXT NOT NULL,
	health        TEXT NOT NULL,
	health_key    TEXT NOT NULL,
	risk          TEXT NOT NULL,
	risk_key      TEXT NOT NULL,
	tags          TEXT NOT NULL, -- JSON array
	PRIMARY KEY (connection_id, host_id)
) WITHOUT ROWID;
-- Paging walks this index in order. The other filters are checked on the way: a connection
-- holds at most tens of thousands of hosts, and each further index slows every replace (one
-- on os cost about a fifth of ReplaceHosts). Tags have their own table, keyed for the filter.
CREATE INDEX xdr_hosts_name_idx ON xdr_hosts (connection_id, name_key, host_id);

-- Only the code that replaces a connection's hosts writes tags, and it deletes them with the
-- hosts. There is no foreign key to xdr_hosts: checking one per tag row made replacing an
-- inventory many times slower, on PostgreSQL by orders of magnitude once its cached plan for
-- the check went stale.
CREATE TABLE xdr_host_tags (
	connection_id INTEGER NOT NULL,
	host_id       TEXT NOT NULL,
	tag_key       TEXT NOT NULL,
	PRIMARY KEY (connection_id, tag_key, host_id)
) WITHOUT ROWID;

CREATE TABLE xdr_inventories (
	connection_id INTEGER PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
	fetched_at    TEXT NOT NULL,
	hosts         INTEGER NOT NULL
);

-- +goose Down
DROP TABLE xdr_inventories;
DROP TABLE xdr_host_tags;
DROP TABLE xdr_hosts;
DROP TABLE connections;
