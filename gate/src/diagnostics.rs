//! What an owner may be told of why their file failed, beyond the vocabulary: the
//! fenced child's last log lines, with every path, address and URL taken out and the
//! length bounded. Students never see it.

use std::net::{IpAddr, SocketAddr};

/// The longest diagnostics kept.
pub const MAX_CHARS: usize = 2000;
const REMOVED: &str = "[…]";

/// The lines, joined, with what could tell where things are replaced by `[…]`.
pub fn sanitize(lines: &[String]) -> String {
    let text = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split_whitespace()
                .map(clean_word)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A word, or `[…]` when it names a place: a URL, a path, an IP address (with or
/// without a port), or anything inside `key=value` that does.
fn clean_word(word: &str) -> &str {
    let value = word.split_once('=').map_or(word, |(_, v)| v);
    let bare = value.trim_matches(|c: char| {
        matches!(
            c,
            '"' | '\'' | '(' | ')' | '[' | ']' | ',' | ';' | '<' | '>'
        )
    });
    let bare = bare.trim_end_matches([':', '.']);
    let names_a_place = bare.contains("://")
        || bare.starts_with("file:")
        || bare.contains('/')
        || bare.contains('\\')
        || bare.starts_with('~')
        || bare.parse::<IpAddr>().is_ok()
        || bare.parse::<SocketAddr>().is_ok()
        || looks_like_ipv4(bare)
        || looks_like_ipv6(bare);
    if names_a_place { REMOVED } else { word }
}

/// Hex groups and colons, two at least, maybe bracketed with a port: fd00::1, [fd00::1]:80.
fn looks_like_ipv6(word: &str) -> bool {
    word.matches(':').count() >= 2
        && word
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '[' | ']' | '%'))
}

/// Four dot-separated numbers, maybe followed by a port: 10.0.0.7, 10.0.0.7:5432.
fn looks_like_ipv4(word: &str) -> bool {
    let host = word.split(':').next().unwrap_or(word);
    let parts: Vec<_> = host.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_addresses_and_urls_are_taken_out_and_the_rest_kept() {
        let lines = vec![
            "INFO probing an upload failed error=Internal data stream error. detail=../gst/asfdemux/gstasfdemux.c(2214): gst_asf_demux_loop (): /GstPipeline:pipeline0/GstASFDemux:asfdemux0: streaming stopped, reason error (-5)".to_string(),
            "WARN could not open /var/lib/lectern/data/objects/uploads/abc nor http://10.0.0.7:9000/bucket, peer 169.254.169.254 or [fd00::1]:80 or 10.1.2.3:5432".to_string(),
        ];
        let out = sanitize(&lines);
        for leak in [
            "/var/lib",
            "http",
            "10.0.0.7",
            "169.254",
            "fd00",
            "10.1.2.3",
            "gstasfdemux.c",
            "GstPipeline",
        ] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(
            out.contains("streaming stopped, reason error (-5)"),
            "{out}"
        );
        assert!(out.contains("Internal data stream error."), "{out}");
        assert!(out.contains("gst_asf_demux_loop"), "{out}");
    }

    #[test]
    fn diagnostics_are_bounded() {
        let long = vec!["word ".repeat(5000)];
        assert!(sanitize(&long).chars().count() <= MAX_CHARS + 1);
    }
}
