//! What every HTTP request passes through before a route: its client address, a
//! request id (in the logs and the response), a time limit, CORS for the origins an
//! operator allows, security headers, and compressed JSON.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, FutureExt};
use tower::{Layer, Service};
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
    /// Security headers for the responses (none when `None`: a worker's health port).
    pub security: Option<SecurityHeaders>,
    /// Requests under this path prefix get their tracing span only when the edge writes
    /// a line about them (refused, failed, timed out; every request at debug), not
    /// while they are served: for cached playback files the span cost 0.8 µs of a
    /// 7.9 µs playlist at the default log level. Lines a handler writes itself go
    /// without the request's id.
    pub unspanned_prefix: Option<&'static str>,
}

/// nosniff on every response; the Content-Security-Policy and Referrer-Policy on every
/// response but media (`is_media`); HSTS when served over https. A header a handler set
/// itself is left as it is.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    pub content_security_policy: HeaderValue,
    pub strict_transport: bool,
}

impl SecurityHeaders {
    fn apply(&self, res: &mut Response) {
        let media = is_media(res);
        let h = res.headers_mut();
        h.entry(HeaderName::from_static("x-content-type-options"))
            .or_insert(HeaderValue::from_static("nosniff"));
        if !media {
            h.entry(header::CONTENT_SECURITY_POLICY)
                .or_insert_with(|| self.content_security_policy.clone());
            h.entry(header::REFERRER_POLICY)
                .or_insert(HeaderValue::from_static("strict-origin-when-cross-origin"));
        }
        if self.strict_transport {
            h.entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert(HeaderValue::from_static(
                    "max-age=31536000; includeSubDomains",
                ));
        }
    }
}

/// Playlists, segments, posters and captions: never rendered as a document (nosniff
/// holds a browser to the type), so the document-only headers are left off them. They
/// were 330 of a playlist response's 774 bytes of headers.
fn is_media(res: &Response) -> bool {
    const MEDIA: [&str; 7] = [
        "application/vnd.apple.mpegurl",
        "video/mp2t",
        "video/mp4",
        "audio/",
        "image/jpeg",
        "image/webp",
        "text/vtt",
    ];
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| MEDIA.iter().any(|m| ct.starts_with(m)))
}

/// The request id a client sent, when it is a short token safe to log; else a new one.
/// Made as the header it is sent back in (one copy of the text, none for a client's).
fn request_id(headers: &HeaderMap) -> HeaderValue {
    let safe = |v: &&HeaderValue| {
        let text = v.as_bytes();
        !text.is_empty()
            && text.len() <= 64
            && text
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
    };
    if let Some(sent) = headers.get(&REQUEST_ID).filter(safe) {
        return sent.clone();
    }
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text))
        .expect("a UUID is a valid header value")
}

fn client_ip(req: &Request, trust_forwarded: bool) -> IpAddr {
    let peer = crate::limits::peer_ip(req.extensions());
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
    match path
        .strip_prefix("/play/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((_, file)) => format!("/play/…/{file}"),
        None => path.to_string(),
    }
}

/// Upload bodies stream for as long as the client sends; they have no time limit.
fn is_upload_body(req: &Request) -> bool {
    req.uri().path().starts_with("/api/uploads")
        && matches!(*req.method(), Method::PATCH | Method::POST)
}

/// The span that names a request in every line written while it is served.
fn request_span(id: &str, method: &Method, path: &str, client: IpAddr) -> tracing::Span {
    tracing::info_span!("request", request_id = %id, method = %method, path = %loggable_path(path), client = %client)
}

/// Marks the answer the edge gave when the handler ran out of time.
#[derive(Clone, Copy)]
struct TimedOut(Duration);

async fn edge<S, B>(config: Arc<EdgeConfig>, mut req: Request, mut inner: S) -> Response
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let id_header = request_id(req.headers());
    // Only ASCII letters, digits and `-_.` (above).
    let id = id_header.to_str().unwrap_or_default();
    let ip = client_ip(&req, config.trust_forwarded);
    if config.trust_forwarded {
        // Without it, `ClientIp` is the peer's address, which every request carries.
        req.extensions_mut().insert(ClientIp(ip));
    }
    let spanned = config
        .unspanned_prefix
        .is_none_or(|prefix| !req.uri().path().starts_with(prefix));
    let span = if spanned {
        request_span(id, req.method(), req.uri().path(), ip)
    } else {
        tracing::Span::none()
    };
    // An unspanned request gets its span only if a line is written about it (the URI
    // shares the request head's buffer).
    let unspanned = (!spanned).then(|| (req.method().clone(), req.uri().clone()));
    // For the log lines' `ms` only (the route's latency is measured exactly).
    let started = crate::coarse_monotonic();
    let timeout = (!is_upload_body(&req)).then_some(config.request_timeout);
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut res = async {
        if let Some(res) = preflight(&config, &req) {
            return res;
        }
        let mut answer = std::pin::pin!(inner.call(req));
        // A cached file is answered on the first poll: no timer is made for it (a clock
        // read and a timer entry).
        if let Poll::Ready(Ok(res)) = futures::poll!(answer.as_mut()) {
            return res.map(Body::new);
        }
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, answer).await {
                Ok(Ok(res)) => res.map(Body::new),
                Err(_) => {
                    let mut res = error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the server took too long to answer; try again",
                    );
                    res.extensions_mut().insert(TimedOut(limit));
                    res
                }
            },
            None => match answer.await {
                Ok(res) => res.map(Body::new),
            },
        }
    }
    .instrument(span.clone())
    .await;
    let status = res.status();
    if status.is_client_error()
        || status.is_server_error()
        || tracing::enabled!(tracing::Level::DEBUG)
    {
        let span = match &unspanned {
            Some((method, uri)) => request_span(id, method, uri.path(), ip),
            None => span,
        };
        let _entered = span.enter();
        let ms = crate::coarse_monotonic()
            .saturating_sub(started)
            .as_millis() as u64;
        if let Some(TimedOut(limit)) = res.extensions().get::<TimedOut>() {
            tracing::warn!(limit_secs = limit.as_secs(), "request timed out");
        } else if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "request failed");
        } else if let Some(refusal) = res.extensions().get::<crate::http::Refusal>() {
            tracing::info!(
                status = status.as_u16(),
                code = refusal.code,
                message = refusal.message,
                "request refused"
            );
        } else {
            tracing::debug!(status = status.as_u16(), ms, "request done");
        }
    }
    res.headers_mut().insert(REQUEST_ID, id_header);
    allow_origin(&config, origin.as_ref(), &mut res);
    if let Some(security) = &config.security {
        security.apply(&mut res);
    }
    res
}

fn allowed_origin<'a>(
    config: &EdgeConfig,
    origin: Option<&'a HeaderValue>,
) -> Option<&'a HeaderValue> {
    let origin = origin?;
    let text = origin.to_str().ok()?;
    config
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(text))
        .then_some(origin)
}

const CORS_EXPOSE: &str = "Location, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, Tus-Resumable, \
     Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Retry-After, X-Request-Id";

/// The answer to a CORS preflight for an allowed origin. /play answers its own (open
/// to every origin: a signed URL is the credential).
fn preflight(config: &EdgeConfig, req: &Request) -> Option<Response> {
    if req.method() != Method::OPTIONS
        || !req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        || req.uri().path().starts_with("/play/")
    {
        return None;
    }
    let origin = allowed_origin(config, req.headers().get(header::ORIGIN))?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Authorization, Content-Type, X-Request-Id, Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, \
             Upload-Checksum, Upload-Defer-Length, Upload-Concat, X-HTTP-Method-Override",
        ),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    Some(res)
}

fn allow_origin(config: &EdgeConfig, origin: Option<&HeaderValue>, res: &mut Response) {
    let Some(origin) = allowed_origin(config, origin) else {
        return;
    };
    if !res
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSE),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// The edge around a whole app (an axum `Router`, or anything serving requests): request
/// id, client address, time limit, CORS and security headers.
///
/// It wraps the app once, as a tower layer. `Router::layer` wraps every route, boxing
/// the service and its future for each layer on each request: with this and three
/// header layers put on that way, a cached playlist cost 10.9 µs of CPU, 9.5 this way.
pub fn with_edge<S, B>(app: S, config: EdgeConfig) -> Edge<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
{
    EdgeLayer {
        config: Arc::new(config),
    }
    .layer(app)
}

/// `app` with its JSON answers compressed for clients that accept it. For routes that
/// answer JSON: media is never compressed, and on the playback service the layer and
/// its body wrapper were pure cost.
pub fn compress_json<S>(
    app: S,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static
where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static,
{
    tower::ServiceBuilder::new()
        .map_response(|res: axum::http::Response<_>| res.map(Body::new))
        .layer(tower_http::compression::CompressionLayer::new().compress_when(JsonOverAPacket))
        .service(app)
}

/// JSON larger than a packet is worth compressing; media is not.
#[derive(Clone, Copy)]
pub struct JsonOverAPacket;

impl tower_http::compression::Predicate for JsonOverAPacket {
    fn should_compress<B: HttpBody>(&self, res: &axum::http::Response<B>) -> bool {
        use tower_http::compression::predicate::SizeAbove;
        SizeAbove::new(512).should_compress(res) && is_json(res.headers())
    }
}

/// Requests whose path starts with `prefix` go to `first`, all others to `rest`: a
/// service that takes a whole subtree of paths, ahead of a router's matching.
#[derive(Clone)]
pub struct PathPrefix<A, B> {
    prefix: &'static str,
    first: A,
    rest: B,
}

impl<A, B> PathPrefix<A, B> {
    pub fn new(prefix: &'static str, first: A, rest: B) -> Self {
        Self {
            prefix,
            first,
            rest,
        }
    }
}

impl<A, B> Service<Request> for PathPrefix<A, B>
where
    A: Service<Request, Response = Response, Error = Infallible>,
    B: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::Either<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Which one a request needs is not known yet: both must be ready.
        let Poll::Ready(Ok(())) = self.first.poll_ready(cx) else {
            return Poll::Pending;
        };
        self.rest.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.uri().path().starts_with(self.prefix) {
            futures::future::Either::Left(self.first.call(req))
        } else {
            futures::future::Either::Right(self.rest.call(req))
        }
    }
}

#[derive(Clone)]
struct EdgeLayer {
    config: Arc<EdgeConfig>,
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service `with_edge` makes.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    config: Arc<EdgeConfig>,
}

impl<S, B> Service<Request> for Edge<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The service polled ready serves this request; its clone waits for the next.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let config = self.config.clone();
        async move { Ok(edge(config, req, ready).await) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
        let app = axum::Router::new()
            .route(
                "/api/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/api/uploads/x",
                patch(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "stored"
                }),
            );
        let app = with_edge(
            app,
            EdgeConfig {
                request_timeout: Duration::from_millis(100),
                ..Default::default()
            },
        );
        let started = Instant::now();
        let res = app
            .clone()
            .oneshot(Request::get("/api/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(res.headers().contains_key(REQUEST_ID));
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains(r#""code":"timeout""#));
        let res = app
            .oneshot(
                Request::patch("/api/uploads/x")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    fn security() -> SecurityHeaders {
        SecurityHeaders {
            content_security_policy: HeaderValue::from_static("default-src 'self'"),
            strict_transport: false,
        }
    }

    async fn call(
        app: &(impl Service<Request, Response = Response, Error = Infallible> + Clone),
        req: Request,
    ) -> Response {
        use tower::ServiceExt;
        app.clone().oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn security_headers_go_on_every_answer_and_the_document_rules_only_on_documents() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/page", get(|| async { "hello" }))
            .route(
                "/playlist",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")],
                        "#EXTM3U\n",
                    )
                }),
            )
            .route(
                "/own",
                get(|| async { ([(header::CONTENT_SECURITY_POLICY, "sandbox")], "own") }),
            );
        let app = with_edge(
            app,
            EdgeConfig {
                security: Some(security()),
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            },
        );
        let req = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        for path in ["/page", "/playlist", "/own", "/missing"] {
            let res = call(&app, req(path)).await;
            assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
            assert!(res.headers().contains_key(REQUEST_ID), "{path}");
            assert!(
                !res.headers()
                    .contains_key(header::STRICT_TRANSPORT_SECURITY),
                "{path}"
            );
        }
        let page = call(&app, req("/page")).await;
        assert_eq!(
            page.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'"
        );
        assert_eq!(
            page.headers()[header::REFERRER_POLICY],
            "strict-origin-when-cross-origin"
        );
        let playlist = call(&app, req("/playlist")).await;
        assert!(
            !playlist
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
        assert!(!playlist.headers().contains_key(header::REFERRER_POLICY));
        // A policy the handler set is its own.
        assert_eq!(
            call(&app, req("/own")).await.headers()[header::CONTENT_SECURITY_POLICY],
            "sandbox"
        );

        let https = with_edge(
            axum::Router::new().route("/page", get(|| async { "hello" })),
            EdgeConfig {
                security: Some(SecurityHeaders {
                    strict_transport: true,
                    ..security()
                }),
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            },
        );
        assert!(
            call(&https, req("/page")).await.headers()[header::STRICT_TRANSPORT_SECURITY]
                .to_str()
                .unwrap()
                .starts_with("max-age=")
        );
        let bare = with_edge(
            axum::Router::new().route("/page", get(|| async { "hello" })),
            EdgeConfig {
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            },
        );
        let res = call(&bare, req("/page")).await;
        assert!(
            !res.headers().contains_key("x-content-type-options")
                && !res.headers().contains_key(header::CONTENT_SECURITY_POLICY)
        );
    }

    #[tokio::test]
    async fn a_path_prefix_takes_its_subtree_and_nothing_else() {
        use axum::routing::get;
        let first = axum::Router::new()
            .fallback(|req: Request| async move { format!("first {}", req.uri().path()) });
        let rest = axum::Router::new()
            .fallback(|req: Request| async move { format!("rest {}", req.uri().path()) });
        let app = PathPrefix::new(
            "/play/",
            first,
            rest.route("/play", get(|| async { "rest route" })),
        );
        for (path, answer) in [
            ("/play/token/master.m3u8", "first /play/token/master.m3u8"),
            ("/play/", "first /play/"),
            ("/play", "rest route"),
            ("/playx/a", "rest /playx/a"),
            ("/api/courses", "rest /api/courses"),
        ] {
            let res = call(&app, Request::get(path).body(Body::empty()).unwrap()).await;
            let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
            assert_eq!(body, answer.as_bytes(), "{path}");
        }
    }

    /// What the edge logs while `requests` are served, at `level`.
    async fn log_of(level: tracing::Level, requests: &[(&str, &str)]) -> String {
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        use axum::routing::get;
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route(
                "/api/refuse",
                get(|| async {
                    crate::http::error_response(
                        StatusCode::FORBIDDEN,
                        "not_yours",
                        "not yours to see",
                    )
                }),
            )
            .route("/api/fine", get(|| async { "fine" }))
            .route(
                "/play/{token}/{*file}",
                get(|| async {
                    crate::http::error_response(
                        StatusCode::FORBIDDEN,
                        "bad_playback_token",
                        "bad token",
                    )
                }),
            );
        let app = with_edge(
            app,
            EdgeConfig {
                request_timeout: Duration::from_secs(5),
                unspanned_prefix: Some("/play/"),
                ..Default::default()
            },
        );
        for (path, id) in requests {
            let req = Request::builder()
                .uri(*path)
                .header("x-request-id", *id)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[tokio::test]
    async fn refusals_are_logged_with_the_request_in_and_out_of_spans() {
        let log = log_of(
            tracing::Level::INFO,
            &[
                ("/api/refuse", "api-1"),
                ("/play/SECRET-TOKEN/v1/index.m3u8", "play-1"),
                ("/api/fine", "ok-1"),
                ("/play/SECRET-TOKEN/master.m3u8", "play-2"),
            ],
        )
        .await;
        let line = |id: &str| {
            log.lines()
                .find(|l| l.contains(id))
                .unwrap_or_else(|| panic!("no line for {id}: {log}"))
                .to_string()
        };
        let api = line("api-1");
        assert!(
            api.contains("request refused")
                && api.contains("not_yours")
                && api.contains("/api/refuse")
                && api.contains("GET"),
            "{api}"
        );
        let play = line("play-1");
        assert!(
            play.contains("request refused")
                && play.contains("bad_playback_token")
                && play.contains("/play/…/v1/index.m3u8")
                && play.contains("GET"),
            "{play}"
        );
        assert!(!log.contains("SECRET-TOKEN"), "{log}");
        // At the default level a request that went well writes nothing.
        assert!(!log.contains("ok-1"), "{log}");
        assert_eq!(log.lines().count(), 3, "{log}");
    }

    #[tokio::test]
    async fn every_request_is_logged_at_debug() {
        let log = log_of(
            tracing::Level::DEBUG,
            &[
                ("/api/fine", "ok-1"),
                ("/play/SECRET-TOKEN/master.m3u8", "play-1"),
            ],
        )
        .await;
        assert!(
            log.lines().any(|l| l.contains("ok-1")
                && l.contains("request done")
                && l.contains("status=200")),
            "{log}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("play-1") && l.contains("status=403")),
            "{log}"
        );
        assert!(!log.contains("SECRET-TOKEN"), "{log}");
    }

    #[test]
    fn playback_tokens_never_reach_the_log() {
        assert_eq!(
            loggable_path("/play/eyJhbGciOi.secret.sig/720p/seg_00001.ts"),
            "/play/…/720p/seg_00001.ts"
        );
        assert_eq!(loggable_path("/api/courses"), "/api/courses");
    }
}
