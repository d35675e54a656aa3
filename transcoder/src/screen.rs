//! What a lecture shows on screen, as a fenced task (`lectern fenced slides`): the child
//! decodes the video alone at two pictures a second, finds where a new slide or screen
//! comes (`slides`), keeps a thumbnail of each and reads its words with Tesseract
//! (`ocr`), a program it starts inside its own fence. The worker stores the
//! thumbnails and reports the slides; nothing of playback waits for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lectern_gate::fence::{ChildError, Events};
use lectern_seams::messages::{FoundSlide, SourceFacts};
use serde::{Deserialize, Serialize};

use crate::pipeline::{self, Frame, Watchdog};
use crate::slides::{Detector, Picture, Seen};
use crate::{ocr, storyboard};

/// The fenced task's name.
pub const TASK: &str = "slides";
/// Pictures looked at per second of the lecture.
const PER_SEC: u32 = 2;
/// The width pictures are read at: slide text stays legible to the OCR engine.
const READ_WIDTH: u32 = 1920;
const THUMB_WIDTH: u32 = 320;
/// Slides kept from one lecture; a video that never settles would otherwise make one
/// every few seconds.
pub const MAX_SLIDES: usize = 400;
/// One OCR call's wall-clock limit.
const OCR_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub source: PathBuf,
    pub facts: SourceFacts,
    pub out_dir: PathBuf,
    /// Tesseract's language codes (`eng+deu`).
    pub languages: String,
    /// The OCR engine; without it, slides are found but not read.
    pub tesseract: Option<PathBuf>,
    pub stall_secs: u64,
    pub total_secs: u64,
    pub max_gap_secs: u64,
}

impl Request {
    /// The child's time: decoding, then an OCR call per slide at most, and a minute.
    pub fn time_budget(&self) -> Duration {
        Duration::from_secs(self.total_secs + 60)
    }
}

/// The slides, in time order, thumbnails in the output folder.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub slides: Vec<FoundSlide>,
}

/// A slide seen while decoding: when it came, and its steady picture for reading.
struct Kept {
    start_secs: f64,
    picture: PathBuf,
    height: u32,
    thumbnail: String,
}

/// What decoding has found so far.
#[derive(Default)]
struct Finding {
    detector: Detector,
    slides: Vec<Kept>,
    /// Writing a slide's files failed: the task fails with this.
    failure: Option<String>,
}

/// The child's side.
pub fn run(req: Request, _events: &mut Events) -> Result<Report, ChildError> {
    let watchdog = Watchdog {
        stall: Duration::from_secs(req.stall_secs),
        total: Duration::from_secs(req.total_secs),
        max_gap: Duration::from_secs(req.max_gap_secs),
    };
    let kept = find_slides(&req, watchdog)?;
    let mut unread = 0;
    let mut slides = Vec::with_capacity(kept.len());
    for (n, s) in kept.into_iter().enumerate() {
        let reading = match read_words(&req, &s.picture, s.height) {
            Ok(reading) => reading,
            Err(e) => {
                tracing::warn!(error = %e, "reading a slide failed");
                unread += 1;
                ocr::Reading::default()
            }
        };
        let _ = std::fs::remove_file(&s.picture);
        slides.push(FoundSlide {
            // The first slide is the lecture's start, whatever the sampling grid.
            start_secs: if n == 0 { 0.0 } else { s.start_secs },
            title: reading.title,
            text: reading.text,
            thumbnail: s.thumbnail,
        });
    }
    // An engine that reads nothing at all is broken, not the slides: try again later.
    if unread > 0 && unread == slides.len() {
        return Err(ChildError::Failed(format!(
            "the OCR engine failed on all {unread} slides"
        )));
    }
    Ok(Report { slides })
}

/// Decodes the video and keeps each new slide's steady picture (as PGM, which the OCR
/// engine reads) and thumbnail.
fn find_slides(req: &Request, watchdog: Watchdog) -> Result<Vec<Kept>, ChildError> {
    let found = Arc::new(Mutex::new(Finding::default()));
    let out_dir = req.out_dir.clone();
    let keep = found.clone();
    let never = AtomicBool::new(false);
    let decoded = pipeline::sample_pictures(
        &req.source,
        &req.facts,
        READ_WIDTH,
        PER_SEC,
        watchdog,
        &never,
        move |frame: Frame| {
            let picture = luma(&frame);
            let mut guard = keep.lock().expect("slides lock");
            let Finding {
                detector,
                slides,
                failure,
            } = &mut *guard;
            let Seen::NewSlide { start_secs } = detector.push(&picture) else {
                return;
            };
            if slides.len() >= MAX_SLIDES || failure.is_some() {
                return;
            }
            match keep_slide(&out_dir, slides.len(), &frame, &picture) {
                Ok((path, thumbnail)) => slides.push(Kept {
                    start_secs,
                    picture: path,
                    height: picture.height,
                    thumbnail,
                }),
                Err(e) => *failure = Some(e),
            }
        },
    );
    decoded.map_err(|e| {
        tracing::warn!(error = %e, "decoding for slides failed");
        match e.refusal() {
            Some(r) => ChildError::Refused(r),
            None => ChildError::Failed(e.to_string()),
        }
    })?;
    let Finding {
        slides, failure, ..
    } = std::mem::take(&mut *found.lock().expect("slides lock"));
    match failure {
        Some(e) => Err(ChildError::Failed(e)),
        None => Ok(slides),
    }
}

/// Writes slide `n`'s picture for reading and its thumbnail; their paths.
fn keep_slide(
    dir: &Path,
    n: usize,
    frame: &Frame,
    picture: &Picture,
) -> Result<(PathBuf, String), String> {
    let pgm = dir.join(format!("slide-{n:04}.pgm"));
    let mut bytes = format!("P5\n{} {}\n255\n", picture.width, picture.height).into_bytes();
    bytes.extend_from_slice(&picture.luma);
    std::fs::write(&pgm, bytes).map_err(|e| format!("writing a slide: {e}"))?;
    let thumbnail = format!("slide-{n:04}.jpg");
    let small = shrink_rgb(frame, THUMB_WIDTH);
    std::fs::write(dir.join(&thumbnail), storyboard::jpeg(&small, 80)?)
        .map_err(|e| format!("writing a thumbnail: {e}"))?;
    Ok((pgm, thumbnail))
}

/// Runs the OCR engine over one picture; nothing read when there is no engine.
fn read_words(req: &Request, picture: &Path, height: u32) -> Result<ocr::Reading, String> {
    let Some(tesseract) = &req.tesseract else {
        return Ok(ocr::Reading::default());
    };
    let args = ocr::tesseract_args(picture, &req.languages);
    let tsv = run_limited(tesseract, &args, &req.out_dir)?;
    Ok(ocr::read(&ocr::parse_tsv(&tsv), height))
}

/// A program's standard output, killed past [`OCR_LIMIT`]. Its output goes through a
/// file in the child's folder (a pipe could fill while we wait), and nothing opens
/// `/dev/null`, which the fence lets the child read only.
fn run_limited(program: &Path, args: &[String], scratch: &Path) -> Result<String, String> {
    let out_path = scratch.join("ocr.out");
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut child = std::process::Command::new(program)
        .args(args)
        // One thread each: the worker's cores belong to the encoders.
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(file(&out_path)?)
        .stderr(file(&scratch.join("ocr.log"))?)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    drop(child.stdin.take());
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(status)) => return Err(format!("the OCR engine ended with {status}")),
            Ok(None) if started.elapsed() > OCR_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the OCR engine took too long".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
    std::fs::read_to_string(&out_path).map_err(|e| e.to_string())
}

/// The picture's brightness (BT.601 weights), for finding and reading slides.
fn luma(frame: &Frame) -> Picture {
    let luma = frame
        .rgb
        .chunks_exact(3)
        .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8)
        .collect();
    Picture {
        pts_secs: frame.pts_secs,
        width: frame.width,
        height: frame.height,
        luma,
    }
}

/// A box-filtered copy `width` px wide.
fn shrink_rgb(frame: &Frame, width: u32) -> Frame {
    let (sw, sh) = (frame.width as usize, frame.height as usize);
    let w = (width as usize).min(sw).max(1);
    let h = (sh * w / sw.max(1)).max(1);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let (y0, y1) = (y * sh / h, ((y + 1) * sh / h).max(y * sh / h + 1));
        for x in 0..w {
            let (x0, x1) = (x * sw / w, ((x + 1) * sw / w).max(x * sw / w + 1));
            let mut sum = [0u32; 3];
            for row in y0..y1 {
                for col in x0..x1 {
                    let i = (row * sw + col) * 3;
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += frame.rgb[i + c] as u32;
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            rgb.extend(sum.iter().map(|s| (s / n) as u8));
        }
    }
    Frame {
        pts_secs: frame.pts_secs,
        width: w as u32,
        height: h as u32,
        rgb,
    }
}

/// How the worker runs it: `lectern fenced slides`, reading the request on stdin.
pub fn serve() -> std::process::ExitCode {
    lectern_gate::fence::serve(run)
}

/// The OCR engine a worker starts, found at its start.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub program: Option<PathBuf>,
    /// The languages whose data is installed (`eng`, `deu`).
    pub languages: Vec<String>,
}

impl Engine {
    /// `tesseract` on PATH and its installed languages; none when it is missing.
    pub fn find() -> Self {
        let program = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("tesseract"))
                .find(|p| p.is_file())
        });
        let languages = program
            .as_ref()
            .and_then(|p| {
                std::process::Command::new(p)
                    .arg("--list-langs")
                    .output()
                    .ok()
            })
            .map(|out| ocr::installed_languages(&String::from_utf8_lossy(&out.stdout)))
            .unwrap_or_default();
        if program.is_none() {
            tracing::warn!("tesseract is not installed: slides are found but not read");
        }
        Engine { program, languages }
    }

    /// The wanted languages (`eng+deu`) that are installed, else English, else the
    /// first installed one.
    pub fn languages_for(&self, wanted: Option<&str>) -> String {
        let installed = |l: &&str| self.languages.iter().any(|i| i == l);
        let chosen: Vec<&str> = wanted
            .unwrap_or("eng")
            .split('+')
            .filter(installed)
            .collect();
        if !chosen.is_empty() {
            return chosen.join("+");
        }
        match self.languages.iter().find(|l| *l == "eng") {
            Some(eng) => eng.clone(),
            None => self
                .languages
                .first()
                .cloned()
                .unwrap_or_else(|| "eng".into()),
        }
    }
}

impl crate::Worker {
    /// A slides job: the fenced child finds and reads the slides; their thumbnails
    /// are stored under the asset's `slides/` folder.
    pub(crate) async fn read_slides(
        &self,
        job: &lectern_seams::messages::TranscodeJob,
        cancel: Arc<AtomicBool>,
    ) -> Result<lectern_seams::messages::JobEvent, crate::JobError> {
        use crate::JobError;
        let scratch = self.scratch_for(job).await?;
        let source = self.source_of(job, scratch.path()).await?;
        let out_dir = scratch.path().join("out");
        std::fs::create_dir_all(&out_dir).map_err(|e| JobError::Internal(e.to_string()))?;
        let engine = &self.config.ocr;
        let request = Request {
            source: source.clone(),
            facts: job.source.clone(),
            out_dir: out_dir.clone(),
            languages: engine.languages_for(job.screen_languages.as_deref()),
            tesseract: engine.program.clone(),
            stall_secs: self.config.stall_timeout.as_secs(),
            total_secs: self.job_time(job).as_secs(),
            max_gap_secs: self.config.max_gap.as_secs(),
        };
        let mut readable = vec![source];
        readable.extend(engine.program.clone());
        let task = lectern_gate::fence::Task {
            name: TASK,
            input: &request,
            readable,
            writable: scratch.path().to_path_buf(),
            time: request.time_budget(),
            starts_programs: engine.program.is_some(),
        };
        let cancelled = async {
            while !cancel.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let report = self
            .config
            .fence
            .run::<_, (), Report>(task, |()| {}, cancelled)
            .await
            .map_err(|failure| match failure.error.refusal() {
                Some(refusal) => JobError::Media {
                    refusal,
                    diagnostics: failure.diagnostics,
                },
                None => JobError::Internal(failure.to_string()),
            })?;
        for slide in &report.slides {
            // Names come from the child: only its own pattern is taken.
            let name = &slide.thumbnail;
            let ours = name.starts_with("slide-")
                && name.ends_with(".jpg")
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ours {
                return Err(JobError::Internal(format!("a thumbnail named {name:?}")));
            }
            let key = format!("{}/slides/{name}", job.output_prefix);
            self.store.put_file(&key, &out_dir.join(name)).await?;
        }
        Ok(lectern_seams::messages::JobEvent::SlidesFound {
            job_id: job.job_id.clone(),
            lecture_id: job.lecture_id.clone(),
            asset_id: job.asset_id.clone(),
            slides: report.slides,
        })
    }
}
