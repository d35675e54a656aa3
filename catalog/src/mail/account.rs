//! Account mail: confirming an address (a signed link, good once, for
//! [`VERIFY_VALID_SECS`]) and resetting a forgotten password (a random token kept only as
//! its hash, good once, for [`RESET_VALID_SECS`]; asking never tells whether an account
//! has the address).

use lectern_seams::db::Db;
use lectern_seams::ids::UserId;
use lectern_seams::now_unix;

use super::links::{self, Claim};
use super::{Kind, Settings, enqueue, templates};
use crate::accounts::{self, Email, User};
use crate::error::CatalogError;

pub const VERIFY_VALID_SECS: i64 = 3 * 86_400;
pub const RESET_VALID_SECS: i64 = 30 * 60;
/// Reset mails one account gets at most in [`RESET_WINDOW_SECS`] (more requests are
/// answered the same and send nothing).
const RESETS_PER_WINDOW: i64 = 3;
const RESET_WINDOW_SECS: i64 = 15 * 60;
/// A verify mail is sent again at most this often.
const VERIFY_RESEND_SECS: i64 = 60;

/// Writes the mail that confirms `user`'s address. Nothing when it is confirmed
/// already; Conflict when one went out less than a minute ago.
pub async fn send_verification(
    db: &Db,
    settings: &Settings,
    user: &User,
) -> Result<(), CatalogError> {
    if user.email_verified {
        return Err(CatalogError::Conflict(
            "the address is verified already".into(),
        ));
    }
    let recent: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM mail_outbox WHERE recipient = $1 AND kind = $2 AND created_at > $3",
    )
    .bind(&user.email)
    .bind(Kind::Verify.as_str())
    .bind(now_unix() - VERIFY_RESEND_SECS)
    .fetch_one(db)
    .await?;
    if recent.0 > 0 {
        return Err(CatalogError::Conflict(
            "a confirmation mail went out less than a minute ago".into(),
        ));
    }
    let token = links::sign(
        &settings.link_key,
        &Claim::Verify {
            u: user.id.as_str().to_string(),
            e: user.email.clone(),
            x: now_unix() + VERIFY_VALID_SECS,
        },
    );
    let link = settings.link(&format!("/#/verify?token={token}"));
    let mail = templates::verify(&user.name, &link, VERIFY_VALID_SECS / 3600);
    let mut conn = db.acquire().await?;
    enqueue(&mut conn, Kind::Verify, &user.email, &mail, None).await?;
    Ok(())
}

/// Confirms the address a verify link names, once.
pub async fn verify(db: &Db, settings: &Settings, token: &str) -> Result<User, CatalogError> {
    let Some(Claim::Verify { u, e, .. }) =
        links::open(&settings.link_key, token.trim(), now_unix())
    else {
        return Err(CatalogError::Invalid(
            "the confirmation link is invalid or has expired".into(),
        ));
    };
    let done = sqlx::query(
        "UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email = $3 AND email_verified_at IS NULL",
    )
    .bind(now_unix())
    .bind(&u)
    .bind(&e)
    .execute(db)
    .await?
    .rows_affected();
    let id = UserId::parse(&u).ok_or(CatalogError::NotFound("user"))?;
    let user = accounts::get_user(db, &id).await?;
    if done == 0 {
        return Err(if user.email_verified && user.email == e {
            CatalogError::Conflict("the address is verified already; the link was used".into())
        } else {
            CatalogError::Invalid("the confirmation link is invalid or has expired".into())
        });
    }
    Ok(user)
}

/// Writes a reset token and its mail for the account with this address, if there is
/// one (and it has not had too many lately). Tells nothing either way.
pub async fn request_reset(
    db: &Db,
    settings: &Settings,
    email: &Email,
) -> Result<(), CatalogError> {
    let row: Option<(UserId, String)> =
        sqlx::query_as("SELECT id, name FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(db)
            .await?;
    let Some((user_id, name)) = row else {
        return Ok(());
    };
    let now = now_unix();
    let mut tx = db.begin().await?;
    let (recent,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM password_resets WHERE user_id = $1 AND created_at > $2",
    )
    .bind(&user_id)
    .bind(now - RESET_WINDOW_SECS)
    .fetch_one(&mut *tx)
    .await?;
    if recent >= RESETS_PER_WINDOW {
        tracing::info!(user = %user_id, "password reset asked too often; no mail");
        return Ok(());
    }
    let (secret, hash) = links::random_secret();
    sqlx::query(
        "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&hash)
    .bind(&user_id)
    .bind(now)
    .bind(now + RESET_VALID_SECS)
    .execute(&mut *tx)
    .await?;
    let link = settings.link(&format!("/#/reset?token={secret}"));
    let mail = templates::reset(&name, &link, RESET_VALID_SECS / 60);
    enqueue(&mut tx, Kind::Reset, email.as_str(), &mail, None).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a new password with a reset token, which is used up with every other reset
/// token of the account. The address counts as verified: the mail reached it.
pub async fn confirm_reset(db: &Db, token: &str, password: &str) -> Result<(), CatalogError> {
    accounts::check_password(password)?;
    let refused = || CatalogError::Invalid("the reset link is invalid, used or expired".into());
    if token.trim().is_empty() || token.len() > 200 {
        return Err(refused());
    }
    let hash = accounts::hash_password(password.to_string()).await?;
    let now = now_unix();
    let mut tx = db.begin().await?;
    let claimed: Option<(UserId,)> = sqlx::query_as(
        "UPDATE password_resets SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
         RETURNING user_id",
    )
    .bind(now)
    .bind(links::secret_hash(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id,)) = claimed else {
        return Err(refused());
    };
    sqlx::query(
        "UPDATE users SET password_hash = $1, email_verified_at = COALESCE(email_verified_at, $2) WHERE id = $3",
    )
    .bind(&hash)
    .bind(now)
    .bind(&user_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Stops new-lecture mail of a course to the student an unsubscribe link names; the
/// course's title, for the answer.
pub async fn unsubscribe(
    db: &Db,
    settings: &Settings,
    token: &str,
) -> Result<String, CatalogError> {
    let Some(Claim::Unsubscribe { u, c }) =
        links::open(&settings.link_key, token.trim(), now_unix())
    else {
        return Err(CatalogError::Invalid(
            "the unsubscribe link is invalid".into(),
        ));
    };
    let title: Option<(String,)> = sqlx::query_as("SELECT title FROM courses WHERE id = $1")
        .bind(&c)
        .fetch_optional(db)
        .await?;
    let Some((title,)) = title else {
        // The course is gone, and its mail with it.
        return Ok(String::new());
    };
    sqlx::query(
        "INSERT INTO mail_unsubscribes (user_id, course_id, created_at) SELECT $1, $2, $3 WHERE EXISTS
         (SELECT 1 FROM users WHERE id = $1) ON CONFLICT (user_id, course_id) DO NOTHING",
    )
    .bind(&u)
    .bind(&c)
    .bind(now_unix())
    .execute(db)
    .await?;
    // Lectures already waiting for a digest are not mailed either.
    sqlx::query("UPDATE mail_digest_items SET mailed_at = $1 WHERE user_id = $2 AND course_id = $3 AND mailed_at IS NULL")
        .bind(now_unix())
        .bind(&u)
        .bind(&c)
        .execute(db)
        .await?;
    Ok(title)
}
