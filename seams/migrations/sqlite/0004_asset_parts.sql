-- A lecture split into parts (chunks of video rungs, its audio, its stills): one row
-- per part, written by ingest with the jobs; the catalog fills in the worker's
-- report when the part is stored, and stitches playlists from the reports.
CREATE TABLE asset_parts (
    asset_id TEXT NOT NULL,
    part_key TEXT NOT NULL,
    -- the part's place in the schedule (the order its job is published in)
    position INTEGER NOT NULL,
    -- the worker's report (JSON) once the part is stored
    report TEXT,
    PRIMARY KEY (asset_id, part_key)
);

-- The jobs of one upload are published in this order (they share created_at).
ALTER TABLE jobs ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
