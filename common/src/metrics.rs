//! Prometheus metrics shared by every role, rendered at `/metrics`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use futures::future::{BoxFuture, FutureExt};
use prometheus::core::{Collector, Desc};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder, proto,
};

pub struct Metrics {
    registry: Registry,
    /// HTTP latency by route template, method and status.
    pub http_latency: Arc<LatencyHistograms>,
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
    let http_latency = Arc::new(LatencyHistograms::new(
        "http_request_duration_seconds",
        "HTTP request latency",
    ));
    let upload_bytes =
        IntCounter::new("upload_bytes_total", "Bytes received by uploads").expect("valid metric");
    let sendfile_bytes = IntCounter::new(
        "play_sendfile_bytes_total",
        "Bytes of cached media sent with sendfile",
    )
    .expect("valid metric");
    let jobs_in_flight = IntGauge::new(
        "jobs_in_flight",
        "Transcode jobs in progress in this process",
    )
    .expect("valid metric");
    let job_duration = Histogram::with_opts(
        HistogramOpts::new(
            "job_duration_seconds",
            "Wall time of finished transcode jobs",
        )
        .buckets(vec![
            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
        ]),
    )
    .expect("valid metric");
    let transcode_speed = Histogram::with_opts(
        HistogramOpts::new(
            "transcode_speed_ratio",
            "Content seconds transcoded per wall second",
        )
        .buckets(vec![
            0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0,
        ]),
    )
    .expect("valid metric");
    let queue_depth = IntGaugeVec::new(
        Opts::new("queue_depth", "Messages waiting or in hand"),
        &["topic"],
    )
    .expect("valid metric");
    for c in [
        Box::new(SharedLatencies(http_latency.clone())) as Box<dyn Collector>,
        Box::new(upload_bytes.clone()),
        Box::new(sendfile_bytes.clone()),
        Box::new(jobs_in_flight.clone()),
        Box::new(job_duration.clone()),
        Box::new(transcode_speed.clone()),
        Box::new(queue_depth.clone()),
    ] {
        registry.register(c).expect("metrics register once");
    }
    Metrics {
        registry,
        http_latency,
        upload_bytes,
        sendfile_bytes,
        jobs_in_flight,
        job_duration,
        transcode_speed,
        queue_depth,
    }
}

pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(build)
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&metrics().registry.gather(), &mut out)
        .expect("text encoding cannot fail");
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
        RouteLatency {
            inner,
            route: self.route,
        }
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
        let matched = if self.route.is_none() {
            req.extensions().get::<MatchedPath>().cloned()
        } else {
            None
        };
        let named = self.route;
        let method = req.method().clone();
        let started = Instant::now();
        let answer = self.inner.call(req);
        async move {
            let Ok(res) = answer.await;
            let route = named
                .or(matched.as_ref().map(|p| p.as_str()))
                .unwrap_or("unmatched");
            metrics()
                .http_latency
                .observe(route, &method, res.status(), started.elapsed());
            Ok(res)
        }
        .boxed()
    }
}

/// Upper bounds of the HTTP latency buckets, in seconds.
const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A Prometheus histogram of request latencies by route template, method and status,
/// whose counts each thread keeps in cells of its own. prometheus's `Histogram` makes
/// four atomic read-modify-writes per observation on memory that every core writes
/// (a cached playlist spent 2 % of its CPU there, and 1.5 % finding its series);
/// here a thread finds its cells in a map of its own and only loads and stores them,
/// and a scrape adds up the cells of every thread.
pub struct LatencyHistograms {
    desc: Desc,
    /// Bucket bounds in nanoseconds.
    bounds: [u64; LATENCY_BOUNDS.len()],
    series: Mutex<HashMap<SeriesLabels, Arc<Series>>>,
    /// Each thread's cells, by route template address (templates live as long as their
    /// router; the text is compared too, in case a new router reuses an old one's
    /// memory), method and status.
    by_thread: thread_local::ThreadLocal<RefCell<ThreadCells>>,
}

/// A thread's cells by (route template address, method, status), with the template's text.
type ThreadCells =
    HashMap<(usize, Method, u16), (Box<str>, Arc<Cells>), foldhash::fast::RandomState>;

/// Route template, method, status.
type SeriesLabels = (String, String, String);

/// One series: the cells of every thread that recorded into it. Cells stay when their
/// thread ends, so the counts never go down.
#[derive(Default)]
struct Series {
    cells: Mutex<Vec<Arc<Cells>>>,
}

/// One thread's counts of one series. Only that thread writes them, so a plain load
/// and store suffice; readers may see a count one observation behind.
#[derive(Default)]
struct Cells {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Cells {
    fn add(cell: &AtomicU64, by: u64) {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }
}

impl LatencyHistograms {
    pub fn new(name: &str, help: &str) -> Self {
        let labels = ["route", "method", "status"].map(String::from).to_vec();
        let desc = Desc::new(name.into(), help.into(), labels, HashMap::new())
            .expect("a valid metric name");
        let bounds = LATENCY_BOUNDS.map(|s| Duration::from_secs_f64(s).as_nanos() as u64);
        LatencyHistograms {
            desc,
            bounds,
            series: Mutex::default(),
            by_thread: thread_local::ThreadLocal::new(),
        }
    }

    pub fn observe(&self, route: &str, method: &Method, status: StatusCode, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(self.bounds.len());
        let mut mine = self.by_thread.get_or_default().borrow_mut();
        let key = (route.as_ptr() as usize, method.clone(), status.as_u16());
        let (text, cells) = mine
            .entry(key)
            .or_insert_with(|| (route.into(), self.new_cells(route, method, status)));
        if **text != *route {
            (*text, *cells) = (route.into(), self.new_cells(route, method, status));
        }
        Cells::add(&cells.buckets[bucket], 1);
        Cells::add(&cells.sum_nanos, nanos);
    }

    /// Cells for the calling thread in the series of these labels.
    fn new_cells(&self, route: &str, method: &Method, status: StatusCode) -> Arc<Cells> {
        let labels = (
            route.to_string(),
            method.as_str().to_string(),
            status.as_str().to_string(),
        );
        let series = self
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(labels)
            .or_default()
            .clone();
        let cells = Arc::new(Cells::default());
        series
            .cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cells.clone());
        cells
    }

    /// Observations per bucket (not cumulative) and their sum, over every thread.
    fn totals(series: &Series) -> ([u64; LATENCY_BOUNDS.len() + 1], u64) {
        let (mut buckets, mut sum) = ([0; LATENCY_BOUNDS.len() + 1], 0u64);
        for cells in series
            .cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            for (total, cell) in buckets.iter_mut().zip(&cells.buckets) {
                *total += cell.load(Ordering::Relaxed);
            }
            sum = sum.wrapping_add(cells.sum_nanos.load(Ordering::Relaxed));
        }
        (buckets, sum)
    }

    /// How many requests were recorded under these labels.
    pub fn sample_count(&self, route: &str, method: &str, status: &str) -> u64 {
        let labels = (route.to_string(), method.to_string(), status.to_string());
        let series = self
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&labels)
            .cloned();
        series.map_or(0, |s| Self::totals(&s).0.iter().sum())
    }
}

/// The registry's handle on the process's one `LatencyHistograms`.
struct SharedLatencies(Arc<LatencyHistograms>);

impl Collector for SharedLatencies {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let series: Vec<_> = self
            .0
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(l, s)| (l.clone(), s.clone()))
            .collect();
        let mut family = proto::MetricFamily::default();
        family.set_name(self.0.desc.fq_name.clone());
        family.set_help(self.0.desc.help.clone());
        family.set_field_type(proto::MetricType::HISTOGRAM);
        for ((route, method, status), series) in series {
            let (buckets, sum_nanos) = LatencyHistograms::totals(&series);
            let mut histogram = proto::Histogram::default();
            histogram.set_sample_count(buckets.iter().sum());
            histogram.set_sample_sum(sum_nanos as f64 / 1e9);
            let mut cumulative = 0;
            histogram.set_bucket(
                LATENCY_BOUNDS
                    .iter()
                    .zip(buckets)
                    .map(|(&bound, count)| {
                        cumulative += count;
                        let mut bucket = proto::Bucket::default();
                        bucket.set_upper_bound(bound);
                        bucket.set_cumulative_count(cumulative);
                        bucket
                    })
                    .collect(),
            );
            // Label pairs sorted by name, as the text format expects.
            let labels =
                [("method", method), ("route", route), ("status", status)].map(|(name, value)| {
                    let mut pair = proto::LabelPair::default();
                    pair.set_name(name.into());
                    pair.set_value(value);
                    pair
                });
            let mut metric = proto::Metric::from_label(labels.to_vec());
            metric.set_histogram(histogram);
            family.mut_metric().push(metric);
        }
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::{Layer, ServiceExt};

    fn count(route: &str, method: &str, status: &str) -> u64 {
        metrics().http_latency.sample_count(route, method, status)
    }

    #[tokio::test]
    async fn latency_is_recorded_under_the_route_template_not_the_path() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/test-latency/{id}",
                get(|| async { "ok" }).post(|| async { StatusCode::CREATED }),
            )
            .route_layer(RouteLatencyLayer::matched());
        let before = (
            count("/test-latency/{id}", "GET", "200"),
            count("/test-latency/{id}", "POST", "201"),
        );
        for (method, path) in [
            ("GET", "/test-latency/1"),
            ("GET", "/test-latency/2"),
            ("POST", "/test-latency/3"),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        assert_eq!(count("/test-latency/{id}", "GET", "200"), before.0 + 2);
        assert_eq!(count("/test-latency/{id}", "POST", "201"), before.1 + 1);
        assert_eq!(count("/test-latency/1", "GET", "200"), 0);

        // A second router with the same template (a restart in one process, as in
        // tests) lands on the same series.
        let again = axum::Router::new()
            .route("/test-latency/{id}", get(|| async { "ok" }))
            .route_layer(RouteLatencyLayer::matched());
        again
            .oneshot(Request::get("/test-latency/9").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(count("/test-latency/{id}", "GET", "200"), before.0 + 3);
    }

    #[tokio::test]
    async fn a_service_outside_the_router_is_recorded_under_the_name_it_was_given() {
        let service = axum::Router::new().fallback(|| async { StatusCode::NOT_FOUND });
        let named = RouteLatencyLayer::named("/test-named/{token}").layer(service);
        let before = count("/test-named/{token}", "GET", "404");
        named
            .oneshot(
                Request::get("/test-named/secret")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(count("/test-named/{token}", "GET", "404"), before + 1);
        assert_eq!(count("/test-named/secret", "GET", "404"), 0);
    }

    #[test]
    fn routes_at_one_address_are_told_apart_by_text() {
        // Two templates at one address (the second written where the first was) must
        // not share a series.
        let mut text = String::from("/test-cache/a");
        let latencies = &metrics().http_latency;
        latencies.observe(
            &text,
            &Method::GET,
            StatusCode::OK,
            Duration::from_millis(1),
        );
        text.replace_range(12.., "b");
        latencies.observe(
            &text,
            &Method::GET,
            StatusCode::OK,
            Duration::from_millis(1),
        );
        latencies.observe(
            &text,
            &Method::GET,
            StatusCode::OK,
            Duration::from_millis(1),
        );
        assert_eq!(count("/test-cache/a", "GET", "200"), 1);
        assert_eq!(count("/test-cache/b", "GET", "200"), 2);
    }

    #[test]
    fn every_threads_observations_are_added_up_in_the_exposition() {
        let latencies = Arc::new(LatencyHistograms::new("test_latency_seconds", "test"));
        let registry = Registry::new_custom(Some("lectern".into()), None).unwrap();
        registry
            .register(Box::new(SharedLatencies(latencies.clone())))
            .unwrap();
        let route: &'static str = "/test/{id}";
        // 0.5 ms (first bucket), 3 ms (the 5 ms bucket) and 20 s (above every bound),
        // from four threads each.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let latencies = latencies.clone();
                std::thread::spawn(move || {
                    for ms in [0.5, 3.0, 20_000.0] {
                        latencies.observe(
                            route,
                            &Method::GET,
                            StatusCode::OK,
                            Duration::from_secs_f64(ms / 1000.0),
                        );
                    }
                    latencies.observe(
                        route,
                        &Method::POST,
                        StatusCode::CREATED,
                        Duration::from_millis(1),
                    );
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        let series = r#"method="GET",route="/test/{id}",status="200""#;
        for (bound, count) in [
            ("0.001", 4),
            ("0.0025", 4),
            ("0.005", 8),
            ("10", 8),
            ("+Inf", 12),
        ] {
            let line =
                format!("lectern_test_latency_seconds_bucket{{{series},le=\"{bound}\"}} {count}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(
            text.contains(&format!(
                "lectern_test_latency_seconds_count{{{series}}} 12\n"
            )),
            "{text}"
        );
        let sum = text
            .lines()
            .find(|l| l.starts_with(&format!("lectern_test_latency_seconds_sum{{{series}}}")))
            .unwrap();
        let sum: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 4.0 * 20.0035).abs() < 1e-6, "{sum}");
        assert!(text.contains(r#"lectern_test_latency_seconds_count{method="POST",route="/test/{id}",status="201"} 4"#), "{text}");
        assert!(
            text.contains("# TYPE lectern_test_latency_seconds histogram"),
            "{text}"
        );
    }
}
