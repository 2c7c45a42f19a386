-- XDR alerts, their poll watermarks, detection rules, the rules' per-host cool-downs and the
-- alert → acquisition links (quarry.Alert, quarry.DetectionRule), on SQLite. Keep it
-- equivalent to migrations/postgres/00010_alerts.sql. techniques, evidence and the rules'
-- lists are JSON arrays.

-- +goose Up
CREATE TABLE alerts (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	connection_id INTEGER NOT NULL REFERENCES connections (id),
	external_id   TEXT NOT NULL,
	host_id       TEXT NOT NULL,
	host_name     TEXT NOT NULL,
	title         TEXT NOT NULL,
	description   TEXT NOT NULL,
	severity      TEXT NOT NULL,
	status        TEXT NOT NULL,
	category      TEXT NOT NULL,
	techniques    TEXT NOT NULL,
	evidence      TEXT NOT NULL,
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL,
	first_seen_at TEXT NOT NULL,
	last_seen_at  TEXT NOT NULL,
	pending       INTEGER NOT NULL CHECK (pending IN (0, 1)),
	UNIQUE (connection_id, external_id)
);
CREATE INDEX alerts_created_idx ON alerts (created_at);
CREATE INDEX alerts_pending_idx ON alerts (connection_id, pending);

-- One row per connection: the newest lastUpdateTime stored, written with the alerts.
CREATE TABLE alert_watermarks (
	connection_id INTEGER PRIMARY KEY REFERENCES connections (id),
	watermark     TEXT NOT NULL,
	polled_at     TEXT NOT NULL
);

CREATE TABLE detection_rules (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	name             TEXT NOT NULL,
	name_key         TEXT NOT NULL UNIQUE,
	enabled          INTEGER NOT NULL CHECK (enabled IN (0, 1)),
	min_severity     TEXT NOT NULL,
	categories       TEXT NOT NULL,
	techniques       TEXT NOT NULL,
	title_contains   TEXT NOT NULL,
	host_patterns    TEXT NOT NULL,
	connection_id    INTEGER REFERENCES connections (id),
	project_id       INTEGER REFERENCES projects (id),
	profile          TEXT NOT NULL,
	cooldown_seconds INTEGER NOT NULL,
	comment_on_alert INTEGER NOT NULL CHECK (comment_on_alert IN (0, 1)),
	created_by       INTEGER REFERENCES users (id) ON DELETE SET NULL,
	created_at       TEXT NOT NULL,
	updated_at       TEXT NOT NULL
);

-- A rule's latest claim on a host: the cool-down survives restarts.
CREATE TABLE detection_rule_triggers (
	rule_id       INTEGER NOT NULL REFERENCES detection_rules (id) ON DELETE CASCADE,
	connection_id INTEGER NOT NULL,
	host_id       TEXT NOT NULL,
	triggered_at  TEXT NOT NULL,
	PRIMARY KEY (rule_id, connection_id, host_id)
);

CREATE TABLE alert_acquisitions (
	alert_id       INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
	acquisition_id INTEGER NOT NULL REFERENCES acquisitions (id),
	project_id     INTEGER NOT NULL,
	rule_id        INTEGER REFERENCES detection_rules (id) ON DELETE SET NULL,
	rule_name      TEXT NOT NULL,
	created_at     TEXT NOT NULL,
	PRIMARY KEY (alert_id, acquisition_id)
);
CREATE INDEX alert_acquisitions_rule_idx ON alert_acquisitions (rule_id, alert_id);

-- +goose Down
DROP TABLE alert_acquisitions;
DROP TABLE detection_rule_triggers;
DROP TABLE detection_rules;
DROP TABLE alert_watermarks;
DROP TABLE alerts;
