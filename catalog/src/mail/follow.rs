//! Lecture mails from the event journal. A cursor row (`mail_cursor`) says how far the
//! journal has been read for mail; the mails an entry causes are written to the outbox
//! in the same transaction that moves the cursor past it, and the cursor moves only
//! from where it was (a guarded update), so each entry is mailed once however many
//! catalog processes follow. Journal numbers are handed out in commit order, so nothing
//! is skipped. Following the journal rather than writing mail where events are
//! journaled keeps mail out of the pipeline's paths and lets mail be switched on and
//! off by a setting.
//!
//! - `ready` and `failed` (the owner's events): a mail to the course's owner.
//! - `lecture_ready` (what students see of `ready`): an item of the new-lecture digest
//!   for every enrolled student who did not unsubscribe from the course. A digest goes
//!   out [`Settings::digest_secs`] after the first lecture it tells of, with every
//!   lecture that came meanwhile: at most one mail per course and period.
//!
//! Only verified addresses get these mails.

use std::collections::BTreeMap;

use lectern_seams::db::Db;
use lectern_seams::now_unix;

use super::links::{self, Claim};
use super::{Kind, Settings, enqueue, templates};

/// Entries one look reads at most.
const BATCH: i64 = 200;
/// News older than this when it is read (mail was off) is not mailed.
const STALE_SECS: i64 = 2 * 86_400;

type JournalRow = (i64, String, Option<String>, String, Option<String>, i64);

/// Reads the journal past the cursor and writes the mails it causes.
pub async fn follow(db: &Db, settings: &Settings) -> Result<(), sqlx::Error> {
    let cursor: Option<(i64,)> = sqlx::query_as("SELECT seq FROM mail_cursor WHERE id = 1")
        .fetch_optional(db)
        .await?;
    let Some((cursor,)) = cursor else {
        // The first start with mail on: from the journal's end, not its history.
        sqlx::query(
            "INSERT INTO mail_cursor (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM event_journal WHERE TRUE
             ON CONFLICT (id) DO NOTHING",
        )
        .execute(db)
        .await?;
        return Ok(());
    };
    let rows: Vec<JournalRow> = sqlx::query_as(
        "SELECT seq, owner_id, course_id, payload, student_payload, created_at FROM event_journal
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(cursor)
    .bind(BATCH)
    .fetch_all(db)
    .await?;
    let Some(last) = rows.last().map(|r| r.0) else {
        return Ok(());
    };
    let mut tx = db.begin().await?;
    let now = now_unix();
    for (_, owner_id, course_id, payload, student_payload, created_at) in rows {
        let (Some(course_id), true) = (course_id, created_at > now - STALE_SECS) else {
            continue;
        };
        let event: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
        let lecture_id = event["lecture_id"].as_str().unwrap_or_default();
        match event["type"].as_str() {
            Some("ready") => {
                owner_mail(&mut tx, settings, &owner_id, &course_id, lecture_id, None).await?
            }
            Some("failed") => {
                let reason = event["reason"].as_str().unwrap_or("unknown reason");
                owner_mail(
                    &mut tx,
                    settings,
                    &owner_id,
                    &course_id,
                    lecture_id,
                    Some(reason),
                )
                .await?
            }
            _ => {}
        }
        let seen: serde_json::Value = student_payload
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        if seen["type"] == "lecture_ready" {
            let title = seen["title"].as_str().unwrap_or_default();
            sqlx::query(
                "INSERT INTO mail_digest_items (user_id, course_id, lecture_id, title, created_at)
                 SELECT e.user_id, e.course_id, $1, $2, $3 FROM enrollments e
                 WHERE e.course_id = $4 AND NOT EXISTS
                   (SELECT 1 FROM mail_unsubscribes u WHERE u.user_id = e.user_id AND u.course_id = e.course_id)
                 ON CONFLICT (user_id, lecture_id) DO NOTHING",
            )
            .bind(lecture_id)
            .bind(title)
            .bind(created_at)
            .bind(&course_id)
            .execute(&mut *tx)
            .await?;
        }
    }
    let moved = sqlx::query("UPDATE mail_cursor SET seq = $1 WHERE id = 1 AND seq = $2")
        .bind(last)
        .bind(cursor)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if moved == 1 {
        tx.commit().await?;
    } else {
        // Another process mailed these.
        tx.rollback().await?;
    }
    Ok(())
}

/// A lecture ready (no reason) or failed mail to the course's owner, if their address
/// is verified.
async fn owner_mail(
    tx: &mut crate::journal::Tx,
    settings: &Settings,
    owner_id: &str,
    course_id: &str,
    lecture_id: &str,
    failed: Option<&str>,
) -> Result<(), sqlx::Error> {
    let row: Option<(String, String, String, String)> = sqlx::query_as(
        "SELECT u.email, u.name, c.title, l.title FROM users u, courses c, lectures l
         WHERE u.id = $1 AND c.id = $2 AND l.id = $3 AND l.course_id = c.id AND u.email_verified_at IS NOT NULL",
    )
    .bind(owner_id)
    .bind(course_id)
    .bind(lecture_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((email, name, course, lecture)) = row else {
        return Ok(());
    };
    let link = settings.link(&format!("/#/studio/courses/{course_id}"));
    let (kind, mail) = match failed {
        None => (
            Kind::LectureReady,
            templates::lecture_ready(&name, &course, &lecture, &link),
        ),
        Some(reason) => (
            Kind::LectureFailed,
            templates::lecture_failed(&name, &course, &lecture, reason, &link),
        ),
    };
    enqueue(tx, kind, &email, &mail, None).await
}

/// A lecture waiting to be told of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub user_id: String,
    pub course_id: String,
    pub created_at: i64,
}

/// The (student, course) pairs whose digest is due at `now`: their first waiting
/// lecture came at least `period` ago.
pub fn due_pairs(items: &[Item], now: i64, period: i64) -> Vec<(String, String)> {
    let mut first: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for item in items {
        let at = first
            .entry((&item.user_id, &item.course_id))
            .or_insert(item.created_at);
        *at = (*at).min(item.created_at);
    }
    first
        .into_iter()
        .filter(|(_, at)| *at + period <= now)
        .map(|((u, c), _)| (u.to_string(), c.to_string()))
        .collect()
}

/// Writes the digests that are due to the outbox, each in the transaction that marks
/// its lectures mailed.
pub async fn write_digests(db: &Db, settings: &Settings) -> Result<(), sqlx::Error> {
    let now = now_unix();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT user_id, course_id, created_at FROM mail_digest_items
         WHERE mailed_at IS NULL AND created_at <= $1 ORDER BY created_at LIMIT 1000",
    )
    .bind(now - settings.digest_secs)
    .fetch_all(db)
    .await?;
    let items: Vec<Item> = rows
        .into_iter()
        .map(|(user_id, course_id, created_at)| Item {
            user_id,
            course_id,
            created_at,
        })
        .collect();
    for (user_id, course_id) in due_pairs(&items, now, settings.digest_secs) {
        let mut tx = db.begin().await?;
        // Claims every waiting lecture of the pair, those that came since too.
        let lectures: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE mail_digest_items SET mailed_at = $1 WHERE user_id = $2 AND course_id = $3 AND mailed_at IS NULL
             RETURNING title, created_at",
        )
        .bind(now)
        .bind(&user_id)
        .bind(&course_id)
        .fetch_all(&mut *tx)
        .await?;
        if lectures.is_empty() {
            continue; // another process took them
        }
        let mut lectures = lectures;
        lectures.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let titles: Vec<String> = lectures.into_iter().map(|(t, _)| t).collect();
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT u.email, u.name, c.title FROM users u, courses c
             WHERE u.id = $1 AND c.id = $2 AND u.email_verified_at IS NOT NULL
               AND EXISTS (SELECT 1 FROM enrollments e WHERE e.user_id = u.id AND e.course_id = c.id)
               AND NOT EXISTS (SELECT 1 FROM mail_unsubscribes m WHERE m.user_id = u.id AND m.course_id = c.id)",
        )
        .bind(&user_id)
        .bind(&course_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((email, name, course)) = row {
            let token = links::sign(
                &settings.link_key,
                &Claim::Unsubscribe {
                    u: user_id.clone(),
                    c: course_id.clone(),
                },
            );
            let unsubscribe = settings.link(&format!("/api/mail/unsubscribe?token={token}"));
            let link = settings.link(&format!("/#/courses/{course_id}"));
            let mail = templates::new_lectures(&name, &course, &titles, &link, &unsubscribe);
            enqueue(
                &mut tx,
                Kind::NewLectures,
                &email,
                &mail,
                Some(&unsubscribe),
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(u: &str, c: &str, at: i64) -> Item {
        Item {
            user_id: u.into(),
            course_id: c.into(),
            created_at: at,
        }
    }

    #[test]
    fn a_digest_is_due_a_period_after_its_first_lecture() {
        let items = [
            item("ada", "signals", 100),
            item("ada", "signals", 150),
            item("ada", "optics", 160),
            item("bob", "signals", 100),
        ];
        assert!(due_pairs(&items, 199, 100).is_empty());
        assert_eq!(
            due_pairs(&items, 200, 100),
            vec![
                ("ada".to_string(), "signals".to_string()),
                ("bob".to_string(), "signals".to_string())
            ],
            "one mail per student and course, with both of ada's signals lectures"
        );
        assert_eq!(due_pairs(&items, 260, 100).len(), 3);
        // Order does not matter: the earliest lecture starts the period.
        assert_eq!(
            due_pairs(&[item("a", "c", 500), item("a", "c", 10)], 110, 100).len(),
            1
        );
    }
}
