//! Prometheus metrics shared by every role, rendered at `/metrics`.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// HTTP latency by route template, method and status.
    pub http_latency: HistogramVec,
    /// Bytes received by tus uploads.
    pub upload_bytes: IntCounter,
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
        HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ]),
        &["route", "method", "status"],
    )
    .expect("valid metric");
    let upload_bytes =
        IntCounter::new("upload_bytes_total", "Bytes received by uploads").expect("valid metric");
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
        Box::new(http_latency.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(upload_bytes.clone()),
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
