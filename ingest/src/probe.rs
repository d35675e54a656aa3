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
    fn rotations_from_tags() {
        assert_eq!(rotation_degrees("rotate-90"), 90);
        assert_eq!(rotation_degrees("rotate-270"), 270);
        assert_eq!(rotation_degrees("rotate-0"), 0);
        assert_eq!(rotation_degrees("flip-rotate-180"), 180);
    }
}
