//! The transcode as a fenced task (`lectern fenced transcode`): the child runs the
//! pipeline over the source and writes segments, poster and storyboard into its one
//! writable folder; the worker reads back a report, checks it, and stores the files.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use lectern_gate::fence::{ChildError, Events};
use lectern_packager::SegmentFacts;
use lectern_seams::messages::{Rung, TranscodeJob};
use serde::{Deserialize, Serialize};

use crate::pipeline::{self, Watchdog};
use crate::storyboard;

/// The fenced task's name.
pub const TASK: &str = "transcode";
pub const POSTER: &str = "poster.jpg";
pub const STORYBOARD_VTT: &str = "storyboard.vtt";

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub job: TranscodeJob,
    pub source: PathBuf,
    pub out_dir: PathBuf,
    pub stall_secs: u64,
    pub total_secs: u64,
    pub max_gap_secs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Progress(u8),
    /// Every audio segment finished so far, from the first.
    AudioFinished(Vec<Segment>),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub index: u64,
    pub duration: f64,
    pub bytes: u64,
}

impl From<&SegmentFacts> for Segment {
    fn from(s: &SegmentFacts) -> Self {
        Segment {
            index: s.index,
            duration: s.duration,
            bytes: s.bytes,
        }
    }
}

impl From<&Segment> for SegmentFacts {
    fn from(s: &Segment) -> Self {
        SegmentFacts {
            index: s.index,
            duration: s.duration,
            bytes: s.bytes,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rendition {
    pub name: String,
    pub segments: Vec<Segment>,
    /// RFC 6381 codec string read from the encoded stream.
    pub codec: Option<String>,
}

/// What the child made, all of it in its output folder.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub video: Vec<Rendition>,
    pub audio: Option<Rendition>,
    pub has_poster: bool,
    pub has_storyboard: bool,
    pub duration_secs: f64,
}

impl Request {
    /// The child's time: the pipeline's own budget and a minute to start and finish.
    pub fn time_budget(&self) -> Duration {
        Duration::from_secs(self.total_secs + 60)
    }
}

/// The child's side: the pipeline, then the stills as JPEG files beside the segments.
pub fn run(req: Request, events: &mut Events) -> Result<Report, ChildError> {
    let watchdog = Watchdog {
        stall: Duration::from_secs(req.stall_secs),
        total: Duration::from_secs(req.total_secs),
        max_gap: Duration::from_secs(req.max_gap_secs),
    };
    let never = AtomicBool::new(false);
    let output = pipeline::transcode(&req.job, &req.source, &req.out_dir, watchdog, &never, |p| {
        events.send(&Event::Progress((p.fraction * 90.0) as u8));
        if let Some(finished) = p.audio_finished {
            events.send(&Event::AudioFinished(
                finished.iter().map(Segment::from).collect(),
            ));
        }
    });
    let out = output.map_err(|e| {
        tracing::warn!(error = %e, "the transcode failed");
        match e.refusal() {
            Some(r) => ChildError::Refused(r),
            None => ChildError::Failed(e.to_string()),
        }
    })?;
    let (has_poster, has_storyboard) =
        write_stills(&req.out_dir, &out).map_err(ChildError::Failed)?;
    let rendition = |r: &pipeline::RenditionOutput| Rendition {
        name: r.name.clone(),
        segments: r.segments.iter().map(Segment::from).collect(),
        codec: r.codec.clone(),
    };
    Ok(Report {
        video: out.video.iter().map(rendition).collect(),
        audio: out.audio.as_ref().map(rendition),
        has_poster,
        has_storyboard,
        duration_secs: out.duration_secs,
    })
}

fn write_stills(dir: &Path, out: &pipeline::TranscodeOutput) -> Result<(bool, bool), String> {
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("writing {name}: {e}"))
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("the output folder: {e}"))?;
    if let Some(poster) = &out.poster {
        write(POSTER, &storyboard::jpeg(poster, 85)?)?;
    }
    let Some(sprite) = storyboard::sprite(&out.thumbnails) else {
        return Ok((out.poster.is_some(), false));
    };
    write(storyboard::SPRITE_NAME, &storyboard::jpeg(&sprite, 70)?)?;
    write(
        STORYBOARD_VTT,
        storyboard::vtt(&out.thumbnails, out.thumb_interval_secs, out.duration_secs).as_bytes(),
    )?;
    Ok((out.poster.is_some(), true))
}

/// The worker's check of what a child reports: it names only the job's renditions,
/// its codec strings are codec strings and its numbers are numbers, so nothing a
/// compromised child writes can reach a playlist or a storage key as text.
pub fn checked(report: Report, job: &TranscodeJob) -> Result<Report, String> {
    let codec_ok = |c: &Option<String>| {
        c.as_ref().is_none_or(|c| {
            c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.')
        })
    };
    let segments_ok = |r: &Rendition| {
        r.segments
            .iter()
            .all(|s| s.duration.is_finite() && s.duration >= 0.0 && s.duration < 3600.0)
    };
    for r in &report.video {
        if rung_of(job, &r.name).is_none() || !codec_ok(&r.codec) || !segments_ok(r) {
            return Err(format!(
                "the child reported a video rendition that is not the job's: {:?}",
                r.name
            ));
        }
    }
    if let Some(a) = &report.audio
        && (a.name != "audio" || !codec_ok(&a.codec) || !segments_ok(a))
    {
        return Err("the child reported an audio rendition that is not the job's".into());
    }
    if !report.duration_secs.is_finite() || report.duration_secs < 0.0 {
        return Err("the child reported a duration that is not one".into());
    }
    Ok(report)
}

/// The job's rung of this name.
pub fn rung_of<'a>(job: &'a TranscodeJob, name: &str) -> Option<&'a Rung> {
    job.ladder.iter().find(|r| r.name == name)
}

/// How the worker runs it: `lectern fenced transcode`, reading the request on stdin.
pub fn serve() -> std::process::ExitCode {
    lectern_gate::fence::serve(run)
}
