-- Every event a user may see, numbered in the order it happened (written by the
-- catalog). Live connections are fed from it, in every catalog process; a client that
-- was away asks for what came after the last number it saw.
CREATE TABLE event_journal (
    seq BIGSERIAL PRIMARY KEY,
    owner_id TEXT NOT NULL,
    -- Null for an event of the account rather than of a course.
    course_id TEXT,
    -- The event as the course's owner sees it (JSON, without its number).
    payload TEXT NOT NULL,
    -- As students enrolled in the course see it; null when they do not.
    student_payload TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX event_journal_owner ON event_journal (owner_id, seq);
CREATE INDEX event_journal_course ON event_journal (course_id, seq);
CREATE INDEX event_journal_age ON event_journal (created_at);
