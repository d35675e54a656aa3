-- The W3C trace context of the request that created the upload (NULL when tracing
-- is off): its finish, maybe after a restart, continues the same trace.
ALTER TABLE uploads ADD COLUMN trace_context TEXT;
