//! Backups of the embedded world: its two SQLite databases copied consistently while
//! Lectern serves (`VACUUM INTO`), then its stored objects and its keys, into a folder
//! of their own; and the way back into an empty data folder. The distributed world is
//! backed up with PostgreSQL's and the object store's own tools (docs/operations.md).

use std::path::{Path, PathBuf};

/// Where the embedded world keeps what a backup holds.
#[derive(Debug, Clone)]
pub struct Layout {
    pub database: PathBuf,
    pub queue: PathBuf,
    pub objects: PathBuf,
    /// The store's cold folder, if it has one.
    pub cold: Option<PathBuf>,
    pub keys: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "{0} is not the embedded kind (sqlite:// or file://): back up PostgreSQL and S3 with their own tools (docs/operations.md)"
    )]
    NotEmbedded(String),
    #[error("{0}")]
    Refused(String),
    #[error("copying {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

/// What a backup or restore copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Copied {
    fn add_assign(&mut self, other: Self) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Written last into a backup: a folder without it is not a finished backup.
const MANIFEST: &str = "lectern-backup.json";

impl Layout {
    /// The layout the settings name; refused unless every part is embedded.
    pub fn embedded(
        database_url: &str,
        queue_url: &str,
        storage_url: &str,
        keys: PathBuf,
    ) -> Result<Self, BackupError> {
        let sqlite = |url: &str| {
            url.strip_prefix("sqlite://")
                .map(|rest| PathBuf::from(rest.split('?').next().unwrap_or(rest)))
                .ok_or_else(|| BackupError::NotEmbedded(url.to_string()))
        };
        let store = crate::storage::FileUrl::parse(storage_url)
            .map_err(|_| BackupError::NotEmbedded(storage_url.to_string()))?;
        Ok(Self {
            database: sqlite(database_url)?,
            queue: sqlite(queue_url)?,
            objects: store.root,
            cold: store.cold,
            keys,
        })
    }
}

/// Copies the embedded world into `to`, a new or empty folder, while it serves. The
/// databases first, then the objects: an object the snapshot names was stored before
/// it (objects are written whole, then renamed into place).
pub async fn backup(layout: &Layout, to: &Path) -> Result<Copied, BackupError> {
    ensure_empty(to)?;
    create_dir(to)?;
    for (db, name) in [
        (&layout.database, "lectern.db"),
        (&layout.queue, "queue.db"),
    ] {
        snapshot(db, &to.join(name)).await?;
    }
    let layout = layout.clone();
    let into = to.to_path_buf();
    let copied = blocking(move || copy_files(&layout, &into)).await?;
    let manifest = serde_json::json!({
        "format": 1,
        "taken_at": crate::now_unix(),
        "files": copied.files,
        "bytes": copied.bytes,
    });
    write_file(&to.join(MANIFEST), manifest.to_string().as_bytes())?;
    Ok(copied)
}

/// The objects, then the cold ones, then objects that came back from the cold folder
/// meanwhile (an original a new transcode needed); then the keys.
fn copy_files(layout: &Layout, to: &Path) -> Result<Copied, BackupError> {
    let mut copied = copy_tree(&layout.objects, &to.join("objects"), false)?;
    if let Some(cold) = &layout.cold {
        copied += copy_tree(cold, &to.join("cold"), false)?;
        copied += copy_tree(&layout.objects, &to.join("objects"), true)?;
    }
    copied += copy_tree(&layout.keys, &to.join("keys"), false)?;
    Ok(copied)
}

/// Fills an empty data folder (no databases, no objects) from a finished backup.
pub async fn restore(from: &Path, layout: &Layout) -> Result<Copied, BackupError> {
    if !from.join(MANIFEST).is_file() {
        return Err(BackupError::Refused(format!(
            "{} is not a finished Lectern backup (no {MANIFEST})",
            from.display()
        )));
    }
    for db in [&layout.database, &layout.queue] {
        if db.exists() {
            return Err(BackupError::Refused(format!(
                "{} exists: restore only into an empty data folder",
                db.display()
            )));
        }
    }
    ensure_empty(&layout.objects)?;
    if let Some(cold) = &layout.cold {
        ensure_empty(cold)?;
    }
    let layout = layout.clone();
    let from = from.to_path_buf();
    blocking(move || {
        let mut copied = Copied::default();
        for (name, db) in [
            ("lectern.db", &layout.database),
            ("queue.db", &layout.queue),
        ] {
            if let Some(parent) = db.parent() {
                create_dir(parent)?;
            }
            copied.bytes += std::fs::copy(from.join(name), db).map_err(io(db))?;
            copied.files += 1;
        }
        for (dir, into) in [("objects", &layout.objects), ("keys", &layout.keys)] {
            copied += copy_tree(&from.join(dir), into, false)?;
        }
        if let Some(cold) = &layout.cold {
            copied += copy_tree(&from.join("cold"), cold, false)?;
        }
        Ok(copied)
    })
    .await
}

/// A consistent copy of a live SQLite database (WAL included), taken by SQLite itself.
async fn snapshot(db: &Path, to: &Path) -> Result<(), BackupError> {
    if !db.is_file() {
        return Err(BackupError::Refused(format!(
            "no database at {}: is this the data folder Lectern runs on?",
            db.display()
        )));
    }
    let pool = crate::db::connect_only(&format!("sqlite://{}", db.display())).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(to.to_string_lossy().into_owned())
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

fn ensure_empty(dir: &Path) -> Result<(), BackupError> {
    let has_entries = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io(dir)(e)),
    };
    if has_entries {
        return Err(BackupError::Refused(format!(
            "{} is not empty",
            dir.display()
        )));
    }
    Ok(())
}

/// Copies the files under `from` into `to` (only those `to` lacks, if `missing_only`).
/// A file that goes away meanwhile (a lecture deleted, an original moved to the cold
/// folder) is skipped, and so are the stores' half-written `.tmp` files.
fn copy_tree(from: &Path, to: &Path, missing_only: bool) -> Result<Copied, BackupError> {
    let mut copied = Copied::default();
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(copied),
        Err(e) => return Err(io(from)(e)),
    };
    create_dir(to)?;
    for entry in entries {
        let entry = entry.map_err(io(from))?;
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path)(e)),
        };
        if kind.is_dir() {
            copied += copy_tree(&path, &target, missing_only)?;
        } else if kind.is_file()
            && path.extension().is_none_or(|e| e != "tmp")
            && !(missing_only && target.exists())
        {
            match std::fs::copy(&path, &target) {
                Ok(bytes) => {
                    copied.files += 1;
                    copied.bytes += bytes;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }
    Ok(copied)
}

fn create_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    std::fs::write(path, bytes).map_err(io(path))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(work)
        .await
        .expect("a copy does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> Layout {
        Layout::embedded(
            &format!("sqlite://{}/lectern.db", dir.display()),
            &format!("sqlite://{}/queue.db", dir.display()),
            &format!("file://{0}/objects?cold={0}/cold", dir.display()),
            dir.join("keys"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_backup_restores_into_an_empty_folder_and_nowhere_else() {
        let (live, saved, fresh) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let from = layout(live.path());
        let db = crate::db::connect(&format!("sqlite://{}", from.database.display()))
            .await
            .unwrap();
        sqlx::query("INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES ('u', 'u@x', 'U', 'x', 'owner', 0)")
            .execute(&db)
            .await
            .unwrap();
        crate::db::connect_only(&format!("sqlite://{}", from.queue.display()))
            .await
            .unwrap();
        std::fs::create_dir_all(from.objects.join("assets/a")).unwrap();
        std::fs::write(from.objects.join("assets/a/seg_00000.ts"), b"segment").unwrap();
        std::fs::write(from.objects.join("assets/a/.x.tmp"), b"half").unwrap();
        let cold = from.cold.clone().unwrap();
        std::fs::create_dir_all(cold.join("uploads")).unwrap();
        std::fs::write(cold.join("uploads/u1"), b"original").unwrap();
        std::fs::create_dir_all(&from.keys).unwrap();
        std::fs::write(from.keys.join("playback.key"), b"secret").unwrap();

        let target = saved.path().join("backup");
        let copied = backup(&from, &target).await.unwrap();
        assert_eq!(
            copied.files, 3,
            "the segment, the cold original and the key; not the .tmp file"
        );
        assert!(matches!(
            backup(&from, &target).await,
            Err(BackupError::Refused(_))
        ));

        let into = layout(fresh.path());
        restore(&target, &into).await.unwrap();
        let restored = crate::db::connect(&format!("sqlite://{}", into.database.display()))
            .await
            .unwrap();
        let (email,): (String,) = sqlx::query_as("SELECT email FROM users WHERE id = 'u'")
            .fetch_one(&restored)
            .await
            .unwrap();
        assert_eq!(email, "u@x");
        assert_eq!(
            std::fs::read(into.objects.join("assets/a/seg_00000.ts")).unwrap(),
            b"segment"
        );
        assert!(!into.objects.join("assets/a/.x.tmp").exists());
        assert_eq!(
            std::fs::read(into.cold.as_ref().unwrap().join("uploads/u1")).unwrap(),
            b"original"
        );
        assert_eq!(
            std::fs::read(into.keys.join("playback.key")).unwrap(),
            b"secret"
        );
        // Never over a data folder in use.
        assert!(matches!(
            restore(&target, &from).await,
            Err(BackupError::Refused(_))
        ));
        assert!(matches!(
            Layout::embedded("postgres://x", "sqlite://q", "file://o", PathBuf::new()),
            Err(BackupError::NotEmbedded(_))
        ));
    }
}
