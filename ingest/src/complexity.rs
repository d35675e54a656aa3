//! The per-title ladder: how many bits each rung of this source really needs.
//!
//! A few sampled seconds of the source are encoded at every rung of the fixed ladder,
//! exactly as the workers encode (same preset, options, GOP and rate-control buffer),
//! once at the fixed ladder's bit rate and at three constant qualities (CRF), and each
//! encode is compared with the scaled source frame by frame (SSIM of the luma). That
//! traces the rung's rate-quality curve on this content. The rung then gets the lowest
//! bit rate whose quality stays within `SSIM_MARGIN` of the fixed rate's, never more
//! than the fixed rate; a rung that would cost nearly as much as the kept rung above it
//! is dropped, since a player gains little by switching to it. Screen recordings need
//! a tenth of a movie's bits; noise keeps the fixed ladder.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use lectern_common::messages::{Rung, SourceFacts, X264_OPTIONS, X264_PRESET, X264_VBV_MS, grid_frames};
use serde::{Deserialize, Serialize};

/// The constant qualities each rung is tried at, besides its fixed bit rate.
pub const TRIAL_CRFS: [u32; 3] = [16, 23, 30];
/// How far below the fixed rate's quality (SSIM) a chosen rate may aim. The acceptance
/// bound is 0.005; the rest is headroom for the parts of a lecture the samples missed.
pub const SSIM_MARGIN: f64 = 0.002;
/// Extra bits on top of the estimate, for the same reason.
pub const RATE_HEADROOM: f64 = 1.1;
/// A lower rung is kept only when it needs at most this share of the kept rung above.
pub const KEEP_RATIO: f64 = 0.6;
/// No rung goes below this, whatever the content (x264 needs something to work with).
pub const MIN_KBPS: u32 = 50;
/// Frames a queue of the probe holds: enough for x264's lookahead to preroll.
const QUEUED_FRAMES: u32 = 30;
/// Length of one sampled window, seconds.
pub const WINDOW_SECS: f64 = 2.0;

/// One encode of the samples at one rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// `fixed` (the fixed ladder's bit rate) or `crf`.
    pub mode: String,
    /// The CRF for a constant-quality trial.
    pub crf: Option<u32>,
    pub kbps: f64,
    /// Mean SSIM of the luma against the source scaled to the rung.
    pub ssim: f64,
}

/// What the probe found and chose for one rung of the fixed ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungChoice {
    pub name: String,
    pub fixed_kbps: u32,
    /// The quality the fixed bit rate reaches on the samples.
    pub fixed_ssim: f64,
    pub chosen_kbps: u32,
    pub kept: bool,
    /// Why the rung was dropped, or how its rate was found.
    pub note: String,
    pub trials: Vec<Trial>,
}

/// The probe's record, kept with the asset so an owner (or an operator) sees why the
/// ladder is what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LadderReport {
    /// `per-title`, or `fixed` with the reason the probe was not used.
    pub method: String,
    pub note: Option<String>,
    /// Start of each sampled window, seconds.
    pub windows: Vec<f64>,
    pub rungs: Vec<RungChoice>,
    pub probe_secs: f64,
}

impl LadderReport {
    pub fn fixed(note: impl Into<String>) -> Self {
        LadderReport { method: "fixed".into(), note: Some(note.into()), windows: Vec::new(), rungs: Vec::new(), probe_secs: 0.0 }
    }
}

/// Where the windows start: one for short sources, up to three spread over longer ones
/// (a title slide alone would say too little about the lecture).
pub fn windows_for(duration_secs: f64) -> Vec<f64> {
    if duration_secs <= WINDOW_SECS * 1.5 {
        return vec![0.0];
    }
    let count = if duration_secs < 20.0 {
        1
    } else if duration_secs < 120.0 {
        2
    } else {
        3
    };
    (0..count)
        .map(|i| {
            let centre = duration_secs * (i as f64 + 0.5) / count as f64;
            (centre - WINDOW_SECS / 2.0).clamp(0.0, (duration_secs - WINDOW_SECS).max(0.0))
        })
        .collect()
}

/// Encodes the sampled windows at every rung and reports each trial's rate and quality,
/// in the ladder's order.
pub fn measure(path: &Path, facts: &SourceFacts, ladder: &[Rung], deadline: Instant) -> Result<Vec<Vec<Trial>>, String> {
    gst::init().map_err(|e| e.to_string())?;
    let mut totals: Vec<Vec<TrialTotal>> = ladder.iter().map(|_| vec![TrialTotal::default(); 1 + TRIAL_CRFS.len()]).collect();
    // One probe at a time per process: each holds a ladder's worth of encoders.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for start in windows_for(facts.duration_secs) {
        // One pipeline per trial, each with every rung: x264 takes about 190 MB per
        // encoder at 1024x768, so all trials at once would hold four ladders.
        for trial in 0..=TRIAL_CRFS.len() {
            let window = measure_window(path, facts, ladder, start, trial, deadline)?;
            for (rung, t) in totals.iter_mut().zip(window) {
                let total = &mut rung[trial];
                total.bytes += t.bytes;
                total.frames += t.frames;
                total.ssim_sum += t.ssim_sum;
            }
        }
    }
    let fps = facts.fps_num.max(1) as f64 / facts.fps_den.max(1) as f64;
    totals
        .iter()
        .map(|rung| {
            rung.iter()
                .enumerate()
                .map(|(i, t)| {
                    if t.frames == 0 {
                        return Err("the samples decoded to no frames".to_string());
                    }
                    let secs = t.frames as f64 / fps;
                    Ok(Trial {
                        mode: if i == 0 { "fixed".into() } else { "crf".into() },
                        crf: if i == 0 { None } else { Some(TRIAL_CRFS[i - 1]) },
                        kbps: t.bytes as f64 * 8.0 / secs / 1000.0,
                        ssim: t.ssim_sum / t.frames as f64,
                    })
                })
                .collect()
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
struct TrialTotal {
    bytes: u64,
    frames: u64,
    ssim_sum: f64,
}

/// Reference frames of one rung (the scaled source, luma only), by frame number, each
/// kept until the encoded frame is compared with it.
struct References {
    frames: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    arrived: Condvar,
}

/// Luma of a GRAY8 sample, rows unpadded.
fn luma(sample: &gst::Sample, width: usize, height: usize) -> Option<Vec<u8>> {
    let buffer = sample.buffer()?;
    let map = buffer.map_readable().ok()?;
    let stride = width.div_ceil(4) * 4;
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        out.extend_from_slice(map.as_slice().get(y * stride..y * stride + width)?);
    }
    Some(out)
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory).build().map_err(|_| format!("GStreamer element {factory} is not installed"))
}

fn gray_sink(width: u32, height: u32) -> gst_app::AppSink {
    let caps = gst::Caps::builder("video/x-raw").field("format", "GRAY8").field("width", width as i32).field("height", height as i32).build();
    gst_app::AppSink::builder().caps(&caps).sync(false).build()
}

/// Encodes one window at every rung in one trial's mode (0: the fixed rate, then
/// `TRIAL_CRFS`), comparing each encoded frame with its scaled source frame.
fn measure_window(
    path: &Path,
    facts: &SourceFacts,
    ladder: &[Rung],
    start: f64,
    trial: usize,
    deadline: Instant,
) -> Result<Vec<TrialTotal>, String> {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc").property("location", path.to_string_lossy().to_string()).build().map_err(|e| e.to_string())?;
    let decode = make("decodebin")?;
    let convert = make("videoconvert")?;
    let tee = make("tee")?;
    pipeline.add_many([&src, &decode, &convert, &tee]).map_err(|e| e.to_string())?;
    src.link(&decode).map_err(|e| e.to_string())?;
    convert.link(&tee).map_err(|e| e.to_string())?;
    {
        let convert = convert.downgrade();
        decode.connect_pad_added(move |_, pad| {
            let is_video = pad.current_caps().and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/"))).unwrap_or(false);
            if let (true, Some(convert)) = (is_video, convert.upgrade())
                && let Some(sink) = convert.static_pad("sink")
                && !sink.is_linked()
            {
                let _ = pad.link(&sink);
            }
        });
    }
    // Nothing is counted until the seek to the window is done: the frames prerolled
    // from the start of the file are flushed by it.
    let measuring = Arc::new(AtomicBool::new(false));
    let failed: Arc<Mutex<Option<String>>> = Arc::default();
    let (gop_frames, _) = grid_frames(facts.fps_num, facts.fps_den, 6, 2);
    let mut results: Vec<(Arc<Mutex<TrialTotal>>, Arc<AtomicU64>)> = Vec::new();
    for rung in ladder {
        let (w, h) = (rung.width, rung.height);
        // Every queue is bounded: before the seek the pipeline prerolls from the start of
        // the file, and an unbounded queue would take in every frame decoded meanwhile.
        let q = queue(QUEUED_FRAMES)?;
        let scale = make("videoscale")?;
        scale.set_property("add-borders", false);
        let size = capsfilter(
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", w as i32)
                .field("height", h as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        )?;
        let rung_tee = make("tee")?;
        pipeline.add_many([&q, &scale, &size, &rung_tee]).map_err(|e| e.to_string())?;
        gst::Element::link_many([&tee, &q, &scale, &size, &rung_tee]).map_err(|e| e.to_string())?;

        let refs = Arc::new(References { frames: Mutex::new(HashMap::new()), arrived: Condvar::new() });
        // The reference sink never blocks, so its queue always drains: a trial waiting
        // for its reference frame cannot hold the tee that feeds both.
        let ref_q = queue(QUEUED_FRAMES)?;
        let ref_convert = make("videoconvert")?;
        let ref_sink = gray_sink(w, h);
        pipeline.add_many([&ref_q, &ref_convert, ref_sink.upcast_ref()]).map_err(|e| e.to_string())?;
        gst::Element::link_many([&rung_tee, &ref_q, &ref_convert, ref_sink.upcast_ref()]).map_err(|e| e.to_string())?;
        {
            let (refs, measuring) = (refs.clone(), measuring.clone());
            let next = AtomicU64::new(0);
            ref_sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if !measuring.load(Ordering::SeqCst) {
                            return Ok(gst::FlowSuccess::Ok);
                        }
                        let y = luma(&sample, w as usize, h as usize).ok_or(gst::FlowError::Error)?;
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        refs.frames.lock().expect("refs lock").insert(n, Arc::new(y));
                        refs.arrived.notify_all();
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }

        {
            let q = queue(QUEUED_FRAMES)?;
            let enc = make("x264enc")?;
            enc.set_property_from_str("speed-preset", X264_PRESET);
            enc.set_property("key-int-max", gop_frames as u32);
            enc.set_property("vbv-buf-capacity", X264_VBV_MS);
            enc.set_property("threads", 1u32);
            enc.set_property("option-string", X264_OPTIONS);
            if trial == 0 {
                enc.set_property("bitrate", rung.video_kbps);
            } else {
                enc.set_property_from_str("pass", "qual");
                enc.set_property("quantizer", TRIAL_CRFS[trial - 1]);
                // In constant quality `bitrate` is the ceiling: none here.
                enc.set_property("bitrate", 2_048_000u32);
            }
            let profile = capsfilter(gst::Caps::builder("video/x-h264").field("profile", "high").build())?;
            let dec = make("avdec_h264")?;
            // One decoding thread: frame threads each hold pictures, and the rungs
            // already run side by side.
            dec.set_property("max-threads", 1i32);
            let dec_convert = make("videoconvert")?;
            let sink = gray_sink(w, h);
            pipeline.add_many([&q, &enc, &profile, &dec, &dec_convert, sink.upcast_ref()]).map_err(|e| e.to_string())?;
            gst::Element::link_many([&rung_tee, &q, &enc, &profile, &dec, &dec_convert, sink.upcast_ref()]).map_err(|e| e.to_string())?;
            let bytes = Arc::new(AtomicU64::new(0));
            {
                let (bytes, measuring) = (bytes.clone(), measuring.clone());
                enc.static_pad("src").expect("x264enc src").add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if measuring.load(Ordering::SeqCst)
                        && let Some(b) = info.buffer()
                    {
                        bytes.fetch_add(b.size() as u64, Ordering::SeqCst);
                    }
                    gst::PadProbeReturn::Ok
                });
            }
            let total = Arc::new(Mutex::new(TrialTotal::default()));
            {
                let (refs, measuring, total, failed) = (refs.clone(), measuring.clone(), total.clone(), failed.clone());
                let next = AtomicU64::new(0);
                sink.set_callbacks(
                    gst_app::AppSinkCallbacks::builder()
                        .new_sample(move |sink| {
                            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            if !measuring.load(Ordering::SeqCst) {
                                return Ok(gst::FlowSuccess::Ok);
                            }
                            let y = luma(&sample, w as usize, h as usize).ok_or(gst::FlowError::Error)?;
                            let n = next.fetch_add(1, Ordering::SeqCst);
                            let reference = {
                                let mut frames = refs.frames.lock().expect("refs lock");
                                let waited = Instant::now();
                                while !frames.contains_key(&n) {
                                    let (f, timeout) = refs.arrived.wait_timeout(frames, Duration::from_secs(1)).expect("refs lock");
                                    frames = f;
                                    if timeout.timed_out() && waited.elapsed() > Duration::from_secs(30) {
                                        *failed.lock().expect("failed lock") = Some("an encoded frame has no source frame".into());
                                        return Err(gst::FlowError::Error);
                                    }
                                }
                                frames.remove(&n).expect("present")
                            };
                            let s = ssim_luma(&reference, &y, w as usize, h as usize);
                            let mut t = total.lock().expect("total lock");
                            t.frames += 1;
                            t.ssim_sum += s;
                            Ok(gst::FlowSuccess::Ok)
                        })
                        .build(),
                );
            }
            results.push((total, bytes));
        }
    }

    let run = (|| {
        let left = || gst::ClockTime::from_nseconds(deadline.saturating_duration_since(Instant::now()).as_nanos() as u64);
        pipeline.set_state(gst::State::Paused).map_err(|_| "the file does not decode".to_string())?;
        let bus = pipeline.bus().expect("a pipeline has a bus");
        match bus.timed_pop_filtered(left(), &[gst::MessageType::AsyncDone, gst::MessageType::Error]) {
            Some(m) if matches!(m.view(), gst::MessageView::AsyncDone(_)) => {}
            Some(m) => return Err(format!("the file does not decode: {m:?}")),
            None => return Err("the probe ran out of time".into()),
        }
        let start_time = gst::ClockTime::from_nseconds((start * 1e9) as u64);
        let stop_time = gst::ClockTime::from_nseconds(((start + WINDOW_SECS) * 1e9) as u64);
        pipeline
            .seek(1.0, gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, gst::SeekType::Set, start_time, gst::SeekType::Set, stop_time)
            .map_err(|_| "the file cannot seek".to_string())?;
        measuring.store(true, Ordering::SeqCst);
        pipeline.set_state(gst::State::Playing).map_err(|_| "the file does not play".to_string())?;
        match bus.timed_pop_filtered(left(), &[gst::MessageType::Eos, gst::MessageType::Error]) {
            Some(m) if matches!(m.view(), gst::MessageView::Eos(_)) => Ok(()),
            Some(m) => Err(failed.lock().expect("failed lock").clone().unwrap_or_else(|| format!("decoding the samples failed: {m:?}"))),
            None => Err("the probe ran out of time".into()),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    run?;
    Ok(results
        .iter()
        .map(|(total, bytes)| TrialTotal { bytes: bytes.load(Ordering::SeqCst), ..total.lock().expect("total lock").clone() })
        .collect())
}

fn queue(max_buffers: u32) -> Result<gst::Element, String> {
    let q = make("queue")?;
    q.set_property("max-size-buffers", max_buffers);
    q.set_property("max-size-bytes", 0u32);
    q.set_property("max-size-time", 0u64);
    Ok(q)
}

fn capsfilter(caps: gst::Caps) -> Result<gst::Element, String> {
    gst::ElementFactory::make("capsfilter").property("caps", caps).build().map_err(|e| e.to_string())
}

/// Mean SSIM of two luma planes (tight rows), over 8x8 windows every 4 pixels, with
/// x264's and ffmpeg's constants. Pictures smaller than a window are one window.
pub fn ssim_luma(a: &[u8], b: &[u8], width: usize, height: usize) -> f64 {
    assert_eq!(a.len(), width * height);
    assert_eq!(b.len(), width * height);
    let (bw, bh) = (width / 4, height / 4);
    if bw < 2 || bh < 2 {
        return window_ssim(a.iter().zip(b).map(|(x, y)| (*x as u64, *y as u64)), (width * height) as u64);
    }
    // Sums over 4x4 blocks: a, b, a²+b², ab.
    let mut sums = vec![[0u64; 4]; bw * bh];
    for by in 0..bh {
        for y in by * 4..by * 4 + 4 {
            let (ra, rb) = (&a[y * width..], &b[y * width..]);
            for bx in 0..bw {
                let s = &mut sums[by * bw + bx];
                for x in bx * 4..bx * 4 + 4 {
                    let (p, q) = (ra[x] as u64, rb[x] as u64);
                    s[0] += p;
                    s[1] += q;
                    s[2] += p * p + q * q;
                    s[3] += p * q;
                }
            }
        }
    }
    let mut total = 0.0;
    for by in 0..bh - 1 {
        for bx in 0..bw - 1 {
            let mut s = [0u64; 4];
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                for (sum, part) in s.iter_mut().zip(sums[(by + dy) * bw + bx + dx]) {
                    *sum += part;
                }
            }
            total += ssim_of_sums(s, 64);
        }
    }
    total / ((bw - 1) * (bh - 1)) as f64
}

fn window_ssim(pixels: impl Iterator<Item = (u64, u64)>, n: u64) -> f64 {
    let mut s = [0u64; 4];
    for (p, q) in pixels {
        s[0] += p;
        s[1] += q;
        s[2] += p * p + q * q;
        s[3] += p * q;
    }
    ssim_of_sums(s, n.max(1))
}

fn ssim_of_sums([s1, s2, ss, s12]: [u64; 4], n: u64) -> f64 {
    let n = n as f64;
    let (s1, s2, ss, s12) = (s1 as f64, s2 as f64, ss as f64, s12 as f64);
    let c1 = 0.01 * 0.01 * 255.0 * 255.0 * n * n;
    let c2 = 0.03 * 0.03 * 255.0 * 255.0 * n * (n - 1.0).max(1.0);
    let vars = ss * n - s1 * s1 - s2 * s2;
    let covar = s12 * n - s1 * s2;
    (2.0 * s1 * s2 + c1) * (2.0 * covar + c2) / ((s1 * s1 + s2 * s2 + c1) * (vars + c2))
}

/// The lowest bit rate at which a rung's rate-quality curve (its trials, joined by
/// straight lines in log rate) reaches `target`; None when no trial reaches it.
fn rate_for_quality(trials: &[Trial], target: f64) -> Option<f64> {
    let mut points: Vec<(f64, f64)> = trials.iter().filter(|t| t.kbps > 0.0).map(|t| (t.kbps.ln(), t.ssim)).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Quality never falls with more bits (a trial that did so was rate control's miss).
    for i in 1..points.len() {
        points[i].1 = points[i].1.max(points[i - 1].1);
    }
    let first = *points.first()?;
    if first.1 >= target {
        return Some(first.0.exp());
    }
    points.windows(2).find(|w| w[1].1 >= target).map(|w| {
        let t = (target - w[0].1) / (w[1].1 - w[0].1).max(1e-12);
        (w[0].0 + t * (w[1].0 - w[0].0)).exp()
    })
}

/// Picks each rung's bit rate from its trials and drops the rungs that add nothing.
/// `trials[i]` are rung `i`'s, the fixed-rate trial first.
pub fn choose(fixed: &[Rung], trials: &[Vec<Trial>]) -> (Vec<Rung>, Vec<RungChoice>) {
    let mut choices: Vec<RungChoice> = fixed
        .iter()
        .zip(trials)
        .map(|(rung, trials)| {
            let fixed_ssim = trials.iter().find(|t| t.mode == "fixed").map(|t| t.ssim).unwrap_or(1.0);
            let target = fixed_ssim - SSIM_MARGIN;
            let (chosen, note) = match rate_for_quality(trials, target) {
                Some(kbps) if kbps * RATE_HEADROOM < rung.video_kbps as f64 => {
                    let chosen = ((kbps * RATE_HEADROOM / 10.0).ceil() as u32 * 10).max(MIN_KBPS).min(rung.video_kbps);
                    (chosen, format!("SSIM {target:.4} needs about {kbps:.0} kbps; {:.0} % headroom", (RATE_HEADROOM - 1.0) * 100.0))
                }
                _ => (rung.video_kbps, "the content needs the fixed bit rate".to_string()),
            };
            RungChoice {
                name: rung.name.clone(),
                fixed_kbps: rung.video_kbps,
                fixed_ssim,
                chosen_kbps: chosen,
                kept: true,
                note,
                trials: trials.clone(),
            }
        })
        .collect();
    let mut last_kept: Option<u32> = None;
    for c in choices.iter_mut() {
        if let Some(above) = last_kept
            && c.chosen_kbps as f64 > KEEP_RATIO * above as f64
        {
            c.kept = false;
            c.note = format!("dropped: {} kbps is more than {:.0} % of the {above} kbps rung above", c.chosen_kbps, KEEP_RATIO * 100.0);
            continue;
        }
        last_kept = Some(c.chosen_kbps);
    }
    let ladder = fixed
        .iter()
        .zip(&choices)
        .filter(|(_, c)| c.kept)
        .map(|(r, c)| Rung { video_kbps: c.chosen_kbps, ..r.clone() })
        .collect();
    (ladder, choices)
}

/// The ladder for this source: probed when `per_title`, else (or when the probe fails)
/// the fixed one, with the record of how it was chosen.
pub fn fit_ladder(path: &Path, facts: &SourceFacts, fixed: Vec<Rung>, per_title: bool, timeout: Duration) -> (Vec<Rung>, LadderReport) {
    if !per_title {
        return (fixed, LadderReport::fixed("per-title ladders are turned off (LECTERN_LADDER=fixed)"));
    }
    if fixed.is_empty() {
        return (fixed, LadderReport::fixed("no video"));
    }
    let began = Instant::now();
    match measure(path, facts, &fixed, began + timeout) {
        Ok(trials) => {
            let (ladder, rungs) = choose(&fixed, &trials);
            let report = LadderReport {
                method: "per-title".into(),
                note: None,
                windows: windows_for(facts.duration_secs),
                rungs,
                probe_secs: began.elapsed().as_secs_f64(),
            };
            (ladder, report)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the complexity probe failed; the fixed ladder is used");
            (fixed, LadderReport::fixed(format!("the complexity probe failed: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(name: &str, kbps: u32) -> Rung {
        Rung { name: name.into(), width: 2, height: 2, video_kbps: kbps }
    }

    fn trial(mode: &str, kbps: f64, ssim: f64) -> Trial {
        Trial { mode: mode.into(), crf: None, kbps, ssim }
    }

    #[test]
    fn ssim_is_one_for_equal_pictures_and_falls_with_noise() {
        let (w, h) = (64, 48);
        let a: Vec<u8> = (0..w * h).map(|i| ((i * 7) % 251) as u8).collect();
        assert!((ssim_luma(&a, &a, w, h) - 1.0).abs() < 1e-12);
        let slight: Vec<u8> = a.iter().enumerate().map(|(i, p)| p.saturating_add((i % 3) as u8)).collect();
        let heavy: Vec<u8> = a.iter().enumerate().map(|(i, p)| p.wrapping_add(((i * 37) % 61) as u8)).collect();
        let (s1, s2) = (ssim_luma(&a, &slight, w, h), ssim_luma(&a, &heavy, w, h));
        assert!(s1 < 1.0 && s1 > 0.9 && s2 < s1, "{s1} {s2}");
        // Tiny pictures are one window.
        assert!((ssim_luma(&[10, 20, 30, 40], &[10, 20, 30, 40], 2, 2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn simple_content_gets_the_rate_that_keeps_its_quality() {
        // The fixed 2800 kbps reaches 0.995; CRF trials trace the curve below it.
        let trials = vec![
            trial("fixed", 2800.0, 0.995),
            trial("crf", 600.0, 0.994),
            trial("crf", 300.0, 0.990),
            trial("crf", 150.0, 0.980),
        ];
        let (ladder, choices) = choose(&[rung("v720", 2800)], &[trials]);
        // 0.993 lies three quarters of the way from 300 to 600 kbps (in log rate):
        // 505 kbps, +10 %.
        assert_eq!(ladder[0].video_kbps, 560, "{choices:?}");
    }

    #[test]
    fn complex_content_keeps_the_fixed_rate() {
        let trials =
            vec![trial("fixed", 2790.0, 0.90), trial("crf", 9000.0, 0.95), trial("crf", 5000.0, 0.92), trial("crf", 2000.0, 0.88)];
        let (ladder, _) = choose(&[rung("v720", 2800)], &[trials]);
        assert_eq!(ladder[0].video_kbps, 2800);
        // A curve that never reaches the target also keeps it.
        let flat = vec![trial("fixed", 2800.0, 0.95), trial("crf", 100.0, 0.5)];
        assert_eq!(choose(&[rung("v720", 2800)], &[flat]).0[0].video_kbps, 2800);
    }

    #[test]
    fn rungs_that_cost_nearly_as_much_as_the_one_above_are_dropped() {
        let fixed = [rung("v720", 2800), rung("v480", 1400), rung("v360", 800), rung("v240", 400)];
        // Rates already at the target quality at the lowest trial: 300, 240, 150, 120.
        let at = |kbps: f64| vec![trial("fixed", 3000.0, 0.999), trial("crf", kbps, 0.999)];
        let (ladder, choices) = choose(&fixed, &[at(300.0), at(240.0), at(150.0), at(120.0)]);
        let names: Vec<&str> = ladder.iter().map(|r| r.name.as_str()).collect();
        // 330 kept; 270 > 60 % of 330, dropped; 170 kept; 140 > 60 % of 170, dropped.
        assert_eq!(names, ["v720", "v360"], "{choices:?}");
        assert!(!choices[1].kept && choices[1].note.contains("dropped"));
        assert!(ladder.windows(2).all(|w| w[0].video_kbps > w[1].video_kbps));
    }

    /// A 10 s 640x360 source made by GStreamer from `pattern`.
    fn source_file(dir: &Path, pattern: &str) -> (std::path::PathBuf, SourceFacts) {
        let path = dir.join(format!("{pattern}.mp4"));
        let desc = format!(
            "videotestsrc pattern={pattern} num-buffers=300 ! video/x-raw,width=640,height=360,framerate=30/1 ! x264enc speed-preset=ultrafast key-int-max=60 pass=quant quantizer=0 ! h264parse ! mp4mux ! filesink location={}",
            path.display()
        );
        let ok = std::process::Command::new("gst-launch-1.0").arg("-q").args(desc.split_whitespace()).status().unwrap();
        assert!(ok.success());
        let facts = crate::probe::probe_file(&path, 10).unwrap();
        (path, facts)
    }

    #[test]
    fn screen_like_content_gets_a_fraction_of_the_bits_and_noise_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(60);
        let (still, facts) = source_file(dir.path(), "ball");
        let fixed = crate::ladder::ladder_for(&facts);
        assert_eq!(fixed.iter().map(|r| r.video_kbps).collect::<Vec<_>>(), [800, 400]);
        let (ladder, report) = fit_ladder(&still, &facts, fixed.clone(), true, timeout);
        assert_eq!(report.method, "per-title", "{report:?}");
        // A ball moving over black: a few dozen kbps keep it as the fixed rates do.
        assert!(ladder[0].video_kbps <= 800 / 4, "{report:#?}");
        assert_eq!(ladder[0].name, "v360");
        for r in &report.rungs {
            assert_eq!(r.trials.len(), 1 + TRIAL_CRFS.len());
            assert!(r.fixed_ssim > 0.95 && r.fixed_ssim <= 1.0, "{r:?}");
        }
        // Noise is as complex as pictures get: every rung keeps its fixed rate.
        let (snow, facts) = source_file(dir.path(), "snow");
        let (ladder, report) = fit_ladder(&snow, &facts, fixed.clone(), true, timeout);
        assert_eq!(ladder, fixed, "{report:#?}");
        // Turned off, or with nothing to probe, the fixed ladder is used.
        let (ladder, report) = fit_ladder(&snow, &facts, fixed.clone(), false, timeout);
        assert_eq!((ladder, report.method.as_str()), (fixed.clone(), "fixed"));
        let (ladder, report) = fit_ladder(&dir.path().join("missing.mp4"), &facts, fixed.clone(), true, timeout);
        assert_eq!(ladder, fixed);
        assert!(report.note.unwrap().contains("probe failed"));
    }

    #[test]
    fn windows_spread_over_the_lecture_and_stay_inside_it() {
        assert_eq!(windows_for(1.0), vec![0.0]);
        assert_eq!(windows_for(10.0), vec![4.0]);
        assert_eq!(windows_for(40.0), vec![9.0, 29.0]);
        let long = windows_for(600.0);
        assert_eq!(long.len(), 3);
        assert!(long.iter().all(|s| *s >= 0.0 && s + WINDOW_SECS <= 600.0));
    }
}
