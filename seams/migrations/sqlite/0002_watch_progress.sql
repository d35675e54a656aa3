-- Where each student stopped in each lecture, for "continue where you left off".
CREATE TABLE watch_progress (
    user_id TEXT NOT NULL,
    lecture_id TEXT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    position_secs REAL NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, lecture_id)
);
CREATE INDEX watch_progress_recent ON watch_progress (user_id, updated_at);
