//! Access and playback token checks on arbitrary text (common::auth, catalog::playback).
//!
//! Each input is tried three ways against `AccessTokens::verify` and
//! `PlaybackTokens::verify`, both keyed with SECRET:
//! 1. the bytes as a token (lossy UTF-8);
//! 2. the bytes split at '.', each part base64url-encoded: so the fuzzer writes the
//!    JSON of the header and claims and the raw signature bytes;
//! 3. as 2, but the first two parts signed with HS256 and SECRET, as if the key had
//!    signed claims that `issue` never writes.
//!
//! Properties: verify never panics; 1 and 2 are never accepted (nothing here was
//! produced by `issue` with SECRET, and the fuzzer cannot compute an HMAC); in 3 a token
//! is accepted only if its header says HS256 and its claims are ones the verifier must
//! take: the right issuer and audience, an expiry not past, and the grant returned is
//! the one the claims state.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use lectern_catalog::playback::PlaybackTokens;
use lectern_common::auth::{AccessTokens, Role};
use serde_json::Value;

/// No committed seed is signed with this key.
const SECRET: &[u8] = b"lectern-fuzz-token-secret-000001";

static ACCESS: LazyLock<AccessTokens> = LazyLock::new(|| AccessTokens::new(SECRET, 3600));
static PLAYBACK: LazyLock<PlaybackTokens> = LazyLock::new(|| PlaybackTokens::new(SECRET, 3600));

fn json_part(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

fn never_accepted(token: &str) {
    if let Some(user) = ACCESS.verify(token) {
        panic!("access token accepted for {user:?}: {token:?}");
    }
    if let Some(grant) = PLAYBACK.verify(token) {
        panic!("playback token accepted for {grant:?}: {token:?}");
    }
}

fn check_signed(token: &str) {
    let now = lectern_common::now_unix();
    let access = ACCESS.verify(token);
    let playback = PLAYBACK.verify(token);
    if access.is_none() && playback.is_none() {
        return;
    }
    let mut parts = token.split('.');
    let header = parts.next().and_then(json_part).unwrap_or_else(|| panic!("accepted a bad header: {token:?}"));
    let claims = parts.next().and_then(json_part).unwrap_or_else(|| panic!("accepted bad claims: {token:?}"));
    assert_eq!(header["alg"], "HS256", "accepted {header} {claims}");
    assert_eq!(claims["iss"], "lectern", "accepted {header} {claims}");
    let exp = claims["exp"].as_i64().unwrap_or_else(|| panic!("accepted a non-integer exp: {claims}"));
    assert!(exp >= now, "accepted an expired token: {claims}");
    if let Some(user) = access {
        assert_eq!(claims["aud"], "lectern-api", "access token accepted: {claims}");
        assert_eq!(claims["sub"].as_str(), Some(user.id.as_str()), "{claims}");
        assert_eq!(claims["role"].as_str().and_then(Role::parse), Some(user.role), "{claims}");
    }
    if let Some(grant) = playback {
        assert_eq!(claims["aud"], "lectern-play", "playback token accepted: {claims}");
        assert_eq!(claims["sub"].as_str(), Some(grant.lecture_id.as_str()), "{claims}");
        assert_eq!(claims["asset"].as_str(), Some(grant.asset_id.as_str()), "{claims}");
        assert_eq!(grant.expires_at, exp, "{claims}");
        assert!(claims["uid"].is_string(), "{claims}");
    }
}

fuzz_target!(|data: &[u8]| {
    never_accepted(&String::from_utf8_lossy(data));

    let parts: Vec<String> = data.split(|b| *b == b'.').map(|p| URL_SAFE_NO_PAD.encode(p)).collect();
    never_accepted(&parts.join("."));

    if parts.len() >= 2 {
        let message = format!("{}.{}", parts[0], parts[1]);
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(SECRET), Algorithm::HS256)
            .expect("HS256 signing cannot fail");
        check_signed(&format!("{message}.{signature}"));
    }
});
