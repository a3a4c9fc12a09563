-- Reference fetches (`tracer fetch --db`): one row per page load, the baseline the daemon's
-- traced loads of the same URL are compared with. Migrations are only ever added, never edited.
CREATE TABLE baselines (
    id            INTEGER PRIMARY KEY,
    url           TEXT    NOT NULL,   -- the URL after address-bar parsing (http://shop.test/)
    final_url     TEXT    NOT NULL,   -- the end of the document's redirect chain
    fetched_at_ms INTEGER NOT NULL,   -- unix epoch milliseconds at the start of the load
    total_ms      REAL    NOT NULL,   -- first DNS query to last byte
    error         TEXT,               -- NULL, or the failure's net error (ERR_NAME_NOT_RESOLVED ...)
    result_json   TEXT    NOT NULL    -- the whole tracer::fetch::PageLoad as JSON
);
CREATE INDEX baselines_url ON baselines (url, fetched_at_ms);
