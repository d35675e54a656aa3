//! What a complete upload goes through before it becomes a job, run in the fenced
//! child (`lectern fenced analyse`): the probe, the check that the file really lasts
//! what it states, and the ladder fitted to its complexity.

use std::path::PathBuf;
use std::time::Duration;

use lectern_common::messages::{Rung, SourceFacts};
use lectern_gate::Refusal;
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

pub fn analyse(req: Request) -> Result<Analysis, Refusal> {
    let timeout = Duration::from_secs(req.timeout_secs);
    let mut facts = crate::probe::probe_file(&req.source, req.timeout_secs, &req.limits)?;
    // A header may state more than the file holds (a cut-off download keeps its full
    // duration): what the end really reaches is the lecture's length.
    let reached = crate::probe::end_reached(&req.source, facts.duration_secs, timeout);
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
