//! Playlist generation from structured segment facts (packager crate).
//!
//! Properties:
//! - `measure_bandwidth`, `media_playlist` and `master_playlist` never panic; they
//!   refuse exactly an empty list or a duration outside MIN_SEGMENT_SECS..=MAX_SEGMENT_SECS;
//!   an accepted measurement has AVERAGE-BANDWIDTH <= BANDWIDTH;
//! - every media playlist `media_playlist` writes passes `validate_media` with no
//!   violation, has one URI per segment, is returned unchanged by
//!   `rewrite_segment_uris` with the identity closure, and still validates after its
//!   URIs are rewritten to presigned URLs;
//! - every master playlist `master_playlist` writes passes `validate_master` with no
//!   violation and has one variant per video (or the audio-only one);
//! - `avc1_codec_string` of an Annex B access unit (or bare SPS) built the way an
//!   encoder writes one (emulation prevention, 3- or 4-byte start codes, trailing zero
//!   bytes) is the `avc1.PPCCLL` of its first SPS.
//!
//! URIs and codec strings are drawn from [a-z0-9._/-] and never empty: they are
//! Lectern's own names, not user text (see the report for what other text does).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lectern_packager::{
    AudioRendition, MAX_SEGMENT_SECS, MIN_SEGMENT_SECS, PlaylistKind, SegmentFacts, VideoVariant, avc1_codec_string,
    master_playlist, measure_bandwidth, media_playlist, rewrite_segment_uris, validate_master, validate_media,
};

#[derive(Debug, Arbitrary)]
struct Seg {
    index: u64,
    duration: f64,
    bytes: u64,
}

impl Seg {
    fn facts(&self) -> SegmentFacts {
        SegmentFacts { index: self.index, duration: self.duration, bytes: self.bytes }
    }
}

#[derive(Debug, Arbitrary)]
struct Name(Vec<u8>);

impl Name {
    fn get(&self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._/-";
        let mut s = String::from("v");
        s.extend(self.0.iter().map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])));
        s
    }
}

#[derive(Debug, Arbitrary)]
struct Video {
    uri: Name,
    width: u32,
    height: u32,
    frame_rate: f64,
    codec: Name,
    segments: Vec<Seg>,
}

#[derive(Debug, Arbitrary)]
struct Audio {
    uri: Name,
    codec: Name,
    channels: u32,
    segments: Vec<Seg>,
}

#[derive(Debug, Arbitrary)]
struct Nal {
    nal_type: u8,
    ref_idc: u8,
    payload: Vec<u8>,
    four_byte_start: bool,
    trailing_zeros: u8,
}

#[derive(Debug, Arbitrary)]
struct AccessUnit {
    before: Vec<Nal>,
    profile: u8,
    constraints: u8,
    level: u8,
    sps_rest: Vec<u8>,
    sps_ref_idc: u8,
    sps_four_byte_start: bool,
    after: Vec<Nal>,
    bare: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    segments: Vec<Seg>,
    event: bool,
    videos: Vec<Video>,
    audio: Option<Audio>,
    au: AccessUnit,
}

/// A NAL unit as an encoder writes it: header byte, RBSP with emulation prevention
/// bytes, and a last byte that is not zero (the RBSP stop bit).
fn nal_bytes(header: u8, rbsp: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    // The rbsp_stop_one_bit sits in the last byte.
    out.push(0x80);
    out
}

fn push_nal(au: &mut Vec<u8>, four_byte_start: bool, nal: &[u8], trailing_zeros: u8) {
    if four_byte_start {
        au.push(0);
    }
    au.extend_from_slice(&[0, 0, 1]);
    au.extend_from_slice(nal);
    au.extend(std::iter::repeat_n(0, usize::from(trailing_zeros % 4)));
}

fn other_nal(n: &Nal) -> Vec<u8> {
    // Types 1..=31 except 7 (SPS).
    let mut t = 1 + n.nal_type % 30;
    if t >= 7 {
        t += 1;
    }
    nal_bytes((n.ref_idc % 4) << 5 | t, &n.payload)
}

fn check_codec(au: &AccessUnit) {
    // profile_idc and level_idc are never 0 in a real stream, so no emulation prevention
    // byte can fall among the three bytes read.
    let profile = au.profile.max(1);
    let level = au.level.max(1);
    let mut rbsp = vec![profile, au.constraints, level];
    rbsp.extend_from_slice(&au.sps_rest);
    let sps = nal_bytes((au.sps_ref_idc % 4) << 5 | 7, &rbsp);
    let data = if au.bare {
        sps
    } else {
        let mut data = Vec::new();
        for n in &au.before {
            push_nal(&mut data, n.four_byte_start, &other_nal(n), n.trailing_zeros);
        }
        push_nal(&mut data, au.sps_four_byte_start, &sps, 0);
        for n in &au.after {
            let nal = if n.nal_type == 7 { nal_bytes(7, &n.payload) } else { other_nal(n) };
            push_nal(&mut data, n.four_byte_start, &nal, n.trailing_zeros);
        }
        data
    };
    let expected = format!("avc1.{profile:02x}{:02x}{level:02x}", au.constraints);
    assert_eq!(avc1_codec_string(&data), Some(expected), "access unit {data:02x?}");
}

fn acceptable(segments: &[SegmentFacts]) -> bool {
    !segments.is_empty()
        && segments.iter().all(|s| s.duration.is_finite() && (MIN_SEGMENT_SECS..=MAX_SEGMENT_SECS).contains(&s.duration))
}

fn check_media(segments: &[SegmentFacts], kind: PlaylistKind) {
    let result = media_playlist(segments, kind);
    assert_eq!(result.is_ok(), acceptable(segments), "{result:?} for {segments:?}");
    let Ok(text) = result else { return };
    let violations = validate_media(&text);
    assert!(violations.is_empty(), "{violations:?} in\n{text}\nfrom {segments:?}");
    let mut uris = 0;
    assert_eq!(
        rewrite_segment_uris(&text, |u| {
            uris += 1;
            u.to_string()
        }),
        text
    );
    assert_eq!(uris, segments.len());
    let signed = rewrite_segment_uris(&text, |u| format!("https://storage.invalid/b/asset/v720/{u}?X-Sig=abc%2F&e=1"));
    let violations = validate_media(&signed);
    assert!(violations.is_empty(), "{violations:?} in\n{signed}");
}

fn check_bandwidth(segments: &[SegmentFacts]) {
    let result = measure_bandwidth(segments);
    assert_eq!(result.is_ok(), acceptable(segments), "{result:?} for {segments:?}");
    if let Ok(bw) = result {
        assert!(bw.average <= bw.peak, "{bw:?} for {segments:?}");
    }
}

fuzz_target!(|input: Input| {
    check_codec(&input.au);

    let segments: Vec<SegmentFacts> = input.segments.iter().map(Seg::facts).collect();
    check_bandwidth(&segments);
    check_media(&segments, if input.event { PlaylistKind::Event } else { PlaylistKind::Vod });

    let videos: Vec<VideoVariant> = input
        .videos
        .iter()
        .map(|v| VideoVariant {
            uri: v.uri.get(),
            width: v.width,
            height: v.height,
            frame_rate: v.frame_rate,
            codec: v.codec.get(),
            segments: v.segments.iter().map(Seg::facts).collect(),
        })
        .collect();
    let audio = input.audio.as_ref().map(|a| AudioRendition {
        uri: a.uri.get(),
        codec: a.codec.get(),
        channels: a.channels,
        segments: a.segments.iter().map(Seg::facts).collect(),
    });
    let accepted = audio.as_ref().is_none_or(|a| acceptable(&a.segments))
        && videos.iter().all(|v| acceptable(&v.segments))
        && (!videos.is_empty() || audio.is_some());
    let result = master_playlist(&videos, audio.as_ref());
    assert_eq!(result.is_ok(), accepted, "{result:?}");
    if let Ok(text) = result {
        let violations = validate_master(&text);
        assert!(violations.is_empty(), "{violations:?} in\n{text}");
        let variants = text.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF:")).count();
        assert_eq!(variants, videos.len().max(1), "{text}");
    }
});
