//! What every HTTP request passes through before a route, built from tower-http's stock
//! layers: a request id (in the logs and the response), a tracing span with a line
//! for each refused or failed request, a time limit, security headers and
//! compression; the client's address behind a trusted proxy; and CORS for the API.

use std::net::IpAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::http::{ErrorCode, error_response};
use crate::limits::ClientIp;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone, Default)]
pub struct EdgeConfig {
    /// Take the client address from the last X-Forwarded-For entry (set only behind a
    /// proxy that writes it).
    pub trust_forwarded: bool,
    /// Longest time to the response head, except for upload bodies.
    pub request_timeout: Duration,
    /// Requests with a body (POST, PATCH) under this prefix have no time limit: upload
    /// bodies stream for as long as the client sends.
    pub untimed_bodies: Option<&'static str>,
    /// Security headers for the responses (none when `None`: a worker's health port).
    pub security: Option<SecurityHeaders>,
    /// Paths under this prefix carry a credential as their next segment (playback
    /// tokens), which log lines leave out.
    pub credential_paths: Option<&'static str>,
}

/// nosniff on every response, the Content-Security-Policy and Referrer-Policy, and
/// HSTS when served over https. A header a handler set itself is left as it is.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    pub content_security_policy: HeaderValue,
    pub strict_transport: bool,
}

/// `app` behind the edge. The layers run outside in: request id, client address,
/// span and log line, security headers, compression, time limit, and a handler's panic
/// answered as the JSON 500.
pub fn with_edge(app: Router, config: &EdgeConfig) -> Router {
    let mut app = app
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(from_fn_with_state(
            (config.request_timeout, config.untimed_bodies),
            time_limit,
        ))
        .layer(CompressionLayer::new().compress_when(compressible()));
    if let Some(security) = &config.security {
        app = with_security_headers(app, security);
    }
    app.layer(
        TraceLayer::new_for_http()
            .make_span_with({
                let credentials = config.credential_paths;
                move |req: &Request| request_span(req, credentials)
            })
            .on_request(())
            .on_response(log_answer)
            .on_failure(()),
    )
    .layer(from_fn_with_state(config.trust_forwarded, client_address))
    .layer(PropagateRequestIdLayer::new(REQUEST_ID))
    .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
    .layer(axum::middleware::map_request(drop_unsafe_request_id))
}

/// CORS for the API, for the origins an operator allows (`*` for any); `None` for none.
pub fn api_cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let names = |list: &[&'static str]| -> Vec<HeaderName> {
        list.iter().map(|n| HeaderName::from_static(n)).collect()
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::HEAD,
                Method::OPTIONS,
            ])
            .allow_headers(names(&[
                "authorization",
                "content-type",
                "x-request-id",
                "tus-resumable",
                "upload-length",
                "upload-offset",
                "upload-metadata",
                "upload-checksum",
                "upload-defer-length",
                "upload-concat",
                "x-http-method-override",
            ]))
            .expose_headers(names(&[
                "location",
                "upload-offset",
                "upload-length",
                "upload-expires",
                "upload-metadata",
                "tus-resumable",
                "tus-version",
                "tus-extension",
                "tus-max-size",
                "tus-checksum-algorithm",
                "retry-after",
                "x-request-id",
            ]))
            .max_age(Duration::from_secs(600)),
    )
}

fn with_security_headers(app: Router, security: &SecurityHeaders) -> Router {
    let mut app = app
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            security.content_security_policy.clone(),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ));
    if security.strict_transport {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    app
}

/// Text worth compressing; media is compressed already (segments, images) or small.
fn compressible() -> impl Predicate {
    DefaultPredicate::new()
        .and(NotForContentType::const_new("video/"))
        .and(NotForContentType::const_new("audio/"))
        .and(NotForContentType::const_new(
            "application/vnd.apple.mpegurl",
        ))
}

/// A request id a client sent is kept only when it is a short token safe to log.
async fn drop_unsafe_request_id(mut req: Request) -> Request {
    let safe = req.headers().get(&REQUEST_ID).is_some_and(|v| {
        let text = v.as_bytes();
        !text.is_empty()
            && text.len() <= 64
            && text
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
    });
    if !safe {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// Behind a trusted proxy, the client is the last X-Forwarded-For entry.
async fn client_address(
    State(trust_forwarded): State<bool>,
    mut req: Request,
    next: Next,
) -> Response {
    if trust_forwarded {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .next_back();
        if let Some(ip) = forwarded {
            req.extensions_mut().insert(ClientIp(ip));
        }
    }
    next.run(req).await
}

fn client_of(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ClientIp>()
        .map_or_else(|| crate::limits::peer_ip(req.extensions()), |c| c.0)
}

/// The span that names a request in every line written while it is served.
fn request_span(req: &Request, credentials: Option<&str>) -> tracing::Span {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %loggable_path(req.uri().path(), credentials), client = %client_of(req), trace_id = tracing::field::Empty);
    // With tracing on, the span is an OpenTelemetry span: a caller's W3C traceparent
    // makes it a child of the caller's span.
    let traceparent = req
        .headers()
        .get(lectern_seams::telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    lectern_seams::telemetry::continue_trace(&span, traceparent);
    span
}

/// The path as logged: a credential in it (the segment after `credentials`) is cut out.
fn loggable_path(path: &str, credentials: Option<&str>) -> String {
    match credentials
        .and_then(|prefix| Some((prefix, path.strip_prefix(prefix)?)))
        .and_then(|(prefix, rest)| Some((prefix, rest.split_once('/')?.1)))
    {
        Some((prefix, file)) => format!("{prefix}…/{file}"),
        None => path.to_string(),
    }
}

/// A line for each refused or failed request (every request at debug).
fn log_answer<B>(res: &axum::http::Response<B>, latency: Duration, _span: &tracing::Span) {
    let status = res.status().as_u16();
    let ms = latency.as_millis() as u64;
    if res.status().is_server_error() {
        tracing::warn!(status, ms, "request failed");
    } else if let Some(refusal) = res.extensions().get::<crate::http::Refusal>() {
        tracing::info!(
            status,
            code = refusal.code.as_str(),
            message = refusal.message,
            "request refused"
        );
    } else {
        tracing::debug!(status, ms, "request done");
    }
}

/// A handler that panicked (the panic hook has printed and reported it): the API's JSON
/// 500, instead of a connection dropped without an answer.
fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "request handler panicked");
    error_response(ErrorCode::Internal, "internal server error")
}

/// The time limit on an answer's head, as the API's JSON error.
async fn time_limit(
    State((limit, untimed)): State<(Duration, Option<&'static str>)>,
    req: Request,
    next: Next,
) -> Response {
    let streams_a_body = matches!(*req.method(), Method::PATCH | Method::POST)
        && untimed.is_some_and(|prefix| req.uri().path().starts_with(prefix));
    if streams_a_body {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(limit_secs = limit.as_secs(), "request timed out");
            error_response(
                ErrorCode::Timeout,
                "the server took too long to answer; try again",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::{get, patch};
    use tower::ServiceExt;

    async fn call(app: &Router, req: Request) -> Response {
        app.clone().oneshot(req).await.unwrap()
    }

    fn get_req(path: &str) -> Request {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn client_request_ids_are_kept_only_when_safe_to_log() {
        let app = with_edge(
            Router::new().route("/", get(|| async { "ok" })),
            &EdgeConfig {
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            },
        );
        let with_id = |id: &'static str| {
            Request::get("/")
                .header(REQUEST_ID, id)
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            call(&app, with_id("abc-123_x.y")).await.headers()[REQUEST_ID],
            "abc-123_x.y"
        );
        let replaced = call(&app, with_id("bad id\" injected=1")).await;
        assert_eq!(replaced.headers()[REQUEST_ID].len(), 36);
        assert_eq!(
            call(&app, get_req("/")).await.headers()[REQUEST_ID].len(),
            36
        );
    }

    #[tokio::test]
    async fn a_slow_answer_is_cut_at_the_limit_but_an_upload_body_is_not() {
        let app = Router::new()
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
            &EdgeConfig {
                request_timeout: Duration::from_millis(100),
                untimed_bodies: Some("/api/uploads"),
                ..Default::default()
            },
        );
        let started = std::time::Instant::now();
        let res = call(&app, get_req("/api/slow")).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(res.headers().contains_key(REQUEST_ID));
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains(r#""code":"timeout""#));
        let upload = Request::patch("/api/uploads/x")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&app, upload).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn security_headers_go_on_every_answer_a_handler_did_not_set_itself() {
        let security = SecurityHeaders {
            content_security_policy: HeaderValue::from_static("default-src 'self'"),
            strict_transport: false,
        };
        let routes = || {
            Router::new()
                .route("/page", get(|| async { "hello" }))
                .route(
                    "/own",
                    get(|| async { ([(header::CONTENT_SECURITY_POLICY, "sandbox")], "own") }),
                )
        };
        let config = |security| EdgeConfig {
            request_timeout: Duration::from_secs(5),
            security,
            ..Default::default()
        };
        let app = with_edge(routes(), &config(Some(security.clone())));
        for path in ["/page", "/missing"] {
            let res = call(&app, get_req(path)).await;
            assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(
                res.headers()[header::CONTENT_SECURITY_POLICY],
                "default-src 'self'"
            );
            assert_eq!(
                res.headers()[header::REFERRER_POLICY],
                "strict-origin-when-cross-origin"
            );
            assert!(
                !res.headers()
                    .contains_key(header::STRICT_TRANSPORT_SECURITY)
            );
        }
        let own = call(&app, get_req("/own")).await;
        assert_eq!(own.headers()[header::CONTENT_SECURITY_POLICY], "sandbox");
        let https = with_edge(
            routes(),
            &config(Some(SecurityHeaders {
                strict_transport: true,
                ..security
            })),
        );
        let res = call(&https, get_req("/page")).await;
        assert!(
            res.headers()[header::STRICT_TRANSPORT_SECURITY]
                .to_str()
                .unwrap()
                .starts_with("max-age=")
        );
        let bare = call(&with_edge(routes(), &config(None)), get_req("/page")).await;
        assert!(!bare.headers().contains_key("x-content-type-options"));
    }

    #[tokio::test]
    async fn the_api_answers_preflights_only_for_allowed_origins() {
        let app = Router::new()
            .route("/api/x", get(|| async { "x" }))
            .layer(api_cors(&["https://lms.example".into()]).unwrap());
        let preflight = |origin: &'static str| {
            Request::options("/api/x")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .body(Body::empty())
                .unwrap()
        };
        let allowed = call(&app, preflight("https://lms.example")).await;
        assert_eq!(
            allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://lms.example"
        );
        let other = call(&app, preflight("https://evil.example")).await;
        assert!(
            !other
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        assert!(api_cors(&[]).is_none());
    }

    #[test]
    fn playback_tokens_never_reach_the_log() {
        assert_eq!(
            loggable_path("/play/SECRET/720p/index.m3u8", Some("/play/")),
            "/play/…/720p/index.m3u8"
        );
        assert_eq!(
            loggable_path("/api/courses", Some("/play/")),
            "/api/courses"
        );
        assert_eq!(
            loggable_path("/play/SECRET/x.ts", None),
            "/play/SECRET/x.ts"
        );
    }
}
