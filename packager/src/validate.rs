//! A checker for the RFC 8216 rules Lectern's playlists must keep. It reads the text
//! as a player would, so it also catches what a bug elsewhere wrote.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub line: usize,
    pub rule: String,
}

fn violation(line: usize, rule: impl Into<String>) -> Violation {
    Violation {
        line,
        rule: rule.into(),
    }
}

fn lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end()))
        .filter(|(_, l)| !l.is_empty())
        .collect()
}

fn tag_value<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.strip_prefix(tag)?.strip_prefix(':')
}

/// Attributes of an attribute list (RFC 8216 4.2), quotes removed.
fn attributes(list: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            value = quoted[..end].to_string();
            rest = quoted.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        rest = rest.strip_prefix(',').unwrap_or(rest);
        out.push((name, value));
    }
    out
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn check_header(lines: &[(usize, &str)], out: &mut Vec<Violation>) {
    if lines.first().map(|(_, l)| *l) != Some("#EXTM3U") {
        out.push(violation(1, "the first line must be #EXTM3U"));
    }
}

const ONCE_TAGS: &[&str] = &[
    "#EXT-X-VERSION",
    "#EXT-X-TARGETDURATION",
    "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-PLAYLIST-TYPE",
    "#EXT-X-ENDLIST",
    "#EXT-X-INDEPENDENT-SEGMENTS",
];

/// Violations of RFC 8216 in a media playlist; empty when it is sound.
pub fn validate_media(text: &str) -> Vec<Violation> {
    let lines = lines(text);
    let mut out = Vec::new();
    check_header(&lines, &mut out);
    let mut seen = HashSet::new();
    let mut target: Option<u64> = None;
    let mut version = 1u64;
    let mut pending_extinf: Option<(usize, f64)> = None;
    let mut extinfs = Vec::new();
    let mut vod = false;
    let mut endlist = false;
    for &(n, line) in &lines {
        if let Some(tag) = ONCE_TAGS
            .iter()
            .find(|t| line.split(':').next() == Some(**t))
            && !seen.insert(*tag)
        {
            out.push(violation(n, format!("{tag} appears more than once")));
        }
        if line.starts_with("#EXT-X-STREAM-INF") || line.starts_with("#EXT-X-MEDIA:") {
            out.push(violation(n, "a master playlist tag in a media playlist"));
        } else if let Some(v) = tag_value(line, "#EXT-X-TARGETDURATION") {
            match v.parse() {
                Ok(t) => target = Some(t),
                Err(_) => out.push(violation(n, "TARGETDURATION must be a decimal integer")),
            }
        } else if let Some(v) = tag_value(line, "#EXT-X-VERSION") {
            version = v.parse().unwrap_or(0);
        } else if let Some(v) = tag_value(line, "#EXT-X-PLAYLIST-TYPE") {
            vod = v == "VOD";
            if v != "VOD" && v != "EVENT" {
                out.push(violation(n, "PLAYLIST-TYPE must be VOD or EVENT"));
            }
        } else if line == "#EXT-X-ENDLIST" {
            endlist = true;
        } else if let Some(v) = tag_value(line, "#EXTINF") {
            let duration = v.split(',').next().unwrap_or("");
            match duration.parse::<f64>() {
                Ok(d) if d > 0.0 && d.is_finite() => {
                    if duration.contains('.') && version < 3 {
                        out.push(violation(
                            n,
                            "decimal EXTINF needs EXT-X-VERSION 3 or later",
                        ));
                    }
                    pending_extinf = Some((n, d));
                }
                _ => out.push(violation(n, "EXTINF must be a positive number")),
            }
        } else if !line.starts_with('#') {
            match pending_extinf.take() {
                Some((_, d)) => extinfs.push((n, d)),
                None => out.push(violation(n, "a URI without an EXTINF")),
            }
        }
    }
    if let Some((n, _)) = pending_extinf {
        out.push(violation(n, "an EXTINF without a URI"));
    }
    match target {
        None => out.push(violation(0, "EXT-X-TARGETDURATION is required")),
        Some(t) => {
            for (n, d) in &extinfs {
                if d.round() as u64 > t {
                    out.push(violation(
                        *n,
                        format!("EXTINF {d} rounds above TARGETDURATION {t}"),
                    ));
                }
            }
        }
    }
    if extinfs.is_empty() {
        out.push(violation(0, "a media playlist needs at least one segment"));
    }
    if vod && !endlist {
        out.push(violation(0, "a VOD playlist must end with EXT-X-ENDLIST"));
    }
    out
}

/// Violations of RFC 8216 in a master playlist; empty when it is sound.
pub fn validate_master(text: &str) -> Vec<Violation> {
    let lines = lines(text);
    let mut out = Vec::new();
    check_header(&lines, &mut out);
    let mut groups = HashSet::new();
    let mut wanted_groups = Vec::new();
    let mut expect_uri: Option<usize> = None;
    let mut variants = 0;
    for &(n, line) in &lines {
        if line.starts_with("#EXTINF")
            || line.starts_with("#EXT-X-TARGETDURATION")
            || line == "#EXT-X-ENDLIST"
        {
            out.push(violation(n, "a media playlist tag in a master playlist"));
        } else if let Some(list) = tag_value(line, "#EXT-X-MEDIA") {
            let attrs = attributes(list);
            for required in ["TYPE", "GROUP-ID", "NAME"] {
                if attr(&attrs, required).is_none() {
                    out.push(violation(n, format!("EXT-X-MEDIA needs {required}")));
                }
            }
            if let (Some(t), Some(g)) = (attr(&attrs, "TYPE"), attr(&attrs, "GROUP-ID")) {
                groups.insert((t.to_string(), g.to_string()));
            }
        } else if let Some(list) = tag_value(line, "#EXT-X-STREAM-INF") {
            let attrs = attributes(list);
            variants += 1;
            let bandwidth = attr(&attrs, "BANDWIDTH").and_then(|b| b.parse::<u64>().ok());
            match bandwidth {
                None => out.push(violation(n, "EXT-X-STREAM-INF needs a BANDWIDTH")),
                Some(peak) => {
                    if let Some(avg) =
                        attr(&attrs, "AVERAGE-BANDWIDTH").and_then(|a| a.parse::<u64>().ok())
                        && avg > peak
                    {
                        out.push(violation(n, "AVERAGE-BANDWIDTH above BANDWIDTH"));
                    }
                }
            }
            if let Some(g) = attr(&attrs, "AUDIO") {
                wanted_groups.push((n, g.to_string()));
            }
            expect_uri = Some(n);
        } else if !line.starts_with('#') && expect_uri.take().is_none() {
            out.push(violation(n, "a URI that follows no EXT-X-STREAM-INF"));
        }
    }
    if let Some(n) = expect_uri {
        out.push(violation(n, "an EXT-X-STREAM-INF without a URI"));
    }
    for (n, g) in wanted_groups {
        if !groups.contains(&("AUDIO".to_string(), g.clone())) {
            out.push(violation(n, format!("AUDIO group {g} has no EXT-X-MEDIA")));
        }
    }
    if variants == 0 {
        out.push(violation(0, "a master playlist needs at least one variant"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_extinf_over_target() {
        let v = validate_media(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.6,\na.ts\n#EXT-X-ENDLIST\n",
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].rule.contains("rounds above"));
    }

    #[test]
    fn flags_missing_endlist_on_vod_and_low_version() {
        let v = validate_media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:5.5,\na.ts\n",
        );
        assert!(v.iter().any(|x| x.rule.contains("ENDLIST")));
        assert!(v.iter().any(|x| x.rule.contains("VERSION 3")));
    }

    #[test]
    fn flags_mixed_tags_and_duplicates() {
        let v = validate_media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-TARGETDURATION:6\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXTINF:5,\na.ts\n",
        );
        assert!(v.iter().any(|x| x.rule.contains("more than once")));
        assert!(v.iter().any(|x| x.rule.contains("master playlist tag")));
    }

    #[test]
    fn master_needs_bandwidth_uri_and_known_groups() {
        let v = validate_master(
            "#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1,AUDIO=\"a\"\nv/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=5\n",
        );
        assert!(v.iter().any(|x| x.rule.contains("BANDWIDTH")));
        assert!(v.iter().any(|x| x.rule.contains("without a URI")));
        assert!(v.iter().any(|x| x.rule.contains("group a")));
    }

    #[test]
    fn master_refuses_average_above_peak() {
        let v =
            validate_master("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=5,AVERAGE-BANDWIDTH=6\nv.m3u8\n");
        assert_eq!(v.len(), 1);
    }
}
