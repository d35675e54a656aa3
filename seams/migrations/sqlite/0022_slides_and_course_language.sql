-- The language a course is taught in (ISO 639-1), for reading its slides.
ALTER TABLE courses ADD COLUMN language TEXT NOT NULL DEFAULT 'en';

-- The slides a lecture's current asset shows, found by its slides job (written by the
-- catalog): when each comes on screen, its title and words, and its thumbnail. The
-- words are searchable through an FTS5 index kept in step by triggers.
CREATE TABLE lecture_slides (
    id INTEGER PRIMARY KEY,
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    asset_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    title TEXT,
    text TEXT NOT NULL,
    thumbnail TEXT NOT NULL,
    UNIQUE (lecture_id, position)
);
CREATE VIRTUAL TABLE slide_fts USING fts5(
    text, content = 'lecture_slides', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER lecture_slides_added AFTER INSERT ON lecture_slides BEGIN
    INSERT INTO slide_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER lecture_slides_removed AFTER DELETE ON lecture_slides BEGIN
    INSERT INTO slide_fts (slide_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
