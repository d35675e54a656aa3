//! Originals in the cold tier. An original is read by its transcode only: once no
//! transcode has read it for `cold_after`, and its lecture has no work under way, it
//! moves to the store's cold tier. Transcoding a lecture again brings it back first.

use lectern_seams::ids::LectureId;
use lectern_seams::lecture::{self, LectureStatus};
use lectern_seams::now_unix;
use lectern_seams::originals::OriginalTier;
use lectern_seams::storage::{StorageError, Tier};
use lectern_web::auth::{AuthUser, Role};

use crate::IngestState;
use crate::error::IngestError;
use crate::uploads::Upload;

/// Originals moved per sweep; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 100;

/// Moves originals nobody read for `cold_after` to the cold tier. How many moved.
pub async fn cool_idle(state: &IngestState) -> Result<usize, IngestError> {
    let Some(after) = state.config.cold_after else {
        return Ok(0);
    };
    if !state.store.has_cold_tier() {
        return Ok(0);
    }
    let idle = idle_originals(state, now_unix() - after.as_secs() as i64).await?;
    let mut moved = 0;
    for (id, key) in idle {
        if cool(state, &id, &key).await? {
            moved += 1;
        }
    }
    Ok(moved)
}

/// Accepted originals of existing lectures, hot and unread since `cutoff` (or left
/// cooling by a crash), that no transcode under way reads.
async fn idle_originals(
    state: &IngestState,
    cutoff: i64,
) -> Result<Vec<(String, String)>, IngestError> {
    Ok(sqlx::query_as(
        "SELECT u.id, u.storage_key FROM uploads u
         WHERE u.state = 'processed'
           AND (u.tier = $1 OR (u.tier = $2 AND u.last_used_at <= $3))
           AND EXISTS (SELECT 1 FROM assets a WHERE a.upload_id = u.id)
           AND EXISTS (SELECT 1 FROM lectures l WHERE l.id = u.lecture_id)
           AND NOT EXISTS (SELECT 1 FROM lectures l JOIN assets a ON a.id = l.asset_id
                           WHERE a.upload_id = u.id AND l.status IN ($4, $5))
         ORDER BY u.last_used_at LIMIT $6",
    )
    .bind(OriginalTier::Cooling.as_str())
    .bind(OriginalTier::Hot.as_str())
    .bind(cutoff)
    .bind(LectureStatus::Processing.as_str())
    .bind(LectureStatus::Playable.as_str())
    .bind(SWEEP_BATCH)
    .fetch_all(&state.db)
    .await?)
}

/// Claims one original (a transcode starting meanwhile wins), moves it, records it.
async fn cool(state: &IngestState, id: &str, key: &str) -> Result<bool, IngestError> {
    let claimed = sqlx::query(
        "UPDATE uploads SET tier = $1 WHERE id = $2 AND state = 'processed' AND tier IN ($3, $1)",
    )
    .bind(OriginalTier::Cooling.as_str())
    .bind(id)
    .bind(OriginalTier::Hot.as_str())
    .execute(&state.db)
    .await?
    .rows_affected();
    if claimed != 1 {
        return Ok(false);
    }
    let cooling = [OriginalTier::Cooling; 2];
    match state.store.move_to(key, Tier::Cold).await {
        Ok(()) => set_tier(state, id, cooling, OriginalTier::Cold).await,
        Err(StorageError::NotFound(_)) => {
            // Gone from both tiers (its lecture deleted meanwhile): nothing to move.
            tracing::warn!(upload = %id, "an original to cool was not found; left hot");
            set_tier(state, id, cooling, OriginalTier::Hot).await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Records an original's new tier if it is still in one of `from`.
async fn set_tier(
    state: &IngestState,
    id: &str,
    from: [OriginalTier; 2],
    to: OriginalTier,
) -> Result<bool, IngestError> {
    let changed = sqlx::query("UPDATE uploads SET tier = $1 WHERE id = $2 AND tier IN ($3, $4)")
        .bind(to.as_str())
        .bind(id)
        .bind(from[0].as_str())
        .bind(from[1].as_str())
        .execute(&state.db)
        .await?
        .rows_affected();
    Ok(changed == 1)
}

/// Brings a cold original back before its transcode reads it. Asked of every original
/// when the store has a cold tier: a restored backup's database may place one wrong.
pub async fn bring_back(state: &IngestState, upload: &Upload) -> Result<(), IngestError> {
    if !state.store.has_cold_tier() {
        return Ok(());
    }
    state.store.move_to(&upload.storage_key, Tier::Hot).await?;
    if upload.tier != OriginalTier::Hot {
        let away = [OriginalTier::Cooling, OriginalTier::Cold];
        set_tier(state, &upload.id, away, OriginalTier::Hot).await?;
        tracing::info!(upload = %upload.id, "original brought back from the cold tier");
    }
    Ok(())
}

/// Transcodes a ready or failed lecture's last accepted file again (after a change of
/// ladder, or a failure that was not the file's fault). Its original comes back from
/// the cold tier first; students play what is ready until the new asset is.
pub async fn transcode_again(
    state: &IngestState,
    user: &AuthUser,
    lecture_id: &LectureId,
) -> Result<(), IngestError> {
    let upload_id = original_of(state, user, lecture_id).await?;
    let mut tx = state.db.begin().await?;
    let reopened = sqlx::query(
        "UPDATE uploads SET state = 'complete', last_used_at = $1
         WHERE id = $2 AND state = 'processed' AND tier IN ($3, $4)",
    )
    .bind(now_unix())
    .bind(&upload_id)
    .bind(OriginalTier::Hot.as_str())
    .bind(OriginalTier::Cold.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if reopened != 1 {
        return Err(IngestError::Conflict(
            "the lecture's original is being moved to cold storage; try again in a minute".into(),
        ));
    }
    if !lecture::start_again(&mut *tx, lecture_id).await? {
        return Err(IngestError::Conflict(
            "the lecture is already being processed".into(),
        ));
    }
    tx.commit().await?;
    crate::uploads::finish_in_background(state, upload_id);
    Ok(())
}

/// The upload whose original the lecture's current asset was made from, if `user`
/// may transcode it again.
async fn original_of(
    state: &IngestState,
    user: &AuthUser,
    lecture_id: &LectureId,
) -> Result<String, IngestError> {
    if user.role == Role::Student {
        return Err(IngestError::Forbidden(
            "students cannot transcode lectures".into(),
        ));
    }
    let row: Option<(String, lectern_seams::ids::UserId, Option<String>)> = sqlx::query_as(
        "SELECT l.status, c.owner_id, a.upload_id FROM lectures l
         JOIN courses c ON c.id = l.course_id LEFT JOIN assets a ON a.id = l.asset_id
         WHERE l.id = $1",
    )
    .bind(lecture_id.as_str())
    .fetch_optional(&state.db)
    .await?;
    let (status, owner, upload) =
        row.ok_or_else(|| IngestError::NotFound("no such lecture".into()))?;
    if owner != user.id && !user.is_admin() {
        return Err(IngestError::Forbidden(
            "only the lecture's owner may transcode it".into(),
        ));
    }
    match LectureStatus::parse(&status) {
        Some(LectureStatus::Ready | LectureStatus::Failed) => {}
        _ => {
            return Err(IngestError::Conflict(format!(
                "a lecture that is {status} cannot be transcoded again; wait until it is ready or failed"
            )));
        }
    }
    upload.ok_or_else(|| {
        IngestError::Conflict(
            "the lecture has no accepted file to transcode again; upload one".into(),
        )
    })
}
