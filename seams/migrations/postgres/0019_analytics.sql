-- Viewing analytics (written by the catalog). One row per playback session, merged
-- from the player's beacons; no address is stored. Sessions older than the retention
-- period are rolled up into view_daily and dropped.
CREATE TABLE view_sessions (
    id TEXT PRIMARY KEY,
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    course_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    -- chrome | firefox | safari | edge | other
    browser TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    -- Days since the Unix epoch (UTC) the session started on.
    day BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    startup_ms BIGINT,
    watched_ms BIGINT NOT NULL DEFAULT 0,
    rebuffer_count BIGINT NOT NULL DEFAULT 0,
    rebuffer_ms BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    switches BIGINT NOT NULL DEFAULT 0,
    -- Which hundredths of the lecture were watched: bits 0-49 and 50-99.
    cover_lo BIGINT NOT NULL DEFAULT 0,
    cover_hi BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX view_sessions_lecture ON view_sessions (lecture_id, day);
CREATE INDEX view_sessions_course ON view_sessions (course_id, day);
CREATE INDEX view_sessions_age ON view_sessions (started_at);

CREATE TABLE view_daily (
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    course_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    views BIGINT NOT NULL,
    viewers BIGINT NOT NULL,
    watched_ms BIGINT NOT NULL,
    PRIMARY KEY (lecture_id, day)
);
