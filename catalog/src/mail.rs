//! Mail: address verification, password resets, lecture ready/failed notices to owners
//! and daily digests of new lectures to enrolled students, sent over SMTP (lettre,
//! rustls with ring).
//!
//! Every mail goes through an outbox (`mail_outbox`): it is written in the transaction
//! of what caused it where there is one (a reset token and its mail; a digest and the
//! lectures it tells of) and sent from there by [`run`], which every catalog process
//! runs; a mail is claimed with a guarded update, so one process sends it, and a failed
//! attempt is retried on a schedule, so a mail server outage delays mail and never loses
//! it. Lecture mails follow the event journal from a cursor row ([`follow`]) instead of
//! being written by each place that journals an event. Without `LECTERN_SMTP_URL`
//! nothing is written to the outbox and nothing is sent.

pub mod account;
pub mod follow;
pub mod http;
pub mod links;
pub mod smtp;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use lectern_seams::db::Db;
use lectern_seams::{new_id, now_unix};

pub use smtp::SmtpTarget;
use templates::Rendered;

/// How mail goes out (`LECTERN_SMTP_URL`, `LECTERN_MAIL_*`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub smtp: SmtpTarget,
    /// The From address, `Name <addr>` or `addr`.
    pub from: lettre::message::Mailbox,
    /// The public origin links in mails start with (`LECTERN_PUBLIC_URL`).
    pub public_url: String,
    /// The key mail links are signed with ([`links::derive_key`]).
    pub link_key: Vec<u8>,
    /// Seconds before each retry of a mail that could not be sent; after the last it
    /// is given up (and stays in the outbox, `failed`).
    pub retry_secs: Vec<u64>,
    /// A new-lecture digest goes out this long after the first lecture it tells of, so
    /// a student gets at most one per course in this time.
    pub digest_secs: i64,
    /// How long one SMTP conversation may take.
    pub timeout: Duration,
}

impl Settings {
    /// A link into the web app or the API.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public_url.trim_end_matches('/'))
    }
}

pub type SharedSettings = Arc<Settings>;

/// What a mail is, as the outbox records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Verify,
    Reset,
    LectureReady,
    LectureFailed,
    NewLectures,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Verify => "verify",
            Kind::Reset => "reset",
            Kind::LectureReady => "lecture_ready",
            Kind::LectureFailed => "lecture_failed",
            Kind::NewLectures => "new_lectures",
        }
    }
}

/// Writes a mail to the outbox, due now, on `conn` (a transaction's, so the mail is
/// written with what caused it).
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    kind: Kind,
    recipient: &str,
    mail: &Rendered,
    unsubscribe_url: Option<&str>,
) -> Result<(), sqlx::Error> {
    let now = now_unix();
    sqlx::query(
        "INSERT INTO mail_outbox (id, kind, recipient, subject, text_body, html_body, unsubscribe_url, state, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8)",
    )
    .bind(new_id())
    .bind(kind.as_str())
    .bind(recipient)
    .bind(&mail.subject)
    .bind(&mail.text)
    .bind(&mail.html)
    .bind(unsubscribe_url)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sends mail until the task is dropped: follows the journal for lecture mails, writes
/// the digests that are due, sends what is due in the outbox, and now and then drops
/// what is old.
pub async fn run(db: Db, settings: SharedSettings) {
    let transport = match smtp::transport(&settings) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "mail cannot be sent: no SMTP transport");
            return;
        }
    };
    let mut pruned_at = 0;
    loop {
        if let Err(e) = follow::follow(&db, &settings).await {
            tracing::warn!(error = %e, "following the journal for mail failed; retrying");
        }
        if let Err(e) = follow::write_digests(&db, &settings).await {
            tracing::warn!(error = %e, "writing new-lecture digests failed; retrying");
        }
        if let Err(e) = smtp::send_due(&db, &settings, &transport).await {
            tracing::warn!(error = %e, "sending mail failed; retrying");
        }
        if now_unix() - pruned_at > 3600 {
            pruned_at = now_unix();
            if let Err(e) = prune(&db).await {
                tracing::warn!(error = %e, "pruning the mail outbox failed");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How long sent and failed mails and used or expired reset tokens are kept.
const KEPT_SECS: i64 = 30 * 86_400;

async fn prune(db: &Db) -> Result<(), sqlx::Error> {
    let before = now_unix() - KEPT_SECS;
    sqlx::query("DELETE FROM mail_outbox WHERE state <> 'pending' AND created_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    sqlx::query("DELETE FROM password_resets WHERE expires_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    sqlx::query("DELETE FROM mail_digest_items WHERE mailed_at IS NOT NULL AND mailed_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(())
}
