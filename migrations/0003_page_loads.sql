-- Page loads stitched from kernel events, and what they are made of.
-- Times: *_at_ms are unix epoch ms (wall clock); *_ns are CLOCK_MONOTONIC ns (the clock of
-- the kernel events); *_ms are durations, -1 where a phase did not happen (HAR style).

CREATE TABLE processes (
    id            INTEGER PRIMARY KEY,
    tgid          INTEGER NOT NULL,
    name          TEXT    NOT NULL,   -- the client's name: browser, curl ... (not a thread name)
    exe           TEXT,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    UNIQUE (tgid, name)
);

CREATE TABLE page_loads (
    id               INTEGER PRIMARY KEY,
    process_id       INTEGER NOT NULL REFERENCES processes(id),
    started_at_ms    INTEGER NOT NULL,
    started_ns       INTEGER NOT NULL,
    ended_ns         INTEGER NOT NULL,
    total_ms         REAL    NOT NULL,
    url              TEXT,             -- the navigation's URL (first request)
    host             TEXT,
    status           INTEGER,          -- final document status after redirects
    error            TEXT,             -- ERR_NAME_NOT_RESOLVED, ERR_CONNECTION_REFUSED ...
    request_count    INTEGER NOT NULL,
    connection_count INTEGER NOT NULL,
    redirect_count   INTEGER NOT NULL,
    bytes            INTEGER NOT NULL, -- response bytes, headers + bodies
    detail_json      TEXT    NOT NULL  -- the whole page load (for show / export / dashboard)
);
CREATE INDEX page_loads_started ON page_loads (started_at_ms);
CREATE INDEX page_loads_host ON page_loads (host);
CREATE INDEX page_loads_process ON page_loads (process_id);

CREATE TABLE dns_lookups (
    id            INTEGER PRIMARY KEY,
    page_load_id  INTEGER NOT NULL REFERENCES page_loads(id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,    -- position in the page load
    tgid          INTEGER NOT NULL,
    comm          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    qtypes        TEXT    NOT NULL,    -- "A,AAAA,HTTPS"
    started_at_ms INTEGER NOT NULL,
    duration_ms   REAL    NOT NULL,
    rcode         TEXT,
    cname_chain   TEXT    NOT NULL,    -- JSON array, question name first
    addresses     TEXT    NOT NULL,    -- JSON array
    min_ttl       INTEGER,
    server        TEXT,
    error         TEXT
);
CREATE INDEX dns_lookups_page ON dns_lookups (page_load_id);
CREATE INDEX dns_lookups_name ON dns_lookups (name);

CREATE TABLE connections (
    id            INTEGER PRIMARY KEY,
    page_load_id  INTEGER NOT NULL REFERENCES page_loads(id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    tgid          INTEGER NOT NULL,
    comm          TEXT    NOT NULL,
    src           TEXT,
    dst           TEXT,
    started_at_ms INTEGER NOT NULL,
    tcp_ms        REAL    NOT NULL,    -- SYN_SENT -> ESTABLISHED
    error         TEXT,
    requests      INTEGER NOT NULL
);
CREATE INDEX connections_page ON connections (page_load_id);

CREATE TABLE tls_sessions (
    id            INTEGER PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    page_load_id  INTEGER NOT NULL REFERENCES page_loads(id) ON DELETE CASCADE,
    library       TEXT    NOT NULL,
    handshake_ms  REAL    NOT NULL,
    estimated     INTEGER NOT NULL,    -- 1 when the handshake end was inferred
    version       TEXT,
    cipher        TEXT,
    alpn          TEXT,
    sni           TEXT
);
CREATE INDEX tls_sessions_page ON tls_sessions (page_load_id);

CREATE TABLE requests (
    id             INTEGER PRIMARY KEY,
    page_load_id   INTEGER NOT NULL REFERENCES page_loads(id) ON DELETE CASCADE,
    idx            INTEGER NOT NULL,
    connection_id  INTEGER REFERENCES connections(id) ON DELETE CASCADE,
    dns_lookup_id  INTEGER REFERENCES dns_lookups(id) ON DELETE CASCADE,
    tgid           INTEGER NOT NULL,
    comm           TEXT    NOT NULL,
    method         TEXT,
    url            TEXT,
    host           TEXT,
    path           TEXT,               -- query values redacted
    protocol       TEXT,               -- HTTP/1.1, HTTP/2
    status         INTEGER,
    redirect_to    TEXT,
    content_type   TEXT,
    request_bytes  INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    blocked_ms     REAL    NOT NULL,
    dns_ms         REAL    NOT NULL,
    connect_ms     REAL    NOT NULL,   -- includes ssl_ms (HAR 1.2)
    ssl_ms         REAL    NOT NULL,
    send_ms        REAL    NOT NULL,
    wait_ms        REAL    NOT NULL,
    receive_ms     REAL    NOT NULL,
    total_ms       REAL    NOT NULL,
    new_connection INTEGER NOT NULL,
    error          TEXT,
    complete       INTEGER NOT NULL
);
CREATE INDEX requests_page ON requests (page_load_id);
CREATE INDEX requests_host ON requests (host);

ALTER TABLE daemon_runs ADD COLUMN lost_events INTEGER NOT NULL DEFAULT 0;
ALTER TABLE daemon_runs ADD COLUMN dropped_events INTEGER NOT NULL DEFAULT 0;
