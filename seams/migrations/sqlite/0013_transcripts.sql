-- Caption text, one row per cue, for search (written by the catalog with the captions
-- it comes from). An FTS5 index over it, kept in step by triggers (a lecture's cascade
-- delete fires them too).
CREATE TABLE transcript_cues (
    id INTEGER PRIMARY KEY,
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    language TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX transcript_cues_lecture ON transcript_cues (lecture_id, language);
CREATE VIRTUAL TABLE transcript_fts USING fts5(
    text, content = 'transcript_cues', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER transcript_cues_added AFTER INSERT ON transcript_cues BEGIN
    INSERT INTO transcript_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER transcript_cues_removed AFTER DELETE ON transcript_cues BEGIN
    INSERT INTO transcript_fts (transcript_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
