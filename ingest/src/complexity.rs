//! The per-title ladder: how many bits each rung of this source really needs.
//!
//! A few sampled seconds of the source are encoded at every rung of the fixed ladder,
//! exactly as the workers encode (same preset, options, GOP and rate-control buffer),
//! once at the fixed ladder's bit rate and at two constant qualities (CRF), and each
//! encode is compared with the scaled source frame by frame (SSIM as ffmpeg's `All`).
//! That traces the rung's rate-quality curve on this content. A rung that reaches the
//! fixed rate's quality (less `SSIM_MARGIN`) with clearly fewer bits is then encoded at
//! that constant quality, capped at the fixed rate; a rung that would cost nearly as
//! much as the kept rung above it is dropped, since a player gains little by switching
//! to it. Screen recordings need a tenth of a movie's bits; a movie keeps the fixed
//! ladder.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use lectern_seams::messages::{
    Rung, SourceFacts, X264_OPTIONS, X264_PRESET, X264_VBV_MS, grid_frames,
};
use serde::{Deserialize, Serialize};

/// The constant qualities a rung is tried at, besides its fixed bit rate: the middle
/// one, then the low or the high one.
pub const MID_CRF: u32 = 23;
pub const LOW_CRF: u32 = 17;
pub const HIGH_CRF: u32 = 29;
/// How far below the fixed rate's quality (SSIM) a chosen rate may aim. The acceptance
/// bound is 0.005; the rest is headroom for the parts of a lecture the samples missed.
pub const SSIM_MARGIN: f64 = 0.002;
/// Constant quality is used only where the content needs at most this share of the
/// fixed rate. Nearer the cap, the cap binds often and the rate control's buffer then
/// decides the bits: chunks, which start with a fresh buffer, spent 14 % more than one
/// pass at 720p (CRF 18 for 86 % of the fixed rate, bench 2026-11-24 18:44), where an
/// average rate costs chunks 0.1 %.
pub const SAVING_RATIO: f64 = 0.7;
/// Below this CRF the curve was extended too far to trust: the fixed rate is kept.
pub const MIN_CRF: u32 = 12;
/// A lower rung is kept only when it needs at most this share of the kept rung above.
pub const KEEP_RATIO: f64 = 0.6;
/// Raw frames the reference branch of a rung may queue: it must take in enough for
/// x264's delay (lookahead, B-frames) while its sink waits to preroll, or the tee that
/// feeds both would starve the encoder. Other queues hold two: they only decouple
/// threads, and every raw 1080p frame queued is 3 MB.
const REFERENCE_QUEUE: u32 = 16;
const QUEUE: u32 = 2;
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
    /// Mean SSIM (as ffmpeg's `All`: planes weighted by pixels) against the source
    /// scaled to the rung.
    pub ssim: f64,
}

/// What the probe found and chose for one rung of the fixed ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungChoice {
    pub name: String,
    pub fixed_kbps: u32,
    /// The quality the fixed bit rate reaches on the samples.
    pub fixed_ssim: f64,
    /// The constant quality it is encoded at; None: at the fixed rate.
    pub crf: Option<u32>,
    /// The bit rate the samples took at that quality.
    pub expected_kbps: u32,
    pub kept: bool,
    /// Why the rung was dropped, or how its encoding was chosen.
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
        LadderReport {
            method: "fixed".into(),
            note: Some(note.into()),
            windows: Vec::new(),
            rungs: Vec::new(),
            probe_secs: 0.0,
        }
    }
}

/// Where the windows start: one for short sources, two spread over longer ones (a title
/// slide alone would say too little about the lecture; more windows cost time to
/// playable).
pub fn windows_for(duration_secs: f64) -> Vec<f64> {
    if duration_secs <= WINDOW_SECS * 1.5 {
        return vec![0.0];
    }
    let count = if duration_secs < 20.0 { 1 } else { 2 };
    (0..count)
        .map(|i| {
            let centre = duration_secs * (i as f64 + 0.5) / count as f64;
            (centre - WINDOW_SECS / 2.0).clamp(0.0, (duration_secs - WINDOW_SECS).max(0.0))
        })
        .collect()
}

/// How one trial encodes a rung: at the fixed ladder's bit rate, or at a constant
/// quality.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setting {
    Fixed,
    Crf(u32),
}

/// Encodes the sampled windows at every rung and reports each rung's trials: the
/// fixed rate, `MID_CRF`, then `LOW_CRF` where the target quality lies above the middle
/// trial's (the curve between it and the fixed rate needs a point) or `HIGH_CRF` where
/// it lies below. Three encodes per rung: the probe runs before any chunk, so its time
/// is added to the time to playable.
pub fn measure(
    path: &Path,
    facts: &SourceFacts,
    ladder: &[Rung],
    deadline: Instant,
) -> Result<Vec<Vec<Trial>>, String> {
    gst::init().map_err(|e| e.to_string())?;
    // One probe at a time per process: each holds a ladder's worth of encoders.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let windows = windows_for(facts.duration_secs);
    let fps = facts.fps_num.max(1) as f64 / facts.fps_den.max(1) as f64;
    let largest = ladder.iter().map(|r| r.width * r.height).max().unwrap_or(0);
    // One pipeline per trial, window and group of rungs: all trials at once would hold
    // several ladders, and even one ladder's encoders, their decoders and the reference
    // frames waiting for them took 740-890 MB at 1080p (the top rung alone 410).
    let run = |settings: &[Setting]| -> Result<Vec<Trial>, String> {
        let mut totals = vec![TrialTotal::default(); ladder.len()];
        for start in &windows {
            for group in rung_groups(ladder) {
                let rungs: Vec<Rung> = group.iter().map(|&i| ladder[i].clone()).collect();
                let group_settings: Vec<Setting> = group.iter().map(|&i| settings[i]).collect();
                let measured = measure_window(
                    path,
                    facts,
                    &rungs,
                    largest,
                    *start,
                    &group_settings,
                    deadline,
                );
                // Each pipeline's frames were freed in its threads' arenas, where glibc
                // keeps them: the process stayed at the probe's peak for good.
                lectern_seams::release_freed_memory();
                for (&i, t) in group.iter().zip(measured?) {
                    totals[i].bytes += t.bytes;
                    totals[i].frames += t.frames;
                    totals[i].ssim_sum += t.ssim_sum;
                }
            }
        }
        totals
            .iter()
            .zip(settings)
            .map(|(t, setting)| {
                if t.frames == 0 {
                    return Err("the samples decoded to no frames".to_string());
                }
                let secs = t.frames as f64 / fps;
                Ok(Trial {
                    mode: if *setting == Setting::Fixed {
                        "fixed".into()
                    } else {
                        "crf".into()
                    },
                    crf: match setting {
                        Setting::Crf(crf) => Some(*crf),
                        Setting::Fixed => None,
                    },
                    kbps: t.bytes as f64 * 8.0 / secs / 1000.0,
                    ssim: t.ssim_sum / t.frames as f64,
                })
            })
            .collect()
    };
    let fixed = run(&vec![Setting::Fixed; ladder.len()])?;
    let mid = run(&vec![Setting::Crf(MID_CRF); ladder.len()])?;
    let third: Vec<Setting> = fixed
        .iter()
        .zip(&mid)
        .map(|(f, m)| {
            if m.ssim < f.ssim - SSIM_MARGIN {
                Setting::Crf(LOW_CRF)
            } else {
                Setting::Crf(HIGH_CRF)
            }
        })
        .collect();
    let third = run(&third)?;
    Ok(fixed
        .into_iter()
        .zip(mid)
        .zip(third)
        .map(|((f, m), t)| vec![f, m, t])
        .collect())
}

/// Pixels a probe pipeline encodes at once, at most about: a 1080p picture's. One
/// pipeline with a whole 1080p ladder (its encoders, their decoders and the reference
/// frames waiting for them) peaked at 740-890 MB, the 1080p rung alone at 410.
const PIPELINE_PIXELS: u64 = 1920 * 1080;

/// The rungs measured together, as indices into the ladder: as few groups as keep each
/// near `PIPELINE_PIXELS`, balanced by pixels (each rung, largest first, joins the
/// group with the fewest). A 1080p ladder makes two, 1080p and 720p to 240p; smaller
/// ladders one. Each group decodes the windows again: 4 % more CPU at 1080p.
fn rung_groups(ladder: &[Rung]) -> Vec<Vec<usize>> {
    let pixels = |i: usize| ladder[i].width as u64 * ladder[i].height as u64;
    let total: u64 = (0..ladder.len()).map(pixels).sum();
    let count = total
        .div_ceil(PIPELINE_PIXELS)
        .clamp(1, ladder.len().max(1) as u64) as usize;
    let mut groups: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); count];
    let mut order: Vec<usize> = (0..ladder.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(pixels(i)));
    for i in order {
        let (used, members) = groups
            .iter_mut()
            .min_by_key(|(used, _)| *used)
            .expect("at least one group");
        *used += pixels(i);
        members.push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups
        .into_iter()
        .map(|(_, mut members)| {
            members.sort();
            members
        })
        .filter(|m| !m.is_empty())
        .collect();
    groups.sort();
    groups
}

#[derive(Debug, Clone, Default)]
struct TrialTotal {
    bytes: u64,
    frames: u64,
    ssim_sum: f64,
}

/// Reference frames of one rung (the scaled source, I420), by frame number, each
/// kept until the encoded frame is compared with it.
struct References {
    frames: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    arrived: Condvar,
}

/// The three planes of an I420 sample of even size, rows unpadded, one after another
/// (GStreamer's default I420 layout: rows padded to 4 bytes).
fn planes(sample: &gst::Sample, width: usize, height: usize) -> Option<Vec<u8>> {
    let buffer = sample.buffer()?;
    let map = buffer.map_readable().ok()?;
    let data = map.as_slice();
    let (y_stride, c_stride) = (width.div_ceil(4) * 4, (width / 2).div_ceil(4) * 4);
    let mut out = Vec::with_capacity(width * height * 3 / 2);
    for y in 0..height {
        out.extend_from_slice(data.get(y * y_stride..y * y_stride + width)?);
    }
    for plane in 0..2 {
        let offset = y_stride * height + plane * c_stride * (height / 2);
        for y in 0..height / 2 {
            let row = offset + y * c_stride;
            out.extend_from_slice(data.get(row..row + width / 2)?);
        }
    }
    Some(out)
}

/// SSIM of two I420 pictures as ffmpeg's `ssim` filter reports `All`: each plane's
/// mean SSIM weighted by its pixel count (luma 4/6, each chroma plane 1/6).
pub fn ssim_i420(a: &[u8], b: &[u8], width: usize, height: usize) -> f64 {
    let (luma, chroma) = (width * height, (width / 2) * (height / 2));
    let y = ssim_plane(&a[..luma], &b[..luma], width, height);
    let u = ssim_plane(
        &a[luma..luma + chroma],
        &b[luma..luma + chroma],
        width / 2,
        height / 2,
    );
    let v = ssim_plane(
        &a[luma + chroma..],
        &b[luma + chroma..],
        width / 2,
        height / 2,
    );
    (y * luma as f64 + (u + v) * chroma as f64) / (luma + 2 * chroma) as f64
}

/// Hands each picture an appsink gets once measuring began (I420 planes, tight rows)
/// to `on_frame` with its number, counted from the seek.
fn on_frames(
    sink: &gst_app::AppSink,
    width: u32,
    height: u32,
    measuring: Arc<AtomicBool>,
    on_frame: impl Fn(u64, Vec<u8>) -> Result<(), gst::FlowError> + Send + Sync + 'static,
) {
    let next = AtomicU64::new(0);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if !measuring.load(Ordering::SeqCst) {
                    return Ok(gst::FlowSuccess::Ok);
                }
                let picture = planes(&sample, width as usize, height as usize)
                    .ok_or(gst::FlowError::Error)?;
                on_frame(next.fetch_add(1, Ordering::SeqCst), picture)?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element {factory} is not installed"))
}

fn i420_sink(width: u32, height: u32) -> gst_app::AppSink {
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width as i32)
        .field("height", height as i32)
        .build();
    gst_app::AppSink::builder().caps(&caps).sync(false).build()
}

/// Encodes one window at every rung (rung `i` with `settings[i]`), comparing each
/// encoded frame with its scaled source frame. `largest` is the pixel count of the whole
/// ladder's top rung, which gets the threads the workers give it.
fn measure_window(
    path: &Path,
    facts: &SourceFacts,
    ladder: &[Rung],
    largest: u32,
    start: f64,
    settings: &[Setting],
    deadline: Instant,
) -> Result<Vec<TrialTotal>, String> {
    let pipeline = gst::Pipeline::new();
    let src = lectern_gate::decode::file_source(path).map_err(|e| e.to_string())?;
    let decode = lectern_gate::decode::decodebin().map_err(|e| e.to_string())?;
    let convert = make("videoconvert")?;
    let tee = make("tee")?;
    pipeline
        .add_many([&src, &decode, &convert, &tee])
        .map_err(|e| e.to_string())?;
    src.link(&decode).map_err(|e| e.to_string())?;
    convert.link(&tee).map_err(|e| e.to_string())?;
    // One libav decoding thread per four cores, as in the workers: each frame thread
    // holds pictures.
    let decoding_threads = (available_cores() / 4).max(1) as i32;
    if let Some(bin) = decode.downcast_ref::<gst::Bin>() {
        bin.connect_deep_element_added(move |_, _, element| {
            if element
                .factory()
                .is_some_and(|f| f.name().starts_with("avdec_"))
                && element.has_property("max-threads")
            {
                element.set_property("max-threads", decoding_threads);
            }
        });
    }
    {
        let convert = convert.downgrade();
        decode.connect_pad_added(move |_, pad| {
            let is_video = pad
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(false);
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
    for (rung, setting) in ladder.iter().zip(settings) {
        let (w, h) = (rung.width, rung.height);
        // Every queue is bounded: before the seek the pipeline prerolls from the start of
        // the file, and an unbounded queue would take in every frame decoded meanwhile.
        let q = queue(QUEUE)?;
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
        pipeline
            .add_many([&q, &scale, &size, &rung_tee])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([&tee, &q, &scale, &size, &rung_tee]).map_err(|e| e.to_string())?;

        let refs = Arc::new(References {
            frames: Mutex::new(HashMap::new()),
            arrived: Condvar::new(),
        });
        // The reference sink never blocks, so its queue always drains: a trial waiting
        // for its reference frame cannot hold the tee that feeds both.
        let ref_q = queue(REFERENCE_QUEUE)?;
        let ref_convert = make("videoconvert")?;
        let ref_sink = i420_sink(w, h);
        pipeline
            .add_many([&ref_q, &ref_convert, ref_sink.upcast_ref()])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([&rung_tee, &ref_q, &ref_convert, ref_sink.upcast_ref()])
            .map_err(|e| e.to_string())?;
        {
            let refs = refs.clone();
            on_frames(&ref_sink, w, h, measuring.clone(), move |n, picture| {
                refs.frames
                    .lock()
                    .expect("refs lock")
                    .insert(n, Arc::new(picture));
                refs.arrived.notify_all();
                Ok(())
            });
        }

        {
            let q = queue(QUEUE)?;
            let enc = make("x264enc")?;
            enc.set_property_from_str("speed-preset", X264_PRESET);
            enc.set_property("key-int-max", gop_frames as u32);
            enc.set_property("vbv-buf-capacity", X264_VBV_MS);
            // The largest rung bounds the wall time: two sliced threads, as the workers
            // give it; the others one each, side by side.
            let threads = if rung.width * rung.height == largest {
                available_cores().min(2)
            } else {
                1
            };
            enc.set_property("threads", threads);
            enc.set_property("sliced-threads", threads > 1);
            enc.set_property("option-string", X264_OPTIONS);
            match setting {
                Setting::Fixed => enc.set_property("bitrate", rung.video_kbps),
                Setting::Crf(crf) => {
                    enc.set_property_from_str("pass", "qual");
                    enc.set_property("quantizer", *crf);
                    // In constant quality `bitrate` is the ceiling: none here.
                    enc.set_property("bitrate", 2_048_000u32);
                }
            }
            let profile = capsfilter(
                gst::Caps::builder("video/x-h264")
                    .field("profile", "high")
                    .build(),
            )?;
            let dec = make("avdec_h264")?;
            // One decoding thread: frame threads each hold pictures, and the rungs
            // already run side by side.
            dec.set_property("max-threads", 1i32);
            let dec_convert = make("videoconvert")?;
            let sink = i420_sink(w, h);
            pipeline
                .add_many([&q, &enc, &profile, &dec, &dec_convert, sink.upcast_ref()])
                .map_err(|e| e.to_string())?;
            gst::Element::link_many([
                &rung_tee,
                &q,
                &enc,
                &profile,
                &dec,
                &dec_convert,
                sink.upcast_ref(),
            ])
            .map_err(|e| e.to_string())?;
            let bytes = Arc::new(AtomicU64::new(0));
            {
                let (bytes, measuring) = (bytes.clone(), measuring.clone());
                enc.static_pad("src").expect("x264enc src").add_probe(
                    gst::PadProbeType::BUFFER,
                    move |_, info| {
                        if measuring.load(Ordering::SeqCst)
                            && let Some(b) = info.buffer()
                        {
                            bytes.fetch_add(b.size() as u64, Ordering::SeqCst);
                        }
                        gst::PadProbeReturn::Ok
                    },
                );
            }
            let total = Arc::new(Mutex::new(TrialTotal::default()));
            {
                let (refs, total, failed) = (refs.clone(), total.clone(), failed.clone());
                on_frames(&sink, w, h, measuring.clone(), move |n, picture| {
                    let reference = {
                        let mut frames = refs.frames.lock().expect("refs lock");
                        let waited = Instant::now();
                        while !frames.contains_key(&n) {
                            let (f, timeout) = refs
                                .arrived
                                .wait_timeout(frames, Duration::from_secs(1))
                                .expect("refs lock");
                            frames = f;
                            if timeout.timed_out() && waited.elapsed() > Duration::from_secs(30) {
                                *failed.lock().expect("failed lock") =
                                    Some("an encoded frame has no source frame".into());
                                return Err(gst::FlowError::Error);
                            }
                        }
                        frames.remove(&n).expect("present")
                    };
                    let s = ssim_i420(&reference, &picture, w as usize, h as usize);
                    let mut t = total.lock().expect("total lock");
                    t.frames += 1;
                    t.ssim_sum += s;
                    Ok(())
                });
            }
            results.push((total, bytes));
        }
    }

    let run = (|| {
        let left = || {
            gst::ClockTime::from_nseconds(
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_nanos() as u64,
            )
        };
        pipeline
            .set_state(gst::State::Paused)
            .map_err(|_| "the file does not decode".to_string())?;
        let bus = pipeline.bus().expect("a pipeline has a bus");
        match bus.timed_pop_filtered(
            left(),
            &[gst::MessageType::AsyncDone, gst::MessageType::Error],
        ) {
            Some(m) if matches!(m.view(), gst::MessageView::AsyncDone(_)) => {}
            Some(m) => return Err(format!("the file does not decode: {m:?}")),
            None => return Err("the probe ran out of time".into()),
        }
        let start_time = gst::ClockTime::from_nseconds((start * 1e9) as u64);
        let stop_time = gst::ClockTime::from_nseconds(((start + WINDOW_SECS) * 1e9) as u64);
        pipeline
            .seek(
                1.0,
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::SeekType::Set,
                start_time,
                gst::SeekType::Set,
                stop_time,
            )
            .map_err(|_| "the file cannot seek".to_string())?;
        measuring.store(true, Ordering::SeqCst);
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| "the file does not play".to_string())?;
        match bus.timed_pop_filtered(left(), &[gst::MessageType::Eos, gst::MessageType::Error]) {
            Some(m) if matches!(m.view(), gst::MessageView::Eos(_)) => Ok(()),
            Some(m) => Err(failed
                .lock()
                .expect("failed lock")
                .clone()
                .unwrap_or_else(|| format!("decoding the samples failed: {m:?}"))),
            None => Err("the probe ran out of time".into()),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    run?;
    Ok(results
        .iter()
        .map(|(total, bytes)| TrialTotal {
            bytes: bytes.load(Ordering::SeqCst),
            ..total.lock().expect("total lock").clone()
        })
        .collect())
}

fn available_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

fn queue(max_buffers: u32) -> Result<gst::Element, String> {
    let q = make("queue")?;
    q.set_property("max-size-buffers", max_buffers);
    q.set_property("max-size-bytes", 0u32);
    q.set_property("max-size-time", 0u64);
    Ok(q)
}

fn capsfilter(caps: gst::Caps) -> Result<gst::Element, String> {
    gst::ElementFactory::make("capsfilter")
        .property("caps", caps)
        .build()
        .map_err(|e| e.to_string())
}

/// Mean SSIM of two planes (tight rows), over 8x8 windows every 4 pixels, with x264's
/// and ffmpeg's constants. Pictures smaller than a window are one window.
pub fn ssim_plane(a: &[u8], b: &[u8], width: usize, height: usize) -> f64 {
    assert_eq!(a.len(), width * height);
    assert_eq!(b.len(), width * height);
    let (bw, bh) = (width / 4, height / 4);
    if bw < 2 || bh < 2 {
        return window_ssim(
            a.iter().zip(b).map(|(x, y)| (*x as u64, *y as u64)),
            (width * height) as u64,
        );
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

/// The constant-quality trials of a rung as (CRF, SSIM, ln kbps), by rising CRF.
fn crf_points(trials: &[Trial]) -> Vec<(f64, f64, f64)> {
    let mut points: Vec<(f64, f64, f64)> = trials
        .iter()
        .filter_map(|t| t.crf.map(|c| (c as f64, t.ssim, t.kbps.max(1e-3).ln())))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// The CRF at which a rung reaches `target` SSIM, from its constant-quality trials
/// joined by straight lines. Above the best trial the line is extended at half its
/// slope, since SSIM flattens towards 1 as CRF falls; below the worst trial the worst
/// trial's CRF is kept (nothing is promised beyond what was measured).
fn crf_for_quality(trials: &[Trial], target: f64) -> Option<f64> {
    let points = crf_points(trials);
    let (best, worst) = (*points.first()?, *points.last()?);
    if points.len() < 2 {
        return None;
    }
    if target > best.1 {
        let slope = (best.1 - points[1].1) / (points[1].0 - best.0);
        return (slope > 0.0).then(|| best.0 - 2.0 * (target - best.1) / slope);
    }
    if target <= worst.1 {
        return Some(worst.0);
    }
    points
        .windows(2)
        .find(|w| w[0].1 >= target && target >= w[1].1)
        .map(|w| {
            let t = (w[0].1 - target) / (w[0].1 - w[1].1).max(1e-12);
            w[0].0 + t * (w[1].0 - w[0].0)
        })
}

/// A rung's bit rate at `crf`: the trials' rates joined by straight lines in log rate,
/// extended at the ends.
fn rate_at_crf(trials: &[Trial], crf: f64) -> Option<f64> {
    let points = crf_points(trials);
    let pair = points
        .windows(2)
        .find(|w| crf <= w[1].0)
        .or_else(|| points.windows(2).last())?;
    let (a, b) = (pair[0], pair[1]);
    let t = (crf - a.0) / (b.0 - a.0);
    Some((a.2 + t * (b.2 - a.2)).exp())
}

/// Picks each rung's encoding from its trials and drops the rungs that add nothing.
/// `trials[i]` are rung `i`'s, the fixed-rate trial first. A rung whose content
/// reaches the fixed rate's quality (less `SSIM_MARGIN`) with clearly fewer bits is
/// encoded at that constant quality (CRF, rounded down), capped at the fixed rate so it
/// never spends more; constant quality holds the quality over the parts of the lecture
/// the samples missed, where an average bit rate would not. Other rungs keep the fixed
/// rate.
pub fn choose(fixed: &[Rung], trials: &[Vec<Trial>]) -> (Vec<Rung>, Vec<RungChoice>) {
    let mut choices: Vec<(Rung, RungChoice)> = fixed
        .iter()
        .zip(trials)
        .map(|(rung, trials)| {
            let fixed_ssim = trials.iter().find(|t| t.mode == "fixed").map(|t| t.ssim).unwrap_or(1.0);
            let target = fixed_ssim - SSIM_MARGIN;
            let crf = crf_for_quality(trials, target).map(|c| (c + 1e-9).floor()).filter(|c| *c >= MIN_CRF as f64);
            let expected = crf.and_then(|c| rate_at_crf(trials, c).map(|kbps| (c as u32, kbps)));
            let (encoded, expected_kbps, note) = match expected {
                Some((crf, kbps)) if kbps < SAVING_RATIO * rung.video_kbps as f64 => (
                    Rung { crf: Some(crf), ..rung.clone() },
                    (kbps.round() as u32).max(1),
                    format!("CRF {crf} keeps SSIM {target:.4} at about {kbps:.0} kbps, capped at {} kbps", rung.video_kbps),
                ),
                _ => (rung.clone(), rung.video_kbps, "the content needs the fixed bit rate".to_string()),
            };
            let choice = RungChoice {
                name: rung.name.clone(),
                fixed_kbps: rung.video_kbps,
                fixed_ssim,
                crf: encoded.crf,
                expected_kbps,
                kept: true,
                note,
                trials: trials.clone(),
            };
            (encoded, choice)
        })
        .collect();
    let mut last_kept: Option<u32> = None;
    for (_, c) in choices.iter_mut() {
        if let Some(above) = last_kept
            && c.expected_kbps as f64 > KEEP_RATIO * above as f64
        {
            c.kept = false;
            c.note = format!(
                "dropped: about {} kbps is more than {:.0} % of the {above} kbps rung above",
                c.expected_kbps,
                KEEP_RATIO * 100.0
            );
            continue;
        }
        last_kept = Some(c.expected_kbps);
    }
    let ladder = choices
        .iter()
        .filter(|(_, c)| c.kept)
        .map(|(r, _)| r.clone())
        .collect();
    (ladder, choices.into_iter().map(|(_, c)| c).collect())
}

/// The ladder for this source: probed when `per_title`, else (or when the probe fails)
/// the fixed one, with the record of how it was chosen.
pub fn fit_ladder(
    path: &Path,
    facts: &SourceFacts,
    fixed: Vec<Rung>,
    per_title: bool,
    timeout: Duration,
) -> (Vec<Rung>, LadderReport) {
    if !per_title {
        return (
            fixed,
            LadderReport::fixed("per-title ladders are turned off (LECTERN_LADDER=fixed)"),
        );
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
            (
                fixed,
                LadderReport::fixed(format!("the complexity probe failed: {e}")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(name: &str, kbps: u32) -> Rung {
        Rung {
            name: name.into(),
            width: 2,
            height: 2,
            video_kbps: kbps,
            crf: None,
        }
    }

    fn fixed(kbps: f64, ssim: f64) -> Trial {
        Trial {
            mode: "fixed".into(),
            crf: None,
            kbps,
            ssim,
        }
    }

    fn crf(crf: u32, kbps: f64, ssim: f64) -> Trial {
        Trial {
            mode: "crf".into(),
            crf: Some(crf),
            kbps,
            ssim,
        }
    }

    #[test]
    fn ssim_is_one_for_equal_pictures_and_falls_with_noise() {
        let (w, h) = (64, 48);
        let a: Vec<u8> = (0..w * h).map(|i| ((i * 7) % 251) as u8).collect();
        assert!((ssim_plane(&a, &a, w, h) - 1.0).abs() < 1e-12);
        let slight: Vec<u8> = a
            .iter()
            .enumerate()
            .map(|(i, p)| p.saturating_add((i % 3) as u8))
            .collect();
        let heavy: Vec<u8> = a
            .iter()
            .enumerate()
            .map(|(i, p)| p.wrapping_add(((i * 37) % 61) as u8))
            .collect();
        let (s1, s2) = (ssim_plane(&a, &slight, w, h), ssim_plane(&a, &heavy, w, h));
        assert!(s1 < 1.0 && s1 > 0.9 && s2 < s1, "{s1} {s2}");
        // I420: chroma counts for a third, as in ffmpeg's `All`.
        let mut frame: Vec<u8> = a
            .iter()
            .copied()
            .chain(a[..w * h / 2].iter().copied())
            .collect();
        let copy = frame.clone();
        assert!((ssim_i420(&frame, &copy, w, h) - 1.0).abs() < 1e-12);
        frame[w * h..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = p.wrapping_add(((i * 37) % 61) as u8));
        let chroma_hit = ssim_i420(&frame, &copy, w, h);
        assert!(
            chroma_hit < 1.0 && chroma_hit > 1.0 - 1.0 / 3.0,
            "{chroma_hit}"
        );
        // Tiny pictures are one window.
        assert!((ssim_plane(&[10, 20, 30, 40], &[10, 20, 30, 40], 2, 2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn simple_content_gets_the_constant_quality_that_keeps_its_ssim() {
        // The fixed 2800 kbps reaches 0.995: 0.993 is a quarter of the way from CRF 17
        // to 23, so CRF 18.5, rounded down to 18; about 535 kbps at CRF 18.
        let trials = vec![
            fixed(2800.0, 0.995),
            crf(23, 300.0, 0.990),
            crf(17, 600.0, 0.994),
        ];
        let (ladder, choices) = choose(&[rung("v720", 2800)], &[trials]);
        assert_eq!(
            (ladder[0].crf, ladder[0].video_kbps),
            (Some(18), 2800),
            "{choices:?}"
        );
        assert_eq!(choices[0].expected_kbps, 535);
        // A target above the best trial: the line is extended at half its slope.
        let trials = vec![
            fixed(2800.0, 0.9995),
            crf(23, 150.0, 0.994),
            crf(17, 250.0, 0.997),
        ];
        let (ladder, choices) = choose(&[rung("v720", 2800)], &[trials]);
        assert_eq!(ladder[0].crf, Some(15), "{choices:?}");
        assert_eq!(choices[0].expected_kbps, 296);
    }

    #[test]
    fn complex_content_keeps_the_fixed_rate() {
        // CRF 19 would hold the quality, but at about 2836 kbps: no saving.
        let trials = vec![
            fixed(3216.0, 0.981),
            crf(23, 1500.0, 0.968),
            crf(17, 3900.0, 0.9865),
        ];
        let (ladder, choices) = choose(&[rung("v720", 2800)], &[trials]);
        assert_eq!(ladder, vec![rung("v720", 2800)], "{choices:?}");
        assert_eq!(choices[0].expected_kbps, 2800);
        // Content that needs 90 % of the fixed rate (CRF 21, about 2520 kbps) keeps
        // the fixed rate too: the cap would bind.
        let near = vec![
            fixed(2900.0, 0.985),
            crf(23, 2000.0, 0.980),
            crf(17, 4000.0, 0.99),
        ];
        assert_eq!(
            choose(&[rung("v720", 2800)], &[near]).0,
            vec![rung("v720", 2800)]
        );
        // A curve that would have to be extended too far keeps it too.
        let steep = vec![
            fixed(2800.0, 0.9999),
            crf(23, 100.0, 0.980),
            crf(17, 200.0, 0.990),
        ];
        assert_eq!(
            choose(&[rung("v720", 2800)], &[steep]).0,
            vec![rung("v720", 2800)]
        );
    }

    #[test]
    fn rungs_that_cost_nearly_as_much_as_the_one_above_are_dropped() {
        let fixed_ladder = [
            rung("v720", 2800),
            rung("v480", 1400),
            rung("v360", 800),
            rung("v240", 400),
        ];
        // The target, 0.997, lies at CRF 24.3 (CRF 24: 89 % of each CRF 23 rate).
        let at = |kbps: f64| {
            vec![
                fixed(3000.0, 0.999),
                crf(23, kbps, 0.999),
                crf(29, kbps / 2.0, 0.99),
            ]
        };
        let (ladder, choices) =
            choose(&fixed_ladder, &[at(300.0), at(240.0), at(150.0), at(120.0)]);
        let names: Vec<&str> = ladder.iter().map(|r| r.name.as_str()).collect();
        // 214 > 60 % of 267, dropped; 134 kept; 107 > 60 % of 134, dropped.
        assert_eq!(names, ["v720", "v360"], "{choices:?}");
        assert!(!choices[1].kept && choices[1].note.contains("dropped"));
        assert!(ladder.iter().all(|r| r.crf == Some(24)));
        assert_eq!(
            choices.iter().map(|c| c.expected_kbps).collect::<Vec<_>>(),
            [267, 214, 134, 107]
        );
    }

    /// A 10 s 640x360 source made by GStreamer from `pattern`.
    fn source_file(dir: &Path, pattern: &str) -> (std::path::PathBuf, SourceFacts) {
        sized_source(dir, pattern, 640, 360, 300)
    }

    fn sized_source(
        dir: &Path,
        pattern: &str,
        w: u32,
        h: u32,
        frames: u32,
    ) -> (std::path::PathBuf, SourceFacts) {
        let path = dir.join(format!("{pattern}_{h}.mp4"));
        let desc = format!(
            "videotestsrc pattern={pattern} num-buffers={frames} ! video/x-raw,width={w},height={h},framerate=30/1 ! x264enc speed-preset=ultrafast key-int-max=60 pass=quant quantizer=0 ! h264parse ! mp4mux ! filesink location={}",
            path.display()
        );
        let ok = std::process::Command::new("gst-launch-1.0")
            .arg("-q")
            .args(desc.split_whitespace())
            .status()
            .unwrap();
        assert!(ok.success());
        let facts = crate::probe::probe_file(&path, 10, &Default::default()).unwrap();
        (path, facts)
    }

    #[test]
    fn screen_like_content_gets_a_fraction_of_the_bits_and_noise_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(60);
        let (still, facts) = source_file(dir.path(), "ball");
        let fixed = crate::ladder::ladder_for(&facts);
        assert_eq!(
            fixed.iter().map(|r| r.video_kbps).collect::<Vec<_>>(),
            [800, 400]
        );
        let (ladder, report) = fit_ladder(&still, &facts, fixed.clone(), true, timeout);
        assert_eq!(report.method, "per-title", "{report:?}");
        // A ball moving over black: constant quality keeps it with a fraction of the
        // fixed rate's bits, which stays its ceiling.
        assert_eq!(ladder[0].name, "v360");
        assert!(
            ladder[0].crf.is_some() && ladder[0].video_kbps == 800,
            "{report:#?}"
        );
        assert!(report.rungs[0].expected_kbps <= 800 / 4, "{report:#?}");
        for r in &report.rungs {
            assert_eq!(r.trials.len(), 3);
            assert!(r.fixed_ssim > 0.95 && r.fixed_ssim <= 1.0, "{r:?}");
        }
        // Noise is as complex as pictures get: every rung keeps its fixed rate.
        let (snow, facts) = source_file(dir.path(), "snow");
        let (ladder, report) = fit_ladder(&snow, &facts, fixed.clone(), true, timeout);
        assert_eq!(ladder, fixed, "{report:#?}");
        // Turned off, or with nothing to probe, the fixed ladder is used.
        let (ladder, report) = fit_ladder(&snow, &facts, fixed.clone(), false, timeout);
        assert_eq!((ladder, report.method.as_str()), (fixed.clone(), "fixed"));
        // An audio-only lecture has no rungs: the record says so, not that it is off.
        let (ladder, report) = fit_ladder(&snow, &facts, Vec::new(), true, timeout);
        assert!(
            ladder.is_empty() && report.note.as_deref() == Some("no video"),
            "{report:?}"
        );
        let (ladder, report) = fit_ladder(
            &dir.path().join("missing.mp4"),
            &facts,
            fixed.clone(),
            true,
            timeout,
        );
        assert_eq!(ladder, fixed);
        assert!(report.note.unwrap().contains("probe failed"));
    }

    #[test]
    fn a_1080p_ladder_measured_in_two_pipelines_keeps_each_rung_its_own_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (path, facts) = sized_source(dir.path(), "ball", 1920, 1080, 75);
        let fixed = crate::ladder::ladder_for(&facts);
        assert_eq!(rung_groups(&fixed).len(), 2);
        let trials = measure(
            &path,
            &facts,
            &fixed,
            Instant::now() + Duration::from_secs(120),
        )
        .unwrap();
        assert_eq!(trials.len(), fixed.len());
        // The same picture at constant quality: fewer pixels, fewer bits, rung by rung.
        // Numbers filed under the wrong rung (the groups put back out of order) break it.
        let mid: Vec<f64> = trials.iter().map(|t| t[1].kbps).collect();
        assert!(
            mid.windows(2).all(|w| w[0] > w[1]),
            "CRF {MID_CRF} kbit/s by rung: {mid:?}"
        );
        assert!(
            trials
                .iter()
                .flatten()
                .all(|t| t.ssim > 0.9 && t.ssim <= 1.0),
            "{trials:?}"
        );
    }

    fn sized(w: u32, h: u32) -> Rung {
        Rung {
            name: format!("v{h}"),
            width: w,
            height: h,
            video_kbps: 1000,
            crf: None,
        }
    }

    #[test]
    fn the_probe_splits_only_ladders_larger_than_a_1080p_picture() {
        let hd = [
            sized(1920, 1080),
            sized(1280, 720),
            sized(854, 480),
            sized(640, 360),
            sized(426, 240),
        ];
        assert_eq!(rung_groups(&hd), vec![vec![0], vec![1, 2, 3, 4]]);
        // A 1024x768 screencast: 2.0 Mpx in all, one pipeline.
        let screen = [
            sized(1024, 768),
            sized(960, 720),
            sized(640, 480),
            sized(480, 360),
            sized(320, 240),
        ];
        assert_eq!(rung_groups(&screen), vec![vec![0, 1, 2, 3, 4]]);
        // Portrait 1080x1920 with its own top rung: the same as landscape.
        let tall = [
            sized(1080, 1920),
            sized(720, 1280),
            sized(480, 854),
            sized(360, 640),
            sized(240, 426),
        ];
        assert_eq!(rung_groups(&tall), vec![vec![0], vec![1, 2, 3, 4]]);
        assert_eq!(rung_groups(&hd[..1]), vec![vec![0]]);
        assert!(rung_groups(&[]).is_empty());
    }

    #[test]
    fn windows_spread_over_the_lecture_and_stay_inside_it() {
        assert_eq!(windows_for(1.0), vec![0.0]);
        assert_eq!(windows_for(10.0), vec![4.0]);
        assert_eq!(windows_for(40.0), vec![9.0, 29.0]);
        let long = windows_for(600.0);
        assert_eq!(long.len(), 2);
        assert!(long.iter().all(|s| *s >= 0.0 && s + WINDOW_SECS <= 600.0));
    }
}
