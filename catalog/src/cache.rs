//! A memory cache of the small files behind /play: playlists, segments, posters. An
//! asset's files never change once stored (a new upload is a new asset), so an entry
//! is only ever stale when its asset is deleted; a short lifetime bounds that. Popular
//! lectures are then served without touching storage (a file read or an S3 request).
//! Entries of 64 KiB or more are file mappings (`lectern_common::zero_copy`), which the
//! socket sends with sendfile rather than copying.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderValue;
use bytes::Bytes;
use lectern_common::storage::ObjectMeta;

/// How long an entry is served before storage is asked again.
const LIFETIME: Duration = Duration::from_secs(300);

pub struct Cached {
    pub meta: ObjectMeta,
    pub bytes: Bytes,
    /// The object's `ETag` and `Last-Modified` headers, made once rather than for
    /// every response.
    pub etag: HeaderValue,
    pub last_modified: Option<HeaderValue>,
}

pub struct ObjectCache {
    budget: usize,
    max_entry: usize,
    inner: Mutex<Inner>,
    /// One gate per key being loaded: requests that miss the same key at once (a class
    /// pressing play together) wait for one read of storage instead of each starting
    /// their own, which on a file store meant a blocking thread each.
    loading: Mutex<HashMap<String, Arc<Gate>>>,
}

#[derive(Default)]
struct Gate {
    turn: tokio::sync::Mutex<()>,
    /// Set when a load did not keep the object (too large, or failed): the requests
    /// still waiting then read storage on their own, in parallel, as without a gate.
    not_kept: AtomicBool,
}

/// A request's hold on a key's gate. The last one to let go removes the gate, also
/// when its request is dropped mid-load (clones are made under the map's lock, so the
/// count cannot grow behind its back).
struct GateHeld<'a> {
    cache: &'a ObjectCache,
    key: &'a str,
    gate: Arc<Gate>,
}

impl Drop for GateHeld<'_> {
    fn drop(&mut self) {
        let mut loading = self.cache.loading.lock().expect("cache lock");
        if Arc::strong_count(&self.gate) == 2
            && loading
                .get(self.key)
                .is_some_and(|g| Arc::ptr_eq(g, &self.gate))
        {
            loading.remove(self.key);
        }
    }
}

/// What a request that missed the cache ends up with.
pub enum Loaded<T> {
    /// The object, kept (by this request's load or by the one it waited for).
    Kept(Arc<Cached>),
    /// What this request's own load returned for an object not kept (it streams it).
    Passed(T),
}

#[derive(Default)]
struct Inner {
    /// foldhash: looked up on every /play request, with keys of 60-80 bytes.
    /// Each object with the time it was kept (`coarse_monotonic`).
    entries: HashMap<String, (Arc<Cached>, Duration), foldhash::quality::RandomState>,
    /// Insertion order, for eviction (oldest first).
    order: VecDeque<String>,
    bytes: usize,
}

impl ObjectCache {
    /// A cache holding at most `budget` bytes; objects larger than a sixteenth of it
    /// (at most 8 MiB) are streamed instead. A budget of 0 disables it.
    pub fn new(budget: usize) -> Self {
        ObjectCache {
            budget,
            max_entry: (budget / 16).min(8 << 20),
            inner: Mutex::default(),
            loading: Mutex::default(),
        }
    }

    /// Whether an object of this size is worth keeping.
    pub fn admits(&self, size: u64) -> bool {
        self.budget > 0 && size as usize <= self.max_entry
    }

    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        let mut inner = self.inner.lock().expect("cache lock");
        let (cached, at) = inner.entries.get(key)?;
        if lectern_common::coarse_monotonic().saturating_sub(*at) > LIFETIME {
            let size = cached.bytes.len();
            inner.entries.remove(key);
            inner.bytes -= size;
            return None;
        }
        Some(cached.clone())
    }

    /// The cached object, or else the result of `load`, which returns either an object
    /// to keep or something else to hand back (an open stream of a large object).
    /// Concurrent misses of one key run one load at a time: the first keeps the object
    /// and the others are served from it.
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, load: F) -> Result<Loaded<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Result<Cached, T>, E>>,
    {
        if let Some(hit) = self.get(key) {
            return Ok(Loaded::Kept(hit));
        }
        let gate = self
            .loading
            .lock()
            .expect("cache lock")
            .entry(key.to_string())
            .or_default()
            .clone();
        let gate = GateHeld {
            cache: self,
            key,
            gate,
        };
        let turn = gate.gate.turn.lock().await;
        if gate.gate.not_kept.load(Ordering::Acquire) {
            drop(turn);
        } else if let Some(hit) = self.get(key) {
            return Ok(Loaded::Kept(hit));
        }
        match load().await {
            Ok(Ok(cached)) => Ok(Loaded::Kept(self.put(key, cached))),
            Ok(Err(passed)) => {
                gate.gate.not_kept.store(true, Ordering::Release);
                Ok(Loaded::Passed(passed))
            }
            Err(e) => {
                gate.gate.not_kept.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Keeps an object (when it is small enough) and returns it shared.
    pub fn put(&self, key: &str, cached: Cached) -> Arc<Cached> {
        let cached = Arc::new(cached);
        if !self.admits(cached.bytes.len() as u64) {
            return cached;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        if let Some((old, _)) = inner.entries.remove(key) {
            inner.bytes -= old.bytes.len();
        }
        inner.bytes += cached.bytes.len();
        inner.entries.insert(
            key.to_string(),
            (cached.clone(), lectern_common::coarse_monotonic()),
        );
        inner.order.push_back(key.to_string());
        while inner.bytes > self.budget {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some((gone, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.bytes.len();
            }
        }
        // Keys replaced or expired leave stale names in `order`; keep it bounded.
        if inner.order.len() > 4 * inner.entries.len() + 64 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|k| entries.contains_key(k));
        }
        cached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(n: usize) -> Cached {
        let etag = format!("\"{n}\"");
        Cached {
            etag: HeaderValue::from_str(&etag).unwrap(),
            meta: ObjectMeta {
                size: n as u64,
                modified_unix: 0,
                etag,
            },
            bytes: Bytes::from(vec![1u8; n]),
            last_modified: None,
        }
    }

    #[test]
    fn keeps_within_its_budget_evicting_the_oldest() {
        let cache = ObjectCache::new(16 * 1000);
        for i in 0..20 {
            cache.put(&format!("k{i}"), object(1000));
        }
        assert!(cache.get("k0").is_none(), "the oldest went first");
        assert!(cache.get("k19").is_some());
        let inner = cache.inner.lock().unwrap();
        assert!(
            inner.bytes <= 16 * 1000 && inner.entries.len() == 16,
            "{} bytes",
            inner.bytes
        );
    }

    #[test]
    fn large_objects_and_a_zero_budget_are_not_kept() {
        let cache = ObjectCache::new(16 * 1000);
        assert!(!cache.admits(1001));
        cache.put("big", object(1001));
        assert!(cache.get("big").is_none());
        let off = ObjectCache::new(0);
        off.put("k", object(1));
        assert!(off.get("k").is_none());
    }

    /// Ten requests missing one key at once, with a load that takes a while.
    async fn ten_at_once(
        cache: &Arc<ObjectCache>,
        key: &'static str,
        size: usize,
        fail_first: bool,
    ) -> (usize, usize, Vec<bool>) {
        use std::sync::atomic::AtomicUsize;
        let loads = Arc::new(AtomicUsize::new(0));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (cache, loads, running, most) =
                    (cache.clone(), loads.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    let load = || async {
                        let n = loads.fetch_add(1, Ordering::SeqCst);
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        if fail_first && n == 0 {
                            return Err("storage hiccup");
                        }
                        Ok(if cache.admits(size as u64) {
                            Ok(object(size))
                        } else {
                            Err(size)
                        })
                    };
                    match cache.get_or_load(key, load).await {
                        Ok(Loaded::Kept(c)) => Some(c.bytes.len() == size),
                        Ok(Loaded::Passed(n)) => Some(n == size),
                        Err(_) => None,
                    }
                })
            })
            .collect();
        let mut kept = Vec::new();
        for t in tasks {
            if let Some(ok) = t.await.unwrap() {
                assert!(ok);
                kept.push(true);
            } else {
                kept.push(false);
            }
        }
        (
            loads.load(Ordering::SeqCst),
            most.load(Ordering::SeqCst),
            kept,
        )
    }

    #[tokio::test]
    async fn requests_missing_one_key_at_once_share_one_load() {
        let cache = Arc::new(ObjectCache::new(16 * 1000));
        let (loads, most, served) = ten_at_once(&cache, "k", 1000, false).await;
        assert_eq!(loads, 1, "one read of storage for ten requests");
        assert_eq!(most, 1);
        assert!(served.iter().all(|&s| s));
        assert!(
            cache.loading.lock().unwrap().is_empty(),
            "the gate is taken down"
        );
    }

    #[tokio::test]
    async fn a_failed_load_is_not_shared_and_objects_not_kept_load_in_parallel() {
        // The first load fails: only its request gets the error; the others load
        // again (each on its own, since the gate saw nothing kept), and succeed.
        let cache = Arc::new(ObjectCache::new(16 * 1000));
        let (loads, _, served) = ten_at_once(&cache, "k", 1000, true).await;
        assert_eq!(served.iter().filter(|&&s| !s).count(), 1, "{served:?}");
        assert!(loads >= 2);
        // Too large to keep: every request streams its own, without waiting in line.
        let (loads, most, served) = ten_at_once(&cache, "big", 1001, false).await;
        assert_eq!(loads, 10);
        assert!(most >= 5, "at most {most} loads ran at once");
        assert!(served.iter().all(|&s| s));
        assert!(cache.loading.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_request_dropped_mid_load_hands_the_key_on() {
        let cache = Arc::new(ObjectCache::new(16 * 1000));
        let stuck = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let load = || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<_, ()>(Ok::<_, ()>(object(10)))
                };
                let _ = cache.get_or_load("k", load).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let load = || async { Ok::<_, ()>(Ok::<_, ()>(object(20))) };
                matches!(cache.get_or_load("k", load).await, Ok(Loaded::Kept(c)) if c.bytes.len() == 20)
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the second request waits for the first's load"
        );
        stuck.abort();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .unwrap()
                .unwrap()
        );
        assert!(cache.loading.lock().unwrap().is_empty());
    }
}
