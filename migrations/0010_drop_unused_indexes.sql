-- Two indexes that no query of the daemon, the CLI or the dashboard reads, each paid for on
-- every page load and lookup stored (issue 20, target D):
-- * page_loads_host: the host filter matches `host = ? OR host LIKE '%.' || ?`, which an
--   index on host cannot answer; the list walks page_loads_list (0006), which holds host.
-- * dns_lookups_name: nothing looks lookups up by name; the README's slowest-lookups query
--   filters by time and sorts by duration.
-- Both keys are random (a host, a name), so each insert lands on another page of the index.
-- Dropped, ingest of 1-request page loads took 10% less CPU in SQLite alone (20,000 page
-- loads with the rows of 0003-0009: 2.14 s of CPU with them, 1.93 s without).
DROP INDEX IF EXISTS page_loads_host;
DROP INDEX IF EXISTS dns_lookups_name;
