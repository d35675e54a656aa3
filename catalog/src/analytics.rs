//! Viewing analytics. The player sends small batched beacons (a view starting and its
//! startup time, stalls, rendition switches, the ranges watched, errors) with the beacon
//! token of its playback grant. Accepting one is a signature check and a push into a
//! bounded in-memory batch, so beacons never wait on the database; a flusher merges the
//! batch into one row per playback session (`view_sessions`, no address kept) a few
//! times a second. Owners read per lecture and per course: views, unique viewers, watch
//! time, completion, the audience-retention curve, quality of experience; sessions older
//! than the retention period are rolled up into `view_daily` and dropped.

mod report;

use std::collections::HashMap;
use std::time::Duration;

use lectern_seams::db::Db;
use lectern_seams::ids::{CourseId, LectureId, UserId};
use lectern_seams::now_unix;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::error::CatalogError;
use crate::playback::PlaybackTokens;

pub use report::{CourseReport, LectureReport, course_csv, course_report, lecture_report};

/// Events one beacon may carry.
pub const MAX_EVENTS: usize = 200;
/// Beacons waiting for the flusher at most; beyond, new ones are turned away (429).
const QUEUE: usize = 50_000;
/// Hundredths of a lecture: the retention curve's resolution.
pub const BUCKETS: u32 = 100;

/// A batch of what a player saw, as it sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Beacon {
    /// The `beacon_token` of the playback grant.
    pub token: String,
    /// A random id the player makes for one playback session (a UUID).
    pub session: String,
    #[schema(max_items = 200)]
    pub events: Vec<ViewEvent>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ViewEvent {
    /// Playback began, `startup_ms` after the viewer asked for it.
    Start { startup_ms: u64 },
    /// The viewer watched from `from` to `to` (seconds into the lecture).
    Watched { from: f64, to: f64 },
    /// Playback stalled for `ms`.
    Rebuffer { ms: u64 },
    /// The player switched rendition.
    Switch { height: u32 },
    /// The player hit an error.
    Error { fatal: bool },
}

/// One accepted beacon, on its way to the flusher.
struct Accepted {
    lecture: LectureId,
    user: UserId,
    session: String,
    browser: Browser,
    at: i64,
    events: Vec<ViewEvent>,
}

/// Where accepted beacons wait: the sending side, cloned into every request.
#[derive(Clone)]
pub struct Collector {
    tx: mpsc::Sender<Accepted>,
}

/// The flusher's side.
pub struct Flusher {
    rx: mpsc::Receiver<Accepted>,
}

pub fn collector() -> (Collector, Flusher) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Collector { tx }, Flusher { rx })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    Chrome,
    Edge,
    Firefox,
    Safari,
    Other,
}

impl Browser {
    pub const ALL: [Browser; 5] = [
        Browser::Chrome,
        Browser::Edge,
        Browser::Firefox,
        Browser::Safari,
        Browser::Other,
    ];

    /// The family a User-Agent names (only the family is kept).
    pub fn of(user_agent: &str) -> Self {
        if user_agent.contains("Edg/") {
            Browser::Edge
        } else if user_agent.contains("Firefox/") {
            Browser::Firefox
        } else if user_agent.contains("Chrome/") || user_agent.contains("Chromium/") {
            Browser::Chrome
        } else if user_agent.contains("Safari/") {
            Browser::Safari
        } else {
            Browser::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Browser::Chrome => "chrome",
            Browser::Edge => "edge",
            Browser::Firefox => "firefox",
            Browser::Safari => "safari",
            Browser::Other => "other",
        }
    }
}

impl Collector {
    /// Takes a beacon if its token vouches for it; the flusher records it shortly.
    pub fn accept(
        &self,
        tokens: &PlaybackTokens,
        beacon: Beacon,
        user_agent: &str,
    ) -> Result<(), CatalogError> {
        let (lecture, user) = tokens
            .verify_beacon(&beacon.token)
            .ok_or(CatalogError::BadPlaybackToken)?;
        if uuid::Uuid::try_parse(&beacon.session).is_err() {
            return Err(CatalogError::Invalid("session must be a UUID".into()));
        }
        if beacon.events.len() > MAX_EVENTS {
            return Err(CatalogError::Invalid(format!(
                "at most {MAX_EVENTS} events per beacon"
            )));
        }
        let accepted = Accepted {
            lecture,
            user,
            session: beacon.session.to_ascii_lowercase(),
            browser: Browser::of(user_agent),
            at: now_unix(),
            events: beacon.events,
        };
        self.tx.try_send(accepted).map_err(|_| {
            lectern_seams::metrics::metrics().beacons_shed.inc();
            CatalogError::RateLimited(lectern_web::limits::Refusal {
                message: "too many viewing beacons at once; send them again shortly".into(),
                retry_after: Duration::from_secs(2),
            })
        })
    }
}

/// What a batch adds to one session.
#[derive(Debug, Default, Clone, PartialEq)]
struct Delta {
    startup_ms: Option<i64>,
    watched_ms: i64,
    rebuffer_count: i64,
    rebuffer_ms: i64,
    errors: i64,
    switches: i64,
    cover_lo: i64,
    cover_hi: i64,
}

/// The hundredths of a `duration`-second lecture that `from..to` covers, as two
/// 50-bit masks.
fn coverage(from: f64, to: f64, duration: f64) -> (i64, i64) {
    // False for NaN too.
    let valid = duration > 0.0 && to > from;
    if !valid {
        return (0, 0);
    }
    let bucket = |t: f64| ((t / duration * f64::from(BUCKETS)).floor() as i64).clamp(0, 99);
    let (first, last) = (bucket(from), bucket((to - 1e-6).max(from)));
    let (mut lo, mut hi) = (0i64, 0i64);
    for b in first..=last {
        if b < 50 {
            lo |= 1 << b;
        } else {
            hi |= 1 << (b - 50);
        }
    }
    (lo, hi)
}

impl Delta {
    /// Adds events, bounded by the lecture's length (a player cannot claim more).
    fn add(&mut self, events: &[ViewEvent], duration: f64) {
        let max_ms = (duration.max(0.0) * 1000.0) as i64;
        for e in events {
            match *e {
                ViewEvent::Start { startup_ms } => {
                    self.startup_ms
                        .get_or_insert(startup_ms.min(600_000) as i64);
                }
                ViewEvent::Watched { from, to } => {
                    let (from, to) = (from.clamp(0.0, duration), to.clamp(0.0, duration));
                    if to > from {
                        self.watched_ms += (((to - from) * 1000.0) as i64).min(max_ms);
                        let (lo, hi) = coverage(from, to, duration);
                        self.cover_lo |= lo;
                        self.cover_hi |= hi;
                    }
                }
                ViewEvent::Rebuffer { ms } => {
                    self.rebuffer_count += 1;
                    self.rebuffer_ms += ms.min(3_600_000) as i64;
                }
                ViewEvent::Switch { .. } => self.switches += 1,
                ViewEvent::Error { .. } => self.errors += 1,
            }
        }
    }
}

impl Flusher {
    /// Records accepted beacons a few times a second, and rolls up old sessions hourly,
    /// until the task is dropped.
    pub async fn run(mut self, db: Db, keep_days: i64) {
        let mut rolled_at = 0;
        loop {
            let mut batch = Vec::new();
            let first = self.rx.recv().await;
            let Some(first) = first else { return };
            batch.push(first);
            // Gather what arrives meanwhile, so one transaction records many beacons.
            tokio::time::sleep(Duration::from_millis(250)).await;
            while batch.len() < QUEUE {
                match self.rx.try_recv() {
                    Ok(b) => batch.push(b),
                    Err(_) => break,
                }
            }
            if let Err(e) = record(&db, batch).await {
                tracing::warn!(error = %e, "viewing beacons could not be recorded; dropped");
            }
            if now_unix() - rolled_at > 3600 {
                rolled_at = now_unix();
                if let Err(e) = roll_up(&db, keep_days).await {
                    tracing::warn!(error = %e, "rolling up old viewing sessions failed");
                }
            }
        }
    }
}

/// One session's share of a batch.
struct SessionBatch {
    lecture: LectureId,
    user: UserId,
    browser: Browser,
    first_at: i64,
    last_at: i64,
    events: Vec<ViewEvent>,
}

async fn record(db: &Db, batch: Vec<Accepted>) -> Result<(), CatalogError> {
    // Keyed by viewer and lecture too: a session id is the player's word, and another
    // viewer's beacon naming it must not join it.
    let mut sessions: HashMap<(String, UserId, LectureId), SessionBatch> = HashMap::new();
    for b in batch {
        let key = (b.session, b.user.clone(), b.lecture.clone());
        let s = sessions.entry(key).or_insert_with(|| SessionBatch {
            lecture: b.lecture,
            user: b.user,
            browser: b.browser,
            first_at: b.at,
            last_at: b.at,
            events: Vec::new(),
        });
        s.last_at = s.last_at.max(b.at);
        s.events.extend(b.events);
    }
    let mut lectures: HashMap<LectureId, Option<(CourseId, f64)>> = HashMap::new();
    let mut tx = db.begin().await?;
    for ((id, _, _), s) in sessions {
        if !lectures.contains_key(&s.lecture) {
            let found: Option<(CourseId, Option<f64>)> =
                sqlx::query_as("SELECT course_id, duration_secs FROM lectures WHERE id = $1")
                    .bind(&s.lecture)
                    .fetch_optional(&mut *tx)
                    .await?;
            let known = found.map(|(c, d)| (c, d.unwrap_or(0.0)));
            lectures.insert(s.lecture.clone(), known);
        }
        let Some((course, duration)) = lectures[&s.lecture].clone() else {
            continue; // deleted since
        };
        let mut delta = Delta::default();
        delta.add(&s.events, duration);
        upsert(&mut tx, &id, &s, &course, &delta).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn upsert(
    tx: &mut crate::journal::Tx,
    id: &str,
    s: &SessionBatch,
    course: &CourseId,
    d: &Delta,
) -> Result<(), CatalogError> {
    // A session id is the player's: it counts only for the viewer and lecture that
    // made it, so a guessed id cannot add to another's session.
    sqlx::query(
        "INSERT INTO view_sessions (id, lecture_id, course_id, user_id, browser, started_at, day, updated_at,
                                    startup_ms, watched_ms, rebuffer_count, rebuffer_ms, errors, switches, cover_lo, cover_hi)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (id) DO UPDATE SET
            updated_at = excluded.updated_at,
            startup_ms = COALESCE(view_sessions.startup_ms, excluded.startup_ms),
            watched_ms = view_sessions.watched_ms + excluded.watched_ms,
            rebuffer_count = view_sessions.rebuffer_count + excluded.rebuffer_count,
            rebuffer_ms = view_sessions.rebuffer_ms + excluded.rebuffer_ms,
            errors = view_sessions.errors + excluded.errors,
            switches = view_sessions.switches + excluded.switches,
            cover_lo = view_sessions.cover_lo | excluded.cover_lo,
            cover_hi = view_sessions.cover_hi | excluded.cover_hi
         WHERE view_sessions.user_id = excluded.user_id AND view_sessions.lecture_id = excluded.lecture_id",
    )
    .bind(id)
    .bind(&s.lecture)
    .bind(course)
    .bind(&s.user)
    .bind(s.browser.as_str())
    .bind(s.first_at)
    .bind(s.first_at.div_euclid(86_400))
    .bind(s.last_at)
    .bind(d.startup_ms)
    .bind(d.watched_ms)
    .bind(d.rebuffer_count)
    .bind(d.rebuffer_ms)
    .bind(d.errors)
    .bind(d.switches)
    .bind(d.cover_lo)
    .bind(d.cover_hi)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Folds sessions older than `keep_days` into daily counts and drops them.
async fn roll_up(db: &Db, keep_days: i64) -> Result<(), CatalogError> {
    let before = now_unix().div_euclid(86_400) - keep_days;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO view_daily (lecture_id, course_id, day, views, viewers, watched_ms)
         SELECT lecture_id, MIN(course_id), day, COUNT(*), COUNT(DISTINCT user_id), SUM(watched_ms)
         FROM view_sessions WHERE day < $1 GROUP BY lecture_id, day
         ON CONFLICT (lecture_id, day) DO UPDATE SET
            views = view_daily.views + excluded.views,
            viewers = view_daily.viewers + excluded.viewers,
            watched_ms = view_daily.watched_ms + excluded.watched_ms",
    )
    .bind(before)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM view_sessions WHERE day < $1")
        .bind(before)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_their_hundredths() {
        assert_eq!(coverage(0.0, 10.0, 100.0), ((1 << 10) - 1, 0));
        assert_eq!(coverage(95.0, 100.0, 100.0), (0, 0b11111 << 45));
        assert_eq!(coverage(49.5, 50.5, 100.0), (1 << 49, 1));
        assert_eq!(coverage(5.0, 5.0, 100.0), (0, 0));
        assert_eq!(coverage(0.0, 10.0, 0.0), (0, 0));
    }

    #[test]
    fn players_cannot_claim_more_than_the_lecture() {
        let mut d = Delta::default();
        d.add(
            &[
                ViewEvent::Start { startup_ms: 900 },
                ViewEvent::Start { startup_ms: 5 },
                ViewEvent::Watched {
                    from: -50.0,
                    to: 1e12,
                },
                ViewEvent::Rebuffer { ms: u64::MAX },
                ViewEvent::Switch { height: 720 },
                ViewEvent::Error { fatal: false },
            ],
            60.0,
        );
        assert_eq!(d.startup_ms, Some(900));
        assert_eq!(d.watched_ms, 60_000);
        assert_eq!((d.cover_lo, d.cover_hi), ((1 << 50) - 1, (1 << 50) - 1));
        assert_eq!((d.rebuffer_count, d.rebuffer_ms), (1, 3_600_000));
        assert_eq!((d.switches, d.errors), (1, 1));
    }

    #[test]
    fn browsers_are_told_by_family_only() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(Browser::of(chrome), Browser::Chrome);
        assert_eq!(Browser::of(&format!("{chrome} Edg/120.0")), Browser::Edge);
        assert_eq!(
            Browser::of("Mozilla/5.0 (Macintosh) AppleWebKit/605 Version/17 Safari/605"),
            Browser::Safari
        );
        assert_eq!(
            Browser::of("Mozilla/5.0 Gecko/20100101 Firefox/121.0"),
            Browser::Firefox
        );
        assert_eq!(Browser::of("curl/8"), Browser::Other);
    }
}
