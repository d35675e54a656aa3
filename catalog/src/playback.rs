//! Playback: short-lived signed tokens that sit in the path (`/play/{token}/…`), so
//! every relative URI in the playlists inherits them and a CDN can cache by path; and
//! the streaming of an asset's files from storage with Range, ETag and CORS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;
use lectern_common::storage::ByteRange;

const ISSUER: &str = "lectern";
const AUDIENCE: &str = "lectern-play";
/// How many verified tokens are remembered (about 400 bytes each).
const VERIFIED_CAPACITY: usize = 8192;

#[derive(Debug, Serialize, Deserialize)]
struct PlayClaims {
    /// The lecture this token plays.
    sub: String,
    /// The asset (transcode output) it plays.
    asset: String,
    /// Who it was issued to, for the logs.
    uid: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Signs and checks playback tokens with their own key (not the access-token key).
#[derive(Clone)]
pub struct PlaybackTokens {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    // Built once: every request to /play checks a token, and building the rules
    // allocates three sets.
    validation: Arc<Validation>,
    /// Tokens whose signature and claims were checked, by their exact text. A player
    /// sends one token with every playlist and segment request; checking it anew
    /// (base64, JSON, HMAC) was the largest share of a cached playlist's CPU time.
    /// Expiry is still checked on every use; the key never changes while we run.
    /// Hashed with foldhash: SipHash over the 400-byte token took more of the look-up
    /// than the rest of it.
    verified: Arc<Mutex<HashMap<Box<str>, Arc<PlayGrant>, foldhash::quality::RandomState>>>,
    pub ttl_secs: i64,
}

/// What a valid playback token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayGrant {
    pub lecture_id: String,
    pub asset_id: String,
    pub expires_at: i64,
}

impl PlaybackTokens {
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        Self {
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            validation: Arc::new(Self::rules()),
            verified: Arc::default(),
            ttl_secs,
        }
    }

    /// What a token must be: HS256 with this key, for the playback audience, from us,
    /// unexpired to the second.
    fn rules() -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 0;
        validation
    }

    pub fn issue(&self, lecture_id: &str, asset_id: &str, user_id: &str) -> (String, i64) {
        let now = lectern_common::now_unix();
        let exp = now + self.ttl_secs;
        let claims = PlayClaims {
            sub: lecture_id.into(),
            asset: asset_id.into(),
            uid: user_id.into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail");
        (token, exp)
    }

    /// The grant of a token, or None if it is forged, tampered, expired, unsigned
    /// (alg none) or signed with another key or algorithm.
    pub fn verify(&self, token: &str) -> Option<Arc<PlayGrant>> {
        self.verify_at(token, lectern_common::now_unix())
    }

    /// `verify` at `now` (unix seconds) for remembered tokens; a token seen for the
    /// first time is checked against the clock.
    fn verify_at(&self, token: &str, now: i64) -> Option<Arc<PlayGrant>> {
        if token.len() > 4096 {
            return None;
        }
        if let Some(grant) = self.verified.lock().expect("verified tokens lock").get(token) {
            // The signature check's own rule: valid up to and including `exp`.
            return (now <= grant.expires_at).then(|| grant.clone());
        }
        let data = jsonwebtoken::decode::<PlayClaims>(token, &self.decoding, &self.validation).ok()?;
        let grant = Arc::new(PlayGrant { lecture_id: data.claims.sub, asset_id: data.claims.asset, expires_at: data.claims.exp });
        let mut verified = self.verified.lock().expect("verified tokens lock");
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, g| now <= g.expires_at);
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(token.into(), grant.clone());
        Some(grant)
    }
}

/// The files of an asset a player may fetch, and their content types. Anything else
/// (internal files, traversal, odd characters) is refused before storage is asked.
pub fn playable_file(path: &str) -> Option<&'static str> {
    if path.is_empty() || path.len() > 200 {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 2 {
        return None;
    }
    for part in &parts {
        let ok_chars = part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if part.is_empty() || !ok_chars || part.starts_with('.') || part.contains("..") {
            return None;
        }
    }
    let name = parts[parts.len() - 1];
    let content_type = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("ts") => "video/mp2t",
        Some("jpg") => "image/jpeg",
        Some("vtt") => "text/vtt; charset=utf-8",
        _ => return None,
    };
    if parts.len() == 1 {
        // Top level: the master playlist, poster and storyboard only.
        let known = ["master.m3u8", "poster.jpg", "storyboard.jpg", "storyboard.vtt"];
        return known.contains(&name).then_some(content_type);
    }
    (name == "index.m3u8" || name.ends_with(".ts")).then_some(content_type)
}

/// Parses a Range header against an object's size. `Ok(None)` means serve it whole
/// (no header, or a form we do not serve partially such as several ranges).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, CatalogError> {
    let Some(value) = header else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(CatalogError::RangeNotSatisfiable { size })?;
    let (start, end) = (start.trim(), end.trim());
    let parse = |s: &str| s.parse::<u64>().map_err(|_| CatalogError::RangeNotSatisfiable { size });
    let range = if start.is_empty() {
        let suffix = parse(end)?;
        if suffix == 0 || size == 0 {
            return Err(CatalogError::RangeNotSatisfiable { size });
        }
        ByteRange { start: size.saturating_sub(suffix), end: size - 1 }
    } else {
        let start = parse(start)?;
        let end = if end.is_empty() { size.saturating_sub(1) } else { parse(end)?.min(size.saturating_sub(1)) };
        if start >= size || end < start {
            return Err(CatalogError::RangeNotSatisfiable { size });
        }
        ByteRange { start, end }
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_carry_their_grant() {
        let t = PlaybackTokens::new(b"playback-secret-playback-secret-", 60);
        let (token, exp) = t.issue("lec", "asset", "user");
        let grant = t.verify(&token).unwrap();
        assert_eq!(*grant, PlayGrant { lecture_id: "lec".into(), asset_id: "asset".into(), expires_at: exp });
        // Again, from what the first check remembered.
        assert_eq!(*t.verify(&token).unwrap(), *grant);
    }

    #[test]
    fn forged_expired_tampered_and_unsigned_tokens_fail() {
        let t = PlaybackTokens::new(b"playback-secret-playback-secret-", 60);
        let other = PlaybackTokens::new(b"another-secret-another-secret-xx", 60);
        assert!(t.verify(&other.issue("lec", "a", "u").0).is_none());
        let expired = PlaybackTokens::new(b"playback-secret-playback-secret-", -5);
        assert!(t.verify(&expired.issue("lec", "a", "u").0).is_none());
        let (token, _) = t.issue("lec", "a", "u");
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[2] = format!("{}A", &parts[2][..parts[2].len() - 1]);
        let tampered = parts.join(".");
        if tampered != token {
            assert!(t.verify(&tampered).is_none());
        }
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", token.split('.').nth(1).unwrap());
        assert!(t.verify(&none).is_none());
        assert!(t.verify("").is_none());
        // Remembering the genuine token admits nothing else.
        assert!(t.verify(&token).is_some());
        if tampered != token {
            assert!(t.verify(&tampered).is_none());
        }
        assert!(t.verify(&none).is_none());
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let t = PlaybackTokens::new(b"playback-secret-playback-secret-", 60);
        let (token, exp) = t.issue("lec", "a", "u");
        assert!(t.verify(&token).is_some());
        assert!(t.verify_at(&token, exp).is_some(), "valid through its last second");
        assert!(t.verify_at(&token, exp + 1).is_none(), "expired, though remembered");
    }

    #[test]
    fn remembered_tokens_stay_within_their_bound() {
        let t = PlaybackTokens::new(b"playback-secret-playback-secret-", 60);
        for i in 0..VERIFIED_CAPACITY + 10 {
            assert!(t.verify(&t.issue(&format!("lec{i}"), "a", "u").0).is_some());
        }
        let remembered = t.verified.lock().unwrap().len();
        assert!(remembered > 0 && remembered <= VERIFIED_CAPACITY, "{remembered}");
    }

    #[test]
    fn only_playable_files_are_served() {
        assert_eq!(playable_file("master.m3u8"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(playable_file("v720/index.m3u8"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(playable_file("v720/seg_00001.ts"), Some("video/mp2t"));
        assert_eq!(playable_file("poster.jpg"), Some("image/jpeg"));
        assert!(playable_file("storyboard.vtt").unwrap().starts_with("text/vtt"));
        for bad in [
            "manifest.json", "../x/master.m3u8", "v720/../../etc/passwd", "a/b/c.ts", "", "/master.m3u8", ".hidden.ts",
            "v720/seg.ts/..", "v720\\seg.ts", "v720/%2e%2e", "v720/index.m3u8.bak", "random.m3u8",
        ] {
            assert_eq!(playable_file(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-9"), 100).unwrap(), Some(ByteRange { start: 0, end: 9 }));
        assert_eq!(parse_range(Some("bytes=90-"), 100).unwrap(), Some(ByteRange { start: 90, end: 99 }));
        assert_eq!(parse_range(Some("bytes=-10"), 100).unwrap(), Some(ByteRange { start: 90, end: 99 }));
        assert_eq!(parse_range(Some("bytes=50-500"), 100).unwrap(), Some(ByteRange { start: 50, end: 99 }));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100).unwrap(), None);
        assert!(parse_range(Some("bytes=100-"), 100).is_err());
        assert!(parse_range(Some("bytes=5-2"), 100).is_err());
        assert!(parse_range(Some("bytes=x-2"), 100).is_err());
        assert!(parse_range(Some("bytes=-0"), 100).is_err());
    }
}
