-- A page load that a cap closed before its client went quiet (tracer::stitch's caps.rs): the
-- cap's name, `page_requests`, `page_age`, `open_pages`, `connections`, `lookups` or
-- `captured_bytes`. NULL for a page load that closed by quiet, and for rows written before.
-- detail_json's `cut` holds the cap with its value. Not in the list index (0006): a list
-- filtered by it would walk the table, and cut page loads are rare.
ALTER TABLE page_loads ADD COLUMN cut TEXT;
