//! Attachments' upload outcome: the kinds of file Lectern hands out (each one's media
//! type and file name extensions), and every change of `attachments.state`, written
//! here. Ingest records what the bytes turned out to be; rows are created, renamed and
//! deleted by the catalog.
//!
//! ```text
//! uploading ──last byte, a kind on the list──▶ ready
//!     └──────last byte, anything else─────────▶ refused (with the reason)
//! ```

use serde::{Deserialize, Serialize};
use sqlx::{Any, Executor};

use crate::ids::AttachmentId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentState {
    /// Created; its bytes are arriving.
    Uploading,
    /// Its bytes are a kind on the list and can be downloaded.
    Ready,
    /// Its bytes are not a kind Lectern hands out; `reason` says what they were.
    Refused,
}

impl AttachmentState {
    pub const ALL: [AttachmentState; 3] = [
        AttachmentState::Uploading,
        AttachmentState::Ready,
        AttachmentState::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentState::Uploading => "uploading",
            AttachmentState::Ready => "ready",
            AttachmentState::Refused => "refused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A kind of file an attachment may be, as its bytes show it (never as its name or
/// its uploader says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Pdf,
    Zip,
    Gzip,
    Tar,
    SevenZip,
    Pptx,
    Docx,
    Xlsx,
    Odp,
    Odt,
    Ods,
    Epub,
    Png,
    Jpeg,
    Gif,
    Webp,
    /// UTF-8 text: source code, notebooks, Markdown, CSV.
    Text,
}

impl FileKind {
    pub const ALL: [FileKind; 17] = [
        FileKind::Pdf,
        FileKind::Zip,
        FileKind::Gzip,
        FileKind::Tar,
        FileKind::SevenZip,
        FileKind::Pptx,
        FileKind::Docx,
        FileKind::Xlsx,
        FileKind::Odp,
        FileKind::Odt,
        FileKind::Ods,
        FileKind::Epub,
        FileKind::Png,
        FileKind::Jpeg,
        FileKind::Gif,
        FileKind::Webp,
        FileKind::Text,
    ];

    /// The media type a download is answered with.
    pub fn media_type(self) -> &'static str {
        match self {
            FileKind::Pdf => "application/pdf",
            FileKind::Zip => "application/zip",
            FileKind::Gzip => "application/gzip",
            FileKind::Tar => "application/x-tar",
            FileKind::SevenZip => "application/x-7z-compressed",
            FileKind::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            FileKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            FileKind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            FileKind::Odp => "application/vnd.oasis.opendocument.presentation",
            FileKind::Odt => "application/vnd.oasis.opendocument.text",
            FileKind::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            FileKind::Epub => "application/epub+zip",
            FileKind::Png => "image/png",
            FileKind::Jpeg => "image/jpeg",
            FileKind::Gif => "image/gif",
            FileKind::Webp => "image/webp",
            FileKind::Text => "text/plain; charset=utf-8",
        }
    }

    /// The kind a stored media type names; None for one no version wrote.
    pub fn from_media_type(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.media_type() == text)
    }

    /// File name extensions that fit the kind; the first is given to a name with none
    /// of them. Text takes any name.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            FileKind::Pdf => &["pdf"],
            FileKind::Zip => &["zip"],
            FileKind::Gzip => &["gz", "tgz"],
            FileKind::Tar => &["tar"],
            FileKind::SevenZip => &["7z"],
            FileKind::Pptx => &["pptx"],
            FileKind::Docx => &["docx"],
            FileKind::Xlsx => &["xlsx"],
            FileKind::Odp => &["odp"],
            FileKind::Odt => &["odt"],
            FileKind::Ods => &["ods"],
            FileKind::Epub => &["epub"],
            FileKind::Png => &["png"],
            FileKind::Jpeg => &["jpg", "jpeg"],
            FileKind::Gif => &["gif"],
            FileKind::Webp => &["webp"],
            FileKind::Text => &["txt"],
        }
    }

    /// `name` with an extension that fits the kind, so a PDF called `notes.exe` is
    /// saved as `notes.exe.pdf` and opens as what it is. Text keeps its name unless it
    /// would run as a program or page on the student's machine.
    pub fn fit_name(self, name: &str) -> String {
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let fits = match self {
            FileKind::Text => !RISKY_TEXT_EXTENSIONS.contains(&ext.as_str()),
            _ => self.extensions().contains(&ext.as_str()),
        };
        if fits {
            name.to_string()
        } else {
            format!("{name}.{}", self.extensions()[0])
        }
    }
}

/// Extensions a desktop runs or renders rather than opens as text.
const RISKY_TEXT_EXTENSIONS: &[&str] = &[
    "html", "htm", "xhtml", "svg", "js", "mjs", "hta", "bat", "cmd", "com", "exe", "vbs", "ps1",
    "lnk", "scr", "desktop", "url", "webloc", "",
];

type Result<T> = std::result::Result<T, sqlx::Error>;

/// The attachment's bytes are in and are `kind`: it can be downloaded. Whether it was
/// still uploading (it may have been deleted meanwhile).
pub async fn mark_ready<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &AttachmentId,
    kind: FileKind,
    filename: &str,
    storage_key: &str,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE attachments SET state = $1, content_type = $2, filename = $3, storage_key = $4, reason = NULL
         WHERE id = $5 AND state = $6",
    )
    .bind(AttachmentState::Ready.as_str())
    .bind(kind.media_type())
    .bind(filename)
    .bind(storage_key)
    .bind(id)
    .bind(AttachmentState::Uploading.as_str())
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// The attachment's bytes are not a kind Lectern hands out.
pub async fn mark_refused<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &AttachmentId,
    reason: &str,
) -> Result<()> {
    sqlx::query("UPDATE attachments SET state = $1, reason = $2 WHERE id = $3 AND state = $4")
        .bind(AttachmentState::Refused.as_str())
        .bind(reason)
        .bind(id)
        .bind(AttachmentState::Uploading.as_str())
        .execute(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_to_fit_the_bytes() {
        assert_eq!(FileKind::Pdf.fit_name("week 1.pdf"), "week 1.pdf");
        assert_eq!(FileKind::Pdf.fit_name("Week 1.PDF"), "Week 1.PDF");
        assert_eq!(FileKind::Pdf.fit_name("setup.exe"), "setup.exe.pdf");
        assert_eq!(FileKind::Jpeg.fit_name("board.jpeg"), "board.jpeg");
        assert_eq!(FileKind::Text.fit_name("solution.py"), "solution.py");
        assert_eq!(FileKind::Text.fit_name("page.html"), "page.html.txt");
        assert_eq!(FileKind::Text.fit_name("README"), "README.txt");
    }

    #[test]
    fn stored_words_read_back() {
        for k in FileKind::ALL {
            assert_eq!(FileKind::from_media_type(k.media_type()), Some(k));
        }
        for s in AttachmentState::ALL {
            assert_eq!(AttachmentState::parse(s.as_str()), Some(s));
        }
        assert_eq!(FileKind::from_media_type("text/html"), None);
    }
}
