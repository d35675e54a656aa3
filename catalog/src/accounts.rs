//! Accounts: sign-up, sign-in and the admin bootstrap. Passwords are hashed with
//! argon2 (on a blocking thread: hashing is deliberately slow).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use lectern_seams::db::Db;
use lectern_seams::{new_id, now_unix};
use lectern_web::auth::Role;
use lectern_web::limits::{Action, ClientIp, Limits};
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;
use lectern_seams::ids::UserId;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Whether the address was confirmed from a mail sent to it.
    pub email_verified: bool,
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

pub(crate) fn check_password(password: &str) -> Result<(), CatalogError> {
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

pub(crate) async fn hash_password(password: String) -> Result<String, CatalogError> {
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
    /// An owner's invite code, where owners sign up by invitation
    /// (`LECTERN_OWNER_SIGNUP=invite`).
    #[schema(max_length = 64)]
    pub invite: Option<String>,
}

/// Who may sign up as an owner (`LECTERN_OWNER_SIGNUP`): anyone (`open`), whoever
/// holds an invite code an admin made (`invite`), or anyone once an admin approves
/// (`approval`: the account is a student's until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerSignup {
    #[default]
    Open,
    Invite,
    Approval,
}

impl OwnerSignup {
    pub const ALL: [OwnerSignup; 3] = [
        OwnerSignup::Open,
        OwnerSignup::Invite,
        OwnerSignup::Approval,
    ];

    /// The setting's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerSignup::Open => "open",
            OwnerSignup::Invite => "invite",
            OwnerSignup::Approval => "approval",
        }
    }
}

/// What a sign-up made: the account, and whether its owner request awaits an admin.
pub struct SignedUp {
    pub user: User,
    pub owner_request_pending: bool,
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
    let id = UserId::new();
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
        email_verified: false,
    })
}

pub async fn signup(db: &Db, req: Signup, policy: OwnerSignup) -> Result<SignedUp, CatalogError> {
    if req
        .invite
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_INVITE)
    {
        return Err(CatalogError::Invalid(format!(
            "invite must be at most {MAX_INVITE} characters"
        )));
    }
    let wants_owner = match req.role.as_deref().unwrap_or("student") {
        "student" => false,
        "owner" => true,
        _ => {
            return Err(CatalogError::Invalid(
                "role must be student or owner".into(),
            ));
        }
    };
    let invited = wants_owner && policy == OwnerSignup::Invite;
    let claim = if invited {
        let code = req
            .invite
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                CatalogError::Forbidden("owners sign up with an invite code from an admin".into())
            })?;
        Some(claim_invite(db, code).await?)
    } else {
        None
    };
    let role = match (wants_owner, policy) {
        (true, OwnerSignup::Open | OwnerSignup::Invite) => Role::Owner,
        // A student until an admin approves the request.
        (true, OwnerSignup::Approval) | (false, _) => Role::Student,
    };
    let created = create_user(db, &req.email, &req.password, &req.name, role).await;
    if let Some(claim) = &claim {
        // The code goes to the account, or back to the pool when none was made.
        let user = created.as_ref().ok().map(|u| u.id.as_str());
        settle_invite(db, claim, user).await?;
    }
    let user = created?;
    let pending = wants_owner && policy == OwnerSignup::Approval;
    if pending {
        sqlx::query("UPDATE users SET owner_requested_at = $1 WHERE id = $2")
            .bind(now_unix())
            .bind(&user.id)
            .execute(db)
            .await?;
    }
    Ok(SignedUp {
        user,
        owner_request_pending: pending,
    })
}

/// The longest invite code accepted (the API description's maxLength).
const MAX_INVITE: usize = 64;

fn invite_hash(code: &str) -> String {
    use sha2::Digest;
    hex_lower(&sha2::Sha256::digest(code.trim().as_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Takes an unused, unexpired invite for a sign-up in progress (one statement, so two
/// sign-ups cannot take one code); returns the claim to settle.
async fn claim_invite(db: &Db, code: &str) -> Result<String, CatalogError> {
    let claim = format!("claim:{}", new_id());
    let taken = sqlx::query(
        "UPDATE owner_invites SET used_by = $1, used_at = $2 WHERE code_hash = $3 AND used_by IS NULL AND expires_at > $2",
    )
    .bind(&claim)
    .bind(now_unix())
    .bind(invite_hash(code))
    .execute(db)
    .await?;
    if taken.rows_affected() == 0 {
        return Err(CatalogError::Forbidden(
            "the invite code is not valid".into(),
        ));
    }
    Ok(claim)
}

/// Gives a claimed invite to the account made with it, or frees it when none was.
async fn settle_invite(db: &Db, claim: &str, user: Option<&str>) -> Result<(), CatalogError> {
    let settled = match user {
        Some(user) => sqlx::query("UPDATE owner_invites SET used_by = $1 WHERE used_by = $2")
            .bind(user)
            .bind(claim),
        None => sqlx::query(
            "UPDATE owner_invites SET used_by = NULL, used_at = NULL WHERE used_by = $1",
        )
        .bind(claim),
    };
    settled.execute(db).await?;
    Ok(())
}

/// A new owner invite code (for `lectern user invite`), valid for `ttl_secs`. Only
/// its hash is stored.
pub async fn create_invite(db: &Db, ttl_secs: i64) -> Result<String, CatalogError> {
    let code = hex_lower(&rand::random::<[u8; 16]>());
    let now = now_unix();
    sqlx::query(
        "INSERT INTO owner_invites (code_hash, created_at, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(invite_hash(&code))
    .bind(now)
    .bind(now + ttl_secs)
    .execute(db)
    .await?;
    Ok(code)
}

/// Accounts waiting for an admin to approve them as owners (`lectern user pending`).
pub async fn pending_owners(db: &Db) -> Result<Vec<User>, CatalogError> {
    let rows: Vec<(UserId, String, String, Option<i64>)> = sqlx::query_as(
        "SELECT id, email, name, email_verified_at FROM users WHERE owner_requested_at IS NOT NULL AND role = 'student' ORDER BY owner_requested_at",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, email, name, verified)| User {
            id,
            email,
            name,
            role: Role::Student,
            email_verified: verified.is_some(),
        })
        .collect())
}

/// Makes the account with this email an owner (`lectern user approve EMAIL`).
pub async fn approve_owner(db: &Db, email: &str) -> Result<User, CatalogError> {
    let email = Email::parse(email)?;
    let updated = sqlx::query("UPDATE users SET role = 'owner', owner_requested_at = NULL WHERE email = $1 AND role = 'student'")
        .bind(email.as_str())
        .execute(db)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(CatalogError::NotFound("student account with this email"));
    }
    let (id, name, verified): (UserId, String, Option<i64>) =
        sqlx::query_as("SELECT id, name, email_verified_at FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_one(db)
            .await?;
    Ok(User {
        id,
        email: email.0,
        name,
        role: Role::Owner,
        email_verified: verified.is_some(),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// A sign-in under the abuse limits: a rate per client and per client and email, and
/// a growing wait after repeated failures (checked before the password, so a locked-out
/// guesser learns nothing). The email is validated before it is counted: what is not
/// an address names no account and costs only the client's own rate.
pub async fn guarded_login(
    db: &Db,
    limits: &Limits,
    ip: ClientIp,
    req: Login,
) -> Result<User, CatalogError> {
    let Ok(email) = Email::parse(&req.email) else {
        limits.check(Action::Login, ip, None)?;
        return Err(CatalogError::BadCredentials);
    };
    let email = email.0;
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
    let row: Option<(UserId, String, String, String, Option<i64>)> = sqlx::query_as(
        "SELECT id, name, password_hash, role, email_verified_at FROM users WHERE email = $1",
    )
    .bind(email.as_str())
    .fetch_optional(db)
    .await?;
    let Some((id, name, hash, role, verified)) = row else {
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
        email_verified: verified.is_some(),
    })
}

pub async fn get_user(db: &Db, id: &UserId) -> Result<User, CatalogError> {
    let row: Option<(UserId, String, String, String, Option<i64>)> =
        sqlx::query_as("SELECT id, email, name, role, email_verified_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let (id, email, name, role, verified) = row.ok_or(CatalogError::NotFound("user"))?;
    let role = Role::parse(&role).ok_or_else(|| CatalogError::Internal("unknown role".into()))?;
    Ok(User {
        id,
        email,
        name,
        role,
        email_verified: verified.is_some(),
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
