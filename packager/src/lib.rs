//! packager: Lectern's HLS playlists, as pure functions over segment facts (no I/O).
//!
//! It owns the output naming convention (segments named by their absolute index on the
//! source's segment grid), media and master playlists with bandwidth measured from the
//! real segments, stitching of segment lists produced in pieces (chunks), the RFC 6381
//! codec string of an H.264 stream, a validator for the RFC 8216 rules we rely on, and
//! captions (WebVTT and SRT read, segmented and listed in the master playlist).

pub mod captions;
mod codecs;
mod lecture;
mod validate;

pub use codecs::{AAC_LC, avc1_codec_string};
pub use lecture::{LecturePlaylists, RenditionPieces, lecture_playlists};
pub use validate::{Violation, validate_master, validate_media};

use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, MasterPlaylist, MediaPlaylist, MediaPlaylistType,
    MediaSegment, Resolution, VariantStream,
};

/// The HLS protocol version our playlists need (decimal EXTINF).
pub const HLS_VERSION: usize = 3;
/// The name of the master playlist at the root of an asset's output.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// The name of every rendition's media playlist inside its folder.
pub const MEDIA_PLAYLIST: &str = "index.m3u8";
/// The audio rendition group id used in master playlists.
pub const AUDIO_GROUP: &str = "audio";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PackagerError {
    #[error("no segments to write a playlist from")]
    Empty,
    #[error("segment {index} has a duration of {duration} s")]
    BadDuration { index: u64, duration: f64 },
    #[error("chunks overlap or repeat at segment {0}")]
    Overlap(u64),
    #[error("chunks leave a gap before segment {0}")]
    Gap(u64),
    #[error("a master playlist needs at least one variant")]
    NoVariants,
}

/// What is known of one stored segment: where it sits on the grid, how long it plays
/// and how many bytes it has.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFacts {
    /// Absolute index on the source's segment grid (chunk-independent).
    pub index: u64,
    /// Play time in seconds, from the stream's timestamps.
    pub duration: f64,
    pub bytes: u64,
}

/// The file name of the segment with this absolute index.
pub fn segment_name(index: u64) -> String {
    format!("seg_{index:05}.ts")
}

/// Whether a media playlist is complete (VOD with ENDLIST) or still growing (EVENT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    Vod,
    Event,
}

/// Segment durations outside these bounds are broken timestamps, not media: shorter
/// ones would be written as EXTINF 0, longer ones lose the precision EXTINF needs.
pub const MIN_SEGMENT_SECS: f64 = 0.001;
pub const MAX_SEGMENT_SECS: f64 = 3600.0;

fn check_segments(segments: &[SegmentFacts]) -> Result<(), PackagerError> {
    if segments.is_empty() {
        return Err(PackagerError::Empty);
    }
    for s in segments {
        if !(s.duration.is_finite() && (MIN_SEGMENT_SECS..=MAX_SEGMENT_SECS).contains(&s.duration))
        {
            return Err(PackagerError::BadDuration {
                index: s.index,
                duration: s.duration,
            });
        }
    }
    Ok(())
}

/// EXTINF values are written with microsecond precision: exact for frame-based
/// durations and free of float noise.
fn extinf(duration: f64) -> f32 {
    ((duration * 1e6).round() / 1e6) as f32
}

/// RFC 8216 4.3.3.1: every EXTINF, rounded to the nearest integer, is at most the
/// target duration.
fn target_duration(segments: &[SegmentFacts]) -> u64 {
    segments
        .iter()
        .map(|s| f64::from(extinf(s.duration)).round() as u64)
        .max()
        .unwrap_or(1)
        .max(1)
}

/// A media playlist for one rendition. Segment URIs are relative, so a signed
/// path prefix is inherited by every segment.
pub fn media_playlist(
    segments: &[SegmentFacts],
    kind: PlaylistKind,
) -> Result<String, PackagerError> {
    check_segments(segments)?;
    let playlist = MediaPlaylist {
        version: Some(HLS_VERSION),
        target_duration: target_duration(segments),
        media_sequence: 0,
        segments: segments
            .iter()
            .map(|s| MediaSegment {
                uri: segment_name(s.index),
                duration: extinf(s.duration),
                title: Some(String::new()),
                ..Default::default()
            })
            .collect(),
        end_list: kind == PlaylistKind::Vod,
        playlist_type: Some(match kind {
            PlaylistKind::Vod => MediaPlaylistType::Vod,
            PlaylistKind::Event => MediaPlaylistType::Event,
        }),
        independent_segments: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    playlist
        .write_to(&mut out)
        .expect("writing to a Vec cannot fail");
    Ok(String::from_utf8(out).expect("m3u8-rs writes UTF-8"))
}

/// Bit rates measured from the real segments, in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth {
    /// The highest bit rate of any one segment (RFC 8216 BANDWIDTH).
    pub peak: u64,
    /// Total bits over total play time (AVERAGE-BANDWIDTH).
    pub average: u64,
}

pub fn measure_bandwidth(segments: &[SegmentFacts]) -> Result<Bandwidth, PackagerError> {
    check_segments(segments)?;
    let peak = segments
        .iter()
        .map(|s| (s.bytes as f64 * 8.0 / s.duration).ceil() as u64)
        .max()
        .unwrap_or(0);
    let bytes = segments
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(s.bytes));
    let seconds: f64 = segments.iter().map(|s| s.duration).sum();
    Ok(Bandwidth {
        peak,
        average: (bytes as f64 * 8.0 / seconds).ceil() as u64,
    })
}

/// One video rendition as the master playlist describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoVariant {
    /// Relative URI of its media playlist, e.g. `v720/index.m3u8`.
    pub uri: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    /// RFC 6381 codec of the video stream, e.g. `avc1.64001f`.
    pub codec: String,
    pub segments: Vec<SegmentFacts>,
}

/// The one audio rendition shared by every video variant (or the only variant of
/// an audio-only lecture).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioRendition {
    pub uri: String,
    pub codec: String,
    pub channels: u32,
    pub segments: Vec<SegmentFacts>,
}

/// The master playlist: video variants from the highest bit rate down, each with the
/// audio group; an audio-only lecture has its audio as the only variant.
pub fn master_playlist(
    videos: &[VideoVariant],
    audio: Option<&AudioRendition>,
) -> Result<String, PackagerError> {
    let audio_bw = audio.map(|a| measure_bandwidth(&a.segments)).transpose()?;
    let mut variants = Vec::new();
    let mut alternatives = Vec::new();
    if videos.is_empty() {
        let (a, bw) = match (audio, audio_bw) {
            (Some(a), Some(bw)) => (a, bw),
            _ => return Err(PackagerError::NoVariants),
        };
        variants.push(VariantStream {
            uri: a.uri.clone(),
            bandwidth: bw.peak,
            average_bandwidth: Some(bw.average),
            codecs: Some(a.codec.clone()),
            ..Default::default()
        });
    } else {
        if let Some(a) = audio {
            alternatives.push(AlternativeMedia {
                media_type: AlternativeMediaType::Audio,
                uri: Some(a.uri.clone()),
                group_id: AUDIO_GROUP.to_string(),
                name: "Main".to_string(),
                language: None,
                default: true,
                autoselect: true,
                channels: Some(a.channels.to_string()),
                ..Default::default()
            });
        }
        let mut ordered: Vec<(&VideoVariant, Bandwidth)> = videos
            .iter()
            .map(|v| measure_bandwidth(&v.segments).map(|bw| (v, bw)))
            .collect::<Result<_, _>>()?;
        // Largest picture first (then highest rate): the order players and people expect.
        let area = |v: &VideoVariant| u64::from(v.width) * u64::from(v.height);
        ordered.sort_by_key(|(v, bw)| std::cmp::Reverse((area(v), bw.peak)));
        for (v, bw) in ordered {
            let (peak, average, codecs) = match (audio, audio_bw) {
                (Some(a), Some(abw)) => (
                    bw.peak.saturating_add(abw.peak),
                    bw.average.saturating_add(abw.average),
                    format!("{},{}", v.codec, a.codec),
                ),
                _ => (bw.peak, bw.average, v.codec.clone()),
            };
            variants.push(VariantStream {
                uri: v.uri.clone(),
                bandwidth: peak,
                average_bandwidth: Some(average),
                codecs: Some(codecs),
                resolution: Some(Resolution {
                    width: v.width as u64,
                    height: v.height as u64,
                }),
                frame_rate: Some((v.frame_rate * 1000.0).round() / 1000.0),
                audio: audio.map(|_| AUDIO_GROUP.to_string()),
                ..Default::default()
            });
        }
    }
    let master = MasterPlaylist {
        version: Some(HLS_VERSION),
        independent_segments: true,
        variants,
        alternatives,
        ..Default::default()
    };
    let mut out = Vec::new();
    master
        .write_to(&mut out)
        .expect("writing to a Vec cannot fail");
    Ok(String::from_utf8(out).expect("m3u8-rs writes UTF-8"))
}

/// Rewrites every segment URI of a media playlist (the non-tag lines), keeping tags
/// as they are: used to point segments at presigned storage URLs.
pub fn rewrite_segment_uris(playlist: &str, mut rewrite: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(playlist.len() * 2);
    for line in playlist.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(&rewrite(trimmed));
        }
        out.push('\n');
    }
    out
}

/// Joins the segment lists of chunks (in any order) into one list for a rendition.
/// Chunks were cut on the source's global grid, so their segment indexes must tile
/// the range without gaps or overlaps; timestamps are continuous, so no discontinuity
/// is needed.
pub fn stitch(chunks: &[Vec<SegmentFacts>]) -> Result<Vec<SegmentFacts>, PackagerError> {
    let mut all: Vec<SegmentFacts> = chunks.iter().flatten().cloned().collect();
    all.sort_by_key(|s| s.index);
    if all.is_empty() {
        return Err(PackagerError::Empty);
    }
    for pair in all.windows(2) {
        let (before, after) = (pair[0].index, pair[1].index);
        if after == before {
            return Err(PackagerError::Overlap(after));
        }
        // `before` is below `after`, so `before + 1` cannot overflow.
        if after > before + 1 {
            return Err(PackagerError::Gap(before + 1));
        }
    }
    check_segments(&all)?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(durations: &[f64], first: u64) -> Vec<SegmentFacts> {
        durations
            .iter()
            .enumerate()
            .map(|(i, d)| SegmentFacts {
                index: first + i as u64,
                duration: *d,
                bytes: 750_000,
            })
            .collect()
    }

    #[test]
    fn broken_durations_and_extreme_numbers_are_refused_or_saturate() {
        // Found by fuzzing: a near-zero duration was written as EXTINF 0, a huge one as inf.
        for d in [2.37e-322, 1e-4, 3.5e38, 1.4e9] {
            assert!(
                matches!(
                    media_playlist(&segs(&[d], 0), PlaylistKind::Vod),
                    Err(PackagerError::BadDuration { .. })
                ),
                "{d}"
            );
        }
        let huge = vec![
            SegmentFacts {
                index: 0,
                duration: 0.001,
                bytes: u64::MAX,
            },
            SegmentFacts {
                index: 1,
                duration: 1.0,
                bytes: u64::MAX,
            },
        ];
        let bw = measure_bandwidth(&huge).unwrap();
        assert_eq!(bw.peak, u64::MAX);
        let video = VideoVariant {
            uri: "v/index.m3u8".into(),
            width: u32::MAX,
            height: u32::MAX,
            frame_rate: 30.0,
            codec: "avc1.64001f".into(),
            segments: huge.clone(),
        };
        let audio = AudioRendition {
            uri: "a/index.m3u8".into(),
            codec: "mp4a.40.2".into(),
            channels: 2,
            segments: huge,
        };
        assert!(
            master_playlist(&[video.clone(), video], Some(&audio))
                .unwrap()
                .contains(&format!("BANDWIDTH={}", u64::MAX))
        );
        let last = vec![SegmentFacts {
            index: u64::MAX,
            duration: 1.0,
            bytes: 1,
        }];
        assert_eq!(stitch(std::slice::from_ref(&last)).unwrap(), last);
        assert!(matches!(
            stitch(&[last.clone(), last]),
            Err(PackagerError::Overlap(u64::MAX))
        ));
    }

    #[test]
    fn media_playlist_is_vod_with_exact_extinf_and_endlist() {
        let text =
            media_playlist(&segs(&[6.006006, 6.006006, 2.5025], 0), PlaylistKind::Vod).unwrap();
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"));
        assert!(text.contains("#EXT-X-TARGETDURATION:6\n"));
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS\n"));
        assert!(text.contains("#EXTINF:6.006006,\nseg_00000.ts\n"));
        assert!(text.contains("#EXTINF:2.5025,\nseg_00002.ts\n"));
        assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"));
        assert!(
            validate_media(&text).is_empty(),
            "{:?}",
            validate_media(&text)
        );
    }

    #[test]
    fn float_noise_is_not_written() {
        let text = media_playlist(&segs(&[5.966_666_698_455_81], 0), PlaylistKind::Vod).unwrap();
        assert!(text.contains("#EXTINF:5.966667,"), "{text}");
    }

    #[test]
    fn target_duration_rounds_to_nearest_per_rfc() {
        let text = media_playlist(&segs(&[6.4, 6.6], 0), PlaylistKind::Vod).unwrap();
        assert!(text.contains("#EXT-X-TARGETDURATION:7\n"));
        let text = media_playlist(&segs(&[6.4], 0), PlaylistKind::Vod).unwrap();
        assert!(text.contains("#EXT-X-TARGETDURATION:6\n"));
    }

    #[test]
    fn event_playlist_has_no_endlist() {
        let text = media_playlist(&segs(&[6.0], 0), PlaylistKind::Event).unwrap();
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT"));
        assert!(!text.contains("ENDLIST"));
    }

    #[test]
    fn empty_and_zero_segments_are_refused() {
        assert_eq!(
            media_playlist(&[], PlaylistKind::Vod),
            Err(PackagerError::Empty)
        );
        assert!(matches!(
            media_playlist(&segs(&[6.0, 0.0], 0), PlaylistKind::Vod),
            Err(PackagerError::BadDuration { index: 1, .. })
        ));
    }

    #[test]
    fn bandwidth_is_peak_and_average_of_real_segments() {
        let s = vec![
            SegmentFacts {
                index: 0,
                duration: 6.0,
                bytes: 600_000,
            },
            SegmentFacts {
                index: 1,
                duration: 2.0,
                bytes: 400_000,
            },
        ];
        let bw = measure_bandwidth(&s).unwrap();
        assert_eq!(bw.peak, 1_600_000);
        assert_eq!(bw.average, 1_000_000);
    }

    fn video(height: u32, bytes: u64) -> VideoVariant {
        VideoVariant {
            uri: format!("v{height}/index.m3u8"),
            width: height * 16 / 9,
            height,
            frame_rate: 30000.0 / 1001.0,
            codec: "avc1.64001f".into(),
            segments: vec![SegmentFacts {
                index: 0,
                duration: 6.0,
                bytes,
            }],
        }
    }

    fn audio() -> AudioRendition {
        AudioRendition {
            uri: "audio/index.m3u8".into(),
            codec: AAC_LC.into(),
            channels: 2,
            segments: vec![SegmentFacts {
                index: 0,
                duration: 6.0,
                bytes: 96_000,
            }],
        }
    }

    #[test]
    fn master_lists_variants_highest_first_with_audio_group() {
        let text = master_playlist(
            &[video(360, 600_000), video(720, 2_100_000)],
            Some(&audio()),
        )
        .unwrap();
        let first = text.find("v720/index.m3u8").unwrap();
        let second = text.find("v360/index.m3u8").unwrap();
        assert!(first < second);
        assert!(
            text.contains("#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8\",GROUP-ID=\"audio\""),
            "{text}"
        );
        // 2_100_000 B * 8 / 6 s + 96_000 * 8 / 6
        assert!(text.contains("BANDWIDTH=2928000"), "{text}");
        assert!(text.contains("CODECS=\"avc1.64001f,mp4a.40.2\""));
        assert!(text.contains("RESOLUTION=1280x720"));
        assert!(text.contains("FRAME-RATE=29.97"));
        assert!(text.contains("AUDIO=\"audio\""));
        assert!(
            validate_master(&text).is_empty(),
            "{:?}",
            validate_master(&text)
        );
    }

    #[test]
    fn audio_only_master_has_one_audio_variant() {
        let text = master_playlist(&[], Some(&audio())).unwrap();
        assert!(text.contains("CODECS=\"mp4a.40.2\""));
        assert!(text.contains("audio/index.m3u8"));
        assert!(!text.contains("EXT-X-MEDIA:"));
        assert!(!text.contains("RESOLUTION"));
        assert_eq!(master_playlist(&[], None), Err(PackagerError::NoVariants));
    }

    #[test]
    fn video_only_master_has_no_audio_group() {
        let text = master_playlist(&[video(240, 100_000)], None).unwrap();
        assert!(text.contains("CODECS=\"avc1.64001f\""));
        assert!(!text.contains("AUDIO="));
    }

    #[test]
    fn stitch_joins_chunks_in_any_order() {
        let joined =
            stitch(&[segs(&[6.0, 6.0], 2), segs(&[6.0, 6.0], 0), segs(&[3.0], 4)]).unwrap();
        assert_eq!(
            joined.iter().map(|s| s.index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        let text = media_playlist(&joined, PlaylistKind::Vod).unwrap();
        assert!(!text.contains("DISCONTINUITY"));
        assert!(validate_media(&text).is_empty());
    }

    #[test]
    fn rewriting_touches_only_segment_uris() {
        let text = media_playlist(&segs(&[6.0, 2.0], 0), PlaylistKind::Vod).unwrap();
        let out = rewrite_segment_uris(&text, |uri| format!("https://s3.example/v/{uri}?sig=1"));
        assert!(out.contains("#EXTINF:6,\nhttps://s3.example/v/seg_00000.ts?sig=1\n"));
        assert!(out.contains("https://s3.example/v/seg_00001.ts?sig=1"));
        assert_eq!(
            out.lines().filter(|l| l.starts_with('#')).count(),
            text.lines().filter(|l| l.starts_with('#')).count()
        );
        assert!(validate_media(&out).is_empty());
    }

    #[test]
    fn stitch_refuses_gaps_and_overlaps() {
        assert_eq!(
            stitch(&[segs(&[6.0], 0), segs(&[6.0], 2)]),
            Err(PackagerError::Gap(1))
        );
        assert_eq!(
            stitch(&[segs(&[6.0, 6.0], 0), segs(&[6.0], 1)]),
            Err(PackagerError::Overlap(1))
        );
        assert_eq!(stitch(&[]), Err(PackagerError::Empty));
    }
}
