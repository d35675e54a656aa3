//! Following lectures from their upload to ready or failed, by asking the API at a
//! modest interval (a `playable` lecture is shown but still waited for).

use std::collections::BTreeMap;
use std::time::Duration;

use lectern_seams::lecture::LectureStatus;
use tokio::sync::mpsc;

use crate::api::{Api, ClientError, Lecture};
use crate::report::{At, Event, Reporter};

const POLL_EVERY: Duration = Duration::from_secs(2);

struct Watched {
    at: At,
    last: Option<(LectureStatus, i64)>,
}

/// Follows every lecture sent on `incoming` until it is ready or failed, and the
/// sender is gone. Returns each file's index with whether its lecture became ready.
pub async fn follow(
    api: &Api,
    reporter: &Reporter,
    mut incoming: mpsc::UnboundedReceiver<At>,
) -> Result<BTreeMap<usize, bool>, ClientError> {
    let mut watching: Vec<Watched> = Vec::new();
    let mut settled = BTreeMap::new();
    let mut open = true;
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while open || !watching.is_empty() {
        tokio::select! {
            got = incoming.recv(), if open => match got {
                Some(at) => watching.push(Watched { at, last: None }),
                None => open = false,
            },
            _ = tick.tick() => {
                for w in &mut watching {
                    if let Some(ready) = poll(api, reporter, w).await? {
                        settled.insert(w.at.index, ready);
                    }
                }
                watching.retain(|w| !settled.contains_key(&w.at.index));
            }
        }
    }
    Ok(settled)
}

/// Asks for one lecture and reports what changed; Some(ready?) once it has settled.
async fn poll(
    api: &Api,
    reporter: &Reporter,
    w: &mut Watched,
) -> Result<Option<bool>, ClientError> {
    let Some(lecture) = api.lecture(&w.at.lecture_id).await? else {
        reporter.emit(Event::Failed {
            at: w.at.clone(),
            reason: "the lecture was deleted".into(),
            code: Some("not_found".into()),
        });
        return Ok(Some(false));
    };
    let now = (lecture.status, lecture.progress_percent);
    if w.last != Some(now) {
        w.last = Some(now);
        reporter.emit(Event::Status {
            at: w.at.clone(),
            status: lecture.status,
            progress_percent: lecture.progress_percent,
        });
    }
    Ok(settle(reporter, &w.at, lecture))
}

fn settle(reporter: &Reporter, at: &At, lecture: Lecture) -> Option<bool> {
    match lecture.status {
        LectureStatus::Ready => {
            reporter.emit(Event::Ready {
                at: at.clone(),
                duration_secs: lecture.duration_secs,
            });
            Some(true)
        }
        LectureStatus::Failed => {
            reporter.emit(Event::Failed {
                at: at.clone(),
                reason: lecture
                    .failure_reason
                    .unwrap_or_else(|| "processing failed (no reason given)".into()),
                code: None,
            });
            Some(false)
        }
        _ => None,
    }
}
