//! How a playback file's bytes reach the player once `/play` has checked its token.
//! Lectern decides; a component built for sending files delivers: tower-http's file
//! service for objects on this machine, nginx after an `X-Accel-Redirect`, or the object
//! store itself through presigned URLs. Only objects in a store that is neither local
//! nor presigned are streamed through Lectern.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lectern_seams::storage::ObjectMeta;
use tower::ServiceExt;

use crate::CatalogState;
use crate::error::CatalogError;
use crate::playback::parse_range;

/// How playback bytes reach players (`PLAYBACK_DELIVERY`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Lectern answers: tower-http's file service for a local store, a stream from the
    /// store otherwise.
    #[default]
    Proxy,
    /// Lectern answers `X-Accel-Redirect` into [`NGINX_LOCATION`]; nginx sends the
    /// bytes (`deploy/nginx/lectern.conf`).
    Nginx,
    /// Media playlists list presigned storage URLs that expire with the token, so
    /// segment bytes never pass through Lectern (S3 only).
    Direct,
}

impl Delivery {
    pub const ALL: [Delivery; 3] = [Delivery::Proxy, Delivery::Nginx, Delivery::Direct];

    /// The setting's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Proxy => "proxy",
            Delivery::Nginx => "nginx",
            Delivery::Direct => "direct",
        }
    }
}

/// The internal nginx location a redirect points into: `objects/KEY` for a local
/// store (an `alias` of its folder), `s3/PATH?QUERY` for a presigned S3 URL (a
/// `proxy_pass` to the S3 endpoint).
pub const NGINX_LOCATION: &str = "/_lectern/";

/// One file of a lecture to deliver: its storage key, type and caching.
pub struct PlayFile<'a> {
    pub key: &'a str,
    pub content_type: &'static str,
    pub cache_control: HeaderValue,
    /// Seconds the playback token has left (presigned URLs expire with it).
    pub expires_in: u64,
}

/// The answer for `file`. `NotFound` means the store has no such object (a lecture
/// still in parts answers its playlists from the database instead).
pub async fn deliver(
    s: &CatalogState,
    file: PlayFile<'_>,
    req: Request,
) -> Result<Response, CatalogError> {
    let mut res = match s.config.delivery {
        Delivery::Nginx => nginx_redirect(s, &file).await?,
        Delivery::Direct if file.key.ends_with("/index.m3u8") => {
            let bytes = lectern_seams::storage::read_to_vec(s.store.as_ref(), file.key).await?;
            let text =
                String::from_utf8(bytes).map_err(|e| CatalogError::Internal(e.to_string()))?;
            return direct_media_playlist(s, file.key, &text, file.expires_in, req.method()).await;
        }
        _ => return send_file(s, file, req).await,
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, file.cache_control);
    Ok(res)
}

/// Lectern sends the bytes itself: tower-http's file service for a local store, a
/// stream from any other.
pub async fn send_file(
    s: &CatalogState,
    file: PlayFile<'_>,
    req: Request,
) -> Result<Response, CatalogError> {
    let mut res = match s.store.local_path(file.key) {
        Some(path) => serve_local(path, file.content_type, req).await?,
        None => stream_object(s, file.key, file.content_type, req.method(), req.headers()).await?,
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, file.cache_control);
    Ok(res)
}

/// tower-http's file service: conditional GET (Last-Modified), ranges and HEAD.
async fn serve_local(
    path: std::path::PathBuf,
    content_type: &'static str,
    req: Request,
) -> Result<Response, CatalogError> {
    let mime: mime::Mime = content_type.parse().expect("our content types parse");
    let res = tower_http::services::ServeFile::new_with_mime(path, &mime)
        .oneshot(req)
        .await
        .map_err(|e| CatalogError::Internal(format!("reading a stored file: {e}")))?;
    if res.status() == StatusCode::NOT_FOUND {
        return Err(CatalogError::NotFound("file"));
    }
    Ok(res.map(Body::new))
}

/// An empty answer telling nginx which internal URI to send. Playlists are looked up
/// first, so a lecture still in parts can answer them from the database.
async fn nginx_redirect(s: &CatalogState, file: &PlayFile<'_>) -> Result<Response, CatalogError> {
    let playlist = file.content_type == crate::playback::PLAYLIST_TYPE;
    let target = match s.store.local_path(file.key) {
        Some(path) => {
            if playlist && !tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Err(CatalogError::NotFound("file"));
            }
            format!("{NGINX_LOCATION}objects/{}", file.key)
        }
        None => {
            if playlist {
                s.store.head(file.key).await?;
            }
            let url = presigned(s, file.key, file.expires_in, file.content_type).await?;
            // Only the path and query: nginx's location holds the endpoint.
            let path = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i + 1..]))
                .ok_or_else(|| CatalogError::Internal("a presigned URL without a path".into()))?;
            format!("{NGINX_LOCATION}s3/{path}")
        }
    };
    let target =
        HeaderValue::from_str(&target).map_err(|e| CatalogError::Internal(e.to_string()))?;
    let mut res = StatusCode::OK.into_response();
    res.headers_mut().insert("x-accel-redirect", target);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    Ok(res)
}

async fn presigned(
    s: &CatalogState,
    key: &str,
    expires_in: u64,
    content_type: &str,
) -> Result<String, CatalogError> {
    let ttl = std::time::Duration::from_secs(expires_in.max(1));
    s.store
        .presign_get(key, ttl, content_type, None)
        .await?
        .ok_or_else(|| {
            CatalogError::Internal("this delivery needs storage that can presign URLs".into())
        })
}

/// A media playlist whose segments point at presigned storage URLs expiring with the
/// playback token. Each response is signed anew, so it is not cacheable.
pub async fn direct_media_playlist(
    s: &CatalogState,
    key: &str,
    text: &str,
    expires_in: u64,
    method: &Method,
) -> Result<Response, CatalogError> {
    let folder = key.rsplit_once('/').map(|(f, _)| f).unwrap_or_default();
    let mut signed = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let segment = format!("{folder}/{line}");
        let content_type = crate::playback::media_type(line).unwrap_or("application/octet-stream");
        signed.push(presigned(s, &segment, expires_in, content_type).await?);
    }
    let mut urls = signed.into_iter();
    let body = lectern_packager::rewrite_segment_uris(text, |uri| {
        urls.next().unwrap_or_else(|| uri.to_string())
    });
    Ok(made_playlist(body, "private, no-store", method))
}

/// A playlist made for this answer rather than stored: its text, or for HEAD only its
/// length.
pub fn made_playlist(text: String, cache_control: &'static str, method: &Method) -> Response {
    made_file(text, crate::playback::PLAYLIST_TYPE, cache_control, method)
}

/// A playback file made on request (a playlist, a subtitle segment).
pub fn made_file(
    text: String,
    content_type: &'static str,
    cache_control: &'static str,
    method: &Method,
) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, cache_control),
    ];
    if method == Method::HEAD {
        let length = [(header::CONTENT_LENGTH, text.len())];
        return (StatusCode::OK, headers, length).into_response();
    }
    (StatusCode::OK, headers, text).into_response()
}

/// Streams an object from a remote store, with Range, ETag and conditional GET.
async fn stream_object(
    s: &CatalogState,
    key: &str,
    content_type: &'static str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, CatalogError> {
    let meta = s.store.head(key).await?;
    let mut res = Response::new(Body::empty());
    let h = res.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&meta.etag).map_err(|e| CatalogError::Internal(e.to_string()))?,
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(v) = last_modified(&meta) {
        h.insert(header::LAST_MODIFIED, v);
    }
    let unchanged_since = || {
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
            .is_some_and(|since| modified(&meta) <= since)
    };
    let not_modified = match headers.get(header::IF_NONE_MATCH) {
        Some(tags) => matches_etag(Some(tags), &meta.etag, true),
        None => unchanged_since(),
    };
    if not_modified {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(res);
    }
    // If-Range with a stale validator means: send the whole new object.
    let range = if headers.get(header::IF_RANGE).is_none()
        || matches_etag(headers.get(header::IF_RANGE), &meta.etag, false)
    {
        parse_range(
            headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
            meta.size,
        )?
    } else {
        None
    };
    let length = match range {
        Some(r) => {
            let v = format!("bytes {}-{}/{}", r.start, r.end, meta.size);
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&v).map_err(|e| CatalogError::Internal(e.to_string()))?,
            );
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.byte_count()
        }
        None => meta.size,
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if method != Method::HEAD {
        *res.body_mut() = Body::from_stream(s.store.read(key, range).await?.body);
    }
    Ok(res)
}

/// Whether a validator header names `etag` (`*` counts for If-None-Match only).
fn matches_etag(header: Option<&HeaderValue>, etag: &str, star: bool) -> bool {
    header.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == etag || (star && t == "*"))
    })
}

fn modified(meta: &ObjectMeta) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(meta.modified_unix.max(0) as u64)
}

fn last_modified(meta: &ObjectMeta) -> Option<HeaderValue> {
    HeaderValue::from_str(&httpdate::fmt_http_date(modified(meta))).ok()
}
