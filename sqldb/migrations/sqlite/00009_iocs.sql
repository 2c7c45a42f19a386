-- Projects' IOC lists (quarry.IOCList), on SQLite. Keep it equivalent to
-- migrations/postgres/00009_iocs.sql. indicators is the list in package ioc's text form.

-- +goose Up
CREATE TABLE ioc_lists (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	project_id  INTEGER NOT NULL REFERENCES projects (id),
	name        TEXT NOT NULL,
	name_key    TEXT NOT NULL,
	description TEXT NOT NULL,
	level       TEXT NOT NULL,
	indicators  TEXT NOT NULL,
	count       INTEGER NOT NULL,
	created_by  INTEGER REFERENCES users (id),
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL,
	UNIQUE (project_id, name_key)
);

-- +goose Down
DROP TABLE ioc_lists;
