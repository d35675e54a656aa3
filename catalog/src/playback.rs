//! Playback: short-lived signed tokens that sit in the path (`/play/{token}/…`), so
//! every relative URI in the playlists inherits them and a CDN can cache by path; which
//! files of an asset a player may fetch; and the Range header for streamed objects.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::CatalogError;
use lectern_seams::ids::{AssetId, AttachmentId, LectureId, UserId};
use lectern_seams::storage::ByteRange;

/// A playback token is 57 bytes, written in base64url without padding (76 characters,
/// a fifth of the JWT it replaced: a player sends it with every playlist and segment,
/// and hyper checks every byte of the path):
///
/// | bytes | what |
/// |---|---|
/// | 0 | the format, [`FORMAT`] |
/// | 1..9 | expiry, unix seconds, big-endian |
/// | 9..25 | the lecture's id (a UUID) |
/// | 25..41 | the asset's id (a UUID) |
/// | 41..57 | the first 16 bytes of HMAC-SHA256 over bytes 0..41, with the playback key |
const FORMAT: u8 = 1;
/// An attachment's download link: the same layout, the attachment's and the asking
/// user's ids in place of the lecture's and asset's.
const FILE_FORMAT: u8 = 2;
/// A player's beacon token: the lecture's and the viewer's ids.
const BEACON_FORMAT: u8 = 3;
/// How long a player may send beacons after its grant: a long lecture, paused.
pub const BEACON_TTL_SECS: i64 = 12 * 3600;
const SIGNED_LEN: usize = 41;
const TAG_LEN: usize = 16;
const TOKEN_LEN: usize = SIGNED_LEN + TAG_LEN;
/// 57 bytes are 19 whole groups of three: no padding, and no spare bits that would let
/// two spellings decode to one token.
const TOKEN_CHARS: usize = TOKEN_LEN / 3 * 4;

/// Signs and checks playback tokens (and attachments' download links) with their own key (not the access-token key).
#[derive(Clone)]
pub struct PlaybackTokens {
    /// HMAC keyed once: each use clones the state instead of hashing the key again.
    mac: Hmac<Sha256>,
    pub ttl_secs: i64,
}

/// What a valid playback token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayGrant {
    pub lecture_id: LectureId,
    pub asset_id: AssetId,
    pub expires_at: i64,
}

/// What a valid download link grants: one attachment's file until it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct FileGrant {
    pub attachment_id: AttachmentId,
    pub user_id: UserId,
    pub expires_at: i64,
}

impl PlayGrant {
    /// Whole seconds until the grant ends (0 once it has).
    pub fn seconds_left(&self) -> u64 {
        (self.expires_at - lectern_seams::now_unix()).max(0) as u64
    }
}

impl PlaybackTokens {
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        Self {
            mac: Hmac::new_from_slice(secret).expect("HMAC takes a key of any length"),
            ttl_secs,
        }
    }

    /// A token for `asset_id` of `lecture_id`, and when it expires. Both must be in
    /// their one spelling; anything else is refused rather than signed as something the
    /// token would read back differently.
    pub fn issue(
        &self,
        lecture_id: &LectureId,
        asset_id: &AssetId,
    ) -> Result<(String, i64), CatalogError> {
        let id = |uuid: Option<Uuid>, text: &str| {
            uuid.ok_or_else(|| {
                CatalogError::Internal(format!("{text:?} is not an id a playback token can carry"))
            })
        };
        let lecture = id(lecture_id.uuid(), lecture_id.as_str())?;
        let asset = id(asset_id.uuid(), asset_id.as_str())?;
        let exp = lectern_seams::now_unix() + self.ttl_secs;
        Ok((self.seal(FORMAT, exp, lecture, asset), exp))
    }

    /// A download link's token for `attachment`, asked for by `user`, valid for
    /// `ttl_secs`. Its format byte keeps it from ever reading as a playback token.
    pub fn issue_file(
        &self,
        attachment: &AttachmentId,
        user: &UserId,
        ttl_secs: i64,
    ) -> Result<(String, i64), CatalogError> {
        let (Some(a), Some(u)) = (attachment.uuid(), user.uuid()) else {
            return Err(CatalogError::Internal(format!(
                "{attachment} or {user} is not an id a download link can carry"
            )));
        };
        let exp = lectern_seams::now_unix() + ttl_secs;
        Ok((self.seal(FILE_FORMAT, exp, a, u), exp))
    }

    /// What a download link's token grants, if it is genuine and unexpired.
    pub fn verify_file(&self, token: &str) -> Option<FileGrant> {
        let (format, expires_at, a, u) = self.open(token)?;
        (format == FILE_FORMAT && lectern_seams::now_unix() <= expires_at).then(|| FileGrant {
            attachment_id: AttachmentId::from_uuid(a),
            user_id: UserId::from_uuid(u),
            expires_at,
        })
    }

    /// A token a player sends with its viewing beacons: it was granted `lecture` to
    /// `user`.
    pub fn issue_beacon(&self, lecture: &LectureId, user: &UserId) -> Result<String, CatalogError> {
        let (Some(l), Some(u)) = (lecture.uuid(), user.uuid()) else {
            return Err(CatalogError::Internal(format!(
                "{lecture} or {user} is not an id a beacon token can carry"
            )));
        };
        let exp = lectern_seams::now_unix() + BEACON_TTL_SECS;
        Ok(self.seal(BEACON_FORMAT, exp, l, u))
    }

    /// Whose viewing of which lecture a beacon token vouches for, if it is genuine and
    /// unexpired.
    pub fn verify_beacon(&self, token: &str) -> Option<(LectureId, UserId)> {
        let (format, expires_at, l, u) = self.open(token)?;
        (format == BEACON_FORMAT && lectern_seams::now_unix() <= expires_at)
            .then(|| (LectureId::from_uuid(l), UserId::from_uuid(u)))
    }

    /// The token of `format` carrying `exp` and two ids, signed.
    fn seal(&self, format: u8, exp: i64, first: Uuid, second: Uuid) -> String {
        let mut token = [0u8; TOKEN_LEN];
        token[0] = format;
        token[1..9].copy_from_slice(&exp.to_be_bytes());
        token[9..25].copy_from_slice(first.as_bytes());
        token[25..41].copy_from_slice(second.as_bytes());
        let tag = self.tag(&token[..SIGNED_LEN]);
        token[SIGNED_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(token)
    }

    fn tag(&self, signed: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }

    /// The grant of a token, or None if it is forged, tampered, expired, of another
    /// format or signed with another key.
    pub fn verify(&self, token: &str) -> Option<PlayGrant> {
        self.verify_at(token, lectern_seams::now_unix())
    }

    /// `verify` at `now` (unix seconds): valid up to and including its expiry.
    fn verify_at(&self, token: &str, now: i64) -> Option<PlayGrant> {
        if token.len() != TOKEN_CHARS {
            return None;
        }
        self.check(token).filter(|grant| now <= grant.expires_at)
    }

    /// The signature and format of a token's text, and what it grants (expiry aside).
    fn check(&self, token: &str) -> Option<PlayGrant> {
        let (format, expires_at, lecture, asset) = self.open(token)?;
        (format == FORMAT).then(|| PlayGrant {
            expires_at,
            lecture_id: LectureId::from_uuid(lecture),
            asset_id: AssetId::from_uuid(asset),
        })
    }

    /// A token's format, expiry and ids, if its signature holds.
    fn open(&self, token: &str) -> Option<(u8, i64, Uuid, Uuid)> {
        if token.len() != TOKEN_CHARS {
            return None;
        }
        let mut raw = [0u8; TOKEN_LEN];
        if URL_SAFE_NO_PAD.decode_slice(token, &mut raw).ok()? != TOKEN_LEN {
            return None;
        }
        let (signed, tag) = raw.split_at(SIGNED_LEN);
        let mut mac = self.mac.clone();
        mac.update(signed);
        // Constant time, so the tag cannot be guessed a byte at a time.
        mac.verify_truncated_left(tag).ok()?;
        let uuid = |bytes: &[u8]| Uuid::from_slice(bytes).expect("16 bytes");
        Some((
            signed[0],
            i64::from_be_bytes(signed[1..9].try_into().expect("8 bytes")),
            uuid(&signed[9..25]),
            uuid(&signed[25..41]),
        ))
    }
}

/// The content type of HLS playlists.
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// The content type of a playback file, by its name's extension.
pub fn media_type(name: &str) -> Option<&'static str> {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("m3u8") => Some(PLAYLIST_TYPE),
        Some("ts") => Some("video/mp2t"),
        Some("jpg") => Some("image/jpeg"),
        Some("vtt") => Some("text/vtt; charset=utf-8"),
        _ => None,
    }
}

/// The files of an asset a player may fetch, and their content types. Anything else
/// (internal files, traversal, odd characters) is refused before storage is asked.
pub fn playable_file(path: &str) -> Option<&'static str> {
    if path.is_empty() || path.len() > 200 {
        return None;
    }
    // A file at the top, or in one folder (a rung); a second `/` fails the character
    // check below.
    let (folder, name) = match path.split_once('/') {
        Some((folder, name)) => (Some(folder), name),
        None => (None, path),
    };
    for part in folder.into_iter().chain([name]) {
        let ok_chars = part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if part.is_empty() || !ok_chars || part.starts_with('.') || part.contains("..") {
            return None;
        }
    }
    let content_type = media_type(name)?;
    if folder.is_none() {
        // Top level: the master playlist, poster and storyboard only.
        let known = [
            "master.m3u8",
            "poster.jpg",
            "storyboard.jpg",
            "storyboard.vtt",
        ];
        return known.contains(&name).then_some(content_type);
    }
    (name == "index.m3u8" || name.ends_with(".ts")).then_some(content_type)
}

/// Parses a Range header against an object's size. `Ok(None)` means serve it whole
/// (no header, or a form we do not serve partially such as several ranges).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, CatalogError> {
    let Some(value) = header else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec
        .split_once('-')
        .ok_or(CatalogError::RangeNotSatisfiable { size })?;
    let (start, end) = (start.trim(), end.trim());
    let parse = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| CatalogError::RangeNotSatisfiable { size })
    };
    let range = if start.is_empty() {
        let suffix = parse(end)?;
        if suffix == 0 || size == 0 {
            return Err(CatalogError::RangeNotSatisfiable { size });
        }
        ByteRange {
            start: size.saturating_sub(suffix),
            end: size - 1,
        }
    } else {
        let start = parse(start)?;
        let end = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            parse(end)?.min(size.saturating_sub(1))
        };
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

    const KEY: &[u8] = b"playback-secret-playback-secret-";
    const LECTURE: &str = "0b7f3c2e-9a41-4c55-8d0e-2f6a1b9c7d10";
    const ASSET: &str = "6e1d2a8f-3b4c-4d5e-9f60-7a8b9c0d1e2f";

    fn ids() -> (LectureId, AssetId) {
        (
            LectureId::parse(LECTURE).unwrap(),
            AssetId::parse(ASSET).unwrap(),
        )
    }

    fn issue(t: &PlaybackTokens) -> String {
        let (lecture, asset) = ids();
        t.issue(&lecture, &asset).unwrap().0
    }

    /// The token's bytes with `edit` applied, signed again with `key`: what a forger
    /// who held the key could write.
    fn resigned(token: &str, key: &[u8], edit: impl FnOnce(&mut [u8])) -> String {
        let mut raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        edit(&mut raw);
        let tag = PlaybackTokens::new(key, 60).tag(&raw[..SIGNED_LEN]);
        raw[SIGNED_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    #[test]
    fn tokens_verify_and_carry_their_grant() {
        let t = PlaybackTokens::new(KEY, 60);
        let (token, exp) = t.issue(&ids().0, &ids().1).unwrap();
        assert_eq!(token.len(), 76);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        let grant = t.verify(&token).unwrap();
        assert_eq!(
            grant,
            PlayGrant {
                lecture_id: ids().0,
                asset_id: ids().1,
                expires_at: exp
            }
        );
        // Again, from what the first check remembered.
        assert_eq!(t.verify(&token).unwrap(), grant);
        // The same key in another process (a restart, another catalog replica).
        assert_eq!(PlaybackTokens::new(KEY, 60).verify(&token).unwrap(), grant);
    }

    #[test]
    fn only_lectern_ids_are_signed() {
        let t = PlaybackTokens::new(KEY, 60);
        for (lecture, asset) in [
            ("lec", ASSET),
            (LECTURE, "../../uploads"),
            (&LECTURE.to_uppercase(), ASSET),
            (LECTURE, "6e1d2a8f3b4c4d5e9f607a8b9c0d1e2f"),
        ] {
            // Only a message or a row could hold such ids: ids read from text are
            // not checked, ids parsed are.
            let text = |s: &str| serde_json::Value::String(s.into());
            let lecture_id: LectureId = serde_json::from_value(text(lecture)).unwrap();
            let asset_id: AssetId = serde_json::from_value(text(asset)).unwrap();
            assert!(
                matches!(
                    t.issue(&lecture_id, &asset_id),
                    Err(CatalogError::Internal(_))
                ),
                "{lecture} {asset}"
            );
        }
    }

    #[test]
    fn download_links_and_playback_tokens_never_stand_for_each_other() {
        let t = PlaybackTokens::new(KEY, 60);
        let attachment = AttachmentId::new();
        let user = UserId::new();
        let (file, _) = t.issue_file(&attachment, &user, 60).unwrap();
        let grant = t.verify_file(&file).unwrap();
        assert_eq!((grant.attachment_id, grant.user_id), (attachment, user));
        assert_eq!(t.verify(&file), None);
        assert_eq!(t.verify_file(&issue(&t)), None);
        let (expired, _) = t
            .issue_file(&AttachmentId::new(), &UserId::new(), -1)
            .unwrap();
        assert_eq!(t.verify_file(&expired), None);
        assert_eq!(
            PlaybackTokens::new(b"another key", 60).verify_file(&file),
            None
        );
    }

    #[test]
    fn forged_expired_tampered_and_foreign_tokens_fail() {
        let t = PlaybackTokens::new(KEY, 60);
        let token = issue(&t);
        let other_key = b"another-secret-another-secret-xx";
        let mut refused = vec![
            issue(&PlaybackTokens::new(other_key, 60)),
            issue(&PlaybackTokens::new(KEY, -5)),
            // Signed by the key, but not as `issue` writes.
            resigned(&token, KEY, |raw| raw[0] = 2),
            resigned(&token, KEY, |raw| {
                raw[1..9].copy_from_slice(&(lectern_seams::now_unix() - 1).to_be_bytes())
            }),
            // Another asset, signed with another key.
            resigned(&token, other_key, |raw| raw[40] ^= 1),
            String::new(),
            "garbage".into(),
            format!("{token}A"),
            token[..75].to_string(),
            // The format this replaced: a JWT of the same claims, HS256, this key.
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIwYjdmM2MyZSJ9.c2lnbmF0dXJl".into(),
            "=".repeat(76),
            "+".repeat(76),
        ];
        let mut tampered = token.clone().into_bytes();
        tampered[60] = if tampered[60] == b'A' { b'B' } else { b'A' };
        refused.push(String::from_utf8(tampered).unwrap());
        for at in [0, 10, 40, 55, 56] {
            let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
            raw[at] ^= 0x80;
            refused.push(URL_SAFE_NO_PAD.encode(raw));
        }
        for bad in &refused {
            assert!(t.verify(bad).is_none(), "{bad:?}");
        }
        // Remembering the genuine token admits nothing else.
        assert!(t.verify(&token).is_some());
        for bad in &refused {
            assert!(t.verify(bad).is_none(), "{bad:?}");
        }
        // What only the key makes valid: the helper above signs as `issue` does.
        let other_asset = t
            .verify(&resigned(&token, KEY, |raw| raw[40] ^= 1))
            .expect("signed with the key");
        assert_ne!(other_asset.asset_id, ids().1);
    }

    #[test]
    fn a_token_is_valid_through_its_last_second() {
        let t = PlaybackTokens::new(KEY, 60);
        let (token, exp) = t.issue(&ids().0, &ids().1).unwrap();
        assert!(t.verify(&token).is_some());
        assert!(t.verify_at(&token, exp).is_some());
        assert!(t.verify_at(&token, exp + 1).is_none());
        // Another key's tokens open nothing here.
        let other = PlaybackTokens::new(b"another-secret-another-secret-xx", 60);
        let (foreign, _) = other.issue(&ids().0, &ids().1).unwrap();
        assert!(other.verify(&foreign).is_some());
        assert!(t.verify(&foreign).is_none());
    }

    #[test]
    fn only_playable_files_are_served() {
        assert_eq!(
            playable_file("master.m3u8"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(
            playable_file("v720/index.m3u8"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(playable_file("v720/seg_00001.ts"), Some("video/mp2t"));
        assert_eq!(playable_file("poster.jpg"), Some("image/jpeg"));
        assert!(
            playable_file("storyboard.vtt")
                .unwrap()
                .starts_with("text/vtt")
        );
        for bad in [
            "manifest.json",
            "../x/master.m3u8",
            "v720/../../etc/passwd",
            "a/b/c.ts",
            "",
            "/master.m3u8",
            ".hidden.ts",
            "v720/seg.ts/..",
            "v720\\seg.ts",
            "v720/%2e%2e",
            "v720/index.m3u8.bak",
            "random.m3u8",
            "v720//seg.ts",
            "v720/",
            "/v720/seg.ts",
            "v720/.ts",
        ] {
            assert_eq!(playable_file(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100).unwrap(), None);
        assert_eq!(
            parse_range(Some("bytes=0-9"), 100).unwrap(),
            Some(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            parse_range(Some("bytes=90-"), 100).unwrap(),
            Some(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100).unwrap(),
            Some(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100).unwrap(),
            Some(ByteRange { start: 50, end: 99 })
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100).unwrap(), None);
        assert!(parse_range(Some("bytes=100-"), 100).is_err());
        assert!(parse_range(Some("bytes=5-2"), 100).is_err());
        assert!(parse_range(Some("bytes=x-2"), 100).is_err());
        assert!(parse_range(Some("bytes=-0"), 100).is_err());
    }
}
