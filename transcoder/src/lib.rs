//! lectern-transcoder: the worker role.
//!
//! It owns turning one `TranscodeJob` into stored HLS output: it takes jobs from the
//! queue one at a time (and, beside them, one whole-lecture audio job at a time from a
//! lane of their own), runs one GStreamer pipeline per job (decode once, encode the
//! whole ladder and one AAC rendition, grab a poster and storyboard) in a fenced child
//! process (`fenced`: no network, no secrets, one writable folder), has packager
//! write the playlists, uploads everything with the master playlist last, and reports
//! progress, ready and failed events. It holds no database: queue and storage only.
//! A job is acked only once every output is stored; failures are retried with
//! back-off and reported failed after the last attempt.

pub mod audio_pack;
pub mod fenced;
pub mod ocr;
pub mod pipeline;
pub mod scale;
pub mod screen;
pub mod slides;
pub mod storyboard;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use lectern_gate::fence::Task;
use lectern_packager::{
    AudioRendition, MASTER_PLAYLIST, MEDIA_PLAYLIST, PlaylistKind, SegmentFacts, VideoVariant,
};
use lectern_seams::messages::{
    JobEvent, JobPart, PartReport, StoredRendition, StoredSegment, TranscodeJob, part_key,
};
use lectern_seams::metrics::{JobFailure, JobOutcome};
use lectern_seams::queue::{Delivery, SharedQueue, Topic};
use lectern_seams::storage::SharedStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub scratch_dir: PathBuf,
    /// Deliveries of one job before it is given up and reported failed.
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long.
    pub retry_base: Duration,
    /// A pipeline that makes no progress for this long is stopped.
    pub stall_timeout: Duration,
    /// A pipeline may run this long plus `job_time_per_source_sec` per second of source.
    pub job_time_base: Duration,
    pub job_time_per_source_sec: f64,
    /// On shutdown, how long the job in hand may still run before it is stopped and
    /// left to the queue to deliver again.
    pub shutdown_grace: Duration,
    /// A longer stretch of a video's timeline without a picture fails the job.
    pub max_gap: Duration,
    /// The fenced child process each pipeline runs in.
    pub fence: lectern_gate::fence::Fence,
    /// The OCR engine slides jobs start (inside their fence).
    pub ocr: screen::Engine,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file's fault, in the words people see.
    #[error("{refusal}")]
    Media {
        refusal: lectern_gate::Refusal,
        /// For the lecture's owner: the fenced child's last log lines, without paths
        /// or addresses.
        diagnostics: String,
    },
    #[error("storage: {0}")]
    Storage(#[from] lectern_seams::storage::StorageError),
    #[error("{0}")]
    Internal(String),
}

impl JobError {
    /// The failure's kind, for the job failure counter.
    pub fn kind(&self) -> JobFailure {
        match self {
            JobError::Media { .. } => JobFailure::Media,
            JobError::Storage(_) => JobFailure::Storage,
            JobError::Internal(_) => JobFailure::Internal,
        }
    }
}

/// Written beside the master playlist: what a repeated delivery of a finished job
/// needs to report it ready again without redoing it.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    duration_secs: f64,
    renditions: Vec<String>,
    has_poster: bool,
}

const MANIFEST: &str = "manifest.json";
/// Where the reports of a chunked lecture's stored parts go, under its prefix.
pub const PARTS_DIR: &str = "parts";

pub struct Worker {
    pub store: SharedStore,
    pub queue: SharedQueue,
    pub config: WorkerConfig,
    /// Turns true when the process is asked to stop (SIGTERM).
    pub shutdown: watch::Receiver<bool>,
}

/// Resolves once shutdown was asked for and then `grace` has passed.
async fn grace_expired(mut shutdown: watch::Receiver<bool>, grace: Duration) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}

impl Worker {
    /// Takes and processes jobs until shutdown is asked for: then it takes no more jobs,
    /// finishes the ones in hand (or, after the grace period, stops them and leaves them
    /// to the queue to deliver again) and returns. A lost queue connection is
    /// re-established; the job in hand when it broke is redelivered by the queue.
    ///
    /// Two lanes: video and whole-length jobs one at a time, and beside them the audio
    /// jobs of chunked lectures one at a time. An audio job is one core's work for up
    /// to a minute or two; in the one lane, a worker would stop encoding the chunks a
    /// viewer who started early needs next.
    pub async fn run(self) {
        tokio::join!(self.lane(Topic::Jobs), self.lane(Topic::AudioJobs));
    }

    async fn lane(&self, topic: Topic) {
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut consumer = match self.queue.consumer(topic).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "queue unavailable; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    // Shutdown first: after a job, a delivery already buffered is ready
                    // at once too, and an unbiased select took it half the time.
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => {
                        tracing::info!("shutting down: taking no more jobs");
                        return;
                    }
                    next = consumer.next() => next,
                };
                match next {
                    Ok(delivery) => self.handle(topic, delivery).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the job consumer; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    }

    async fn handle(&self, topic: Topic, delivery: Delivery) {
        let job: TranscodeJob = match serde_json::from_slice(&delivery.payload) {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(error = %e, "dropping a message that is not a transcode job");
                let _ = delivery.ack().await;
                return;
            }
        };
        // The job's span continues the upload's trace: from the publisher's header
        // (AMQP), else from the message (the span that scheduled it).
        let span = tracing::info_span!("transcode.job", job = %job.job_id, part = %part_key(&job), attempt = delivery.attempt, trace_id = tracing::field::Empty);
        let parent = delivery
            .traceparent
            .clone()
            .or_else(|| job.traceparent.clone());
        lectern_seams::telemetry::continue_trace(&span, parent.as_deref());
        self.run_job(topic, delivery, job).instrument(span).await
    }

    async fn run_job(&self, topic: Topic, delivery: Delivery, job: TranscodeJob) {
        let attempt = delivery.attempt;
        let part = part_key(&job);
        tracing::info!(job = %job.job_id, lecture = %job.lecture_id, part, attempt, "transcode job started");
        let started = Instant::now();
        let metrics = lectern_seams::metrics::metrics();
        let in_flight = metrics.jobs_in_flight.with_label_values(&[topic.name()]);
        in_flight.inc();
        let cancel = Arc::new(AtomicBool::new(false));
        let work = self.process(&job, cancel.clone());
        tokio::pin!(work);
        let outcome = tokio::select! {
            outcome = &mut work => outcome,
            _ = grace_expired(self.shutdown.clone(), self.config.shutdown_grace) => {
                cancel.store(true, Ordering::Relaxed);
                let _ = work.await;
                in_flight.dec();
                // Not acked: the queue delivers it again to a worker that stays.
                tracing::warn!(job = %job.job_id, "shutdown grace over: the job is handed back to the queue");
                drop(delivery);
                return;
            }
        };
        in_flight.dec();
        match outcome {
            Ok(ready) => {
                let wall = started.elapsed().as_secs_f64();
                tracing::info!(job = %job.job_id, part, secs = wall, "transcode job done");
                metrics.job_duration.observe(wall);
                if let JobEvent::Ready { duration_secs, .. } = &ready {
                    metrics
                        .transcode_speed
                        .observe(duration_secs / wall.max(1e-3));
                }
                self.publish(&ready).await;
                let _ = delivery.ack().await;
            }
            Err(e) if attempt >= self.config.max_attempts && job.part == JobPart::Slides => {
                // The lecture plays without its slides: nothing to tell anyone but an operator.
                tracing::error!(job = %job.job_id, attempt, error = %e, "slides job failed for good");
                metrics.job_failed(e.kind(), JobOutcome::DeadLettered);
                if let Err(e) = delivery.dead_letter(&e.to_string()).await {
                    tracing::error!(error = %e, "could not dead-letter a failed job");
                }
            }
            Err(e) if attempt >= self.config.max_attempts => {
                tracing::error!(job = %job.job_id, attempt, error = %e, "transcode job failed for good");
                metrics.job_failed(e.kind(), JobOutcome::DeadLettered);
                // A part shares the asset's prefix with the parts that succeeded.
                if job.part == JobPart::Whole {
                    let _ = self.store.delete_prefix(&job.output_prefix).await;
                }
                // People see the file's fault or a plain word; the detail goes to the
                // log and the dead-letter queue, for operators.
                let reason = match &e {
                    JobError::Media { refusal, .. } => format!("Transcoding failed: {refusal}."),
                    JobError::Storage(lectern_seams::storage::StorageError::NotFound(_)) => {
                        format!(
                            "Transcoding failed after {attempt} attempts: the uploaded file was not found in storage."
                        )
                    }
                    _ => format!(
                        "Transcoding failed after {attempt} attempts: an internal error (the server's log has the details)."
                    ),
                };
                let detail = format!("{reason} ({e})");
                let diagnostics = match e {
                    JobError::Media { diagnostics, .. } => Some(diagnostics),
                    _ => None,
                };
                self.publish(&JobEvent::Failed {
                    job_id: job.job_id.clone(),
                    lecture_id: job.lecture_id.clone(),
                    asset_id: Some(job.asset_id.clone()),
                    reason,
                    diagnostics,
                })
                .await;
                // Kept for an operator, with the reason, in the dead-letter queue.
                if let Err(e) = delivery.dead_letter(&detail).await {
                    tracing::error!(error = %e, "could not dead-letter a failed job");
                }
            }
            Err(e) => {
                let delay = self.config.retry_base * 2u32.saturating_pow(attempt.saturating_sub(1));
                tracing::warn!(job = %job.job_id, attempt, error = %e, ?delay, "transcode job failed; retrying");
                metrics.job_failed(e.kind(), JobOutcome::Retried);
                let _ = delivery.retry_after(delay).await;
            }
        }
    }

    async fn publish(&self, event: &JobEvent) {
        let payload = lectern_seams::telemetry::event_payload(event);
        // Events matter (ready/failed): keep trying for up to half a minute.
        if !lectern_seams::queue::publish_retrying(&*self.queue, Topic::Events, payload, 6).await {
            tracing::error!("could not publish a job event");
        }
    }

    async fn process(
        &self,
        job: &TranscodeJob,
        cancel: Arc<AtomicBool>,
    ) -> Result<JobEvent, JobError> {
        if job.part == JobPart::Slides {
            return self.read_slides(job, cancel).await;
        }
        let prefix = &job.output_prefix;
        if let Some(done) = self.already_done(job).await {
            tracing::info!(job = %job.job_id, "outputs already stored; reporting ready again");
            return Ok(done);
        }
        let scratch = self.scratch_for(job).await?;
        let source = self.source_of(job, scratch.path()).await?;
        let out_dir = scratch.path().join("out");

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let reporter = {
            let queue = self.queue.clone();
            let (job_id, lecture_id, asset_id) = (
                job.job_id.clone(),
                job.lecture_id.clone(),
                job.asset_id.clone(),
            );
            let whole = job.part == JobPart::Whole;
            tokio::spawn(
                async move {
                    let mut last = 0u8;
                    while let Some(percent) = rx.recv().await {
                        // A part's progress is the catalog's count of stored parts.
                        if whole && percent > last {
                            last = percent;
                            let event = JobEvent::Progress {
                                job_id: job_id.clone(),
                                lecture_id: lecture_id.clone(),
                                asset_id: asset_id.clone(),
                                percent,
                            };
                            let _ = queue
                                .publish(
                                    Topic::Events,
                                    lectern_seams::telemetry::event_payload(&event),
                                )
                                .await;
                        }
                    }
                }
                .in_current_span(),
            )
        };
        // An audio part stores its segments as they are finished and reports them, so a
        // long lecture can play before its audio is all encoded.
        let (finished_tx, finished_rx) =
            tokio::sync::mpsc::unbounded_channel::<Vec<SegmentFacts>>();
        let grower = (job.part == JobPart::Audio).then(|| {
            tokio::spawn(
                store_growing_audio(
                    self.store.clone(),
                    self.queue.clone(),
                    job.clone(),
                    out_dir.join("audio"),
                    finished_rx,
                )
                .in_current_span(),
            )
        });
        let request = fenced::Request {
            job: job.clone(),
            source: source.clone(),
            out_dir: out_dir.clone(),
            stall_secs: self.config.stall_timeout.as_secs(),
            total_secs: self.job_time(job).as_secs(),
            max_gap_secs: self.config.max_gap.as_secs(),
        };
        let task = Task {
            name: fenced::TASK,
            input: &request,
            readable: vec![source],
            writable: scratch.path().to_path_buf(),
            time: request.time_budget(),
            starts_programs: false,
        };
        let on_event = |event: fenced::Event| match event {
            fenced::Event::Progress(percent) => {
                let _ = tx.send(percent.min(90));
            }
            fenced::Event::AudioFinished(segments) => {
                let _ = finished_tx.send(segments.iter().map(SegmentFacts::from).collect());
            }
        };
        let cancelled = async {
            while !cancel.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let output = self
            .config
            .fence
            .run::<_, _, fenced::Report>(task, on_event, cancelled)
            .await;
        drop(finished_tx);
        let stored_early = match grower {
            Some(grower) => grower
                .await
                .map_err(|e| JobError::Internal(format!("the audio uploader crashed: {e}")))?,
            None => HashSet::new(),
        };
        let output = match output {
            Ok(report) => fenced::checked(report, job).map_err(JobError::Internal)?,
            Err(failure) => {
                tracing::warn!(job = %job.job_id, error = %failure, "the fenced transcode failed");
                return Err(match failure.error.refusal() {
                    Some(refusal) => JobError::Media {
                        refusal,
                        diagnostics: failure.diagnostics,
                    },
                    None => JobError::Internal(failure.to_string()),
                });
            }
        };
        let _ = tx.send(92);
        let event = match job.part {
            JobPart::Whole => self.store_outputs(job, &output, &out_dir).await?,
            _ => {
                self.store_part(job, &output, &out_dir, &stored_early)
                    .await?
            }
        };
        drop(tx);
        let _ = reporter.await;
        tracing::debug!(prefix, "outputs stored");
        Ok(event)
    }

    /// A scratch folder of the job's own, removed when dropped.
    async fn scratch_for(&self, job: &TranscodeJob) -> Result<tempfile::TempDir, JobError> {
        tokio::fs::create_dir_all(&self.config.scratch_dir)
            .await
            .map_err(|e| JobError::Internal(e.to_string()))?;
        tempfile::Builder::new()
            .prefix(&format!("job-{}-", part_key(job)))
            .tempdir_in(&self.config.scratch_dir)
            .map_err(|e| JobError::Internal(format!("scratch space: {e}")))
    }

    /// The source as a local file: the store's own, or a cached download.
    async fn source_of(&self, job: &TranscodeJob, job_dir: &Path) -> Result<PathBuf, JobError> {
        match self
            .store
            .local_path(&job.source_key)
            .filter(|p| p.exists())
        {
            Some(p) => Ok(p),
            None => self.cached_source(&job.source_key, job_dir).await,
        }
    }

    /// How long a job's pipeline may run.
    fn job_time(&self, job: &TranscodeJob) -> Duration {
        self.config.job_time_base
            + Duration::from_secs_f64(
                job.source.duration_secs.max(0.0) * self.config.job_time_per_source_sec,
            )
    }

    async fn already_done(&self, job: &TranscodeJob) -> Option<JobEvent> {
        let prefix = &job.output_prefix;
        if job.part != JobPart::Whole {
            let key = format!("{prefix}/{PARTS_DIR}/{}.json", part_key(job));
            let bytes = lectern_seams::storage::read_to_vec(self.store.as_ref(), &key)
                .await
                .ok()?;
            let report: PartReport = serde_json::from_slice(&bytes).ok()?;
            return Some(part_event(job, report));
        }
        self.store
            .head(&format!("{prefix}/{MASTER_PLAYLIST}"))
            .await
            .ok()?;
        let bytes = lectern_seams::storage::read_to_vec(
            self.store.as_ref(),
            &format!("{prefix}/{MANIFEST}"),
        )
        .await
        .ok()?;
        let m: Manifest = serde_json::from_slice(&bytes).ok()?;
        Some(ready_event(job, m))
    }

    /// The source, from the worker's scratch space when the previous job had the same
    /// one: a lecture split into chunks is downloaded once per worker, not per chunk.
    /// Only the latest source is kept. Workers may share the scratch space, so each job
    /// reads a hard link of its own in `job_dir`: a cached source another worker
    /// replaces stays whole for the jobs reading it.
    async fn cached_source(&self, key: &str, job_dir: &Path) -> Result<PathBuf, JobError> {
        let scratch = |e: std::io::Error| JobError::Internal(format!("scratch space: {e}"));
        let dir = self.config.scratch_dir.join("sources");
        tokio::fs::create_dir_all(&dir).await.map_err(scratch)?;
        let name: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let cached = dir.join(&name);
        let linked = job_dir.join("source");
        let size = self.store.head(key).await?.size;
        if tokio::fs::metadata(&cached)
            .await
            .is_ok_and(|m| m.len() == size)
            && tokio::fs::hard_link(&cached, &linked).await.is_ok()
        {
            return Ok(linked);
        }
        // Downloaded under a name of its own: a crash mid-way leaves no short file that
        // a later job would take for the source, and two workers never write one file.
        let partial = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&dir)
            .map_err(scratch)?
            .into_temp_path();
        self.store.download_to(key, &partial).await?;
        tokio::fs::hard_link(&partial, &linked)
            .await
            .map_err(scratch)?;
        let mut older = tokio::fs::read_dir(&dir).await.map_err(scratch)?;
        while let Ok(Some(entry)) = older.next_entry().await {
            // Downloads in progress stay, unless a crash left them a day ago.
            let in_progress = entry.file_name().to_string_lossy().starts_with(".partial-")
                && entry
                    .metadata()
                    .await
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age < Duration::from_secs(86_400));
            if !in_progress {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
        partial.persist(&cached).map_err(|e| scratch(e.error))?;
        Ok(linked)
    }

    /// Uploads one part's segments and stills, then its report: the report is the
    /// part's proof of completion, so it goes last.
    /// `stored_early` lists audio segments already stored while the job ran.
    async fn store_part(
        &self,
        job: &TranscodeJob,
        out: &fenced::Report,
        out_dir: &Path,
        stored_early: &HashSet<u64>,
    ) -> Result<JobEvent, JobError> {
        let prefix = &job.output_prefix;
        let mut renditions = Vec::new();
        for r in out.video.iter().chain(out.audio.iter()) {
            let codec = codec_of(r)?;
            let rung = fenced::rung_of(job, &r.name);
            for s in r
                .segments
                .iter()
                .filter(|s| rung.is_some() || !stored_early.contains(&s.index))
            {
                let name = lectern_packager::segment_name(s.index);
                self.store
                    .put_file(
                        &format!("{prefix}/{}/{name}", r.name),
                        &out_dir.join(&r.name).join(&name),
                    )
                    .await?;
            }
            renditions.push(StoredRendition {
                name: r.name.clone(),
                codec,
                rung: rung.cloned(),
                segments: r
                    .segments
                    .iter()
                    .map(|s| StoredSegment {
                        index: s.index,
                        duration: s.duration,
                        bytes: s.bytes,
                    })
                    .collect(),
            });
        }
        let (has_poster, has_storyboard) = self.store_stills(prefix, out, out_dir).await?;
        let report = PartReport {
            key: part_key(job),
            renditions,
            has_poster,
            has_storyboard,
            partial: false,
        };
        let bytes = serde_json::to_vec(&report).expect("reports serialize");
        self.store
            .put_bytes(
                &format!("{prefix}/{PARTS_DIR}/{}.json", report.key),
                bytes.into(),
            )
            .await?;
        Ok(part_event(job, report))
    }

    /// Uploads a rendition's segments under `{prefix}/{rendition}/`.
    async fn store_segments(
        &self,
        prefix: &str,
        r: &fenced::Rendition,
        out_dir: &Path,
    ) -> Result<(), JobError> {
        for s in &r.segments {
            let name = lectern_packager::segment_name(s.index);
            self.store
                .put_file(
                    &format!("{prefix}/{}/{name}", r.name),
                    &out_dir.join(&r.name).join(&name),
                )
                .await?;
        }
        Ok(())
    }

    /// The poster and the storyboard, when the pipeline grabbed them.
    async fn store_stills(
        &self,
        prefix: &str,
        out: &fenced::Report,
        out_dir: &Path,
    ) -> Result<(bool, bool), JobError> {
        if out.has_poster {
            self.store
                .put_file(
                    &format!("{prefix}/{}", fenced::POSTER),
                    &out_dir.join(fenced::POSTER),
                )
                .await?;
        }
        if out.has_storyboard {
            for name in [storyboard::SPRITE_NAME, fenced::STORYBOARD_VTT] {
                self.store
                    .put_file(&format!("{prefix}/{name}"), &out_dir.join(name))
                    .await?;
            }
        }
        Ok((out.has_poster, out.has_storyboard))
    }

    /// Writes playlists, poster and storyboard beside the segments, uploads all of it,
    /// then the manifest and, last, the master playlist.
    async fn store_outputs(
        &self,
        job: &TranscodeJob,
        out: &fenced::Report,
        out_dir: &Path,
    ) -> Result<JobEvent, JobError> {
        let prefix = &job.output_prefix;
        let internal =
            |e: lectern_packager::PackagerError| JobError::Internal(format!("packaging: {e}"));
        let mut videos = Vec::new();
        for r in &out.video {
            let rung = fenced::rung_of(job, &r.name)
                .ok_or_else(|| JobError::Internal(format!("no rung named {}", r.name)))?;
            let codec = codec_of(r)?;
            videos.push(VideoVariant {
                uri: format!("{}/{MEDIA_PLAYLIST}", r.name),
                width: rung.width,
                height: rung.height,
                frame_rate: job.source.fps(),
                codec,
                segments: r.segments.iter().map(SegmentFacts::from).collect(),
            });
        }
        let audio = out.audio.as_ref().map(|a| AudioRendition {
            uri: format!("{}/{MEDIA_PLAYLIST}", a.name),
            codec: lectern_packager::AAC_LC.into(),
            channels: 2,
            segments: a.segments.iter().map(SegmentFacts::from).collect(),
        });
        let master =
            lectern_packager::master_playlist(&videos, audio.as_ref()).map_err(internal)?;

        let renditions: Vec<&fenced::Rendition> =
            out.video.iter().chain(out.audio.iter()).collect();
        for r in &renditions {
            let segments: Vec<SegmentFacts> = r.segments.iter().map(SegmentFacts::from).collect();
            let playlist =
                lectern_packager::media_playlist(&segments, PlaylistKind::Vod).map_err(internal)?;
            self.store_segments(prefix, r, out_dir).await?;
            self.store
                .put_bytes(
                    &format!("{prefix}/{}/{MEDIA_PLAYLIST}", r.name),
                    playlist.into(),
                )
                .await?;
        }
        let (has_poster, _) = self.store_stills(prefix, out, out_dir).await?;
        let manifest = Manifest {
            duration_secs: out.duration_secs,
            renditions: renditions.iter().map(|r| r.name.clone()).collect(),
            has_poster,
        };
        self.store
            .put_bytes(
                &format!("{prefix}/{MANIFEST}"),
                serde_json::to_vec(&manifest)
                    .expect("manifest serializes")
                    .into(),
            )
            .await?;
        self.store
            .put_bytes(&format!("{prefix}/{MASTER_PLAYLIST}"), master.into())
            .await?;
        Ok(ready_event(job, manifest))
    }
}

/// A rendition's RFC 6381 codec string, which its playlists cannot do without.
fn codec_of(r: &fenced::Rendition) -> Result<String, JobError> {
    r.codec.clone().ok_or_else(|| {
        JobError::Internal(format!(
            "no H.264 parameter sets found in rendition {}",
            r.name
        ))
    })
}

/// How often, at most, an audio part reports what it has stored so far.
const GROWING_REPORT_EVERY: Duration = Duration::from_secs(2);

/// Stores an audio part's segments as the pipeline finishes them, and reports them as
/// partial parts: the first as soon as it is stored, then at most every
/// `GROWING_REPORT_EVERY`. Returns the indexes stored. A failed upload or report is
/// only logged: the part's final report, after the run, is what must land.
async fn store_growing_audio(
    store: SharedStore,
    queue: SharedQueue,
    job: TranscodeJob,
    dir: PathBuf,
    mut finished: tokio::sync::mpsc::UnboundedReceiver<Vec<SegmentFacts>>,
) -> HashSet<u64> {
    let prefix = &job.output_prefix;
    let mut stored = HashSet::new();
    let mut reported = 0;
    let mut last_report: Option<Instant> = None;
    while let Some(mut segments) = finished.recv().await {
        // Only the newest list matters: each one holds every finished segment.
        while let Ok(newer) = finished.try_recv() {
            segments = newer;
        }
        let mut stored_prefix = 0;
        for s in &segments {
            if !stored.contains(&s.index) {
                let name = lectern_packager::segment_name(s.index);
                if let Err(e) = store
                    .put_file(&format!("{prefix}/audio/{name}"), &dir.join(&name))
                    .await
                {
                    tracing::warn!(job = %job.job_id, error = %e, "could not store an audio segment early");
                    break;
                }
                stored.insert(s.index);
            }
            stored_prefix += 1;
        }
        if stored_prefix <= reported
            || last_report.is_some_and(|t| t.elapsed() < GROWING_REPORT_EVERY)
        {
            continue;
        }
        let report = PartReport {
            key: part_key(&job),
            renditions: vec![StoredRendition {
                name: "audio".into(),
                codec: lectern_packager::AAC_LC.into(),
                rung: None,
                segments: segments[..stored_prefix]
                    .iter()
                    .map(|s| StoredSegment {
                        index: s.index,
                        duration: s.duration,
                        bytes: s.bytes,
                    })
                    .collect(),
            }],
            has_poster: false,
            has_storyboard: false,
            partial: true,
        };
        let event = lectern_seams::telemetry::event_payload(&part_event(&job, report));
        match queue.publish(Topic::Events, event).await {
            Ok(()) => {
                if reported == 0 {
                    tracing::info!(job = %job.job_id, segments = stored_prefix, "first audio segments reported");
                }
                reported = stored_prefix;
                last_report = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(job = %job.job_id, error = %e, "could not report the audio stored so far")
            }
        }
    }
    stored
}

fn part_event(job: &TranscodeJob, report: PartReport) -> JobEvent {
    JobEvent::PartStored {
        job_id: job.job_id.clone(),
        lecture_id: job.lecture_id.clone(),
        asset_id: job.asset_id.clone(),
        report,
    }
}

fn ready_event(job: &TranscodeJob, m: Manifest) -> JobEvent {
    JobEvent::Ready {
        job_id: job.job_id.clone(),
        lecture_id: job.lecture_id.clone(),
        asset_id: job.asset_id.clone(),
        duration_secs: m.duration_secs,
        renditions: m.renditions,
        has_poster: m.has_poster,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_a_kind_of_three() {
        let media = JobError::Media {
            refusal: lectern_gate::Refusal::NotMedia,
            diagnostics: String::new(),
        };
        let storage = JobError::Storage(lectern_seams::storage::StorageError::NotFound(
            "uploads/x".into(),
        ));
        let internal = JobError::Internal("the fenced child crashed".into());
        assert_eq!(media.kind(), JobFailure::Media);
        assert_eq!(storage.kind(), JobFailure::Storage);
        assert_eq!(internal.kind(), JobFailure::Internal);
        assert_eq!(
            [media, storage, internal].map(|e| e.kind().as_str()),
            ["media", "storage", "internal"]
        );
    }
}
