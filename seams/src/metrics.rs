//! Prometheus metrics shared by every role, rendered at `/metrics`. Labels take a
//! fixed, small set of values (route templates, topics, failure kinds), never ids.

use std::path::Path;
use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// HTTP latency by route template, method and status.
    pub http_latency: HistogramVec,
    /// Bytes received by tus uploads.
    pub upload_bytes: IntCounter,
    /// Viewing beacons turned away because the batch waiting to be recorded was full.
    pub beacons_shed: IntCounter,
    /// 1 while a backend's circuit breaker is open (requests needing it are refused).
    pub breaker_open: IntGaugeVec,
    /// Transcode jobs being worked on in this process, by the topic they came from.
    pub jobs_in_flight: IntGaugeVec,
    /// Workers of this process (`LECTERN_WORKERS`): each takes one job of each job
    /// topic at a time.
    pub workers: IntGauge,
    /// Wall time of finished transcode jobs.
    pub job_duration: Histogram,
    /// Failed transcode attempts, by kind (`JobFailure`) and outcome.
    pub job_failures: IntCounterVec,
    /// Content seconds transcoded per wall second, per job.
    pub transcode_speed: Histogram,
    /// Lectures that turned failed in this process, by stage (`upload`: the file was
    /// refused; `transcode`: its transcode gave up).
    pub lectures_failed: IntCounterVec,
    /// Messages waiting or in hand, by queue topic (sampled at scrape time).
    pub queue_depth: IntGaugeVec,
    /// Messages in each topic's dead-letter queue (sampled at scrape time).
    pub queue_dead_letters: IntGaugeVec,
    /// How long the oldest message ready for a consumer has waited, by topic (sampled
    /// at scrape time; only backends that can tell cheaply: the embedded queue).
    pub queue_oldest_waiting: GaugeVec,
    /// How long each delivered message waited for a consumer, by topic.
    pub queue_wait: HistogramVec,
    /// Free and total bytes of the file system holding `LECTERN_DATA_DIR` (sampled at
    /// scrape time).
    pub data_dir_free_bytes: Gauge,
    pub data_dir_size_bytes: Gauge,
}

/// Why a transcode attempt failed, as the `kind` label of `job_failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFailure {
    /// The file's fault: a refusal in the media pipeline.
    Media,
    /// Object storage failed (or lost the source).
    Storage,
    /// Anything else: a crash of the fenced child, a time limit, a bug.
    Internal,
}

impl JobFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            JobFailure::Media => "media",
            JobFailure::Storage => "storage",
            JobFailure::Internal => "internal",
        }
    }
}

/// Whether a failed attempt is tried again or given up (dead-lettered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Retried,
    DeadLettered,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Retried => "retried",
            JobOutcome::DeadLettered => "dead_lettered",
        }
    }
}

impl Metrics {
    /// Counts one failed transcode attempt.
    pub fn job_failed(&self, kind: JobFailure, outcome: JobOutcome) {
        self.job_failures
            .with_label_values(&[kind.as_str(), outcome.as_str()])
            .inc();
    }

    /// Sets this process's worker count; their job topics' gauges start at zero.
    pub fn set_workers(&self, workers: usize) {
        self.workers.set(workers as i64);
        for topic in [crate::queue::Topic::Jobs, crate::queue::Topic::AudioJobs] {
            self.jobs_in_flight.with_label_values(&[topic.name()]);
        }
    }

    /// Counts a lecture that turned failed; `stage` is `upload` or `transcode`.
    pub fn lecture_failed(&self, stage: &'static str) {
        self.lectures_failed.with_label_values(&[stage]).inc();
    }

    /// Samples the free and total space of the file system holding `dir`.
    pub fn sample_disk(&self, dir: &Path) {
        match disk_space(dir) {
            Ok(space) => {
                self.data_dir_free_bytes.set(space.free as f64);
                self.data_dir_size_bytes.set(space.total as f64);
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not read the disk's free space")
            }
        }
    }
}

/// Space of a file system, in bytes: `free` is what an unprivileged process may still
/// write (blocks reserved for root excluded), as `df` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub free: u64,
    pub total: u64,
}

pub fn disk_space(dir: &Path) -> std::io::Result<DiskSpace> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(DiskSpace {
        free: st.f_bavail.saturating_mul(st.f_frsize),
        total: st.f_blocks.saturating_mul(st.f_frsize),
    })
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
    let breaker_open = IntGaugeVec::new(
        Opts::new(
            "breaker_open",
            "1 while a backend's circuit breaker is open",
        ),
        &["backend"],
    )
    .expect("valid metric");
    let beacons_shed = IntCounter::new(
        "beacons_shed_total",
        "Viewing beacons turned away while the batch to record was full",
    )
    .expect("valid metric");
    let jobs_in_flight = IntGaugeVec::new(
        Opts::new(
            "jobs_in_flight",
            "Transcode jobs in progress in this process",
        ),
        &["topic"],
    )
    .expect("valid metric");
    let workers = IntGauge::new(
        "workers",
        "Workers in this process, each taking one job of each job topic at a time",
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
    let job_failures = IntCounterVec::new(
        Opts::new(
            "job_failures_total",
            "Failed transcode attempts, by kind and outcome",
        ),
        &["kind", "outcome"],
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
    let lectures_failed = IntCounterVec::new(
        Opts::new(
            "lectures_failed_total",
            "Lectures that turned failed, by stage",
        ),
        &["stage"],
    )
    .expect("valid metric");
    let queue_depth = IntGaugeVec::new(
        Opts::new("queue_depth", "Messages waiting or in hand"),
        &["topic"],
    )
    .expect("valid metric");
    let queue_dead_letters = IntGaugeVec::new(
        Opts::new(
            "queue_dead_letters",
            "Messages in the topic's dead-letter queue",
        ),
        &["topic"],
    )
    .expect("valid metric");
    let queue_oldest_waiting = GaugeVec::new(
        Opts::new(
            "queue_oldest_waiting_seconds",
            "Age of the oldest message ready for a consumer (embedded queue only)",
        ),
        &["topic"],
    )
    .expect("valid metric");
    let queue_wait = HistogramVec::new(
        HistogramOpts::new(
            "queue_wait_seconds",
            "Time a delivered message waited for a consumer",
        )
        .buckets(vec![
            0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
        ]),
        &["topic"],
    )
    .expect("valid metric");
    let data_dir_free_bytes = Gauge::new(
        "data_dir_free_bytes",
        "Free bytes of the file system holding the data folder",
    )
    .expect("valid metric");
    let data_dir_size_bytes = Gauge::new(
        "data_dir_size_bytes",
        "Size in bytes of the file system holding the data folder",
    )
    .expect("valid metric");
    // Counters start at zero, so a rate sees the first failure too.
    for kind in [JobFailure::Media, JobFailure::Storage, JobFailure::Internal] {
        for outcome in [JobOutcome::Retried, JobOutcome::DeadLettered] {
            job_failures.with_label_values(&[kind.as_str(), outcome.as_str()]);
        }
    }
    for stage in ["upload", "transcode"] {
        lectures_failed.with_label_values(&[stage]);
    }
    for c in [
        Box::new(http_latency.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(upload_bytes.clone()),
        Box::new(beacons_shed.clone()),
        Box::new(breaker_open.clone()),
        Box::new(jobs_in_flight.clone()),
        Box::new(workers.clone()),
        Box::new(job_duration.clone()),
        Box::new(job_failures.clone()),
        Box::new(transcode_speed.clone()),
        Box::new(lectures_failed.clone()),
        Box::new(queue_depth.clone()),
        Box::new(queue_dead_letters.clone()),
        Box::new(queue_oldest_waiting.clone()),
        Box::new(queue_wait.clone()),
        Box::new(data_dir_free_bytes.clone()),
        Box::new(data_dir_size_bytes.clone()),
    ] {
        registry.register(c).expect("metrics register once");
    }
    Metrics {
        registry,
        http_latency,
        upload_bytes,
        beacons_shed,
        breaker_open,
        jobs_in_flight,
        workers,
        job_duration,
        job_failures,
        transcode_speed,
        lectures_failed,
        queue_depth,
        queue_dead_letters,
        queue_oldest_waiting,
        queue_wait,
        data_dir_free_bytes,
        data_dir_size_bytes,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_of_a_real_folder_is_plausible() {
        let dir = tempfile::tempdir().unwrap();
        let space = disk_space(dir.path()).unwrap();
        assert!(space.total > 0);
        assert!(space.free <= space.total);
        assert!(disk_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn failures_and_disk_are_exposed_with_bounded_labels() {
        let m = metrics();
        m.job_failed(JobFailure::Storage, JobOutcome::DeadLettered);
        m.lecture_failed("upload");
        m.sample_disk(&std::env::temp_dir());
        let text = render();
        assert!(
            text.contains("lectern_job_failures_total{kind=\"storage\",outcome=\"dead_lettered\"}")
        );
        assert!(text.contains("lectern_lectures_failed_total{stage=\"upload\"}"));
        assert!(text.contains("lectern_data_dir_free_bytes "));
        // Every kind and outcome is there from the start, at zero if nothing failed.
        assert!(text.contains("lectern_job_failures_total{kind=\"media\",outcome=\"retried\"}"));
        m.set_workers(3);
        assert!(render().contains("lectern_jobs_in_flight{topic=\"lectern.jobs.audio\"}"));
        assert!(!text.contains("lectern_data_dir_size_bytes 0\n"));
    }
}
