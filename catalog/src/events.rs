//! Job events from the workers: applied to lecture state (idempotently, keyed by
//! asset, so redelivered or stale events are harmless), written to the event journal,
//! and sent from it to the WebSocket clients who may see them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use lectern_seams::db::Db;
use lectern_seams::lecture;
use lectern_seams::messages::JobEvent;
use lectern_seams::now_unix;
use lectern_seams::queue::{SharedQueue, Topic};
use lectern_seams::storage::SharedStore;
use lectern_web::auth::{AuthUser, Role};
use serde::Serialize;
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::error::CatalogError;
use crate::journal::{Draft, Entry, Journal, MAX_BATCH};
use crate::parts::Advance;
use lectern_seams::ids::{CourseId, LectureId, UserId};

/// What a live client is told. Owners get every kind for their lectures; enrolled
/// students get `lecture_ready` and `playable`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    Progress {
        lecture_id: LectureId,
        course_id: CourseId,
        percent: u8,
    },
    Ready {
        lecture_id: LectureId,
        course_id: CourseId,
        duration_secs: f64,
    },
    Failed {
        lecture_id: LectureId,
        course_id: CourseId,
        reason: String,
    },
    LectureReady {
        lecture_id: LectureId,
        course_id: CourseId,
        title: String,
    },
    /// The lecture plays while the rest of it is still being encoded.
    Playable {
        lecture_id: LectureId,
        course_id: CourseId,
    },
    /// A lecture's file arrived whole (to its owner).
    Uploaded {
        lecture_id: LectureId,
        course_id: CourseId,
        bytes: u64,
    },
    /// A student enrolled in the course (to its owner).
    Enrolled {
        course_id: CourseId,
        user_id: UserId,
        kind: crate::courses::EnrollmentKind,
    },
    /// A student bought the course (to its owner).
    Purchased {
        course_id: CourseId,
        user_id: UserId,
        amount_cents: i64,
        currency: String,
    },
    /// A purchase was refunded or disputed, and its enrollment taken back.
    PurchaseRevoked {
        course_id: CourseId,
        user_id: UserId,
        /// `refunded` or `disputed`.
        reason: String,
    },
    /// A lecture's slides were found: proposed chapters to review (to its owner).
    SlidesFound {
        lecture_id: LectureId,
        course_id: CourseId,
        slides: usize,
    },
    /// A webhook endpoint was disabled after its deliveries kept failing.
    WebhookDisabled {
        endpoint_id: String,
        url: String,
        reason: String,
    },
}

impl LiveEvent {
    /// The webhook event type it is sent as, if any (progress is not).
    pub fn webhook_type(&self) -> Option<crate::webhooks::EventType> {
        use crate::webhooks::EventType as T;
        match self {
            LiveEvent::Uploaded { .. } => Some(T::UploadCompleted),
            LiveEvent::Playable { .. } => Some(T::LecturePlayable),
            LiveEvent::Ready { .. } => Some(T::LectureReady),
            LiveEvent::Failed { .. } => Some(T::LectureFailed),
            LiveEvent::Enrolled { .. } => Some(T::EnrollmentCreated),
            LiveEvent::Purchased { .. } => Some(T::PurchaseCompleted),
            LiveEvent::PurchaseRevoked { .. } => Some(T::PurchaseRefunded),
            LiveEvent::Progress { .. }
            | LiveEvent::LectureReady { .. }
            | LiveEvent::SlidesFound { .. }
            | LiveEvent::WebhookDisabled { .. } => None,
        }
    }
}

/// Applies one job event to the database and returns what to push live, if the
/// event still concerns the lecture's current asset.
pub async fn apply(
    db: &Db,
    store: &SharedStore,
    event: &JobEvent,
) -> Result<Option<Draft>, CatalogError> {
    // What a stored part changed, in the terms of the other events.
    let mut advanced = None;
    let changed = match event {
        JobEvent::PartStored {
            lecture_id,
            asset_id,
            report,
            ..
        } => {
            let advance = crate::parts::record(db, store, lecture_id, asset_id, report).await?;
            let changed = u64::from(advance != Advance::Nothing);
            advanced = Some(advance);
            changed
        }
        JobEvent::Progress {
            lecture_id,
            asset_id,
            percent,
            ..
        } => u64::from(lecture::record_progress(db, lecture_id, asset_id, *percent).await?),
        JobEvent::Ready {
            lecture_id,
            asset_id,
            duration_secs,
            ..
        } => u64::from(lecture::mark_ready(db, lecture_id, asset_id, *duration_secs).await?),
        // Ingest recorded the arrival; there is only its news to pass on.
        JobEvent::Uploaded { .. } => 1,
        JobEvent::SlidesFound {
            lecture_id,
            asset_id,
            slides,
            ..
        } => u64::from(crate::slides::record(db, lecture_id, asset_id, slides).await?),
        JobEvent::Failed {
            lecture_id,
            asset_id,
            reason,
            diagnostics,
            ..
        } => {
            match asset_id {
                // Ingest refused the file and already recorded why.
                None => 1,
                Some(asset_id) => {
                    let diagnostics = diagnostics.as_deref();
                    u64::from(
                        crate::parts::mark_failed(db, lecture_id, asset_id, reason, diagnostics)
                            .await?,
                    )
                }
            }
        }
    };
    if changed == 0 {
        return Ok(None);
    }
    let row: Option<(CourseId, UserId, String)> = sqlx::query_as(
        "SELECT c.id, c.owner_id, l.title FROM lectures l JOIN courses c ON c.id = l.course_id WHERE l.id = $1",
    )
    .bind(event.lecture_id().as_str())
    .fetch_optional(db)
    .await?;
    let Some((course_id, owner_id, title)) = row else {
        return Ok(None);
    };
    let lecture_id = event.lecture_id().clone();
    let (live, for_students) = match event {
        JobEvent::Progress { percent, .. } => (
            LiveEvent::Progress {
                lecture_id,
                course_id: course_id.clone(),
                percent: *percent,
            },
            None,
        ),
        JobEvent::Ready { duration_secs, .. } => (
            LiveEvent::Ready {
                lecture_id: lecture_id.clone(),
                course_id: course_id.clone(),
                duration_secs: *duration_secs,
            },
            Some(LiveEvent::LectureReady {
                lecture_id,
                course_id: course_id.clone(),
                title,
            }),
        ),
        JobEvent::Failed { reason, .. } => (
            LiveEvent::Failed {
                lecture_id,
                course_id: course_id.clone(),
                reason: reason.clone(),
            },
            None,
        ),
        JobEvent::Uploaded { bytes, .. } => (
            LiveEvent::Uploaded {
                lecture_id,
                course_id: course_id.clone(),
                bytes: *bytes,
            },
            None,
        ),
        JobEvent::SlidesFound { slides, .. } => (
            LiveEvent::SlidesFound {
                lecture_id,
                course_id: course_id.clone(),
                slides: slides.len(),
            },
            None,
        ),
        JobEvent::PartStored { .. } => match advanced {
            Some(Advance::Progress { percent }) => (
                LiveEvent::Progress {
                    lecture_id,
                    course_id: course_id.clone(),
                    percent,
                },
                None,
            ),
            Some(Advance::Playable) => (
                LiveEvent::Playable {
                    lecture_id: lecture_id.clone(),
                    course_id: course_id.clone(),
                },
                Some(LiveEvent::Playable {
                    lecture_id,
                    course_id: course_id.clone(),
                }),
            ),
            Some(Advance::Ready { duration_secs }) => (
                LiveEvent::Ready {
                    lecture_id: lecture_id.clone(),
                    course_id: course_id.clone(),
                    duration_secs,
                },
                Some(LiveEvent::LectureReady {
                    lecture_id,
                    course_id: course_id.clone(),
                    title,
                }),
            ),
            Some(Advance::Failed { reason }) => (
                LiveEvent::Failed {
                    lecture_id,
                    course_id: course_id.clone(),
                    reason,
                },
                None,
            ),
            Some(Advance::Nothing) | None => return Ok(None),
        },
    };
    Ok(Some(Draft {
        owner_id,
        course_id: Some(course_id),
        event: live,
        for_students,
    }))
}

/// Consumes job events until the task is dropped. An event is acked once applied and
/// journaled.
pub async fn consume(db: Db, store: SharedStore, queue: SharedQueue, journal: Journal) {
    let mut consumer: Option<Box<dyn lectern_seams::queue::Consumer>> = None;
    loop {
        let c = match consumer.as_mut() {
            Some(c) => c,
            None => match queue.consumer(Topic::Events).await {
                Ok(c) => consumer.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "event queue unavailable; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            },
        };
        let delivery = match c.next().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "lost the event consumer; reconnecting");
                consumer = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let event: JobEvent = match serde_json::from_slice(&delivery.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "dropping a message that is not a job event");
                let _ = delivery.ack().await;
                continue;
            }
        };
        // The event's span continues the trace of the job (or upload) that reported it.
        let span = tracing::info_span!("catalog.apply", kind = event_kind(&event), lecture = %event.lecture_id(), trace_id = tracing::field::Empty);
        let parent = lectern_seams::telemetry::traceparent_in(&delivery.payload)
            .or_else(|| delivery.traceparent.clone());
        lectern_seams::telemetry::continue_trace(&span, parent.as_deref());
        async {
            match apply(&db, &store, &event).await {
                Ok(draft) => {
                    if let Some(d) = draft
                        && let Err(e) = crate::journal::record(&db, &journal, &d).await
                    {
                        // The state is applied; a redelivery would change nothing to journal.
                        tracing::warn!(error = %e, "an applied event could not be journaled");
                    }
                    let _ = delivery.ack().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not apply a job event; it will be redelivered");
                    let _ = delivery.retry_after(Duration::from_secs(1)).await;
                }
            }
        }
        .instrument(span)
        .await;
    }
}

/// The event's kind as its JSON names it, for the span.
fn event_kind(event: &JobEvent) -> &'static str {
    match event {
        JobEvent::Progress { .. } => "progress",
        JobEvent::Ready { .. } => "ready",
        JobEvent::Failed { .. } => "failed",
        JobEvent::Uploaded { .. } => "uploaded",
        JobEvent::PartStored { .. } => "part_stored",
        JobEvent::SlidesFound { .. } => "slides_found",
    }
}

/// The close code of a connection whose access token expired (4000-4999: the
/// application's own).
pub const TOKEN_EXPIRED: u16 = 4001;

/// The live connections each user holds open, so one account cannot hold thousands.
#[derive(Clone, Default)]
pub struct Sockets(Arc<Mutex<HashMap<String, usize>>>);

/// One admitted connection; it gives its place back when dropped.
pub struct SocketSlot {
    sockets: Sockets,
    user: String,
}

impl Sockets {
    /// A place for one more connection of `user`, when it holds fewer than `max`.
    pub fn admit(&self, user: &str, max: usize) -> Option<SocketSlot> {
        let mut open = self.0.lock().expect("sockets lock");
        let held = open.entry(user.to_string()).or_default();
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(SocketSlot {
            sockets: self.clone(),
            user: user.to_string(),
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.sockets.0.lock().expect("sockets lock");
        if let Some(held) = open.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// Serves one WebSocket client: first what it missed after `after` (the last number
/// it saw), then the events it may see as they come, until it goes away or the access
/// token it came with expires (then it is closed with code 4001, and the client
/// reconnects with a fresh token and its last number).
pub async fn serve_socket(
    mut socket: WebSocket,
    user: AuthUser,
    db: Db,
    journal: Journal,
    _slot: SocketSlot,
    after: Option<i64>,
) {
    // Listening before looking back, so nothing falls between the two.
    let mut events = journal.hub.subscribe();
    let left = (user.expires_at - now_unix()).max(0) as u64;
    let expiry = tokio::time::sleep(Duration::from_secs(left));
    tokio::pin!(expiry);
    let hello = serde_json::json!({"type": "hello", "user_id": user.id, "role": user.role});
    if send_text(&mut socket, hello.to_string()).await.is_err() {
        return;
    }
    let mut last_sent = 0;
    if let Some(after) = after {
        match catch_up(&mut socket, &db, &user, after).await {
            Ok(last) => last_sent = last,
            Err(()) => return,
        }
    }
    let mut ping = tokio::time::interval(Duration::from_secs(25));
    loop {
        tokio::select! {
            received = events.recv() => {
                let entry = match received {
                    Ok(entry) => entry,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "a live client fell behind; it is told to catch up");
                        if send_text(&mut socket, RESYNC.into()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                if entry.seq <= last_sent {
                    continue;
                }
                if let Some(text) = seen_by(&db, &user, &entry).await {
                    if send_text(&mut socket, text).await.is_err() {
                        return;
                    }
                    last_sent = entry.seq;
                }
            }
            incoming = socket.recv() => {
                match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            _ = &mut expiry => {
                let close = axum::extract::ws::CloseFrame { code: TOKEN_EXPIRED, reason: "the access token expired".into() };
                let _ = socket.send(Message::Close(Some(close))).await;
                return;
            }
        }
    }
}

/// Told when events were missed that the journal cannot give back (kept no longer, or
/// more than a reconnection catches up on): the client reloads what it shows and
/// listens on from the newest number it then sees.
const RESYNC: &str = r#"{"type":"resync"}"#;

/// Batches of missed events a reconnection sends before it says `resync` instead.
const CATCH_UP_BATCHES: usize = 5;

/// Sends what `user` missed after `after`; the last number sent (or `after`).
async fn catch_up(socket: &mut WebSocket, db: &Db, user: &AuthUser, after: i64) -> Result<i64, ()> {
    let mut last = after;
    for _ in 0..CATCH_UP_BATCHES {
        let missed = match crate::journal::missed(db, user, last, MAX_BATCH).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "could not read what a client missed");
                send_text(socket, RESYNC.into()).await?;
                return Ok(last);
            }
        };
        if missed.gone {
            send_text(socket, RESYNC.into()).await?;
            return Ok(last);
        }
        for event in missed.events {
            send_text(socket, event.to_string()).await?;
        }
        last = missed.last_seq;
        if !missed.more {
            return Ok(last);
        }
    }
    send_text(socket, RESYNC.into()).await?;
    Ok(last)
}

/// The entry as `user` sees it, if they may.
async fn seen_by(db: &Db, user: &AuthUser, entry: &Entry) -> Option<String> {
    let mine = user.role == Role::Admin || entry.owner_id == user.id;
    let enrolled = match (&entry.course_id, &entry.for_students) {
        (Some(course), Some(_)) if !mine => crate::courses::enrollment(db, &user.id, course)
            .await
            .ok()
            .flatten()
            .is_some(),
        _ => false,
    };
    entry.as_seen_by(user, enrolled).map(str::to_string)
}

async fn send_text(socket: &mut WebSocket, text: String) -> Result<(), ()> {
    socket.send(Message::Text(text.into())).await.map_err(drop)
}
