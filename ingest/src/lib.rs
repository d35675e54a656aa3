//! lectern-ingest: how lectures get in.
//!
//! It owns the tus 1.0 upload API at `/api/uploads` (core, creation,
//! creation-with-upload, checksum, termination, expiration), streaming chunks into
//! object storage, for lectures' files and attachments' (whose kind it reads from their
//! bytes); analysing complete lecture files in a fenced child (the gate's formats,
//! the source limits); choosing the
//! ladder (fitted to each source's complexity); and recording each transcode job in the database before publishing it (an
//! outbox), so a queue outage loses nothing. It also keeps originals: idle ones move
//! to the cold tier, and `/api/transcodes` transcodes a lecture's original again.

pub mod analyse;
pub mod attachments;
pub mod chunks;
pub mod complexity;
mod error;
pub mod ladder;
pub mod originals;
pub mod probe;
mod routes;
pub mod tus;
pub mod uploads;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::FromRef;
use lectern_seams::db::Db;
use lectern_seams::queue::SharedQueue;
use lectern_seams::storage::SharedStore;
use lectern_web::auth::AccessTokens;
use lectern_web::limits::Limits;
use tokio::sync::Notify;

pub use error::IngestError;
pub use routes::{IngestApi, TRANSCODES_PATH, UPLOADS_PATH, router};

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The largest upload accepted, in bytes (advertised as Tus-Max-Size).
    pub max_upload_bytes: u64,
    /// Bytes of source files one owner may hold (0: no quota); admins have none.
    pub upload_quota_bytes: u64,
    /// A PATCH body that sends nothing for this long is cut (its bytes are kept).
    pub upload_idle: Duration,
    /// How long an incomplete upload is kept after its last chunk.
    pub upload_ttl_secs: i64,
    /// How long probing one file may take.
    pub probe_timeout_secs: u64,
    /// What a source may be (size, frame rate, length).
    pub source_limits: probe::SourceLimits,
    /// The fenced child process that analyses uploads.
    pub fence: lectern_gate::fence::Fence,
    /// Local scratch space for probing files from remote storage.
    pub scratch_dir: PathBuf,
    /// Lectures longer than this (seconds) are split into chunk jobs that any worker
    /// may take; 0 keeps every lecture in one job.
    pub chunk_secs: u32,
    /// The workers chunks are planned for (their length and which run whole); 0 counts
    /// the job queue's consumers when the upload ends.
    pub plan_workers: u32,
    /// Probe each source's complexity and fit the ladder's bit rates to it (true), or
    /// encode every source with the fixed ladder.
    pub per_title_ladder: bool,
    /// Queue a slides job after each video lecture's transcode jobs.
    pub read_slides: bool,
    /// Originals no transcode read for this long move to the store's cold tier; None
    /// keeps them hot.
    pub cold_after: Option<Duration>,
}

#[derive(Clone)]
pub struct IngestState {
    pub db: Db,
    pub store: SharedStore,
    pub queue: SharedQueue,
    pub tokens: AccessTokens,
    pub config: Arc<IngestConfig>,
    pub limits: Arc<Limits>,
    upload_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    outbox_wakeup: Arc<Notify>,
}

impl FromRef<IngestState> for AccessTokens {
    fn from_ref(state: &IngestState) -> Self {
        state.tokens.clone()
    }
}

impl IngestState {
    pub fn new(
        db: Db,
        store: SharedStore,
        queue: SharedQueue,
        tokens: AccessTokens,
        config: IngestConfig,
        limits: Arc<Limits>,
    ) -> Self {
        Self {
            db,
            store,
            queue,
            tokens,
            config: Arc::new(config),
            limits,
            upload_locks: Default::default(),
            outbox_wakeup: Arc::new(Notify::new()),
        }
    }

    /// One lock per upload, so two PATCHes to the same upload cannot interleave.
    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.upload_locks.lock().expect("upload lock map");
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_string()).or_default().clone()
    }
}

/// Background duties: finishing uploads a crash interrupted, relaying the job outbox,
/// sweeping expired uploads and moving idle originals to the cold tier.
pub fn spawn_background(state: IngestState) -> Vec<tokio::task::JoinHandle<()>> {
    let resume = {
        let state = state.clone();
        tokio::spawn(async move {
            match uploads::unfinished(&state).await {
                Ok(ids) => {
                    for id in ids {
                        if let Err(e) = uploads::finish(&state, &id).await {
                            tracing::error!(upload = %id, error = %e, "could not finish an upload left by a restart");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not list unfinished uploads"),
            }
        })
    };
    let relay = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                match uploads::relay_outbox(&state).await {
                    Ok(n) if n > 0 => tracing::info!(jobs = n, "published transcode jobs"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "job outbox not relayed yet; retrying"),
                }
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), state.outbox_wakeup.notified())
                        .await;
            }
        })
    };
    let cooler = state.config.cold_after.map(|after| {
        let state = state.clone();
        // A few looks per period, at most hourly.
        let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        tokio::spawn(async move {
            loop {
                match originals::cool_idle(&state).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(originals = n, "moved idle originals to the cold tier")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "moving idle originals to the cold tier failed")
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    });
    let sweeper = tokio::spawn(async move {
        loop {
            match uploads::sweep_expired(&state).await {
                Ok(n) if n > 0 => tracing::info!(uploads = n, "removed expired uploads"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeping expired uploads failed"),
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    [resume, relay, sweeper].into_iter().chain(cooler).collect()
}
