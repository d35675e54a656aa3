//! Malleability of issued tokens (common::auth, catalog::playback).
//!
//! A token is issued with a fuzzer-chosen secret and claims, then fuzzer-chosen byte
//! edits are applied to it. Properties:
//! - the untouched token verifies, to the claims it was issued for, and not under
//!   another secret nor with the other kind of verifier (a playback token longer than
//!   4096 bytes is refused by design);
//! - an edited token that verifies carries exactly the original claims: the same
//!   grant returned, and the same signed content (for an access token the claims JSON,
//!   iat and exp included; for a playback token its 57 bytes). So no edit forges a
//!   different identity, role, lecture, asset or expiry.
#![no_main]

use lectern_seams::ids::{AssetId, LectureId, UserId};
use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use lectern_catalog::playback::PlaybackTokens;
use lectern_web::auth::{AccessTokens, Role};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Arbitrary)]
enum Edit {
    Set { at: u16, byte: u8 },
    Insert { at: u16, byte: u8 },
    Delete { at: u16 },
    FlipBit { at: u16, bit: u8 },
    Swap { a: u16, b: u16 },
    Truncate { len: u16 },
    /// Copies a range of the token over another place (e.g. one part over another).
    Copy { from: u16, len: u8, to: u16 },
}

#[derive(Debug, Arbitrary)]
struct Input {
    secret: Vec<u8>,
    playback: bool,
    role: u8,
    user: String,
    /// Playback tokens carry Lectern ids, UUIDs.
    lecture: [u8; 16],
    asset: [u8; 16],
    edits: Vec<Edit>,
}

fn apply(token: &mut Vec<u8>, edit: &Edit) {
    let at = |i: u16, len: usize| if len == 0 { 0 } else { usize::from(i) % len };
    let len = token.len();
    match *edit {
        Edit::Set { at: i, byte } if len > 0 => token[at(i, len)] = byte,
        Edit::Insert { at: i, byte } => token.insert(at(i, len + 1), byte),
        Edit::Delete { at: i } if len > 0 => {
            token.remove(at(i, len));
        }
        Edit::FlipBit { at: i, bit } if len > 0 => token[at(i, len)] ^= 1 << (bit % 8),
        Edit::Swap { a, b } if len > 0 => token.swap(at(a, len), at(b, len)),
        Edit::Truncate { len: l } => token.truncate(usize::from(l) % (len + 1)),
        Edit::Copy { from, len: n, to } if len > 0 => {
            let from = at(from, len);
            let n = usize::from(n).min(len - from);
            let chunk = token[from..from + n].to_vec();
            let to = at(to, len);
            let end = (to + n).min(len);
            token[to..end].copy_from_slice(&chunk[..end - to]);
        }
        _ => {}
    }
}

/// What a token signs: an access token's claims JSON, a playback token's bytes.
fn signed_content(token: &str, playback: bool) -> Value {
    if playback {
        return Value::from(URL_SAFE_NO_PAD.decode(token).expect("an accepted playback token is base64url"));
    }
    let payload = token.split('.').nth(1).expect("an accepted token has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("an accepted payload is base64url"))
        .expect("an accepted payload is JSON")
}

fuzz_target!(|input: Input| {
    let mut other_secret = input.secret.clone();
    other_secret.push(b'!');
    let role = [Role::Student, Role::Owner, Role::Admin][usize::from(input.role % 3)];
    let access = AccessTokens::new(&input.secret, 3600);
    let playback = PlaybackTokens::new(&input.secret, 3600);

    let (token, verify): (String, Box<dyn Fn(&str) -> Option<String>>) = if input.playback {
        let (lecture, asset) = (Uuid::from_bytes(input.lecture).to_string(), Uuid::from_bytes(input.asset).to_string());
        let ids = (LectureId::parse(&lecture).expect("a UUID"), AssetId::parse(&asset).expect("a UUID"));
        let (token, exp) = playback.issue(&ids.0, &ids.1).expect("ids are UUIDs");
        let grant = playback.verify(&token).expect("an issued playback token verifies");
        assert_eq!((grant.lecture_id.as_str(), grant.asset_id.as_str(), grant.expires_at), (lecture.as_str(), asset.as_str(), exp));
        assert!(PlaybackTokens::new(&other_secret, 3600).verify(&token).is_none());
        assert!(access.verify(&token).is_none(), "a playback token passed as an access token");
        (token, Box::new(|t: &str| playback.verify(t).map(|g| format!("{g:?}"))))
    } else {
        // Any text as the subject: an id read back from a token is not re-checked.
        let user_id: UserId = serde_json::from_value(Value::String(input.user.clone())).expect("any text");
        let token = access.issue(&user_id, role);
        let user = access.verify(&token).expect("an issued access token verifies");
        assert_eq!((user.id.as_str(), user.role), (input.user.as_str(), role));
        assert!(AccessTokens::new(&other_secret, 3600).verify(&token).is_none());
        assert!(playback.verify(&token).is_none(), "an access token passed as a playback token");
        (token, Box::new(|t: &str| access.verify(t).map(|u| format!("{:?}", (u.id, u.role)))))
    };
    let original = verify(&token).expect("verifies");
    let original_claims = signed_content(&token, input.playback);

    let mut bytes = token.clone().into_bytes();
    for edit in &input.edits {
        apply(&mut bytes, edit);
    }
    let edited = String::from_utf8_lossy(&bytes);
    if let Some(grant) = verify(&edited) {
        assert_eq!(grant, original, "edited token {edited:?} (from {token:?}) accepted with other claims");
        assert_eq!(signed_content(&edited, input.playback), original_claims, "edited token {edited:?} (from {token:?})");
    }
});
