//! The `lectern` binary: command line and wiring only. `lectern serve` runs every role
//! in one process; `lectern ingest | catalog | worker` run one role each. Backends are
//! chosen by URL (docs/configuration.md lists every setting).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use clap::{Args, Parser, Subcommand};
use lectern_catalog::accounts::OwnerSignup;
use lectern_catalog::playback::PlaybackTokens;
use lectern_catalog::{CatalogConfig, CatalogState, Delivery};
use lectern_gate::fence::{Fence, Limits as FenceLimits};
use lectern_ingest::probe::SourceLimits;
use lectern_ingest::{IngestConfig, IngestState};
use lectern_seams::db::Db;
use lectern_seams::queue::{SharedQueue, Topic};
use lectern_seams::storage::SharedStore;
use lectern_transcoder::{Worker, WorkerConfig};
use lectern_web::auth::{AccessTokens, Role, load_or_create_secret};
use lectern_web::edge::{EdgeConfig, SecurityHeaders, api_cors, with_edge};
use lectern_web::http::{ErrorCode, error_response};
use lectern_web::limits::{Limits, LimitsConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod error_tracking;
mod telemetry;

// Many small short-lived allocations per request and per frame: mimalloc's per-thread
// free lists beat glibc's arenas (docs/decisions/0002-playback-delivered-by-the-edge.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for the whole process (as mimalloc does itself when
/// MIMALLOC_ALLOW_THP=0; setting that variable to anything leaves the choice to it).
/// x264 asks for huge pages for its frames and mimalloc's arenas got them too: whole
/// 2 MiB pages for partly used memory were 50 MiB of a transcode's peak (467 -> 417 MiB
/// on a 12 s 1080p clip, four runs each way; the bench's fixed ladder 479 -> 432) at no
/// measurable CPU cost (14.69 s against 14.71), and serving did not move either.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: sets a flag of this process's memory; no pointers involved.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

#[derive(Parser)]
#[command(
    name = "lectern",
    version,
    about = "Course videos: upload, transcode to adaptive HLS, stream"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every role in one process (the embedded default).
    Serve,
    /// The tus upload API only.
    Ingest,
    /// The catalog API, playback and live events only.
    Catalog,
    /// Transcoding workers only.
    Worker,
    /// Applies database migrations and exits (every role also migrates at start).
    Migrate,
    /// Exits 0 when the Lectern on --listen answers /healthz (container health checks;
    /// images carry no curl).
    Healthcheck,
    /// Copies the embedded world (its databases, stored objects and keys) into a new
    /// folder while Lectern serves. The folder holds the keys: keep it as secret as the
    /// data folder.
    Backup {
        /// The folder to write (new or empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Fills an empty data folder from a backup (`lectern backup`); start Lectern on it
    /// afterwards, and work that was under way resumes.
    Restore {
        /// The backup's folder.
        #[arg(long)]
        from: PathBuf,
    },
    /// Account administration.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Uploads lecture files (or a folder) into a course, resumably, and follows them to
    /// ready (docs/cli.md).
    Upload(lectern_client::UploadArgs),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates an account, e.g. the first admin: `lectern user create --role admin …`.
    Create {
        #[arg(long)]
        email: String,
        /// The password; read from LECTERN_NEW_PASSWORD when not given.
        #[arg(long, env = "LECTERN_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "admin", value_parser = ["student", "owner", "admin"])]
        role: String,
    },
    /// Makes an owner invite code (for `LECTERN_OWNER_SIGNUP=invite`) and prints it.
    Invite {
        /// Days the code stays valid.
        #[arg(long, default_value_t = 14)]
        days: u32,
    },
    /// Lists the sign-ups waiting to be approved as owners (`LECTERN_OWNER_SIGNUP=approval`).
    Pending,
    /// Makes the account with this email an owner.
    Approve { email: String },
}

/// A setting with a closed list of values, each with its word, read into its type once
/// (clap lists the words in --help and refuses others).
fn choice<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    word: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(all.iter().map(|&v| word(v))).map(move |w| {
        *all.iter()
            .find(|&&v| word(v) == w)
            .expect("one of the listed words")
    })
}

/// The ladder choices: per-title (true) or fixed.
const LADDERS: [bool; 2] = [true, false];

fn ladder_word(per_title: bool) -> &'static str {
    if per_title { "per-title" } else { "fixed" }
}

/// The slides choices: read (true) or off.
const SLIDES: [bool; 2] = [true, false];

fn slides_word(read: bool) -> &'static str {
    if read { "read" } else { "off" }
}

#[derive(Args, Clone)]
struct Config {
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "LECTERN_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    listen: SocketAddr,
    /// Folder for the embedded database, objects, queue, keys and scratch space.
    #[arg(long, env = "LECTERN_DATA_DIR", default_value = "data", global = true)]
    data_dir: PathBuf,
    /// Database URL [default: sqlite://DATA_DIR/lectern.db].
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Object storage URL [default: file://DATA_DIR/objects?cold=DATA_DIR/cold].
    #[arg(long, env = "STORAGE_URL", global = true)]
    storage_url: Option<String>,
    /// Queue URL [default: sqlite://DATA_DIR/queue.db, the embedded durable queue].
    #[arg(long, env = "QUEUE_URL", global = true)]
    queue_url: Option<String>,
    /// Secret for access tokens [default: generated once into DATA_DIR/keys].
    #[arg(
        long,
        env = "LECTERN_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    jwt_secret: Option<String>,
    /// Secret for playback tokens, distinct from the access-token one [default: generated].
    #[arg(
        long,
        env = "LECTERN_PLAYBACK_SECRET",
        hide_env_values = true,
        global = true
    )]
    playback_secret: Option<String>,
    /// Lifetime of access tokens, in seconds.
    #[arg(
        long,
        env = "LECTERN_ACCESS_TOKEN_TTL",
        default_value_t = 43_200,
        global = true
    )]
    access_token_ttl: i64,
    /// Lifetime of playback tokens, in seconds.
    #[arg(
        long,
        env = "LECTERN_PLAYBACK_TOKEN_TTL",
        default_value_t = 3_600,
        global = true
    )]
    playback_token_ttl: i64,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "LECTERN_MAX_UPLOAD_BYTES", default_value_t = 20 * 1024 * 1024 * 1024, global = true)]
    max_upload_bytes: u64,
    /// Largest attachment (slides, PDFs, code) an owner may upload, in bytes.
    #[arg(long, env = "LECTERN_MAX_ATTACHMENT_BYTES", default_value_t = 1024 * 1024 * 1024, global = true)]
    max_attachment_bytes: u64,
    /// How long an attachment's download link works, in seconds.
    #[arg(
        long,
        env = "LECTERN_ATTACHMENT_LINK_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(i64).range(1..=86_400),
        global = true
    )]
    attachment_link_secs: i64,
    /// Let webhooks go to private, loopback and link-local addresses (a closed network's
    /// choice; off, they go to public addresses only).
    #[arg(
        long,
        env = "LECTERN_WEBHOOK_ALLOW_PRIVATE",
        default_value_t = false,
        global = true
    )]
    webhook_allow_private: bool,
    /// Seconds before each retry of a failed webhook delivery, comma-separated; after the
    /// last the delivery fails and its endpoint is disabled.
    #[arg(
        long,
        env = "LECTERN_WEBHOOK_RETRY_SECS",
        value_delimiter = ',',
        default_value = "5,300,1800,7200,18000,36000,36000",
        global = true
    )]
    webhook_retry_secs: Vec<u64>,
    /// The mail server: `smtp://[user:pass@]host[:port]` (STARTTLS required),
    /// `smtps://…` (TLS from the start) or `smtp://host:port?tls=none` (no TLS: a relay
    /// on loopback only). Unset: Lectern sends no mail.
    #[arg(long, env = "LECTERN_SMTP_URL", hide_env_values = true, global = true)]
    smtp_url: Option<String>,
    /// The From of Lectern's mail, `Name <address>` or `address` (needed with
    /// LECTERN_SMTP_URL).
    #[arg(long, env = "LECTERN_MAIL_FROM", global = true)]
    mail_from: Option<String>,
    /// Seconds before each retry of a mail that could not be sent, comma-separated;
    /// after the last it is given up.
    #[arg(
        long,
        env = "LECTERN_MAIL_RETRY_SECS",
        value_delimiter = ',',
        default_value = "30,60,300,900,1800,3600,7200,14400,28800,43200,86400,86400",
        global = true
    )]
    mail_retry_secs: Vec<u64>,
    /// Seconds a new-lecture digest waits after the first lecture it tells of: a student
    /// gets at most one per course in this time.
    #[arg(long, env = "LECTERN_MAIL_DIGEST_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..=2_592_000), global = true)]
    mail_digest_secs: i64,
    /// Days viewing sessions are kept before they are rolled up into daily counts and
    /// dropped.
    #[arg(long, env = "LECTERN_ANALYTICS_KEEP_DAYS", default_value_t = 90, value_parser = clap::value_parser!(i64).range(1..=3650), global = true)]
    analytics_keep_days: i64,
    /// How long an unfinished upload is kept after its last chunk, in seconds.
    #[arg(
        long,
        env = "LECTERN_UPLOAD_TTL",
        default_value_t = 86_400,
        global = true
    )]
    upload_ttl: i64,
    /// Transcode workers in this process: each runs one job at a time, and one chunked
    /// lecture's audio job beside it.
    #[arg(long, env = "LECTERN_WORKERS", default_value_t = 1, global = true)]
    workers: usize,
    /// Deliveries of a transcode job before it is reported failed.
    #[arg(long, env = "LECTERN_MAX_ATTEMPTS", default_value_t = 3, global = true)]
    max_attempts: u32,
    /// First retry delay of a failed job, in seconds (doubling after each attempt).
    #[arg(
        long,
        env = "LECTERN_RETRY_BASE_SECS",
        default_value_t = 5,
        global = true
    )]
    retry_base_secs: u64,
    /// A transcode that makes no progress for this long is stopped, in seconds.
    #[arg(
        long,
        env = "LECTERN_STALL_TIMEOUT_SECS",
        default_value_t = 120,
        global = true
    )]
    stall_timeout_secs: u64,
    /// On SIGTERM a worker finishes its job in hand; after this many seconds it stops it
    /// and leaves it to the queue (keep terminationGracePeriodSeconds above it).
    #[arg(
        long,
        env = "LECTERN_SHUTDOWN_GRACE_SECS",
        default_value_t = 1800,
        global = true
    )]
    shutdown_grace_secs: u64,
    /// Public origin put in front of playback URLs (for players on other sites).
    #[arg(long, env = "LECTERN_PUBLIC_URL", global = true)]
    public_url: Option<String>,
    /// Folder of the built web app (player-web/dist), served by `serve` and `catalog`.
    #[arg(
        long,
        env = "LECTERN_WEB_DIR",
        default_value = "player-web/dist",
        global = true
    )]
    web_dir: PathBuf,
    /// How playback bytes reach players once /play has checked the token: `proxy`
    /// (Lectern sends them), `nginx` (nginx sends them, after asking Lectern what a token
    /// grants or following its X-Accel-Redirect; see deploy/nginx) or `direct` (presigned
    /// S3 URLs in the media playlists).
    #[arg(long, env = "PLAYBACK_DELIVERY", default_value = "proxy", global = true,
          value_parser = choice(&Delivery::ALL, Delivery::as_str))]
    playback_delivery: Delivery,
    /// Who may sign up as an owner: anyone (`open`), holders of an invite code from
    /// `lectern user invite` (`invite`), or anyone once `lectern user approve` (`approval`).
    #[arg(long, env = "LECTERN_OWNER_SIGNUP", default_value = "open", global = true,
          value_parser = choice(&OwnerSignup::ALL, OwnerSignup::as_str))]
    owner_signup: OwnerSignup,
    /// Stripe's secret API key: priced courses can be bought through Stripe Checkout
    /// (with LECTERN_STRIPE_WEBHOOK_SECRET and LECTERN_PUBLIC_URL). Unset: they cannot.
    #[arg(
        long,
        env = "LECTERN_STRIPE_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    stripe_secret_key: Option<String>,
    /// The signing secret of Lectern's Stripe webhook endpoint (/api/payments/stripe/webhook).
    #[arg(
        long,
        env = "LECTERN_STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    stripe_webhook_secret: Option<String>,
    /// Where Stripe's API is (a server speaking the same endpoints, for tests).
    #[arg(
        long,
        env = "LECTERN_STRIPE_API_BASE",
        default_value = "https://api.stripe.com",
        global = true
    )]
    stripe_api_base: String,
    /// Live-event connections (WebSockets) one account may hold open at once.
    #[arg(
        long,
        env = "LECTERN_SOCKETS_PER_USER",
        default_value_t = 8,
        global = true
    )]
    sockets_per_user: usize,
    /// Lectures longer than this many seconds are split into chunk jobs (whole
    /// segments) that any worker may take, and play before they finish; 0 never splits.
    #[arg(long, env = "LECTERN_CHUNK_SECS", default_value_t = 60, global = true)]
    chunk_secs: u32,
    /// The workers a lecture's chunks are planned for: shorter chunks in whole rounds of
    /// them, and larger ladders encoded whole. 0 counts the job queue's consumers when
    /// the upload ends; set it where workers scale up after the jobs are queued.
    #[arg(long, env = "LECTERN_PLAN_WORKERS", default_value_t = 0, global = true)]
    plan_workers: u32,
    /// `per-title`: probe each source's complexity and fit every rung's bit rate to it,
    /// dropping rungs that add nothing; `fixed`: the same ladder for every source.
    #[arg(long = "ladder", env = "LECTERN_LADDER", default_value = "per-title", global = true, action = clap::ArgAction::Set,
          value_parser = choice(&LADDERS, ladder_word))]
    per_title_ladder: bool,
    /// `read`: each video lecture gets a slides job after its transcode, which finds
    /// slide changes and reads their words (proposed chapters, search); `off`: none.
    #[arg(long = "slides", env = "LECTERN_SLIDES", default_value = "read", global = true, action = clap::ArgAction::Set,
          value_parser = choice(&SLIDES, slides_word))]
    read_slides: bool,
    /// Originals no transcode has read for this many seconds move to the storage's cold
    /// tier (the cold folder, or STORAGE_URL's cold_bucket / cold_class); a new
    /// transcode brings them back. 0 keeps every original hot.
    #[arg(
        long,
        env = "LECTERN_COLD_AFTER_SECS",
        default_value_t = 30 * 24 * 3600,
        global = true
    )]
    cold_after_secs: u64,
    /// An upload body that sends no bytes for this long is cut; what arrived is kept.
    #[arg(
        long,
        env = "LECTERN_UPLOAD_IDLE_SECS",
        default_value_t = 60,
        global = true
    )]
    upload_idle_secs: u64,
    /// Bytes of source files one owner may hold; 0 for no quota.
    #[arg(long, env = "LECTERN_UPLOAD_QUOTA_BYTES", default_value_t = 100 * 1024 * 1024 * 1024, global = true)]
    upload_quota_bytes: u64,
    /// Rate limits: `off`, or overrides like `signup.ip=30/60,login.account=20/60,login.failures=5`
    /// (docs/configuration.md lists every key and its default).
    #[arg(long, env = "LECTERN_RATE_LIMITS", default_value = "", global = true)]
    rate_limits: String,
    /// Origins allowed to call the API from browsers, comma-separated (`*` for any).
    #[arg(
        long,
        env = "LECTERN_CORS_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    cors_origins: Vec<String>,
    /// Take client addresses from X-Forwarded-For (only behind a proxy that sets it).
    #[arg(
        long,
        env = "LECTERN_TRUST_FORWARDED",
        default_value_t = false,
        global = true
    )]
    trust_forwarded: bool,
    /// Longest wait for a response head, in seconds (upload bodies are exempt).
    #[arg(
        long,
        env = "LECTERN_REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    request_timeout_secs: u64,
    /// Longest time a client may take to send a request's head, in seconds, on a new
    /// connection and between requests on a kept-alive one; the connection is then closed.
    #[arg(
        long,
        env = "LECTERN_HEADER_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    header_timeout_secs: u64,
    /// A transcode running longer than this many seconds plus 8x the source's duration is
    /// stopped (and retried or failed).
    #[arg(
        long,
        env = "LECTERN_JOB_TIMEOUT_BASE_SECS",
        default_value_t = 600,
        global = true
    )]
    job_timeout_base_secs: u64,
    /// Uploads wider than this many pixels are refused.
    #[arg(long, env = "LECTERN_MAX_WIDTH", default_value_t = SourceLimits::default().max_width, global = true)]
    max_width: u32,
    /// Uploads taller than this many pixels are refused.
    #[arg(
        long,
        env = "LECTERN_MAX_HEIGHT",
        default_value_t = SourceLimits::default().max_height,
        global = true
    )]
    max_height: u32,
    /// Uploads whose stated frame rate is above this are refused.
    #[arg(long, env = "LECTERN_MAX_FPS", default_value_t = SourceLimits::default().max_fps, global = true)]
    max_fps: u32,
    /// Uploads lasting longer than this many seconds are refused.
    #[arg(long, env = "LECTERN_MAX_DURATION_SECS", default_value_t = SourceLimits::default().max_duration_secs, global = true)]
    max_duration_secs: u32,
    /// A video whose timeline has a stretch without pictures longer than this many
    /// seconds fails, instead of being filled with copies of one frame.
    #[arg(
        long,
        env = "LECTERN_MAX_GAP_SECS",
        default_value_t = SourceLimits::default().max_gap_secs,
        global = true
    )]
    max_gap_secs: u32,
    /// Private memory (heap and stacks) of a fenced child probing or transcoding one
    /// upload, MiB.
    #[arg(
        long,
        env = "LECTERN_FENCE_MEMORY_MB",
        default_value_t = FenceLimits::default().memory_bytes >> 20,
        global = true
    )]
    fence_memory_mb: u64,
    /// The largest file a fenced child may write, MiB.
    #[arg(
        long,
        env = "LECTERN_FENCE_FILE_MB",
        default_value_t = FenceLimits::default().file_bytes >> 20,
        global = true
    )]
    fence_file_mb: u64,
    /// Where panics and 5xx answers are reported: a Sentry DSN
    /// (`https://KEY@HOST/PROJECT`; any Sentry-compatible endpoint). Unset: nothing is.
    #[arg(long, env = "SENTRY_DSN", hide_env_values = true, global = true)]
    sentry_dsn: Option<String>,
    /// The environment reports are filed under (e.g. `production`, `staging`)
    /// [default: production; development in a debug build].
    #[arg(long, env = "SENTRY_ENVIRONMENT", global = true)]
    sentry_environment: Option<String>,
}

impl Config {
    fn source_limits(&self) -> SourceLimits {
        SourceLimits {
            max_width: self.max_width,
            max_height: self.max_height,
            max_fps: self.max_fps,
            max_duration_secs: self.max_duration_secs,
            max_gap_secs: self.max_gap_secs,
        }
    }
    /// Children of this binary, started for every upload's probe and transcode. The
    /// plugin registry they read is brought up to date here, by the trusted parent.
    fn fence(&self) -> anyhow::Result<Fence> {
        lectern_gate::init().map_err(|e| anyhow::anyhow!("GStreamer: {e}"))?;
        let limits = FenceLimits {
            memory_bytes: self.fence_memory_mb << 20,
            file_bytes: self.fence_file_mb << 20,
        };
        Fence::of_this_binary(limits).context("finding the lectern binary for fenced children")
    }
    fn data(&self, name: &str) -> String {
        self.data_dir.join(name).to_string_lossy().into_owned()
    }
    fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data("lectern.db")))
    }
    fn storage_url(&self) -> String {
        self.storage_url.clone().unwrap_or_else(|| {
            format!("file://{}?cold={}", self.data("objects"), self.data("cold"))
        })
    }
    fn queue_url(&self) -> String {
        self.queue_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data("queue.db")))
    }
    /// Stripe, when both of its secrets are set (and the public URL it sends students
    /// back to).
    fn payments(&self) -> anyhow::Result<Option<lectern_catalog::payments::SharedPayments>> {
        use lectern_catalog::payments::stripe::{Stripe, StripeConfig};
        let (Some(secret_key), Some(webhook_secret)) = (
            self.stripe_secret_key.clone(),
            self.stripe_webhook_secret.clone(),
        ) else {
            anyhow::ensure!(
                self.stripe_secret_key.is_none() && self.stripe_webhook_secret.is_none(),
                "set both LECTERN_STRIPE_SECRET_KEY and LECTERN_STRIPE_WEBHOOK_SECRET, or neither"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            self.public_url.is_some(),
            "Stripe sends students back to LECTERN_PUBLIC_URL: set it"
        );
        let stripe = Stripe::new(StripeConfig {
            secret_key,
            webhook_secret,
            api_base: self.stripe_api_base.clone(),
        })?;
        Ok(Some(std::sync::Arc::new(stripe)))
    }
    fn backup_layout(&self) -> anyhow::Result<lectern_seams::backup::Layout> {
        Ok(lectern_seams::backup::Layout::embedded(
            &self.database_url(),
            &self.queue_url(),
            &self.storage_url(),
            self.data_dir.join("keys"),
        )?)
    }
    fn access_tokens(&self) -> anyhow::Result<AccessTokens> {
        let secret = load_or_create_secret(
            self.jwt_secret.as_deref(),
            &self.data_dir.join("keys/access.key"),
        )
        .context("loading the access-token secret")?;
        Ok(AccessTokens::new(&secret, self.access_token_ttl))
    }
    fn limits(&self) -> anyhow::Result<Arc<Limits>> {
        let config = LimitsConfig::parse(&self.rate_limits)
            .map_err(|e| anyhow::anyhow!("LECTERN_RATE_LIMITS: {e}"))?;
        Ok(Arc::new(Limits::new(config)))
    }
    fn edge(&self) -> EdgeConfig {
        EdgeConfig {
            trust_forwarded: self.trust_forwarded,
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            untimed_bodies: Some(lectern_ingest::UPLOADS_PATH),
            security: Some(self.security_headers()),
            credential_paths: Some(lectern_catalog::PLAY_PREFIX),
        }
    }
    /// The API's routes with CORS for the origins the operator allows. Their 405 is set
    /// first, so the CORS layer wraps it too and answers preflights.
    fn with_cors(&self, api: Router) -> Router {
        let api = api.method_not_allowed_fallback(method_not_allowed);
        let origins: Vec<String> = self
            .cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        match api_cors(&origins) {
            Some(cors) => api.layer(cors),
            None => api,
        }
    }
    /// The Content-Security-Policy fits player-web: its own scripts and styles, hls.js's
    /// blob: media and worker, images from this origin (posters, storyboards) and the
    /// data: favicon, API and WebSocket calls to this origin, plus the S3 origin when
    /// segments are delivered from presigned URLs.
    fn security_headers(&self) -> SecurityHeaders {
        let mut connect = String::from("'self' ws: wss:");
        if self.playback_delivery == Delivery::Direct
            && let Some(origin) = storage_origin(&self.storage_url())
        {
            connect.push(' ');
            connect.push_str(&origin);
        }
        // media-src data: for hls.js's placeholder caption track (`data:,WEBVTT`).
        let csp = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
             media-src 'self' blob: data:; worker-src 'self' blob:; connect-src {connect}; \
             frame-ancestors 'self'; base-uri 'self'; form-action 'self'; object-src 'none'"
        );
        SecurityHeaders {
            content_security_policy: axum::http::HeaderValue::from_str(&csp)
                .expect("the policy is ASCII"),
            strict_transport: self
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
        }
    }
    fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.max(1))
    }
    fn playback_tokens(&self) -> anyhow::Result<PlaybackTokens> {
        let secret = load_or_create_secret(
            self.playback_secret.as_deref(),
            &self.data_dir.join("keys/playback.key"),
        )
        .context("loading the playback-token secret")?;
        Ok(PlaybackTokens::new(&secret, self.playback_token_ttl))
    }
}

/// The backends a role uses, for /readyz.
#[derive(Clone, Default)]
struct Backends {
    db: Option<Db>,
    store: Option<SharedStore>,
    queue: Option<SharedQueue>,
    /// The data folder (scratch space included), whose disk `/metrics` reports.
    data_dir: PathBuf,
    /// A circuit breaker per backend, kept by a watcher (`with_health`).
    breakers: lectern_seams::breaker::SharedBreakers,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up", body = serde_json::Value)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Every backend answers", body = serde_json::Value), (status = 503, description = "A backend does not answer; `backends` says which", body = serde_json::Value)))]
async fn readyz(State(b): State<Backends>) -> Response {
    // Each backend within the breaker probe's short limit, so a hung one is reported
    // rather than holding the answer.
    let watched = lectern_seams::breaker::Watched {
        db: b.db.clone(),
        store: b.store.clone(),
        queue: b.queue.clone(),
    };
    let answers = watched.ask().await;
    let ready = answers.iter().all(|(_, ok)| *ok);
    let report: serde_json::Map<String, serde_json::Value> = answers
        .into_iter()
        .map(|(backend, ok)| {
            (
                backend.as_str().into(),
                (if ok { "ok" } else { "unavailable" }).into(),
            )
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let breakers: serde_json::Map<String, serde_json::Value> = b
        .breakers
        .states()
        .into_iter()
        .map(|(backend, open)| {
            (
                backend.as_str().into(),
                (if open { "open" } else { "closed" }).into(),
            )
        })
        .collect();
    (status, Json(serde_json::json!({"status": if ready { "ready" } else { "not_ready" }, "backends": report, "breakers": breakers}))).into_response()
}

async fn not_found() -> Response {
    error_response(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> Response {
    lectern_web::http::method_not_allowed(None)
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(b): State<Backends>) -> Response {
    let m = lectern_seams::metrics::metrics();
    if let Some(queue) = &b.queue {
        for topic in Topic::ALL {
            let label = [topic.name()];
            if let Ok(depth) = queue.depth(topic).await {
                m.queue_depth.with_label_values(&label).set(depth as i64);
            }
            if let Ok(dead) = queue.dead_letters(topic).await {
                m.queue_dead_letters
                    .with_label_values(&label)
                    .set(dead as i64);
            }
            if let Ok(Some(age)) = queue.oldest_waiting(topic).await {
                m.queue_oldest_waiting
                    .with_label_values(&label)
                    .set(age.as_secs_f64());
            }
        }
    }
    m.sample_disk(&b.data_dir);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        lectern_seams::metrics::render(),
    )
        .into_response()
}

/// The web app's static files, where they were built, and the API reference at
/// /api/docs; the API alone otherwise. Unknown API paths keep their JSON 404.
fn with_web(app: Router, web_dir: &std::path::Path) -> Router {
    if !web_dir.join("index.html").is_file() {
        tracing::info!(dir = %web_dir.display(), "no web app built there; serving the API only");
        return app;
    }
    let files = tower_http::services::ServeDir::new(web_dir).fallback(
        tower_http::services::ServeFile::new(web_dir.join("index.html")),
    );
    let docs = tower_http::services::ServeFile::new(web_dir.join("api-docs.html"));
    app.route_service("/api/docs", docs)
        .fallback(move |req: axum::extract::Request| {
            let files = files.clone();
            async move {
                let path = req.uri().path();
                let reads = matches!(
                    *req.method(),
                    axum::http::Method::GET | axum::http::Method::HEAD
                );
                if !reads
                    || lectern_catalog::SERVICE_PREFIXES
                        .iter()
                        .any(|p| path.starts_with(p))
                {
                    return not_found().await;
                }
                use tower::ServiceExt;
                match files.oneshot(req).await {
                    Ok(res) => res.into_response(),
                    Err(e) => lectern_web::http::internal_error("serving the web app", &e),
                }
            }
        })
}

/// The scheme://host:port of an s3:// URL's endpoint, for the CSP.
fn storage_origin(url: &str) -> Option<String> {
    let endpoint = lectern_seams::storage::s3::parse_url(url).ok()?.endpoint?;
    let (scheme, rest) = endpoint.split_once("://")?;
    Some(format!("{scheme}://{}", rest.split('/').next()?))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Lectern", description = "Course videos: uploaded (tus), transcoded to adaptive HLS, streamed with signed URLs. Every error is `{\"error\": {\"code\", \"message\"}}`; every response carries X-Request-Id."),
    paths(healthz, readyz, metrics),
    tags((name = "operations", description = "Health, readiness, metrics")),
    modifiers(&BearerAuth)
)]
struct OperationsApi;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI description of the routes a role serves.
fn openapi(ingest: bool, catalog: bool) -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = OperationsApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let about = doc.info.description.take().unwrap_or_default();
    doc.info.description = Some(format!(
        "{about}\n\nError codes (`error.code`), each with its one status:\n\n{}",
        ErrorCode::described()
    ));
    if ingest {
        doc.merge(lectern_ingest::IngestApi::openapi());
    }
    if catalog {
        doc.merge(lectern_catalog::CatalogApi::openapi());
    }
    doc.merge(error_tracking::CheckApi::openapi());
    doc
}

async fn openapi_json(State(doc): State<std::sync::Arc<String>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.as_str().to_owned(),
    )
        .into_response()
}

/// /api/openapi.json, describing exactly the routes this process serves.
fn with_openapi(app: Router, doc: utoipa::openapi::OpenApi) -> Router {
    let json = std::sync::Arc::new(doc.to_pretty_json().expect("the description serialises"));
    app.merge(
        Router::new()
            .route("/api/openapi.json", get(openapi_json))
            .with_state(json),
    )
}

fn with_health(app: Router, mut backends: Backends) -> Router {
    let breakers = lectern_seams::breaker::SharedBreakers::default();
    tokio::spawn(lectern_seams::breaker::watch(
        breakers.clone(),
        lectern_seams::breaker::Watched {
            db: backends.db.clone(),
            store: backends.store.clone(),
            queue: backends.queue.clone(),
        },
    ));
    backends.breakers = breakers.clone();
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(backends);
    app.merge(health)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            breakers,
            lectern_web::unavailable::refuse_when_down,
        ))
        .route_layer(axum::middleware::from_fn(
            lectern_web::latency::record_latency,
        ))
}

/// Serves HTTP until shutdown, draining requests in flight, then waits for the
/// workers to finish their jobs in hand.
async fn serve_http(
    listen: SocketAddr,
    app: Router,
    edge: EdgeConfig,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
    workers: Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    let app = with_edge(error_tracking::with_reporting(app), &edge);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "lectern is listening");
    let mut drained = shutdown.clone();
    let server = lectern_web::serve::serve(listener, app, header_timeout, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    // Requests in flight get time to finish; long-lived ones (WebSockets) do not hold
    // the process forever.
    tokio::select! {
        () = server => {}
        _ = async {
            let _ = drained.wait_for(|stop| *stop).await;
            tokio::time::sleep(Duration::from_secs(20)).await;
        } => tracing::warn!("connections still open after 20 s; closing them"),
    }
    for w in workers {
        let _ = w.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Whether GET /healthz on the listen address (0.0.0.0 means this host) answers 200.
async fn healthz_answers(listen: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok()
        && head.starts_with(b"HTTP/1.")
        && &head[9..12] == b"200"
}

/// A flag that turns true on SIGTERM or Ctrl-C.
fn shutdown_flag() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down: draining requests and finishing jobs in hand");
        let _ = tx.send(true);
    });
    rx
}

fn ingest_state(
    c: &Config,
    db: Db,
    store: SharedStore,
    queue: SharedQueue,
    limits: Arc<Limits>,
) -> anyhow::Result<IngestState> {
    Ok(IngestState::new(
        db,
        store,
        queue,
        c.access_tokens()?,
        IngestConfig {
            max_upload_bytes: c.max_upload_bytes,
            upload_quota_bytes: c.upload_quota_bytes,
            upload_idle: Duration::from_secs(c.upload_idle_secs.max(1)),
            upload_ttl_secs: c.upload_ttl,
            probe_timeout_secs: 30,
            source_limits: c.source_limits(),
            fence: c.fence()?,
            scratch_dir: c.data_dir.join("scratch"),
            chunk_secs: c.chunk_secs,
            plan_workers: c.plan_workers,
            per_title_ladder: c.per_title_ladder,
            read_slides: c.read_slides,
            cold_after: (c.cold_after_secs > 0).then(|| Duration::from_secs(c.cold_after_secs)),
        },
        limits,
    ))
}

fn catalog_state(
    c: &Config,
    db: Db,
    store: SharedStore,
    queue: SharedQueue,
    limits: Arc<Limits>,
) -> anyhow::Result<CatalogState> {
    Ok(CatalogState::new(
        db,
        store,
        queue,
        c.access_tokens()?,
        c.playback_tokens()?,
        CatalogConfig {
            public_url: c.public_url.clone(),
            delivery: c.playback_delivery,
            sockets_per_user: c.sockets_per_user.max(1),
            owner_signup: c.owner_signup,
            payments: c.payments()?,
            attachment_max_bytes: c.max_attachment_bytes.min(c.max_upload_bytes),
            attachment_link_secs: c.attachment_link_secs,
            webhooks: Arc::new(lectern_catalog::webhooks::Settings {
                allow_private: c.webhook_allow_private,
                retry_secs: c.webhook_retry_secs.clone(),
                ..Default::default()
            }),
            analytics_keep_days: c.analytics_keep_days,
            mail: mail_settings(c)?,
        },
        limits,
    ))
}

/// How mail goes out, when LECTERN_SMTP_URL is set (links need LECTERN_PUBLIC_URL and a
/// From address).
fn mail_settings(c: &Config) -> anyhow::Result<Option<Arc<lectern_catalog::mail::Settings>>> {
    use lectern_catalog::mail;
    let Some(url) = c.smtp_url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let smtp =
        mail::SmtpTarget::parse(url).map_err(|e| anyhow::anyhow!("LECTERN_SMTP_URL: {e}"))?;
    let public_url = c
        .public_url
        .clone()
        .context("links in mails start with LECTERN_PUBLIC_URL: set it")?;
    let from = c
        .mail_from
        .as_deref()
        .context("mail needs a From address: set LECTERN_MAIL_FROM")?
        .parse()
        .map_err(|e| anyhow::anyhow!("LECTERN_MAIL_FROM: {e}"))?;
    let access =
        load_or_create_secret(c.jwt_secret.as_deref(), &c.data_dir.join("keys/access.key"))
            .context("loading the access-token secret")?;
    Ok(Some(Arc::new(mail::Settings {
        smtp,
        from,
        public_url,
        link_key: mail::links::derive_key(&access),
        retry_secs: c.mail_retry_secs.clone(),
        digest_secs: c.mail_digest_secs,
        timeout: Duration::from_secs(30),
    })))
}

fn spawn_workers(
    c: &Config,
    store: SharedStore,
    queue: SharedQueue,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let fence = c.fence()?;
    let mut handles = Vec::new();
    lectern_seams::metrics::metrics().set_workers(c.workers.max(1));
    let ocr = lectern_transcoder::screen::Engine::find();
    for _ in 0..c.workers.max(1) {
        let worker = Worker {
            store: store.clone(),
            queue: queue.clone(),
            config: WorkerConfig {
                scratch_dir: c.data_dir.join("scratch"),
                max_attempts: c.max_attempts.max(1),
                retry_base: Duration::from_secs(c.retry_base_secs),
                stall_timeout: Duration::from_secs(c.stall_timeout_secs.max(5)),
                job_time_base: Duration::from_secs(c.job_timeout_base_secs),
                job_time_per_source_sec: 8.0,
                shutdown_grace: Duration::from_secs(c.shutdown_grace_secs),
                max_gap: Duration::from_secs(c.max_gap_secs as u64),
                fence: fence.clone(),
                ocr: ocr.clone(),
            },
            shutdown: shutdown.clone(),
        };
        handles.push(tokio::spawn(worker.run()));
    }
    Ok(handles)
}

async fn open(c: &Config) -> anyhow::Result<(Db, SharedStore, SharedQueue)> {
    std::fs::create_dir_all(&c.data_dir)
        .with_context(|| format!("creating {}", c.data_dir.display()))?;
    if c.playback_delivery == Delivery::Direct && !c.storage_url().starts_with("s3://") {
        anyhow::bail!(
            "PLAYBACK_DELIVERY=direct needs S3 storage (STORAGE_URL=s3://…) to presign segment URLs"
        );
    }
    let db = lectern_seams::db::connect(&c.database_url())
        .await
        .context("opening the database")?;
    let store = lectern_seams::storage::open_storage(&c.storage_url())
        .await
        .context("opening object storage")?;
    let queue = lectern_seams::queue::open_queue(&c.queue_url())
        .await
        .context("opening the queue")?;
    Ok((db, store, queue))
}

fn main() -> anyhow::Result<ExitCode> {
    // A fenced child fences itself in before any other thread exists.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(lectern_gate::fence::SUBCOMMAND) {
        return Ok(fenced_child(args.next().as_deref()));
    }
    tokio::runtime::Runtime::new()
        .context("starting the runtime")?
        .block_on(run())?;
    Ok(ExitCode::SUCCESS)
}

/// `lectern fenced TASK`: one task over an upload, started by a parent role, speaking
/// JSON lines on stdin and stdout. Its log goes to stderr, which the parent keeps.
fn fenced_child(task: Option<&str>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match task {
        Some(lectern_ingest::analyse::TASK) => lectern_ingest::analyse::serve(),
        Some(lectern_transcoder::fenced::TASK) => lectern_transcoder::fenced::serve(),
        Some(lectern_transcoder::screen::TASK) => lectern_transcoder::screen::serve(),
        Some(lectern_gate::fence::CHECK_TASK) => lectern_gate::fence::check::serve(),
        _ => {
            eprintln!("lectern fenced: unknown task {task:?}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let cli = Cli::parse();
    // `lectern upload` owns stdout (its --json lines); its log goes to stderr.
    let (writer, terminal) = match cli.command {
        Command::Upload(_) => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        _ => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
    };
    // Text or JSON lines; spans exported over OTLP when configured, the last of them
    // when the guard drops (the role stopping).
    let _telemetry = telemetry::init(
        &cli.command,
        writer,
        terminal,
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn".into()),
    )?;
    let c = cli.config;
    // Panics and 5xx answers of the roles that serve, when SENTRY_DSN is set; the
    // guard flushes what is queued when the role stops.
    let role = match cli.command {
        Command::Serve => Some("serve"),
        Command::Ingest => Some("ingest"),
        Command::Catalog => Some("catalog"),
        Command::Worker => Some("worker"),
        _ => None,
    };
    let errors = error_tracking::Settings {
        dsn: c.sentry_dsn.as_deref(),
        environment: c.sentry_environment.as_deref(),
    };
    let _reporting = match role {
        Some(role) => error_tracking::init(&errors, role)?,
        None => None,
    };
    without_transparent_huge_pages();
    // Each connection and each file served is a descriptor; the soft limit is 1024.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    match cli.command {
        Command::Serve => {
            let (db, store, queue) = open(&c).await?;
            let limits = c.limits()?;
            let ingest =
                ingest_state(&c, db.clone(), store.clone(), queue.clone(), limits.clone())?;
            let catalog = catalog_state(&c, db.clone(), store.clone(), queue.clone(), limits)?;
            lectern_ingest::spawn_background(ingest.clone());
            lectern_catalog::spawn_background(catalog.clone());
            let shutdown = shutdown_flag();
            let workers = spawn_workers(&c, store.clone(), queue.clone(), &shutdown)?;
            let api =
                lectern_ingest::router(ingest).merge(lectern_catalog::router(catalog.clone()));
            let api = error_tracking::with_check(api, c.access_tokens()?);
            let app = c
                .with_cors(with_openapi(api, openapi(true, true)))
                .merge(lectern_catalog::play_router(catalog));
            let app = with_health(
                app,
                Backends {
                    db: Some(db),
                    store: Some(store),
                    queue: Some(queue),
                    data_dir: c.data_dir.clone(),
                    ..Default::default()
                },
            );
            serve_http(
                c.listen,
                with_web(app, &c.web_dir),
                c.edge(),
                c.header_timeout(),
                shutdown,
                workers,
            )
            .await
        }
        Command::Ingest => {
            let (db, store, queue) = open(&c).await?;
            let ingest = ingest_state(&c, db.clone(), store.clone(), queue.clone(), c.limits()?)?;
            lectern_ingest::spawn_background(ingest.clone());
            let app = c.with_cors(with_openapi(
                error_tracking::with_check(lectern_ingest::router(ingest), c.access_tokens()?),
                openapi(true, false),
            ));
            let app = with_health(
                app,
                Backends {
                    db: Some(db),
                    store: Some(store),
                    queue: Some(queue),
                    data_dir: c.data_dir.clone(),
                    ..Default::default()
                },
            );
            serve_http(
                c.listen,
                app,
                c.edge(),
                c.header_timeout(),
                shutdown_flag(),
                Vec::new(),
            )
            .await
        }
        Command::Catalog => {
            let (db, store, queue) = open(&c).await?;
            let catalog = catalog_state(&c, db.clone(), store.clone(), queue.clone(), c.limits()?)?;
            lectern_catalog::spawn_background(catalog.clone());
            let app = c
                .with_cors(with_openapi(
                    error_tracking::with_check(
                        lectern_catalog::router(catalog.clone()),
                        c.access_tokens()?,
                    ),
                    openapi(false, true),
                ))
                .merge(lectern_catalog::play_router(catalog));
            let app = with_health(
                app,
                Backends {
                    db: Some(db),
                    store: Some(store),
                    queue: Some(queue),
                    data_dir: c.data_dir.clone(),
                    ..Default::default()
                },
            );
            serve_http(
                c.listen,
                with_web(app, &c.web_dir),
                c.edge(),
                c.header_timeout(),
                shutdown_flag(),
                Vec::new(),
            )
            .await
        }
        Command::Worker => {
            // Workers hold no database: queue and storage only.
            std::fs::create_dir_all(&c.data_dir)?;
            let store = lectern_seams::storage::open_storage(&c.storage_url()).await?;
            let queue = lectern_seams::queue::open_queue(&c.queue_url()).await?;
            let shutdown = shutdown_flag();
            let workers = spawn_workers(&c, store.clone(), queue.clone(), &shutdown)?;
            let app = with_health(
                Router::new(),
                Backends {
                    db: None,
                    store: Some(store),
                    queue: Some(queue),
                    data_dir: c.data_dir.clone(),
                    ..Default::default()
                },
            );
            // A health port: no documents, so no security headers.
            serve_http(
                c.listen,
                app,
                EdgeConfig {
                    security: None,
                    ..c.edge()
                },
                c.header_timeout(),
                shutdown,
                workers,
            )
            .await
        }
        Command::Healthcheck => {
            let healthy = tokio::time::timeout(Duration::from_secs(3), healthz_answers(c.listen))
                .await
                .unwrap_or(false);
            std::process::exit(if healthy { 0 } else { 1 });
        }
        Command::Migrate => {
            std::fs::create_dir_all(&c.data_dir)?;
            let db = lectern_seams::db::connect_only(&c.database_url())
                .await
                .context("opening the database")?;
            lectern_seams::db::migrate(&db)
                .await
                .context("migrating the database")?;
            println!("database is up to date");
            Ok(())
        }
        Command::Backup { to } => {
            let copied = lectern_seams::backup::backup(&c.backup_layout()?, &to).await?;
            println!(
                "backed up {} files ({} bytes) and both databases into {}",
                copied.files,
                copied.bytes,
                to.display()
            );
            Ok(())
        }
        Command::Restore { from } => {
            let copied = lectern_seams::backup::restore(&from, &c.backup_layout()?).await?;
            println!(
                "restored {} files ({} bytes) into {}",
                copied.files,
                copied.bytes,
                c.data_dir.display()
            );
            Ok(())
        }
        Command::User { command } => user_admin(&c, command).await,
        Command::Upload(args) => std::process::exit(lectern_client::upload(args).await.code()),
    }
}

/// `lectern user create | invite | pending | approve`: accounts, and who may become an
/// owner.
async fn user_admin(c: &Config, command: UserCommand) -> anyhow::Result<()> {
    use lectern_catalog::accounts;
    std::fs::create_dir_all(&c.data_dir)?;
    let db = lectern_seams::db::connect(&c.database_url())
        .await
        .context("opening the database")?;
    let failed = |e: lectern_catalog::CatalogError| anyhow::anyhow!("{e}");
    match command {
        UserCommand::Create {
            email,
            password,
            name,
            role,
        } => {
            let role = Role::parse(&role).expect("clap checked the role");
            let user = accounts::create_user(&db, &email, &password, &name, role)
                .await
                .map_err(failed)?;
            println!(
                "{}",
                serde_json::json!({"id": user.id, "email": user.email, "role": user.role})
            );
        }
        UserCommand::Invite { days } => {
            let code = accounts::create_invite(&db, i64::from(days) * 86_400)
                .await
                .map_err(failed)?;
            println!(
                "{}",
                serde_json::json!({"invite": code, "valid_days": days})
            );
        }
        UserCommand::Pending => {
            for user in accounts::pending_owners(&db).await.map_err(failed)? {
                println!(
                    "{}",
                    serde_json::json!({"id": user.id, "email": user.email, "name": user.name})
                );
            }
        }
        UserCommand::Approve { email } => {
            let user = accounts::approve_owner(&db, &email).await.map_err(failed)?;
            println!(
                "{}",
                serde_json::json!({"id": user.id, "email": user.email, "role": user.role})
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Memory that asks for huge pages (as x264's frames do) gets none. On a machine whose
    /// kernel gives no huge pages at all this cannot fail; this one gives them on request.
    #[cfg(target_os = "linux")]
    #[test]
    fn memory_that_asks_for_huge_pages_gets_small_ones() {
        super::without_transparent_huge_pages();
        const LEN: usize = 16 << 20;
        // SAFETY: a fresh private anonymous mapping, written within its length and
        // unmapped once at the end.
        let huge_kib = unsafe {
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(ptr, libc::MAP_FAILED);
            libc::madvise(ptr, LEN, libc::MADV_HUGEPAGE);
            std::ptr::write_bytes(ptr.cast::<u8>(), 1, LEN);
            let start = format!("{:x}-", ptr as usize);
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let region = smaps
                .split_once(start.as_str())
                .expect("the mapping is listed")
                .1;
            let huge = region
                .lines()
                .find_map(|l| l.strip_prefix("AnonHugePages:"))
                .unwrap();
            libc::munmap(ptr, LEN);
            huge.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(huge_kib, 0, "huge pages in a mapping that asked for them");
    }
}
