-- Captions, one file per lecture and language, kept as normalised WebVTT (written by
-- the catalog). Served as an HLS subtitle group under the lecture's playback token.
CREATE TABLE captions (
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    language TEXT NOT NULL,
    label TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    cue_count INTEGER NOT NULL,
    webvtt TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (lecture_id, language)
);
