//! Chapters of a lecture: titled start times set by the course's owner, as a list or
//! as a WebVTT chapters file (each cue's start and text), replaced whole. Anyone who
//! may see the lecture reads them (the `chapters` table).

use lectern_packager::captions::plain_text;
use lectern_seams::db::Db;
use lectern_seams::ids::LectureId;
use lectern_web::auth::AuthUser;
use serde::{Deserialize, Serialize};

use crate::courses::visible_lecture;
use crate::error::CatalogError;

/// Chapters one lecture may have.
pub const MAX_CHAPTERS: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Chapter {
    /// Where the chapter starts, in seconds from the lecture's start (milliseconds kept).
    #[schema(minimum = 0)]
    pub start_secs: f64,
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChapterList {
    /// In time order; an empty list removes every chapter.
    pub chapters: Vec<Chapter>,
}

/// The lecture's chapters in time order.
pub async fn list(
    db: &Db,
    user: &AuthUser,
    lecture: &LectureId,
) -> Result<Vec<Chapter>, CatalogError> {
    visible_lecture(db, user, lecture).await?;
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT start_ms, title FROM chapters WHERE lecture_id = $1 ORDER BY start_ms",
    )
    .bind(lecture)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(ms, title)| Chapter {
            start_secs: ms as f64 / 1000.0,
            title,
        })
        .collect())
}

/// Chapters from a WebVTT chapters file: each cue's start, its text as the title
/// (markup left out, lines joined).
pub fn from_webvtt(file: &[u8]) -> Result<Vec<Chapter>, CatalogError> {
    let cues = crate::captions::read_cues(file, "chapters")?;
    Ok(cues
        .into_iter()
        .map(|cue| Chapter {
            start_secs: cue.start_ms as f64 / 1000.0,
            title: plain_text(&cue.text),
        })
        .collect())
}

/// Checks chapters against themselves and the lecture's length: start times in order,
/// none twice, none past the end; titles of 1 to 200 characters.
fn check(chapters: &[Chapter], duration: Option<f64>) -> Result<Vec<(i64, String)>, CatalogError> {
    if chapters.len() > MAX_CHAPTERS {
        return Err(CatalogError::Invalid(format!(
            "at most {MAX_CHAPTERS} chapters"
        )));
    }
    let mut out: Vec<(i64, String)> = Vec::with_capacity(chapters.len());
    for (i, c) in chapters.iter().enumerate() {
        let n = i + 1;
        let title = c.title.trim();
        if title.is_empty() || c.title.chars().count() > 200 || title.chars().any(char::is_control)
        {
            return Err(CatalogError::Invalid(format!(
                "chapter {n}: a title is 1 to 200 characters, without control characters"
            )));
        }
        if !c.start_secs.is_finite() || c.start_secs < 0.0 {
            return Err(CatalogError::Invalid(format!(
                "chapter {n}: start_secs must be a time from 0"
            )));
        }
        if let Some(d) = duration.filter(|d| c.start_secs >= *d) {
            return Err(CatalogError::Invalid(format!(
                "chapter {n} starts at {} s, after the lecture ends ({d:.1} s)",
                c.start_secs
            )));
        }
        let ms = (c.start_secs * 1000.0).round() as i64;
        if out.last().is_some_and(|(prev, _)| ms <= *prev) {
            return Err(CatalogError::Invalid(format!(
                "chapter {n} does not start after chapter {}: list chapters in time order",
                n - 1
            )));
        }
        out.push((ms, title.to_string()));
    }
    Ok(out)
}

/// Replaces the lecture's chapters.
pub async fn put(
    db: &Db,
    user: &AuthUser,
    lecture_id: &LectureId,
    chapters: Vec<Chapter>,
) -> Result<Vec<Chapter>, CatalogError> {
    let (lecture, course) = visible_lecture(db, user, lecture_id).await?;
    if !course.editable_by(user) {
        return Err(CatalogError::Forbidden(
            "only the course's owner may set its chapters".into(),
        ));
    }
    let rows = check(&chapters, lecture.duration_secs)?;
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM chapters WHERE lecture_id = $1")
        .bind(lecture_id)
        .execute(&mut *tx)
        .await?;
    for (ms, title) in &rows {
        sqlx::query("INSERT INTO chapters (lecture_id, start_ms, title) VALUES ($1, $2, $3)")
            .bind(lecture_id)
            .bind(ms)
            .bind(title)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    list(db, user, lecture_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chapter(start_secs: f64, title: &str) -> Chapter {
        Chapter {
            start_secs,
            title: title.into(),
        }
    }

    #[test]
    fn chapters_are_checked_in_order_and_within_the_lecture() {
        let ok = check(
            &[chapter(0.0, " Intro "), chapter(61.5, "Fourier")],
            Some(120.0),
        )
        .unwrap();
        assert_eq!(ok, vec![(0, "Intro".into()), (61_500, "Fourier".into())]);
        let err = |list: &[Chapter]| match check(list, Some(120.0)) {
            Err(CatalogError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            err(&[chapter(10.0, "b"), chapter(5.0, "a")])
                .contains("chapter 2 does not start after chapter 1")
        );
        assert!(err(&[chapter(10.0, "a"), chapter(10.0, "b")]).contains("time order"));
        assert!(err(&[chapter(130.0, "late")]).contains("after the lecture ends"));
        assert!(err(&[chapter(-1.0, "early")]).contains("from 0"));
        assert!(err(&[chapter(f64::NAN, "nan")]).contains("from 0"));
        assert!(err(&[chapter(1.0, "  ")]).contains("1 to 200"));
        assert!(check(&[], None).unwrap().is_empty());
    }

    #[test]
    fn a_webvtt_chapters_file_gives_starts_and_titles() {
        let file = b"WEBVTT\n\n1\n00:00.000 --> 01:00.000\n<b>Intro</b>\n\n2\n01:00.000 --> 02:00.000\nSeries &amp; sums\n";
        assert_eq!(
            from_webvtt(file).unwrap(),
            vec![chapter(0.0, "Intro"), chapter(60.0, "Series & sums")]
        );
        assert!(matches!(
            from_webvtt(b"WEBVTT\n\nnope\n"),
            Err(CatalogError::Invalid(_))
        ));
    }
}
