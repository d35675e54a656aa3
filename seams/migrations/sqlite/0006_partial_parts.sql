-- A part may be reported while its job still runs (the whole-lecture audio, as it
-- grows): such a report is partial, and a later one replaces it only if it is final
-- or lists more segments. A part counts as stored once its report is final.
ALTER TABLE asset_parts ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
ALTER TABLE asset_parts ADD COLUMN segment_count INTEGER NOT NULL DEFAULT 0;
