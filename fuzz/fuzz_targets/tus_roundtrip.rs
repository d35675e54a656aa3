//! tus round trips from structured input (ingest/src/tus.rs).
//!
//! Properties:
//! - a map of valid keys to any UTF-8 values, encoded the way a tus client does
//!   (with blank pairs and whitespace a client may add), parses back to that map;
//! - `Hasher` fed the bytes in any chunking gives the one-shot SHA-1/SHA-256 digest,
//!   and the `Upload-Checksum` header of that digest (any case of the algorithm name,
//!   surrounding whitespace) parses back to it; a digest one byte short is refused.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use lectern_ingest::tus::{self, ChecksumAlgorithm, Hasher};

#[derive(Debug, Arbitrary)]
struct Pair {
    /// Mapped onto visible ASCII without ',' (the keys tus allows).
    key: Vec<u8>,
    value: String,
    /// Whitespace before and after the pair, and blank pairs after it.
    pad_before: u8,
    pad_after: u8,
    blanks_after: u8,
}

#[derive(Debug, Arbitrary)]
struct Input {
    pairs: Vec<Pair>,
    sha256: bool,
    upper: bool,
    pad: u8,
    chunks: Vec<Vec<u8>>,
}

fn pad(n: u8) -> &'static str {
    ["", " ", "  ", "\t", " \t "][usize::from(n) % 5]
}

fn key(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b'!' + b % 94 {
            b',' => '_',
            c => char::from(c),
        })
        .collect()
}

fuzz_target!(|input: Input| {
    // Upload-Metadata.
    let mut expected = BTreeMap::new();
    let mut header = String::new();
    for p in &input.pairs {
        let k = key(&p.key);
        if k.is_empty() || expected.contains_key(&k) {
            continue;
        }
        if !header.is_empty() {
            header.push(',');
        }
        header.push_str(pad(p.pad_before));
        header.push_str(&k);
        if !p.value.is_empty() {
            header.push(' ');
            header.push_str(&STANDARD.encode(&p.value));
        }
        header.push_str(pad(p.pad_after));
        for _ in 0..p.blanks_after % 3 {
            header.push(',');
            header.push_str(pad(p.pad_after));
        }
        expected.insert(k, p.value.clone());
    }
    assert_eq!(tus::parse_metadata(&header), Ok(expected.clone()), "header {header:?}");
    // A key repeated is refused.
    if let Some((k, _)) = expected.iter().next() {
        let doubled = format!("{header},{k}");
        assert!(tus::parse_metadata(&doubled).is_err(), "{doubled:?}");
    }

    // Upload-Checksum and the running digest.
    let algorithm = if input.sha256 { ChecksumAlgorithm::Sha256 } else { ChecksumAlgorithm::Sha1 };
    let mut hasher = Hasher::new(algorithm);
    let mut all = Vec::new();
    for c in &input.chunks {
        hasher.update(c);
        all.extend_from_slice(c);
    }
    let digest = hasher.finish();
    let one_shot = {
        use sha2::Digest;
        if input.sha256 { sha2::Sha256::digest(&all).to_vec() } else { sha1::Sha1::digest(&all).to_vec() }
    };
    assert_eq!(digest, one_shot);
    let name = match (input.sha256, input.upper) {
        (true, false) => "sha256",
        (true, true) => "SHA256",
        (false, false) => "sha1",
        (false, true) => "Sha1",
    };
    let value = format!("{p}{name} {}{p}", STANDARD.encode(&digest), p = pad(input.pad));
    let parsed = tus::parse_checksum(&value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    assert_eq!(parsed.algorithm, algorithm);
    assert_eq!(parsed.digest, digest);
    let short = format!("{name} {}", STANDARD.encode(&digest[1..]));
    assert!(tus::parse_checksum(&short).is_err(), "{short:?}");
});
