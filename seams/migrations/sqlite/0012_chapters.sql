-- Chapters of a lecture, set by its owner (written by the catalog): where each starts
-- and its title. The seek bar marks them; the lecture page lists them.
CREATE TABLE chapters (
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    start_ms BIGINT NOT NULL,
    title TEXT NOT NULL,
    PRIMARY KEY (lecture_id, start_ms)
);
