//! Accounts: sign-up, sign-in and the admin bootstrap. Passwords are hashed with
//! argon2 (on a blocking thread: hashing is deliberately slow).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use lectern_common::auth::Role;
use lectern_common::db::Db;
use lectern_common::limits::{Action, ClientIp, Limits};
use lectern_common::{new_id, now_unix};
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
}

/// A normalised email address (trimmed, lowercased), checked for a plausible shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, CatalogError> {
        let e = raw.trim().to_lowercase();
        let valid = e.len() <= 254
            && e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            })
            && !e.chars().any(|c| c.is_whitespace() || c.is_control())
            && e.matches('@').count() == 1;
        if valid {
            Ok(Email(e))
        } else {
            Err(CatalogError::Invalid("email is not a valid address".into()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 256;

fn check_password(password: &str) -> Result<(), CatalogError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(CatalogError::Invalid(format!(
            "password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// The length is counted before trimming, as the API description's maxLength is.
fn check_name(sent: &str) -> Result<String, CatalogError> {
    let name = sent.trim();
    if name.is_empty() || sent.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(CatalogError::Invalid(
            "name must be 1 to 100 printable characters".into(),
        ));
    }
    Ok(name.to_string())
}

async fn hash_password(password: String) -> Result<String, CatalogError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| CatalogError::Internal(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| CatalogError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| CatalogError::Internal(e.to_string()))?
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// A hash to verify against when the email is unknown, so a wrong email takes as
/// long as a wrong password and does not reveal which accounts exist.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Signup {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(format = Password, min_length = 8, max_length = 256)]
    pub password: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// student (default) or owner.
    #[schema(pattern = "^(student|owner)$")]
    pub role: Option<String>,
}

/// Creates an account. Sign-up offers student and owner; admins come from the CLI.
pub async fn create_user(
    db: &Db,
    email: &str,
    password: &str,
    name: &str,
    role: Role,
) -> Result<User, CatalogError> {
    let email = Email::parse(email)?;
    check_password(password)?;
    let name = check_name(name)?;
    let hash = hash_password(password.to_string()).await?;
    let id = new_id();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(&id)
    .bind(email.as_str())
    .bind(&name)
    .bind(&hash)
    .bind(role.as_str())
    .bind(now_unix())
    .execute(db)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(CatalogError::Conflict(
            "an account with this email already exists".into(),
        ));
    }
    Ok(User {
        id,
        email: email.0,
        name,
        role,
    })
}

pub async fn signup(db: &Db, req: Signup) -> Result<User, CatalogError> {
    let role = match req.role.as_deref().unwrap_or("student") {
        "student" => Role::Student,
        "owner" => Role::Owner,
        _ => {
            return Err(CatalogError::Invalid(
                "role must be student or owner".into(),
            ));
        }
    };
    create_user(db, &req.email, &req.password, &req.name, role).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// A sign-in under the abuse limits: a rate per IP and per email, and a growing wait
/// after repeated failures (checked before the password, so a locked-out guesser
/// learns nothing).
pub async fn guarded_login(
    db: &Db,
    limits: &Limits,
    ip: ClientIp,
    req: Login,
) -> Result<User, CatalogError> {
    let email = req.email.trim().to_lowercase();
    limits.check(Action::Login, ip, Some(&email))?;
    limits.login_wait(&email, ip)?;
    match login(db, req).await {
        Ok(user) => {
            limits.login_succeeded(&email, ip);
            Ok(user)
        }
        Err(CatalogError::BadCredentials) => {
            limits.login_failed(&email, ip);
            Err(CatalogError::BadCredentials)
        }
        Err(other) => Err(other),
    }
}

pub async fn login(db: &Db, req: Login) -> Result<User, CatalogError> {
    let email = Email::parse(&req.email).map_err(|_| CatalogError::BadCredentials)?;
    let row: Option<(String, String, String, String)> =
        sqlx::query_as("SELECT id, name, password_hash, role FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(db)
            .await?;
    let Some((id, name, hash, role)) = row else {
        let dummy = match DUMMY_HASH.get() {
            Some(h) => h.clone(),
            None => {
                let h = hash_password("not-a-password".into()).await?;
                DUMMY_HASH.get_or_init(|| h).clone()
            }
        };
        verify_password(req.password, dummy).await;
        return Err(CatalogError::BadCredentials);
    };
    if !verify_password(req.password, hash).await {
        return Err(CatalogError::BadCredentials);
    }
    let role = Role::parse(&role)
        .ok_or_else(|| CatalogError::Internal(format!("user {id} has an unknown role")))?;
    Ok(User {
        id,
        email: email.0,
        name,
        role,
    })
}

pub async fn get_user(db: &Db, id: &str) -> Result<User, CatalogError> {
    let row: Option<(String, String, String, String)> =
        sqlx::query_as("SELECT id, email, name, role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let (id, email, name, role) = row.ok_or(CatalogError::NotFound("user"))?;
    let role = Role::parse(&role).ok_or_else(|| CatalogError::Internal("unknown role".into()))?;
    Ok(User {
        id,
        email,
        name,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.ORG ").unwrap().as_str(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.org",
            "a@b",
            "a b@x.org",
            "a@@x.org",
            "a@x.org.",
            "a@.x.org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_and_names_have_bounds() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
        assert!(check_password(&"x".repeat(300)).is_err());
        assert!(check_name("  ").is_err());
        assert_eq!(check_name(" Ada ").unwrap(), "Ada");
        assert!(check_name(&format!(" {}", "a".repeat(100))).is_err());
    }

    #[tokio::test]
    async fn hashes_verify_only_their_password() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify_password("correct horse".into(), h.clone()).await);
        assert!(!verify_password("wrong horse".into(), h).await);
    }
}
