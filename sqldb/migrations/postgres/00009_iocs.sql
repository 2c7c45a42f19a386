-- Projects' IOC lists (quarry.IOCList), on PostgreSQL. Keep it equivalent to
-- migrations/sqlite/00009_iocs.sql. indicators is the list in package ioc's text form.

-- +goose Up
CREATE TABLE ioc_lists (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	project_id  BIGINT NOT NULL REFERENCES projects (id),
	name        TEXT NOT NULL,
	name_key    TEXT NOT NULL,
	description TEXT NOT NULL,
	level       TEXT NOT NULL,
	indicators  TEXT NOT NULL,
	count       INTEGER NOT NULL,
	created_by  BIGINT REFERENCES users (id),
	created_at  TIMESTAMPTZ NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL,
	UNIQUE (project_id, name_key)
);

-- +goose Down
DROP TABLE ioc_lists;
