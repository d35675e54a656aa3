//! What a run shows: JSON lines for scripts (`--json`), bars on a terminal, or plain
//! lines in a log. Every mode is fed the same events.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lectern_seams::ids::LectureId;
use lectern_seams::lecture::LectureStatus;
use serde::Serialize;

/// Progress lines of one file come at most this often in JSON.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Which file an event is about: its place in the run (from 1), its path, its lecture.
#[derive(Debug, Clone, Serialize)]
pub struct At {
    pub index: usize,
    pub file: String,
    pub lecture_id: LectureId,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A new lecture for the file.
    Created {
        #[serde(flatten)]
        at: At,
        title: String,
    },
    /// The lecture an earlier run made for the file.
    Reused {
        #[serde(flatten)]
        at: At,
        title: String,
        status: LectureStatus,
    },
    /// Sending starts; `resumed_from` bytes were already on the server.
    Uploading {
        #[serde(flatten)]
        at: At,
        bytes_total: u64,
        resumed_from: u64,
    },
    Progress {
        #[serde(flatten)]
        at: At,
        bytes_sent: u64,
        bytes_total: u64,
    },
    Uploaded {
        #[serde(flatten)]
        at: At,
        bytes: u64,
        secs: f64,
    },
    /// The lecture already has its file (an earlier run sent it).
    Skipped {
        #[serde(flatten)]
        at: At,
        status: LectureStatus,
    },
    Status {
        #[serde(flatten)]
        at: At,
        status: LectureStatus,
        progress_percent: i64,
    },
    Ready {
        #[serde(flatten)]
        at: At,
        duration_secs: Option<f64>,
    },
    /// The upload was refused or the lecture failed; `code` is the server's error code.
    Failed {
        #[serde(flatten)]
        at: At,
        reason: String,
        code: Option<String>,
    },
    /// The run stopped.
    Error { message: String },
    Summary {
        files: usize,
        uploaded: usize,
        ready: usize,
        failed: usize,
        exit_code: i32,
    },
}

enum Mode {
    Json,
    Lines,
    Bars(Bars),
}

/// One bar a file and a total (the bars hold their MultiProgress's state).
struct Bars {
    files: Vec<ProgressBar>,
    total: ProgressBar,
}

#[derive(Default)]
struct Seen {
    last_progress: Vec<Option<Instant>>,
    last_status: Vec<Option<LectureStatus>>,
    /// The total bar counts this run's bytes: those sent of the files done with, and
    /// where each file's upload started (what an earlier run sent is left out).
    done: u64,
    base: Vec<u64>,
}

pub struct Reporter {
    mode: Mode,
    sizes: Vec<u64>,
    seen: Mutex<Seen>,
}

impl Reporter {
    /// JSON when asked, bars when stderr is a terminal, plain lines otherwise.
    pub fn new(json: bool, names: &[String], sizes: Vec<u64>) -> Self {
        use std::io::IsTerminal;
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bars(Bars::new(names, &sizes))
        } else {
            Mode::Lines
        };
        let n = sizes.len();
        Reporter {
            mode,
            sizes,
            seen: Mutex::new(Seen {
                last_progress: vec![None; n],
                last_status: vec![None; n],
                done: 0,
                base: vec![0; n],
            }),
        }
    }

    pub fn emit(&self, event: Event) {
        match &self.mode {
            Mode::Json => print_json(&event),
            Mode::Lines => {
                if let Some(line) = self.line(&event) {
                    println!("{line}");
                }
            }
            Mode::Bars(bars) => self.draw(bars, &event),
        }
    }

    /// Where the upload of a file stands (bytes handed to the connection).
    pub fn progress(&self, at: &At, sent: u64) {
        let total = self.sizes[at.index - 1];
        match &self.mode {
            Mode::Json if self.due(at.index, sent == total) => print_json(&Event::Progress {
                at: at.clone(),
                bytes_sent: sent,
                bytes_total: total,
            }),
            Mode::Bars(bars) => {
                bars.files[at.index - 1].set_position(sent);
                let seen = self.seen.lock().expect("report lock");
                bars.total
                    .set_position(seen.done + sent - seen.base[at.index - 1]);
            }
            _ => {}
        }
    }

    /// Whether a progress line of file `index` is due (throttled; the last one always).
    fn due(&self, index: usize, last: bool) -> bool {
        let mut seen = self.seen.lock().expect("report lock");
        let slot = &mut seen.last_progress[index - 1];
        if last || slot.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
            *slot = Some(Instant::now());
            return true;
        }
        false
    }

    /// A person's line for an event, or None for events shown otherwise.
    fn line(&self, event: &Event) -> Option<String> {
        Some(match event {
            Event::Created { at, title } => {
                format!("{}: new lecture \u{201c}{title}\u{201d}", at.file)
            }
            Event::Reused { at, title, status } => {
                format!(
                    "{}: lecture \u{201c}{title}\u{201d} from an earlier run ({status})",
                    at.file
                )
            }
            Event::Uploading {
                at,
                bytes_total,
                resumed_from: 0,
                ..
            } => {
                format!("{}: uploading {}", at.file, BinaryBytes(*bytes_total))
            }
            Event::Uploading {
                at,
                bytes_total,
                resumed_from,
            } => format!(
                "{}: resuming at {} of {}",
                at.file,
                BinaryBytes(*resumed_from),
                BinaryBytes(*bytes_total)
            ),
            Event::Uploaded { at, bytes, secs } => {
                format!(
                    "{}: uploaded {} in {secs:.1} s",
                    at.file,
                    BinaryBytes(*bytes)
                )
            }
            // The reused lecture's line said so, and Ready / Failed say how it ended.
            Event::Skipped { .. } | Event::Progress { .. } => return None,
            Event::Status {
                status: LectureStatus::Ready | LectureStatus::Failed,
                ..
            } => {
                return None;
            }
            Event::Status { at, status, .. } => {
                let mut seen = self.seen.lock().expect("report lock");
                let last = &mut seen.last_status[at.index - 1];
                if *last == Some(*status) {
                    return None;
                }
                *last = Some(*status);
                format!("{}: {status}", at.file)
            }
            Event::Ready { at, .. } => format!("{}: ready", at.file),
            Event::Failed { at, reason, .. } => format!("{}: failed: {reason}", at.file),
            Event::Error { message } => format!("error: {message}"),
            Event::Summary {
                files,
                ready,
                failed,
                uploaded,
                ..
            } => {
                format!("{files} files: {uploaded} uploaded, {ready} ready, {failed} failed")
            }
        })
    }

    fn draw(&self, bars: &Bars, event: &Event) {
        match event {
            Event::Uploading {
                at, resumed_from, ..
            } => {
                let bar = &bars.files[at.index - 1];
                bar.set_position(*resumed_from);
                bar.reset_eta();
                self.seen.lock().expect("report lock").base[at.index - 1] = *resumed_from;
                bars.shorten_total(*resumed_from);
            }
            Event::Uploaded { at, .. } => {
                let mut seen = self.seen.lock().expect("report lock");
                seen.done += self.sizes[at.index - 1] - seen.base[at.index - 1];
                bars.total.set_position(seen.done);
                bars.message(at.index, "uploaded; waiting to be processed".into());
            }
            Event::Skipped { at, status } => {
                bars.shorten_total(self.sizes[at.index - 1]);
                bars.message(at.index, format!("already uploaded ({status})"));
            }
            Event::Status {
                at,
                status,
                progress_percent,
            } => {
                bars.message(at.index, format!("{status} {progress_percent}%"));
            }
            Event::Ready { at, .. } => bars.files[at.index - 1].finish_with_message("ready"),
            Event::Failed { at, reason, .. } => {
                bars.files[at.index - 1].abandon_with_message(format!("failed: {reason}"));
            }
            Event::Summary { .. } | Event::Error { .. } => {
                // Every line stays on the screen as it last was.
                for bar in bars.files.iter().chain([&bars.total]) {
                    if !bar.is_finished() {
                        bar.abandon();
                    }
                }
                // Below the bars, which move no more.
                match (event, self.line(event)) {
                    (Event::Summary { .. }, Some(line)) => println!("{line}"),
                    (_, Some(line)) => eprintln!("{line}"),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

impl Bars {
    fn new(names: &[String], sizes: &[u64]) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:32!} {bar:24.cyan/blue} {binary_bytes:>10}/{binary_total_bytes:<10} \
             {binary_bytes_per_sec:>12} {eta:>4} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        let files = names
            .iter()
            .zip(sizes)
            .map(|(name, &size)| {
                let bar = multi.add(ProgressBar::new(size).with_style(style.clone()));
                bar.set_prefix(name.clone());
                bar
            })
            .collect();
        let total = multi.add(
            ProgressBar::new(sizes.iter().sum())
                .with_style(style)
                .with_prefix("total"),
        );
        Bars { files, total }
    }

    /// Takes bytes this run does not send off the total.
    fn shorten_total(&self, bytes: u64) {
        let length = self.total.length().unwrap_or(0);
        self.total.set_length(length.saturating_sub(bytes));
    }

    /// Past its upload, a file's line is its name and a word.
    fn message(&self, index: usize, msg: String) {
        let bar = &self.files[index - 1];
        bar.set_style(
            ProgressStyle::with_template("{prefix:32!} {msg}").expect("a valid template"),
        );
        bar.set_message(msg);
    }
}

fn print_json(event: &Event) {
    let mut out = std::io::stdout().lock();
    let line = serde_json::to_string(event).expect("events serialise");
    // A closed stdout (the reader went away) is not this run's failure.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_flat_json_objects_named_by_event() {
        let lecture_id = LectureId::new();
        let at = At {
            index: 2,
            file: "videos/lecture 2.mp4".into(),
            lecture_id: lecture_id.clone(),
        };
        let value = serde_json::to_value(Event::Uploading {
            at,
            bytes_total: 1000,
            resumed_from: 400,
        })
        .unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "event": "uploading",
                "index": 2,
                "file": "videos/lecture 2.mp4",
                "lecture_id": lecture_id.to_string(),
                "bytes_total": 1000,
                "resumed_from": 400,
            })
        );
        let status = serde_json::to_value(Event::Status {
            at: At {
                index: 1,
                file: "a".into(),
                lecture_id,
            },
            status: LectureStatus::AwaitingUpload,
            progress_percent: 0,
        })
        .unwrap();
        assert_eq!(status["status"], "awaiting_upload");
    }

    #[test]
    fn progress_lines_are_throttled_but_the_last_one_always_comes() {
        let r = Reporter::new(true, &["a".into()], vec![10]);
        assert!(r.due(1, false));
        assert!(!r.due(1, false));
        assert!(r.due(1, true));
    }
}
