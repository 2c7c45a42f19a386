-- The full-text index of the timeline moves out of the database into a file of its own beside it
-- (see sqldb/search.go): building it no longer holds the database's write lock, and it runs on
-- another core than the inserts. The new file is filled again from the events themselves.
--
-- search_index names this database, so that a search file found beside it is known to be its own
-- and not, for example, one left from a database that was restored or replaced.

-- +goose Up
DROP TABLE main.events_fts;
CREATE TABLE search_index (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	token TEXT NOT NULL
);
INSERT INTO search_index (id, token) VALUES (1, lower(hex(randomblob(16))));

-- +goose Down
DROP TABLE search_index;
CREATE VIRTUAL TABLE main.events_fts USING fts5 (doc, content = '', contentless_delete = 1, detail = none, tokenize = 'trigram');
