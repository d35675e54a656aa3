//! tus 1.0 protocol headers, parsed and checked (no I/O).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub const VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,creation-with-upload,checksum,termination,expiration";
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
pub const OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{0} must be a non-negative integer")]
    NotANumber(&'static str),
    #[error("Upload-Metadata is malformed: {0}")]
    Metadata(String),
    #[error("Upload-Checksum must be '<algorithm> <base64 digest>'")]
    ChecksumSyntax,
    #[error("checksum algorithm {0:?} is not supported (sha1, sha256)")]
    ChecksumAlgorithm(String),
}

/// A non-negative decimal header value such as Upload-Length or Upload-Offset.
pub fn parse_u64(value: &str, name: &'static str) -> Result<u64, HeaderError> {
    let v = value.trim();
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::NotANumber(name));
    }
    v.parse().map_err(|_| HeaderError::NotANumber(name))
}

/// Upload-Metadata: comma-separated `key base64value` pairs (value optional).
pub fn parse_metadata(value: &str) -> Result<BTreeMap<String, String>, HeaderError> {
    let mut out = BTreeMap::new();
    for pair in value.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let mut parts = pair.splitn(2, ' ');
        let key = parts.next().unwrap_or_default();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(HeaderError::Metadata(format!("bad key {key:?}")));
        }
        let decoded = match parts.next().map(str::trim) {
            None | Some("") => String::new(),
            Some(v) => {
                let bytes = STANDARD
                    .decode(v)
                    .map_err(|_| HeaderError::Metadata(format!("value of {key} is not base64")))?;
                String::from_utf8(bytes)
                    .map_err(|_| HeaderError::Metadata(format!("value of {key} is not UTF-8")))?
            }
        };
        if out.insert(key.to_string(), decoded).is_some() {
            return Err(HeaderError::Metadata(format!("key {key} appears twice")));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub digest: Vec<u8>,
}

/// Upload-Checksum: `<algorithm> <base64 digest>`.
pub fn parse_checksum(value: &str) -> Result<Checksum, HeaderError> {
    let (algo, digest) = value
        .trim()
        .split_once(' ')
        .ok_or(HeaderError::ChecksumSyntax)?;
    let algorithm = match algo.to_ascii_lowercase().as_str() {
        "sha1" => ChecksumAlgorithm::Sha1,
        "sha256" => ChecksumAlgorithm::Sha256,
        other => return Err(HeaderError::ChecksumAlgorithm(other.to_string())),
    };
    let digest = STANDARD
        .decode(digest.trim())
        .map_err(|_| HeaderError::ChecksumSyntax)?;
    let expected_len = match algorithm {
        ChecksumAlgorithm::Sha1 => 20,
        ChecksumAlgorithm::Sha256 => 32,
    };
    if digest.len() != expected_len {
        return Err(HeaderError::ChecksumSyntax);
    }
    Ok(Checksum { algorithm, digest })
}

/// A running digest of the bytes of one PATCH.
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        use sha2::Digest;
        match algorithm {
            ChecksumAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("42", "Upload-Length"), Ok(42));
        assert_eq!(parse_u64(" 0 ", "Upload-Offset"), Ok(0));
        for bad in ["", "-1", "+1", "1e3", "0x10", "99999999999999999999", "1 2"] {
            assert!(parse_u64(bad, "Upload-Length").is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_pairs_decode() {
        let m =
            parse_metadata("filename bGVjdHVyZS5tcDQ=,lecture_id YWJj, is_confidential").unwrap();
        assert_eq!(m["filename"], "lecture.mp4");
        assert_eq!(m["lecture_id"], "abc");
        assert_eq!(m["is_confidential"], "");
        assert!(parse_metadata("filename !!!").is_err());
        assert!(parse_metadata("a YQ==,a YQ==").is_err());
        assert!(parse_metadata("").unwrap().is_empty());
    }

    #[test]
    fn checksums() {
        let c = parse_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!(c.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(c.digest.len(), 20);
        assert!(matches!(
            parse_checksum("md5 AAAA"),
            Err(HeaderError::ChecksumAlgorithm(_))
        ));
        assert!(parse_checksum("sha256 short").is_err());
        assert!(parse_checksum("sha256").is_err());
        let mut h = Hasher::new(ChecksumAlgorithm::Sha1);
        h.update(b"hello world");
        assert_eq!(h.finish(), c.digest);
    }
}
