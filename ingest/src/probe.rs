//! Probing an uploaded file: its container decided from its own bytes, then its
//! streams read from a preroll of the restricted decoding bin (never a URI, never an
//! element the gate does not name), judged against the source limits. Runs in the
//! fenced child (`analyse`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_pbutils as pbutils;
use lectern_gate::Refusal;
use lectern_gate::decode;
use lectern_seams::messages::SourceFacts;
use serde::{Deserialize, Serialize};

/// The highest output frame rate; faster sources are halved or capped to this.
pub const MAX_FPS: u32 = 60;

/// Shorter than this is no lecture: a single frame, or the first packets of a file
/// that was cut off (whose other streams are gone).
pub const MIN_MEDIA_SECS: f64 = 0.2;

/// Bounds on what a source may be, each a setting: the work a file causes follows
/// from them. The defaults are above anything a teacher's real files reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// The source's own frame rate (before the ladder caps it at MAX_FPS).
    pub max_fps: u32,
    pub max_duration_secs: u32,
    /// The longest stretch of the timeline without a picture, in a video.
    pub max_gap_secs: u32,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            max_width: 8192,
            max_height: 8192,
            max_fps: 300,
            max_duration_secs: 12 * 3600,
            max_gap_secs: 600,
        }
    }
}

/// What the preroll found of one video stream, before display rules apply.
struct VideoStream {
    width: u32,
    height: u32,
    par: (u64, u64),
    fps: (i32, i32),
    rotation: u32,
    codec: Option<String>,
}

struct AudioStream {
    channels: u32,
    codec: Option<String>,
}

#[derive(Default)]
struct Streams {
    video: Option<VideoStream>,
    audio: Option<AudioStream>,
    duration_secs: Option<f64>,
}

pub fn probe_file(
    path: &Path,
    timeout_secs: u64,
    limits: &SourceLimits,
) -> Result<SourceFacts, Refusal> {
    let container = lectern_gate::formats::sniff(path)?;
    let streams = preroll(path, Duration::from_secs(timeout_secs), limits)?;
    facts_from(container.name, streams, limits)
}

/// Prerolls `filesrc ! decodebin` (restricted) with a fake sink per decoded stream,
/// and reads each stream's caps, tags and codec, and the duration.
fn preroll(path: &Path, timeout: Duration, limits: &SourceLimits) -> Result<Streams, Refusal> {
    lectern_gate::init()?;
    let setup = |e: gst::glib::BoolError| {
        tracing::error!(error = %e, "building the probe pipeline");
        Refusal::Unreadable
    };
    let pipeline = gst::Pipeline::new();
    let src = decode::file_source(path).map_err(setup)?;
    let decode = decode::decodebin().map_err(setup)?;
    pipeline.add_many([&src, &decode]).map_err(setup)?;
    src.link(&decode).map_err(setup)?;
    let decoders: Arc<Mutex<Vec<gst::Element>>> = Arc::default();
    if let Some(bin) = decode.downcast_ref::<gst::Bin>() {
        let decoders = decoders.clone();
        bin.connect_deep_element_added(move |_, _, element| {
            let klass = element
                .factory()
                .and_then(|f| f.metadata(gst::ELEMENT_METADATA_KLASS).map(String::from))
                .unwrap_or_default();
            if klass.contains("Decoder") {
                decoders
                    .lock()
                    .expect("decoders lock")
                    .push(element.clone());
            }
        });
    }
    let pads: Arc<Mutex<Vec<gst::Pad>>> = Arc::default();
    {
        let pipeline = pipeline.downgrade();
        let pads = pads.clone();
        decode.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline.upgrade() else {
                return;
            };
            sink_stream(&pipeline, pad);
            pads.lock().expect("pads lock").push(pad.clone());
        });
    }
    let outcome = wait_for_preroll(&pipeline, timeout).map_err(|refusal| {
        // A decoder that gave up on a picture larger than the limits: say so, not
        // that the file is damaged.
        let decoders = decoders.lock().expect("decoders lock");
        match decoders.iter().find_map(|d| {
            stated_size(d).filter(|(w, h)| *w > limits.max_width || *h > limits.max_height)
        }) {
            Some(_) => Refusal::TooLarge(limits.max_width, limits.max_height),
            None => refusal,
        }
    });
    let streams = outcome.map(|()| {
        let duration_secs = pipeline
            .query_duration::<gst::ClockTime>()
            .map(|d| d.nseconds() as f64 / 1e9);
        let decoders = decoders.lock().expect("decoders lock").clone();
        let pads = pads.lock().expect("pads lock").clone();
        streams_of(&pads, &decoders, duration_secs)
    });
    let _ = pipeline.set_state(gst::State::Null);
    streams
}

/// The picture size an encoded stream states, from its decoder's input caps.
fn stated_size(decoder: &gst::Element) -> Option<(u32, u32)> {
    let caps = decoder.static_pad("sink")?.current_caps()?;
    let s = caps.structure(0)?;
    Some((
        s.get::<i32>("width").ok()?.max(0) as u32,
        s.get::<i32>("height").ok()?.max(0) as u32,
    ))
}

/// Ends a new stream of `pipeline` in a fake sink behind a queue of its own: one
/// demuxer thread feeds every stream, and a sink waiting to preroll would otherwise
/// hold it from the others.
fn sink_stream(pipeline: &gst::Pipeline, pad: &gst::Pad) {
    let (Ok(queue), Ok(sink)) = (
        gst::ElementFactory::make("queue").build(),
        gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build(),
    ) else {
        return;
    };
    if pipeline.add_many([&queue, &sink]).is_err() || queue.link(&sink).is_err() {
        return;
    }
    let _ = sink.sync_state_with_parent();
    let _ = queue.sync_state_with_parent();
    if let Some(sinkpad) = queue.static_pad("sink") {
        let _ = pad.link(&sinkpad);
    }
}

fn wait_for_preroll(pipeline: &gst::Pipeline, timeout: Duration) -> Result<(), Refusal> {
    if pipeline.set_state(gst::State::Paused).is_err() {
        return Err(bus_refusal(pipeline));
    }
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let timeout = gst::ClockTime::from_nseconds(timeout.as_nanos() as u64);
    match bus.timed_pop_filtered(
        timeout,
        &[gst::MessageType::AsyncDone, gst::MessageType::Error],
    ) {
        Some(m) => match m.view() {
            gst::MessageView::AsyncDone(_) => Ok(()),
            gst::MessageView::Error(e) => Err(refusal_for(&e.error(), e.debug().as_deref())),
            _ => Err(Refusal::NoStreams),
        },
        None => Err(Refusal::Timeout),
    }
}

/// The first error on the bus, as a refusal (its detail to the log).
fn bus_refusal(pipeline: &gst::Pipeline) -> Refusal {
    let bus = pipeline.bus().expect("a pipeline has a bus");
    match bus
        .pop_filtered(&[gst::MessageType::Error])
        .as_ref()
        .map(|m| m.view())
    {
        Some(gst::MessageView::Error(e)) => refusal_for(&e.error(), e.debug().as_deref()),
        _ => Refusal::NoStreams,
    }
}

/// GStreamer's error in the vocabulary: a missing element (what the gate refused to
/// plug) is a type or codec that is not accepted; everything else is a damaged file.
fn refusal_for(error: &gst::glib::Error, debug: Option<&str>) -> Refusal {
    let detail = debug.unwrap_or("");
    tracing::info!(error = %error, detail, "probing an upload failed");
    if error.matches(gst::CoreError::MissingPlugin)
        || error.matches(gst::StreamError::CodecNotFound)
    {
        Refusal::CodecNotAccepted
    } else if error.matches(gst::StreamError::WrongType)
        || error.matches(gst::StreamError::TypeNotFound)
    {
        Refusal::NotMedia
    } else {
        Refusal::NoStreams
    }
}

fn streams_of(pads: &[gst::Pad], decoders: &[gst::Element], duration_secs: Option<f64>) -> Streams {
    let codec_of = |kind: &str| {
        decoders.iter().find_map(|d| {
            let out = d.static_pad("src")?.current_caps()?;
            if !out.structure(0)?.name().starts_with(kind) {
                return None;
            }
            let input = d.static_pad("sink")?.current_caps()?;
            Some(pbutils::pb_utils_get_codec_description(&input).to_string())
        })
    };
    let mut streams = Streams {
        duration_secs: duration_secs.filter(|d| *d > 0.0 && d.is_finite()),
        ..Default::default()
    };
    for pad in pads {
        let Some(caps) = pad.current_caps() else {
            continue;
        };
        let Some(s) = caps.structure(0) else { continue };
        if s.name().starts_with("video/") && streams.video.is_none() {
            let par = s
                .get::<gst::Fraction>("pixel-aspect-ratio")
                .unwrap_or(gst::Fraction::new(1, 1));
            let fps = s
                .get::<gst::Fraction>("framerate")
                .unwrap_or(gst::Fraction::new(0, 1));
            streams.video = Some(VideoStream {
                width: s.get::<i32>("width").unwrap_or(0).max(0) as u32,
                height: s.get::<i32>("height").unwrap_or(0).max(0) as u32,
                par: (par.numer().max(1) as u64, par.denom().max(1) as u64),
                fps: (fps.numer(), fps.denom()),
                rotation: rotation_of(pad),
                codec: codec_of("video/"),
            });
        } else if s.name().starts_with("audio/") && streams.audio.is_none() {
            streams.audio = Some(AudioStream {
                channels: s.get::<i32>("channels").unwrap_or(0).max(0) as u32,
                codec: codec_of("audio/"),
            });
        }
    }
    streams
}

/// Degrees of clockwise rotation from the stream's `image-orientation` tag.
fn rotation_of(pad: &gst::Pad) -> u32 {
    (0..8)
        .map_while(|i| pad.sticky_event::<gst::event::Tag>(i))
        .find_map(|tag| {
            tag.tag()
                .get::<gst::tags::ImageOrientation>()
                .map(|o| rotation_degrees(o.get()))
        })
        .unwrap_or(0)
}

fn facts_from(
    container: &str,
    streams: Streams,
    limits: &SourceLimits,
) -> Result<SourceFacts, Refusal> {
    let Streams {
        video,
        audio,
        duration_secs,
    } = streams;
    if video.is_none() && audio.is_none() {
        return Err(Refusal::NoStreams);
    }
    let duration = duration_secs.filter(|d| *d < 1e6);
    if duration.is_some_and(|d| d < MIN_MEDIA_SECS) {
        return Err(Refusal::NoStreams);
    }
    if duration.is_some_and(|d| d > limits.max_duration_secs as f64) {
        return Err(Refusal::TooLong(limits.max_duration_secs.div_ceil(3600)));
    }
    let mut facts = SourceFacts {
        duration_secs: duration.unwrap_or(0.0),
        has_video: video.is_some(),
        has_audio: audio.is_some(),
        width: 0,
        height: 0,
        fps_num: 0,
        fps_den: 1,
        audio_channels: audio.as_ref().map(|a| a.channels).unwrap_or(0),
        container: container.to_string(),
        video_codec: video.as_ref().and_then(|v| v.codec.clone()),
        audio_codec: audio.as_ref().and_then(|a| a.codec.clone()),
    };
    if let Some(v) = &video {
        if v.width == 0 || v.height == 0 {
            return Err(Refusal::NoPictureSize);
        }
        if v.width > limits.max_width || v.height > limits.max_height {
            return Err(Refusal::TooLarge(limits.max_width, limits.max_height));
        }
        let (fps_n, fps_d) = v.fps;
        if fps_n > 0 && fps_d > 0 && fps_n as f64 / fps_d as f64 > limits.max_fps as f64 + 0.5 {
            return Err(Refusal::FrameRateTooHigh(limits.max_fps));
        }
        // The displayed picture: square pixels, then the rotation a player applies. A
        // pixel aspect ratio that would stretch the picture past the limits is refused
        // like a picture that size.
        let mut dw = ((v.width as u64 * v.par.0) as f64 / v.par.1 as f64).round();
        let mut dh = v.height as f64;
        if dw > limits.max_width.max(limits.max_height) as f64 || dw < 2.0 {
            return Err(Refusal::TooLarge(limits.max_width, limits.max_height));
        }
        if v.rotation % 180 == 90 {
            std::mem::swap(&mut dw, &mut dh);
        }
        facts.width = (dw as u32).max(2);
        facts.height = (dh as u32).max(2);
        let (num, den) = output_frame_rate(fps_n, fps_d);
        facts.fps_num = num;
        facts.fps_den = den;
    }
    Ok(facts)
}

/// How far the file's streams really reach (seconds): a seek to a few seconds before
/// the stated end, then demuxing (no decoding) to the end. Headers lie (a truncated
/// download keeps its full duration, a DASH init segment states the whole
/// presentation's). None when nothing could be read past the seek.
pub fn end_reached(path: &Path, duration_secs: f64, timeout: Duration) -> Option<f64> {
    match scan(path, (duration_secs - 3.0).max(0.0), timeout) {
        Ok(reach) => reach.end,
        Err(e) => {
            tracing::info!(error = %e, "the end of the file could not be reached");
            None
        }
    }
}

/// Whether an end reached is the stated one (within 2 % or 5 s).
pub fn reaches(end: f64, duration_secs: f64) -> bool {
    end >= duration_secs - (duration_secs * 0.02).max(5.0)
}

/// Whether the file really holds media up to its stated duration.
pub fn reaches_stated_end(path: &Path, duration_secs: f64, timeout: Duration) -> bool {
    end_reached(path, duration_secs, timeout).is_some_and(|end| reaches(end, duration_secs))
}

/// What demuxing a file from a point to its end found.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Reach {
    /// The latest stream time (seconds) any stream reached; None if nothing came.
    pub end: Option<f64>,
    /// The longest stretch (seconds) between two pictures of a video stream, counted
    /// from `from` when the scan starts at the beginning.
    pub video_gap: f64,
}

/// The longest stretch between consecutive pictures of one stream. Pictures arrive in
/// decoding order; a window of 16 (the most frames H.264 and HEVC reorder) puts them
/// back in presentation order before their spacing is measured.
struct GapMeter {
    pending: std::collections::BinaryHeap<std::cmp::Reverse<u64>>,
    last: Option<u64>,
    widest: u64,
}

impl GapMeter {
    const REORDER: usize = 16;

    /// `from`: where the stream's time starts (ns), when a late first picture counts.
    fn new(from: Option<u64>) -> Self {
        GapMeter {
            pending: Default::default(),
            last: from,
            widest: 0,
        }
    }

    fn push(&mut self, ns: u64) {
        self.pending.push(std::cmp::Reverse(ns));
        if self.pending.len() > Self::REORDER {
            self.take_earliest();
        }
    }

    fn take_earliest(&mut self) {
        if let Some(std::cmp::Reverse(t)) = self.pending.pop() {
            if let Some(last) = self.last {
                self.widest = self.widest.max(t.saturating_sub(last));
            }
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
    }

    /// The widest gap, in seconds, once every picture is in.
    fn finish(&mut self) -> f64 {
        while !self.pending.is_empty() {
            self.take_earliest();
        }
        self.widest as f64 / 1e9
    }
}

/// Demuxes (no decoding) from a key-unit seek to `seek_secs` to the end.
pub fn scan(path: &Path, seek_secs: f64, timeout: Duration) -> Result<Reach, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    gst::init().map_err(|e| e.to_string())?;
    let pipeline = gst::Pipeline::new();
    let src = decode::file_source(path).map_err(|e| e.to_string())?;
    let parse = decode::parsebin().map_err(|e| e.to_string())?;
    pipeline
        .add_many([&src, &parse])
        .map_err(|e| e.to_string())?;
    src.link(&parse).map_err(|e| e.to_string())?;
    let seeked = Arc::new(AtomicBool::new(false));
    let reach: Arc<Mutex<Reach>> = Arc::default();
    // From the start, a video that begins late begins with a gap; after a seek into
    // the middle nothing is known of what came before.
    let gap_from = (seek_secs == 0.0).then_some(0);
    {
        let pipeline = pipeline.downgrade();
        let (seeked, reach) = (seeked.clone(), reach.clone());
        parse.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline.upgrade() else {
                return;
            };
            sink_stream(&pipeline, pad);
            let (seeked, reach) = (seeked.clone(), reach.clone());
            let is_video = pad
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(false);
            let meter = Mutex::new(GapMeter::new(gap_from));
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
                move |pad, info| {
                    if let Some(gst::PadProbeData::Event(e)) = &info.data {
                        if is_video && e.type_() == gst::EventType::Eos {
                            let gap = meter.lock().expect("meter lock").finish();
                            let mut r = reach.lock().expect("reach lock");
                            r.video_gap = r.video_gap.max(gap);
                        }
                        return gst::PadProbeReturn::Ok;
                    }
                    if !seeked.load(Ordering::SeqCst) {
                        return gst::PadProbeReturn::Ok;
                    }
                    let pts = info.buffer().and_then(|b| b.pts().or(b.dts()));
                    let segment = pad.sticky_event::<gst::event::Segment>(0);
                    let Some(time) = pts.zip(segment).and_then(|(pts, seg)| {
                        seg.segment()
                            .downcast_ref::<gst::ClockTime>()
                            .and_then(|s| s.to_stream_time(pts))
                    }) else {
                        return gst::PadProbeReturn::Ok;
                    };
                    let secs = time.nseconds() as f64 / 1e9;
                    let mut r = reach.lock().expect("reach lock");
                    if r.end.is_none_or(|x| secs > x) {
                        r.end = Some(secs);
                    }
                    if is_video {
                        meter.lock().expect("meter lock").push(time.nseconds());
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        });
    }
    let result = (|| {
        pipeline
            .set_state(gst::State::Paused)
            .map_err(|e| e.to_string())?;
        let bus = pipeline.bus().expect("a pipeline has a bus");
        let deadline = std::time::Instant::now() + timeout;
        let left = || {
            gst::ClockTime::from_nseconds(
                deadline
                    .saturating_duration_since(std::time::Instant::now())
                    .as_nanos() as u64,
            )
        };
        match bus.timed_pop_filtered(
            left(),
            &[gst::MessageType::AsyncDone, gst::MessageType::Error],
        ) {
            Some(m) if matches!(m.view(), gst::MessageView::AsyncDone(_)) => {}
            _ => return Err("the file did not open".to_string()),
        }
        seeked.store(true, std::sync::atomic::Ordering::SeqCst);
        let target = gst::ClockTime::from_nseconds((seek_secs * 1e9) as u64);
        pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, target)
            .map_err(|_| "the file cannot seek".to_string())?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        match bus.timed_pop_filtered(left(), &[gst::MessageType::Eos, gst::MessageType::Error]) {
            Some(m) if matches!(m.view(), gst::MessageView::Eos(_)) => {
                Ok(*reach.lock().expect("reach lock"))
            }
            Some(_) => Err("the file fails past the seek".to_string()),
            None => Err("the end was not reached in time".to_string()),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// The frame rate the ladder is encoded at: the source's own (its average when it
/// varies), capped at MAX_FPS; 30 when the source does not say.
pub fn output_frame_rate(num: i32, den: i32) -> (u32, u32) {
    if num <= 0 || den <= 0 {
        return (30, 1);
    }
    let fps = num as f64 / den as f64;
    if fps < 1.0 {
        return (30, 1);
    }
    if fps > MAX_FPS as f64 + 0.5 {
        // 100/120 fps phone video becomes 50/60; anything else is capped at 60.
        let half = fps / 2.0;
        if half <= MAX_FPS as f64 + 0.5 {
            return reduce(num as u32, den as u32 * 2);
        }
        return (MAX_FPS, 1);
    }
    reduce(num as u32, den as u32)
}

fn reduce(num: u32, den: u32) -> (u32, u32) {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = gcd(num, den).max(1);
    (num / g, den / g)
}

pub fn rotation_degrees(orientation: &str) -> u32 {
    match orientation {
        "rotate-90" | "flip-rotate-90" => 90,
        "rotate-180" | "flip-rotate-180" => 180,
        "rotate-270" | "flip-rotate-270" => 270,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_are_kept_reduced_or_capped() {
        assert_eq!(output_frame_rate(30000, 1001), (30000, 1001));
        assert_eq!(output_frame_rate(50, 2), (25, 1));
        assert_eq!(output_frame_rate(120, 1), (60, 1));
        assert_eq!(output_frame_rate(240, 1), (60, 1));
        assert_eq!(output_frame_rate(0, 1), (30, 1));
        assert_eq!(output_frame_rate(1, 0), (30, 1));
    }

    #[test]
    fn a_file_reaches_its_own_end_but_not_a_longer_stated_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20s.mp4");
        let desc = format!(
            "videotestsrc num-buffers=500 ! video/x-raw,width=320,height=180,framerate=25/1 ! x264enc speed-preset=ultrafast key-int-max=50 ! h264parse ! queue ! mp4mux name=m ! filesink location={} audiotestsrc num-buffers=940 samplesperbuffer=1024 ! audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! queue ! m.",
            path.display()
        );
        let ok = std::process::Command::new("gst-launch-1.0")
            .arg("-q")
            .args(desc.split_whitespace())
            .status()
            .unwrap();
        assert!(ok.success());
        let facts = probe_file(&path, 10, &SourceLimits::default()).unwrap();
        assert!((facts.duration_secs - 20.0).abs() < 0.1, "{facts:?}");
        let timeout = Duration::from_secs(10);
        assert!(reaches_stated_end(&path, facts.duration_secs, timeout));
        // A header that claims a minute (a truncated download keeps its full one).
        assert!(!reaches_stated_end(&path, 60.0, timeout));
        assert!(!reaches_stated_end(
            &dir.path().join("missing.mp4"),
            20.0,
            timeout
        ));
    }

    #[test]
    fn rotations_from_tags() {
        assert_eq!(rotation_degrees("rotate-90"), 90);
        assert_eq!(rotation_degrees("rotate-270"), 270);
        assert_eq!(rotation_degrees("rotate-0"), 0);
        assert_eq!(rotation_degrees("flip-rotate-180"), 180);
    }
}
