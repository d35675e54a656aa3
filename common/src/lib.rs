//! lectern-common: the plumbing every Lectern role shares and nothing more.
//!
//! It owns the three seams chosen by URL (database, object storage, queue) with their
//! embedded backends, the messages that travel on the queue (transcode jobs and job
//! events), access tokens and the request extractor that checks them, the one JSON
//! error shape every HTTP error uses, and the HTTP edge every request passes (request
//! ids, timeouts, CORS, compression, rate limits) with the socket that sends cached
//! media by sendfile. Domain logic lives in the service crates.

pub mod auth;
pub mod db;
pub mod edge;
pub mod http;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod queue;
pub mod serve;
pub mod storage;
pub mod zero_copy;

/// Seconds since the Unix epoch, the one time format Lectern stores. Read from the
/// clock's last tick (a few ms old at most), which is a load from memory: the exact
/// clock costs 20 ns on this machine's virtual CPUs, and a playback request read it
/// twice.
pub fn now_unix() -> i64 {
    let since_epoch = coarse_clock(libc::CLOCK_REALTIME_COARSE).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    });
    since_epoch.as_secs() as i64
}

/// A monotonic time to the clock's last tick (a few ms), for ages counted in seconds;
/// it costs a fifth of `Instant::now`.
pub fn coarse_monotonic() -> std::time::Duration {
    coarse_clock(libc::CLOCK_MONOTONIC_COARSE).unwrap_or_else(|| {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    })
}

fn coarse_clock(clock: libc::clockid_t) -> Option<std::time::Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the one timespec it is given, which we own.
    let read = unsafe { libc::clock_gettime(clock, &mut now) };
    (read == 0 && now.tv_sec >= 0)
        .then(|| std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
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
