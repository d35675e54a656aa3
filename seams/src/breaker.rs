//! Circuit breakers, one per backend a process uses. A watcher asks each backend every
//! second, with a short time limit; two failures in a row open its breaker, one answer
//! closes it. While a breaker is open, requests that need that backend are refused at
//! once (503 with Retry-After) instead of piling up behind time limits, and it closes
//! by itself within a second of the backend's return.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use crate::db::Db;
use crate::queue::SharedQueue;
use crate::storage::SharedStore;

/// How often each backend is asked, and how long an answer may take.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_LIMIT: Duration = Duration::from_millis(1500);
/// Failed probes in a row that open a breaker.
const OPEN_AFTER: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Database,
    Storage,
    Queue,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Database, Backend::Storage, Backend::Queue];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Database => "database",
            Backend::Storage => "storage",
            Backend::Queue => "queue",
        }
    }
}

#[derive(Debug, Default)]
struct Breaker {
    /// Whether the process uses this backend.
    used: AtomicBool,
    open: AtomicBool,
    failures: AtomicU32,
}

/// The breakers of one process.
#[derive(Debug, Default)]
pub struct Breakers {
    breakers: [Breaker; 3],
}

pub type SharedBreakers = Arc<Breakers>;

impl Breakers {
    fn get(&self, backend: Backend) -> &Breaker {
        &self.breakers[backend as usize]
    }

    /// Whether requests needing `backend` should be refused now.
    pub fn is_open(&self, backend: Backend) -> bool {
        self.get(backend).open.load(Ordering::Relaxed)
    }

    /// Each used backend and whether its breaker is open.
    pub fn states(&self) -> Vec<(Backend, bool)> {
        Backend::ALL
            .into_iter()
            .filter(|b| self.get(*b).used.load(Ordering::Relaxed))
            .map(|b| (b, self.is_open(b)))
            .collect()
    }

    /// Records a probe's outcome; whether the breaker changed.
    pub fn record(&self, backend: Backend, ok: bool) -> bool {
        let b = self.get(backend);
        b.used.store(true, Ordering::Relaxed);
        let was_open = b.open.load(Ordering::Relaxed);
        let open = if ok {
            b.failures.store(0, Ordering::Relaxed);
            false
        } else {
            b.failures.fetch_add(1, Ordering::Relaxed) + 1 >= OPEN_AFTER || was_open
        };
        b.open.store(open, Ordering::Relaxed);
        crate::metrics::metrics()
            .breaker_open
            .with_label_values(&[backend.as_str()])
            .set(i64::from(open));
        if open != was_open {
            if open {
                tracing::warn!(
                    backend = backend.as_str(),
                    "backend unavailable: its breaker is open; requests needing it are refused until it answers"
                );
            } else {
                tracing::info!(
                    backend = backend.as_str(),
                    "backend answers again: its breaker is closed"
                );
            }
        }
        open != was_open
    }
}

/// The backends a process uses, to watch.
pub struct Watched {
    pub db: Option<Db>,
    pub store: Option<SharedStore>,
    pub queue: Option<SharedQueue>,
}

impl Watched {
    /// Asks each backend this process uses at once, each within the probe's limit;
    /// whether it answered.
    pub async fn ask(&self) -> Vec<(Backend, bool)> {
        let (db, store, queue) = tokio::join!(
            probe(
                self.db
                    .as_ref()
                    .map(|db| async move { sqlx::query("SELECT 1").execute(db).await.is_ok() })
            ),
            probe(
                self.store
                    .as_ref()
                    .map(|s| async move { s.check().await.is_ok() })
            ),
            probe(
                self.queue
                    .as_ref()
                    .map(|q| async move { q.check().await.is_ok() })
            ),
        );
        [
            (Backend::Database, db),
            (Backend::Storage, store),
            (Backend::Queue, queue),
        ]
        .into_iter()
        .filter_map(|(backend, ok)| Some((backend, ok?)))
        .collect()
    }
}

/// Asks each backend every second until the task is dropped.
pub async fn watch(breakers: SharedBreakers, backends: Watched) {
    loop {
        for (backend, ok) in backends.ask().await {
            breakers.record(backend, ok);
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

async fn probe(check: Option<impl Future<Output = bool>>) -> Option<bool> {
    let check = check?;
    Some(
        tokio::time::timeout(PROBE_LIMIT, check)
            .await
            .unwrap_or(false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_failures_open_and_one_answer_closes() {
        let b = Breakers::default();
        assert!(b.states().is_empty());
        assert!(!b.record(Backend::Database, false));
        assert!(!b.is_open(Backend::Database));
        assert!(b.record(Backend::Database, false));
        assert!(b.is_open(Backend::Database));
        assert!(!b.record(Backend::Database, false));
        assert!(!b.is_open(Backend::Storage));
        assert!(b.record(Backend::Database, true));
        assert!(!b.is_open(Backend::Database));
        assert_eq!(b.states(), vec![(Backend::Database, false)]);
    }
}
