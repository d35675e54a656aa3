-- Who may become an owner (LECTERN_OWNER_SIGNUP): invite codes an admin makes (only
-- their SHA-256 is kept), and a sign-up's request to be approved as owner.
CREATE TABLE owner_invites (
    code_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_by TEXT,
    used_at BIGINT
);
ALTER TABLE users ADD COLUMN owner_requested_at BIGINT;
