//! Attachments' bytes: which attachment an upload fills (its course's owner, its
//! announced size), and, once every byte is in, what the bytes are. A kind on the list
//! makes the attachment ready under a name that fits its kind; anything else refuses
//! it, says what it was, and drops the bytes.

use futures::StreamExt;
use lectern_seams::attachments::{self, AttachmentState, FileKind};
use lectern_seams::ids::{AttachmentId, UserId};
use lectern_seams::storage::ByteRange;
use lectern_web::auth::AuthUser;

use crate::IngestState;
use crate::error::IngestError;
use crate::uploads::Upload;

/// How much of a file its kind is read from: enough for office files, whose kind shows
/// in the names of the first entries of their zip.
const SNIFF_BYTES: u64 = 64 * 1024;

/// The attachment an upload is for and the owner it counts against, if `user` may
/// fill it with `length` bytes: its course's owner (or an admin), while it waits for
/// its bytes, with the size it was announced with.
pub(crate) async fn upload_target(
    state: &IngestState,
    user: &AuthUser,
    id: &str,
    length: u64,
) -> Result<(AttachmentId, UserId), IngestError> {
    let no_such = || IngestError::NotFound("no such attachment".into());
    let id = AttachmentId::parse(id).ok_or_else(no_such)?;
    let row: Option<(i64, String, UserId)> = sqlx::query_as(
        "SELECT a.size, a.state, c.owner_id FROM attachments a JOIN courses c ON c.id = a.course_id
         WHERE a.id = $1",
    )
    .bind(&id)
    .fetch_optional(&state.db)
    .await?;
    let (size, attachment_state, owner) = row.ok_or_else(no_such)?;
    if owner != user.id && !user.is_admin() {
        return Err(IngestError::Forbidden(
            "only the course's owner may upload its attachments".into(),
        ));
    }
    if AttachmentState::parse(&attachment_state) != Some(AttachmentState::Uploading) {
        return Err(IngestError::Conflict(
            "the attachment already has its file; add a new attachment for another".into(),
        ));
    }
    if length != size as u64 {
        return Err(IngestError::BadRequest(format!(
            "Upload-Length {length} is not the attachment's size ({size} bytes)"
        )));
    }
    Ok((id, owner))
}

/// Reads a complete attachment upload's kind from its first bytes and records the
/// outcome: the reason when it is refused. Safe to run again after a crash.
pub(crate) async fn finish(
    state: &IngestState,
    upload: &Upload,
    id: &AttachmentId,
) -> Result<Option<String>, IngestError> {
    let head = first_bytes(state, &upload.storage_key, upload.length).await?;
    let filename = filename_of(upload);
    let outcome = sniff(&head, upload.length <= SNIFF_BYTES);
    let mut tx = state.db.begin().await?;
    let mut refusal = None;
    let kept = match outcome {
        Ok(kind) => {
            let name = kind.fit_name(&filename);
            attachments::mark_ready(&mut *tx, id, kind, &name, &upload.storage_key).await?
        }
        Err(what) => {
            tracing::info!(upload = %upload.id, attachment = %id, %what, "attachment refused");
            let reason = format!(
                "{filename} is {what}; attachments may be PDFs, slides and documents (Office, OpenDocument), archives (zip, tar, gzip, 7z), e-books, images or UTF-8 text"
            );
            attachments::mark_refused(&mut *tx, id, &reason).await?;
            refusal = Some(reason);
            false
        }
    };
    sqlx::query("UPDATE uploads SET state = 'processed' WHERE id = $1")
        .bind(&upload.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if !kept {
        // Refused, deleted while uploading, or filled by another upload first.
        state.store.delete(&upload.storage_key).await?;
    }
    Ok(refusal)
}

async fn first_bytes(state: &IngestState, key: &str, length: u64) -> Result<Vec<u8>, IngestError> {
    let range = ByteRange {
        start: 0,
        end: length.min(SNIFF_BYTES) - 1,
    };
    let mut read = state.store.read(key, Some(range)).await?;
    let mut head = Vec::with_capacity(range.byte_count() as usize);
    while let Some(chunk) = read.body.next().await {
        head.extend_from_slice(&chunk.map_err(lectern_seams::storage::StorageError::from)?);
    }
    Ok(head)
}

/// The name the uploader gave, from the upload's metadata.
fn filename_of(upload: &Upload) -> String {
    crate::tus::parse_metadata(&upload.metadata)
        .ok()
        .and_then(|m| m.get("filename").cloned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "attachment".into())
}

/// The kind of file `head` (its first bytes; `whole` when that is all of it) begins,
/// or what it is instead, in words.
pub fn sniff(head: &[u8], whole: bool) -> Result<FileKind, String> {
    if let Some(found) = infer::get(head) {
        let kind = match found.mime_type() {
            "application/pdf" => Some(FileKind::Pdf),
            "application/zip" => Some(FileKind::Zip),
            "application/gzip" => Some(FileKind::Gzip),
            "application/x-tar" => Some(FileKind::Tar),
            "application/x-7z-compressed" => Some(FileKind::SevenZip),
            "application/epub+zip" => Some(FileKind::Epub),
            "image/png" => Some(FileKind::Png),
            "image/jpeg" => Some(FileKind::Jpeg),
            "image/gif" => Some(FileKind::Gif),
            "image/webp" => Some(FileKind::Webp),
            // Served as plain text and saved, never shown: a web course's pages and
            // scripts are text like any code.
            "text/html" | "text/xml" | "text/x-shellscript" if is_text(head, whole) => {
                Some(FileKind::Text)
            }
            other => FileKind::from_media_type(other),
        };
        return kind.ok_or_else(|| format!("{} ({})", found.mime_type(), found.extension()));
    }
    if is_text(head, whole) {
        return Ok(FileKind::Text);
    }
    Err("not a kind of file Lectern recognises".into())
}

/// UTF-8 without NUL bytes (a cut at the end of a longer file may split a character).
fn is_text(head: &[u8], whole: bool) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => !whole && e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// Whether an upload's metadata names an attachment rather than a lecture.
pub(crate) fn attachment_of(metadata: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    metadata
        .get("attachment_id")
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_with(first_entry: &str) -> Vec<u8> {
        let mut z = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        z.extend_from_slice(&[0; 16]);
        z.extend_from_slice(&(first_entry.len() as u16).to_le_bytes());
        z.extend_from_slice(&[0, 0]);
        z.extend_from_slice(first_entry.as_bytes());
        z.extend_from_slice(&[0; 64]);
        z
    }

    #[test]
    fn kinds_come_from_the_bytes() {
        assert_eq!(
            sniff(b"%PDF-1.7\n%\xe2\xe3\n1 0 obj", false),
            Ok(FileKind::Pdf)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", false),
            Ok(FileKind::Png)
        );
        assert_eq!(sniff(&zip_with("src/main.rs"), false), Ok(FileKind::Zip));
        assert_eq!(sniff(b"\x1f\x8b\x08\0\0\0\0\0", false), Ok(FileKind::Gzip));
        assert_eq!(
            sniff("fn main() {}\n// é".as_bytes(), true),
            Ok(FileKind::Text)
        );
    }

    #[test]
    fn programs_and_unknown_bytes_are_refused() {
        let elf = sniff(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0", false);
        assert!(elf.is_err(), "{elf:?}");
        let pe = sniff(b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0", false);
        assert!(pe.is_err(), "{pe:?}");
        assert!(sniff(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3], true).is_err());
        assert!(sniff(b"\xff\xfe\xfd not utf-8", true).is_err());
    }

    #[test]
    fn text_may_be_cut_inside_a_character_only_at_the_end_of_a_longer_file() {
        let cut = &"naïve".as_bytes()[..3];
        assert_eq!(sniff(cut, false), Ok(FileKind::Text));
        assert!(sniff(cut, true).is_err());
    }
}
