//! Captions of a lecture: one file per language, uploaded as WebVTT or SRT by the
//! course's owner, checked and kept as normalised WebVTT (the `captions` table), one of
//! them the default; served under the playback token as an HLS subtitle group, so they
//! join a lecture that is already ready without encoding anything again.

use lectern_packager::captions::{self as vtt, Cue, SubtitleTrack};
use lectern_seams::db::Db;
use lectern_seams::ids::{AssetId, LectureId};
use lectern_seams::now_unix;
use lectern_web::auth::AuthUser;
use serde::{Deserialize, Serialize};

use crate::courses::visible_lecture;
use crate::error::CatalogError;

/// The largest caption file accepted (a two-hour lecture's captions are ~200 KB).
pub const MAX_CAPTION_BYTES: usize = 2 * 1024 * 1024;

/// A BCP 47 language tag, as captions are listed by (`en`, `pt-BR`, `zh-Hant`), in its
/// canonical case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "pt-BR")]
pub struct CaptionLanguage(String);

impl CaptionLanguage {
    /// The tag `text` spells: a 2-3 letter language, then optional script (4 letters),
    /// region (2 letters or 3 digits) and variants (5-8 letters or digits, or 4 from a
    /// digit).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('-');
        let lang = parts.next()?;
        if !(2..=3).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let mut out = lang.to_ascii_lowercase();
        for (i, part) in parts.enumerate() {
            let alpha = part.bytes().all(|b| b.is_ascii_alphabetic());
            let piece = match part.len() {
                4 if i == 0 && alpha => {
                    let (first, rest) = part.split_at(1);
                    first.to_ascii_uppercase() + &rest.to_ascii_lowercase()
                }
                2 if alpha => part.to_ascii_uppercase(),
                3 if part.bytes().all(|b| b.is_ascii_digit()) => part.to_string(),
                // Variants: 5-8 letters or digits, or 4 starting with a digit (1996).
                4..=8
                    if part.bytes().all(|b| b.is_ascii_alphanumeric())
                        && (part.len() > 4 || part.as_bytes()[0].is_ascii_digit()) =>
                {
                    part.to_ascii_lowercase()
                }
                _ => return None,
            };
            out = format!("{out}-{piece}");
        }
        (out.len() <= 35).then_some(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One language of a lecture's captions.
#[derive(Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct CaptionTrack {
    #[schema(value_type = String, example = "en")]
    pub language: String,
    /// What the player's captions menu shows.
    pub label: String,
    /// The language players offer first.
    #[sqlx(rename = "is_default", try_from = "i64")]
    #[schema(value_type = bool)]
    pub default: Flag,
    pub cue_count: i64,
    pub updated_at: i64,
}

/// A 0/1 column read as a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Flag(pub bool);

impl From<i64> for Flag {
    fn from(v: i64) -> Self {
        Flag(v != 0)
    }
}

/// How a file is stored: its label and whether it becomes the default.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaptionOptions {
    /// What the captions menu shows; default: the language tag.
    pub label: Option<String>,
    /// Make this language the default (the first file of a lecture always is).
    pub default: Option<bool>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct CaptionPatch {
    #[schema(min_length = 1, max_length = 60)]
    pub label: Option<String>,
    /// true makes this language the default.
    pub default: Option<bool>,
}

const COLUMNS: &str = "language, label, is_default, cue_count, updated_at";

fn check_label(label: &str) -> Result<String, CatalogError> {
    let l = label.trim();
    if l.is_empty() || label.chars().count() > 60 || l.chars().any(char::is_control) {
        return Err(CatalogError::Invalid(
            "a caption label is 1 to 60 characters, without control characters".into(),
        ));
    }
    Ok(l.to_string())
}

fn language(text: &str) -> Result<CaptionLanguage, CatalogError> {
    CaptionLanguage::parse(text).ok_or_else(|| {
        CatalogError::Invalid(format!(
            "{text:?} is not a language tag such as en, de or pt-BR"
        ))
    })
}

/// The lecture's captions, for anyone who may see the lecture.
pub async fn list(
    db: &Db,
    user: &AuthUser,
    lecture: &LectureId,
) -> Result<Vec<CaptionTrack>, CatalogError> {
    visible_lecture(db, user, lecture).await?;
    tracks_of(db, lecture).await
}

async fn tracks_of(db: &Db, lecture: &LectureId) -> Result<Vec<CaptionTrack>, CatalogError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM captions WHERE lecture_id = $1 ORDER BY is_default DESC, language"
    )))
    .bind(lecture)
    .fetch_all(db)
    .await?)
}

async fn editable(db: &Db, user: &AuthUser, lecture: &LectureId) -> Result<(), CatalogError> {
    let (_, course) = visible_lecture(db, user, lecture).await?;
    if !course.editable_by(user) {
        return Err(CatalogError::Forbidden(
            "only the course's owner may change its captions".into(),
        ));
    }
    Ok(())
}

/// Stores (or replaces) one language's captions from a WebVTT or SRT file. Whether it
/// was new.
pub async fn put(
    db: &Db,
    user: &AuthUser,
    lecture: &LectureId,
    language_tag: &str,
    options: CaptionOptions,
    file: &[u8],
) -> Result<(CaptionTrack, bool), CatalogError> {
    editable(db, user, lecture).await?;
    let language = language(language_tag)?;
    let label = check_label(options.label.as_deref().unwrap_or(language.as_str()))?;
    let cues = read_file(file)?;
    let webvtt = vtt::to_webvtt(&cues);
    let now = now_unix();
    let mut tx = db.begin().await?;
    let replaced = sqlx::query(
        "UPDATE captions SET label = $1, cue_count = $2, webvtt = $3, updated_at = $4
         WHERE lecture_id = $5 AND language = $6",
    )
    .bind(&label)
    .bind(cues.len() as i64)
    .bind(&webvtt)
    .bind(now)
    .bind(lecture)
    .bind(language.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if replaced == 0 {
        sqlx::query(
            "INSERT INTO captions (lecture_id, language, label, is_default, cue_count, webvtt, created_at, updated_at)
             VALUES ($1, $2, $3, 0, $4, $5, $6, $6)",
        )
        .bind(lecture)
        .bind(language.as_str())
        .bind(&label)
        .bind(cues.len() as i64)
        .bind(&webvtt)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    set_default(
        &mut tx,
        lecture,
        options.default.unwrap_or(false).then_some(&language),
    )
    .await?;
    index_transcript(&mut tx, lecture, &language, &cues).await?;
    tx.commit().await?;
    Ok((one(db, lecture, &language).await?, replaced == 0))
}

/// Cue rows inserted per statement when a transcript is indexed.
const INDEX_BATCH: usize = 200;

/// Puts one language's cues in the search index (`transcript_cues`) in place of the
/// ones there, as plain text with their start times.
async fn index_transcript(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    lecture: &LectureId,
    language: &CaptionLanguage,
    cues: &[Cue],
) -> Result<(), CatalogError> {
    sqlx::query("DELETE FROM transcript_cues WHERE lecture_id = $1 AND language = $2")
        .bind(lecture)
        .bind(language.as_str())
        .execute(&mut **tx)
        .await?;
    for batch in cues.chunks(INDEX_BATCH) {
        let rows: Vec<String> = (0..batch.len())
            .map(|i| format!("($1, $2, ${}, ${})", 3 + 2 * i, 4 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO transcript_cues (lecture_id, language, start_ms, text) VALUES {}",
            rows.join(", ")
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lecture)
            .bind(language.as_str());
        for cue in batch {
            insert = insert
                .bind(cue.start_ms as i64)
                .bind(vtt::plain_text(&cue.text));
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The cues of an uploaded file, or what is wrong with it and where.
fn read_file(file: &[u8]) -> Result<Vec<Cue>, CatalogError> {
    read_cues(file, "captions")
}

/// The cues of an uploaded WebVTT (or SRT) file of `what` (captions, chapters), or
/// what is wrong with it and where.
pub(crate) fn read_cues(file: &[u8], what: &str) -> Result<Vec<Cue>, CatalogError> {
    let text = std::str::from_utf8(file).map_err(|e| {
        CatalogError::Invalid(format!(
            "{what} must be UTF-8 text; byte {} is not (save the file as UTF-8)",
            e.valid_up_to()
        ))
    })?;
    vtt::parse_captions(text)
        .map(|(_, cues)| cues)
        .map_err(|e| CatalogError::Invalid(format!("{what}: {e}")))
}

/// Makes `language` the default, or, with None, keeps one default if any track is left.
async fn set_default(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    lecture: &LectureId,
    language: Option<&CaptionLanguage>,
) -> Result<(), CatalogError> {
    if let Some(language) = language {
        sqlx::query("UPDATE captions SET is_default = CASE WHEN language = $1 THEN 1 ELSE 0 END WHERE lecture_id = $2")
            .bind(language.as_str())
            .bind(lecture)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "UPDATE captions SET is_default = 1 WHERE lecture_id = $1
           AND NOT EXISTS (SELECT 1 FROM captions WHERE lecture_id = $1 AND is_default = 1)
           AND language = (SELECT MIN(language) FROM captions WHERE lecture_id = $1)",
    )
    .bind(lecture)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn one(
    db: &Db,
    lecture: &LectureId,
    language: &CaptionLanguage,
) -> Result<CaptionTrack, CatalogError> {
    let row: Option<CaptionTrack> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM captions WHERE lecture_id = $1 AND language = $2"
    )))
    .bind(lecture)
    .bind(language.as_str())
    .fetch_optional(db)
    .await?;
    row.ok_or(CatalogError::NotFound("captions"))
}

/// Renames a language's captions or makes it the default.
pub async fn patch(
    db: &Db,
    user: &AuthUser,
    lecture: &LectureId,
    language_tag: &str,
    patch: CaptionPatch,
) -> Result<CaptionTrack, CatalogError> {
    editable(db, user, lecture).await?;
    let language = language(language_tag)?;
    let current = one(db, lecture, &language).await?;
    let label = match patch.label {
        Some(l) => check_label(&l)?,
        None => current.label,
    };
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE captions SET label = $1, updated_at = $2 WHERE lecture_id = $3 AND language = $4",
    )
    .bind(&label)
    .bind(now_unix())
    .bind(lecture)
    .bind(language.as_str())
    .execute(&mut *tx)
    .await?;
    if patch.default == Some(true) {
        set_default(&mut tx, lecture, Some(&language)).await?;
    }
    tx.commit().await?;
    one(db, lecture, &language).await
}

/// Removes a language's captions; another becomes the default if it was.
pub async fn delete(
    db: &Db,
    user: &AuthUser,
    lecture: &LectureId,
    language_tag: &str,
) -> Result<(), CatalogError> {
    editable(db, user, lecture).await?;
    let language = language(language_tag)?;
    let mut tx = db.begin().await?;
    let gone = sqlx::query("DELETE FROM captions WHERE lecture_id = $1 AND language = $2")
        .bind(lecture)
        .bind(language.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(CatalogError::NotFound("captions"));
    }
    index_transcript(&mut tx, lecture, &language, &[]).await?;
    set_default(&mut tx, lecture, None).await?;
    tx.commit().await?;
    Ok(())
}

/// Where an asset's subtitle renditions are, relative to its master playlist.
pub fn rendition_uri(language: &str) -> String {
    format!("subs/{language}/{}", lectern_packager::MEDIA_PLAYLIST)
}

/// The captions of the lecture an asset belongs to, as its master playlist lists them.
pub async fn subtitle_tracks(db: &Db, asset: &AssetId) -> Result<Vec<SubtitleTrack>, CatalogError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT c.language, c.label, c.is_default FROM captions c
         JOIN assets a ON a.lecture_id = c.lecture_id WHERE a.id = $1
         ORDER BY c.is_default DESC, c.language",
    )
    .bind(asset)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(language, label, default)| SubtitleTrack {
            uri: rendition_uri(&language),
            language,
            label,
            default: default != 0,
        })
        .collect())
}

/// One language's cues for an asset's lecture, and the lecture's length.
pub async fn subtitle_source(
    db: &Db,
    asset: &AssetId,
    language_tag: &str,
) -> Result<(Vec<Cue>, f64), CatalogError> {
    let language = CaptionLanguage::parse(language_tag).ok_or(CatalogError::NotFound("file"))?;
    let row: Option<(String, Option<f64>)> = sqlx::query_as(
        "SELECT c.webvtt, l.duration_secs FROM captions c
         JOIN assets a ON a.lecture_id = c.lecture_id JOIN lectures l ON l.id = a.lecture_id
         WHERE a.id = $1 AND c.language = $2",
    )
    .bind(asset)
    .bind(language.as_str())
    .fetch_optional(db)
    .await?;
    let (webvtt, duration) = row.ok_or(CatalogError::NotFound("file"))?;
    let (_, cues) = vtt::parse_captions(&webvtt)
        .map_err(|e| CatalogError::Internal(format!("stored captions do not read back: {e}")))?;
    Ok((cues, duration.unwrap_or(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_read_in_their_canonical_case() {
        for (text, tag) in [
            ("en", "en"),
            ("PT-br", "pt-BR"),
            ("zh-hant-TW", "zh-Hant-TW"),
            ("es-419", "es-419"),
            ("de-CH-1996", "de-CH-1996"),
        ] {
            assert_eq!(CaptionLanguage::parse(text).unwrap().as_str(), tag);
        }
        for bad in [
            "",
            "e",
            "english",
            "en_US",
            "en-",
            "../en",
            "en-U",
            "en-Latn-Latn",
            "1e",
        ] {
            assert_eq!(CaptionLanguage::parse(bad), None, "{bad}");
        }
    }
}
