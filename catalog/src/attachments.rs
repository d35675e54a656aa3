//! Attachments: slides, PDFs and code a course's owner hands out with the course or one
//! of its lectures. The owner announces one (name, size), sends its bytes by tus to
//! ingest, which reads their kind; students enrolled in the course list the ready ones
//! and download each through a short-lived signed link that always answers with
//! `Content-Disposition: attachment`, so nothing uploaded is ever shown as a page of
//! Lectern's origin. The catalog creates and deletes the rows (`attachments`).

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use lectern_seams::attachments::{AttachmentState, FileKind};
use lectern_seams::db::Db;
use lectern_seams::ids::{AttachmentId, CourseId, LectureId};
use lectern_seams::now_unix;
use lectern_web::auth::AuthUser;
use serde::{Deserialize, Serialize};

use crate::CatalogState;
use crate::courses::{editable_course, may_play, visible_course};
use crate::delivery::{self, Delivery, PlayFile};
use crate::error::CatalogError;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attachment {
    pub id: AttachmentId,
    pub course_id: CourseId,
    /// The lecture it belongs to; null for the whole course.
    pub lecture_id: Option<LectureId>,
    pub title: String,
    /// The name it is saved under: the uploader's, with an extension that fits its kind.
    pub filename: String,
    /// Bytes.
    pub size: i64,
    pub state: AttachmentState,
    /// Its media type, read from its bytes; null until they are in.
    pub content_type: Option<String>,
    /// Why it was refused.
    pub reason: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewAttachment {
    /// Shown to students; the file's name when left out.
    #[schema(max_length = 200)]
    pub title: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    pub filename: String,
    /// Bytes the upload will carry (its tus Upload-Length).
    #[schema(minimum = 1)]
    pub size: i64,
    /// A lecture of the course; the whole course when left out.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub lecture_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttachmentList {
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DownloadLink {
    /// Where the file downloads from until `expires_at`: this server, or the object
    /// store itself (presigned) when playback is delivered directly from S3.
    pub url: String,
    pub expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: AttachmentId,
    course_id: CourseId,
    lecture_id: Option<LectureId>,
    title: String,
    filename: String,
    size: i64,
    state: String,
    content_type: Option<String>,
    reason: Option<String>,
    created_at: i64,
    storage_key: Option<String>,
}

const COLUMNS: &str = "id, course_id, lecture_id, title, filename, size, state, content_type, reason, created_at, storage_key";

impl Row {
    fn into_attachment(self) -> Result<(Attachment, Option<String>), CatalogError> {
        let state = AttachmentState::parse(&self.state).ok_or_else(|| {
            CatalogError::Internal(format!(
                "attachment {} has an unknown state {:?}",
                self.id, self.state
            ))
        })?;
        let attachment = Attachment {
            id: self.id,
            course_id: self.course_id,
            lecture_id: self.lecture_id,
            title: self.title,
            filename: self.filename,
            size: self.size,
            state,
            content_type: self.content_type,
            reason: self.reason,
            created_at: self.created_at,
        };
        Ok((attachment, self.storage_key))
    }
}

async fn load(db: &Db, id: &AttachmentId) -> Result<(Attachment, Option<String>), CatalogError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM attachments WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.ok_or(CatalogError::NotFound("attachment"))?
        .into_attachment()
}

/// A file name as it may be saved: no folders, no control characters, 1 to 255
/// characters.
fn check_filename(name: &str) -> Result<String, CatalogError> {
    let name = name.trim();
    let bad = name.is_empty()
        || name.chars().count() > 255
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == "..";
    if bad {
        return Err(CatalogError::Invalid(
            "filename must be 1 to 255 characters, without folders or control characters".into(),
        ));
    }
    Ok(name.to_string())
}

fn check_title(title: &str) -> Result<String, CatalogError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(CatalogError::Invalid(
            "title must be 1 to 200 characters without control characters".into(),
        ));
    }
    Ok(title.to_string())
}

/// Announces an attachment of the course (or one of its lectures), waiting for its
/// bytes. Its size is checked here, its kind once the bytes are in.
pub async fn create(
    s: &CatalogState,
    user: &AuthUser,
    course_id: &CourseId,
    new: NewAttachment,
) -> Result<Attachment, CatalogError> {
    editable_course(&s.db, user, course_id).await?;
    let max = s.config.attachment_max_bytes;
    if new.size < 1 {
        return Err(CatalogError::Invalid("size must be at least 1 byte".into()));
    }
    if new.size as u64 > max {
        return Err(CatalogError::TooLargeFile(format!(
            "the attachment is {} bytes; attachments may be at most {max} bytes",
            new.size
        )));
    }
    let filename = check_filename(&new.filename)?;
    let title = check_title(new.title.as_deref().unwrap_or(&filename))?;
    let lecture_id = match new.lecture_id.as_deref() {
        None | Some("") => None,
        Some(text) => Some(lecture_of_course(&s.db, course_id, text).await?),
    };
    let attachment = Attachment {
        id: AttachmentId::new(),
        course_id: course_id.clone(),
        lecture_id,
        title,
        filename,
        size: new.size,
        state: AttachmentState::Uploading,
        content_type: None,
        reason: None,
        created_at: now_unix(),
    };
    sqlx::query(
        "INSERT INTO attachments (id, course_id, lecture_id, title, filename, size, state, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&attachment.id)
    .bind(&attachment.course_id)
    .bind(&attachment.lecture_id)
    .bind(&attachment.title)
    .bind(&attachment.filename)
    .bind(attachment.size)
    .bind(attachment.state.as_str())
    .bind(attachment.created_at)
    .execute(&s.db)
    .await?;
    Ok(attachment)
}

async fn lecture_of_course(
    db: &Db,
    course_id: &CourseId,
    text: &str,
) -> Result<LectureId, CatalogError> {
    let id = LectureId::parse(text).ok_or(CatalogError::NotFound("lecture"))?;
    let found: Option<(String,)> =
        sqlx::query_as("SELECT id FROM lectures WHERE id = $1 AND course_id = $2")
            .bind(&id)
            .bind(course_id)
            .fetch_optional(db)
            .await?;
    found.map(|_| id).ok_or(CatalogError::NotFound("lecture"))
}

/// The course's attachments, oldest first: every one for its owner, the ready ones for
/// enrolled students; refused to anyone else who may see the course.
pub async fn list(
    db: &Db,
    user: &AuthUser,
    course_id: &CourseId,
) -> Result<Vec<Attachment>, CatalogError> {
    let course = visible_course(db, user, course_id).await?;
    if !may_play(db, user, &course).await? {
        return Err(CatalogError::Forbidden(
            "enroll in the course to see its materials".into(),
        ));
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM attachments WHERE course_id = $1 ORDER BY created_at, id"
    )))
    .bind(course_id)
    .fetch_all(db)
    .await?;
    let all = course.editable_by(user);
    rows.into_iter()
        .map(|r| r.into_attachment().map(|(a, _)| a))
        .filter(|a| {
            a.as_ref()
                .map_or(true, |a| all || a.state == AttachmentState::Ready)
        })
        .collect()
}

/// Removes an attachment; returns its stored file's key, if it has one.
pub async fn delete(
    db: &Db,
    user: &AuthUser,
    id: &AttachmentId,
) -> Result<Option<String>, CatalogError> {
    let (attachment, key) = load(db, id).await?;
    editable_course(db, user, &attachment.course_id)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound(_) => CatalogError::NotFound("attachment"),
            other => other,
        })?;
    sqlx::query("DELETE FROM attachments WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(key)
}

/// The stored files of a course's attachments, or of one lecture's (to remove with
/// them).
pub(crate) async fn stored_keys(
    db: &Db,
    course: Option<&CourseId>,
    lecture: Option<&LectureId>,
) -> Result<Vec<String>, CatalogError> {
    let keys: Vec<(String,)> = sqlx::query_as(
        "SELECT storage_key FROM attachments
         WHERE storage_key IS NOT NULL AND (course_id = $1 OR lecture_id = $2)",
    )
    .bind(course)
    .bind(lecture)
    .fetch_all(db)
    .await?;
    Ok(keys.into_iter().map(|(k,)| k).collect())
}

/// A short-lived link to a ready attachment's file, for its course's owner and the
/// students enrolled in it.
pub async fn link(
    s: &CatalogState,
    user: &AuthUser,
    id: &AttachmentId,
) -> Result<DownloadLink, CatalogError> {
    let (attachment, key) = load(&s.db, id).await?;
    let course = visible_course(&s.db, user, &attachment.course_id)
        .await
        .map_err(|_| CatalogError::NotFound("attachment"))?;
    if !may_play(&s.db, user, &course).await? {
        return Err(CatalogError::Forbidden(
            "enroll in the course to download its materials".into(),
        ));
    }
    let (Some(key), AttachmentState::Ready) = (key, attachment.state) else {
        return Err(CatalogError::Conflict(
            "the attachment's file is not ready".into(),
        ));
    };
    let ttl = s.config.attachment_link_secs;
    if s.config.delivery == Delivery::Direct {
        let kind = kind_of(&attachment)?;
        let disposition = content_disposition(&attachment.filename);
        let ttl_std = std::time::Duration::from_secs(ttl.max(1) as u64);
        if let Some(url) = s
            .store
            .presign_get(&key, ttl_std, kind.media_type(), Some(&disposition))
            .await?
        {
            return Ok(DownloadLink {
                url,
                expires_at: now_unix() + ttl,
            });
        }
    }
    let (token, expires_at) = s.playback.issue_file(id, &user.id, ttl)?;
    let path = format!("{FILES_PREFIX}{token}");
    let url = match &s.config.public_url {
        Some(origin) => format!("{}{path}", origin.trim_end_matches('/')),
        None => path,
    };
    Ok(DownloadLink { url, expires_at })
}

/// Where download links point: `{FILES_PREFIX}{token}`.
pub const FILES_PREFIX: &str = "/api/attachments/files/";

fn kind_of(attachment: &Attachment) -> Result<FileKind, CatalogError> {
    attachment
        .content_type
        .as_deref()
        .and_then(FileKind::from_media_type)
        .ok_or_else(|| {
            CatalogError::Internal(format!("attachment {} has no known kind", attachment.id))
        })
}

/// The file behind a download link: always to be saved (never shown), typed by its
/// bytes, in a sandbox should a browser show it anyway.
pub async fn download(
    s: &CatalogState,
    token: &str,
    req: Request,
) -> Result<Response, CatalogError> {
    let grant = s
        .playback
        .verify_file(token)
        .ok_or(CatalogError::BadDownloadLink)?;
    let (attachment, key) = load(&s.db, &grant.attachment_id).await?;
    let (Some(key), AttachmentState::Ready) = (key, attachment.state) else {
        return Err(CatalogError::NotFound("attachment"));
    };
    let kind = kind_of(&attachment)?;
    let file = PlayFile {
        key: &key,
        content_type: kind.media_type(),
        cache_control: HeaderValue::from_static("private, no-store"),
        expires_in: grant.expires_at.saturating_sub(now_unix()).max(1) as u64,
    };
    let mut res = delivery::send_file(s, file, req).await?;
    let h = res.headers_mut();
    let disposition = HeaderValue::from_str(&content_disposition(&attachment.filename))
        .map_err(|e| CatalogError::Internal(e.to_string()))?;
    h.insert(header::CONTENT_DISPOSITION, disposition);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(res)
}

/// `attachment` with the name in both forms browsers read: an ASCII fallback and the
/// UTF-8 original (RFC 6266, RFC 8187).
pub fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_out_in_both_forms() {
        assert_eq!(
            content_disposition("week 1.pdf"),
            "attachment; filename=\"week 1.pdf\"; filename*=UTF-8''week%201.pdf"
        );
        assert_eq!(
            content_disposition("Übung \"2\".zip"),
            "attachment; filename=\"_bung _2_.zip\"; filename*=UTF-8''%C3%9Cbung%20%222%22.zip"
        );
    }

    #[test]
    fn file_names_carry_no_folders() {
        assert_eq!(check_filename("  slides.pdf ").unwrap(), "slides.pdf");
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a\\b.pdf",
            "a\nb.pdf",
            &"x".repeat(256),
        ] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }
}
