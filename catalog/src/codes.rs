//! Enrollment codes: an owner hands out free access to a course (a class, a
//! scholarship), single- or multi-use, with an expiry. Redeeming one is a single guarded
//! update, so two students cannot both take a code's last use (`enrollment_codes`).

use lectern_seams::db::Db;
use lectern_seams::ids::CourseId;
use lectern_seams::now_unix;
use lectern_web::auth::AuthUser;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::courses::get_course;
use crate::error::CatalogError;

/// Letters and digits that cannot be mistaken for each other when read aloud or typed.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// 12 characters of 32: 60 bits, beyond guessing.
const CODE_LEN: usize = 12;
/// Codes one course may have at once.
const MAX_CODES: i64 = 1000;

#[derive(Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct EnrollmentCode {
    /// Give it to students as it is (`K7QF-2MZP-9XRT`); case and dashes do not matter.
    pub code: String,
    /// How many students may use it; none: any number.
    pub max_uses: Option<i64>,
    pub uses: i64,
    /// Unix seconds after which it is refused; none: never.
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewCode {
    /// 1 for a single student; omit for any number.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_uses: Option<i64>,
    /// Days until it expires; omit for never.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
}

/// A code as stored: upper case, without the dashes and spaces people add.
pub fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_uppercase)
        .collect()
}

fn spelled(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

fn generate() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn owned(db: &Db, user: &AuthUser, course: &CourseId) -> Result<(), CatalogError> {
    let course = get_course(db, course).await?;
    if !course.editable_by(user) {
        return Err(CatalogError::Forbidden(
            "only the course's owner may manage its enrollment codes".into(),
        ));
    }
    Ok(())
}

pub async fn create(
    db: &Db,
    user: &AuthUser,
    course: &CourseId,
    new: NewCode,
) -> Result<EnrollmentCode, CatalogError> {
    owned(db, user, course).await?;
    if new.max_uses.is_some_and(|n| !(1..=100_000).contains(&n)) {
        return Err(CatalogError::Invalid("max_uses is 1 to 100000".into()));
    }
    if new
        .expires_in_days
        .is_some_and(|d| !(1..=3650).contains(&d))
    {
        return Err(CatalogError::Invalid("expires_in_days is 1 to 3650".into()));
    }
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM enrollment_codes WHERE course_id = $1")
            .bind(course)
            .fetch_one(db)
            .await?;
    if count >= MAX_CODES {
        return Err(CatalogError::Conflict(format!(
            "a course has at most {MAX_CODES} codes; delete some first"
        )));
    }
    let now = now_unix();
    let code = generate();
    sqlx::query(
        "INSERT INTO enrollment_codes (code, course_id, max_uses, uses, expires_at, created_at)
         VALUES ($1, $2, $3, 0, $4, $5)",
    )
    .bind(&code)
    .bind(course)
    .bind(new.max_uses)
    .bind(new.expires_in_days.map(|d| now + d * 86_400))
    .bind(now)
    .execute(db)
    .await?;
    Ok(EnrollmentCode {
        code: spelled(&code),
        max_uses: new.max_uses,
        uses: 0,
        expires_at: new.expires_in_days.map(|d| now + d * 86_400),
        created_at: now,
    })
}

pub async fn list(
    db: &Db,
    user: &AuthUser,
    course: &CourseId,
) -> Result<Vec<EnrollmentCode>, CatalogError> {
    owned(db, user, course).await?;
    let rows: Vec<EnrollmentCode> = sqlx::query_as(
        "SELECT code, max_uses, uses, expires_at, created_at FROM enrollment_codes
         WHERE course_id = $1 ORDER BY created_at DESC, code",
    )
    .bind(course)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|c| EnrollmentCode {
            code: spelled(&c.code),
            ..c
        })
        .collect())
}

pub async fn delete(
    db: &Db,
    user: &AuthUser,
    course: &CourseId,
    code: &str,
) -> Result<(), CatalogError> {
    owned(db, user, course).await?;
    let gone = sqlx::query("DELETE FROM enrollment_codes WHERE code = $1 AND course_id = $2")
        .bind(normalize(code))
        .bind(course)
        .execute(db)
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(CatalogError::NotFound("enrollment code"));
    }
    Ok(())
}

/// Takes one use of `code` for `course`, in the enrollment's transaction; refused when
/// the code is not this course's, used up or expired.
pub async fn redeem(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    course: &CourseId,
    code: &str,
) -> Result<(), CatalogError> {
    let taken = sqlx::query(
        "UPDATE enrollment_codes SET uses = uses + 1
         WHERE code = $1 AND course_id = $2
           AND (max_uses IS NULL OR uses < max_uses) AND (expires_at IS NULL OR expires_at > $3)",
    )
    .bind(normalize(code))
    .bind(course)
    .bind(now_unix())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if taken != 1 {
        return Err(CatalogError::Forbidden(
            "this enrollment code is not valid for this course, or it is used up or expired".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_typed_back_whatever_the_case_and_dashes() {
        let code = generate();
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
        let shown = spelled(&code);
        assert_eq!(shown.len(), CODE_LEN + 2);
        assert_eq!(normalize(&shown.to_lowercase()), code);
        assert_eq!(normalize(" k7qf 2mzp-9xrt "), "K7QF2MZP9XRT");
        assert_ne!(generate(), generate());
    }
}
