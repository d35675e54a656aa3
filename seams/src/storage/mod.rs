//! The object storage seam: one trait, chosen by URL. `file://DIR` keeps objects as
//! files under DIR (the embedded default); `s3://BUCKET?…` uses an S3-compatible
//! service. Objects are written whole and then put in place, so a reader never sees a
//! partial object. A store may have a cold tier (a cold folder, a cold bucket or
//! storage class) that objects read once, like originals, are moved to.

pub mod s3;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("resumable object {key} holds {actual} bytes, not the expected {expected}")]
    OffsetMismatch {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("unsupported storage URL {0:?}")]
    UnsupportedUrl(String),
    #[error("this storage has no cold tier (see docs/configuration.md, STORAGE_URL)")]
    NoColdTier,
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T> = std::result::Result<T, StorageError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub modified_unix: i64,
    /// A strong validator that changes whenever the bytes do.
    pub etag: String,
}

/// Where an object's bytes are kept: hot (read often) or cold (cheaper, read rarely).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Hot,
    Cold,
}

/// An inclusive byte range, already checked against the object's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Bytes in the range, both ends included (a range is never empty).
    pub fn byte_count(&self) -> u64 {
        self.end - self.start + 1
    }
}

pub struct ObjectRead {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

/// What an append did: the object's new length, and the error that cut the incoming
/// stream short, if one did (the bytes before it are kept).
pub struct AppendOutcome {
    pub new_len: u64,
    pub interrupted: Option<io::Error>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<()>;
    async fn put_file(&self, key: &str, path: &Path) -> Result<()>;
    async fn head(&self, key: &str) -> Result<ObjectMeta>;
    async fn read(&self, key: &str, range: Option<ByteRange>) -> Result<ObjectRead>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// Deletes every object whose key starts with `prefix/`.
    async fn delete_prefix(&self, prefix: &str) -> Result<()>;
    /// Copies an object to a local file (workers and probing read local files).
    async fn download_to(&self, key: &str, dest: &Path) -> Result<()>;
    /// A local path to read the object from in place, where the backend has one.
    fn local_path(&self, key: &str) -> Option<PathBuf>;
    /// Appends a stream to a resumable object that must hold exactly `offset` bytes;
    /// bytes beyond `offset` (left by a crash before they were acknowledged) are cut.
    async fn append(&self, key: &str, offset: u64, body: ByteStream) -> Result<AppendOutcome>;
    /// Cuts a resumable object back to `len` bytes (a chunk that failed its checksum).
    async fn truncate(&self, key: &str, len: u64) -> Result<()>;
    /// Turns a complete resumable object into an ordinary object. Idempotent.
    async fn finish_append(&self, _key: &str) -> Result<()> {
        Ok(())
    }
    /// Whether the backend answers (for /readyz).
    async fn check(&self) -> Result<()>;
    /// Whether `move_to` can move objects to a cold tier.
    fn has_cold_tier(&self) -> bool {
        false
    }
    /// Moves an object into `tier`; one already there stays (so a move cut short by a
    /// crash is finished by asking again). Reads, heads and local paths see the hot
    /// tier only; deletes remove an object from both.
    async fn move_to(&self, _key: &str, _tier: Tier) -> Result<()> {
        Err(StorageError::NoColdTier)
    }
    /// A URL from which anyone may GET the object until it expires, answered with
    /// `content_type` (and `disposition`, if given) whatever the object was stored
    /// with, where the backend can sign one (S3); None otherwise.
    async fn presign_get(
        &self,
        _key: &str,
        _expires_in: std::time::Duration,
        _content_type: &str,
        _disposition: Option<&str>,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

pub type SharedStore = Arc<dyn ObjectStore>;

/// Bytes read from a file per step: each step is a trip to the blocking pool, so a
/// segment of a few hundred KB goes in one or two.
const READ_CHUNK: usize = 512 * 1024;

/// The whole of a small object (playlists, manifests) in memory.
pub async fn read_to_vec(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>> {
    let mut read = store.read(key, None).await?;
    let mut out = Vec::with_capacity(read.meta.size as usize);
    while let Some(chunk) = read.body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Opens the store a URL names: `file://DIR[?cold=COLD_DIR]` (relative or absolute)
/// or `s3://BUCKET?endpoint=…&region=…&path_style=true[&cold_bucket=…][&cold_class=…]`.
pub async fn open_storage(url: &str) -> Result<SharedStore> {
    if url.starts_with("s3://") {
        return Ok(Arc::new(s3::S3Store::open(url).await?));
    }
    if url.starts_with("file://") {
        let FileUrl { root, cold } = FileUrl::parse(url)?;
        return Ok(Arc::new(FileStore {
            root: absolute(&root)?,
            cold: cold.as_deref().map(absolute).transpose()?,
        }));
    }
    Err(StorageError::UnsupportedUrl(url.to_string()))
}

/// Made and made absolute, so local paths handed to GStreamer (file URIs) work from
/// any working directory.
fn absolute(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    Ok(std::fs::canonicalize(dir)?)
}

/// What a `file://` URL says: the folder of objects, and the cold folder if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUrl {
    pub root: PathBuf,
    pub cold: Option<PathBuf>,
}

impl FileUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("file://")
            .ok_or_else(|| StorageError::UnsupportedUrl(url.into()))?;
        let (dir, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut cold = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("cold", v)) if !v.is_empty() => cold = Some(PathBuf::from(v)),
                _ => {
                    return Err(StorageError::UnsupportedUrl(format!(
                        "{url} (unknown parameter {pair})"
                    )));
                }
            }
        }
        Ok(Self {
            root: PathBuf::from(if dir.is_empty() { "." } else { dir }),
            cold,
        })
    }
}

/// Keys are relative paths of safe characters with no `.` or `..` segment.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.to_string()))
    }
}

pub struct FileStore {
    root: PathBuf,
    /// The cold tier: a folder of the same layout, perhaps on a cheaper disk.
    cold: Option<PathBuf>,
}

/// How many appended bytes are handed to the disk at a time, while the rest of the body
/// still arrives. The sync at the end of a PATCH then waits for the last window only;
/// it used to wait for the whole PATCH (64 MiB from tus-js-client: about 40 ms on a
/// fast disk, with the client idle meanwhile). 8 MiB windows measured the same.
const WRITEBACK_EVERY: u64 = 2 << 20;

/// Starts writing a range of the file to disk without waiting for it (Linux; elsewhere
/// the final sync does it all).
async fn start_writeback(file: &tokio::fs::File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // It can block while the disk's queue is full: on a blocking thread, with its
        // own descriptor of the file.
        let copy = file.try_clone().await?.into_std().await;
        tokio::task::spawn_blocking(move || {
            // SAFETY: `copy` is open for the whole call; the call only queues the range
            // for writeback.
            match unsafe {
                libc::sync_file_range(
                    copy.as_raw_fd(),
                    offset as i64,
                    len as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        })
        .await
        .map_err(io::Error::other)?
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
        Ok(())
    }
}

impl FileStore {
    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn cold_path(&self, key: &str) -> Result<Option<PathBuf>> {
        check_key(key)?;
        Ok(self.cold.as_ref().map(|c| c.join(key)))
    }

    /// Moves a file between the tiers: renamed when both are on one file system,
    /// otherwise copied beside the target, synced, renamed into place and removed.
    async fn move_file(key: &str, from: &Path, to: &Path) -> Result<()> {
        if tokio::fs::try_exists(to).await? && !tokio::fs::try_exists(from).await? {
            return Ok(());
        }
        Self::ensure_parent(to).await?;
        match tokio::fs::rename(from, to).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let tmp = Self::temp_path(to);
                tokio::fs::copy(from, &tmp).await?;
                tokio::fs::File::open(&tmp).await?.sync_all().await?;
                tokio::fs::rename(&tmp, to).await?;
                tokio::fs::remove_file(from).await?;
                Ok(())
            }
            Err(e) => Err(Self::not_found(key, e)),
        }
    }

    async fn remove_dir(path: &Path) -> Result<()> {
        match tokio::fs::remove_dir_all(path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn remove_file(path: &Path) -> Result<()> {
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn not_found(key: &str, e: io::Error) -> StorageError {
        if e.kind() == io::ErrorKind::NotFound {
            StorageError::NotFound(key.to_string())
        } else {
            StorageError::Io(e)
        }
    }

    async fn meta_of(key: &str, path: &Path) -> Result<ObjectMeta> {
        Self::meta_from(
            key,
            tokio::fs::metadata(path)
                .await
                .map_err(|e| Self::not_found(key, e))?,
        )
    }

    fn meta_from(key: &str, m: std::fs::Metadata) -> Result<ObjectMeta> {
        if !m.is_file() {
            return Err(StorageError::NotFound(key.to_string()));
        }
        let modified = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        Ok(ObjectMeta {
            size: m.len(),
            modified_unix: modified.as_secs() as i64,
            etag: format!("\"{:x}-{:x}\"", m.len(), modified.as_nanos()),
        })
    }

    /// A temporary name beside the target, renamed over it once complete.
    fn temp_path(path: &Path) -> PathBuf {
        let mut name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(format!(".{}.tmp", crate::new_id()));
        path.with_file_name(name)
    }

    async fn ensure_parent(path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FileStore {
    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        Self::ensure_parent(&path).await?;
        let tmp = Self::temp_path(&path);
        tokio::fs::write(&tmp, &data).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }

    async fn put_file(&self, key: &str, source: &Path) -> Result<()> {
        let path = self.path(key)?;
        Self::ensure_parent(&path).await?;
        let tmp = Self::temp_path(&path);
        tokio::fs::copy(source, &tmp).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        Self::meta_of(key, &path).await
    }

    async fn read(&self, key: &str, range: Option<ByteRange>) -> Result<ObjectRead> {
        let path = self.path(key)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Self::not_found(key, e))?;
        let meta = Self::meta_from(key, file.metadata().await?)?;
        let body: ByteStream = match range {
            Some(r) => {
                file.seek(io::SeekFrom::Start(r.start)).await?;
                use tokio::io::AsyncReadExt;
                tokio_util::io::ReaderStream::with_capacity(file.take(r.byte_count()), READ_CHUNK)
                    .boxed()
            }
            None => tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK).boxed(),
        };
        Ok(ObjectRead { meta, body })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        Self::remove_file(&self.path(key)?).await?;
        if let Some(cold) = self.cold_path(key)? {
            Self::remove_file(&cold).await?;
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        Self::remove_dir(&self.path(prefix)?).await?;
        if let Some(cold) = self.cold_path(prefix)? {
            Self::remove_dir(&cold).await?;
        }
        Ok(())
    }

    async fn download_to(&self, key: &str, dest: &Path) -> Result<()> {
        let path = self.path(key)?;
        tokio::fs::copy(&path, dest)
            .await
            .map_err(|e| Self::not_found(key, e))?;
        Ok(())
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    async fn append(&self, key: &str, offset: u64, mut body: ByteStream) -> Result<AppendOutcome> {
        let path = self.path(key)?;
        Self::ensure_parent(&path).await?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .await?;
        let actual = file.metadata().await?.len();
        if actual < offset {
            return Err(StorageError::OffsetMismatch {
                key: key.to_string(),
                expected: offset,
                actual,
            });
        }
        if actual > offset {
            file.set_len(offset).await?;
        }
        file.seek(io::SeekFrom::Start(offset)).await?;
        let mut written = offset;
        let mut written_back = offset;
        let mut interrupted = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    file.write_all(&bytes).await?;
                    written += bytes.len() as u64;
                    if written - written_back >= WRITEBACK_EVERY {
                        file.flush().await?;
                        start_writeback(&file, written_back, written - written_back).await?;
                        written_back = written;
                    }
                }
                Err(e) => {
                    interrupted = Some(e);
                    break;
                }
            }
        }
        file.flush().await?;
        // The offset we report is the client's resume point: it must survive a crash.
        file.sync_data().await?;
        Ok(AppendOutcome {
            new_len: written,
            interrupted,
        })
    }

    async fn truncate(&self, key: &str, len: u64) -> Result<()> {
        let path = self.path(key)?;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(|e| Self::not_found(key, e))?;
        file.set_len(len).await?;
        file.sync_data().await?;
        Ok(())
    }

    async fn check(&self) -> Result<()> {
        tokio::fs::metadata(&self.root).await?;
        Ok(())
    }

    fn has_cold_tier(&self) -> bool {
        self.cold.is_some()
    }

    async fn move_to(&self, key: &str, tier: Tier) -> Result<()> {
        let hot = self.path(key)?;
        let cold = self.cold_path(key)?.ok_or(StorageError::NoColdTier)?;
        match tier {
            Tier::Cold => Self::move_file(key, &hot, &cold).await,
            Tier::Hot => Self::move_file(key, &cold, &hot).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: Vec<io::Result<&'static [u8]>>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|p| p.map(Bytes::from_static))).boxed()
    }

    async fn read_all(store: &SharedStore, key: &str, range: Option<ByteRange>) -> Vec<u8> {
        match range {
            None => read_to_vec(store.as_ref(), key).await.unwrap(),
            Some(r) => {
                let mut read = store.read(key, Some(r)).await.unwrap();
                let mut out = Vec::new();
                while let Some(c) = read.body.next().await {
                    out.extend_from_slice(&c.unwrap());
                }
                out
            }
        }
    }

    #[tokio::test]
    async fn put_read_range_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_storage(&format!("file://{}", dir.path().display()))
            .await
            .unwrap();
        store
            .put_bytes("a/b/c.ts", Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        assert_eq!(read_all(&store, "a/b/c.ts", None).await, b"0123456789");
        assert_eq!(
            read_all(&store, "a/b/c.ts", Some(ByteRange { start: 2, end: 4 })).await,
            b"234"
        );
        assert_eq!(store.head("a/b/c.ts").await.unwrap().size, 10);
        store.delete_prefix("a").await.unwrap();
        assert!(matches!(
            store.head("a/b/c.ts").await,
            Err(StorageError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn an_object_moves_to_the_cold_folder_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let (hot, cold) = (dir.path().join("objects"), dir.path().join("cold"));
        let url = format!("file://{}?cold={}", hot.display(), cold.display());
        let store = open_storage(&url).await.unwrap();
        assert!(store.has_cold_tier());
        store
            .put_bytes("uploads/u1", Bytes::from_static(b"original"))
            .await
            .unwrap();
        store.move_to("uploads/u1", Tier::Cold).await.unwrap();
        assert!(matches!(
            store.head("uploads/u1").await,
            Err(StorageError::NotFound(_))
        ));
        assert_eq!(std::fs::read(cold.join("uploads/u1")).unwrap(), b"original");
        // Asking again (a move cut short, then retried) changes nothing.
        store.move_to("uploads/u1", Tier::Cold).await.unwrap();
        store.move_to("uploads/u1", Tier::Hot).await.unwrap();
        store.move_to("uploads/u1", Tier::Hot).await.unwrap();
        assert_eq!(read_all(&store, "uploads/u1", None).await, b"original");
        assert!(!cold.join("uploads/u1").exists());
        assert!(matches!(
            store.move_to("uploads/none", Tier::Cold).await,
            Err(StorageError::NotFound(_))
        ));
        // A delete removes a cold object too.
        store.move_to("uploads/u1", Tier::Cold).await.unwrap();
        store.delete("uploads/u1").await.unwrap();
        assert!(!cold.join("uploads/u1").exists());
    }

    #[tokio::test]
    async fn a_store_without_a_cold_folder_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_storage(&format!("file://{}", dir.path().display()))
            .await
            .unwrap();
        assert!(!store.has_cold_tier());
        assert!(matches!(
            store.move_to("uploads/u1", Tier::Cold).await,
            Err(StorageError::NoColdTier)
        ));
        assert!(matches!(
            FileUrl::parse("file:///x?hot=/y"),
            Err(StorageError::UnsupportedUrl(_))
        ));
        assert_eq!(
            FileUrl::parse("file://data/objects?cold=/mnt/archive").unwrap(),
            FileUrl {
                root: "data/objects".into(),
                cold: Some("/mnt/archive".into())
            }
        );
    }

    #[tokio::test]
    async fn a_relative_root_gives_absolute_local_paths() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(dir.path(), &cwd);
        let store = open_storage(&format!("file://{}", rel.display()))
            .await
            .unwrap();
        let local = store.local_path("uploads/x").unwrap();
        assert!(local.is_absolute(), "{}", local.display());
    }

    /// `target` relative to `base` (both absolute), with `..` steps.
    fn pathdiff(target: &Path, base: &Path) -> PathBuf {
        let (t, b): (Vec<_>, Vec<_>) = (target.components().collect(), base.components().collect());
        let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = PathBuf::new();
        for _ in common..b.len() {
            out.push("..");
        }
        for c in &t[common..] {
            out.push(c);
        }
        out
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_storage(&format!("file://{}", dir.path().display()))
            .await
            .unwrap();
        for key in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "a\\b",
            "",
            "a/%2e%2e/b",
        ] {
            assert!(
                matches!(store.head(key).await, Err(StorageError::InvalidKey(_))),
                "{key}"
            );
        }
    }

    #[tokio::test]
    async fn append_keeps_bytes_before_an_interruption_and_cuts_unacknowledged_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_storage(&format!("file://{}", dir.path().display()))
            .await
            .unwrap();
        let out = store
            .append("up/1", 0, stream(vec![Ok(b"abc"), Ok(b"def")]))
            .await
            .unwrap();
        assert_eq!(out.new_len, 6);
        let broken = stream(vec![Ok(b"gh"), Err(io::Error::other("client went away"))]);
        let out = store.append("up/1", 6, broken).await.unwrap();
        assert_eq!(out.new_len, 8);
        assert!(out.interrupted.is_some());
        // The database said 6: the two unacknowledged bytes are cut and replaced.
        let out = store
            .append("up/1", 6, stream(vec![Ok(b"GH")]))
            .await
            .unwrap();
        assert_eq!(out.new_len, 8);
        assert_eq!(read_all(&store, "up/1", None).await, b"abcdefGH");
        assert!(matches!(
            store.append("up/1", 20, stream(vec![])).await,
            Err(StorageError::OffsetMismatch { actual: 8, .. })
        ));
        store.truncate("up/1", 3).await.unwrap();
        assert_eq!(read_all(&store, "up/1", None).await, b"abc");
    }

    /// Long bodies are handed to the disk in windows while they arrive (from an offset
    /// within the file, and cut by an interruption): the bytes must be the same.
    #[tokio::test]
    async fn a_body_longer_than_many_writeback_windows_is_stored_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_storage(&format!("file://{}", dir.path().display()))
            .await
            .unwrap();
        let data: Vec<u8> = (0..(5 * WRITEBACK_EVERY as usize + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        let chunks = |from: usize, to: usize| -> Vec<io::Result<Bytes>> {
            data[from..to]
                .chunks(100_003)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect()
        };
        let first = 7_777;
        store
            .append("up/2", 0, futures::stream::iter(chunks(0, first)).boxed())
            .await
            .unwrap();
        let mut rest = chunks(first, data.len() - 1000);
        rest.push(Err(io::Error::other("client went away")));
        let out = store
            .append("up/2", first as u64, futures::stream::iter(rest).boxed())
            .await
            .unwrap();
        assert!(out.interrupted.is_some());
        assert_eq!(out.new_len, (data.len() - 1000) as u64);
        let out = store
            .append(
                "up/2",
                out.new_len,
                futures::stream::iter(chunks(data.len() - 1000, data.len())).boxed(),
            )
            .await
            .unwrap();
        assert_eq!(out.new_len, data.len() as u64);
        assert!(read_all(&store, "up/2", None).await == data);
    }
}
