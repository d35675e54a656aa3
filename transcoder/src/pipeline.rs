//! One GStreamer pipeline per job: decode the source once, then tee raw video to every
//! H.264 rung and to the poster and storyboard grabbers, and raw audio to one AAC
//! encode. Each rendition is cut into MPEG-TS segments by splitmuxsink at keyframes
//! that x264 places on the same frame numbers in every rung.
//!
//! This module runs on a blocking thread; it reports progress through a callback and
//! returns what it wrote, measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use lectern_packager::SegmentFacts;
use lectern_seams::messages::{
    JobPart, Rung, TranscodeJob, X264_OPTIONS, X264_PRESET, X264_VBV_MS, grid_frames,
};

use crate::audio_pack::AdtsPacker;
use crate::scale::RungScaler;

/// Thumbnail width of the storyboard sprite.
pub const THUMB_WIDTH: u32 = 160;
/// Storyboards have at most this many thumbnails.
pub const MAX_THUMBS: u32 = 200;
/// The poster is at most this wide.
pub const POSTER_MAX_WIDTH: u32 = 1280;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source cannot be transcoded: a decoding or stream problem, in words for the
    /// lecture's owner.
    #[error("{0}")]
    Media(String),
    /// No progress for too long.
    #[error("the transcode made no progress for {0} s and was stopped")]
    Stalled(u64),
    /// Ran past its time budget (a source that decodes forever, or far too slowly).
    #[error("the transcode ran longer than its limit of {0} s and was stopped")]
    TooLong(u64),
    /// Stopped on request (the worker is shutting down).
    #[error("the transcode was stopped because the worker is shutting down")]
    Cancelled,
    /// The video's timeline has a stretch without pictures longer than this many
    /// seconds: filling it would encode an hour of copies of one frame.
    #[error("the video has a gap of over {0} s without pictures")]
    Gap(u64),
    #[error("building the pipeline: {0}")]
    Setup(String),
}

impl PipelineError {
    /// The reason people see; None when the failure is ours, not the file's. The
    /// detail (GStreamer's words) stays in the log.
    pub fn refusal(&self) -> Option<lectern_gate::Refusal> {
        use lectern_gate::Refusal;
        match self {
            PipelineError::Media(_) => Some(Refusal::Damaged),
            PipelineError::Stalled(_) | PipelineError::TooLong(_) => Some(Refusal::Timeout),
            PipelineError::Gap(secs) => Some(Refusal::GapTooLong(*secs as u32)),
            PipelineError::Cancelled | PipelineError::Setup(_) => None,
        }
    }
}

impl From<gst::glib::BoolError> for PipelineError {
    fn from(e: gst::glib::BoolError) -> Self {
        PipelineError::Setup(e.to_string())
    }
}

/// A raw RGB picture grabbed from the decoded video.
#[derive(Debug, Clone)]
pub struct Frame {
    pub pts_secs: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

#[derive(Debug)]
pub struct RenditionOutput {
    pub name: String,
    pub dir: PathBuf,
    pub segments: Vec<SegmentFacts>,
    /// RFC 6381 codec string read from the encoded stream.
    pub codec: Option<String>,
    pub rung: Option<Rung>,
}

#[derive(Debug)]
pub struct TranscodeOutput {
    pub video: Vec<RenditionOutput>,
    pub audio: Option<RenditionOutput>,
    pub poster: Option<Frame>,
    pub thumbnails: Vec<Frame>,
    pub thumb_interval_secs: f64,
    pub duration_secs: f64,
    /// The stills came from keyframes alone (a stills job whose source has keyframes
    /// at least every few thumbnails).
    pub stills_from_keyframes: bool,
}

/// What a rendition's segment sink reported: where each fragment opened (running
/// time, ns) and how far the stream ran.
#[derive(Default, Debug)]
struct SinkTally {
    opened: BTreeMap<String, u64>,
    /// Fragments splitmuxsink has finished writing, by location.
    closed: std::collections::BTreeSet<String>,
    /// Earliest buffer start and latest buffer end, as buffer timestamps: only their
    /// difference is used, since the encoder may offset every timestamp (x264enc adds
    /// 1000 hours to keep DTS positive) without the segment saying so.
    first_pts_ns: Option<u64>,
    end_pts_ns: u64,
    first_keyframe: Option<Vec<u8>>,
}

type Tallies = Arc<Mutex<BTreeMap<String, SinkTally>>>;

fn make(factory: &str) -> Result<gst::Element, PipelineError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| PipelineError::Setup(format!("GStreamer element {factory} is not installed")))
}

fn available_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// x264 threads per rung: the machine's cores shared by pixel count, at least one each,
/// and at least two for the largest rung so it does not bound the wall time. The
/// threads slice each frame (`sliced-threads`) instead of encoding frames in parallel:
/// x264's default (1.5 frame threads per core in every encoder) keeps a frame in flight
/// per thread, about 190 MB of a 1080p ladder's peak on 2 cores, for no speed once the
/// rungs already fill the cores.
fn encoder_threads(ladder: &[Rung], cores: u32) -> Vec<u32> {
    let pixels = |r: &Rung| r.width as u64 * r.height as u64;
    let total: u64 = ladder.iter().map(pixels).sum::<u64>().max(1);
    let largest = ladder.iter().map(pixels).max().unwrap_or(0);
    ladder
        .iter()
        .map(|r| {
            let share = ((cores as u64 * pixels(r) + total / 2) / total).clamp(1, 16) as u32;
            if pixels(r) == largest {
                share.max(cores.min(2))
            } else {
                share
            }
        })
        .collect()
}

/// AAC encoders start with 1024 samples of priming that avenc_aac does not take off the
/// timestamps, so decoded audio plays 1024/48000 s late. Video is delayed by as much
/// (every rung, every chunk, the same constant) to keep lips in sync.
const VIDEO_DELAY_NS: u64 = 1024 * 1_000_000_000 / 48_000;

/// How a rung is scaled from the decoded source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RungScale {
    /// GStreamer's 2-tap bilinear `videoscale`: exact enough up to 2x down, and the
    /// cheapest there (a third of Catmull-Rom's cost at 1080p to 720p, SSIM -0.0004).
    Bilinear,
    /// `scale::RungScaler` (Catmull-Rom, its kernel widened with the scale): beyond 2x
    /// down, where bilinear skips source pixels and aliases. It matches ffmpeg's bicubic
    /// (luma SSIM within 0.0002) at 40 % of the CPU of GStreamer's 4-tap, which cost
    /// 2.5x swscale.
    Bicubic,
}

/// The scaler for a downscale from `source` to `target` pixels (longest sides).
fn rung_scale(source: u32, target: u32) -> RungScale {
    if source as u64 > 2 * target as u64 {
        RungScale::Bicubic
    } else {
        RungScale::Bilinear
    }
}

/// libav decoder threads: one per four cores. Decoding is about a tenth of a ladder's
/// work, so one thread keeps well ahead of the encoders; each frame thread holds a
/// set of reference frames (20 MB more at 1080p for 2 threads, and 9 % more decoding
/// CPU, on 2 cores).
fn decoder_threads(cores: u32) -> u32 {
    (cores / 4).max(1)
}

fn queue(max_buffers: u32) -> Result<gst::Element, PipelineError> {
    let q = make("queue")?;
    q.set_property("max-size-buffers", max_buffers);
    q.set_property("max-size-bytes", 0u32);
    q.set_property("max-size-time", 0u64);
    Ok(q)
}

fn capsfilter(caps: gst::Caps) -> Result<gst::Element, PipelineError> {
    let f = make("capsfilter")?;
    f.set_property("caps", caps);
    Ok(f)
}

fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

/// A splitmuxsink writing `dir/seg_NNNNN.ts` MPEG-TS fragments from `start_index`.
fn segment_sink(
    dir: &Path,
    max_time: gst::ClockTime,
    start_index: u64,
) -> Result<gst::Element, PipelineError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| PipelineError::Setup(format!("creating {}: {e}", dir.display())))?;
    let sink = make("splitmuxsink")?;
    let mux = make("mpegtsmux")?;
    // PAT/PMT once per segment: splitmuxsink resets the muxer for every file, which
    // then opens with them. mpegtsmux's 0.1 s default spent 30 kbit/s on tables in
    // every rendition (a quarter of a 128k audio one); ffmpeg's HLS muxer also writes
    // them once per segment.
    mux.set_property("pat-interval", u32::MAX);
    mux.set_property("pmt-interval", u32::MAX);
    let file = make("filesink")?;
    file.set_property("sync", false);
    file.set_property("async", false);
    sink.set_property("muxer", &mux);
    sink.set_property("sink", &file);
    sink.set_property(
        "location",
        dir.join("seg_%05d.ts").to_string_lossy().to_string(),
    );
    sink.set_property("max-size-time", max_time.nseconds());
    sink.set_property("start-index", start_index as i32);
    sink.set_property("send-keyframe-requests", false);
    Ok(sink)
}

/// Records, on a pad, the end of the stream (running time) and the first keyframe.
fn tally_pad(pad: &gst::Pad, name: String, tallies: Tallies) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pts) = buffer.pts() else {
            return gst::PadProbeReturn::Ok;
        };
        let end = pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO);
        let mut t = tallies.lock().expect("tally lock");
        let tally = t.entry(name.clone()).or_default();
        tally.first_pts_ns = Some(
            tally
                .first_pts_ns
                .map_or(pts.nseconds(), |f| f.min(pts.nseconds())),
        );
        tally.end_pts_ns = tally.end_pts_ns.max(end.nseconds());
        if tally.first_keyframe.is_none()
            && !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
            && let Ok(map) = buffer.map_readable()
        {
            tally.first_keyframe = Some(map.as_slice().to_vec());
        }
        gst::PadProbeReturn::Ok
    });
}

/// Which grabbed frames a grabber keeps.
#[derive(Clone, Copy)]
enum Keep {
    All,
    /// Only the frame closest to this time (seconds).
    NearestTo(f64),
}

/// An appsink branch that takes `rate` frames a second (videorate drops the rest
/// before they are scaled) and hands each to `deliver` as `width`x`height` RGB.
fn frame_grabber(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    width: u32,
    height: u32,
    rate: gst::Fraction,
    mut deliver: impl FnMut(Frame) + Send + 'static,
) -> Result<(), PipelineError> {
    let videorate = make("videorate")?;
    videorate.set_property("drop-only", true);
    let slow = capsfilter(
        gst::Caps::builder("video/x-raw")
            .field("framerate", rate)
            .build(),
    )?;
    let scale = make("videoscale")?;
    let convert = make("videoconvert")?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let filter = capsfilter(caps.clone())?;
    // The queue sits after the rate limiter and the scaler, so it holds only small
    // wanted frames: a grabber that waits for preroll cannot starve the encoders
    // (x264 needs a GOP and its lookahead before splitmuxsink can preroll).
    let q = queue(MAX_THUMBS + 8)?;
    let sink = gst_app::AppSink::builder().caps(&caps).sync(false).build();
    sink.set_property("async", false);
    let sink_el: &gst::Element = sink.upcast_ref();
    pipeline.add_many([&videorate, &slow, &scale, &convert, &filter, &q, sink_el])?;
    gst::Element::link_many([
        tee, &videorate, &slow, &scale, &convert, &filter, &q, sink_el,
    ])?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                // RGB rows are padded to 4 bytes; keep the tight picture.
                let stride = ((width * 3).div_ceil(4) * 4) as usize;
                let row = (width * 3) as usize;
                let mut rgb = Vec::with_capacity(row * height as usize);
                for y in 0..height as usize {
                    let start = y * stride;
                    if let Some(line) = map.as_slice().get(start..start + row) {
                        rgb.extend_from_slice(line);
                    }
                }
                if rgb.len() == row * height as usize {
                    let pts_secs = buffer
                        .pts()
                        .map(|p| p.nseconds() as f64 / 1e9)
                        .unwrap_or(0.0);
                    deliver(Frame {
                        pts_secs,
                        width,
                        height,
                        rgb,
                    });
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// Keeps grabbed frames in `frames` as `keep` says.
fn keeper(keep: Keep, frames: Arc<Mutex<Vec<Frame>>>) -> impl FnMut(Frame) + Send + 'static {
    move |frame| {
        let mut frames = frames.lock().expect("frames lock");
        match keep {
            Keep::All => frames.push(frame),
            Keep::NearestTo(t) => {
                let closer = frames
                    .last()
                    .is_none_or(|f| (f.pts_secs - t).abs() > (frame.pts_secs - t).abs());
                if closer {
                    frames.clear();
                    frames.push(frame);
                }
            }
        }
    }
}

/// Decodes the source's video alone and hands `on_picture` `per_sec` pictures a second,
/// RGB at `width` px wide (square pixels, at most the source's width), timed from the
/// lecture's start: the slides job's input.
pub fn sample_pictures(
    source: &Path,
    facts: &lectern_seams::messages::SourceFacts,
    width: u32,
    per_sec: u32,
    watchdog: Watchdog,
    cancel: &std::sync::atomic::AtomicBool,
    mut on_picture: impl FnMut(Frame) + Send + 'static,
) -> Result<(), PipelineError> {
    gst::init().map_err(|e| PipelineError::Setup(e.to_string()))?;
    if !facts.has_video {
        return Err(PipelineError::Media("the lecture has no pictures".into()));
    }
    let pipeline = gst::Pipeline::new();
    pipeline.use_clock(None::<&gst::Clock>);
    let (src, decode) = decoding_front(&pipeline, source)?;
    let head = queue(3)?;
    let to_yuv = make("videoconvert")?;
    let flip = make("videoflip")?;
    flip.set_property_from_str("video-direction", "auto");
    let tee = make("tee")?;
    refuse_gaps(&head, watchdog.max_gap);
    pipeline.add_many([&head, &to_yuv, &flip, &tee])?;
    gst::Element::link_many([&head, &to_yuv, &flip, &tee])?;
    let w = even(width.min(facts.width.max(2)) as f64);
    let h = even(w as f64 * facts.height as f64 / facts.width.max(1) as f64).max(2);
    // Video pads are shifted by the audio priming delay (see `route_decoded_streams`).
    let delay = VIDEO_DELAY_NS as f64 / 1e9;
    frame_grabber(
        &pipeline,
        &tee,
        w,
        h,
        gst::Fraction::new(per_sec.max(1) as i32, 1),
        move |mut frame| {
            frame.pts_secs = (frame.pts_secs - delay).max(0.0);
            on_picture(frame)
        },
    )?;
    let video_head = Some(head);
    let origin: Origin = Default::default();
    let linked = route_decoded_streams(&pipeline, &decode, &video_head, &None, None, &origin);
    end_unfound_branches(&decode, &video_head, &None, linked);
    let tallies: Tallies = Default::default();
    let result = run_to_eos(
        &pipeline,
        &src,
        None,
        facts.duration_secs,
        watchdog,
        &tallies,
        None,
        cancel,
        &mut |_| {},
    );
    let _ = pipeline.set_state(gst::State::Null);
    result
}

pub struct Progress {
    pub fraction: f64,
    /// The audio segments written for good so far, from the first, when more were
    /// finished since the last call: an audio job's output, which is stored and
    /// reported as it grows.
    pub audio_finished: Option<Vec<SegmentFacts>>,
}

/// The watchdog's limits on one pipeline run.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    /// No progress (position or bytes read) for this long stops the run.
    pub stall: Duration,
    /// The whole run may take this long.
    pub total: Duration,
    /// A longer stretch of the video's timeline without a picture fails the run.
    pub max_gap: Duration,
}

/// Runs the whole ladder for a job over a local source file, writing renditions under
/// `out_dir`. `on_progress` is called about once a second.
pub fn transcode(
    job: &TranscodeJob,
    source: &Path,
    out_dir: &Path,
    watchdog: Watchdog,
    cancel: &std::sync::atomic::AtomicBool,
    mut on_progress: impl FnMut(Progress),
) -> Result<TranscodeOutput, PipelineError> {
    if job.part != JobPart::Stills {
        return transcode_with(
            job,
            source,
            out_dir,
            watchdog,
            cancel,
            &mut on_progress,
            false,
        );
    }
    // Stills from keyframes only. When they give too few thumbnails (keyframes further
    // apart than the thumbnails, or not marked at all), from every frame.
    match transcode_with(
        job,
        source,
        out_dir,
        watchdog,
        cancel,
        &mut on_progress,
        true,
    ) {
        Ok(out) if out.poster.is_some() && enough_thumbnails(&out) => Ok(out),
        first => {
            let found = first.as_ref().map(|o| o.thumbnails.len()).ok();
            tracing::info!(
                ?found,
                "too few stills from keyframes alone; decoding every frame"
            );
            transcode_with(
                job,
                source,
                out_dir,
                watchdog,
                cancel,
                &mut on_progress,
                false,
            )
        }
    }
}

/// At least 70 % of the thumbnails a storyboard of the lecture wants.
fn enough_thumbnails(out: &TranscodeOutput) -> bool {
    let wanted = (out.duration_secs / out.thumb_interval_secs.max(1.0)).floor() as usize;
    out.thumbnails.len() * 10 >= wanted * 7
}

#[allow(clippy::too_many_arguments)]
fn transcode_with(
    job: &TranscodeJob,
    source: &Path,
    out_dir: &Path,
    watchdog: Watchdog,
    cancel: &std::sync::atomic::AtomicBool,
    on_progress: &mut impl FnMut(Progress),
    keyframes_only: bool,
) -> Result<TranscodeOutput, PipelineError> {
    gst::init().map_err(|e| PipelineError::Setup(e.to_string()))?;
    let facts = &job.source;
    let pipeline = gst::Pipeline::new();
    // Files, not a live source: run as fast as the encoders go.
    pipeline.use_clock(None::<&gst::Clock>);
    let (src, decode) = decoding_front(&pipeline, source)?;
    let plan = Plan::of(job, out_dir, keyframes_only);
    let tallies: Tallies = Default::default();
    let stills = Stills::default();

    let video = if facts.has_video && (plan.make_rungs || plan.make_stills) {
        Some(video_branches(
            &pipeline, job, &plan, watchdog, &tallies, &stills,
        )?)
    } else {
        // Nothing takes decoded pictures: leave the video encoded (an audio job of a
        // long lecture would otherwise decode every frame only to drop it).
        keep_video_encoded(&decode);
        None
    };
    let video_head = video.as_ref().map(|(head, _)| head.clone());
    let audio_head = if plan.make_audio {
        Some(audio_branch(&pipeline, job, &plan, &tallies)?)
    } else {
        None
    };
    let origin: Origin = Default::default();
    let linked = route_decoded_streams(
        &pipeline,
        &decode,
        &video_head,
        &audio_head,
        plan.range,
        &origin,
    );
    let pads_ready = end_unfound_branches(&decode, &video_head, &audio_head, linked);

    let range = plan.range;
    let result = match (range, &video_head) {
        (Some(range), Some(head)) => range.seek(&pipeline, head, &pads_ready, &origin, watchdog),
        (Some(_), None) => Err(PipelineError::Media(
            "a chunk or stills job needs a video stream".into(),
        )),
        (None, _) => Ok(()),
    }
    .and_then(|()| {
        // An audio part's segments are handed over as they are finished.
        let growing =
            (job.part == JobPart::Audio && plan.make_audio).then_some(plan.audio_dir.as_path());
        run_to_eos(
            &pipeline,
            &src,
            range,
            facts.duration_secs,
            watchdog,
            &tallies,
            growing,
            cancel,
            on_progress,
        )
    });
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    let video_outputs = video.map(|(_, outputs)| outputs).unwrap_or_default();
    collect_outputs(job, &plan, video_outputs, &tallies, &stills)
}

/// What one job's pipeline makes, and where: decided from the job before anything is
/// built.
struct Plan {
    range: Option<Range>,
    /// A lecture split into parts gets its video rungs from chunk jobs, and its audio
    /// and its stills from whole-length jobs of their own.
    make_rungs: bool,
    make_stills: bool,
    make_audio: bool,
    out_dir: std::path::PathBuf,
    audio_dir: std::path::PathBuf,
    start_index: u64,
    thumb_interval: u32,
}

impl Plan {
    fn of(job: &TranscodeJob, out_dir: &Path, keyframes_only: bool) -> Self {
        let duration = job.source.duration_secs;
        Plan {
            range: Range::of(job, keyframes_only),
            make_rungs: job.part.makes_video() && !job.ladder.is_empty(),
            make_stills: job.part.makes_stills(),
            make_audio: job.part.makes_audio() && job.source.has_audio,
            out_dir: out_dir.to_path_buf(),
            audio_dir: out_dir.join("audio"),
            start_index: job.range.first_segment,
            thumb_interval: if duration > 0.0 {
                (duration / MAX_THUMBS as f64).ceil().max(1.0) as u32
            } else {
                5
            },
        }
    }
}

/// The frames the stills branches keep: the poster's candidates and the storyboard's.
#[derive(Default)]
struct Stills {
    poster: Arc<Mutex<Vec<Frame>>>,
    thumbs: Arc<Mutex<Vec<Frame>>>,
}

/// The file, read through the gate's source, into its restricted decodebin.
fn decoding_front(
    pipeline: &gst::Pipeline,
    source: &Path,
) -> Result<(gst::Element, gst::Element), PipelineError> {
    let src = lectern_gate::decode::file_source(source)?;
    let decode = lectern_gate::decode::decodebin()?;
    pipeline.add_many([&src, &decode])?;
    src.link(&decode)?;
    // libav's decoders take every core by default; see `decoder_threads`.
    let decoding_threads = decoder_threads(available_cores());
    if let Some(bin) = decode.downcast_ref::<gst::Bin>() {
        bin.connect_deep_element_added(move |_, _, element| {
            let libav = element
                .factory()
                .is_some_and(|f| f.name().starts_with("avdec_"));
            if libav && element.has_property("max-threads") {
                element.set_property("max-threads", decoding_threads as i32);
            }
        });
    }
    Ok((src, decode))
}

/// The decoded pictures' branches: one chain to a tee, then a rung per encoder and the
/// stills grabbers. The chain's head, and each rung with its folder.
fn video_branches(
    pipeline: &gst::Pipeline,
    job: &TranscodeJob,
    plan: &Plan,
    watchdog: Watchdog,
    tallies: &Tallies,
    stills: &Stills,
) -> Result<(gst::Element, Vec<(Rung, std::path::PathBuf)>), PipelineError> {
    let facts = &job.source;
    let (fps_num, fps_den) = (facts.fps_num.max(1) as i32, facts.fps_den.max(1) as i32);
    let (head, tee) = picture_chain(pipeline, plan, watchdog, fps_num, fps_den)?;
    let (gop_frames, segment_frames) = grid_frames(
        facts.fps_num,
        facts.fps_den,
        job.segment_secs,
        job.keyframe_secs,
    );
    let gop_frames = gop_frames as u32;
    let fps = fps_num as f64 / fps_den as f64;
    let gop = gst::ClockTime::from_nseconds((gop_frames as f64 / fps * 1e9) as u64);
    // Split once a fragment would pass its GOP count; half a GOP of slack absorbs
    // rounding in frame timestamps so no segment is cut one GOP early.
    let video_max = gop * (segment_frames / gop_frames as u64) + gop / 2;
    let ladder: &[Rung] = if plan.make_rungs { &job.ladder } else { &[] };
    let threads = encoder_threads(ladder, available_cores());
    let mut outputs = Vec::new();
    for (rung, threads) in ladder.iter().zip(threads) {
        let encoding = RungEncoding {
            threads,
            gop_frames,
            video_max,
        };
        let dir = rung_branch(pipeline, &tee, rung, encoding, facts, plan, tallies)?;
        outputs.push((rung.clone(), dir));
    }
    if plan.make_stills {
        stills_branches(pipeline, &tee, facts, plan, stills)?;
    }
    Ok((head, outputs))
}

/// Decoded pictures made plain: I420 at the source's frame rate, upright and
/// deinterlaced, into a tee. Its head and the tee.
fn picture_chain(
    pipeline: &gst::Pipeline,
    plan: &Plan,
    watchdog: Watchdog,
    fps_num: i32,
    fps_den: i32,
) -> Result<(gst::Element, gst::Element), PipelineError> {
    let range = plan.range;
    // Raw source frames (3 MB each at 1080p): the rung queues behind the tee already
    // decouple the encoders, so a short queue here is enough.
    let head = queue(3)?;
    // deinterlace takes common YUV only: palettes (RLE), YUV9 (Indeo), RGB15 and
    // the like are converted first (a passthrough for everything else).
    let to_yuv = make("videoconvert")?;
    let deinterlace = make("deinterlace")?;
    let flip = make("videoflip")?;
    flip.set_property_from_str("video-direction", "auto");
    let convert = make("videoconvert")?;
    let rate = make("videorate")?;
    if range.is_some_and(|r| r.keyframes_only) {
        // Only keyframes come: filling the frame rate between them would convert
        // thirty copies a second for the grabbers to drop.
        rate.set_property("drop-only", true);
    }
    let caps = capsfilter(
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("framerate", gst::Fraction::new(fps_num, fps_den))
            .build(),
    )?;
    let tee = make("tee")?;
    refuse_gaps(&head, watchdog.max_gap);
    pipeline.add_many([
        &head,
        &to_yuv,
        &deinterlace,
        &flip,
        &convert,
        &rate,
        &caps,
        &tee,
    ])?;
    gst::Element::link_many([
        &head,
        &to_yuv,
        &deinterlace,
        &flip,
        &convert,
        &rate,
        &caps,
        &tee,
    ])?;
    Ok((head, tee))
}

/// How one rung is encoded.
struct RungEncoding {
    threads: u32,
    gop_frames: u32,
    /// The longest fragment before a split.
    video_max: gst::ClockTime,
}

/// One rung: scaled, encoded and cut into segments in its own folder, which it returns.
fn rung_branch(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    rung: &Rung,
    encoding: RungEncoding,
    facts: &lectern_seams::messages::SourceFacts,
    plan: &Plan,
    tallies: &Tallies,
) -> Result<std::path::PathBuf, PipelineError> {
    let RungEncoding {
        threads,
        gop_frames,
        video_max,
    } = encoding;
    let (out_dir, range, start_index) = (&plan.out_dir, plan.range, plan.start_index);
    let dir = out_dir.join(&rung.name);
    let q = queue(4)?;
    let scale = rung_scaler(facts, rung)?;
    let size = capsfilter(
        gst::Caps::builder("video/x-raw")
            .field("width", rung.width as i32)
            .field("height", rung.height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    )?;
    let enc = rung_encoder(rung, threads, gop_frames)?;
    let profile = capsfilter(
        gst::Caps::builder("video/x-h264")
            .field("profile", "high")
            .build(),
    )?;
    let parse = make("h264parse")?;
    parse.set_property("config-interval", -1i32);
    let sink = segment_sink(&dir, video_max, start_index)?;
    pipeline.add_many([&q, &scale, &size, &enc, &profile, &parse, &sink])?;
    gst::Element::link_many([&q, &scale, &size, &enc, &profile, &parse])?;
    tee.link(&q)?;
    let video_pad = sink
        .request_pad_simple("video")
        .ok_or_else(|| PipelineError::Setup("splitmuxsink video pad".into()))?;
    parse
        .static_pad("src")
        .expect("parse src")
        .link(&video_pad)
        .map_err(|e| PipelineError::Setup(format!("{e:?}")))?;
    if range.is_some_and(|r| r.preroll_ns > 0) {
        drop_preroll(&parse.static_pad("src").expect("parse src"));
    }
    tally_pad(
        &parse.static_pad("src").expect("parse src"),
        rung.name.clone(),
        tallies.clone(),
    );
    Ok(dir)
}

/// The rung's scaler, as `rung_scale` chooses it for this downscale.
fn rung_scaler(
    facts: &lectern_seams::messages::SourceFacts,
    rung: &Rung,
) -> Result<gst::Element, PipelineError> {
    let longest = (facts.width.max(facts.height), rung.width.max(rung.height));
    if rung_scale(longest.0, longest.1) == RungScale::Bicubic {
        // It always fills the rung: no borders.
        return Ok(RungScaler::new().upcast());
    }
    let scale = make("videoscale")?;
    scale.set_property_from_str("method", "bilinear");
    // Fill the rung exactly: a 16:9 source in 426x240 is 0.2 % off, which borders
    // would pay for with a shifted picture (PSNR 27 dB, not 60).
    scale.set_property("add-borders", false);
    Ok(scale)
}

/// x264 as every rung uses it, at the rung's rate.
fn rung_encoder(rung: &Rung, threads: u32, gop_frames: u32) -> Result<gst::Element, PipelineError> {
    // Keyframes only on the grid, closed GOPs: every segment starts clean.
    // rc-lookahead 5 (veryfast's is 10): x264 holds every frame of the window,
    // about 100 MB of a 1080p ladder's peak; SSIM -0.0002 at 1080p, -0.0009 at
    // 240p on the bench source.
    let enc = make("x264enc")?;
    enc.set_property("bitrate", rung.video_kbps);
    if let Some(crf) = rung.crf {
        // Constant quality, with `bitrate` as the rate control's ceiling.
        enc.set_property_from_str("pass", "qual");
        enc.set_property("quantizer", crf);
    }
    enc.set_property("key-int-max", gop_frames);
    enc.set_property_from_str("speed-preset", X264_PRESET);
    enc.set_property("vbv-buf-capacity", X264_VBV_MS);
    enc.set_property("threads", threads);
    enc.set_property("sliced-threads", threads > 1);
    enc.set_property("option-string", X264_OPTIONS);
    Ok(enc)
}

/// The poster (the frame nearest a tenth of the lecture, at most 10 s in) and the
/// storyboard's thumbnails.
fn stills_branches(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    facts: &lectern_seams::messages::SourceFacts,
    plan: &Plan,
    stills: &Stills,
) -> Result<(), PipelineError> {
    let (duration, thumb_interval) = (facts.duration_secs, plan.thumb_interval);
    // Poster: the frame nearest a tenth of the lecture (at most 10 s in).
    let (pw, ph) = {
        let w = facts.width.min(POSTER_MAX_WIDTH);
        (
            even(w as f64),
            even(w as f64 * facts.height as f64 / facts.width.max(1) as f64),
        )
    };
    let poster_at = (duration * 0.1).min(10.0);
    let every = gst::Fraction::new(1, thumb_interval.max(1) as i32);
    frame_grabber(
        pipeline,
        tee,
        pw,
        ph,
        every,
        keeper(Keep::NearestTo(poster_at), stills.poster.clone()),
    )?;
    let th = even(THUMB_WIDTH as f64 * facts.height as f64 / facts.width.max(1) as f64);
    frame_grabber(
        pipeline,
        tee,
        THUMB_WIDTH,
        th,
        every,
        keeper(Keep::All, stills.thumbs.clone()),
    )?;
    Ok(())
}

/// No decoder for video is plugged: decodebin exposes the encoded stream as it is.
fn keep_video_encoded(decode: &gst::Element) {
    // decodebin's answer: 0 plugs the element, 1 exposes the stream as it is.
    let select = gst::glib::Type::from_name("GstAutoplugSelectResult")
        .and_then(gst::glib::EnumClass::with_type);
    if let Some(select) = select {
        decode.connect("autoplug-select", false, move |args| {
            let factory = args
                .get(3)
                .and_then(|v| v.get::<gst::ElementFactory>().ok());
            let klass = factory
                .as_ref()
                .and_then(|f| f.metadata(gst::ELEMENT_METADATA_KLASS))
                .unwrap_or_default();
            let video_decoder = klass.contains("Decoder") && klass.contains("Video");
            select.to_value(if video_decoder { 1 } else { 0 })
        });
    }
}

/// Audio: resampled to 48 kHz stereo, AAC, packed and cut into segments. Its head.
fn audio_branch(
    pipeline: &gst::Pipeline,
    job: &TranscodeJob,
    plan: &Plan,
    tallies: &Tallies,
) -> Result<gst::Element, PipelineError> {
    let (audio_dir, start_index) = (&plan.audio_dir, plan.start_index);
    let head = queue(64)?;
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let caps = capsfilter(
        gst::Caps::builder("audio/x-raw")
            .field("rate", 48000i32)
            .field("channels", 2i32)
            .build(),
    )?;
    let rate = make("audiorate")?;
    let enc = make("avenc_aac")?;
    enc.set_property_from_str("bitrate", &(job.audio_kbps * 1000).to_string());
    // aacparse frames the encoder's output as ADTS (the packer's only caps), which
    // the muxer then takes as it is.
    let parse = make("aacparse")?;
    let pack = AdtsPacker::new().upcast::<gst::Element>();
    let sink = segment_sink(
        audio_dir,
        gst::ClockTime::from_seconds(job.segment_secs as u64),
        start_index,
    )?;
    pipeline.add_many([
        &head, &convert, &resample, &caps, &rate, &enc, &parse, &pack, &sink,
    ])?;
    gst::Element::link_many([
        &head, &convert, &resample, &caps, &rate, &enc, &parse, &pack,
    ])?;
    let pad = sink
        .request_pad_simple("audio_%u")
        .ok_or_else(|| PipelineError::Setup("splitmuxsink audio pad".into()))?;
    pack.static_pad("src")
        .expect("packer src")
        .link(&pad)
        .map_err(|e| PipelineError::Setup(format!("{e:?}")))?;
    tally_pad(
        &pack.static_pad("src").expect("packer src"),
        "audio".into(),
        tallies.clone(),
    );
    Ok(head)
}

/// Which decoded streams were linked to a branch: (video, audio).
type Linked = Arc<Mutex<(bool, bool)>>;

fn route_decoded_streams(
    pipeline: &gst::Pipeline,
    decode: &gst::Element,
    video_head: &Option<gst::Element>,
    audio_head: &Option<gst::Element>,
    range: Option<Range>,
    origin: &Origin,
) -> Linked {
    // decodebin exposes one pad per decoded stream: the first video and the first
    // audio go to their branches, anything else (a second audio track, subtitles)
    // to a fakesink so it cannot block the pipeline.
    let linked: Linked = Default::default();
    {
        let video_head = video_head.clone();
        let audio_head = audio_head.clone();
        let linked = linked.clone();
        let pipeline_weak = pipeline.downgrade();
        let origin = origin.clone();
        decode.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else {
                return;
            };
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let kind = caps
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            let is_video = kind.starts_with("video/");
            if let Some(range) = range {
                range.hold_until_seek(pad, is_video.then(|| origin.clone()));
            } else if is_video {
                pad.set_offset(VIDEO_DELAY_NS as i64);
            }
            let mut l = linked.lock().expect("linked lock");
            let target = if kind.starts_with("video/") && !l.0 {
                l.0 = true;
                video_head.clone()
            } else if kind.starts_with("audio/") && !l.1 {
                l.1 = true;
                audio_head.clone()
            } else {
                None
            };
            let target = match target {
                Some(t) => t,
                None => {
                    let Ok(fake) = gst::ElementFactory::make("fakesink")
                        .property("sync", false)
                        .property("async", false)
                        .build()
                    else {
                        return;
                    };
                    if pipeline.add(&fake).is_err() {
                        return;
                    }
                    let _ = fake.sync_state_with_parent();
                    fake
                }
            };
            if let Some(sinkpad) = target.static_pad("sink")
                && let Err(e) = pad.link(&sinkpad)
            {
                tracing::warn!(?e, kind, "could not link a decoded stream");
            }
        });
    }
    linked
}

/// A branch whose stream never appears gets EOS, or the pipeline would wait for it
/// forever. The flag turns true once decodebin has exposed every stream.
fn end_unfound_branches(
    decode: &gst::Element,
    video_head: &Option<gst::Element>,
    audio_head: &Option<gst::Element>,
    linked: Linked,
) -> Arc<std::sync::atomic::AtomicBool> {
    let pads_ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        // A branch whose stream never appears gets EOS, or the pipeline would wait
        // for it forever.
        let video_head = video_head.clone();
        let audio_head = audio_head.clone();
        let linked = linked.clone();
        let pads_ready = pads_ready.clone();
        decode.connect_no_more_pads(move |_| {
            pads_ready.store(true, std::sync::atomic::Ordering::SeqCst);
            let l = linked.lock().expect("linked lock");
            for (head, was_linked) in [(&video_head, l.0), (&audio_head, l.1)] {
                if let (Some(h), false) = (head, was_linked)
                    && let Some(pad) = h.static_pad("sink")
                {
                    pad.send_event(gst::event::Eos::new());
                }
            }
        });
    }

    pads_ready
}

/// The measured renditions and the kept stills, once the pipeline has run.
fn collect_outputs(
    job: &TranscodeJob,
    plan: &Plan,
    video_outputs: Vec<(Rung, std::path::PathBuf)>,
    tallies: &Tallies,
    stills: &Stills,
) -> Result<TranscodeOutput, PipelineError> {
    let (facts, start_index, range) = (&job.source, plan.start_index, plan.range);
    let (audio_dir, make_audio, make_stills) = (&plan.audio_dir, plan.make_audio, plan.make_stills);
    let thumb_interval = plan.thumb_interval;
    let tallies = std::mem::take(&mut *tallies.lock().expect("tally lock"));
    let mut video = Vec::new();
    for (rung, dir) in video_outputs {
        let tally = tallies.get(&rung.name);
        let segments = measure_segments(&dir, tally, start_index)?;
        if segments.is_empty() {
            return Err(PipelineError::Media(
                "no video frames could be decoded from the file".into(),
            ));
        }
        let codec = tally
            .and_then(|t| t.first_keyframe.as_deref())
            .and_then(lectern_packager::avc1_codec_string);
        video.push(RenditionOutput {
            name: rung.name.clone(),
            dir,
            segments,
            codec,
            rung: Some(rung),
        });
    }
    let audio = if make_audio {
        let segments = measure_segments(audio_dir, tallies.get("audio"), start_index)?;
        (!segments.is_empty()).then(|| RenditionOutput {
            name: "audio".into(),
            dir: audio_dir.clone(),
            segments,
            codec: Some(lectern_packager::AAC_LC.into()),
            rung: None,
        })
    } else {
        None
    };
    let poster = stills.poster.lock().expect("poster lock").pop();
    let thumbnails = std::mem::take(&mut *stills.thumbs.lock().expect("thumbs lock"));
    let stills_made = poster.is_some() || !thumbnails.is_empty();
    if video.is_empty() && audio.is_none() && !(make_stills && stills_made) {
        return Err(PipelineError::Media(
            "nothing could be decoded from the file".into(),
        ));
    }
    let measured = video
        .first()
        .or(audio.as_ref())
        .map(|r| r.segments.iter().map(|s| s.duration).sum::<f64>())
        .unwrap_or(facts.duration_secs);
    Ok(TranscodeOutput {
        video,
        audio,
        poster,
        thumbnails,
        thumb_interval_secs: thumb_interval as f64,
        duration_secs: measured,
        stills_from_keyframes: range.is_some_and(|r| r.keyframes_only),
    })
}

const GAP_MESSAGE: &str = "lectern-timeline-gap";

/// Watches decoded pictures before the frame rate is filled in: a jump in time longer
/// than `max_gap` drops the rest and tells the bus, instead of letting videorate copy
/// one frame for hours.
fn refuse_gaps(head: &gst::Element, max_gap: Duration) {
    let max_gap = gst::ClockTime::from_nseconds(max_gap.as_nanos() as u64);
    // The latest picture time seen, and whether the gap was told already.
    let state: Mutex<(Option<gst::ClockTime>, bool)> = Mutex::new((None, false));
    let pad = head.static_pad("sink").expect("queue has a sink pad");
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |pad, info| {
            let mut state = state.lock().expect("gap lock");
            let (latest, told) = &mut *state;
            if let Some(gst::PadProbeData::Event(e)) = &info.data {
                // A seek (chunks, stills) starts a new stretch of timeline.
                if matches!(
                    e.type_(),
                    gst::EventType::FlushStop | gst::EventType::Segment
                ) {
                    *latest = None;
                }
                return gst::PadProbeReturn::Ok;
            }
            if *told {
                return gst::PadProbeReturn::Drop;
            }
            let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
                return gst::PadProbeReturn::Ok;
            };
            if latest.is_some_and(|l| pts > l && pts - l > max_gap) {
                *told = true;
                if let Some(element) = pad.parent_element() {
                    let _ = element.post_message(gst::message::Application::new(
                        gst::Structure::new_empty(GAP_MESSAGE),
                    ));
                }
                return gst::PadProbeReturn::Drop;
            }
            *latest = Some(latest.map_or(pts, |l| l.max(pts)));
            gst::PadProbeReturn::Ok
        },
    );
}

/// Segment facts for the files in `dir`: durations from where splitmuxsink opened each
/// fragment (keyframe running times) and where the stream ended.
fn measure_segments(
    dir: &Path,
    tally: Option<&SinkTally>,
    start_index: u64,
) -> Result<Vec<SegmentFacts>, PipelineError> {
    let Some(tally) = tally else {
        return Ok(Vec::new());
    };
    let opened: Vec<(u64, u64)> = opened_fragments(tally)
        .into_iter()
        .map(|(index, start, _)| (index, start))
        .collect();
    // The stream ends its length after the first fragment opened.
    let length = tally
        .end_pts_ns
        .saturating_sub(tally.first_pts_ns.unwrap_or(0));
    let stream_end = opened.first().map_or(0, |(_, start)| *start) + length;
    tracing::debug!(dir = %dir.display(), ?opened, length, "segment cuts");
    let mut segments = Vec::new();
    for (i, (index, start)) in opened.iter().enumerate() {
        let end = opened.get(i + 1).map(|(_, s)| *s).unwrap_or(stream_end);
        let path = dir.join(lectern_packager::segment_name(*index));
        let bytes = pad_short_segment(&path)
            .map_err(|e| PipelineError::Setup(format!("segment {}: {e}", path.display())))?;
        if end <= *start {
            // An empty trailing fragment (a stream that ended at a cut) carries nothing.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        segments.push(SegmentFacts {
            index: *index,
            duration: (end - start) as f64 / 1e9,
            bytes,
        });
    }
    if segments.first().is_some_and(|s| s.index != start_index) {
        return Err(PipelineError::Setup(
            "segment numbering does not start at the job's first segment".into(),
        ));
    }
    Ok(segments)
}

const TS_PACKET: u64 = 188;
/// ffmpeg's format probe takes a file of fewer than eleven 204-byte blocks for MPEG-PS
/// rather than MPEG-TS, and its HLS reader then refuses the rendition. A lecture a
/// fraction of a second long has an audio segment that small (0.17 s of AAC: ten
/// packets, tables included).
const MIN_SEGMENT_PACKETS: u64 = 12;

/// Pads a segment shorter than `MIN_SEGMENT_PACKETS` with null packets (PID 0x1FFF,
/// which demuxers skip) and returns its size.
fn pad_short_segment(path: &Path) -> std::io::Result<u64> {
    use std::io::Write;
    let len = std::fs::metadata(path)?.len();
    let min = MIN_SEGMENT_PACKETS * TS_PACKET;
    if len >= min || len % TS_PACKET != 0 {
        return Ok(len);
    }
    let mut null = [0xffu8; TS_PACKET as usize];
    null[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    for _ in 0..(min - len) / TS_PACKET {
        file.write_all(&null)?;
    }
    Ok(min)
}

/// Drops a rung's encoded pre-roll: everything before its second keyframe. Keyframes
/// fall every GOP from the first frame and GOPs are closed, so the second one is the
/// chunk's first frame and nothing after it refers back. Added before the tally, whose
/// probe then never sees the dropped buffers.
fn drop_preroll(pad: &gst::Pad) {
    let keyframes = std::sync::atomic::AtomicU32::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        use std::sync::atomic::Ordering;
        if keyframes.load(Ordering::SeqCst) >= 2 {
            return gst::PadProbeReturn::Ok;
        }
        let key = info
            .buffer()
            .is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
        if key && keyframes.fetch_add(1, Ordering::SeqCst) + 1 >= 2 {
            return gst::PadProbeReturn::Ok;
        }
        gst::PadProbeReturn::Drop
    });
}

/// The part of the source a chunk job encodes, in nanoseconds from the start of the
/// source's timeline (its demuxer's first segment).
///
/// The pipeline pauses until decodebin has exposed its streams and the first segment
/// event has shown where the timeline starts, dropping every buffer until an accurate
/// flushing seek has flushed. Running time is offset by `start`, so the outputs carry
/// the source's timeline: a chunk's segments are the ones a single pass cuts.
#[derive(Debug, Clone, Copy)]
struct Range {
    start_ns: u64,
    end_ns: Option<u64>,
    frame_ns: u64,
    /// One GOP before `start` that is decoded and encoded but not kept: x264's rate
    /// control then starts the chunk warm, as a single pass would, instead of guessing
    /// its first GOP's quantisers (SSIM -0.004 over the frames at chunk edges without).
    preroll_ns: u64,
    /// The whole source, keyframes only (a trick-mode seek): the stills of a lecture
    /// split into parts need a frame every few seconds, not every frame decoded.
    keyframes_only: bool,
}

/// Where the source's timeline starts (the stream time of the first segment's start),
/// learnt from the decoded video pad before the seek.
type Origin = Arc<Mutex<Option<u64>>>;

impl Range {
    fn of(job: &TranscodeJob, keyframes_only: bool) -> Option<Range> {
        let r = &job.range;
        let ranged = r.start_secs > 0.0 || r.end_secs.is_some();
        let keyframes_only = keyframes_only && job.part == JobPart::Stills && !ranged;
        let fps = job.source.fps_num.max(1) as f64 / job.source.fps_den.max(1) as f64;
        let start_ns = (r.start_secs.max(0.0) * 1e9).round() as u64;
        let (gop_frames, _) = grid_frames(
            job.source.fps_num,
            job.source.fps_den,
            job.segment_secs,
            job.keyframe_secs,
        );
        // Exactly as videorate times its frame slots, so the chunk's first frame keeps
        // its place on the grid.
        let gop_ns = (gop_frames as u128 * 1_000_000_000 * job.source.fps_den.max(1) as u128
            / job.source.fps_num.max(1) as u128) as u64;
        (ranged || keyframes_only).then(|| Range {
            start_ns,
            end_ns: r.end_secs.map(|e| (e.max(0.0) * 1e9).round() as u64),
            frame_ns: (1e9 / fps) as u64,
            preroll_ns: if start_ns >= gop_ns { gop_ns } else { 0 },
            keyframes_only,
        })
    }

    /// Where decoding starts: one GOP of pre-roll before the range.
    fn decode_from_ns(&self) -> u64 {
        self.start_ns - self.preroll_ns
    }

    /// Where the seek goes: half a frame before the start, so the frame on the edge
    /// reaches us whole whatever the decoder does with frames that overlap the seek
    /// position (clip them, or drop those without a duration, as B-frames have).
    fn seek_from(&self, origin: u64) -> u64 {
        if self.decode_from_ns() == 0 {
            origin
        } else {
            origin + self.decode_from_ns() - self.frame_ns / 2
        }
    }

    /// On a decoded stream's pad: its buffers are dropped until the seek's flush has
    /// passed, its first segment tells where the timeline starts, and its running time
    /// starts at the range's start.
    ///
    /// After the seek, the video pad keeps only frames whose stream time lies in
    /// [start - pre-roll, end): decoders also let through the frame overlapping the seek position
    /// and, with B-frames, frames reordered past the stop. Its segment is moved to begin
    /// exactly at the pre-roll's start, where videorate lays its first frame slot. Buffer times
    /// are compared as stream times: with an MP4 edit list they are offset from them.
    fn hold_until_seek(&self, pad: &gst::Pad, origin: Option<Origin>) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let delay = if origin.is_some() { VIDEO_DELAY_NS } else { 0 };
        pad.set_offset((self.decode_from_ns() + delay) as i64);
        let flushed = AtomicBool::new(false);
        let segment: Mutex<Option<gst::FormattedSegment<gst::ClockTime>>> = Mutex::new(None);
        let range = *self;
        pad.add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::BUFFER_LIST
                | gst::PadProbeType::EVENT_FLUSH
                | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_pad, info| {
                let known_origin = origin
                    .as_ref()
                    .and_then(|o| *o.lock().expect("origin lock"));
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    match e.view() {
                        gst::EventView::FlushStop(_) => flushed.store(true, Ordering::SeqCst),
                        gst::EventView::Segment(seg) => {
                            let Some(time) = seg.segment().downcast_ref::<gst::ClockTime>() else {
                                return gst::PadProbeReturn::Ok;
                            };
                            if !flushed.load(Ordering::SeqCst) {
                                if let Some(origin) = &origin {
                                    let mut o = origin.lock().expect("origin lock");
                                    if o.is_none() {
                                        *o = Some(
                                            time.time()
                                                .or(time.start())
                                                .map_or(0, |t| t.nseconds()),
                                        );
                                    }
                                }
                            } else if let Some(o) = known_origin {
                                let mut moved = time.clone();
                                let want = o + range.decode_from_ns();
                                let (start, at) = (
                                    time.start().map_or(0, |t| t.nseconds()),
                                    time.time().map_or(0, |t| t.nseconds()),
                                );
                                if range.decode_from_ns() > 0 && want >= at {
                                    let media = gst::ClockTime::from_nseconds(start + (want - at));
                                    moved.set_start(media);
                                    moved.set_position(media);
                                    moved.set_time(gst::ClockTime::from_nseconds(want));
                                    info.data = Some(gst::PadProbeData::Event(
                                        gst::event::Segment::new(&moved),
                                    ));
                                }
                                *segment.lock().expect("segment lock") = Some(moved);
                            }
                        }
                        _ => {}
                    }
                    return gst::PadProbeReturn::Ok;
                }
                if !flushed.load(Ordering::SeqCst) {
                    return gst::PadProbeReturn::Drop;
                }
                let (Some(o), Some(seg)) =
                    (known_origin, segment.lock().expect("segment lock").clone())
                else {
                    return gst::PadProbeReturn::Ok;
                };
                // A quarter frame of slack for rounding.
                let first_kept = (o + range.decode_from_ns()).saturating_sub(range.frame_ns / 4);
                let past = range.end_ns.map(|e| o + e - range.frame_ns / 4);
                let outside = |b: &gst::BufferRef| {
                    let at = b
                        .pts()
                        .and_then(|p| seg.to_stream_time(p))
                        .map(|t| t.nseconds());
                    at.is_some_and(|t| t < first_kept || past.is_some_and(|end| t >= end))
                };
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) if outside(b) => gst::PadProbeReturn::Drop,
                    // Decoders push single buffers; a list is let through whole unless
                    // all of it is outside.
                    Some(gst::PadProbeData::BufferList(list)) if list.iter().all(outside) => {
                        gst::PadProbeReturn::Drop
                    }
                    _ => gst::PadProbeReturn::Ok,
                }
            },
        );
    }

    /// Pauses the pipeline until its streams are exposed and the timeline's origin is
    /// known, then seeks to the range. The seek goes upstream from the video branch to
    /// the demuxer, which flushes every stream; sent to the pipeline it would also go
    /// through splitmuxsink, which refuses seeks. The stop is exact: the frame starting
    /// on it belongs to the next chunk.
    fn seek(
        &self,
        pipeline: &gst::Pipeline,
        video_head: &gst::Element,
        pads_ready: &std::sync::atomic::AtomicBool,
        origin: &Origin,
        watchdog: Watchdog,
    ) -> Result<(), PipelineError> {
        let bus = pipeline.bus().expect("a pipeline has a bus");
        if pipeline.set_state(gst::State::Paused).is_err() {
            return Err(PipelineError::Media("the file could not be decoded".into()));
        }
        let started = Instant::now();
        let origin_ns = loop {
            let known = *origin.lock().expect("origin lock");
            if let (true, Some(o)) = (pads_ready.load(std::sync::atomic::Ordering::SeqCst), known) {
                break o;
            }
            if started.elapsed() > watchdog.stall {
                return Err(PipelineError::Stalled(watchdog.stall.as_secs()));
            }
            if let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(20),
                &[gst::MessageType::Error],
            ) && let gst::MessageView::Error(e) = msg.view()
            {
                return Err(PipelineError::Media(format!(
                    "the file could not be decoded: {}",
                    e.error()
                )));
            }
        };
        let start = Some(gst::ClockTime::from_nseconds(self.seek_from(origin_ns)));
        let (stop_type, stop) = match self.end_ns {
            Some(e) => (
                gst::SeekType::Set,
                Some(gst::ClockTime::from_nseconds(origin_ns + e)),
            ),
            None => (gst::SeekType::None, None),
        };
        // Key-unit trick mode: demuxers that can skip to keyframes do, and video
        // decoders drop the other frames undecoded.
        let flags = if self.keyframes_only {
            gst::SeekFlags::FLUSH
                | gst::SeekFlags::TRICKMODE_KEY_UNITS
                | gst::SeekFlags::TRICKMODE_NO_AUDIO
        } else {
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE
        };
        let seek = gst::event::Seek::new(1.0, flags, gst::SeekType::Set, start, stop_type, stop);
        let pad = video_head.static_pad("sink").expect("queue has a sink pad");
        if pad.push_event(seek) {
            Ok(())
        } else {
            Err(PipelineError::Media(
                "the file cannot be cut into chunks: it does not support seeking".into(),
            ))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_to_eos(
    pipeline: &gst::Pipeline,
    src: &gst::Element,
    range: Option<Range>,
    duration_secs: f64,
    watchdog: Watchdog,
    tallies: &Tallies,
    growing: Option<&Path>,
    cancel: &std::sync::atomic::AtomicBool,
    on_progress: &mut impl FnMut(Progress),
) -> Result<(), PipelineError> {
    let bus = pipeline.bus().expect("a pipeline has a bus");
    start_playing(pipeline, &bus)?;
    let file_size = src
        .property::<Option<String>>("location")
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .unwrap_or(0);
    let mut last_position = 0u64;
    let started = Instant::now();
    let mut last_advance = started;
    let mut finished_count = 0;
    loop {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(PipelineError::Cancelled);
        }
        if started.elapsed() > watchdog.total {
            return Err(PipelineError::TooLong(watchdog.total.as_secs()));
        }
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(1000))
            && let Some(end) = on_message(&msg, &watchdog, tallies)
        {
            return end;
        }
        let position = pipeline
            .query_position::<gst::ClockTime>()
            .map(|p| p.nseconds())
            .unwrap_or(0);
        let bytes = src
            .query_position::<gst::format::Bytes>()
            .map(|b| *b)
            .unwrap_or(0);
        let progress_key = position.max(bytes);
        if progress_key > last_position {
            last_position = progress_key;
            last_advance = Instant::now();
        } else if last_advance.elapsed() > watchdog.stall {
            return Err(PipelineError::Stalled(watchdog.stall.as_secs()));
        }
        // Timestamps far past the probed duration: a damaged source that would run on.
        if duration_secs > 0.0 && position as f64 / 1e9 > duration_secs * 2.0 + 60.0 {
            return Err(PipelineError::Media(format!(
                "the file's timestamps run far past its {duration_secs:.0} s duration; it looks damaged"
            )));
        }
        let audio_finished = growing.and_then(|dir| {
            let finished = finished_segments(
                dir,
                tallies.lock().expect("tally lock").get(dir_name(dir)?)?,
            );
            (finished.len() > finished_count).then(|| {
                finished_count = finished.len();
                finished
            })
        });
        let fraction = fraction_done(range, duration_secs, position, bytes, file_size);
        on_progress(Progress {
            fraction: fraction.clamp(0.0, 1.0),
            audio_finished,
        });
    }
}

/// Sets the pipeline playing, or says why it would not start (the reason is on the
/// bus, not in the return value).
fn start_playing(pipeline: &gst::Pipeline, bus: &gst::Bus) -> Result<(), PipelineError> {
    if pipeline.set_state(gst::State::Playing).is_ok() {
        return Ok(());
    }
    let reason = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .and_then(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "the pipeline would not start".into());
    Err(PipelineError::Media(format!(
        "the file could not be decoded: {reason}"
    )))
}

/// What a bus message means for the run: its end (done, or why it failed), or None
/// to go on (segment sink messages are tallied on the way).
fn on_message(
    msg: &gst::Message,
    watchdog: &Watchdog,
    tallies: &Tallies,
) -> Option<Result<(), PipelineError>> {
    match msg.view() {
        gst::MessageView::Eos(_) => Some(Ok(())),
        gst::MessageView::Error(e) => {
            let details = e.debug().map(|d| d.to_string()).unwrap_or_default();
            tracing::warn!(error = %e.error(), %details, "pipeline error");
            Some(Err(PipelineError::Media(format!(
                "the file could not be decoded: {}",
                e.error()
            ))))
        }
        gst::MessageView::Application(a)
            if a.structure().is_some_and(|s| s.name() == GAP_MESSAGE) =>
        {
            Some(Err(PipelineError::Gap(watchdog.max_gap.as_secs())))
        }
        gst::MessageView::Element(el) => {
            if let Some(s) = el.structure() {
                match s.name().as_str() {
                    "splitmuxsink-fragment-opened" => record_fragment(s, tallies),
                    "splitmuxsink-fragment-closed" => record_closed(s, tallies),
                    _ => {}
                }
            }
            None
        }
        _ => None,
    }
}

/// How far the work is: by the range or the whole duration when known, else by the
/// bytes read.
fn fraction_done(
    range: Option<Range>,
    duration_secs: f64,
    position: u64,
    bytes: u64,
    file_size: u64,
) -> f64 {
    if let Some(r) = range {
        let end = r.end_ns.map_or(duration_secs, |e| e as f64 / 1e9);
        (position.saturating_sub(r.start_ns) as f64 / 1e9)
            / (end - r.start_ns as f64 / 1e9).max(1e-3)
    } else if duration_secs > 0.0 {
        position as f64 / 1e9 / duration_secs
    } else if file_size > 0 {
        bytes as f64 / file_size as f64
    } else {
        0.0
    }
}

fn dir_name(dir: &Path) -> Option<&str> {
    dir.file_name().and_then(|n| n.to_str())
}

/// A rendition's fragments: index, the running time each opened at, and location; in order.
fn opened_fragments(tally: &SinkTally) -> Vec<(u64, u64, &str)> {
    let mut opened: Vec<(u64, u64, &str)> = tally
        .opened
        .iter()
        .filter_map(|(location, running_ns)| {
            let name = Path::new(location).file_name().and_then(|n| n.to_str())?;
            let index = name
                .strip_prefix("seg_")
                .and_then(|n| n.strip_suffix(".ts"))
                .and_then(|n| n.parse::<u64>().ok())?;
            Some((index, *running_ns, location.as_str()))
        })
        .collect();
    opened.sort();
    opened
}

/// The segments written for good, from the first on: each closed, with its successor
/// opened (which sets where it ends). The last fragment's end is known at EOS only.
fn finished_segments(dir: &Path, tally: &SinkTally) -> Vec<SegmentFacts> {
    let opened = opened_fragments(tally);
    let mut segments = Vec::new();
    for pair in opened.windows(2) {
        let ((index, start, location), (_, end, _)) = (pair[0], pair[1]);
        let Ok(meta) = std::fs::metadata(dir.join(lectern_packager::segment_name(index))) else {
            break;
        };
        if !tally.closed.contains(location) || end <= start {
            break;
        }
        segments.push(SegmentFacts {
            index,
            duration: (end - start) as f64 / 1e9,
            bytes: meta.len(),
        });
    }
    segments
}

/// Notes where splitmuxsink opened a fragment, under the rendition its folder names.
fn record_fragment(s: &gst::StructureRef, tallies: &Tallies) {
    let (Ok(location), Ok(running)) = (s.get::<String>("location"), s.get::<u64>("running-time"))
    else {
        return;
    };
    let Some(rendition) = Path::new(&location)
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
    else {
        return;
    };
    let mut t = tallies.lock().expect("tally lock");
    t.entry(rendition.to_string())
        .or_default()
        .opened
        .insert(location.clone(), running);
}

/// Notes that splitmuxsink finished writing a fragment.
fn record_closed(s: &gst::StructureRef, tallies: &Tallies) {
    let Ok(location) = s.get::<String>("location") else {
        return;
    };
    let Some(rendition) = Path::new(&location)
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
    else {
        return;
    };
    let mut t = tallies.lock().expect("tally lock");
    t.entry(rendition.to_string())
        .or_default()
        .closed
        .insert(location);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(width: u32, height: u32) -> Rung {
        Rung {
            name: format!("v{height}"),
            width,
            height,
            video_kbps: 1000,
            crf: None,
        }
    }

    #[test]
    fn encoder_threads_share_the_cores_by_pixels() {
        let ladder = [
            rung(1920, 1080),
            rung(1280, 720),
            rung(854, 480),
            rung(640, 360),
            rung(426, 240),
        ];
        assert_eq!(encoder_threads(&ladder, 1), vec![1, 1, 1, 1, 1]);
        assert_eq!(encoder_threads(&ladder, 2), vec![2, 1, 1, 1, 1]);
        assert_eq!(encoder_threads(&ladder, 16), vec![9, 4, 2, 1, 1]);
        assert_eq!(encoder_threads(&ladder[..1], 4), vec![4]);
        assert_eq!(encoder_threads(&[], 4), Vec::<u32>::new());
    }

    #[test]
    fn scaler_widens_past_twice_down() {
        assert_eq!(rung_scale(1920, 1280), RungScale::Bilinear);
        assert_eq!(rung_scale(1920, 960), RungScale::Bilinear);
        assert_eq!(rung_scale(1920, 958), RungScale::Bicubic);
        assert_eq!(rung_scale(1920, 640), RungScale::Bicubic);
        assert_eq!(rung_scale(640, 1280), RungScale::Bilinear);
    }

    #[test]
    fn one_decoder_thread_per_four_cores() {
        assert_eq!(decoder_threads(1), 1);
        assert_eq!(decoder_threads(2), 1);
        assert_eq!(decoder_threads(8), 2);
        assert_eq!(decoder_threads(16), 4);
    }
}
