-- Timeline events, their full-text index and analysts' comments, on SQLite. Keep it equivalent to
-- migrations/postgres/00007_events.sql.
--
-- ts is the event time in microseconds since the Unix epoch (UTC), so ranges and histograms are
-- integer arithmetic. fields holds quarry.Event.Fields as a JSON object in which every scalar is
-- its text (the text query.Match compares); field_types says which were numbers, bools or times
-- so that they come back with their Go type (see sqldb/event.go). events_fts indexes a search
-- document built in Go from every text of the event (see searchDoc); it is contentless, its rowid
-- is the event id, and it only narrows candidates: the exact match is query.Match itself.

-- +goose Up
CREATE TABLE events (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	project_id     INTEGER NOT NULL REFERENCES projects (id),
	evidence_id    INTEGER NOT NULL,
	ts             INTEGER NOT NULL,
	timestamp_desc TEXT NOT NULL,
	source         TEXT NOT NULL,
	host           TEXT NOT NULL,
	username       TEXT NOT NULL,
	message        TEXT NOT NULL,
	path           TEXT NOT NULL,
	fields         TEXT NOT NULL,
	field_types    TEXT NOT NULL,
	severity       TEXT NOT NULL,
	detections     TEXT NOT NULL,
	starred        INTEGER NOT NULL DEFAULT 0 CHECK (starred IN (0, 1)),
	comments       INTEGER NOT NULL DEFAULT 0
);
-- Every index ends in the rowid, which is the id: (ts, id) is the timeline's order.
CREATE INDEX events_project_ts_idx ON events (project_id, ts);
CREATE INDEX events_project_host_ts_idx ON events (project_id, host, ts);
CREATE INDEX events_project_source_ts_idx ON events (project_id, source, ts);
CREATE INDEX events_project_severity_ts_idx ON events (project_id, severity, ts);
CREATE INDEX events_project_starred_ts_idx ON events (project_id, ts) WHERE starred = 1;
CREATE INDEX events_evidence_idx ON events (evidence_id);

-- detail=none keeps no positions: the index is several times smaller and faster to build, and
-- a search for text becomes a search for rows that have all its trigrams, which is all the store
-- needs (see ftsTrigrams). automerge 16 merges segments in larger steps (less rewriting on ingest).
CREATE VIRTUAL TABLE events_fts USING fts5 (doc, content = '', contentless_delete = 1, detail = none, tokenize = 'trigram');
INSERT INTO events_fts (events_fts, rank) VALUES ('automerge', 16);

CREATE TABLE event_comments (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	project_id INTEGER NOT NULL REFERENCES projects (id),
	event_id   INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
	author     TEXT NOT NULL,
	text       TEXT NOT NULL,
	created_at TEXT NOT NULL
);
CREATE INDEX event_comments_event_idx ON event_comments (event_id, id);

-- +goose Down
DROP TABLE event_comments;
DROP TABLE events_fts;
DROP TABLE events;
