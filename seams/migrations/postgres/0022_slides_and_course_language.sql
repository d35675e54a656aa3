-- The language a course is taught in (ISO 639-1), for reading its slides.
ALTER TABLE courses ADD COLUMN language TEXT NOT NULL DEFAULT 'en';

-- The slides a lecture's current asset shows, found by its slides job (written by the
-- catalog): when each comes on screen, its title and words, and its thumbnail, with
-- the words' full-text vector.
CREATE TABLE lecture_slides (
    id BIGSERIAL PRIMARY KEY,
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    asset_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    start_ms BIGINT NOT NULL,
    title TEXT,
    text TEXT NOT NULL,
    thumbnail TEXT NOT NULL,
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    UNIQUE (lecture_id, position)
);
CREATE INDEX lecture_slides_search ON lecture_slides USING GIN (search);
