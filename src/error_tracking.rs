//! Error tracking: panics and 5xx answers reported to a Sentry-compatible endpoint, off
//! unless SENTRY_DSN is set (docs/operations.md, "Error tracking").
//!
//! Every event carries the role (`serve`, `ingest`, `catalog`, `worker`) and the release
//! (`lectern@VERSION`); one raised while a request is served carries its `request_id`
//! too (the edge's X-Request-Id) and its route as the transaction. Events leave on the
//! `sentry` crate's transport thread through a bounded queue (a full queue drops the
//! event; nothing waits for the endpoint), over the reqwest client and rustls with ring
//! already in the tree; what is queued is flushed when the process stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::post;
use lectern_web::auth::{AccessTokens, AuthUser};
use lectern_web::edge::REQUEST_ID;
use lectern_web::http::{ErrorCode, ServerFailure, error_response};
use sentry::protocol::{Event, Level};
use sentry::{ClientOptions, Hub, SentryFutureExt};

/// The admin-only route that panics on purpose, to check the setup end to end.
pub const CHECK_PATH: &str = "/api/admin/sentry-check";

/// What a role reports to, read from SENTRY_DSN and SENTRY_ENVIRONMENT.
pub struct Settings<'a> {
    pub dsn: Option<&'a str>,
    pub environment: Option<&'a str>,
}

/// Whether reports go out (set once, by `init`).
static ENABLED: AtomicBool = AtomicBool::new(false);

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Starts reporting for `role` when a DSN is set; the guard flushes queued events when
/// it is dropped (at the end of the role). An unreadable DSN stops the start.
pub fn init(
    settings: &Settings,
    role: &'static str,
) -> anyhow::Result<Option<sentry::ClientInitGuard>> {
    let Some(dsn) = settings.dsn.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dsn: sentry::types::Dsn = dsn
        .parse()
        .map_err(|e| anyhow::anyhow!("SENTRY_DSN: {e}"))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No proxy from the environment: the endpoint is reached directly, as webhooks are.
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .context("building the error-tracking HTTP client")?;
    let mut options = options(role);
    options.dsn = Some(dsn);
    options.environment = settings.environment.map(|e| e.to_owned().into());
    options.transport = Some(Arc::new(OverReqwest(client)));
    let guard = sentry::init(options);
    report_panics();
    ENABLED.store(true, Ordering::Relaxed);
    tracing::info!(
        role,
        "error tracking on: panics and 5xx answers are reported"
    );
    Ok(Some(guard))
}

/// The options every client gets: release, role tag, no personal data, no default
/// integrations (the panic hook is `report_panics`).
fn options(role: &'static str) -> ClientOptions {
    let mut options = ClientOptions::new();
    options.release = sentry::release_name!();
    options.default_integrations = false;
    options.send_default_pii = false;
    options.shutdown_timeout = Duration::from_secs(2);
    options.before_send = Some(Arc::new(move |mut event: Event<'static>| {
        event
            .tags
            .entry("role".into())
            .or_insert_with(|| role.into());
        Some(event)
    }));
    options
}

/// The crate's reqwest transport (its own thread, a bounded queue) on our client.
struct OverReqwest(reqwest::Client);

impl sentry::TransportFactory for OverReqwest {
    fn create_transport_with_options(
        &self,
        options: sentry::TransportOptions,
    ) -> Arc<dyn sentry::Transport> {
        Arc::new(
            sentry::transports::ReqwestHttpTransportOptions::from(options)
                .with_client(self.0.clone())
                .build(),
        )
    }
}

/// Every panic reported, in the scope of the hub it happens under (a request's, with its
/// id), then handed to the hook before (which prints it). Unlike the stock integration it
/// does not wait for the endpoint: a handler's panic must not hold a runtime thread.
fn report_panics() {
    let next = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let event =
            sentry::integrations::panic::PanicIntegration::new().event_from_panic_info(info);
        Hub::with_active(|hub| {
            hub.capture_event(event);
        });
        next(info);
    }));
}

/// `app` with each request in a scope of its own (when reporting is on): its events carry
/// its request id and route, and a 5xx it answers is reported. Goes inside the edge,
/// which sets the request id and turns a panic into a 500.
pub fn with_reporting(app: Router) -> Router {
    if !enabled() {
        return app;
    }
    reporting(app)
}

fn reporting(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(report_request))
}

async fn report_request(req: Request, next: Next) -> Response {
    let hub = Arc::new(Hub::new_from_top(Hub::current()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(fallback)", |p| p.as_str());
    let transaction = format!("{} {route}", req.method());
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    hub.configure_scope(|scope| {
        scope.set_transaction(Some(&transaction));
        if let Some(id) = &request_id {
            scope.set_tag("request_id", id);
        }
    });
    let res = next.run(req).bind_hub(hub.clone()).await;
    if let Some(event) = server_error_event(&res) {
        hub.capture_event(event);
    }
    res
}

/// The event for a 5xx answer: the failure `internal_error` recorded (never sent to the
/// client), or the status. 503s are left out: they are deliberate refusals (a time limit,
/// a backend whose circuit is open), counted in /metrics and /readyz instead.
fn server_error_event(res: &Response) -> Option<Event<'static>> {
    let status = res.status();
    if !status.is_server_error() || status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let (message, group) = match res.extensions().get::<ServerFailure>() {
        Some(f) => (format!("{}: {}", f.context, f.detail), f.context.clone()),
        None => (format!("answered {status}"), status.as_u16().to_string()),
    };
    let mut event = Event {
        level: Level::Error,
        message: Some(message),
        logger: Some("lectern.http".into()),
        // One issue per route and failure, whatever ids the detail names.
        fingerprint: vec!["{{ transaction }}".into(), group.into()].into(),
        ..Default::default()
    };
    event
        .tags
        .insert("status".into(), status.as_u16().to_string());
    Some(event)
}

/// The route that checks the setup: an admin's request panics in its handler, which the
/// edge answers with a 500 and the panic hook reports with the request's id.
pub fn with_check(api: Router, tokens: AccessTokens) -> Router {
    api.merge(
        Router::new()
            .route(CHECK_PATH, post(sentry_check))
            .with_state(tokens),
    )
}

#[utoipa::path(
    post, path = "/api/admin/sentry-check", tag = "operations", security(("bearer" = [])),
    responses(
        (status = 500, description = "The handler panicked on purpose; the panic is reported to the error tracker with this request's X-Request-Id", body = lectern_web::http::ErrorBody),
        (status = 409, description = "Error tracking is off (SENTRY_DSN is not set)", body = lectern_web::http::ErrorBody),
        (status = "default", description = "Refused or failed; `error.code` says why (admins only)", body = lectern_web::http::ErrorBody)
    )
)]
async fn sentry_check(user: AuthUser) -> Response {
    if !user.is_admin() {
        return error_response(ErrorCode::Forbidden, "only an admin may force a panic");
    }
    if !enabled() {
        return error_response(
            ErrorCode::Conflict,
            "error tracking is off: set SENTRY_DSN to check it",
        );
    }
    tracing::warn!("forcing a panic to check error tracking");
    panic!("sentry-check: a panic forced by an admin to check error tracking");
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(sentry_check))]
pub struct CheckApi;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use std::sync::Mutex;
    use tower::ServiceExt;

    #[derive(Default)]
    struct Captured(Mutex<Vec<Event<'static>>>);

    impl sentry::Transport for Captured {
        fn send_envelope(&self, envelope: sentry::Envelope) {
            if let Some(event) = envelope.event() {
                self.0.lock().unwrap().push(event.clone());
            }
        }
    }

    /// Calls `app` under a hub whose events land in the returned list.
    async fn call(app: Router, req: Request) -> (Response, Vec<Event<'static>>) {
        let captured = Arc::new(Captured::default());
        let mut options = options("catalog");
        options.dsn = Some("http://public@127.0.0.1:9/1".parse().unwrap());
        options.transport = Some(Arc::new(captured.clone()));
        let client = sentry::Client::from(options);
        let hub = Arc::new(Hub::new(
            Some(Arc::new(client)),
            Arc::new(Default::default()),
        ));
        let res = reporting(app)
            .oneshot(req)
            .bind_hub(hub.clone())
            .await
            .unwrap();
        let events = captured.0.lock().unwrap().clone();
        (res, events)
    }

    fn get_req(path: &str, id: &str) -> Request {
        Request::get(path)
            .header(REQUEST_ID, id)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_failure_answered_500_is_reported_with_its_request_id_and_role() {
        let app = Router::new().route(
            "/api/things/{id}",
            get(|| async {
                lectern_web::http::internal_error("reading things", &"disk on fire at /var/x")
            }),
        );
        let (res, events) = call(app, get_req("/api/things/7", "req-500")).await;
        assert_eq!(res.status(), 500);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("disk on fire"));
        let [event] = events.as_slice() else {
            panic!("one event, got {events:?}")
        };
        assert_eq!(
            event.message.as_deref(),
            Some("reading things: disk on fire at /var/x")
        );
        assert_eq!(event.tags["request_id"], "req-500");
        assert_eq!(event.tags["role"], "catalog");
        assert_eq!(event.tags["status"], "500");
        assert_eq!(event.transaction.as_deref(), Some("GET /api/things/{id}"));
        assert_eq!(event.release.as_deref(), sentry::release_name!().as_deref());
    }

    #[tokio::test]
    async fn refusals_and_deliberate_503s_are_not_reported() {
        let app = Router::new()
            .route(
                "/busy",
                get(|| async { error_response(ErrorCode::Unavailable, "down") }),
            )
            .route(
                "/no",
                get(|| async { error_response(ErrorCode::Forbidden, "no") }),
            )
            .route(
                "/bad-gateway",
                get(|| async { axum::http::StatusCode::BAD_GATEWAY }),
            );
        for path in ["/busy", "/no"] {
            let (_, events) = call(app.clone(), get_req(path, "x")).await;
            assert!(events.is_empty(), "{path}: {events:?}");
        }
        let (_, events) = call(app, get_req("/bad-gateway", "x")).await;
        assert_eq!(
            events[0].message.as_deref(),
            Some("answered 502 Bad Gateway")
        );
    }

    #[tokio::test]
    async fn a_handler_that_panics_is_answered_with_the_json_500_at_the_edge() {
        let app = Router::new().route(
            "/boom",
            get(|| async {
                panic!("boom");
                #[allow(unreachable_code)]
                ""
            }),
        );
        let app = lectern_web::edge::with_edge(
            app,
            &lectern_web::edge::EdgeConfig {
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            },
        );
        let res = app.oneshot(get_req("/boom", "req-panic")).await.unwrap();
        assert_eq!(res.status(), 500);
        assert_eq!(res.headers()[REQUEST_ID], "req-panic");
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains(r#""code":"internal""#));
    }
}
