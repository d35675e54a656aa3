//! The parts of a chunked asset (`asset_parts`): ingest plans them when it queues the
//! chunk jobs, the catalog records each part's report as workers store it. This module
//! is the table's only writer.

use sqlx::{Any, Executor};

use crate::ids::AssetId;
use crate::messages::PartReport;

type Result<T> = std::result::Result<T, sqlx::Error>;

/// A part of `asset_id`, at `position` in the lecture's order, with no report yet.
pub async fn plan<'e>(
    db: impl Executor<'e, Database = Any>,
    asset_id: &AssetId,
    part_key: &str,
    position: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO asset_parts (asset_id, part_key, position, report) VALUES ($1, $2, $3, NULL)",
    )
    .bind(asset_id.as_str())
    .bind(part_key)
    .bind(position)
    .execute(db)
    .await?;
    Ok(())
}

/// Stores a part's report (or, for a partial one, what is stored of it so far).
/// Whether it was taken: a partial report never replaces a final one, nor a partial
/// one that lists as many segments, however late it arrives.
pub async fn record_report<'e>(
    db: impl Executor<'e, Database = Any>,
    asset_id: &AssetId,
    report: &PartReport,
) -> Result<bool> {
    let json = serde_json::to_string(report).expect("a report serialises");
    let updated = sqlx::query(
        "UPDATE asset_parts SET report = $1, partial = $4, segment_count = $5
         WHERE asset_id = $2 AND part_key = $3
           AND (report IS NULL OR (partial = 1 AND ($4 = 0 OR segment_count < $5)))",
    )
    .bind(&json)
    .bind(asset_id.as_str())
    .bind(&report.key)
    .bind(i64::from(report.partial))
    .bind(report.segment_count() as i64)
    .execute(db)
    .await?
    .rows_affected();
    Ok(updated > 0)
}
