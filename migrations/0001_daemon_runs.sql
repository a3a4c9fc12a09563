-- One row per start of the daemon: when it ran and which probes attached.
-- Migrations are only ever added, never edited.
CREATE TABLE daemon_runs (
    id            INTEGER PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,   -- unix epoch milliseconds
    stopped_at_ms INTEGER,            -- NULL while running or after a crash
    version       TEXT    NOT NULL,
    kernel        TEXT    NOT NULL,   -- uname -r
    probes_json   TEXT    NOT NULL    -- the attach report: family, point, variant, attached, error
);
