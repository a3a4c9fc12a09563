-- A list filtered by status class alone, or by failure, had the trouble 0007 solved for a
-- client's rare matches: its count walked the list index until it had 10,000 matches or
-- reached the end (failures are rare, so usually the end). These two give those matches
-- directly; history::query picks the index (its `Walk`). Failures are few, so their partial
-- index is small, and it is in list order: no sort at all.
CREATE INDEX page_loads_status ON page_loads (status, started_at_ms, id);
CREATE INDEX page_loads_failed ON page_loads (started_at_ms, id, process_id) WHERE error IS NOT NULL OR status IS NULL;
