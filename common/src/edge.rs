//! What every HTTP request passes through before a route: its client address, a
//! request id (in the logs and the response), a time limit, CORS for the origins an
//! operator allows, and compressed JSON.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::http::error_response;
use crate::limits::ClientIp;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone, Default)]
pub struct EdgeConfig {
    /// Take the client address from the last X-Forwarded-For entry (set only behind a
    /// proxy that writes it).
    pub trust_forwarded: bool,
    /// Origins allowed to call the API from a browser (besides this one).
    pub cors_origins: Vec<String>,
    /// Longest time to the response head, except for upload bodies.
    pub request_timeout: Duration,
}

/// The request id a client sent, when it is a short token safe to log; else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn client_ip(req: &Request, trust_forwarded: bool) -> IpAddr {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !trust_forwarded {
        return peer;
    }
    req.headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer)
}

/// The path as logged: playback tokens are credentials, so they are cut out.
fn loggable_path(path: &str) -> String {
    match path.strip_prefix("/play/").and_then(|rest| rest.split_once('/')) {
        Some((_, file)) => format!("/play/…/{file}"),
        None => path.to_string(),
    }
}

/// Upload bodies stream for as long as the client sends; they have no time limit.
fn is_upload_body(req: &Request) -> bool {
    req.uri().path().starts_with("/api/uploads") && matches!(*req.method(), Method::PATCH | Method::POST)
}

async fn edge(config: Arc<EdgeConfig>, mut req: Request, next: Next) -> Response {
    let id = request_id(req.headers());
    let ip = client_ip(&req, config.trust_forwarded);
    req.extensions_mut().insert(ClientIp(ip));
    // Made once, then shared by the request and the response.
    let id_header = HeaderValue::from_str(&id).ok();
    if let Some(v) = &id_header {
        req.headers_mut().insert(REQUEST_ID, v.clone());
    }
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %loggable_path(req.uri().path()), client = %ip);
    let started = Instant::now();
    let timeout = (!is_upload_body(&req)).then_some(config.request_timeout);
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut res = async {
        if let Some(res) = preflight(&config, &req) {
            return res;
        }
        let res = match timeout {
            Some(limit) => match tokio::time::timeout(limit, next.run(req)).await {
                Ok(res) => res,
                Err(_) => {
                    tracing::warn!(limit_secs = limit.as_secs(), "request timed out");
                    error_response(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the server took too long to answer; try again")
                }
            },
            None => next.run(req).await,
        };
        let status = res.status();
        let ms = started.elapsed().as_millis() as u64;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), ms, "request done");
        }
        res
    }
    .instrument(span)
    .await;
    if let Some(v) = id_header {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    allow_origin(&config, origin.as_ref(), &mut res);
    res
}

fn allowed_origin<'a>(config: &EdgeConfig, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
    let origin = origin?;
    let text = origin.to_str().ok()?;
    config.cors_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(text)).then_some(origin)
}

const CORS_EXPOSE: &str = "Location, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, Tus-Resumable, \
     Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Retry-After, X-Request-Id";

/// The answer to a CORS preflight for an allowed origin. /play answers its own (open
/// to every origin: a signed URL is the credential).
fn preflight(config: &EdgeConfig, req: &Request) -> Option<Response> {
    if req.method() != Method::OPTIONS
        || !req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        || req.uri().path().starts_with("/play/")
    {
        return None;
    }
    let origin = allowed_origin(config, req.headers().get(header::ORIGIN))?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Authorization, Content-Type, X-Request-Id, Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, \
             Upload-Checksum, Upload-Defer-Length, Upload-Concat, X-HTTP-Method-Override",
        ),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    Some(res)
}

fn allow_origin(config: &EdgeConfig, origin: Option<&HeaderValue>, res: &mut Response) {
    if res.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    if let Some(origin) = allowed_origin(config, origin) {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CORS_EXPOSE));
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// JSON larger than a packet is worth compressing; media is not.
fn is_json(_: StatusCode, _: axum::http::Version, headers: &HeaderMap, _: &axum::http::Extensions) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// Wraps an app in the edge: compression inside, request id / client address /
/// timeout / CORS outside.
pub fn with_edge(app: Router, config: EdgeConfig) -> Router {
    use tower_http::compression::predicate::{Predicate, SizeAbove};
    let config = Arc::new(config);
    app.layer(tower_http::compression::CompressionLayer::new().compress_when(SizeAbove::new(512).and(is_json)))
        .layer(middleware::from_fn(move |req, next| edge(config.clone(), req, next)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_safe_to_log() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(request_id(&h), "abc-123_x.y");
        h.insert(REQUEST_ID, HeaderValue::from_static("bad id\" injected=1"));
        assert_ne!(request_id(&h), "bad id\" injected=1");
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }

    #[tokio::test]
    async fn a_slow_answer_is_cut_at_the_limit_but_an_upload_body_is_not() {
        use axum::body::Body;
        use axum::routing::{get, patch};
        use tower::ServiceExt;
        let app = Router::new()
            .route("/api/slow", get(|| async { tokio::time::sleep(Duration::from_secs(5)).await; "late" }))
            .route("/api/uploads/x", patch(|| async { tokio::time::sleep(Duration::from_millis(300)).await; "stored" }));
        let app = with_edge(app, EdgeConfig { request_timeout: Duration::from_millis(100), ..Default::default() });
        let started = Instant::now();
        let res = app.clone().oneshot(Request::get("/api/slow").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(res.headers().contains_key(REQUEST_ID));
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains(r#""code":"timeout""#));
        let res = app.oneshot(Request::patch("/api/uploads/x").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[test]
    fn playback_tokens_never_reach_the_log() {
        assert_eq!(loggable_path("/play/eyJhbGciOi.secret.sig/720p/seg_00001.ts"), "/play/…/720p/seg_00001.ts");
        assert_eq!(loggable_path("/api/courses"), "/api/courses");
    }
}
