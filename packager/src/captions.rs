//! Captions: WebVTT or SRT read into cues (every fault named by line and cue), written
//! back as one normalised WebVTT file, cut into WebVTT segments on the lecture's
//! segment grid, and listed as an HLS `SUBTITLES` group in the master playlist.

use std::fmt::Write as _;

use m3u8_rs::{AlternativeMedia, AlternativeMediaType, Playlist};

/// Segments carry their cues' times against the video's: mpegtsmux starts every stream
/// at one hour (90 kHz clock), so media time 0 is this MPEG-TS timestamp.
pub const MPEGTS_AT_ZERO: u64 = 3600 * 90_000;
/// The subtitle group's id in master playlists.
pub const SUBTITLE_GROUP: &str = "subs";
/// Cues one file may hold, and the longest time a cue may reach (12 h, the longest
/// lecture).
pub const MAX_CUES: usize = 50_000;
const MAX_MS: u64 = 12 * 3600 * 1000;

/// One caption: shown from `start_ms` until `end_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    pub start_ms: u64,
    pub end_ms: u64,
    /// WebVTT cue settings kept from the source (`align:start line:10%`), if any.
    pub settings: String,
    /// The cue's text, WebVTT markup allowed (`<i>`, `<b>`, `<v Name>`).
    pub text: String,
}

/// What is wrong with a caption file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {message}", cue.map(|c| format!(" (cue {c})")).unwrap_or_default())]
pub struct CaptionError {
    pub line: usize,
    pub cue: Option<usize>,
    pub message: String,
}

/// The file format a caption file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptionFormat {
    WebVtt,
    Srt,
}

/// Reads WebVTT (it starts with `WEBVTT`) or else SRT into cues, in time order.
pub fn parse_captions(text: &str) -> Result<(CaptionFormat, Vec<Cue>), CaptionError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let first = lines.first().copied().unwrap_or("");
    let format = if let Some(rest) = first.strip_prefix("WEBVTT") {
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            return Err(error(
                1,
                None,
                "the first line must be WEBVTT, alone or followed by a space",
            ));
        }
        CaptionFormat::WebVtt
    } else {
        CaptionFormat::Srt
    };
    let cues = Reader { lines, format }.cues()?;
    if cues.is_empty() {
        return Err(error(
            1,
            None,
            "no cues: a caption file needs at least one timed line",
        ));
    }
    Ok((format, cues))
}

fn error(line: usize, cue: Option<usize>, message: impl Into<String>) -> CaptionError {
    CaptionError {
        line,
        cue,
        message: message.into(),
    }
}

struct Reader<'a> {
    lines: Vec<&'a str>,
    format: CaptionFormat,
}

/// A run of non-blank lines, starting at `line` (1-based).
struct Block<'a> {
    line: usize,
    lines: &'a [&'a str],
}

impl<'a> Reader<'a> {
    fn blocks(&'a self) -> Vec<Block<'a>> {
        let mut blocks = Vec::new();
        let mut start = None;
        for (i, l) in self.lines.iter().enumerate() {
            match (l.trim().is_empty(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    blocks.push(Block {
                        line: s + 1,
                        lines: &self.lines[s..i],
                    });
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            blocks.push(Block {
                line: s + 1,
                lines: &self.lines[s..],
            });
        }
        blocks
    }

    fn cues(&self) -> Result<Vec<Cue>, CaptionError> {
        let mut cues: Vec<Cue> = Vec::new();
        let blocks = self.blocks();
        // WebVTT: the header block (the WEBVTT line and what follows it) carries no cue.
        let skip = usize::from(self.format == CaptionFormat::WebVtt);
        for block in blocks.iter().skip(skip) {
            let n = cues.len() + 1;
            if n > MAX_CUES {
                return Err(error(
                    block.line,
                    Some(n),
                    format!("more than {MAX_CUES} cues"),
                ));
            }
            let Some(cue) = self.cue(block, n)? else {
                continue;
            };
            if let Some(prev) = cues.last()
                && cue.start_ms < prev.start_ms
            {
                return Err(error(
                    block.line,
                    Some(n),
                    format!(
                        "starts at {} before the cue above it ({}): cues must be in time order",
                        timestamp(cue.start_ms),
                        timestamp(prev.start_ms)
                    ),
                ));
            }
            cues.push(cue);
        }
        Ok(cues)
    }

    /// The cue a block holds; None for WebVTT's NOTE, STYLE and REGION blocks.
    fn cue(&self, block: &Block, n: usize) -> Result<Option<Cue>, CaptionError> {
        let head = block.lines[0];
        if self.format == CaptionFormat::WebVtt
            && ["NOTE", "STYLE", "REGION"].iter().any(|k| {
                head.strip_prefix(k)
                    .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
            })
        {
            return Ok(None);
        }
        // An identifier (WebVTT) or a number (SRT) may come before the timing line.
        let timing_at = usize::from(!head.contains("-->"));
        let Some(timing) = block.lines.get(timing_at) else {
            return Err(error(block.line, Some(n), expected_timing(self.format)));
        };
        let line = block.line + timing_at;
        let (start_ms, end_ms, settings) = self.timing(timing, line, n)?;
        let body = &block.lines[timing_at + 1..];
        if let Some(i) = body.iter().position(|l| l.contains("-->")) {
            return Err(error(
                line + 1 + i,
                Some(n),
                "a timing line inside a cue's text: is the blank line before it missing?",
            ));
        }
        let text = match self.format {
            CaptionFormat::WebVtt => body.join("\n"),
            CaptionFormat::Srt => srt_text(body),
        };
        Ok(Some(Cue {
            start_ms,
            end_ms,
            settings,
            text,
        }))
    }

    fn timing(
        &self,
        text: &str,
        line: usize,
        n: usize,
    ) -> Result<(u64, u64, String), CaptionError> {
        let (start, rest) = text
            .split_once("-->")
            .ok_or_else(|| error(line, Some(n), expected_timing(self.format)))?;
        let rest = rest.trim_start();
        let (end, settings) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let read = |t: &str, which: &str| {
            parse_timestamp(t.trim(), self.format).ok_or_else(|| {
                error(
                    line,
                    Some(n),
                    format!(
                        "the {which} time {:?} is not {}",
                        t.trim(),
                        time_form(self.format)
                    ),
                )
            })
        };
        let (start_ms, end_ms) = (read(start, "start")?, read(end, "end")?);
        if end_ms <= start_ms {
            return Err(error(
                line,
                Some(n),
                format!(
                    "ends at {} but starts at {}: the end must come after the start",
                    timestamp(end_ms),
                    timestamp(start_ms)
                ),
            ));
        }
        if end_ms > MAX_MS {
            return Err(error(
                line,
                Some(n),
                "ends after 12 hours, past any lecture",
            ));
        }
        let settings = match self.format {
            CaptionFormat::WebVtt => cue_settings(settings),
            CaptionFormat::Srt => String::new(),
        };
        Ok((start_ms, end_ms, settings))
    }
}

fn expected_timing(format: CaptionFormat) -> String {
    format!(
        "expected a timing line such as `{}`",
        match format {
            CaptionFormat::WebVtt => "00:00:01.000 --> 00:00:04.000",
            CaptionFormat::Srt => "00:00:01,000 --> 00:00:04,000",
        }
    )
}

fn time_form(format: CaptionFormat) -> &'static str {
    match format {
        CaptionFormat::WebVtt => "hh:mm:ss.ttt or mm:ss.ttt",
        CaptionFormat::Srt => "hh:mm:ss,ttt",
    }
}

/// `hh:mm:ss.ttt` or `mm:ss.ttt` (WebVTT); `hh:mm:ss,ttt` (SRT, a `.` accepted too).
fn parse_timestamp(text: &str, format: CaptionFormat) -> Option<u64> {
    let (clock, millis) = match format {
        CaptionFormat::WebVtt => text.rsplit_once('.')?,
        CaptionFormat::Srt => text.rsplit_once([',', '.'])?,
    };
    let digits = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok())?
    };
    let ms = digits(millis, 3)?;
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [m, s] if format == CaptionFormat::WebVtt => (0, digits(m, 2)?, digits(s, 2)?),
        [h, m, s] if h.len() >= 2 && h.len() <= 3 => {
            (digits(h, h.len())?, digits(m, 2)?, digits(s, 2)?)
        }
        _ => return None,
    };
    (m < 60 && s < 60).then_some(((h * 60 + m) * 60 + s) * 1000 + ms)
}

/// The WebVTT cue settings kept: the known ones, well formed; the rest is dropped as a
/// browser would.
fn cue_settings(text: &str) -> String {
    const KNOWN: [&str; 6] = ["vertical", "line", "position", "size", "align", "region"];
    text.split_whitespace()
        .filter(|t| {
            t.split_once(':').is_some_and(|(k, v)| {
                KNOWN.contains(&k)
                    && !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"%.,-".contains(&b))
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// SRT text as WebVTT text: `<i>`, `<b>` and `<u>` kept, other tags (`<font …>`) and
/// SSA overrides (`{\an8}`) dropped, `&` and a stray `<` escaped.
fn srt_text(lines: &[&str]) -> String {
    let joined = lines.join("\n");
    let mut out = String::with_capacity(joined.len());
    let mut rest = joined.as_str();
    while let Some(i) = rest.find(['<', '{', '&', '>']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (piece, used) = srt_markup(rest);
        out.push_str(piece);
        rest = &rest[used..];
    }
    out.push_str(rest);
    out
}

/// What one markup character at the start of `rest` becomes, and the bytes it used.
fn srt_markup(rest: &str) -> (&'static str, usize) {
    const KEPT: [&str; 6] = ["<i>", "</i>", "<b>", "</b>", "<u>", "</u>"];
    if let Some(tag) = KEPT
        .iter()
        .find(|t| rest.to_ascii_lowercase().starts_with(*t))
    {
        return (tag, tag.len());
    }
    match rest.as_bytes()[0] {
        b'<' => match rest.find('>') {
            Some(end) if rest[1..end].bytes().all(|b| b != b'<') => ("", end + 1),
            _ => ("&lt;", 1),
        },
        b'{' if rest.starts_with("{\\") => ("", rest.find('}').map_or(1, |e| e + 1)),
        b'{' => ("{", 1),
        b'>' => ("&gt;", 1),
        _ => ("&amp;", 1),
    }
}

/// A cue's words as a reader sees them: markup left out, entities read, lines joined.
pub fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(if c == '\n' { ' ' } else { c }),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// `hh:mm:ss.ttt`.
pub fn timestamp(ms: u64) -> String {
    let (s, ms) = (ms / 1000, ms % 1000);
    format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600, s / 60 % 60, s % 60)
}

fn write_cue(out: &mut String, id: usize, cue: &Cue) {
    let _ = write!(
        out,
        "\n{id}\n{} --> {}",
        timestamp(cue.start_ms),
        timestamp(cue.end_ms)
    );
    if !cue.settings.is_empty() {
        let _ = write!(out, " {}", cue.settings);
    }
    let _ = writeln!(out, "\n{}", cue.text);
}

/// The cues as one WebVTT file (numbered in order).
pub fn to_webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for (i, cue) in cues.iter().enumerate() {
        write_cue(&mut out, i + 1, cue);
    }
    out
}

/// Segment `index` of a subtitle rendition: the cues showing during it (a cue across a
/// boundary is in both segments, with the same number, so players keep one), with the
/// timestamp map that places them on the video's clock.
pub fn webvtt_segment(cues: &[Cue], index: u64, segment_secs: u32) -> String {
    let (from, to) = (
        index * u64::from(segment_secs) * 1000,
        (index + 1) * u64::from(segment_secs) * 1000,
    );
    let mut out = format!("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{MPEGTS_AT_ZERO},LOCAL:00:00:00.000\n");
    for (i, cue) in cues.iter().enumerate() {
        if cue.start_ms < to && cue.end_ms > from {
            write_cue(&mut out, i + 1, cue);
        }
    }
    // A blank line last: a reader that runs segments together (ffmpeg) then sees the
    // next header as a block of its own, not as this cue's text.
    out.push('\n');
    out
}

/// The subtitle rendition's media playlist: one segment per `segment_secs` of the
/// lecture, the last one shorter, named like the video's (`seg_00000.vtt`).
pub fn subtitle_playlist(duration_secs: f64, segment_secs: u32) -> String {
    let step = f64::from(segment_secs);
    let count = (duration_secs / step).ceil().max(1.0) as u64;
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{segment_secs}\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    for i in 0..count {
        let length = (duration_secs - i as f64 * step).clamp(0.001, step);
        let _ = write!(
            out,
            "#EXTINF:{},\n{}\n",
            trim_float(length),
            subtitle_segment_name(i)
        );
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `seg_00012.vtt`.
pub fn subtitle_segment_name(index: u64) -> String {
    format!("seg_{index:05}.vtt")
}

/// The segment index a subtitle segment's name stands for.
pub fn subtitle_segment_index(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg_")?.strip_suffix(".vtt")?;
    (digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

/// One language of captions as a master playlist lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtitleTrack {
    pub language: String,
    pub label: String,
    pub default: bool,
    /// The rendition's playlist, relative to the master.
    pub uri: String,
}

/// The master playlist with the captions as a `SUBTITLES` group that every variant
/// names. None if `master` is not a master playlist.
pub fn with_subtitles(master: &[u8], tracks: &[SubtitleTrack]) -> Option<String> {
    let Ok(Playlist::MasterPlaylist(mut playlist)) = m3u8_rs::parse_playlist_res(master) else {
        return None;
    };
    playlist
        .alternatives
        .retain(|a| a.media_type != AlternativeMediaType::Subtitles);
    for track in tracks {
        playlist.alternatives.push(AlternativeMedia {
            media_type: AlternativeMediaType::Subtitles,
            uri: Some(track.uri.clone()),
            group_id: SUBTITLE_GROUP.into(),
            language: Some(track.language.clone()),
            name: track.label.clone(),
            default: track.default,
            autoselect: true,
            ..Default::default()
        });
    }
    for variant in &mut playlist.variants {
        variant.subtitles = (!tracks.is_empty()).then(|| SUBTITLE_GROUP.to_string());
    }
    let mut out = Vec::new();
    playlist.write_to(&mut out).ok()?;
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> CaptionError {
        parse_captions(text).unwrap_err()
    }

    #[test]
    fn webvtt_reads_with_ids_notes_styles_and_settings() {
        let text = "\u{feff}WEBVTT - lecture 1\r\nKind: captions\r\n\r\nSTYLE\r\n::cue { color: red }\r\n\r\nNOTE a comment\r\n\r\nintro\r\n00:01.000 --> 00:04.500 align:start bogus line:10%\r\n<v Ada>Hello</v>\r\nworld\r\n\r\n01:00:00.000 --> 01:00:02.000\r\nLater\r\n";
        let (format, cues) = parse_captions(text).unwrap();
        assert_eq!(format, CaptionFormat::WebVtt);
        assert_eq!(cues.len(), 2);
        assert_eq!((cues[0].start_ms, cues[0].end_ms), (1000, 4500));
        assert_eq!(cues[0].settings, "align:start line:10%");
        assert_eq!(cues[0].text, "<v Ada>Hello</v>\nworld");
        assert_eq!(cues[1].start_ms, 3_600_000);
        let again = parse_captions(&to_webvtt(&cues)).unwrap().1;
        assert_eq!(again, cues);
    }

    #[test]
    fn srt_becomes_webvtt_text() {
        let text = "1\n00:00:01,000 --> 00:00:02,500\n<font color=\"red\">{\\an8}Fish & <i>chips</i></font>\n\n2\n00:00:03,000 --> 00:00:04,000 X1:10 X2:20\na < b\n";
        let (format, cues) = parse_captions(text).unwrap();
        assert_eq!(format, CaptionFormat::Srt);
        assert_eq!(cues[0].text, "Fish &amp; <i>chips</i>");
        assert_eq!(cues[1].text, "a &lt; b");
        assert_eq!(cues[1].settings, "");
        assert!(to_webvtt(&cues).contains("00:00:01.000 --> 00:00:02.500\nFish"));
        assert_eq!(plain_text(&cues[0].text), "Fish & chips");
        assert_eq!(plain_text("<v Ada>a &lt;b&gt;</v>\nc"), "a <b> c");
    }

    #[test]
    fn faults_are_named_by_line_and_cue() {
        let e =
            err("WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\n00:03.000 --> 00:02.000\nbackwards\n");
        assert_eq!((e.line, e.cue), (6, Some(2)), "{e}");
        assert!(
            e.to_string().contains("the end must come after the start"),
            "{e}"
        );
        let e = err("WEBVTT\n\n00:01.000 --> 00:02.000\none\n00:02.000 --> 00:03.000\ntwo\n");
        assert_eq!((e.line, e.cue), (5, Some(1)), "{e}");
        assert!(e.message.contains("blank line"), "{e}");
        let e = err("WEBVTT\n\n00:01.000 --> 00:61.000\nx\n");
        assert!(e.message.contains("\"00:61.000\""), "{e}");
        let e = err("WEBVTT\n\n00:05.000 --> 00:06.000\na\n\n00:01.000 --> 00:02.000\nb\n");
        assert_eq!(e.cue, Some(2));
        assert!(e.message.contains("time order"), "{e}");
        assert_eq!(err("WEBVTTX\n").line, 1);
        assert!(
            err("WEBVTT\n\nNOTE only a note\n")
                .message
                .contains("no cues")
        );
        let e = err("1\n00:00:01.000 -> 00:00:02.000\nx\n");
        assert!(e.message.contains("timing line"), "{e}");
        assert!(err("").message.contains("no cues"));
        let e = err("1\n00:00:01,000 --> 13:00:00,000\nx\n");
        assert!(e.message.contains("12 hours"), "{e}");
        // A short form is WebVTT's only.
        assert!(
            err("1\n01:00,000 --> 02:00,000\nx\n")
                .message
                .contains("hh:mm:ss,ttt")
        );
    }

    #[test]
    fn segments_carry_the_cues_they_show_on_the_video_clock() {
        let cues = parse_captions("WEBVTT\n\n00:01.000 --> 00:02.000\na\n\n00:05.500 --> 00:07.000\nb\n\n00:13.000 --> 00:14.000\nc\n")
            .unwrap()
            .1;
        let first = webvtt_segment(&cues, 0, 6);
        assert!(first.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:324000000,LOCAL:00:00:00.000\n"));
        assert!(first.contains("\n1\n00:00:01.000") && first.contains("\n2\n00:00:05.500"));
        let second = webvtt_segment(&cues, 1, 6);
        assert!(second.contains("\n2\n00:00:05.500") && !second.contains("\n1\n"));
        assert!(!webvtt_segment(&cues, 1, 6).contains("00:00:13.000"));
        assert!(webvtt_segment(&cues, 2, 6).contains("\n3\n00:00:13.000"));
        assert!(webvtt_segment(&cues, 9, 6).ends_with("LOCAL:00:00:00.000\n\n"));
        assert!(webvtt_segment(&cues, 2, 6).ends_with("c\n\n"));
    }

    #[test]
    fn the_playlist_follows_the_segment_grid() {
        let p = subtitle_playlist(13.5, 6);
        assert!(p.contains("#EXTINF:6,\nseg_00000.vtt\n#EXTINF:6,\nseg_00001.vtt\n#EXTINF:1.5,\nseg_00002.vtt\n#EXT-X-ENDLIST"), "{p}");
        assert_eq!(subtitle_segment_index("seg_00002.vtt"), Some(2));
        for bad in [
            "seg_2.vtt",
            "seg_00002.ts",
            "seg_0000x.vtt",
            "../seg_00002.vtt",
        ] {
            assert_eq!(subtitle_segment_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_master_lists_the_captions_for_every_variant() {
        let master = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"a128/index.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=338150,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1024x768,AUDIO=\"audio\"\nv768/index.m3u8\n";
        let tracks = [
            SubtitleTrack {
                language: "en".into(),
                label: "English".into(),
                default: true,
                uri: "subs/en/index.m3u8".into(),
            },
            SubtitleTrack {
                language: "pt-BR".into(),
                label: "Português".into(),
                default: false,
                uri: "subs/pt-BR/index.m3u8".into(),
            },
        ];
        let out = with_subtitles(master, &tracks).unwrap();
        assert!(out.contains("TYPE=SUBTITLES,URI=\"subs/en/index.m3u8\",GROUP-ID=\"subs\",LANGUAGE=\"en\",NAME=\"English\",DEFAULT=YES,AUTOSELECT=YES"), "{out}");
        assert!(out.contains("NAME=\"Português\",AUTOSELECT=YES"), "{out}");
        assert!(out.contains("AUDIO=\"audio\",SUBTITLES=\"subs\""), "{out}");
        assert!(out.contains("TYPE=AUDIO"), "{out}");
        assert_eq!(
            with_subtitles(b"#EXTM3U\n#EXTINF:6,\nseg.ts\n", &tracks),
            None
        );
    }
}
