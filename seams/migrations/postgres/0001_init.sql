-- Lectern's schema on PostgreSQL: the same tables and columns as the SQLite schema
-- (times are Unix seconds, flags 0/1 integers), plus full-text search on courses.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE courses (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users(id),
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    price_cents BIGINT NOT NULL DEFAULT 0,
    published BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A') ||
        setweight(to_tsvector('simple', category), 'B') ||
        setweight(to_tsvector('simple', description), 'C')
    ) STORED
);
CREATE INDEX courses_published ON courses (published, category);
CREATE INDEX courses_owner ON courses (owner_id);
CREATE INDEX courses_search ON courses USING GIN (search);

CREATE TABLE lectures (
    id TEXT PRIMARY KEY,
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    position BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'awaiting_upload',
    progress_percent BIGINT NOT NULL DEFAULT 0,
    failure_reason TEXT,
    asset_id TEXT,
    ready_asset_id TEXT,
    duration_secs DOUBLE PRECISION,
    media_kind TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX lectures_course ON lectures (course_id, position);

CREATE TABLE enrollments (
    user_id TEXT NOT NULL REFERENCES users(id),
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    price_cents BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, course_id)
);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    lecture_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    metadata TEXT NOT NULL,
    length BIGINT NOT NULL,
    received BIGINT NOT NULL DEFAULT 0,
    storage_key TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX uploads_state ON uploads (state, expires_at);

CREATE TABLE assets (
    id TEXT PRIMARY KEY,
    lecture_id TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    source_key TEXT NOT NULL,
    probe TEXT NOT NULL,
    ladder TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    lecture_id TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    published_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX jobs_unpublished ON jobs (published_at);
