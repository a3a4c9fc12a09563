-- Request and response headers as they may be kept (tracer::redact): a JSON array of
-- {"name", "value"} with lower-case names. Authorization, Proxy-Authorization, Cookie,
-- Set-Cookie, credential-named headers and headers off the safe list have the value
-- "[redacted]"; Referer/Location keep a redacted URL. NULL for rows written before.
ALTER TABLE requests ADD COLUMN request_headers TEXT;
ALTER TABLE requests ADD COLUMN response_headers TEXT;
