//! The messages that travel on the queue: transcode jobs (ingest → workers) and job
//! events (workers → catalog). Both are JSON so any backend can carry them and an
//! operator can read a dead-lettered one.

use serde::{Deserialize, Serialize};

/// Every lecture's segment length, s: its renditions and captions are cut on this grid.
pub const SEGMENT_SECS: u32 = 6;

use crate::ids::{AssetId, LectureId};

/// What probing the uploaded source found, in display terms: `width`/`height` are after
/// rotation and pixel aspect ratio, as a viewer sees the picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFacts {
    pub duration_secs: f64,
    pub has_video: bool,
    pub has_audio: bool,
    pub width: u32,
    pub height: u32,
    /// Output frame rate as a fraction (VFR sources get their average, capped at 60).
    pub fps_num: u32,
    pub fps_den: u32,
    pub audio_channels: u32,
    pub container: String,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
}

impl SourceFacts {
    /// The output frame rate in frames a second (0 when unknown).
    pub fn fps(&self) -> f64 {
        self.fps_num as f64 / self.fps_den.max(1) as f64
    }
}

/// One H.264 rendition of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rung {
    /// Folder name of the rendition, e.g. `v720`.
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// The bit rate: the target, or with `crf` the ceiling.
    pub video_kbps: u32,
    /// Encode at this constant quality (x264 CRF) instead of at an average rate, never
    /// above `video_kbps`: the per-title ladder's choice for content that needs fewer
    /// bits than the fixed ladder gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crf: Option<u32>,
}

/// A time range of the source, in seconds from the start of its timeline (where its
/// demuxer's first segment starts: 0 for most MP4s, not for MPEG-TS); `end_secs` None
/// means to the end. Chunk edges must be frame times on the global grid: whole
/// segments of whole GOPs in frames (29.97 fps, 2 s GOPs, 6 s segments: 180 frames, so
/// edges at multiples of 6.006 s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start_secs: f64,
    pub end_secs: Option<f64>,
    /// Absolute index of the first segment this range produces.
    pub first_segment: u64,
}

/// Which outputs a job makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPart {
    /// The whole lecture: every rung, the audio, the poster and the storyboard.
    #[default]
    Whole,
    /// The video rungs in `ladder` for `range` only: one chunk of a lecture split
    /// across workers. Its segments carry the source's timeline and the global
    /// segment numbers.
    VideoChunk,
    /// The audio rendition of the whole lecture, for a lecture split into chunks.
    Audio,
    /// The poster and storyboard of the whole lecture, for a lecture split into chunks.
    Stills,
    /// The lecture's slides: where the picture changes to a new slide or screen, and the
    /// words on each. Not a part of playback: nothing waits for it.
    Slides,
}

impl JobPart {
    pub fn makes_video(self) -> bool {
        matches!(self, JobPart::Whole | JobPart::VideoChunk)
    }
    pub fn makes_audio(self) -> bool {
        matches!(self, JobPart::Whole | JobPart::Audio)
    }
    pub fn makes_stills(self) -> bool {
        matches!(self, JobPart::Whole | JobPart::Stills)
    }
}

/// Names one part of a lecture split into jobs: `audio`, `stills`, or
/// `video-{first segment}-{rungs}` for a chunk of some rungs. Unique within an asset;
/// the catalog records parts by it, so a redelivered part is recorded once.
pub fn part_key(job: &TranscodeJob) -> String {
    match job.part {
        JobPart::Whole => "whole".into(),
        JobPart::Audio => "audio".into(),
        JobPart::Stills => "stills".into(),
        JobPart::Slides => "slides".into(),
        JobPart::VideoChunk => {
            let rungs: Vec<&str> = job.ladder.iter().map(|r| r.name.as_str()).collect();
            format!("video-{:05}-{}", job.range.first_segment, rungs.join("-"))
        }
    }
}

/// One slide of a lecture: when it comes on screen and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundSlide {
    /// When the change to it began (a fade's start), s from the lecture's start.
    pub start_secs: f64,
    /// The largest text near the top, when one stands out.
    pub title: Option<String>,
    /// Every line read on it, in reading order.
    pub text: String,
    /// Its thumbnail's file name under the asset's `slides/` folder.
    pub thumbnail: String,
}

/// One stored segment of a part, as the catalog needs it to write playlists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSegment {
    pub index: u64,
    pub duration: f64,
    pub bytes: u64,
}

/// One rendition's share of a stored part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRendition {
    /// Folder name: a rung's name or `audio`.
    pub name: String,
    /// The RFC 6381 codec string, e.g. `avc1.64001f`.
    pub codec: String,
    /// The rung, for video renditions.
    pub rung: Option<Rung>,
    pub segments: Vec<StoredSegment>,
}

/// What a worker stored for one part of a chunked lecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartReport {
    pub key: String,
    pub renditions: Vec<StoredRendition>,
    pub has_poster: bool,
    pub has_storyboard: bool,
    /// A report of the part so far, while its job still runs: the whole-lecture audio
    /// job sends these so a long lecture plays before all its audio is encoded. Its
    /// segments are stored and final; the part's final report lists them again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl PartReport {
    /// How many segments the report lists, over every rendition.
    pub fn segment_count(&self) -> usize {
        self.renditions.iter().map(|r| r.segments.len()).sum()
    }
}

/// Frames per GOP and per segment on the grid every rung and every chunk keeps: GOPs of
/// `keyframe_secs` rounded to whole frames, segments of whole GOPs.
pub fn grid_frames(
    fps_num: u32,
    fps_den: u32,
    segment_secs: u32,
    keyframe_secs: u32,
) -> (u64, u64) {
    let fps = fps_num.max(1) as f64 / fps_den.max(1) as f64;
    let gop = ((keyframe_secs as f64) * fps).round().max(1.0) as u64;
    (
        gop,
        gop * (segment_secs / keyframe_secs.max(1)).max(1) as u64,
    )
}

/// x264's settings for every rung, on top of `X264_PRESET`: keyframes only on the grid
/// and closed GOPs (every segment starts clean); rc-lookahead 5 (veryfast's is 10)
/// because x264 holds every frame of the window, about 100 MB of a 1080p ladder's peak.
/// Shared so ingest's complexity probe encodes exactly as the workers do.
pub const X264_OPTIONS: &str = "scenecut=0:open-gop=0:min-keyint=1:rc-lookahead=5";
pub const X264_PRESET: &str = "veryfast";
/// The rate control's buffer, in milliseconds of the rung's bit rate.
pub const X264_VBV_MS: u32 = 2000;

/// One unit of transcoding work. Workers need nothing but this, the queue and storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscodeJob {
    pub job_id: String,
    pub lecture_id: LectureId,
    pub asset_id: AssetId,
    /// Storage key of the uploaded source.
    pub source_key: String,
    /// Storage prefix the outputs go under (`assets/{asset_id}`).
    pub output_prefix: String,
    pub source: SourceFacts,
    #[serde(default)]
    pub part: JobPart,
    pub range: TimeRange,
    pub ladder: Vec<Rung>,
    pub audio_kbps: u32,
    pub segment_secs: u32,
    pub keyframe_secs: u32,
    /// Tesseract's codes of the languages on screen (`eng+deu`), for a slides job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_languages: Option<String>,
    /// The W3C trace context of the span that scheduled the job (the upload's finish),
    /// when tracing is on: the worker's job span continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What a worker reports about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobEvent {
    Progress {
        job_id: String,
        lecture_id: LectureId,
        asset_id: AssetId,
        percent: u8,
    },
    Ready {
        job_id: String,
        lecture_id: LectureId,
        asset_id: AssetId,
        duration_secs: f64,
        /// Rendition folder names, highest first (`audio` for an audio-only lecture).
        renditions: Vec<String>,
        has_poster: bool,
    },
    Failed {
        job_id: String,
        lecture_id: LectureId,
        /// None when ingest refused the upload before any asset (it recorded why).
        #[serde(default)]
        asset_id: Option<AssetId>,
        /// In the fixed vocabulary: shown to everyone who sees the lecture.
        reason: String,
        /// For the lecture's owner only: the fenced child's last log lines, without
        /// paths or addresses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diagnostics: Option<String>,
    },
    /// A lecture's file has arrived whole (ingest analyses it next); told to its owner.
    Uploaded {
        lecture_id: LectureId,
        upload_id: String,
        bytes: u64,
    },
    /// The slides a lecture shows, found by its slides job (thumbnails stored under the
    /// asset's `slides/` folder).
    SlidesFound {
        job_id: String,
        lecture_id: LectureId,
        asset_id: AssetId,
        slides: Vec<FoundSlide>,
    },
    /// One part of a chunked lecture is stored (its outputs sit under the asset's
    /// prefix); the catalog stitches the playlists once the parts line up.
    PartStored {
        job_id: String,
        lecture_id: LectureId,
        asset_id: AssetId,
        report: PartReport,
    },
}

impl JobEvent {
    pub fn lecture_id(&self) -> &LectureId {
        match self {
            JobEvent::Progress { lecture_id, .. }
            | JobEvent::Ready { lecture_id, .. }
            | JobEvent::Failed { lecture_id, .. }
            | JobEvent::PartStored { lecture_id, .. }
            | JobEvent::SlidesFound { lecture_id, .. }
            | JobEvent::Uploaded { lecture_id, .. } => lecture_id,
        }
    }

    pub fn asset_id(&self) -> Option<&AssetId> {
        match self {
            JobEvent::Progress { asset_id, .. }
            | JobEvent::Ready { asset_id, .. }
            | JobEvent::PartStored { asset_id, .. }
            | JobEvent::SlidesFound { asset_id, .. } => Some(asset_id),
            JobEvent::Failed { asset_id, .. } => asset_id.as_ref(),
            JobEvent::Uploaded { .. } => None,
        }
    }
}
