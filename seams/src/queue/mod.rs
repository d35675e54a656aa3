//! The queue seam: one trait, chosen by URL. `sqlite://FILE` is the embedded durable
//! queue: messages live in a SQLite file, so a job queued or running when the process
//! dies is delivered again after a restart. A delivery is leased; the holder renews the
//! lease while it works, so a crashed holder's message comes back when its lease lapses.
//! `amqp://…` is RabbitMQ (see `amqp.rs`).

pub mod amqp;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Transcode jobs, ingest → workers.
    Jobs,
    /// The whole-lecture audio jobs of chunked lectures, ingest → workers. A lane of
    /// their own, which every worker takes beside its video job: a long lecture's audio
    /// (a minute or more on one core) then never holds back its video chunks.
    AudioJobs,
    /// Job events, workers → catalog.
    Events,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::Jobs, Topic::AudioJobs, Topic::Events];

    /// Its place in `ALL`.
    fn index(self) -> usize {
        match self {
            Topic::Jobs => 0,
            Topic::AudioJobs => 1,
            Topic::Events => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Topic::Jobs => "lectern.jobs",
            Topic::AudioJobs => "lectern.jobs.audio",
            Topic::Events => "lectern.events",
        }
    }

    /// Where a transcode job is published.
    pub fn for_job(job: &crate::messages::TranscodeJob) -> Topic {
        if job.part == crate::messages::JobPart::Audio {
            Topic::AudioJobs
        } else {
            Topic::Jobs
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("unsupported queue URL {0:?}")]
    UnsupportedUrl(String),
    #[error("queue backend: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        QueueError::Backend(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, QueueError>;

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Stores a message durably; once this returns, the message survives a crash.
    async fn publish(&self, topic: Topic, payload: Vec<u8>) -> Result<()>;
    /// A consumer of a topic that holds at most one unacknowledged message.
    async fn consumer(&self, topic: Topic) -> Result<Box<dyn Consumer>>;
    /// Messages of a topic waiting or in hand (ready + unacknowledged).
    async fn depth(&self, topic: Topic) -> Result<u64>;
    /// Consumers taking a topic's messages now: the workers a lecture's chunks can be
    /// spread over. The embedded queue counts the consumers of this process only.
    async fn consumers(&self, topic: Topic) -> Result<u64>;
    /// Messages in a topic's dead-letter queue.
    async fn dead_letters(&self, topic: Topic) -> Result<u64>;
    /// How long the oldest message ready for a consumer has waited (zero when none
    /// waits), where the backend can tell without touching the messages; None where it
    /// cannot (RabbitMQ tells counts, not ages, over AMQP).
    async fn oldest_waiting(&self, _topic: Topic) -> Result<Option<Duration>> {
        Ok(None)
    }
    /// Whether the backend answers (for /readyz).
    async fn check(&self) -> Result<()>;
}

/// Records how long a delivered message waited for its consumer, from the time it
/// became ready (published, or its retry came due) in milliseconds since the epoch.
fn observe_wait(topic: Topic, ready_at_millis: i64) {
    let waited = crate::now_millis().saturating_sub(ready_at_millis).max(0);
    crate::metrics::metrics()
        .queue_wait
        .with_label_values(&[topic.name()])
        .observe(waited as f64 / 1000.0);
}

#[async_trait]
pub trait Consumer: Send {
    /// Waits for the next message and leases it to the caller.
    async fn next(&mut self) -> Result<Delivery>;
}

pub type SharedQueue = Arc<dyn Queue>;

#[async_trait]
trait Lease: Send + Sync {
    async fn ack(&self) -> Result<()>;
    async fn retry_after(&self, delay: Duration) -> Result<()>;
    async fn dead_letter(&self, reason: &str) -> Result<()>;
}

/// A leased message. Ack it when its work is done for good, or hand it back with
/// `retry_after`; dropping it unacked returns it once the lease lapses.
pub struct Delivery {
    pub payload: Vec<u8>,
    /// 1 for the first delivery, counting every delivery (crashes included).
    pub attempt: u32,
    /// The trace context the publisher set as a message header (AMQP), if any; the
    /// embedded queue carries it in the payload only.
    pub traceparent: Option<String>,
    lease: Box<dyn Lease>,
}

impl Delivery {
    pub async fn ack(self) -> Result<()> {
        self.lease.ack().await
    }

    pub async fn retry_after(self, delay: Duration) -> Result<()> {
        self.lease.retry_after(delay).await
    }

    /// Gives the message up: it moves to the topic's dead-letter queue with the reason,
    /// for an operator to look at.
    pub async fn dead_letter(self, reason: &str) -> Result<()> {
        self.lease.dead_letter(reason).await
    }
}

/// The wait before retry `attempt` (1, 2, …): doubling from `first`, each scaled by a
/// random factor in [0.5, 1] so processes that lost a backend together do not all
/// come back at the same instant.
pub fn backoff(first: Duration, attempt: u32) -> Duration {
    let full = first.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    full.mul_f64(rand::random_range(0.5..=1.0))
}

/// Publishes a message that may safely arrive twice (an event), retrying a failed
/// publish up to `retries` times with [`backoff`] from half a second; whether it went out.
pub async fn publish_retrying(
    queue: &dyn Queue,
    topic: Topic,
    payload: Vec<u8>,
    retries: u32,
) -> bool {
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(backoff(Duration::from_millis(500), attempt)).await;
        }
        match queue.publish(topic, payload.clone()).await {
            Ok(()) => return true,
            Err(e) => tracing::warn!(topic = topic.name(), attempt, error = %e, "publish failed"),
        }
    }
    false
}

/// Opens the queue a URL names.
pub async fn open_queue(url: &str) -> Result<SharedQueue> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(
            EmbeddedQueue::open(url, EmbeddedQueue::LEASE).await?,
        ));
    }
    if url.starts_with("amqp://") || url.starts_with("amqps://") {
        return Ok(Arc::new(amqp::AmqpQueue::open(url).await?));
    }
    Err(QueueError::UnsupportedUrl(url.to_string()))
}

#[derive(Clone)]
pub struct EmbeddedQueue {
    pool: SqlitePool,
    lease: Duration,
    wakeup: Arc<Notify>,
    /// Live consumers of each topic in this process, by `Topic::index`.
    consumers: Arc<[AtomicU64; Topic::ALL.len()]>,
}

impl EmbeddedQueue {
    pub const LEASE: Duration = Duration::from_secs(15);
    const POLL: Duration = Duration::from_millis(500);

    pub async fn open(url: &str, lease: Duration) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent() {
            std::fs::create_dir_all(dir).map_err(|e| QueueError::Backend(e.to_string()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                visible_at INTEGER NOT NULL,
                leased_until INTEGER NOT NULL DEFAULT 0,
                lease_token TEXT,
                reason TEXT
            )",
        )
        .execute(&pool)
        .await?;
        // Files made before dead-lettering existed lack the reason column.
        let _ = sqlx::query("ALTER TABLE messages ADD COLUMN reason TEXT")
            .execute(&pool)
            .await;
        sqlx::query("CREATE INDEX IF NOT EXISTS messages_ready ON messages (topic, visible_at)")
            .execute(&pool)
            .await?;
        Ok(Self {
            pool,
            lease,
            wakeup: Arc::new(Notify::new()),
            consumers: Arc::default(),
        })
    }

    async fn try_lease(&self, topic: Topic) -> Result<Option<Delivery>> {
        let now = crate::now_millis();
        let token = crate::new_id();
        let row: Option<(i64, Vec<u8>, i64, i64)> = sqlx::query_as(
            "UPDATE messages SET attempts = attempts + 1, leased_until = $1, lease_token = $2
             WHERE id = (SELECT id FROM messages WHERE topic = $3 AND visible_at <= $4 AND leased_until <= $4
                         ORDER BY visible_at, id LIMIT 1)
             RETURNING id, payload, attempts, visible_at",
        )
        .bind(now + self.lease.as_millis() as i64)
        .bind(&token)
        .bind(topic.name())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, payload, attempts, ready_at)) = row else {
            return Ok(None);
        };
        observe_wait(topic, ready_at);
        let lease = EmbeddedLease {
            pool: self.pool.clone(),
            id,
            token,
            wakeup: self.wakeup.clone(),
        };
        let renewer = lease.renew_every(self.lease);
        Ok(Some(Delivery {
            payload,
            attempt: attempts as u32,
            traceparent: None,
            lease: Box::new(RenewedLease {
                inner: lease,
                renewer,
            }),
        }))
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn publish(&self, topic: Topic, payload: Vec<u8>) -> Result<()> {
        sqlx::query("INSERT INTO messages (topic, payload, visible_at) VALUES ($1, $2, $3)")
            .bind(topic.name())
            .bind(payload)
            .bind(crate::now_millis())
            .execute(&self.pool)
            .await?;
        self.wakeup.notify_waiters();
        Ok(())
    }

    async fn consumer(&self, topic: Topic) -> Result<Box<dyn Consumer>> {
        self.consumers[topic.index()].fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(EmbeddedConsumer {
            queue: self.clone(),
            topic,
        }))
    }

    async fn depth(&self, topic: Topic) -> Result<u64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages WHERE topic = $1")
            .bind(topic.name())
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn consumers(&self, topic: Topic) -> Result<u64> {
        Ok(self.consumers[topic.index()].load(Ordering::Relaxed))
    }

    async fn dead_letters(&self, topic: Topic) -> Result<u64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages WHERE topic = $1")
            .bind(format!("{}.dead", topic.name()))
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn oldest_waiting(&self, topic: Topic) -> Result<Option<Duration>> {
        let now = crate::now_millis();
        let (oldest,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(visible_at) FROM messages WHERE topic = $1 AND visible_at <= $2 AND leased_until <= $2",
        )
        .bind(topic.name())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let waited = oldest.map_or(0, |at| now.saturating_sub(at).max(0));
        Ok(Some(Duration::from_millis(waited as u64)))
    }

    async fn check(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

struct EmbeddedConsumer {
    queue: EmbeddedQueue,
    topic: Topic,
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        self.queue.consumers[self.topic.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Result<Delivery> {
        self.queue.receive(self.topic).await
    }
}

impl EmbeddedQueue {
    /// Waits for the next message of a topic and leases it to the caller.
    pub async fn receive(&self, topic: Topic) -> Result<Delivery> {
        loop {
            let notified = self.wakeup.notified();
            if let Some(d) = self.try_lease(topic).await? {
                return Ok(d);
            }
            // Other processes may share the file and delayed retries come due: poll too.
            let _ = tokio::time::timeout(Self::POLL, notified).await;
        }
    }
}

struct EmbeddedLease {
    pool: SqlitePool,
    id: i64,
    token: String,
    wakeup: Arc<Notify>,
}

impl EmbeddedLease {
    /// Keeps the lease alive while the delivery is held.
    fn renew_every(&self, lease: Duration) -> tokio::task::JoinHandle<()> {
        let (pool, id, token) = (self.pool.clone(), self.id, self.token.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let until = crate::now_millis() + lease.as_millis() as i64;
                let renewed = sqlx::query(
                    "UPDATE messages SET leased_until = $1 WHERE id = $2 AND lease_token = $3",
                )
                .bind(until)
                .bind(id)
                .bind(&token)
                .execute(&pool)
                .await;
                if let Err(e) = renewed {
                    tracing::warn!(error = %e, "could not renew a queue lease");
                }
            }
        })
    }
}

struct RenewedLease {
    inner: EmbeddedLease,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for RenewedLease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

#[async_trait]
impl Lease for RenewedLease {
    async fn ack(&self) -> Result<()> {
        self.renewer.abort();
        sqlx::query("DELETE FROM messages WHERE id = $1 AND lease_token = $2")
            .bind(self.inner.id)
            .bind(&self.inner.token)
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }

    async fn retry_after(&self, delay: Duration) -> Result<()> {
        self.renewer.abort();
        sqlx::query("UPDATE messages SET leased_until = 0, lease_token = NULL, visible_at = $1 WHERE id = $2 AND lease_token = $3")
            .bind(crate::now_millis() + delay.as_millis() as i64)
            .bind(self.inner.id)
            .bind(&self.inner.token)
            .execute(&self.inner.pool)
            .await?;
        self.inner.wakeup.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, reason: &str) -> Result<()> {
        self.renewer.abort();
        // Same row, parked under the dead-letter topic: nothing consumes it.
        sqlx::query(
            "UPDATE messages SET topic = topic || '.dead', reason = $1, leased_until = 0, lease_token = NULL
             WHERE id = $2 AND lease_token = $3",
        )
        .bind(reason)
        .bind(self.inner.id)
        .bind(&self.inner.token)
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn queue(dir: &tempfile::TempDir, lease: Duration) -> EmbeddedQueue {
        EmbeddedQueue::open(&format!("sqlite://{}/q.db", dir.path().display()), lease)
            .await
            .unwrap()
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_bounded() {
        let first = Duration::from_millis(500);
        let waits: Vec<Duration> = (0..200).map(|_| backoff(first, 3)).collect();
        assert!(waits.iter().all(|w| *w >= first * 2 && *w <= first * 4));
        // Jittered: not every process waits the same.
        assert!(waits.iter().any(|w| *w != waits[0]));
        assert!(backoff(first, 1) <= first);
        assert!(backoff(first, 100) <= first * (1 << 16));
    }

    #[tokio::test]
    async fn live_consumers_are_counted_per_topic_across_clones() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, EmbeddedQueue::LEASE).await;
        let shared: SharedQueue = Arc::new(q.clone());
        assert_eq!(shared.consumers(Topic::Jobs).await.unwrap(), 0);
        let first = shared.consumer(Topic::Jobs).await.unwrap();
        let second = q.consumer(Topic::Jobs).await.unwrap();
        let audio = q.consumer(Topic::AudioJobs).await.unwrap();
        assert_eq!(shared.consumers(Topic::Jobs).await.unwrap(), 2);
        assert_eq!(q.consumers(Topic::AudioJobs).await.unwrap(), 1);
        assert_eq!(q.consumers(Topic::Events).await.unwrap(), 0);
        drop(first);
        assert_eq!(shared.consumers(Topic::Jobs).await.unwrap(), 1);
        drop((second, audio));
        assert_eq!(q.consumers(Topic::Jobs).await.unwrap(), 0);
        assert_eq!(q.consumers(Topic::AudioJobs).await.unwrap(), 0);
        // Another process opening the same file counts its own consumers only.
        let other = queue(&dir, EmbeddedQueue::LEASE).await;
        let _held = q.consumer(Topic::Jobs).await.unwrap();
        assert_eq!(other.consumers(Topic::Jobs).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn messages_come_in_order_and_ack_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, EmbeddedQueue::LEASE).await;
        q.publish(Topic::Jobs, b"one".to_vec()).await.unwrap();
        q.publish(Topic::Jobs, b"two".to_vec()).await.unwrap();
        q.publish(Topic::Events, b"ev".to_vec()).await.unwrap();
        let a = q.receive(Topic::Jobs).await.unwrap();
        let b = q.receive(Topic::Jobs).await.unwrap();
        assert_eq!((a.payload.as_slice(), a.attempt), (&b"one"[..], 1));
        assert_eq!(b.payload, b"two");
        a.ack().await.unwrap();
        b.ack().await.unwrap();
        assert!(q.try_lease(Topic::Jobs).await.unwrap().is_none());
        assert_eq!(
            q.consumer(Topic::Events)
                .await
                .unwrap()
                .next()
                .await
                .unwrap()
                .payload,
            b"ev"
        );
        assert_eq!(q.depth(Topic::Events).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn dead_letters_leave_the_topic_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, EmbeddedQueue::LEASE).await;
        q.publish(Topic::Jobs, b"poison".to_vec()).await.unwrap();
        q.receive(Topic::Jobs)
            .await
            .unwrap()
            .dead_letter("decoder crashed")
            .await
            .unwrap();
        assert_eq!(q.depth(Topic::Jobs).await.unwrap(), 0);
        let (reason,): (String,) =
            sqlx::query_as("SELECT reason FROM messages WHERE topic = 'lectern.jobs.dead'")
                .fetch_one(&q.pool)
                .await
                .unwrap();
        assert_eq!(reason, "decoder crashed");
        assert_eq!(q.dead_letters(Topic::Jobs).await.unwrap(), 1);
        assert_eq!(q.dead_letters(Topic::AudioJobs).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_oldest_ready_message_tells_its_wait_and_held_ones_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, EmbeddedQueue::LEASE).await;
        let age = |d: Option<Duration>| d.expect("the embedded queue tells ages");
        assert_eq!(
            age(q.oldest_waiting(Topic::Jobs).await.unwrap()),
            Duration::ZERO
        );
        q.publish(Topic::Jobs, b"first".to_vec()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        q.publish(Topic::Jobs, b"second".to_vec()).await.unwrap();
        let waited = age(q.oldest_waiting(Topic::Jobs).await.unwrap());
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        let wait = || {
            crate::metrics::metrics()
                .queue_wait
                .with_label_values(&[Topic::Jobs.name()])
                .get_sample_count()
        };
        let before = wait();
        // Held: the first no longer waits; the second is younger.
        let held = q.receive(Topic::Jobs).await.unwrap();
        assert!(wait() > before);
        assert!(age(q.oldest_waiting(Topic::Jobs).await.unwrap()) < waited);
        // A retry not yet due is not waiting for a consumer either.
        held.retry_after(Duration::from_secs(60)).await.unwrap();
        q.receive(Topic::Jobs).await.unwrap().ack().await.unwrap();
        assert_eq!(
            age(q.oldest_waiting(Topic::Jobs).await.unwrap()),
            Duration::ZERO
        );
        assert_eq!(q.depth(Topic::Jobs).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn retry_redelivers_after_the_delay_with_the_attempt_counted() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, EmbeddedQueue::LEASE).await;
        q.publish(Topic::Jobs, b"job".to_vec()).await.unwrap();
        q.receive(Topic::Jobs)
            .await
            .unwrap()
            .retry_after(Duration::from_millis(300))
            .await
            .unwrap();
        assert!(q.try_lease(Topic::Jobs).await.unwrap().is_none());
        let again = tokio::time::timeout(Duration::from_secs(5), q.receive(Topic::Jobs))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.attempt, 2);
    }

    #[tokio::test]
    async fn a_message_held_by_a_dead_process_comes_back_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = queue(&dir, Duration::from_millis(600)).await;
            q.publish(Topic::Jobs, b"job".to_vec()).await.unwrap();
            // The holder dies: no ack, and its lease is no longer renewed.
            drop(q.receive(Topic::Jobs).await.unwrap());
        }
        let q = queue(&dir, Duration::from_millis(600)).await;
        let again = tokio::time::timeout(Duration::from_secs(5), q.receive(Topic::Jobs))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.payload, b"job");
        assert_eq!(again.attempt, 2);
    }

    #[tokio::test]
    async fn a_held_lease_is_renewed_while_work_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, Duration::from_millis(600)).await;
        q.publish(Topic::Jobs, b"job".to_vec()).await.unwrap();
        let held = q.receive(Topic::Jobs).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            q.try_lease(Topic::Jobs).await.unwrap().is_none(),
            "lease lapsed while held"
        );
        held.ack().await.unwrap();
    }
}
