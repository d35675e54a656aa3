//! Access tokens: HS256 JWTs carrying the user id and role, checked on every /api
//! request by the [`AuthUser`] extractor. Keys come from the environment or, in
//! development, are generated once into the data directory.

use lectern_seams::ids::UserId;
use std::path::Path;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::error_response;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Student,
    Owner,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "student" => Some(Role::Student),
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

const ISSUER: &str = "lectern";
const ACCESS_AUDIENCE: &str = "lectern-api";

#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    sub: UserId,
    role: Role,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Signs and checks access tokens with one secret.
#[derive(Clone)]
pub struct AccessTokens {
    // Shared: the state holding them is cloned for every request.
    encoding: std::sync::Arc<EncodingKey>,
    decoding: std::sync::Arc<DecodingKey>,
    // Built once: every API request checks a token, and building the rules allocates.
    validation: std::sync::Arc<Validation>,
    ttl_secs: i64,
}

impl AccessTokens {
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        Self {
            encoding: std::sync::Arc::new(EncodingKey::from_secret(secret)),
            decoding: std::sync::Arc::new(DecodingKey::from_secret(secret)),
            validation: std::sync::Arc::new(Self::rules()),
            ttl_secs,
        }
    }

    /// What a token must be: HS256 with this key, for the access audience, from us,
    /// unexpired to the second.
    fn rules() -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[ACCESS_AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        validation
    }

    pub fn issue(&self, user_id: &UserId, role: Role) -> String {
        let now = lectern_seams::now_unix();
        let claims = AccessClaims {
            sub: user_id.clone(),
            role,
            iss: ISSUER.into(),
            aud: ACCESS_AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The user a token speaks for, or None when it is forged, expired, for another
    /// audience or signed with another algorithm.
    pub fn verify(&self, token: &str) -> Option<AuthUser> {
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation).ok()?;
        Some(AuthUser {
            id: data.claims.sub,
            role: data.claims.role,
            expires_at: data.claims.exp,
        })
    }
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: UserId,
    pub role: Role,
    /// When the token that signed the request in expires (unix seconds): what lasts
    /// longer than a request (a live connection) ends then.
    pub expires_at: i64,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a request carries no usable access token.
pub struct Unauthenticated;

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let mut res = error_response(
            crate::http::ErrorCode::Unauthenticated,
            "a valid access token is required (Authorization: Bearer <token>)",
        );
        res.headers_mut()
            .insert("www-authenticate", "Bearer".parse().expect("static header"));
        res
    }
}

/// The WebSocket subprotocol a browser names to carry its token:
/// `new WebSocket(url, ["bearer", token])` (browsers cannot set headers there, and a
/// token in the URL would end up in logs).
pub const WS_BEARER_PROTOCOL: &str = "bearer";

/// The bearer token of a request: the Authorization header, the WebSocket subprotocol
/// pair `bearer, <token>`, or a `token` query parameter (for non-browser clients).
pub fn bearer_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    if let Some(value) = parts
        .headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
    {
        let mut protocols = value.to_str().ok()?.split(',').map(str::trim);
        if protocols.next() == Some(WS_BEARER_PROTOCOL) {
            return protocols.next().map(str::to_string);
        }
    }
    let query = parts.uri.query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token=").map(str::to_string))
}

impl<S> FromRequestParts<S> for AuthUser
where
    AccessTokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let tokens = AccessTokens::from_ref(state);
        bearer_token(parts)
            .and_then(|t| tokens.verify(&t))
            .ok_or(Unauthenticated)
    }
}

/// A signing secret: the given value, or one generated once and kept (mode 0600)
/// in `path` so tokens survive restarts of a development server.
/// The shortest token secret accepted from the operator.
pub const MIN_SECRET_BYTES: usize = 32;

pub fn load_or_create_secret(given: Option<&str>, path: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(secret) = given.filter(|s| !s.is_empty()) {
        // A short key can be guessed offline from any one token it signed.
        if secret.len() < MIN_SECRET_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a token secret must be at least {MIN_SECRET_BYTES} bytes (this one has {})",
                    secret.len()
                ),
            ));
        }
        return Ok(secret.as_bytes().to_vec());
    }
    if let Ok(existing) = std::fs::read(path)
        && existing.len() >= 32
    {
        return Ok(existing);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret: [u8; 32] = rand::random();
    let encoded = hex_encode(&secret);
    let tmp = path.with_extension(format!("{}.tmp", lectern_seams::new_id()));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(encoded.as_bytes())?;
        f.sync_all()?;
    }
    // Publish with a hard link, which fails if another process got there first: then
    // every process uses the one secret that won.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(encoded.into_bytes()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path),
        Err(e) => Err(e),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies_with_role() {
        let tokens = AccessTokens::new(b"0123456789abcdef0123456789abcdef", 60);
        let u1 = UserId::new();
        let user = tokens.verify(&tokens.issue(&u1, Role::Owner)).unwrap();
        assert_eq!(user.id, u1);
        assert_eq!(user.role, Role::Owner);
    }

    #[test]
    fn other_key_expired_and_none_alg_are_refused() {
        let tokens = AccessTokens::new(b"0123456789abcdef0123456789abcdef", 60);
        let other = AccessTokens::new(b"another-secret-another-secret-xx", 60);
        let u1 = UserId::new();
        assert!(tokens.verify(&other.issue(&u1, Role::Admin)).is_none());
        let expired = AccessTokens::new(b"0123456789abcdef0123456789abcdef", -10);
        assert!(tokens.verify(&expired.issue(&u1, Role::Admin)).is_none());
        // {"alg":"none"} with the same claims and no signature.
        let good = tokens.issue(&u1, Role::Admin);
        let payload = good.split('.').nth(1).unwrap();
        assert!(
            tokens
                .verify(&format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."))
                .is_none()
        );
        assert!(tokens.verify("garbage").is_none());
    }

    #[test]
    fn secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/access.key");
        let a = load_or_create_secret(None, &path).unwrap();
        let b = load_or_create_secret(None, &path).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let given = "an operator's secret of 32+ bytes";
        assert_eq!(
            load_or_create_secret(Some(given), &path).unwrap(),
            given.as_bytes()
        );
        let short = load_or_create_secret(Some("short"), &path).unwrap_err();
        assert!(short.to_string().contains("at least 32 bytes"), "{short}");
    }
}
