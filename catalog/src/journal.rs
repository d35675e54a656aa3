//! The event journal (`event_journal`): every event a user may see, numbered in the
//! order it happened. Each catalog process follows it and hands new entries to its
//! live connections, so a client hears every event whichever process applied it; a
//! client that was away names the last number it saw and gets what it missed (over the
//! WebSocket as it reconnects, or as a feed). Entries are kept for [`KEPT_SECS`].

use std::sync::Arc;
use std::time::Duration;

use lectern_seams::db::{Backend, Db};
use lectern_seams::ids::{CourseId, UserId};
use lectern_seams::now_unix;
use lectern_web::auth::{AuthUser, Role};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};

use crate::error::CatalogError;
use crate::events::LiveEvent;

/// How long entries are kept: a client away longer starts afresh.
pub const KEPT_SECS: i64 = 14 * 86_400;

/// Entries one request (or one reconnection) catches up on at most.
pub const MAX_BATCH: i64 = 1000;

/// An event to journal and who may see it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub owner_id: UserId,
    /// None for an event of the owner's account rather than of a course.
    pub course_id: Option<CourseId>,
    pub event: LiveEvent,
    /// What enrolled students see of it, if anything.
    pub for_students: Option<LiveEvent>,
}

/// A journaled event on its way to live connections: its number, who may see it, and
/// its JSON for each (the number included).
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: i64,
    pub owner_id: UserId,
    pub course_id: Option<CourseId>,
    pub event: String,
    pub for_students: Option<String>,
}

pub type Hub = broadcast::Sender<Entry>;

/// The journal's side of a catalog process: new entries for its live connections, and
/// a nudge to look at once when this process wrote one.
#[derive(Clone)]
pub struct Journal {
    pub hub: Hub,
    written: Arc<Notify>,
}

impl Journal {
    /// Tells this process's follower that an entry was just committed here.
    pub fn nudge(&self) {
        self.written.notify_one();
    }
}

impl Default for Journal {
    fn default() -> Self {
        Self {
            hub: broadcast::channel(1024).0,
            written: Arc::new(Notify::new()),
        }
    }
}

/// Adds an event to the journal, with a webhook delivery to each endpoint of its owner
/// that takes its type; its number.
pub async fn record(db: &Db, journal: &Journal, draft: &Draft) -> Result<i64, CatalogError> {
    let mut tx = db.begin().await?;
    let seq = record_in(&mut tx, draft).await?;
    tx.commit().await?;
    journal.nudge();
    Ok(seq)
}

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// `record` inside a transaction of the change the event tells of, so both happen or
/// neither. Numbers are handed out in commit order (PostgreSQL: writers take turns
/// under a transaction lock), so a reader that saw number N has seen every entry
/// before it. Other processes see it within a quarter second; this one too.
pub async fn record_in(tx: &mut Tx, draft: &Draft) -> Result<i64, CatalogError> {
    let json = |e: &LiveEvent| serde_json::to_string(e).expect("live events serialize");
    if backend_of(tx) == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7351)")
            .execute(&mut **tx)
            .await?;
    }
    let payload = json(&draft.event);
    let (seq,): (i64,) = sqlx::query_as(
        "INSERT INTO event_journal (owner_id, course_id, payload, student_payload, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
    )
    .bind(&draft.owner_id)
    .bind(&draft.course_id)
    .bind(&payload)
    .bind(draft.for_students.as_ref().map(json))
    .bind(now_unix())
    .fetch_one(&mut **tx)
    .await?;
    if let Some(kind) = draft.event.webhook_type() {
        crate::webhooks::fan_out(tx, &draft.owner_id, kind, &numbered(seq, &payload)).await?;
    }
    Ok(seq)
}

fn backend_of(tx: &mut Tx) -> Backend {
    match (**tx).backend_name() {
        "PostgreSQL" => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

type Row = (i64, UserId, Option<CourseId>, String, Option<String>);

impl Entry {
    fn from_row((seq, owner_id, course_id, payload, student): Row) -> Self {
        Entry {
            seq,
            owner_id,
            course_id,
            event: numbered(seq, &payload),
            for_students: student.map(|s| numbered(seq, &s)),
        }
    }

    /// What `user` sees of it, given whether they are enrolled in its course.
    pub fn as_seen_by(&self, user: &AuthUser, enrolled: bool) -> Option<&str> {
        if user.role == Role::Admin || self.owner_id == user.id {
            Some(&self.event)
        } else if enrolled {
            self.for_students.as_deref()
        } else {
            None
        }
    }
}

/// An entry's JSON with its number in front.
fn numbered(seq: i64, payload: &str) -> String {
    match payload.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('"') => format!("{{\"seq\":{seq},{rest}"),
        _ => format!("{{\"seq\":{seq}}}"),
    }
}

/// Follows the journal until the task is dropped: entries written by any process go to
/// this process's live connections, in order. Starts at the journal's end.
pub async fn follow(db: Db, journal: Journal) {
    let mut last = loop {
        match sqlx::query_as::<_, (Option<i64>,)>("SELECT MAX(seq) FROM event_journal")
            .fetch_one(&db)
            .await
        {
            Ok((max,)) => break max.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event journal yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let mut pruned_at = 0;
    loop {
        match entries_after(&db, last, MAX_BATCH).await {
            Ok(entries) => {
                for entry in entries {
                    last = entry.seq;
                    let _ = journal.hub.send(entry);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the event journal failed; retrying"),
        }
        if now_unix() - pruned_at > 3600 {
            pruned_at = now_unix();
            if let Err(e) = prune(&db).await {
                tracing::warn!(error = %e, "pruning the event journal failed");
            }
        }
        // Written here: at once; elsewhere: within a quarter second.
        let _ = tokio::time::timeout(Duration::from_millis(250), journal.written.notified()).await;
    }
}

async fn entries_after(db: &Db, after: i64, limit: i64) -> Result<Vec<Entry>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, owner_id, course_id, payload, student_payload FROM event_journal
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Entry::from_row).collect())
}

async fn prune(db: &Db) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM event_journal WHERE created_at < $1")
        .bind(now_unix() - KEPT_SECS)
        .execute(db)
        .await?;
    Ok(())
}

/// What a user missed: the events after `after` they may see, oldest first, at most
/// `limit`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Missed {
    /// Each event's JSON as the WebSocket sends it, with its `seq`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// The number to ask after next time: the last event's, or `after` when none came.
    pub last_seq: i64,
    /// True when there may be more: ask again after `last_seq`.
    pub more: bool,
    /// True when events after `after` are no longer kept (more than 14 days ago, or
    /// another installation's number): start from the current state instead.
    pub gone: bool,
}

/// The events after `after` that `user` may see.
pub async fn missed(
    db: &Db,
    user: &AuthUser,
    after: i64,
    limit: i64,
) -> Result<Missed, CatalogError> {
    let limit = limit.clamp(1, MAX_BATCH);
    let (oldest, newest): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM event_journal")
            .fetch_one(db)
            .await?;
    let gone = after < 0
        || oldest.is_some_and(|o| after < o - 1)
        || after > newest.unwrap_or(0) && after > 0;
    let visible = match user.role {
        // Every query names the user, so the parameters are the same for everyone.
        Role::Admin => "(owner_id = $3 OR TRUE)",
        _ => {
            "(owner_id = $3 OR (student_payload IS NOT NULL AND course_id IN
               (SELECT course_id FROM enrollments WHERE user_id = $3)))"
        }
    };
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT seq, owner_id, course_id, payload, student_payload FROM event_journal
         WHERE seq > $1 AND {visible} ORDER BY seq LIMIT $2"
    )))
    .bind(after.max(0))
    .bind(limit)
    .bind(&user.id)
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 == limit;
    let mut last_seq = after.max(0);
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let entry = Entry::from_row(row);
        last_seq = entry.seq;
        let seen = entry
            .as_seen_by(user, true)
            .expect("the query keeps what the user may see");
        events.push(serde_json::from_str(seen).map_err(|e| CatalogError::Internal(e.to_string()))?);
    }
    Ok(Missed {
        events,
        last_seq,
        more,
        gone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_in_front() {
        assert_eq!(
            numbered(7, r#"{"type":"ready","lecture_id":"x"}"#),
            r#"{"seq":7,"type":"ready","lecture_id":"x"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&numbered(9, "{\"a\":1}")).unwrap();
        assert_eq!(v["seq"], 9);
    }
}
