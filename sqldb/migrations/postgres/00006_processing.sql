-- The processing report of each evidence item (quarry.ProcessingReport as JSON), on PostgreSQL.
-- Keep it equivalent to migrations/sqlite/00006_processing.sql.

-- +goose Up
ALTER TABLE evidence ADD COLUMN processing TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE evidence DROP COLUMN processing;
