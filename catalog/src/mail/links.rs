//! Signed tokens in mail links: `base64url(claims JSON).base64url(HMAC-SHA256)`, keyed by
//! a key derived from the access-token secret, so every catalog process of an
//! installation accepts the links any of them wrote. A verify link names the account
//! and its address and expires; an unsubscribe link names a student and a course and
//! does not expire (a mail read weeks later must still unsubscribe).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a link lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "snake_case")]
pub enum Claim {
    /// Confirm that `email` is the address of account `u`, until `x` (unix seconds).
    Verify { u: String, e: String, x: i64 },
    /// Stop new-lecture mail of course `c` to student `u`.
    Unsubscribe { u: String, c: String },
}

/// The key mail links are signed with, derived from the access-token secret (a key of
/// its own: a mail link is never an access token, nor the other way round).
pub fn derive_key(access_secret: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(access_secret).expect("HMAC takes any key");
    mac.update(b"lectern mail links v1");
    mac.finalize().into_bytes().to_vec()
}

fn mac(key: &[u8], body: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(body.as_bytes());
    mac
}

pub fn sign(key: &[u8], claim: &Claim) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claim).expect("claims serialize"));
    let tag = URL_SAFE_NO_PAD.encode(mac(key, &body).finalize().into_bytes());
    format!("{body}.{tag}")
}

/// The claim of a token this key signed that has not expired at `now`.
pub fn open(key: &[u8], token: &str, now: i64) -> Option<Claim> {
    let (body, tag) = token.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    mac(key, body).verify_slice(&tag).ok()?;
    let claim: Claim = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
    match &claim {
        Claim::Verify { x, .. } if *x <= now => None,
        _ => Some(claim),
    }
}

/// A random single-use secret (a password reset's) and the hash kept of it.
pub fn random_secret() -> (String, String) {
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let hash = secret_hash(&secret);
    (secret, hash)
}

pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_links_open_only_with_their_key_and_in_time() {
        let key = derive_key(b"0123456789abcdef0123456789abcdef");
        assert_ne!(key, derive_key(b"another secret of thirty-two bytes"));
        let claim = Claim::Verify {
            u: "u1".into(),
            e: "ada@example.org".into(),
            x: 1000,
        };
        let token = sign(&key, &claim);
        assert_eq!(open(&key, &token, 999), Some(claim));
        assert_eq!(open(&key, &token, 1000), None, "expired");
        assert_eq!(open(b"other key", &token, 999), None);
        // A changed claim does not carry the tag.
        let (body, tag) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap())
                .unwrap()
                .replace("u1", "u2"),
        );
        assert_eq!(open(&key, &format!("{forged}.{tag}"), 0), None);
        for junk in ["", ".", "abc", "a.b", "!!.!!"] {
            assert_eq!(open(&key, junk, 0), None);
        }
    }

    #[test]
    fn unsubscribe_links_do_not_expire() {
        let key = derive_key(b"0123456789abcdef0123456789abcdef");
        let claim = Claim::Unsubscribe {
            u: "u".into(),
            c: "c".into(),
        };
        assert_eq!(open(&key, &sign(&key, &claim), i64::MAX), Some(claim));
    }

    #[test]
    fn reset_secrets_are_kept_as_hashes() {
        let (a, hash) = random_secret();
        let (b, _) = random_secret();
        assert_ne!(a, b);
        assert_eq!(hash, secret_hash(&a));
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&a));
    }
}
