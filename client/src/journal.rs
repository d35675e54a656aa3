//! The resume journal: for each file of a run, the lecture it became and its tus
//! upload's URL, so a run started again continues instead of starting over. One JSON
//! file, rewritten whole (a temporary file renamed over it) at each change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lectern_seams::ids::{CourseId, LectureId};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::api::ClientError;
use crate::files::Source;

const VERSION: u32 = 1;

/// What the journal knows of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub lecture_id: LectureId,
    pub title: String,
    /// The tus upload under way, once created.
    #[serde(default)]
    pub upload_url: Option<String>,
    /// Unix seconds of the last change.
    pub updated_at: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Book {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

pub struct Journal {
    path: PathBuf,
}

/// The file's key: the same file (path, size and modification time) sent to the same
/// course of the same server. A file changed since is a new file.
pub fn key(server: &Url, course: &CourseId, source: &Source) -> String {
    format!(
        "{}|{course}|{}|{}|{}",
        server.as_str().trim_end_matches('/'),
        source.path.display(),
        source.size,
        source.modified_ns
    )
}

/// $XDG_STATE_HOME/lectern/uploads.json, else ~/.local/state/lectern/uploads.json.
pub fn default_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("lectern").join("uploads.json"))
}

impl Journal {
    pub fn at(path: PathBuf) -> Self {
        Journal { path }
    }

    pub fn get(&self, key: &str) -> Result<Option<Entry>, ClientError> {
        Ok(self.read()?.entries.remove(key))
    }

    /// Records `entry` for `key`. The file is read again first, so a second run on
    /// other files with the same journal keeps its entries.
    pub fn put(&self, key: &str, mut entry: Entry) -> Result<(), ClientError> {
        entry.updated_at = lectern_seams::now_unix().max(0) as u64;
        let mut book = self.read()?;
        book.entries.insert(key.to_string(), entry);
        self.write(&book)
    }

    fn read(&self) -> Result<Book, ClientError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Book::default()),
            Err(e) => return Err(self.failed(e)),
        };
        let book: Book = serde_json::from_str(&text).map_err(|e| {
            ClientError::Usage(format!(
                "the resume journal {} is unreadable ({e}); move it away to start afresh",
                self.path.display()
            ))
        })?;
        if book.version != VERSION {
            return Err(ClientError::Usage(format!(
                "the resume journal {} is of another version ({}); move it away",
                self.path.display(),
                book.version
            )));
        }
        Ok(book)
    }

    fn write(&self, book: &Book) -> Result<(), ClientError> {
        let book = Book {
            version: VERSION,
            entries: book.entries.clone(),
        };
        let text = serde_json::to_vec_pretty(&book).expect("the journal serialises");
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.failed(e))?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = write_synced(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.failed(e));
        }
        Ok(())
    }

    fn failed(&self, e: std::io::Error) -> ClientError {
        ClientError::Io(format!("the resume journal {}", self.path.display()), e)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, size: u64, modified_ns: u128) -> Source {
        Source {
            shown: path.into(),
            path: path.into(),
            name: "a.mp4".into(),
            size,
            modified_ns,
            title: "a".into(),
            filetype: "video/mp4",
        }
    }

    #[test]
    fn a_key_changes_with_the_server_course_path_size_and_time() {
        let server = Url::parse("https://example.edu/").unwrap();
        let course = CourseId::new();
        let base = key(&server, &course, &source("/v/a.mp4", 10, 5));
        let others = [
            key(
                &Url::parse("https://other.edu/").unwrap(),
                &course,
                &source("/v/a.mp4", 10, 5),
            ),
            key(&server, &CourseId::new(), &source("/v/a.mp4", 10, 5)),
            key(&server, &course, &source("/v/b.mp4", 10, 5)),
            key(&server, &course, &source("/v/a.mp4", 11, 5)),
            key(&server, &course, &source("/v/a.mp4", 10, 6)),
        ];
        assert!(others.iter().all(|k| *k != base));
        assert_eq!(base, key(&server, &course, &source("/v/a.mp4", 10, 5)));
    }

    #[test]
    fn entries_survive_a_new_journal_on_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/uploads.json");
        let entry = Entry {
            lecture_id: LectureId::new(),
            title: "Week 1".into(),
            upload_url: Some("http://127.0.0.1:1/api/uploads/abc".into()),
            updated_at: 0,
        };
        Journal::at(path.clone()).put("k1", entry.clone()).unwrap();
        Journal::at(path.clone()).put("k2", entry.clone()).unwrap();
        let again = Journal::at(path.clone());
        let read = again.get("k1").unwrap().unwrap();
        assert_eq!(read.upload_url, entry.upload_url);
        assert!(read.updated_at > 0);
        assert!(again.get("k2").unwrap().is_some());
        assert_eq!(again.get("k3").unwrap(), None);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_damaged_journal_is_a_clear_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploads.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Journal::at(path).get("k").unwrap_err();
        assert!(err.to_string().contains("move it away"), "{err}");
    }
}
