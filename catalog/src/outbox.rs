//! The claim both of the catalog's outboxes (webhook deliveries, mail) use: a row of
//! `table` with `id`, `state` and `next_attempt_at`, due and pending, is taken by moving
//! its next attempt past the time an attempt may take, with a guarded update, so no
//! other process takes it meanwhile.

use lectern_seams::db::Db;
use lectern_seams::now_unix;

/// The ids of up to `batch` due pending rows of `table` this process now holds for
/// `lease_secs`.
pub(crate) async fn claim_due(
    db: &Db,
    table: &'static str,
    lease_secs: i64,
    batch: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let now = now_unix();
    let candidates: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, next_attempt_at FROM {table} WHERE state = 'pending' AND next_attempt_at <= $1
         ORDER BY next_attempt_at LIMIT $2"
    )))
    .bind(now)
    .bind(batch)
    .fetch_all(db)
    .await?;
    let mut claimed = Vec::new();
    for (id, was) in candidates {
        let won = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET next_attempt_at = $1 WHERE id = $2 AND state = 'pending' AND next_attempt_at = $3"
        )))
        .bind(now + lease_secs)
        .bind(&id)
        .bind(was)
        .execute(db)
        .await?
        .rows_affected();
        if won == 1 {
            claimed.push(id);
        }
    }
    Ok(claimed)
}
