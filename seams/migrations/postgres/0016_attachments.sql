-- Attachments: slides, PDFs and code a course's owner hands out, per course or per
-- lecture. Rows are created, renamed and deleted by the catalog; their upload's outcome
-- (ready with the type read from the bytes, or refused) is written by ingest through
-- lectern_seams::attachments.
CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    lecture_id TEXT REFERENCES lectures(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    filename TEXT NOT NULL,
    size BIGINT NOT NULL,
    -- uploading | ready | refused
    state TEXT NOT NULL,
    content_type TEXT,
    storage_key TEXT,
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX attachments_course ON attachments (course_id, created_at);

-- An upload now carries either a lecture's file or an attachment's.
ALTER TABLE uploads ALTER COLUMN lecture_id DROP NOT NULL;
ALTER TABLE uploads ADD COLUMN attachment_id TEXT;
ALTER TABLE uploads ADD CONSTRAINT uploads_one_target CHECK ((lecture_id IS NULL) <> (attachment_id IS NULL));
