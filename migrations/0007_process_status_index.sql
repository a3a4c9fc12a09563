-- A list filtered by client (and status class) with few matches walked the whole list index
-- to find them: 95.6 ms for chromium + 5xx at a million page loads (benchmark 6). This index
-- gives those matches directly; history::query uses it when they are fewer than the list's
-- count cap, and the list index when they are common. It also does everything
-- page_loads_process did (the processes foreign key, retention's process cleanup).
DROP INDEX page_loads_process;
CREATE INDEX page_loads_process_status ON page_loads (process_id, status, started_at_ms, id);
