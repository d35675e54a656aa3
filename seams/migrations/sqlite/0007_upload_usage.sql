-- The upload quota's count: the bytes of every upload an owner has started, counted
-- when it is created (atomically with the check). An upload given up or expired
-- before it completed is taken back; a completed one stays counted when its lecture
-- is deleted, since its processing was done.
CREATE TABLE upload_usage (
    owner_id TEXT PRIMARY KEY,
    bytes BIGINT NOT NULL
);
INSERT INTO upload_usage (owner_id, bytes)
    SELECT owner_id, CAST(SUM(length) AS BIGINT) FROM uploads GROUP BY owner_id;
