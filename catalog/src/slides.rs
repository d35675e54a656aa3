//! Slides a lecture shows (the `lecture_slides` table): found by the worker's slides
//! job, recorded here for the lecture's current asset, shown to the course's owner as
//! proposed chapters with thumbnails, and searched with the rest of the course. Nothing
//! here reaches students but the words in search: chapters are published by the owner
//! through `chapters`.

use lectern_seams::db::Db;
use lectern_seams::ids::{AssetId, LectureId};
use lectern_seams::messages::FoundSlide;
use lectern_seams::storage::SharedStore;
use lectern_web::auth::AuthUser;
use serde::Serialize;

use crate::courses::visible_lecture;
use crate::error::CatalogError;

/// A slide as its owner reviews it: a proposed chapter.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Slide {
    /// 0 for the first slide.
    pub position: i64,
    /// When the change to it begins, s from the lecture's start.
    pub start_secs: f64,
    /// The title read from it (the largest text near the top), when one stands out.
    pub title: Option<String>,
    /// Every line read on it.
    pub text: String,
    /// Its thumbnail (JPEG), for the owner.
    pub thumbnail_url: String,
}

/// Records the slides an asset's job found, replacing the lecture's earlier ones;
/// whether they were taken (not when the lecture has moved on to another asset).
pub async fn record(
    db: &Db,
    lecture_id: &LectureId,
    asset_id: &AssetId,
    slides: &[FoundSlide],
) -> Result<bool, CatalogError> {
    let mut tx = db.begin().await?;
    let current: Option<(String,)> =
        sqlx::query_as("SELECT id FROM lectures WHERE id = $1 AND asset_id = $2")
            .bind(lecture_id)
            .bind(asset_id)
            .fetch_optional(&mut *tx)
            .await?;
    if current.is_none() {
        return Ok(false);
    }
    sqlx::query("DELETE FROM lecture_slides WHERE lecture_id = $1")
        .bind(lecture_id)
        .execute(&mut *tx)
        .await?;
    for (position, slide) in slides.iter().enumerate() {
        let title = slide
            .title
            .as_deref()
            .map(|t| t.chars().take(200).collect::<String>())
            .filter(|t| !t.trim().is_empty());
        sqlx::query(
            "INSERT INTO lecture_slides (lecture_id, asset_id, position, start_ms, title, text, thumbnail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(lecture_id)
        .bind(asset_id)
        .bind(position as i64)
        .bind((slide.start_secs.max(0.0) * 1000.0).round() as i64)
        .bind(title)
        .bind(slide.text.chars().take(20_000).collect::<String>())
        .bind(&slide.thumbnail)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

#[derive(sqlx::FromRow)]
struct SlideRow {
    position: i64,
    start_ms: i64,
    title: Option<String>,
    text: String,
}

/// The lecture's slides, for its course's owner.
pub async fn list(
    db: &Db,
    user: &AuthUser,
    lecture_id: &LectureId,
) -> Result<Vec<Slide>, CatalogError> {
    owned(db, user, lecture_id).await?;
    let rows: Vec<SlideRow> = sqlx::query_as(
        "SELECT position, start_ms, title, text FROM lecture_slides WHERE lecture_id = $1 ORDER BY position",
    )
    .bind(lecture_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Slide {
            position: r.position,
            start_secs: r.start_ms as f64 / 1000.0,
            title: r.title,
            text: r.text,
            thumbnail_url: format!("/api/lectures/{lecture_id}/slides/{}/thumbnail", r.position),
        })
        .collect())
}

/// One slide's thumbnail (JPEG bytes), for its course's owner.
pub async fn thumbnail(
    db: &Db,
    store: &SharedStore,
    user: &AuthUser,
    lecture_id: &LectureId,
    position: i64,
) -> Result<Vec<u8>, CatalogError> {
    owned(db, user, lecture_id).await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT asset_id, thumbnail FROM lecture_slides WHERE lecture_id = $1 AND position = $2",
    )
    .bind(lecture_id)
    .bind(position)
    .fetch_optional(db)
    .await?;
    let (asset, name) = row.ok_or(CatalogError::NotFound("slide"))?;
    let key = format!("assets/{asset}/slides/{name}");
    Ok(lectern_seams::storage::read_to_vec(store.as_ref(), &key).await?)
}

async fn owned(db: &Db, user: &AuthUser, lecture_id: &LectureId) -> Result<(), CatalogError> {
    let (_, course) = visible_lecture(db, user, lecture_id).await?;
    if !course.editable_by(user) {
        return Err(CatalogError::Forbidden(
            "only the course's owner sees proposed chapters".into(),
        ));
    }
    Ok(())
}
