//! The upload domain: creating resumable uploads, appending chunks, terminating, and
//! turning a complete upload into an asset and a transcode job (or a failed lecture
//! with the reason).

use lectern_seams::ids::{AssetId, AttachmentId, LectureId, UserId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use lectern_gate::Refusal;
use lectern_gate::fence::Task;
use lectern_seams::language::CourseLanguage;
use lectern_seams::lecture::{self, LectureStatus};
use lectern_seams::messages::{JobEvent, JobPart, TimeRange, TranscodeJob, part_key};
use lectern_seams::originals::OriginalTier;
use lectern_seams::queue::Topic;
use lectern_seams::storage::ByteStream;
use lectern_seams::telemetry;
use lectern_seams::{new_id, now_unix};
use lectern_web::auth::{AuthUser, Role};
use tracing::Instrument;

use crate::IngestState;
use crate::error::IngestError;
use crate::tus::{Checksum, Hasher};

/// Segment and keyframe spacing of every ladder: 6 s segments of three 2 s GOPs.
pub const SEGMENT_SECS: u32 = lectern_seams::messages::SEGMENT_SECS;
pub const KEYFRAME_SECS: u32 = 2;
pub const AUDIO_KBPS: u32 = 128;

#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub target: UploadTarget,
    pub owner_id: UserId,
    pub metadata: String,
    pub length: u64,
    pub received: u64,
    pub storage_key: String,
    pub state: UploadState,
    pub expires_at: i64,
    /// Where the original is kept once processed.
    pub tier: OriginalTier,
    /// The trace context of the request that created the upload (tracing on): its
    /// PATCHes and its finish continue that trace.
    pub trace_context: Option<String>,
}

/// What an upload's bytes are for: a lecture's file (probed, then transcoded) or an
/// attachment's (its kind read, then handed out as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadTarget {
    Lecture(LectureId),
    Attachment(AttachmentId),
}

/// Where an upload stands: bytes arriving, all arrived (probing next), or handed on
/// (a job was scheduled or the file was refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    Receiving,
    Complete,
    Processed,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Receiving => "receiving",
            UploadState::Complete => "complete",
            UploadState::Processed => "processed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            UploadState::Receiving,
            UploadState::Complete,
            UploadState::Processed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(sqlx::FromRow)]
struct UploadRow {
    id: String,
    lecture_id: Option<LectureId>,
    attachment_id: Option<AttachmentId>,
    owner_id: UserId,
    metadata: String,
    length: i64,
    received: i64,
    storage_key: String,
    state: String,
    expires_at: i64,
    tier: String,
    trace_context: Option<String>,
}

impl Upload {
    /// The lecture whose file this is, if it is one.
    pub fn lecture_id(&self) -> Option<&LectureId> {
        match &self.target {
            UploadTarget::Lecture(id) => Some(id),
            UploadTarget::Attachment(_) => None,
        }
    }

    fn from_row(r: UploadRow) -> Result<Self, IngestError> {
        let state = UploadState::parse(&r.state).ok_or_else(|| {
            IngestError::Internal(format!(
                "upload {} has an unknown state {:?}",
                r.id, r.state
            ))
        })?;
        let tier = OriginalTier::parse(&r.tier).ok_or_else(|| {
            IngestError::Internal(format!("upload {} has an unknown tier {:?}", r.id, r.tier))
        })?;
        let target = match (r.lecture_id, r.attachment_id) {
            (Some(l), None) => UploadTarget::Lecture(l),
            (None, Some(a)) => UploadTarget::Attachment(a),
            _ => {
                return Err(IngestError::Internal(format!(
                    "upload {} is for no one thing",
                    r.id
                )));
            }
        };
        Ok(Upload {
            id: r.id,
            target,
            owner_id: r.owner_id,
            metadata: r.metadata,
            length: r.length as u64,
            received: r.received as u64,
            storage_key: r.storage_key,
            state,
            expires_at: r.expires_at,
            tier,
            trace_context: r.trace_context,
        })
    }
}

async fn load(state: &IngestState, id: &str) -> Result<Option<Upload>, IngestError> {
    let row: Option<UploadRow> = sqlx::query_as(
        "SELECT id, lecture_id, attachment_id, owner_id, metadata, length, received, storage_key, state, expires_at, tier, trace_context
         FROM uploads WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    row.map(Upload::from_row).transpose()
}

/// The upload, if it exists, belongs to `user` and has not expired.
pub async fn load_for(
    state: &IngestState,
    user: &AuthUser,
    id: &str,
) -> Result<Upload, IngestError> {
    let upload = load(state, id)
        .await?
        .filter(|u| u.owner_id == user.id || user.is_admin())
        .ok_or_else(|| IngestError::NotFound("no such upload".into()))?;
    if upload.state == UploadState::Receiving && upload.expires_at < now_unix() {
        return Err(IngestError::Gone);
    }
    Ok(upload)
}

pub struct NewUpload {
    pub length: u64,
    pub metadata_header: String,
    pub metadata: BTreeMap<String, String>,
}

/// Counts an upload of `length` bytes against its owner's quota, in the transaction
/// that records it, and refuses it when the count would pass `quota` (0: none). The
/// check and the count are one statement, so two uploads at once cannot both slip
/// under the quota. Every upload counts, its lecture deleted or not; only one given up
/// before it completed is taken back (`uncount`).
async fn count_against_quota(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: &UserId,
    length: u64,
    quota: u64,
) -> Result<(), IngestError> {
    sqlx::query("INSERT INTO upload_usage (owner_id, bytes) VALUES ($1, 0) ON CONFLICT (owner_id) DO NOTHING")
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    let counted = sqlx::query(
        "UPDATE upload_usage SET bytes = bytes + $1 WHERE owner_id = $2 AND ($3 = 0 OR bytes + $1 <= $3)",
    )
    .bind(length as i64)
    .bind(owner)
    .bind(quota as i64)
    .execute(&mut **tx)
    .await?;
    if counted.rows_affected() == 1 {
        return Ok(());
    }
    let (used,): (i64,) = sqlx::query_as("SELECT bytes FROM upload_usage WHERE owner_id = $1")
        .bind(owner)
        .fetch_one(&mut **tx)
        .await?;
    Err(IngestError::QuotaExceeded(format!(
        "this upload ({length} bytes) would exceed your upload quota: {used} of {quota} bytes are used by your uploads"
    )))
}

/// Takes back the count of an upload given up or expired before it completed.
async fn uncount(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: &UserId,
    length: u64,
) -> Result<(), IngestError> {
    sqlx::query("UPDATE upload_usage SET bytes = bytes - $1 WHERE owner_id = $2 AND bytes >= $1")
        .bind(length as i64)
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The lecture an upload is for and its course's owner, if `user` may upload its file
/// now (not while its last one is still processing).
async fn lecture_target(
    state: &IngestState,
    user: &AuthUser,
    new: &NewUpload,
) -> Result<(UploadTarget, UserId), IngestError> {
    if new.length == 0 {
        return Err(IngestError::BadRequest(
            "an empty file is not a video".into(),
        ));
    }
    let lecture_id = new
        .metadata
        .get("lecture_id")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            IngestError::BadRequest(
                "Upload-Metadata must name a lecture_id or an attachment_id".into(),
            )
        })?;
    let lecture_id = LectureId::parse(lecture_id)
        .ok_or_else(|| IngestError::NotFound("no such lecture".into()))?;
    let lecture: Option<(String, UserId)> = sqlx::query_as(
        "SELECT l.status, c.owner_id FROM lectures l JOIN courses c ON c.id = l.course_id WHERE l.id = $1",
    )
    .bind(lecture_id.as_str())
    .fetch_optional(&state.db)
    .await?;
    let (status, owner_id) =
        lecture.ok_or_else(|| IngestError::NotFound("no such lecture".into()))?;
    if owner_id != user.id && !user.is_admin() {
        return Err(IngestError::Forbidden(
            "only the lecture's owner may upload to it".into(),
        ));
    }
    if LectureStatus::parse(&status) == Some(LectureStatus::Processing) {
        return Err(IngestError::Conflict(
            "the lecture's last upload is still being processed".into(),
        ));
    }
    Ok((UploadTarget::Lecture(lecture_id), owner_id))
}

pub async fn create(
    state: &IngestState,
    user: &AuthUser,
    new: NewUpload,
) -> Result<Upload, IngestError> {
    if user.role == Role::Student {
        return Err(IngestError::Forbidden(
            "students cannot upload lectures".into(),
        ));
    }
    if new.length > state.config.max_upload_bytes {
        return Err(IngestError::TooLarge(format!(
            "Upload-Length {} exceeds the maximum of {} bytes",
            new.length, state.config.max_upload_bytes
        )));
    }
    let filename = new
        .metadata
        .get("filename")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| IngestError::BadRequest("Upload-Metadata must name a filename".into()))?;
    let (target, owner_id) = match crate::attachments::attachment_of(&new.metadata) {
        Some(id) => {
            let (id, owner) =
                crate::attachments::upload_target(state, user, id, new.length).await?;
            (UploadTarget::Attachment(id), owner)
        }
        None => lecture_target(state, user, &new).await?,
    };
    let id = new_id().replace('-', "");
    let now = now_unix();
    let upload = Upload {
        storage_key: format!("uploads/{id}"),
        id,
        target,
        owner_id,
        metadata: new.metadata_header,
        length: new.length,
        received: 0,
        state: UploadState::Receiving,
        expires_at: now + state.config.upload_ttl_secs,
        tier: OriginalTier::Hot,
        trace_context: telemetry::current_traceparent(),
    };
    // Admins' uploads are counted to the lecture's owner but never refused.
    let quota = if user.is_admin() {
        0
    } else {
        state.config.upload_quota_bytes
    };
    let mut tx = state.db.begin().await?;
    count_against_quota(&mut tx, &upload.owner_id, upload.length, quota).await?;
    sqlx::query(
        "INSERT INTO uploads (id, lecture_id, attachment_id, owner_id, filename, metadata, length, received, storage_key, state, expires_at, created_at, last_used_at, trace_context)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, 'receiving', $9, $10, $10, $11)",
    )
    .bind(&upload.id)
    .bind(upload.lecture_id())
    .bind(match &upload.target {
        UploadTarget::Attachment(a) => Some(a),
        UploadTarget::Lecture(_) => None,
    })
    .bind(&upload.owner_id)
    .bind(filename)
    .bind(&upload.metadata)
    .bind(upload.length as i64)
    .bind(&upload.storage_key)
    .bind(upload.expires_at)
    .bind(now)
    .bind(&upload.trace_context)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(upload)
}

struct Tally {
    hasher: Option<Hasher>,
    over_limit: bool,
}

/// Appends one PATCH (or creation-with-upload) body at `offset`, in a `tus.append` span
/// of the upload's trace (linked to the request's own span when that began another).
pub async fn append(
    state: &IngestState,
    upload: &Upload,
    offset: u64,
    checksum: Option<Checksum>,
    body: ByteStream,
) -> Result<Upload, IngestError> {
    let span = tracing::info_span!("tus.append", upload = %upload.id, offset, trace_id = tracing::field::Empty);
    telemetry::continue_trace_linked(&span, upload.trace_context.as_deref());
    append_bytes(state, upload, offset, checksum, body)
        .instrument(span)
        .await
}

/// The bytes stream straight to storage; memory holds one network chunk at a time.
async fn append_bytes(
    state: &IngestState,
    upload: &Upload,
    offset: u64,
    checksum: Option<Checksum>,
    body: ByteStream,
) -> Result<Upload, IngestError> {
    let lock = state.lock_for(&upload.id);
    let _guard = lock.lock().await;
    // Re-read under the lock: a concurrent PATCH may have moved the offset.
    let current = load(state, &upload.id)
        .await?
        .ok_or_else(|| IngestError::NotFound("no such upload".into()))?;
    if current.state != UploadState::Receiving {
        return Err(IngestError::Conflict(
            "the upload is already complete".into(),
        ));
    }
    if offset != current.received {
        return Err(IngestError::OffsetConflict {
            given: offset,
            actual: current.received,
        });
    }
    let remaining = current.length - current.received;
    let tally = Arc::new(Mutex::new(Tally {
        hasher: checksum.as_ref().map(|c| Hasher::new(c.algorithm)),
        over_limit: false,
    }));
    let counted = {
        let tally = tally.clone();
        let mut seen = 0u64;
        body.map(move |chunk| {
            let chunk: Bytes = chunk?;
            seen += chunk.len() as u64;
            let mut t = tally.lock().expect("tally lock");
            if seen > remaining {
                t.over_limit = true;
                return Err(std::io::Error::other(
                    "body is longer than the upload's remaining length",
                ));
            }
            if let Some(h) = t.hasher.as_mut() {
                h.update(&chunk);
            }
            Ok(chunk)
        })
        .boxed()
    };
    let outcome = state
        .store
        .append(&current.storage_key, offset, counted)
        .await?;
    let (over_limit, digest) = {
        let mut t = tally.lock().expect("tally lock");
        (t.over_limit, t.hasher.take().map(Hasher::finish))
    };
    if over_limit {
        state.store.truncate(&current.storage_key, offset).await?;
        return Err(IngestError::TooLarge(
            "the body runs past Upload-Length; the chunk was discarded".into(),
        ));
    }
    if let Some(expected) = &checksum {
        // A chunk with a checksum is all or nothing.
        if outcome.interrupted.is_some() || digest.as_deref() != Some(expected.digest.as_slice()) {
            state.store.truncate(&current.storage_key, offset).await?;
            if let Some(e) = outcome.interrupted {
                return Err(IngestError::BadRequest(format!(
                    "the body was cut short: {e}"
                )));
            }
            return Err(IngestError::ChecksumMismatch);
        }
    }
    let received = outcome.new_len;
    lectern_seams::metrics::metrics()
        .upload_bytes
        .inc_by(received.saturating_sub(offset));
    let complete = received == current.length;
    let expires_at = now_unix() + state.config.upload_ttl_secs;
    sqlx::query("UPDATE uploads SET received = $1, state = $2, expires_at = $3 WHERE id = $4")
        .bind(received as i64)
        .bind(if complete { "complete" } else { "receiving" })
        .bind(expires_at)
        .bind(&current.id)
        .execute(&state.db)
        .await?;
    if let Some(e) = outcome.interrupted {
        // The client went away; what arrived is kept and HEAD reports it.
        tracing::info!(upload = %current.id, received, error = %e, "upload body interrupted");
        return Err(IngestError::BadRequest(format!(
            "the body was cut short after {received} bytes: {e}"
        )));
    }
    let appended = Upload {
        received,
        expires_at,
        state: if complete {
            UploadState::Complete
        } else {
            UploadState::Receiving
        },
        ..current
    };
    if complete {
        match &appended.target {
            UploadTarget::Lecture(lecture_id) => {
                // The file is in: the lecture is processing from now on (probing next).
                lecture::start_processing(&state.db, lecture_id).await?;
                let uploaded = JobEvent::Uploaded {
                    lecture_id: lecture_id.clone(),
                    upload_id: appended.id.clone(),
                    bytes: appended.length,
                };
                publish_event(state, &uploaded).await;
                finish_in_background(state, appended.id.clone());
            }
            UploadTarget::Attachment(id) => {
                // Reading its kind is quick: the last chunk's answer says whether it
                // was taken.
                state.store.finish_append(&appended.storage_key).await?;
                if let Some(reason) = crate::attachments::finish(state, &appended, id).await? {
                    return Err(IngestError::UnsupportedFileType(reason));
                }
            }
        }
    }
    Ok(appended)
}

/// tus termination: the upload and its bytes are removed.
pub async fn terminate(state: &IngestState, upload: &Upload) -> Result<(), IngestError> {
    let lock = state.lock_for(&upload.id);
    let _guard = lock.lock().await;
    if upload.state != UploadState::Receiving {
        return Err(IngestError::Conflict(
            "a complete upload cannot be terminated".into(),
        ));
    }
    state.store.delete(&upload.storage_key).await?;
    let mut tx = state.db.begin().await?;
    let deleted = sqlx::query("DELETE FROM uploads WHERE id = $1 AND state = 'receiving'")
        .bind(&upload.id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 1 {
        uncount(&mut tx, &upload.owner_id, upload.length).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Runs the analysis of an upload in a fenced child. The file's faults come back as a
/// refusal; ours (the child could not start) as an error, so the upload is finished
/// again at the next start.
async fn analyse_fenced(
    state: &IngestState,
    source: &std::path::Path,
) -> Result<Result<crate::analyse::Analysis, Refused>, IngestError> {
    let config = &state.config;
    let request = crate::analyse::Request {
        source: source.to_path_buf(),
        timeout_secs: config.probe_timeout_secs,
        chunk_secs: config.chunk_secs,
        per_title: config.per_title_ladder,
        limits: config.source_limits,
    };
    let scratch = tempdir_in(&config.scratch_dir)?;
    let task = Task {
        name: crate::analyse::TASK,
        input: &request,
        readable: vec![source.to_path_buf()],
        writable: scratch.path().to_path_buf(),
        time: request.time_budget(),
        starts_programs: false,
    };
    match config
        .fence
        .run(task, |()| {}, std::future::pending())
        .await
    {
        Ok(analysis) => Ok(Ok(analysis)),
        Err(failure) => match failure.error.refusal() {
            Some(refusal) => {
                tracing::info!(error = %failure, "the fenced analysis refused the upload");
                Ok(Err(Refused {
                    refusal,
                    diagnostics: failure.diagnostics,
                }))
            }
            None => Err(IngestError::Internal(failure.to_string())),
        },
    }
}

/// Runs `finish` without holding up the request; a failure is retried at the next start.
pub(crate) fn finish_in_background(state: &IngestState, id: String) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = finish(&state, &id).await {
            tracing::error!(upload = %id, error = %e, "processing a complete upload failed; it is retried at the next start");
        }
    });
}

/// Why an upload cannot become a lecture: the reason everyone sees, and what its owner
/// may be told besides (`lectern_gate::diagnostics`).
struct Refused {
    refusal: Refusal,
    diagnostics: String,
}

/// Hands a complete upload on: a lecture's file to probing and transcoding, an
/// attachment's to the check of its kind. Safe to run again after a crash.
pub async fn finish(state: &IngestState, upload_id: &str) -> Result<(), IngestError> {
    let Some(upload) = load(state, upload_id).await? else {
        return Ok(());
    };
    if upload.state != UploadState::Complete {
        return Ok(());
    }
    // The upload's trace goes on here, in the background or after a restart.
    let span =
        tracing::info_span!("upload.finish", upload = %upload.id, trace_id = tracing::field::Empty);
    telemetry::continue_trace(&span, upload.trace_context.as_deref());
    async {
        state.store.finish_append(&upload.storage_key).await?;
        match &upload.target {
            UploadTarget::Lecture(lecture_id) => finish_lecture(state, &upload, lecture_id).await,
            UploadTarget::Attachment(id) => crate::attachments::finish(state, &upload, id)
                .await
                .map(drop),
        }
    }
    .instrument(span)
    .await
}

/// Turns a lecture's complete upload into an asset and a queued transcode job, or
/// fails the lecture with the reason the file is unusable.
async fn finish_lecture(
    state: &IngestState,
    upload: &Upload,
    lecture_id: &LectureId,
) -> Result<(), IngestError> {
    crate::originals::bring_back(state, upload).await?;
    let local = match state.store.local_path(&upload.storage_key) {
        Some(p) => (p, None),
        None => {
            let tmp = tempfile_in(&state.config.scratch_dir)?;
            state
                .store
                .download_to(&upload.storage_key, tmp.path())
                .await?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let probed = analyse_fenced(state, &local.0)
        .instrument(tracing::info_span!("upload.probe", upload = %upload.id))
        .await?;
    drop(local);
    let now = now_unix();
    match probed {
        Err(Refused {
            refusal: unusable,
            diagnostics,
        }) => {
            tracing::info!(upload = %upload.id, reason = %unusable, "upload is not a usable lecture");
            let mut tx = state.db.begin().await?;
            lecture::refuse_upload(
                &mut *tx,
                lecture_id,
                &format!("The uploaded file cannot be used: {unusable}."),
                Some(&diagnostics),
            )
            .await?;
            sqlx::query("UPDATE uploads SET state = 'processed' WHERE id = $1")
                .bind(&upload.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            state.store.delete(&upload.storage_key).await?;
            let event = JobEvent::Failed {
                job_id: upload.id.clone(),
                lecture_id: lecture_id.clone(),
                asset_id: None,
                reason: format!("The uploaded file cannot be used: {unusable}."),
                diagnostics: Some(diagnostics),
            };
            publish_event(state, &event).await;
        }
        Ok(crate::analyse::Analysis {
            facts: source,
            chunkable,
            ladder,
            report,
        }) => {
            let asset_id = AssetId::new();
            let base = TranscodeJob {
                job_id: new_id(),
                lecture_id: lecture_id.clone(),
                asset_id: asset_id.clone(),
                source_key: upload.storage_key.clone(),
                output_prefix: format!("assets/{asset_id}"),
                source: source.clone(),
                part: JobPart::Whole,
                range: TimeRange {
                    start_secs: 0.0,
                    end_secs: None,
                    first_segment: 0,
                },
                ladder: ladder.clone(),
                audio_kbps: AUDIO_KBPS,
                segment_secs: SEGMENT_SECS,
                keyframe_secs: KEYFRAME_SECS,
                screen_languages: None,
                traceparent: telemetry::current_traceparent(),
            };
            let (workers, ranges) = if chunkable {
                let workers = plan_workers(state).await;
                (
                    workers,
                    crate::chunks::plan(
                        &source,
                        SEGMENT_SECS,
                        KEYFRAME_SECS,
                        state.config.chunk_secs,
                        workers,
                    ),
                )
            } else {
                (1, Vec::new())
            };
            let mut jobs = crate::chunks::schedule(&base, &ranges, workers, new_id);
            let chunked = jobs.len() > 1;
            // Last in the queue: playback never waits for it.
            if source.has_video && state.config.read_slides {
                jobs.push(TranscodeJob {
                    job_id: new_id(),
                    part: JobPart::Slides,
                    ladder: Vec::new(),
                    screen_languages: Some(
                        course_language(state, lecture_id).await?.tesseract().into(),
                    ),
                    ..base.clone()
                });
            }
            let mut tx = state.db.begin().await?;
            let kept = lecture::process_asset(
                &mut *tx,
                lecture_id,
                &asset_id,
                if source.has_video { "video" } else { "audio" },
            )
            .await?;
            sqlx::query("UPDATE uploads SET state = 'processed', last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&upload.id)
                .execute(&mut *tx)
                .await?;
            if !kept {
                // The lecture was deleted while its file was uploading.
                tx.commit().await?;
                state.store.delete(&upload.storage_key).await?;
                return Ok(());
            }
            sqlx::query(
                "INSERT INTO assets (id, lecture_id, upload_id, source_key, probe, ladder, ladder_report, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&asset_id)
            .bind(lecture_id)
            .bind(&upload.id)
            .bind(&upload.storage_key)
            .bind(serde_json::to_string(&source).expect("facts serialize"))
            .bind(serde_json::to_string(&ladder).expect("ladder serializes"))
            .bind(serde_json::to_string(&report).expect("reports serialize"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for (position, job) in jobs.iter().enumerate() {
                let payload = serde_json::to_string(job).expect("jobs serialize");
                sqlx::query(
                    "INSERT INTO jobs (id, lecture_id, asset_id, payload, published_at, created_at, position)
                     VALUES ($1, $2, $3, $4, NULL, $5, $6)",
                )
                .bind(&job.job_id)
                .bind(&job.lecture_id)
                .bind(&asset_id)
                .bind(&payload)
                .bind(now)
                .bind(position as i64)
                .execute(&mut *tx)
                .await?;
                if chunked && job.part != JobPart::Slides {
                    lectern_seams::parts::plan(
                        &mut *tx,
                        &asset_id,
                        &part_key(job),
                        position as i64,
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            let kbps: Vec<String> = ladder
                .iter()
                .map(|r| {
                    format!(
                        "{}:{}{}",
                        r.name,
                        r.video_kbps,
                        r.crf.map(|c| format!("@crf{c}")).unwrap_or_default()
                    )
                })
                .collect();
            tracing::info!(
                lecture = %base.lecture_id, asset = %asset_id, ladder = %kbps.join(","), method = %report.method,
                probe_secs = report.probe_secs, jobs = jobs.len(), chunks = ranges.len(), workers, "transcode jobs recorded"
            );
            publish_event(
                state,
                &JobEvent::Progress {
                    job_id: base.job_id.clone(),
                    lecture_id: base.lecture_id.clone(),
                    asset_id,
                    percent: 0,
                },
            )
            .await;
            state.outbox_wakeup.notify_one();
        }
    }
    Ok(())
}

/// The workers a lecture's chunks are planned for: the configured number, or else the
/// consumers the job queue has now. A queue that does not answer soon counts as one
/// worker, the plan that suits every count.
async fn plan_workers(state: &IngestState) -> u32 {
    if state.config.plan_workers > 0 {
        return state.config.plan_workers;
    }
    match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.queue.consumers(Topic::Jobs),
    )
    .await
    {
        Ok(Ok(n)) => n.clamp(1, u32::MAX as u64) as u32,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "counting the job queue's consumers failed; chunks planned for one worker");
            1
        }
        Err(_) => {
            tracing::warn!(
                "the job queue did not say how many consumers it has; chunks planned for one worker"
            );
            1
        }
    }
}

/// The language the lecture's course is taught in (English for a course that predates
/// the setting or is gone).
async fn course_language(
    state: &IngestState,
    lecture_id: &LectureId,
) -> Result<CourseLanguage, IngestError> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT c.language FROM lectures l JOIN courses c ON c.id = l.course_id WHERE l.id = $1",
    )
    .bind(lecture_id)
    .fetch_optional(&state.db)
    .await?;
    Ok(row
        .and_then(|(code,)| CourseLanguage::parse(&code))
        .unwrap_or(CourseLanguage::ENGLISH))
}

/// Sends a live event without holding the caller (an upload's last PATCH must not
/// wait on the broker); the database already holds the state it reports.
async fn publish_event(state: &IngestState, event: &JobEvent) {
    let payload = telemetry::event_payload(event);
    let queue = state.queue.clone();
    let publish = async move {
        if !lectern_seams::queue::publish_retrying(&*queue, Topic::Events, payload, 5).await {
            tracing::warn!("gave up publishing a live event");
        }
    };
    tokio::spawn(publish.instrument(tracing::Span::current()));
}

fn tempdir_in(dir: &std::path::Path) -> Result<tempfile::TempDir, IngestError> {
    std::fs::create_dir_all(dir).map_err(|e| IngestError::Storage(e.into()))?;
    tempfile::Builder::new()
        .prefix("analyse-")
        .tempdir_in(dir)
        .map_err(|e| IngestError::Storage(e.into()))
}

fn tempfile_in(dir: &std::path::Path) -> Result<tempfile::NamedTempFile, IngestError> {
    std::fs::create_dir_all(dir).map_err(|e| IngestError::Storage(e.into()))?;
    tempfile::NamedTempFile::new_in(dir).map_err(|e| IngestError::Storage(e.into()))
}

/// Publishes every recorded job the queue does not have yet. A job published twice
/// (a crash between publish and the update) is harmless: outputs are keyed by asset.
pub async fn relay_outbox(state: &IngestState) -> Result<usize, IngestError> {
    let pending: Vec<(String, String)> =
        sqlx::query_as("SELECT id, payload FROM jobs WHERE published_at IS NULL ORDER BY created_at, position LIMIT 100")
            .fetch_all(&state.db)
            .await?;
    let mut published = 0;
    for (id, payload) in pending {
        let job = serde_json::from_str::<TranscodeJob>(&payload).ok();
        let topic = job.as_ref().map_or(Topic::Jobs, Topic::for_job);
        // A span of the upload's trace: the AMQP header carries it to the worker.
        let span = tracing::info_span!("queue.publish", job = %id, topic = topic.name());
        telemetry::continue_trace(&span, job.as_ref().and_then(|j| j.traceparent.as_deref()));
        state
            .queue
            .publish(topic, payload.into_bytes())
            .instrument(span)
            .await?;
        sqlx::query("UPDATE jobs SET published_at = $1 WHERE id = $2")
            .bind(now_unix())
            .bind(&id)
            .execute(&state.db)
            .await?;
        published += 1;
    }
    Ok(published)
}

/// Removes uploads that expired before they were complete, with their bytes.
pub async fn sweep_expired(state: &IngestState) -> Result<usize, IngestError> {
    let expired: Vec<(String, String, UserId, i64)> = sqlx::query_as(
        "SELECT id, storage_key, owner_id, length FROM uploads WHERE state = 'receiving' AND expires_at < $1",
    )
    .bind(now_unix())
    .fetch_all(&state.db)
    .await?;
    for (id, key, owner, length) in &expired {
        state.store.delete(key).await?;
        let mut tx = state.db.begin().await?;
        let deleted = sqlx::query("DELETE FROM uploads WHERE id = $1 AND state = 'receiving'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 1 {
            uncount(&mut tx, owner, (*length).max(0) as u64).await?;
        }
        tx.commit().await?;
    }
    Ok(expired.len())
}

/// Uploads that completed before a crash but were never turned into a job.
pub async fn unfinished(state: &IngestState) -> Result<Vec<String>, IngestError> {
    let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM uploads WHERE state = 'complete'")
        .fetch_all(&state.db)
        .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}
