//! The packager's functions over arbitrary text and bytes.
//!
//! Properties:
//! - `validate_media` and `validate_master` never panic, and report line numbers
//!   within the text (0 for whole-playlist rules);
//! - `rewrite_segment_uris` never panics, calls the closure once per URI line (a line
//!   that is not blank and does not start with '#' once trimmed), with the trimmed line;
//!   with the identity closure it returns the text with its lines as `str::lines` gives
//!   them (so "\r\n" becomes "\n" and a final newline is added), URI lines trimmed of
//!   surrounding whitespace and every other line as it was. It is therefore the identity
//!   exactly on text already in that form (such as what `media_playlist` writes, checked
//!   in playlist_generate), not on any text;
//! - `avc1_codec_string` never panics, and what it returns is `avc1.` and six lowercase
//!   hex digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lectern_packager::{avc1_codec_string, rewrite_segment_uris, validate_master, validate_media};

/// What the identity rewrite should give, written from the doc comment rather than the
/// code: split at "\n" (a "\r" right before it belongs to the line ending; a final line
/// needs no "\n"), keep tags and blank lines, trim URI lines, end every line with "\n".
fn normalized(text: &str) -> (String, usize) {
    let mut out = String::new();
    let mut uris = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let (line, next) = match rest.find('\n') {
            Some(i) => (rest[..i].strip_suffix('\r').unwrap_or(&rest[..i]), &rest[i + 1..]),
            None => (rest, ""),
        };
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(t);
            uris += 1;
        }
        out.push('\n');
        rest = next;
    }
    (out, uris)
}

fuzz_target!(|data: &[u8]| {
    if let Some(codec) = avc1_codec_string(data) {
        let hex = codec.strip_prefix("avc1.").unwrap_or_else(|| panic!("{codec:?}"));
        assert!(hex.len() == 6 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{codec:?}");
    }

    let text = String::from_utf8_lossy(data);
    let line_count = text.lines().count();
    for v in validate_media(&text).into_iter().chain(validate_master(&text)) {
        assert!(v.line <= line_count.max(1), "{v:?} in a text of {line_count} lines");
    }

    let mut seen = Vec::new();
    let out = rewrite_segment_uris(&text, |uri| {
        seen.push(uri.to_string());
        uri.to_string()
    });
    let (expected, uris) = normalized(&text);
    assert_eq!(out, expected, "identity rewrite of {text:?}");
    assert_eq!(seen.len(), uris);
    for uri in &seen {
        assert!(!uri.is_empty() && !uri.starts_with('#') && uri.trim() == uri, "{uri:?}");
    }
    assert_eq!(out.lines().count(), line_count);
});
