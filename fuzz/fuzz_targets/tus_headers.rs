//! tus header parsing on arbitrary header values (ingest/src/tus.rs).
//!
//! Properties:
//! - `parse_u64`, `parse_metadata` and `parse_checksum` never panic;
//! - `parse_u64` accepts exactly 1..=19 ASCII digits (after trimming) and returns their value;
//! - whatever `parse_metadata` accepts re-encodes (`key base64(value)`, comma-separated)
//!   into a header that parses back to the same map;
//! - whatever `parse_checksum` accepts has the digest length of its algorithm and
//!   re-encodes into a header that parses back to the same checksum.
#![no_main]

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use lectern_ingest::tus::{self, ChecksumAlgorithm};

fn encode_metadata(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k} {}", STANDARD.encode(v)) })
        .collect::<Vec<_>>()
        .join(",")
}

fn check(value: &str) {
    // Upload-Length / Upload-Offset.
    let trimmed = value.trim();
    let digits = !trimmed.is_empty() && trimmed.len() <= 19 && trimmed.bytes().all(|b| b.is_ascii_digit());
    match tus::parse_u64(value, "Upload-Length") {
        Ok(n) => {
            assert!(digits, "parse_u64 accepted {value:?} as {n}");
            assert_eq!(Ok(n), trimmed.parse::<u64>(), "parse_u64({value:?})");
        }
        Err(e) => {
            assert!(!digits, "parse_u64 refused {value:?}: {e}");
            assert_eq!(e, tus::HeaderError::NotANumber("Upload-Length"));
        }
    }

    // Upload-Metadata.
    if let Ok(map) = tus::parse_metadata(value) {
        for key in map.keys() {
            assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic() && b != b','), "key {key:?}");
        }
        let encoded = encode_metadata(&map);
        assert_eq!(tus::parse_metadata(&encoded).as_ref(), Ok(&map), "re-encoded {value:?} as {encoded:?}");
    }

    // Upload-Checksum.
    if let Ok(c) = tus::parse_checksum(value) {
        let (name, len) = match c.algorithm {
            ChecksumAlgorithm::Sha1 => ("sha1", 20),
            ChecksumAlgorithm::Sha256 => ("sha256", 32),
        };
        assert_eq!(c.digest.len(), len, "{value:?}");
        let encoded = format!("{name} {}", STANDARD.encode(&c.digest));
        assert_eq!(tus::parse_checksum(&encoded).as_ref(), Ok(&c), "re-encoded {value:?} as {encoded:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    // Header values reach the parsers as &str (axum's to_str() gives visible ASCII, but
    // the parsers take any &str): try the bytes as UTF-8, else their lossy form.
    match std::str::from_utf8(data) {
        Ok(s) => check(s),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
