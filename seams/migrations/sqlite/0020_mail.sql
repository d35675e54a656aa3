-- Mail (written by the catalog): verified addresses, password resets, the outbox mails
-- are sent from (so a mail server outage delays mail and never loses it), the new-lecture
-- digests waiting for their day, and who unsubscribed from them.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;

-- A reset link's token is shown only in its mail; its SHA-256 is kept here.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX password_resets_user ON password_resets (user_id, created_at);

-- Mails to send. Their bodies are cleared once sent.
CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    -- verify | reset | lecture_ready | lecture_failed | new_lectures
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    -- The one-click unsubscribe URL (List-Unsubscribe), for mails that have one.
    unsubscribe_url TEXT,
    -- pending | sent | failed
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX mail_outbox_due ON mail_outbox (state, next_attempt_at);
CREATE INDEX mail_outbox_recipient ON mail_outbox (recipient, kind, created_at);

-- How far the mail follower has read the event journal (one row).
CREATE TABLE mail_cursor (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL
);

-- A new lecture each enrolled student is to hear of, once; mailed_at is set when the
-- digest that tells of it is written to the outbox.
CREATE TABLE mail_digest_items (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    lecture_id TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    mailed_at BIGINT,
    PRIMARY KEY (user_id, lecture_id)
);
CREATE INDEX mail_digest_items_due ON mail_digest_items (mailed_at, created_at);

-- Students who want no more new-lecture mail of a course.
CREATE TABLE mail_unsubscribes (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    course_id TEXT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, course_id)
);
