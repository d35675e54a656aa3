-- Caption text, one row per cue, for search (written by the catalog with the captions
-- it comes from), with its full-text vector.
CREATE TABLE transcript_cues (
    id BIGSERIAL PRIMARY KEY,
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    language TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    text TEXT NOT NULL,
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
);
CREATE INDEX transcript_cues_lecture ON transcript_cues (lecture_id, language);
CREATE INDEX transcript_cues_search ON transcript_cues USING GIN (search);
