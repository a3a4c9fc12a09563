-- The history list filters, sorts and counts page loads by the columns of this index only,
-- so SQLite scans the index, not the table: each page_loads row holds the whole page load
-- (detail_json, kilobytes), and scanning 200,000 rows for a filtered list took 150-320 ms.
-- `id` second keeps the list's order (started_at_ms DESC, id DESC) an index walk; the index
-- also does everything page_loads_started did.
DROP INDEX page_loads_started;
CREATE INDEX page_loads_list ON page_loads (started_at_ms, id, host, url, status, error, total_ms,
    request_count, connection_count, redirect_count, bytes, process_id);
