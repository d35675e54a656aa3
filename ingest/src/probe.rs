//! Probing an uploaded file with GStreamer's Discoverer: what streams it has, in
//! display terms, or a reason a person can act on when it is not a usable lecture.

use std::path::Path;

use gstreamer as gst;
use gstreamer_pbutils as pbutils;
use gstreamer_pbutils::prelude::*;
use lectern_common::messages::SourceFacts;

/// The highest output frame rate; faster sources are halved or capped to this.
pub const MAX_FPS: u32 = 60;

/// Why a file cannot become a lecture, in words for its owner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// Shorter than this is no lecture: a single frame, or the first packets of a file
/// that was cut off (whose other streams are gone).
pub const MIN_MEDIA_SECS: f64 = 0.2;

pub fn probe_file(path: &Path, timeout_secs: u64) -> Result<SourceFacts, Unusable> {
    gst::init().map_err(|e| Unusable(format!("media framework unavailable: {e}")))?;
    let path = std::path::absolute(path).map_err(|e| Unusable(format!("cannot address the file: {e}")))?;
    let uri = gst::glib::filename_to_uri(&path, None)
        .map_err(|e| Unusable(format!("cannot address the file: {e}")))?;
    let discoverer = pbutils::Discoverer::new(gst::ClockTime::from_seconds(timeout_secs))
        .map_err(|e| Unusable(format!("media framework unavailable: {e}")))?;
    let info = match discoverer.discover_uri(&uri) {
        Ok(info) => info,
        Err(e) => return Err(Unusable(format!("not a readable media file ({e})"))),
    };
    match info.result() {
        pbutils::DiscovererResult::Ok => {}
        pbutils::DiscovererResult::MissingPlugins => {
            return Err(Unusable("the file's format or codec is not supported".into()));
        }
        pbutils::DiscovererResult::Timeout => {
            return Err(Unusable(format!("the file could not be analysed within {timeout_secs} s")));
        }
        _ => return Err(Unusable("not a readable media file".into())),
    }
    facts_from(&info)
}

/// Whether the file really holds media up to its stated duration: a seek to a few
/// seconds before the end, then demuxing (no decoding) to the end, must reach it.
/// Headers lie (a truncated download keeps its full duration, a DASH init segment
/// states the whole presentation's), and a lecture is cut into chunks by its duration.
pub fn reaches_stated_end(path: &Path, duration_secs: f64, timeout: std::time::Duration) -> bool {
    match stream_time_after_seek(path, (duration_secs - 3.0).max(0.0), timeout) {
        Ok(Some(reached)) => reached >= duration_secs - (duration_secs * 0.02).max(5.0),
        Ok(None) => false,
        Err(e) => {
            tracing::info!(error = %e, "the end of the file could not be reached");
            false
        }
    }
}

/// The latest stream time (seconds) any demuxed stream reaches after a key-unit seek
/// to `seek_secs`, or None if nothing comes after the seek.
fn stream_time_after_seek(path: &Path, seek_secs: f64, timeout: std::time::Duration) -> Result<Option<f64>, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    gst::init().map_err(|e| e.to_string())?;
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc").property("location", path.to_string_lossy().to_string()).build().map_err(|e| e.to_string())?;
    let parse = gst::ElementFactory::make("parsebin").build().map_err(|e| e.to_string())?;
    pipeline.add_many([&src, &parse]).map_err(|e| e.to_string())?;
    src.link(&parse).map_err(|e| e.to_string())?;
    let seeked = Arc::new(AtomicBool::new(false));
    let latest: Arc<Mutex<Option<f64>>> = Arc::default();
    {
        let pipeline = pipeline.downgrade();
        let (seeked, latest) = (seeked.clone(), latest.clone());
        parse.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline.upgrade() else { return };
            // A queue per stream: one demuxer thread feeds them all, and a sink
            // waiting to preroll would otherwise hold it from the others.
            let (Ok(queue), Ok(sink)) = (
                gst::ElementFactory::make("queue").build(),
                gst::ElementFactory::make("fakesink").property("sync", false).build(),
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
            let (seeked, latest) = (seeked.clone(), latest.clone());
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if !seeked.load(Ordering::SeqCst) {
                    return gst::PadProbeReturn::Ok;
                }
                let pts = info.buffer().and_then(|b| b.pts().or(b.dts()));
                let segment = pad.sticky_event::<gst::event::Segment>(0);
                let time = pts.zip(segment).and_then(|(pts, seg)| {
                    seg.segment().downcast_ref::<gst::ClockTime>().and_then(|s| s.to_stream_time(pts))
                });
                if let Some(t) = time {
                    let mut l = latest.lock().expect("latest lock");
                    let secs = t.nseconds() as f64 / 1e9;
                    if l.is_none_or(|x| secs > x) {
                        *l = Some(secs);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        });
    }
    let result = (|| {
        pipeline.set_state(gst::State::Paused).map_err(|e| e.to_string())?;
        let bus = pipeline.bus().expect("a pipeline has a bus");
        let deadline = std::time::Instant::now() + timeout;
        let left = || gst::ClockTime::from_nseconds(deadline.saturating_duration_since(std::time::Instant::now()).as_nanos() as u64);
        match bus.timed_pop_filtered(left(), &[gst::MessageType::AsyncDone, gst::MessageType::Error]) {
            Some(m) if matches!(m.view(), gst::MessageView::AsyncDone(_)) => {}
            _ => return Err("the file did not open".to_string()),
        }
        seeked.store(true, std::sync::atomic::Ordering::SeqCst);
        let target = gst::ClockTime::from_nseconds((seek_secs * 1e9) as u64);
        pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, target)
            .map_err(|_| "the file cannot seek".to_string())?;
        pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
        match bus.timed_pop_filtered(left(), &[gst::MessageType::Eos, gst::MessageType::Error]) {
            Some(m) if matches!(m.view(), gst::MessageView::Eos(_)) => Ok(*latest.lock().expect("latest lock")),
            Some(_) => Err("the file fails past the seek".to_string()),
            None => Err("the end was not reached in time".to_string()),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn facts_from(info: &pbutils::DiscovererInfo) -> Result<SourceFacts, Unusable> {
    let video = info.video_streams().into_iter().find(|v| !v.is_image());
    let audio = info.audio_streams().into_iter().next();
    if video.is_none() && info.video_streams().iter().any(|v| v.is_image()) && audio.is_none() {
        return Err(Unusable("the file is a still image, not a video".into()));
    }
    if video.is_none() && audio.is_none() {
        return Err(Unusable(
            "no audio or video stream could be read: the file is truncated, damaged or not a media file".into(),
        ));
    }
    let duration = info.duration().map(|d| d.nseconds() as f64 / 1e9).filter(|d| *d > 0.0 && *d < 1e6);
    if let Some(d) = duration.filter(|d| *d < MIN_MEDIA_SECS) {
        return Err(Unusable(format!("the file holds only {d:.2} s of media: it is cut short or damaged")));
    }
    let container = info
        .stream_info()
        .and_then(|s| s.caps())
        .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
        .unwrap_or_default();
    let mut facts = SourceFacts {
        duration_secs: duration.unwrap_or(0.0),
        has_video: video.is_some(),
        has_audio: audio.is_some(),
        width: 0,
        height: 0,
        fps_num: 0,
        fps_den: 1,
        audio_channels: audio.as_ref().map(|a| a.channels()).unwrap_or(0),
        container,
        video_codec: video.as_ref().and_then(|v| codec_name(v.upcast_ref())),
        audio_codec: audio.as_ref().and_then(|a| codec_name(a.upcast_ref())),
    };
    if let Some(v) = &video {
        let (w, h) = (v.width(), v.height());
        if w == 0 || h == 0 {
            return Err(Unusable("the video stream has no picture size".into()));
        }
        let par = v.par();
        let (par_n, par_d) = (par.numer().max(1) as u64, par.denom().max(1) as u64);
        // The displayed picture: square pixels, then the rotation a player applies.
        let mut dw = ((w as u64 * par_n) as f64 / par_d as f64).round() as u32;
        let mut dh = h;
        if rotation_of(v.upcast_ref()) % 180 == 90 {
            std::mem::swap(&mut dw, &mut dh);
        }
        facts.width = dw.max(2);
        facts.height = dh.max(2);
        let fr = v.framerate();
        let (num, den) = output_frame_rate(fr.numer(), fr.denom());
        facts.fps_num = num;
        facts.fps_den = den;
    }
    Ok(facts)
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

fn codec_name(stream: &pbutils::DiscovererStreamInfo) -> Option<String> {
    let caps = stream.caps()?;
    Some(pbutils::pb_utils_get_codec_description(&caps).to_string())
}

/// Degrees of clockwise rotation from the stream's `image-orientation` tag.
fn rotation_of(stream: &pbutils::DiscovererStreamInfo) -> u32 {
    let Some(tags) = stream.tags() else { return 0 };
    let Some(orientation) = tags.get::<gst::tags::ImageOrientation>() else { return 0 };
    rotation_degrees(orientation.get())
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
        let ok = std::process::Command::new("gst-launch-1.0").arg("-q").args(desc.split_whitespace()).status().unwrap();
        assert!(ok.success());
        let facts = probe_file(&path, 10).unwrap();
        assert!((facts.duration_secs - 20.0).abs() < 0.1, "{facts:?}");
        let timeout = std::time::Duration::from_secs(10);
        assert!(reaches_stated_end(&path, facts.duration_secs, timeout));
        // A header that claims a minute (a truncated download keeps its full one).
        assert!(!reaches_stated_end(&path, 60.0, timeout));
        assert!(!reaches_stated_end(&dir.path().join("missing.mp4"), 20.0, timeout));
    }

    #[test]
    fn rotations_from_tags() {
        assert_eq!(rotation_degrees("rotate-90"), 90);
        assert_eq!(rotation_degrees("rotate-270"), 270);
        assert_eq!(rotation_degrees("rotate-0"), 0);
        assert_eq!(rotation_degrees("flip-rotate-180"), 180);
    }
}
