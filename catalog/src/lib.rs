//! lectern-catalog: the API students and owners talk to.
//!
//! It owns accounts (argon2 passwords, JWT access tokens with roles), courses and
//! lectures with their status, enrollment (free subscriptions, owners' enrollment codes),
//! search, playback tokens and the `/play/{token}/…` streaming endpoint, attachments
//! (announced here, handed out through short-lived download links), and live
//! events: it consumes the workers' job events, applies them to lecture state and
//! pushes them to WebSocket clients; and owners' webhooks.

pub mod accounts;
pub mod analytics;
pub mod attachments;
pub mod captions;
pub mod chapters;
pub mod codes;
pub mod courses;
pub mod delivery;
mod error;
pub mod events;
pub mod journal;
pub mod mail;
mod outbox;
pub mod parts;
pub mod payments;
pub mod playback;
mod routes;
pub mod search;
pub mod slides;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::FromRef;
use lectern_seams::db::Db;
use lectern_seams::queue::SharedQueue;
use lectern_seams::storage::SharedStore;
use lectern_web::auth::AccessTokens;
use lectern_web::limits::Limits;

pub use delivery::Delivery;
pub use error::CatalogError;
pub use routes::{CatalogApi, PLAY_PREFIX, SERVICE_PREFIXES, play_router, router};

#[derive(Clone, Default)]
pub struct CatalogConfig {
    /// Public origin (e.g. https://videos.example.edu) put in front of playback URLs
    /// so they work when embedded on another site; relative URLs when unset.
    pub public_url: Option<String>,
    pub delivery: Delivery,
    /// Live-event connections one user may hold open at once.
    pub sockets_per_user: usize,
    /// Who may sign up as an owner.
    pub owner_signup: accounts::OwnerSignup,
    /// The payment provider, if one is set up (it needs `public_url`).
    pub payments: Option<payments::SharedPayments>,
    /// The largest attachment an owner may upload, in bytes.
    pub attachment_max_bytes: u64,
    /// How long an attachment's download link works, in seconds.
    pub attachment_link_secs: i64,
    /// Where and how webhooks are sent.
    pub webhooks: Arc<webhooks::Settings>,
    /// Days viewing sessions are kept before they are rolled up into daily counts.
    pub analytics_keep_days: i64,
    /// How mail is sent; none without `LECTERN_SMTP_URL` (no mail is written or sent).
    pub mail: Option<mail::SharedSettings>,
}

/// What every catalog handler gets. Cloned for every request (axum clones a route's
/// state into each call, and again for the `State` extractor), so it is one `Arc`:
/// cloning the fields one by one cost a dozen atomic counters per clone and per drop,
/// about a tenth of the CPU time of serving a cached playlist.
#[derive(Clone)]
pub struct CatalogState(Arc<CatalogParts>);

pub struct CatalogParts {
    pub db: Db,
    pub store: SharedStore,
    pub queue: SharedQueue,
    pub tokens: AccessTokens,
    pub playback: playback::PlaybackTokens,
    pub journal: journal::Journal,
    /// Viewing beacons waiting to be recorded.
    pub beacons: analytics::Collector,
    flusher: std::sync::Mutex<Option<analytics::Flusher>>,
    pub sockets: events::Sockets,
    pub config: CatalogConfig,
    pub limits: Arc<Limits>,
}

impl std::ops::Deref for CatalogState {
    type Target = CatalogParts;
    fn deref(&self) -> &CatalogParts {
        &self.0
    }
}

impl FromRef<CatalogState> for AccessTokens {
    fn from_ref(state: &CatalogState) -> Self {
        state.tokens.clone()
    }
}

impl CatalogState {
    pub fn new(
        db: Db,
        store: SharedStore,
        queue: SharedQueue,
        tokens: AccessTokens,
        playback: playback::PlaybackTokens,
        config: CatalogConfig,
        limits: Arc<Limits>,
    ) -> Self {
        let (beacons, flusher) = analytics::collector();
        Self(Arc::new(CatalogParts {
            db,
            store,
            queue,
            tokens,
            playback,
            journal: journal::Journal::default(),
            beacons,
            flusher: std::sync::Mutex::new(Some(flusher)),
            sockets: events::Sockets::default(),
            config,
            limits,
        }))
    }
}

/// Background duties: consuming job events, following the event journal, sending
/// webhooks, recording viewing beacons.
pub fn spawn_background(state: CatalogState) -> Vec<tokio::task::JoinHandle<()>> {
    let flusher = state.flusher.lock().expect("flusher lock").take();
    let analytics = flusher.map(|f| {
        let keep_days = state.config.analytics_keep_days;
        tokio::spawn(f.run(state.db.clone(), keep_days))
    });
    let mut tasks = vec![
        tokio::spawn(events::consume(
            state.db.clone(),
            state.store.clone(),
            state.queue.clone(),
            state.journal.clone(),
        )),
        tokio::spawn(journal::follow(state.db.clone(), state.journal.clone())),
        tokio::spawn(webhooks::send::run(
            state.db.clone(),
            state.config.webhooks.clone(),
            state.journal.clone(),
        )),
    ];
    tasks.extend(analytics);
    if let Some(mail) = state.config.mail.clone() {
        tasks.push(tokio::spawn(mail::run(state.db.clone(), mail)));
    }
    tasks
}
