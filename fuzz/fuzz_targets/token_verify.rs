//! Access and playback token checks on arbitrary text (common::auth, catalog::playback).
//!
//! Each input is tried four ways against `AccessTokens::verify` and
//! `PlaybackTokens::verify`, both keyed with SECRET:
//! 1. the bytes as a token (lossy UTF-8);
//! 2. the bytes split at '.', each part base64url-encoded: so the fuzzer writes the
//!    JSON of the header and claims and the raw signature bytes;
//! 3. as 2, but the first two parts signed with HS256 and SECRET, as if the key had
//!    signed claims that `issue` never writes;
//! 4. the first 41 bytes as a playback token's signed part (format, expiry, lecture,
//!    asset), tagged with HMAC-SHA256 and SECRET as `PlaybackTokens::issue` tags, and
//!    base64url-encoded.
//!
//! Properties: verify never panics; 1 and 2 are never accepted (nothing here was
//! produced by `issue` with SECRET, and the fuzzer cannot compute an HMAC); in 3 only
//! an access token is accepted, and only if its header says HS256 and its claims are
//! ones the verifier must take: the right issuer and audience, an expiry not past, and
//! the user returned is the one the claims state; in 4 a playback token is accepted
//! only in format 1 with an expiry not past, granting the ids its bytes hold, and never
//! as an access token.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use lectern_catalog::playback::PlaybackTokens;
use lectern_web::auth::{AccessTokens, Role};
use serde_json::Value;
use sha2::Sha256;
use hmac::{Hmac, Mac};
use uuid::Uuid;

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
    let now = lectern_seams::now_unix();
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
    assert!(playback.is_none(), "a JWT accepted as a playback token: {claims}");
}

fn check_signed_playback(signed: &[u8]) {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(signed);
    let tag = mac.finalize().into_bytes();
    let token = URL_SAFE_NO_PAD.encode([signed, &tag[..16]].concat());
    assert!(ACCESS.verify(&token).is_none(), "a playback token accepted as an access token: {token}");
    let Some(grant) = PLAYBACK.verify(&token) else { return };
    let exp = i64::from_be_bytes(signed[1..9].try_into().unwrap());
    assert_eq!(signed[0], 1, "accepted another format: {token}");
    assert!(exp >= lectern_seams::now_unix(), "accepted an expired token: {token}");
    assert_eq!(grant.expires_at, exp);
    assert_eq!(grant.lecture_id.as_str(), Uuid::from_slice(&signed[9..25]).unwrap().to_string());
    assert_eq!(grant.asset_id.as_str(), Uuid::from_slice(&signed[25..41]).unwrap().to_string());
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

    if data.len() >= 41 {
        check_signed_playback(&data[..41]);
    }
});
