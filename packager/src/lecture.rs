//! The playlists of a lecture encoded in parts (chunks of video rungs, one audio
//! part): growing EVENT playlists over what is stored so far, VOD once it all is.

use crate::{
    AudioRendition, MEDIA_PLAYLIST, PackagerError, PlaylistKind, SegmentFacts, VideoVariant,
    master_playlist, media_playlist, stitch,
};

/// What is stored of one rendition: the segment lists of its stored parts.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionPieces {
    /// Folder name: a rung's name or `audio`.
    pub name: String,
    /// RFC 6381 codec string; None until a part of it is stored.
    pub codec: Option<String>,
    /// Picture size, for video renditions.
    pub video: Option<(u32, u32)>,
    pub pieces: Vec<Vec<SegmentFacts>>,
    /// A part of it is still being encoded and stored as it goes (the audio of a long
    /// lecture): what is stored may end before the lecture does.
    pub growing: bool,
}

/// How far growing audio may fall short of a video segment's end, and the segment
/// still play: less than an AAC frame (21 ms at 48 kHz) of silence.
const AUDIO_SHORTFALL_SECS: f64 = 0.02;

/// A lecture's master playlist and the media playlists it lists, by folder name.
#[derive(Debug, Clone, PartialEq)]
pub struct LecturePlaylists {
    pub kind: PlaylistKind,
    pub master: String,
    pub media: Vec<(String, String)>,
}

impl LecturePlaylists {
    /// The playlist at this path relative to the asset (`master.m3u8`, `v240/index.m3u8`).
    pub fn file(&self, path: &str) -> Option<&str> {
        if path == crate::MASTER_PLAYLIST {
            return Some(&self.master);
        }
        let (folder, name) = path.split_once('/')?;
        (name == MEDIA_PLAYLIST).then(|| {
            self.media
                .iter()
                .find(|(n, _)| n == folder)
                .map(|(_, p)| p.as_str())
        })?
    }
}

/// The segments from index 0 up to the first one missing.
fn contiguous_prefix(pieces: &[Vec<SegmentFacts>]) -> Result<Vec<SegmentFacts>, PackagerError> {
    let mut all: Vec<&SegmentFacts> = pieces.iter().flatten().collect();
    all.sort_by_key(|s| s.index);
    let mut prefix = Vec::new();
    for s in all {
        match s.index.cmp(&(prefix.len() as u64)) {
            std::cmp::Ordering::Equal => prefix.push(s.clone()),
            std::cmp::Ordering::Less => return Err(PackagerError::Overlap(s.index)),
            std::cmp::Ordering::Greater => break,
        }
    }
    Ok(prefix)
}

/// The playlists of a lecture from its stored parts, or None while it cannot play yet.
///
/// `renditions` lists every rendition the lecture will have, stored or not. When
/// `complete`, every part is stored: each rendition is stitched whole (a gap is an
/// error) into VOD playlists. Before that the lecture plays once its lowest video rung
/// has its first segments and its audio (if any) is stored, as EVENT playlists cut to
/// what the lowest rung covers (and, while the audio grows, to what it covers). Only
/// the rungs that cover as much are listed, so a player switching rungs never runs
/// past the end of one.
pub fn lecture_playlists(
    renditions: &[RenditionPieces],
    frame_rate: f64,
    complete: bool,
) -> Result<Option<LecturePlaylists>, PackagerError> {
    let kind = if complete {
        PlaylistKind::Vod
    } else {
        PlaylistKind::Event
    };
    let mut videos: Vec<(&RenditionPieces, Vec<SegmentFacts>)> = Vec::new();
    let mut audio: Option<(&RenditionPieces, Vec<SegmentFacts>)> = None;
    for r in renditions {
        let segments = if complete {
            stitch(&r.pieces)?
        } else {
            contiguous_prefix(&r.pieces)?
        };
        if r.video.is_some() {
            videos.push((r, segments));
        } else {
            audio = Some((r, segments));
        }
    }
    if !complete {
        // The lowest rung sets how far the lecture plays.
        videos.sort_by_key(|(r, _)| r.video.map(|(w, h)| u64::from(w) * u64::from(h)));
        let Some(mut covered) = videos.first().map(|(_, s)| s.len()) else {
            return Ok(None);
        };
        if let Some((a, segments)) = &audio
            && a.growing
        {
            // Video past the audio stored so far would play silent, or stall the player
            // waiting for audio: it waits for the audio to catch up.
            let audio_end: f64 = segments.iter().map(|s| s.duration).sum();
            let mut video_end = 0.0;
            covered = videos[0]
                .1
                .iter()
                .take_while(|s| {
                    video_end += s.duration;
                    video_end <= audio_end + AUDIO_SHORTFALL_SECS
                })
                .count();
        }
        if covered == 0 || audio.as_ref().is_some_and(|(_, s)| s.is_empty()) {
            return Ok(None);
        }
        videos.retain(|(_, s)| s.len() >= covered);
        for (_, s) in &mut videos {
            s.truncate(covered);
        }
        // Audio segments lie on a time grid of their own: keep those that start
        // before the video ends.
        let end: f64 = videos[0].1.iter().map(|s| s.duration).sum();
        if let Some((_, segments)) = &mut audio {
            let mut start = 0.0;
            segments.retain(|s| {
                let keep = start < end - 1e-6;
                start += s.duration;
                keep
            });
        }
    }
    let mut media = Vec::new();
    let mut variants = Vec::new();
    for (r, segments) in &videos {
        let (width, height) = r.video.expect("video renditions have a size");
        let codec = r.codec.clone().ok_or(PackagerError::Empty)?;
        media.push((r.name.clone(), media_playlist(segments, kind)?));
        variants.push(VideoVariant {
            uri: format!("{}/{MEDIA_PLAYLIST}", r.name),
            width,
            height,
            frame_rate,
            codec,
            segments: segments.clone(),
        });
    }
    let audio = match &audio {
        Some((r, segments)) => {
            media.push((r.name.clone(), media_playlist(segments, kind)?));
            Some(AudioRendition {
                uri: format!("{}/{MEDIA_PLAYLIST}", r.name),
                codec: r.codec.clone().unwrap_or_else(|| crate::AAC_LC.into()),
                channels: 2,
                segments: segments.clone(),
            })
        }
        None => None,
    };
    let master = master_playlist(&variants, audio.as_ref())?;
    Ok(Some(LecturePlaylists {
        kind,
        master,
        media,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(first: u64, count: u64, duration: f64) -> Vec<SegmentFacts> {
        (first..first + count)
            .map(|index| SegmentFacts {
                index,
                duration,
                bytes: 100_000,
            })
            .collect()
    }

    fn video(name: &str, height: u32, pieces: Vec<Vec<SegmentFacts>>) -> RenditionPieces {
        RenditionPieces {
            name: name.into(),
            codec: Some("avc1.64001f".into()),
            video: Some((height * 16 / 9, height)),
            pieces,
            growing: false,
        }
    }

    fn audio(pieces: Vec<Vec<SegmentFacts>>) -> RenditionPieces {
        RenditionPieces {
            name: "audio".into(),
            codec: Some(crate::AAC_LC.into()),
            video: None,
            pieces,
            growing: false,
        }
    }

    fn growing_audio(segments: Vec<SegmentFacts>) -> RenditionPieces {
        RenditionPieces {
            growing: true,
            ..audio(vec![segments])
        }
    }

    fn uris(playlist: &str) -> Vec<&str> {
        playlist
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    }

    #[test]
    fn nothing_plays_before_the_lowest_rung_and_the_audio_are_in() {
        let no_video = [
            video("v240", 240, vec![]),
            video("v720", 720, vec![segs(0, 2, 6.006)]),
            audio(vec![segs(0, 5, 6.0)]),
        ];
        assert_eq!(lecture_playlists(&no_video, 29.97, false), Ok(None));
        let no_audio = [video("v240", 240, vec![segs(0, 2, 6.006)]), audio(vec![])];
        assert_eq!(lecture_playlists(&no_audio, 29.97, false), Ok(None));
        // Segments stored, but not from the start.
        let late = [
            video("v240", 240, vec![segs(2, 2, 6.006)]),
            audio(vec![segs(0, 5, 6.0)]),
        ];
        assert_eq!(lecture_playlists(&late, 29.97, false), Ok(None));
    }

    #[test]
    fn event_playlists_cover_what_the_lowest_rung_covers() {
        let renditions = [
            video(
                "v240",
                240,
                vec![segs(0, 2, 6.006), segs(4, 2, 6.006), segs(2, 2, 6.006)],
            ),
            video(
                "v480",
                480,
                vec![segs(0, 2, 6.006), segs(2, 2, 6.006), segs(4, 3, 6.006)],
            ),
            video("v720", 720, vec![segs(0, 2, 6.006)]),
            audio(vec![segs(0, 10, 6.0)]),
        ];
        let p = lecture_playlists(&renditions, 29.97, false)
            .unwrap()
            .unwrap();
        assert_eq!(p.kind, PlaylistKind::Event);
        // v720 covers less than v240: it is left out until it catches up.
        assert!(p.master.contains("v240/index.m3u8") && p.master.contains("v480/index.m3u8"));
        assert!(!p.master.contains("v720"), "{}", p.master);
        let v240 = p.file("v240/index.m3u8").unwrap();
        assert!(
            v240.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !v240.contains("ENDLIST"),
            "{v240}"
        );
        assert_eq!(uris(v240).len(), 6);
        assert_eq!(
            uris(p.file("v480/index.m3u8").unwrap()).len(),
            6,
            "cut to the lowest rung"
        );
        // 6 video segments end at 36.036 s: audio segments starting before that.
        assert_eq!(uris(p.file("audio/index.m3u8").unwrap()).len(), 7);
        assert_eq!(p.file("v720/index.m3u8"), None);
        for (_, playlist) in &p.media {
            assert!(crate::validate_media(playlist).is_empty(), "{playlist}");
        }
    }

    #[test]
    fn growing_audio_holds_the_video_back_to_what_it_covers() {
        let v240 = video("v240", 240, vec![segs(0, 10, 6.0)]);
        // 4 audio segments of 6.016 s end at 24.064 s: 4 video segments fit, not 5.
        let p = lecture_playlists(
            &[v240.clone(), growing_audio(segs(0, 4, 6.016))],
            25.0,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(uris(p.file("v240/index.m3u8").unwrap()).len(), 4);
        assert_eq!(uris(p.file("audio/index.m3u8").unwrap()).len(), 4);
        // A few milliseconds short still plays the segment.
        let p = lecture_playlists(
            &[v240.clone(), growing_audio(segs(0, 2, 5.995))],
            25.0,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(uris(p.file("v240/index.m3u8").unwrap()).len(), 2);
        // Less audio than one video segment: not playable yet.
        assert_eq!(
            lecture_playlists(&[v240.clone(), growing_audio(segs(0, 1, 3.0))], 25.0, false),
            Ok(None)
        );
        // Audio stored whole but shorter than the video (a source whose sound stops
        // early) does not hold the video back.
        let p = lecture_playlists(&[v240, audio(vec![segs(0, 4, 6.016)])], 25.0, false)
            .unwrap()
            .unwrap();
        assert_eq!(uris(p.file("v240/index.m3u8").unwrap()).len(), 10);
    }

    #[test]
    fn complete_lectures_get_vod_playlists_of_every_rung() {
        let renditions = [
            video("v240", 240, vec![segs(3, 2, 6.0), segs(0, 3, 6.0)]),
            video("v720", 720, vec![segs(0, 3, 6.0), segs(3, 2, 6.0)]),
            audio(vec![segs(0, 5, 6.0)]),
        ];
        let p = lecture_playlists(&renditions, 25.0, true).unwrap().unwrap();
        assert_eq!(p.kind, PlaylistKind::Vod);
        assert!(p.master.contains("v720/index.m3u8"));
        let v720 = p.file("v720/index.m3u8").unwrap();
        assert!(v720.contains("#EXT-X-ENDLIST") && v720.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
        assert_eq!(
            uris(v720),
            [
                "seg_00000.ts",
                "seg_00001.ts",
                "seg_00002.ts",
                "seg_00003.ts",
                "seg_00004.ts"
            ]
        );
        assert!(!v720.contains("DISCONTINUITY"));
        // A gap in a "complete" lecture is a bug upstream, not something to paper over.
        let gap = [video("v240", 240, vec![segs(0, 2, 6.0), segs(3, 2, 6.0)])];
        assert_eq!(
            lecture_playlists(&gap, 25.0, true),
            Err(PackagerError::Gap(2))
        );
        let twice = [video("v240", 240, vec![segs(0, 2, 6.0), segs(1, 2, 6.0)])];
        assert_eq!(
            lecture_playlists(&twice, 25.0, false),
            Err(PackagerError::Overlap(1))
        );
    }

    #[test]
    fn video_only_lectures_play_without_an_audio_group() {
        let renditions = [video("v240", 240, vec![segs(0, 1, 6.0)])];
        let p = lecture_playlists(&renditions, 25.0, false)
            .unwrap()
            .unwrap();
        assert!(!p.master.contains("TYPE=AUDIO"));
        assert_eq!(p.media.len(), 1);
    }
}
