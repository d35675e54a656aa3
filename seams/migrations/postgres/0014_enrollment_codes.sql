-- Codes an owner hands out for free access to a course (written by the catalog): used
-- up after max_uses (none: unlimited), refused after expires_at (none: never).
CREATE TABLE enrollment_codes (
    code TEXT PRIMARY KEY,
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX enrollment_codes_course ON enrollment_codes (course_id);
