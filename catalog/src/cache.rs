//! A memory cache of the small files behind /play: playlists, segments, posters. An
//! asset's files never change once stored (a new upload is a new asset), so an entry
//! is only ever stale when its asset is deleted; a short lifetime bounds that. Popular
//! lectures are then served without touching storage (a file read or an S3 request).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, (Arc<Cached>, Instant)>,
    /// Insertion order, for eviction (oldest first).
    order: VecDeque<String>,
    bytes: usize,
}

impl ObjectCache {
    /// A cache holding at most `budget` bytes; objects larger than a sixteenth of it
    /// (at most 8 MiB) are streamed instead. A budget of 0 disables it.
    pub fn new(budget: usize) -> Self {
        ObjectCache { budget, max_entry: (budget / 16).min(8 << 20), inner: Mutex::default() }
    }

    /// Whether an object of this size is worth keeping.
    pub fn admits(&self, size: u64) -> bool {
        self.budget > 0 && size as usize <= self.max_entry
    }

    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        let mut inner = self.inner.lock().expect("cache lock");
        let (cached, at) = inner.entries.get(key)?;
        if at.elapsed() > LIFETIME {
            let size = cached.bytes.len();
            inner.entries.remove(key);
            inner.bytes -= size;
            return None;
        }
        Some(cached.clone())
    }

    pub fn put(&self, key: &str, cached: Cached) {
        if !self.admits(cached.bytes.len() as u64) {
            return;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        if let Some((old, _)) = inner.entries.remove(key) {
            inner.bytes -= old.bytes.len();
        }
        inner.bytes += cached.bytes.len();
        inner.entries.insert(key.to_string(), (Arc::new(cached), Instant::now()));
        inner.order.push_back(key.to_string());
        while inner.bytes > self.budget {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some((gone, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.bytes.len();
            }
        }
        // Keys replaced or expired leave stale names in `order`; keep it bounded.
        if inner.order.len() > 4 * inner.entries.len() + 64 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|k| entries.contains_key(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(n: usize) -> Cached {
        let etag = format!("\"{n}\"");
        Cached {
            etag: HeaderValue::from_str(&etag).unwrap(),
            meta: ObjectMeta { size: n as u64, modified_unix: 0, etag },
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
        assert!(inner.bytes <= 16 * 1000 && inner.entries.len() == 16, "{} bytes", inner.bytes);
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
}
