//! One run of `lectern upload`: sign in, make the lectures in order, send the files one
//! after another (resuming what an earlier run began), follow them, sum up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use lectern_seams::ids::CourseId;
use lectern_seams::lecture::LectureStatus;
use reqwest::Url;
use tokio::sync::mpsc;

use crate::api::{Api, ClientError};
use crate::args::{Credentials, UploadArgs};
use crate::files::{self, Source};
use crate::follow;
use crate::journal::{self, Entry, Journal};
use crate::report::{At, Event, Reporter};
use crate::tus::{Pacer, Progress, Tus};

/// How a run ended, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every lecture is ready (or, with --no-wait, uploaded).
    Done,
    /// A file was refused or a lecture failed, or the run stopped on an error.
    Failed,
    Usage,
    /// Not signed in, or not allowed.
    Auth,
    Interrupted,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Done => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Auth => 3,
            Exit::Interrupted => 130,
        }
    }

    fn of(e: &ClientError) -> Exit {
        match e {
            ClientError::Usage(_) => Exit::Usage,
            ClientError::Auth(_) => Exit::Auth,
            ClientError::Interrupted => Exit::Interrupted,
            _ => Exit::Failed,
        }
    }
}

/// `lectern upload`: runs until every lecture settles, Ctrl-C or SIGTERM. An
/// interrupted run leaves its journal for the next one.
pub async fn upload(args: UploadArgs) -> Exit {
    // reqwest's rustls takes the process's provider: ring, as the rest of Lectern.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let json = args.json;
    // A password prompt comes first, under the terminal's own Ctrl-C.
    let outcome = match args.credentials() {
        Ok(credentials) => tokio::select! {
            done = run(args, credentials) => done,
            () = interrupted() => Err(ClientError::Interrupted),
        },
        Err(e) => Err(e),
    };
    outcome.unwrap_or_else(|e| stopped(json, e))
}

/// Says why the run stopped (on stderr, and as an `error` event with --json).
fn stopped(json: bool, e: ClientError) -> Exit {
    let message = match &e {
        ClientError::Interrupted => "interrupted; run the same command again to resume".into(),
        ClientError::Usage(_) | ClientError::Auth(_) => e.to_string(),
        e if e.is_per_file() => e.to_string(),
        e => format!("{e}; run the same command again to resume"),
    };
    if json {
        Reporter::new(true, &[], Vec::new()).emit(Event::Error {
            message: message.clone(),
        });
    }
    eprintln!("lectern upload: {message}");
    Exit::of(&e)
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// One file of the run and its lecture.
struct Item {
    source: Source,
    key: String,
    at: At,
    entry: Entry,
    status: LectureStatus,
}

/// How the sending of one file ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    Uploaded,
    Skipped,
    Refused,
}

struct Run {
    api: Api,
    journal: Journal,
    reporter: Arc<Reporter>,
    server: Url,
    course: CourseId,
    pacer: Option<Arc<Pacer>>,
    chunk_size: u64,
}

async fn run(args: UploadArgs, credentials: Credentials) -> Result<Exit, ClientError> {
    let sources = files::collect(&args.files, args.title_from)?;
    let journal = args
        .state
        .clone()
        .or_else(journal::default_path)
        .ok_or_else(|| {
            ClientError::Usage(
                "no home folder for the resume journal: name one with --state".into(),
            )
        })?;
    let api = Api::sign_in(args.server.clone(), credentials).await?;
    api.editable_course(&args.course).await?;
    let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let reporter = Reporter::new(args.json, &names, sources.iter().map(|s| s.size).collect());
    let run = Run {
        api,
        journal: Journal::at(journal),
        reporter: Arc::new(reporter),
        server: args.server,
        course: args.course,
        pacer: args.limit_rate.map(|r| Arc::new(Pacer::new(r))),
        chunk_size: args.chunk_size,
    };
    let items = run.prepare(sources).await?;
    let (to_follow, incoming) = mpsc::unbounded_channel();
    let following = async {
        if args.no_wait {
            return Ok(BTreeMap::new());
        }
        follow::follow(&run.api, &run.reporter, incoming).await
    };
    let (sent, settled) = tokio::try_join!(run.send_all(&items, to_follow), following)?;
    Ok(run.sum_up(&items, &sent, &settled, args.no_wait))
}

impl Run {
    /// A lecture for every file, in order: the one an earlier run made, or a new one.
    async fn prepare(&self, sources: Vec<Source>) -> Result<Vec<Item>, ClientError> {
        let mut items = Vec::with_capacity(sources.len());
        for (i, source) in sources.into_iter().enumerate() {
            items.push(self.lecture_for(i + 1, source).await?);
        }
        Ok(items)
    }

    async fn lecture_for(&self, index: usize, source: Source) -> Result<Item, ClientError> {
        let key = journal::key(&self.server, &self.course, &source);
        if let Some(entry) = self.journal.get(&key)?
            && let Some(lecture) = self.api.lecture(&entry.lecture_id).await?
        {
            let at = self.at(index, &source, &entry);
            self.reporter.emit(Event::Reused {
                at: at.clone(),
                title: entry.title.clone(),
                status: lecture.status,
            });
            return Ok(Item {
                source,
                key,
                at,
                entry,
                status: lecture.status,
            });
        }
        // New, or its lecture was deleted since: a new lecture after the last one.
        let lecture = self.api.create_lecture(&self.course, &source.title).await?;
        let entry = Entry {
            lecture_id: lecture.id,
            title: source.title.clone(),
            upload_url: None,
            updated_at: 0,
        };
        self.journal.put(&key, entry.clone())?;
        let at = self.at(index, &source, &entry);
        self.reporter.emit(Event::Created {
            at: at.clone(),
            title: entry.title.clone(),
        });
        Ok(Item {
            source,
            key,
            at,
            entry,
            status: lecture.status,
        })
    }

    fn at(&self, index: usize, source: &Source, entry: &Entry) -> At {
        At {
            index,
            file: source.shown.clone(),
            lecture_id: entry.lecture_id.clone(),
        }
    }

    /// Sends the files one at a time (the uplink is the bottleneck), handing each
    /// lecture to the follower once its file is in. A file the server refuses is
    /// reported and the next one goes; any other error stops the run.
    async fn send_all(
        &self,
        items: &[Item],
        to_follow: mpsc::UnboundedSender<At>,
    ) -> Result<Vec<Sent>, ClientError> {
        let mut sent = Vec::with_capacity(items.len());
        for item in items {
            match self.send(item).await {
                Ok(s) => {
                    // Nobody listens with --no-wait.
                    let _ = to_follow.send(item.at.clone());
                    sent.push(s);
                }
                Err(e) if e.is_per_file() => {
                    self.reporter.emit(Event::Failed {
                        at: item.at.clone(),
                        reason: e.to_string(),
                        code: e.code().map(str::to_string),
                    });
                    sent.push(Sent::Refused);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Sends one file, unless its lecture already has it.
    async fn send(&self, item: &Item) -> Result<Sent, ClientError> {
        // The server's word, not the journal's: a lecture past awaiting_upload has its file.
        if item.status != LectureStatus::AwaitingUpload {
            self.reporter.emit(Event::Skipped {
                at: item.at.clone(),
                status: item.status,
            });
            return Ok(Sent::Skipped);
        }
        let tus = Tus {
            api: &self.api,
            pacer: self.pacer.clone(),
            chunk_size: self.chunk_size,
        };
        let progress: Progress = {
            let (reporter, at) = (self.reporter.clone(), item.at.clone());
            Arc::new(move |position| reporter.progress(&at, position))
        };
        let mut entry = item.entry.clone();
        let started = Instant::now();
        // An upload that expires under us is begun again once, for the same lecture.
        for _ in 0..2 {
            let (url, offset) = self.resume_or_create(&tus, item, &mut entry).await?;
            self.reporter.emit(Event::Uploading {
                at: item.at.clone(),
                bytes_total: item.source.size,
                resumed_from: offset,
            });
            if tus
                .send_from(&url, &item.source, offset, progress.clone())
                .await?
            {
                self.reporter.emit(Event::Uploaded {
                    at: item.at.clone(),
                    bytes: item.source.size,
                    secs: started.elapsed().as_secs_f64(),
                });
                return Ok(Sent::Uploaded);
            }
            entry.upload_url = None;
        }
        Err(ClientError::Protocol(format!(
            "{}: the server lost the upload twice",
            item.source.shown
        )))
    }

    /// The journal's upload where the server still has it, else a new one.
    async fn resume_or_create(
        &self,
        tus: &Tus<'_>,
        item: &Item,
        entry: &mut Entry,
    ) -> Result<(Url, u64), ClientError> {
        let known = entry.upload_url.as_deref().and_then(|u| Url::parse(u).ok());
        if let Some(url) = known.filter(|u| self.api.same_origin(u))
            && let Some(offset) = tus.offset(&url).await?
        {
            return Ok((url, offset));
        }
        let url = tus.create(&entry.lecture_id, &item.source).await?;
        entry.upload_url = Some(url.to_string());
        self.journal.put(&item.key, entry.clone())?;
        Ok((url, 0))
    }

    fn sum_up(
        &self,
        items: &[Item],
        sent: &[Sent],
        settled: &BTreeMap<usize, bool>,
        no_wait: bool,
    ) -> Exit {
        let refused = sent.iter().filter(|s| **s == Sent::Refused).count();
        let ready = settled.values().filter(|r| **r).count();
        let failed = refused + settled.values().filter(|r| !**r).count();
        let all_in = no_wait || ready == items.len();
        let exit = if failed == 0 && all_in {
            Exit::Done
        } else {
            Exit::Failed
        };
        self.reporter.emit(Event::Summary {
            files: items.len(),
            uploaded: sent.iter().filter(|s| **s == Sent::Uploaded).count(),
            ready,
            failed,
            exit_code: exit.code(),
        });
        exit
    }
}
