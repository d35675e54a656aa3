//! tus 1.0 from the client's side: creating an upload, asking where it stands, and
//! sending a file's chunks from there, each with its sha256, at a limited rate.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use lectern_seams::ids::LectureId;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::api::{ATTEMPTS, Api, ClientError, backoff, error_of, is_transient};
use crate::files::Source;

const VERSION: &str = "1.0.0";
const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// tus's status for a chunk whose Upload-Checksum does not match.
const CHECKSUM_MISMATCH: u16 = 460;

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs.
pub fn metadata(lecture: &LectureId, source: &Source) -> String {
    [
        ("lecture_id", lecture.as_str()),
        ("filename", source.name.as_str()),
        ("filetype", source.filetype),
    ]
    .iter()
    .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
    .collect::<Vec<_>>()
    .join(",")
}

/// `Upload-Checksum` of a chunk.
pub fn checksum(chunk: &[u8]) -> String {
    format!("sha256 {}", STANDARD.encode(Sha256::digest(chunk)))
}

/// Spaces the bytes sent so that they average at most `bytes_per_sec`.
pub struct Pacer {
    bytes_per_sec: u64,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(bytes_per_sec: u64) -> Self {
        Pacer {
            bytes_per_sec: bytes_per_sec.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Pieces small enough for about 16 wake-ups a second.
    fn piece(&self) -> usize {
        (self.bytes_per_sec / 16).clamp(1024, 64 * 1024) as usize
    }

    /// Waits until `n` more bytes may go. An idle spell earns no burst.
    async fn take(&self, n: usize) {
        let mut next = self.next.lock().await;
        let start = (*next).max(Instant::now());
        tokio::time::sleep_until(start).await;
        *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
    }
}

/// Told the file's position handed to the connection.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Why a PATCH did not move the upload on.
enum Stalled {
    /// Ask where the upload stands, wait if told, and go on from there.
    Retry(ClientError, Duration),
    /// The upload is gone (expired or removed): a new one is needed.
    Gone,
    Fatal(ClientError),
}

pub struct Tus<'a> {
    pub api: &'a Api,
    pub pacer: Option<Arc<Pacer>>,
    pub chunk_size: u64,
}

impl Tus<'_> {
    /// Creates an upload for the lecture and returns its URL.
    pub async fn create(&self, lecture: &LectureId, source: &Source) -> Result<Url, ClientError> {
        let url = self.api.url("api/uploads");
        let meta = metadata(lecture, source);
        let res = self
            .api
            .send("creating the upload", false, || {
                self.api
                    .request(Method::POST, url.clone())
                    .header("Tus-Resumable", VERSION)
                    .header("Upload-Length", source.size)
                    .header("Upload-Metadata", &meta)
            })
            .await?;
        if res.status() != StatusCode::CREATED {
            return Err(error_of(res).await);
        }
        let location = res
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ClientError::Protocol("the upload was created without a Location".into())
            })?;
        let upload = url
            .join(location)
            .map_err(|e| ClientError::Protocol(format!("the upload's Location: {e}")))?;
        // The token goes only where the server itself is.
        if !self.api.same_origin(&upload) {
            return Err(ClientError::Protocol(format!(
                "the server put the upload on another origin ({upload}); not following"
            )));
        }
        Ok(upload)
    }

    /// Where the upload stands; None when it expired or is gone.
    pub async fn offset(&self, upload: &Url) -> Result<Option<u64>, ClientError> {
        let res = self
            .api
            .send("asking where the upload stands", true, || {
                self.api
                    .request(Method::HEAD, upload.clone())
                    .header("Tus-Resumable", VERSION)
            })
            .await?;
        match res.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
            s if s.is_success() => upload_offset(&res).map(Some),
            _ => Err(error_of(res).await),
        }
    }

    /// Sends `source` from `offset` to its end, telling `progress` each position handed
    /// to the connection. Returns Ok(false) when the upload is gone and must be created
    /// anew.
    pub async fn send_from(
        &self,
        upload: &Url,
        source: &Source,
        mut offset: u64,
        progress: Progress,
    ) -> Result<bool, ClientError> {
        let mut file = tokio::fs::File::open(&source.path)
            .await
            .map_err(|e| ClientError::Io(source.shown.clone(), e))?;
        let mut failures = 0;
        while offset < source.size {
            let chunk = read_chunk(&mut file, source, offset, self.chunk_size).await?;
            match self.patch(upload, offset, chunk, progress.clone()).await {
                Ok(new_offset) => {
                    offset = new_offset;
                    failures = 0;
                }
                Err(Stalled::Gone) => return Ok(false),
                Err(Stalled::Fatal(e)) => return Err(e),
                Err(Stalled::Retry(e, wait)) => {
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(e);
                    }
                    tokio::time::sleep(wait.max(backoff(failures, None))).await;
                    match self.offset(upload).await? {
                        Some(o) => offset = o,
                        None => return Ok(false),
                    }
                }
            }
            progress(offset);
        }
        Ok(true)
    }

    /// One PATCH of `chunk` at `offset`; the new offset.
    async fn patch(
        &self,
        upload: &Url,
        offset: u64,
        chunk: Bytes,
        progress: Progress,
    ) -> Result<u64, Stalled> {
        let sum = checksum(&chunk);
        let len = chunk.len();
        let body = paced(chunk, offset, self.pacer.clone(), progress);
        let sent = self
            .api
            .request(Method::PATCH, upload.clone())
            .header("Tus-Resumable", VERSION)
            .header("Upload-Offset", offset)
            .header("Upload-Checksum", sum)
            .header(CONTENT_TYPE, OFFSET_STREAM)
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        let res = sent.map_err(|e| {
            Stalled::Retry(
                ClientError::Network("sending a chunk".into(), e),
                Duration::ZERO,
            )
        })?;
        match res.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => upload_offset(&res).map_err(Stalled::Fatal),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(Stalled::Gone),
            // The access token expired in a long upload: sign in again and go on.
            StatusCode::UNAUTHORIZED => match self.api.renew().await {
                Ok(true) => Err(Stalled::Retry(error_of(res).await, Duration::ZERO)),
                Ok(false) => Err(Stalled::Fatal(error_of(res).await)),
                Err(e) => Err(Stalled::Fatal(e)),
            },
            StatusCode::CONFLICT => Err(Stalled::Retry(error_of(res).await, Duration::ZERO)),
            s if s.as_u16() == CHECKSUM_MISMATCH || is_transient(s) => {
                let wait = backoff(1, Some(res.headers()));
                Err(Stalled::Retry(error_of(res).await, wait))
            }
            _ => Err(Stalled::Fatal(error_of(res).await)),
        }
    }
}

fn upload_offset(res: &reqwest::Response) -> Result<u64, ClientError> {
    res.headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ClientError::Protocol("the server's answer has no Upload-Offset".into()))
}

async fn read_chunk(
    file: &mut tokio::fs::File,
    source: &Source,
    offset: u64,
    chunk_size: u64,
) -> Result<Bytes, ClientError> {
    let len = chunk_size.min(source.size - offset) as usize;
    let mut buf = vec![0; len];
    let read = async {
        file.seek(SeekFrom::Start(offset)).await?;
        file.read_exact(&mut buf).await
    };
    read.await.map_err(|e| {
        ClientError::Io(format!("{} (changed while it was sent?)", source.shown), e)
    })?;
    Ok(Bytes::from(buf))
}

/// The chunk (starting at `offset`) as a stream of pieces, each let go when the pacer
/// allows and then told to `progress`.
fn paced(
    chunk: Bytes,
    offset: u64,
    pacer: Option<Arc<Pacer>>,
    progress: Progress,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let piece = pacer.as_ref().map_or(64 * 1024, |p| p.piece());
    let state = (chunk, offset, pacer, progress);
    futures::stream::unfold(state, move |(mut rest, at, pacer, progress)| async move {
        if rest.is_empty() {
            return None;
        }
        let next = rest.split_to(piece.min(rest.len()));
        if let Some(p) = &pacer {
            p.take(next.len()).await;
        }
        let at = at + next.len() as u64;
        progress(at);
        Some((Ok(next), (rest, at, pacer, progress)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn metadata_is_base64_pairs_the_server_reads() {
        let lecture = LectureId::parse("0b9e8c7a-1d2f-4e3a-9b8c-7d6e5f4a3b2c").unwrap();
        let source = Source {
            shown: "x".into(),
            path: "/x".into(),
            name: "Lecture 1, intro.mp4".into(),
            size: 1,
            modified_ns: 0,
            title: "Lecture 1, intro".into(),
            filetype: "video/mp4",
        };
        let header = metadata(&lecture, &source);
        let pairs: Vec<(&str, String)> = header
            .split(',')
            .map(|p| {
                let (k, v) = p.split_once(' ').unwrap();
                (k, String::from_utf8(STANDARD.decode(v).unwrap()).unwrap())
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("lecture_id", lecture.to_string()),
                ("filename", "Lecture 1, intro.mp4".to_string()),
                ("filetype", "video/mp4".to_string()),
            ]
        );
    }

    #[test]
    fn a_checksum_is_the_chunks_sha256() {
        // sha256("abc"), as RFC 6234 gives it, in base64.
        assert_eq!(
            checksum(b"abc"),
            "sha256 ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    /// 48 KiB at 64 KiB/s takes about 0.7 s (the first piece goes at once), and progress
    /// counts up to the chunk's end from its offset.
    #[tokio::test]
    async fn a_limited_chunk_takes_its_time_and_reports_where_it_is() {
        let seen = Arc::new(AtomicU64::new(0));
        let progress: Progress = {
            let seen = seen.clone();
            Arc::new(move |at| seen.store(at, Ordering::SeqCst))
        };
        let pacer = Arc::new(Pacer::new(64 * 1024));
        let started = Instant::now();
        let chunk = Bytes::from(vec![7u8; 48 * 1024]);
        let pieces: Vec<_> = paced(chunk, 1000, Some(pacer), progress).collect().await;
        let total: usize = pieces.iter().map(|p| p.as_ref().unwrap().len()).sum();
        assert_eq!(total, 48 * 1024);
        assert_eq!(seen.load(Ordering::SeqCst), 1000 + 48 * 1024);
        let took = started.elapsed().as_secs_f64();
        // 44 KiB after the first 4 KiB piece, at 64 KiB/s.
        assert!((0.65..1.5).contains(&took), "{took} s");
    }
}
