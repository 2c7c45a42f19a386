-- XDR alerts, their poll watermarks, detection rules, the rules' per-host cool-downs and the
-- alert → acquisition links (quarry.Alert, quarry.DetectionRule), on PostgreSQL. Keep it
-- equivalent to migrations/sqlite/00010_alerts.sql. techniques, evidence and the rules'
-- lists are JSON arrays.

-- +goose Up
CREATE TABLE alerts (
	id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	connection_id BIGINT NOT NULL REFERENCES connections (id),
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
	created_at    TIMESTAMPTZ NOT NULL,
	updated_at    TIMESTAMPTZ NOT NULL,
	first_seen_at TIMESTAMPTZ NOT NULL,
	last_seen_at  TIMESTAMPTZ NOT NULL,
	pending       BOOLEAN NOT NULL,
	UNIQUE (connection_id, external_id)
);
CREATE INDEX alerts_created_idx ON alerts (created_at);
CREATE INDEX alerts_pending_idx ON alerts (connection_id, pending);

-- One row per connection: the newest lastUpdateTime stored, written with the alerts.
CREATE TABLE alert_watermarks (
	connection_id BIGINT PRIMARY KEY REFERENCES connections (id),
	watermark     TIMESTAMPTZ NOT NULL,
	polled_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE detection_rules (
	id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name             TEXT NOT NULL,
	name_key         TEXT NOT NULL UNIQUE,
	enabled          BOOLEAN NOT NULL,
	min_severity     TEXT NOT NULL,
	categories       TEXT NOT NULL,
	techniques       TEXT NOT NULL,
	title_contains   TEXT NOT NULL,
	host_patterns    TEXT NOT NULL,
	connection_id    BIGINT REFERENCES connections (id),
	project_id       BIGINT REFERENCES projects (id),
	profile          TEXT NOT NULL,
	cooldown_seconds BIGINT NOT NULL,
	comment_on_alert BOOLEAN NOT NULL,
	created_by       BIGINT REFERENCES users (id) ON DELETE SET NULL,
	created_at       TIMESTAMPTZ NOT NULL,
	updated_at       TIMESTAMPTZ NOT NULL
);

-- A rule's latest claim on a host: the cool-down survives restarts.
CREATE TABLE detection_rule_triggers (
	rule_id       BIGINT NOT NULL REFERENCES detection_rules (id) ON DELETE CASCADE,
	connection_id BIGINT NOT NULL,
	host_id       TEXT NOT NULL,
	triggered_at  TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (rule_id, connection_id, host_id)
);

CREATE TABLE alert_acquisitions (
	alert_id       BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
	acquisition_id BIGINT NOT NULL REFERENCES acquisitions (id),
	project_id     BIGINT NOT NULL,
	rule_id        BIGINT REFERENCES detection_rules (id) ON DELETE SET NULL,
	rule_name      TEXT NOT NULL,
	created_at     TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (alert_id, acquisition_id)
);
CREATE INDEX alert_acquisitions_rule_idx ON alert_acquisitions (rule_id, alert_id);

-- +goose Down
DROP TABLE alert_acquisitions;
DROP TABLE detection_rule_triggers;
DROP TABLE detection_rules;
DROP TABLE alert_watermarks;
DROP TABLE alerts;
