//! lectern-seams: what every Lectern role shares below HTTP.
//!
//! It owns the three seams chosen by URL (database, object storage, queue) with their
//! embedded backends and a circuit breaker each, the messages that travel on the queue (transcode jobs and job
//! events), the lecture's state machine (the only writer of a lecture's status), the
//! parts of a chunked asset (the only writer of `asset_parts`), the process's metrics,
//! the embedded world's backups, and Lectern's ids and times. Domain logic lives in the service crates; the HTTP
//! layer in lectern-web.

pub mod attachments;
pub mod backup;
pub mod breaker;
pub mod db;
pub mod ids;
pub mod language;
pub mod lecture;
pub mod messages;
pub mod metrics;
pub mod originals;
pub mod parts;
pub mod queue;
pub mod storage;
pub mod telemetry;

/// Seconds since the Unix epoch, the one time format Lectern stores.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Milliseconds since the Unix epoch, for queue scheduling.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Hands the heap's free pages back to the system (glibc; elsewhere nothing). Media
/// pipelines allocate their frames in many threads' arenas, and glibc keeps what they
/// free there: after a complexity probe or a transcode the process stayed at its peak.
pub fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heaps; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A new random identifier (UUID v4, hyphenated).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
