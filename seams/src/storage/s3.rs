//! S3-compatible object storage (aws-sdk-s3): `s3://BUCKET?endpoint=URL&region=R&path_style=true`,
//! credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
//!
//! Resumable objects (tus uploads) become one S3 multipart upload: full parts of
//! `PART_SIZE` are uploaded as they fill, the tail shorter than a part is kept as a
//! small object, and a manifest object records the parts and the tail. The manifest is
//! written last and keeps the state before the last append, so the last append can be
//! taken back (a chunk that failed its checksum) and an upload resumes into the same
//! multipart upload. Memory holds at most one part.
//!
//! The cold tier is a second bucket (`cold_bucket=`), a storage class (`cold_class=`,
//! one that reads at once, such as STANDARD_IA or GLACIER_IR), or both: a move copies
//! the object server-side, then deletes the source.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, StorageClass,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{
    AppendOutcome, ByteRange, ByteStream, ObjectMeta, ObjectRead, ObjectStore, Result,
    StorageError, Tier, check_key,
};

/// S3's minimum part size is 5 MiB; 8 MiB keeps part counts low for large lectures.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// S3 copies objects up to 5 GiB in one request; larger ones in parts.
const SINGLE_COPY_LIMIT: u64 = 5 << 30;
const COPY_PART_SIZE: u64 = 1 << 30;

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    cold: Option<ColdTier>,
    /// Objects larger than this are copied in parts of `copy_part_size`.
    single_copy_limit: u64,
    copy_part_size: u64,
}

/// Where cold objects go: another bucket, another storage class, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdTier {
    pub bucket: Option<String>,
    pub class: Option<StorageClass>,
}

fn backend<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Io(std::io::Error::other(e.to_string()))
}

fn sdk_error<E>(key: &str, e: aws_sdk_s3::error::SdkError<E>) -> StorageError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let not_found = match &e {
        aws_sdk_s3::error::SdkError::ServiceError(se) => {
            se.raw().status().as_u16() == 404
                || matches!(
                    se.err().code(),
                    Some("NoSuchKey" | "NotFound" | "NoSuchUpload")
                )
        }
        _ => false,
    };
    if not_found {
        StorageError::NotFound(key.to_string())
    } else {
        let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
        StorageError::Io(std::io::Error::other(format!(
            "S3 request for {key} failed: {detail}"
        )))
    }
}

/// What an `s3://` URL says.
#[derive(Debug, PartialEq)]
pub struct S3Url {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    /// Key prefix, so installations can share a bucket.
    pub prefix: String,
    pub cold: Option<ColdTier>,
}

/// Parses `s3://bucket?endpoint=…&region=…&path_style=true&prefix=…&cold_bucket=…&cold_class=…`.
pub fn parse_url(url: &str) -> Result<S3Url> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| StorageError::UnsupportedUrl(url.into()))?;
    let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
    let bucket = bucket.trim_end_matches('/').to_string();
    if bucket.is_empty() {
        return Err(StorageError::UnsupportedUrl(url.into()));
    }
    let (mut endpoint, mut region, mut path_style, mut prefix) =
        (None, "us-east-1".to_string(), false, String::new());
    let (mut cold_bucket, mut cold_class) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "endpoint" => endpoint = Some(v),
            "region" => region = v,
            "path_style" => path_style = v == "true" || v == "1",
            "prefix" => {
                check_key(&v)
                    .map_err(|_| StorageError::UnsupportedUrl(format!("{url} (bad prefix)")))?;
                prefix = v;
            }
            "cold_bucket" if v.is_empty() || v == bucket => {
                return Err(StorageError::UnsupportedUrl(format!(
                    "{url} (cold_bucket must name another bucket; cold_class alone keeps one bucket)"
                )));
            }
            "cold_bucket" => cold_bucket = Some(v),
            "cold_class" => cold_class = Some(cold_class_of(url, &v)?),
            _ => {
                return Err(StorageError::UnsupportedUrl(format!(
                    "{url} (unknown parameter {k})"
                )));
            }
        }
    }
    let cold = (cold_bucket.is_some() || cold_class.is_some()).then_some(ColdTier {
        bucket: cold_bucket,
        class: cold_class,
    });
    Ok(S3Url {
        bucket,
        endpoint,
        region,
        path_style,
        prefix,
        cold,
    })
}

/// A storage class S3 names (STANDARD_IA, GLACIER_IR, …), refused if unknown.
fn cold_class_of(url: &str, word: &str) -> Result<StorageClass> {
    let class = StorageClass::from(word);
    if StorageClass::values().contains(&word) && class != StorageClass::Standard {
        Ok(class)
    } else {
        Err(StorageError::UnsupportedUrl(format!(
            "{url} (cold_class {word:?} is not one of {:?} but STANDARD)",
            StorageClass::values()
        )))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Part {
    number: i32,
    etag: String,
    size: u64,
}

/// The committed state of a resumable object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    upload_id: Option<String>,
    parts: Vec<Part>,
    tail_gen: u64,
    tail_size: u64,
    /// The state before the last append, so a chunk that failed its checksum after
    /// it was stored can be taken back.
    prev: Option<Box<Manifest>>,
}

impl Manifest {
    fn total(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum::<u64>() + self.tail_size
    }
}

fn manifest_key(key: &str) -> String {
    format!("{key}.tus")
}

fn tail_key(key: &str, generation: u64) -> String {
    format!("{key}.tail.{generation}")
}

impl S3Store {
    pub async fn open(url: &str) -> Result<Self> {
        let S3Url {
            bucket,
            endpoint,
            region,
            path_style,
            prefix,
            cold,
        } = parse_url(url)?;
        let key = std::env::var("AWS_ACCESS_KEY_ID").map_err(|_| {
            StorageError::UnsupportedUrl(
                "S3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            )
        })?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").map_err(|_| {
            StorageError::UnsupportedUrl(
                "S3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            )
        })?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        // S3 services answer 500/503 now and then (and SeaweedFS right after start):
        // retry those with back-off before giving up.
        let retry = aws_sdk_s3::config::retry::RetryConfig::standard()
            .with_max_attempts(8)
            .with_initial_backoff(std::time::Duration::from_millis(200));
        // A store that stops answering fails a call in seconds, not at the OS's TCP
        // time limits; a large part still has time to stream.
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .read_timeout(std::time::Duration::from_secs(30))
            .build();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .retry_config(retry)
            .timeout_config(timeouts)
            .region(Region::new(region))
            .credentials_provider(Credentials::new(key, secret, None, None, "lectern-env"))
            .force_path_style(path_style)
            .http_client(http);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        let store = S3Store {
            client: Client::from_conf(config.build()),
            bucket,
            prefix,
            cold,
            single_copy_limit: SINGLE_COPY_LIMIT,
            copy_part_size: COPY_PART_SIZE,
        };
        store.ensure_bucket(&store.bucket).await?;
        if let Some(cold) = store.cold.as_ref().and_then(|c| c.bucket.as_deref()) {
            store.ensure_bucket(cold).await?;
        }
        Ok(store)
    }

    /// Copies objects larger than `limit` in parts of `part` bytes (S3 wants parts of
    /// 5 MiB at least); for tests of the multipart path on small objects.
    pub fn with_copy_parts(mut self, limit: u64, part: u64) -> Self {
        self.single_copy_limit = limit;
        self.copy_part_size = part;
        self
    }

    /// Creates the bucket when it does not exist (development and tests; production
    /// buckets are usually made by their operators).
    async fn ensure_bucket(&self, bucket: &str) -> Result<()> {
        let exists = || async {
            self.client
                .head_bucket()
                .bucket(bucket)
                .send()
                .await
                .is_ok()
        };
        if exists().await {
            return Ok(());
        }
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            // Another process may have created it meanwhile.
            Err(_) if exists().await => Ok(()),
            Err(e) => Err(sdk_error(bucket, e)),
        }
    }

    /// The object name in the bucket of a logical key.
    fn k(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.k(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.body.collect().await.map_err(backend)?.into_bytes(),
            )),
            Err(e) => match sdk_error(key, e) {
                StorageError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn load_manifest(&self, key: &str) -> Result<Option<Manifest>> {
        let Some(bytes) = self.get_bytes(&manifest_key(key)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(backend)
    }

    async fn save_manifest(&self, key: &str, m: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec(m).map_err(backend)?;
        self.put_bytes(&manifest_key(key), bytes.into()).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<Part> {
        let size = data.len() as u64;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.k(key))
            .upload_id(upload_id)
            .part_number(number)
            .body(S3Body::from(data))
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(Part {
            number,
            etag: out.e_tag().unwrap_or_default().to_string(),
            size,
        })
    }

    async fn delete_keys(&self, bucket: &str, keys: Vec<String>) -> Result<()> {
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(self.k(k))
                        .build()
                        .map_err(backend)
                })
                .collect::<Result<Vec<_>>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(backend)?;
            self.client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| sdk_error("(batch)", e))?;
        }
        Ok(())
    }

    fn cold_bucket(&self) -> Option<&str> {
        self.cold.as_ref().and_then(|c| c.bucket.as_deref())
    }

    /// An object's size and storage class (S3 names no class for STANDARD).
    async fn head_in(&self, bucket: &str, key: &str) -> Result<(u64, StorageClass)> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(self.k(key))
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        let class = out.storage_class().cloned();
        Ok((
            out.content_length().unwrap_or(0).max(0) as u64,
            class.unwrap_or(StorageClass::Standard),
        ))
    }

    async fn delete_in(&self, bucket: &str, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(self.k(key))
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(())
    }

    /// A server-side copy of `key` between buckets (or onto itself, into `class`).
    async fn copy(
        &self,
        from: &str,
        to: &str,
        key: &str,
        class: Option<StorageClass>,
    ) -> Result<()> {
        let (size, now) = self.head_in(from, key).await?;
        if from == to && class.as_ref().is_none_or(|c| *c == now) {
            return Ok(()); // S3 refuses a copy onto itself that changes nothing
        }
        if size > self.single_copy_limit {
            return self.copy_in_parts(from, to, key, size, class).await;
        }
        self.client
            .copy_object()
            .copy_source(format!("{from}/{}", self.k(key)))
            .bucket(to)
            .key(self.k(key))
            .set_storage_class(class)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(())
    }

    async fn copy_in_parts(
        &self,
        from: &str,
        to: &str,
        key: &str,
        size: u64,
        class: Option<StorageClass>,
    ) -> Result<()> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(to)
            .key(self.k(key))
            .set_storage_class(class)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        let id = upload.upload_id().ok_or_else(|| backend("no upload id"))?;
        let copied = self.copy_parts(from, to, key, size, id).await;
        let finished = match copied {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(to)
                .key(self.k(key))
                .upload_id(id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| sdk_error(key, e))
                .map(drop),
            Err(e) => Err(e),
        };
        if finished.is_err() {
            let abort = self.client.abort_multipart_upload().bucket(to);
            let _ = abort.key(self.k(key)).upload_id(id).send().await;
        }
        finished
    }

    async fn copy_parts(
        &self,
        from: &str,
        to: &str,
        key: &str,
        size: u64,
        id: &str,
    ) -> Result<Vec<CompletedPart>> {
        let mut parts = Vec::new();
        for (i, start) in (0..size).step_by(self.copy_part_size as usize).enumerate() {
            let end = (start + self.copy_part_size).min(size) - 1;
            let number = i as i32 + 1;
            let out = self
                .client
                .upload_part_copy()
                .copy_source(format!("{from}/{}", self.k(key)))
                .copy_source_range(format!("bytes={start}-{end}"))
                .bucket(to)
                .key(self.k(key))
                .upload_id(id)
                .part_number(number)
                .send()
                .await
                .map_err(|e| sdk_error(key, e))?;
            let etag = out.copy_part_result().and_then(|r| r.e_tag());
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag.map(str::to_string))
                    .build(),
            );
        }
        Ok(parts)
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(self.k(prefix))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| sdk_error(prefix, e))?;
            let strip = if self.prefix.is_empty() {
                0
            } else {
                self.prefix.len() + 1
            };
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().and_then(|k| k.get(strip..)).map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(keys)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<()> {
        check_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.k(key))
            .body(S3Body::from(data))
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(())
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        check_key(key)?;
        let body = S3Body::from_path(path).await.map_err(backend)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.k(key))
            .body(body)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        check_key(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.k(key))
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(ObjectMeta {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            modified_unix: out.last_modified().map(|t| t.secs()).unwrap_or(0),
            etag: out
                .e_tag()
                .map(str::to_string)
                .unwrap_or_else(|| "\"0\"".into()),
        })
    }

    async fn read(&self, key: &str, range: Option<ByteRange>) -> Result<ObjectRead> {
        check_key(key)?;
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.k(key));
        if let Some(r) = range {
            req = req.range(format!("bytes={}-{}", r.start, r.end));
        }
        let out = req.send().await.map_err(|e| sdk_error(key, e))?;
        let meta = ObjectMeta {
            size: match (range, out.content_range()) {
                (Some(_), Some(cr)) => cr
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                _ => out.content_length().unwrap_or(0).max(0) as u64,
            },
            modified_unix: out.last_modified().map(|t| t.secs()).unwrap_or(0),
            etag: out
                .e_tag()
                .map(str::to_string)
                .unwrap_or_else(|| "\"0\"".into()),
        };
        let reader = out.body.into_async_read();
        Ok(ObjectRead {
            meta,
            body: tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024).boxed(),
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        if let Some(m) = self.load_manifest(key).await? {
            if let Some(id) = &m.upload_id {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(self.k(key))
                    .upload_id(id)
                    .send()
                    .await;
            }
            self.delete_keys(
                &self.bucket,
                vec![manifest_key(key), tail_key(key, m.tail_gen)],
            )
            .await?;
        }
        self.delete_in(&self.bucket, key).await?;
        if let Some(cold) = self.cold_bucket() {
            self.delete_in(cold, key).await?;
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        check_key(prefix)?;
        for bucket in std::iter::once(self.bucket.as_str()).chain(self.cold_bucket()) {
            let keys = self.list(bucket, &format!("{prefix}/")).await?;
            self.delete_keys(bucket, keys).await?;
        }
        Ok(())
    }

    async fn download_to(&self, key: &str, dest: &Path) -> Result<()> {
        let mut read = self.read(key, None).await?;
        let mut file = tokio::fs::File::create(dest).await?;
        while let Some(chunk) = read.body.next().await {
            file.write_all(&chunk?).await?;
        }
        file.flush().await?;
        Ok(())
    }

    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }

    async fn append(&self, key: &str, offset: u64, mut body: ByteStream) -> Result<AppendOutcome> {
        check_key(key)?;
        let mut base = self.load_manifest(key).await?.unwrap_or_default();
        if base.total() > offset {
            // The last append was stored but never acknowledged (a crash between the
            // two): resume from the state before it.
            match base.prev.take() {
                Some(prev) if prev.total() == offset => base = *prev,
                _ => {
                    return Err(StorageError::OffsetMismatch {
                        key: key.into(),
                        expected: offset,
                        actual: base.total(),
                    });
                }
            }
        }
        if base.total() != offset {
            return Err(StorageError::OffsetMismatch {
                key: key.into(),
                expected: offset,
                actual: base.total(),
            });
        }
        let mut buffer = BytesMut::with_capacity(PART_SIZE);
        if base.tail_size > 0 {
            let tail = self
                .get_bytes(&tail_key(key, base.tail_gen))
                .await?
                .ok_or_else(|| StorageError::NotFound(tail_key(key, base.tail_gen)))?;
            buffer.extend_from_slice(&tail);
        }
        let mut next = base.clone();
        next.prev = None;
        let mut next_number = base.parts.last().map(|p| p.number + 1).unwrap_or(1);
        let mut received = 0u64;
        let mut interrupted = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                // What arrived before the break is kept, as with files; a caller that
                // wants all or nothing (a checksummed chunk) truncates back.
                Err(e) => {
                    interrupted = Some(e);
                    break;
                }
            };
            received += chunk.len() as u64;
            buffer.extend_from_slice(&chunk);
            while buffer.len() >= PART_SIZE {
                let part = buffer.split_to(PART_SIZE).freeze();
                if next.upload_id.is_none() {
                    let created = self
                        .client
                        .create_multipart_upload()
                        .bucket(&self.bucket)
                        .key(self.k(key))
                        .send()
                        .await
                        .map_err(|e| sdk_error(key, e))?;
                    next.upload_id = created.upload_id().map(str::to_string);
                }
                let upload_id = next
                    .upload_id
                    .clone()
                    .ok_or_else(|| backend("S3 returned no upload id"))?;
                next.parts
                    .push(self.upload_part(key, &upload_id, next_number, part).await?);
                next_number += 1;
            }
        }
        if received == 0 {
            return Ok(AppendOutcome {
                new_len: offset,
                interrupted,
            });
        }
        next.tail_gen = base.tail_gen + 1;
        next.tail_size = buffer.len() as u64;
        if next.tail_size > 0 {
            self.put_bytes(&tail_key(key, next.tail_gen), buffer.freeze())
                .await?;
        }
        let mut prev = base.clone();
        prev.prev = None;
        next.prev = Some(Box::new(prev));
        self.save_manifest(key, &next).await?;
        let new_len = next.total();
        Ok(AppendOutcome {
            new_len,
            interrupted,
        })
    }

    async fn truncate(&self, key: &str, len: u64) -> Result<()> {
        let Some(m) = self.load_manifest(key).await? else {
            return if len == 0 {
                Ok(())
            } else {
                Err(StorageError::NotFound(key.into()))
            };
        };
        if m.total() == len {
            return Ok(());
        }
        match m.prev {
            Some(prev) if prev.total() == len => self.save_manifest(key, &prev).await,
            _ => Err(StorageError::OffsetMismatch {
                key: key.into(),
                expected: len,
                actual: m.total(),
            }),
        }
    }

    async fn finish_append(&self, key: &str) -> Result<()> {
        let Some(m) = self.load_manifest(key).await? else {
            return Ok(());
        };
        let tail = if m.tail_size > 0 {
            self.get_bytes(&tail_key(key, m.tail_gen))
                .await?
                .ok_or_else(|| StorageError::NotFound(tail_key(key, m.tail_gen)))?
        } else {
            Bytes::new()
        };
        match &m.upload_id {
            None => self.put_bytes(key, tail).await?,
            Some(upload_id) => {
                let mut parts = m.parts.clone();
                if !tail.is_empty() {
                    let number = parts.last().map(|p| p.number + 1).unwrap_or(1);
                    parts.push(self.upload_part(key, upload_id, number, tail).await?);
                }
                let completed = CompletedMultipartUpload::builder()
                    .set_parts(Some(
                        parts
                            .iter()
                            .map(|p| {
                                CompletedPart::builder()
                                    .part_number(p.number)
                                    .e_tag(&p.etag)
                                    .build()
                            })
                            .collect(),
                    ))
                    .build();
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(self.k(key))
                    .upload_id(upload_id)
                    .multipart_upload(completed)
                    .send()
                    .await
                    .map_err(|e| sdk_error(key, e))?;
            }
        }
        self.delete_keys(
            &self.bucket,
            vec![manifest_key(key), tail_key(key, m.tail_gen)],
        )
        .await
    }

    async fn presign_get(
        &self,
        key: &str,
        expires_in: std::time::Duration,
        content_type: &str,
        disposition: Option<&str>,
    ) -> Result<Option<String>> {
        check_key(key)?;
        let config =
            aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in).map_err(backend)?;
        let signed = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.k(key))
            .response_content_type(content_type)
            .set_response_content_disposition(disposition.map(str::to_string))
            .presigned(config)
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(Some(signed.uri().to_string()))
    }

    fn has_cold_tier(&self) -> bool {
        self.cold.is_some()
    }

    async fn move_to(&self, key: &str, tier: Tier) -> Result<()> {
        check_key(key)?;
        let cold = self.cold.as_ref().ok_or(StorageError::NoColdTier)?;
        let cold_bucket = cold.bucket.as_deref().unwrap_or(&self.bucket);
        let (from, to, class) = match tier {
            Tier::Cold => (self.bucket.as_str(), cold_bucket, cold.class.clone()),
            Tier::Hot => (
                cold_bucket,
                self.bucket.as_str(),
                cold.class.as_ref().map(|_| StorageClass::Standard),
            ),
        };
        if from == to {
            return self.copy(from, to, key, class).await;
        }
        match self.copy(from, to, key, class).await {
            // Moved before: the source is gone and the target holds it.
            Err(StorageError::NotFound(_)) => self.head_in(to, key).await.map(drop),
            Err(e) => Err(e),
            Ok(()) => self.delete_in(from, key).await,
        }
    }

    async fn check(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| sdk_error(&self.bucket, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = parse_url("s3://media?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&path_style=true&prefix=school-a").unwrap();
        assert_eq!(u.bucket, "media");
        assert_eq!(u.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(u.region, "eu-west-1");
        assert!(u.path_style);
        assert_eq!(u.prefix, "school-a");
        let u = parse_url("s3://b?endpoint=http://h:1").unwrap();
        assert_eq!(
            (
                u.endpoint.as_deref(),
                u.region.as_str(),
                u.path_style,
                u.prefix.as_str()
            ),
            (Some("http://h:1"), "us-east-1", false, "")
        );
        assert!(parse_url("s3://").is_err());
        assert!(parse_url("s3://b?secret=x").is_err());
        assert!(parse_url("s3://b?prefix=../x").is_err());
        let u = parse_url("s3://b?cold_bucket=b-cold&cold_class=GLACIER_IR").unwrap();
        assert_eq!(
            u.cold,
            Some(ColdTier {
                bucket: Some("b-cold".into()),
                class: Some(StorageClass::GlacierIr)
            })
        );
        assert_eq!(parse_url("s3://b").unwrap().cold, None);
        assert!(parse_url("s3://b?cold_class=STANDARD").is_err());
        assert!(parse_url("s3://b?cold_class=ICE").is_err());
    }
}
