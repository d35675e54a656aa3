//! What a complete upload goes through before it becomes a job, run in the fenced
//! child (`lectern fenced analyse`): the probe, the check that the file really lasts
//! what it states, and the ladder fitted to its complexity.

use std::path::PathBuf;
use std::time::Duration;

use lectern_gate::Refusal;
use lectern_seams::messages::{Rung, SourceFacts};
use serde::{Deserialize, Serialize};

use crate::complexity::LadderReport;
use crate::probe::SourceLimits;

/// The fenced task's name.
pub const TASK: &str = "analyse";

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub source: PathBuf,
    pub timeout_secs: u64,
    /// Lectures longer than this are cut into chunks (0: never).
    pub chunk_secs: u32,
    pub per_title: bool,
    pub limits: SourceLimits,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Analysis {
    pub facts: SourceFacts,
    /// The file reaches its stated end, so chunks may be cut by its duration.
    pub chunkable: bool,
    pub ladder: Vec<Rung>,
    pub report: LadderReport,
}

impl Request {
    /// How long the child may take: the probe, the look at the end and the ladder's
    /// two trial encodes each get the probe's timeout, and starting takes a moment.
    pub fn time_budget(&self) -> Duration {
        Duration::from_secs(self.timeout_secs * 4 + 30)
    }
}

/// Below this many bytes a second of stated duration, the whole file is demuxed to
/// find gaps in its video: few bytes for a long time is what a file that would be
/// stretched into hours of copied frames looks like, and such a file is quick to read.
/// Above it only the last seconds are read, to check the end.
const SCAN_WHOLE_BELOW_BYTES_PER_SEC: f64 = 256.0 * 1024.0;

pub fn analyse(req: Request) -> Result<Analysis, Refusal> {
    let timeout = Duration::from_secs(req.timeout_secs);
    let mut facts = crate::probe::probe_file(&req.source, req.timeout_secs, &req.limits)?;
    let size = std::fs::metadata(&req.source).map(|m| m.len()).unwrap_or(0);
    let sparse =
        facts.has_video && (size as f64) < facts.duration_secs * SCAN_WHOLE_BELOW_BYTES_PER_SEC;
    let from = if sparse {
        0.0
    } else {
        (facts.duration_secs - 3.0).max(0.0)
    };
    let scanned = crate::probe::scan(&req.source, from, timeout)
        .inspect_err(|e| tracing::info!(error = %e, "the file could not be read to its end"))
        .ok();
    if let Some(gap) = scanned
        .map(|s| s.video_gap)
        .filter(|g| *g > req.limits.max_gap_secs as f64)
    {
        tracing::info!(gap, "the video has a gap longer than the limit");
        return Err(Refusal::GapTooLong(req.limits.max_gap_secs));
    }
    // A header may state more than the file holds (a cut-off download keeps its full
    // duration): what the end really reaches is the lecture's length.
    let reached = scanned.and_then(|s| s.end);
    let whole = reached.is_some_and(|end| crate::probe::reaches(end, facts.duration_secs));
    if let Some(end) = reached.filter(|end| !whole && *end >= crate::probe::MIN_MEDIA_SECS) {
        tracing::info!(
            stated = facts.duration_secs,
            reached = end,
            "the file ends before its stated duration"
        );
        facts.duration_secs = end;
    }
    let chunkable = req.chunk_secs > 0 && facts.duration_secs > req.chunk_secs as f64 && whole;
    let fixed = if facts.has_video {
        crate::ladder::ladder_for(&facts)
    } else {
        Vec::new()
    };
    let (ladder, report) =
        crate::complexity::fit_ladder(&req.source, &facts, fixed, req.per_title, timeout * 2);
    Ok(Analysis {
        facts,
        chunkable,
        ladder,
        report,
    })
}

/// How the parent runs it: `lectern fenced analyse`, reading the request on stdin.
pub fn serve() -> std::process::ExitCode {
    lectern_gate::fence::serve(|req, _| analyse(req).map_err(lectern_gate::fence::ChildError::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ffmpeg(out: &std::path::Path, args: &str) {
        let ok = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args.split_whitespace())
            .arg(out)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn request(source: PathBuf) -> Request {
        Request {
            source,
            timeout_secs: 20,
            chunk_secs: 60,
            per_title: false,
            limits: SourceLimits::default(),
        }
    }

    #[test]
    fn three_pictures_twenty_minutes_apart_are_refused_not_stretched() {
        let dir = tempfile::tempdir().unwrap();
        let gaps = dir.path().join("gaps.mkv");
        ffmpeg(
            &gaps,
            "-f lavfi -i color=c=red:s=320x240:r=1 -frames:v 3 -vf setpts=N*1200/TB -c:v libx264 -fps_mode passthrough",
        );
        let reach = crate::probe::scan(&gaps, 0.0, Duration::from_secs(20)).unwrap();
        assert!((reach.video_gap - 1200.0).abs() < 1.0, "{reach:?}");
        assert_eq!(
            analyse(request(gaps)).unwrap_err(),
            Refusal::GapTooLong(600)
        );

        let steady = dir.path().join("steady.mkv");
        ffmpeg(
            &steady,
            "-f lavfi -i testsrc=s=320x240:r=25:d=8 -c:v libx264 -g 50",
        );
        let reach = crate::probe::scan(&steady, 0.0, Duration::from_secs(20)).unwrap();
        assert!(reach.video_gap < 0.1, "{reach:?}");
        let analysis = analyse(request(steady)).unwrap();
        assert!(
            (analysis.facts.duration_secs - 8.0).abs() < 0.1,
            "{:?}",
            analysis.facts
        );
    }
}
