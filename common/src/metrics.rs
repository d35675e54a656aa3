//! Prometheus metrics shared by every role, rendered at `/metrics`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use futures::future::{BoxFuture, FutureExt};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// HTTP latency by route template, method and status.
    pub http_latency: HistogramVec,
    /// Bytes received by tus uploads.
    pub upload_bytes: IntCounter,
    /// Bytes of cached media sent with sendfile, without a copy through the process.
    pub sendfile_bytes: IntCounter,
    /// Transcode jobs being worked on in this process.
    pub jobs_in_flight: IntGauge,
    /// Wall time of finished transcode jobs.
    pub job_duration: Histogram,
    /// Content seconds transcoded per wall second, per job.
    pub transcode_speed: Histogram,
    /// Messages waiting or in hand, by queue topic (sampled at scrape time).
    pub queue_depth: IntGaugeVec,
}

fn build() -> Metrics {
    let registry = Registry::new_custom(Some("lectern".into()), None).expect("a valid prefix");
    let http_latency = HistogramVec::new(
        HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
        &["route", "method", "status"],
    )
    .expect("valid metric");
    let upload_bytes = IntCounter::new("upload_bytes_total", "Bytes received by uploads").expect("valid metric");
    let sendfile_bytes =
        IntCounter::new("play_sendfile_bytes_total", "Bytes of cached media sent with sendfile").expect("valid metric");
    let jobs_in_flight = IntGauge::new("jobs_in_flight", "Transcode jobs in progress in this process").expect("valid metric");
    let job_duration = Histogram::with_opts(
        HistogramOpts::new("job_duration_seconds", "Wall time of finished transcode jobs")
            .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0]),
    )
    .expect("valid metric");
    let transcode_speed = Histogram::with_opts(
        HistogramOpts::new("transcode_speed_ratio", "Content seconds transcoded per wall second")
            .buckets(vec![0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0]),
    )
    .expect("valid metric");
    let queue_depth =
        IntGaugeVec::new(Opts::new("queue_depth", "Messages waiting or in hand"), &["topic"]).expect("valid metric");
    for c in [
        Box::new(http_latency.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(upload_bytes.clone()),
        Box::new(sendfile_bytes.clone()),
        Box::new(jobs_in_flight.clone()),
        Box::new(job_duration.clone()),
        Box::new(transcode_speed.clone()),
        Box::new(queue_depth.clone()),
    ] {
        registry.register(c).expect("metrics register once");
    }
    Metrics { registry, http_latency, upload_bytes, sendfile_bytes, jobs_in_flight, job_duration, transcode_speed, queue_depth }
}

pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(build)
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = Vec::new();
    TextEncoder::new().encode(&metrics().registry.gather(), &mut out).expect("text encoding cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// Records each request's latency under its route template (never the raw path, which
/// carries ids and tokens), method and status.
#[derive(Debug, Clone, Copy)]
pub struct RouteLatencyLayer {
    route: Option<&'static str>,
}

impl RouteLatencyLayer {
    /// The template the router matched: a `route_layer`, since it is known only then.
    pub fn matched() -> Self {
        Self { route: None }
    }

    /// A template named here, for a service that is not behind a router.
    pub fn named(route: &'static str) -> Self {
        Self { route: Some(route) }
    }
}

impl<S> tower::Layer<S> for RouteLatencyLayer {
    type Service = RouteLatency<S>;

    fn layer(&self, inner: S) -> RouteLatency<S> {
        RouteLatency { inner, route: self.route }
    }
}

#[derive(Debug, Clone)]
pub struct RouteLatency<S> {
    inner: S,
    route: Option<&'static str>,
}

impl<S> tower::Service<Request> for RouteLatency<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // Both are cheap to clone (a shared string, a small enum).
        let matched = if self.route.is_none() { req.extensions().get::<MatchedPath>().cloned() } else { None };
        let named = self.route;
        let method = req.method().clone();
        let started = Instant::now();
        let answer = self.inner.call(req);
        async move {
            let Ok(res) = answer.await;
            let route = named.or(matched.as_ref().map(|p| p.as_str())).unwrap_or("unmatched");
            latency_histogram(route, &method, res.status()).observe(started.elapsed().as_secs_f64());
            Ok(res)
        }
        .boxed()
    }
}

/// The histogram of one route, method and status. Each thread keeps the ones it used:
/// `with_label_values` hashes the three strings with SipHash and takes a lock on every
/// request.
fn latency_histogram(route: &str, method: &Method, status: StatusCode) -> Histogram {
    type Key = (usize, Method, u16);
    thread_local! {
        static HISTOGRAMS: RefCell<HashMap<Key, (Box<str>, Histogram)>> = RefCell::new(HashMap::new());
    }
    // Route templates live as long as their router, so the address tells them apart;
    // the text is compared too, in case a new router reuses an old one's memory.
    let key = (route.as_ptr() as usize, method.clone(), status.as_u16());
    HISTOGRAMS.with_borrow_mut(|histograms| match histograms.get(&key) {
        Some((text, histogram)) if **text == *route => histogram.clone(),
        _ => {
            let histogram = metrics().http_latency.with_label_values(&[route, method.as_str(), status.as_str()]);
            histograms.insert(key, (route.into(), histogram.clone()));
            histogram
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::{Layer, ServiceExt};

    fn count(route: &str, method: &str, status: &str) -> u64 {
        metrics().http_latency.with_label_values(&[route, method, status]).get_sample_count()
    }

    #[tokio::test]
    async fn latency_is_recorded_under_the_route_template_not_the_path() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/test-latency/{id}", get(|| async { "ok" }).post(|| async { StatusCode::CREATED }))
            .route_layer(RouteLatencyLayer::matched());
        let before = (count("/test-latency/{id}", "GET", "200"), count("/test-latency/{id}", "POST", "201"));
        for (method, path) in [("GET", "/test-latency/1"), ("GET", "/test-latency/2"), ("POST", "/test-latency/3")] {
            let req = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        assert_eq!(count("/test-latency/{id}", "GET", "200"), before.0 + 2);
        assert_eq!(count("/test-latency/{id}", "POST", "201"), before.1 + 1);
        assert_eq!(count("/test-latency/1", "GET", "200"), 0);

        // A second router with the same template (a restart in one process, as in
        // tests) lands on the same series.
        let again = axum::Router::new().route("/test-latency/{id}", get(|| async { "ok" })).route_layer(RouteLatencyLayer::matched());
        again.oneshot(Request::get("/test-latency/9").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(count("/test-latency/{id}", "GET", "200"), before.0 + 3);
    }

    #[tokio::test]
    async fn a_service_outside_the_router_is_recorded_under_the_name_it_was_given() {
        let service = axum::Router::new().fallback(|| async { StatusCode::NOT_FOUND });
        let named = RouteLatencyLayer::named("/test-named/{token}").layer(service);
        let before = count("/test-named/{token}", "GET", "404");
        named.oneshot(Request::get("/test-named/secret").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(count("/test-named/{token}", "GET", "404"), before + 1);
        assert_eq!(count("/test-named/secret", "GET", "404"), 0);
    }

    #[test]
    fn the_histogram_cache_tells_routes_apart_by_text() {
        // Two templates at one address (the second written where the first was) must
        // not share a series.
        let mut text = String::from("/test-cache/a");
        let first = latency_histogram(&text, &Method::GET, StatusCode::OK);
        text.replace_range(12.., "b");
        let second = latency_histogram(&text, &Method::GET, StatusCode::OK);
        first.observe(0.001);
        assert_eq!(first.get_sample_count(), count("/test-cache/a", "GET", "200"));
        assert_eq!(second.get_sample_count(), count("/test-cache/b", "GET", "200"));
        assert_eq!(count("/test-cache/b", "GET", "200"), 0);
    }
}
