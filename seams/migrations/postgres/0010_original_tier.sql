-- Where an upload's original is kept: hot, cooling (on its way to the cold tier) or
-- cold; and when a transcode last read it (the cold tier takes originals not read for
-- LECTERN_COLD_AFTER_SECS).
ALTER TABLE uploads ADD COLUMN tier TEXT NOT NULL DEFAULT 'hot';
ALTER TABLE uploads ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
UPDATE uploads SET last_used_at = created_at;
CREATE INDEX uploads_tier ON uploads (tier, last_used_at);
