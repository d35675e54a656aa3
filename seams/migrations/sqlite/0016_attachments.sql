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

-- An upload now carries either a lecture's file or an attachment's: SQLite changes a
-- column's NOT NULL only by building the table again.
CREATE TABLE uploads_new (
    id TEXT PRIMARY KEY,
    lecture_id TEXT,
    attachment_id TEXT,
    owner_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    metadata TEXT NOT NULL,
    length INTEGER NOT NULL,
    received INTEGER NOT NULL DEFAULT 0,
    storage_key TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    tier TEXT NOT NULL DEFAULT 'hot',
    last_used_at BIGINT NOT NULL DEFAULT 0,
    CHECK ((lecture_id IS NULL) <> (attachment_id IS NULL))
);
INSERT INTO uploads_new (id, lecture_id, owner_id, filename, metadata, length, received, storage_key, state, expires_at, created_at, tier, last_used_at)
    SELECT id, lecture_id, owner_id, filename, metadata, length, received, storage_key, state, expires_at, created_at, tier, last_used_at FROM uploads;
DROP TABLE uploads;
ALTER TABLE uploads_new RENAME TO uploads;
CREATE INDEX uploads_state ON uploads (state, expires_at);
CREATE INDEX uploads_tier ON uploads (tier, last_used_at);
