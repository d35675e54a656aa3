-- Lectern's schema. Times are Unix seconds; ids are UUID text; flags are 0/1 integers,
-- so the same queries run on SQLite and PostgreSQL.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE courses (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users(id),
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    price_cents INTEGER NOT NULL DEFAULT 0,
    published INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX courses_published ON courses (published, category);
CREATE INDEX courses_owner ON courses (owner_id);

CREATE TABLE lectures (
    id TEXT PRIMARY KEY,
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'awaiting_upload',
    progress_percent INTEGER NOT NULL DEFAULT 0,
    failure_reason TEXT,
    -- the asset being processed or last processed
    asset_id TEXT,
    -- the asset students play; kept while a new upload is processed
    ready_asset_id TEXT,
    duration_secs REAL,
    media_kind TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX lectures_course ON lectures (course_id, position);

CREATE TABLE enrollments (
    user_id TEXT NOT NULL REFERENCES users(id),
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    price_cents INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, course_id)
);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    lecture_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    metadata TEXT NOT NULL,
    length INTEGER NOT NULL,
    received INTEGER NOT NULL DEFAULT 0,
    storage_key TEXT NOT NULL,
    -- receiving | complete | processed
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX uploads_state ON uploads (state, expires_at);

CREATE TABLE assets (
    id TEXT PRIMARY KEY,
    lecture_id TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    source_key TEXT NOT NULL,
    probe TEXT NOT NULL,
    ladder TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The outbox: a job is recorded here before it is published, and published again
-- until the queue has it.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    lecture_id TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    published_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX jobs_unpublished ON jobs (published_at);
