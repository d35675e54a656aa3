//! The lecture's state machine: its statuses, and every change of `lectures.status`,
//! written once here. Ingest starts processing (or fails a refused file); the catalog
//! applies the workers' events. Rows are created, renamed and deleted by the catalog.
//!
//! ```text
//! awaiting_upload ──upload complete──▶ processing ──first parts stored──▶ playable
//!                                       │    │                               │
//!      ready, playable or failed        │    └──────────────▶ ready ◀────────┘
//!      ── a new upload ──▶ processing   └──▶ failed ◀─── (playable)
//!      ready or failed ── transcode again ──▶ processing
//! ```

use serde::{Deserialize, Serialize};
use sqlx::{Any, Executor};

use crate::ids::{AssetId, LectureId};
use crate::now_unix;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LectureStatus {
    /// Created; no file yet.
    AwaitingUpload,
    /// A file arrived and is being probed or encoded.
    Processing,
    /// Encoded in parts: plays while the rest is encoded.
    Playable,
    Ready,
    Failed,
}

impl LectureStatus {
    pub const ALL: [LectureStatus; 5] = [
        LectureStatus::AwaitingUpload,
        LectureStatus::Processing,
        LectureStatus::Playable,
        LectureStatus::Ready,
        LectureStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LectureStatus::AwaitingUpload => "awaiting_upload",
            LectureStatus::Processing => "processing",
            LectureStatus::Playable => "playable",
            LectureStatus::Ready => "ready",
            LectureStatus::Failed => "failed",
        }
    }

    /// The status a stored text names; None for a text no version wrote.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for LectureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

type Result<T> = std::result::Result<T, sqlx::Error>;

/// A complete upload: the lecture is processing from now on (probing comes next).
pub async fn start_processing<'e>(
    db: impl Executor<'e, Database = Any>,
    lecture_id: &LectureId,
) -> Result<()> {
    sqlx::query(
        "UPDATE lectures SET status = $1, progress_percent = 0, failure_reason = NULL, updated_at = $2
         WHERE id = $3",
    )
    .bind(LectureStatus::Processing.as_str())
    .bind(now_unix())
    .bind(lecture_id.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// The owner asked for a ready or failed lecture's original to be transcoded again:
/// it processes it anew (students keep playing what is ready meanwhile). Whether the
/// lecture changed; work already under way is not started twice.
pub async fn start_again<'e>(
    db: impl Executor<'e, Database = Any>,
    lecture_id: &LectureId,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE lectures SET status = $1, progress_percent = 0, failure_reason = NULL, updated_at = $2
         WHERE id = $3 AND status IN ($4, $5)",
    )
    .bind(LectureStatus::Processing.as_str())
    .bind(now_unix())
    .bind(lecture_id.as_str())
    .bind(LectureStatus::Ready.as_str())
    .bind(LectureStatus::Failed.as_str())
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// The probed file was accepted: the lecture processes this asset. Whether the lecture
/// still exists (it may be deleted while its file uploads).
pub async fn process_asset<'e>(
    db: impl Executor<'e, Database = Any>,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    media_kind: &str,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE lectures SET status = $1, progress_percent = 0, failure_reason = NULL,
                asset_id = $2, media_kind = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(LectureStatus::Processing.as_str())
    .bind(asset_id.as_str())
    .bind(media_kind)
    .bind(now_unix())
    .bind(lecture_id.as_str())
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// The uploaded file cannot be used: the lecture fails with `reason` before any asset.
pub async fn refuse_upload<'e>(
    db: impl Executor<'e, Database = Any>,
    lecture_id: &LectureId,
    reason: &str,
    diagnostics: Option<&str>,
) -> Result<()> {
    let changed = sqlx::query(
        "UPDATE lectures SET status = $1, failure_reason = $2, failure_diagnostics = $3,
                progress_percent = 0, updated_at = $4
         WHERE id = $5 AND status = $6",
    )
    .bind(LectureStatus::Failed.as_str())
    .bind(reason)
    .bind(diagnostics)
    .bind(now_unix())
    .bind(lecture_id.as_str())
    .bind(LectureStatus::Processing.as_str())
    .execute(db)
    .await?
    .rows_affected();
    if changed > 0 {
        crate::metrics::metrics().lecture_failed("upload");
    }
    Ok(())
}

/// The first parts of `asset_id` are stored: it plays while the rest is encoded.
/// Whether the lecture changed.
pub async fn mark_playable(
    db: &crate::db::Db,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    percent: u8,
    duration_secs: f64,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE lectures SET status = $1, progress_percent = $2, failure_reason = NULL,
                ready_asset_id = $3, duration_secs = $4, updated_at = $5
         WHERE id = $6 AND asset_id = $3 AND status = $7",
    )
    .bind(LectureStatus::Playable.as_str())
    .bind(i64::from(percent))
    .bind(asset_id.as_str())
    .bind(duration_secs)
    .bind(now_unix())
    .bind(lecture_id.as_str())
    .bind(LectureStatus::Processing.as_str())
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// Every output of `asset_id` is stored: it is what students play. Whether the
/// lecture changed (a failed lecture stays failed; a repeated event changes nothing).
pub async fn mark_ready(
    db: &crate::db::Db,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    duration_secs: f64,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE lectures SET status = $1, progress_percent = 100, failure_reason = NULL,
                ready_asset_id = $2, duration_secs = $3, updated_at = $4
         WHERE id = $5 AND asset_id = $2 AND status IN ($6, $7)",
    )
    .bind(LectureStatus::Ready.as_str())
    .bind(asset_id.as_str())
    .bind(duration_secs)
    .bind(now_unix())
    .bind(lecture_id.as_str())
    .bind(LectureStatus::Processing.as_str())
    .bind(LectureStatus::Playable.as_str())
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// Fails a lecture still encoding this asset, and stops offering the half-made asset
/// to students. Whether the lecture changed.
pub async fn mark_failed(
    db: &crate::db::Db,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    reason: &str,
    diagnostics: Option<&str>,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE lectures SET status = $1, failure_reason = $2, failure_diagnostics = $3,
                progress_percent = 0, updated_at = $4,
                ready_asset_id = CASE WHEN ready_asset_id = $5 THEN NULL ELSE ready_asset_id END
         WHERE id = $6 AND asset_id = $5 AND status IN ($7, $8)",
    )
    .bind(LectureStatus::Failed.as_str())
    .bind(reason)
    .bind(diagnostics)
    .bind(now_unix())
    .bind(asset_id.as_str())
    .bind(lecture_id.as_str())
    .bind(LectureStatus::Processing.as_str())
    .bind(LectureStatus::Playable.as_str())
    .execute(db)
    .await?
    .rows_affected();
    if changed > 0 {
        crate::metrics::metrics().lecture_failed("transcode");
    }
    Ok(changed > 0)
}

/// `percent` of `asset_id` is encoded; progress only goes up. Whether it changed.
pub async fn record_progress(
    db: &crate::db::Db,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    percent: u8,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE lectures SET progress_percent = $1, updated_at = $2
         WHERE id = $3 AND asset_id = $4 AND status IN ($5, $6) AND progress_percent < $1",
    )
    .bind(i64::from(percent))
    .bind(now_unix())
    .bind(lecture_id.as_str())
    .bind(asset_id.as_str())
    .bind(LectureStatus::Processing.as_str())
    .bind(LectureStatus::Playable.as_str())
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_as_written() {
        for s in LectureStatus::ALL {
            assert_eq!(LectureStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(LectureStatus::parse("uploading"), None);
    }

    fn failed(stage: &str) -> u64 {
        crate::metrics::metrics()
            .lectures_failed
            .with_label_values(&[stage])
            .get()
    }

    #[tokio::test]
    async fn a_lecture_is_counted_failed_once_when_its_row_changes() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::connect(&format!(
            "sqlite://{}",
            dir.path().join("db.sqlite").display()
        ))
        .await
        .unwrap();
        let (lecture, other, asset) = (LectureId::new(), LectureId::new(), AssetId::new());
        for sql in [
            "INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES ('u', 'u@x', 'U', 'x', 'owner', 0)",
            "INSERT INTO courses (id, owner_id, title, created_at, updated_at) VALUES ('c', 'u', 'C', 0, 0)",
        ] {
            sqlx::query(sql).execute(&db).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO lectures (id, course_id, title, position, status, asset_id, created_at, updated_at)
             VALUES ($1, 'c', 'L', 0, 'processing', $2, 0, 0), ($3, 'c', 'M', 1, 'processing', NULL, 0, 0)",
        )
        .bind(lecture.as_str())
        .bind(asset.as_str())
        .bind(other.as_str())
        .execute(&db)
        .await
        .unwrap();
        // Counters are per process: the metrics test counts an upload failure too,
        // perhaps meanwhile; no other test of this crate fails a transcode.
        let before = (failed("transcode"), failed("upload"));
        assert!(
            mark_failed(&db, &lecture, &asset, "broken", None)
                .await
                .unwrap()
        );
        assert!(
            !mark_failed(&db, &lecture, &asset, "broken", None)
                .await
                .unwrap()
        );
        refuse_upload(&db, &other, "not a video", None)
            .await
            .unwrap();
        refuse_upload(&db, &other, "not a video", None)
            .await
            .unwrap();
        assert_eq!(failed("transcode"), before.0 + 1);
        assert!((before.1 + 1..=before.1 + 2).contains(&failed("upload")));
    }
}
