//! Buying a course: the payment provider seam and what the catalog does with it. The
//! server opens a checkout for the course's price (nothing the client sends sets it);
//! the student pays on the provider's page; only the provider's signed event enrolls
//! them, and a refund or a dispute takes the enrollment back. Each event is applied
//! once (`payment_events`). Without a provider, priced courses cannot be bought.

use axum::http::HeaderMap;
use lectern_seams::db::Db;
use lectern_seams::ids::{CourseId, UserId};
use lectern_seams::now_unix;
use lectern_web::auth::AuthUser;
use serde::Serialize;

use crate::courses::{EnrollmentKind, enrollment, get_course};
use crate::error::CatalogError;
use crate::events::LiveEvent;

pub mod stripe;

/// What is to be paid, decided by the server.
#[derive(Debug, Clone)]
pub struct Order {
    pub course_id: CourseId,
    pub course_title: String,
    pub user_id: UserId,
    pub amount_cents: i64,
    pub currency: &'static str,
    /// Where the provider sends the student back.
    pub success_url: String,
    pub cancel_url: String,
}

/// A checkout the provider opened: its id and the page where the student pays.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Checkout {
    pub session_id: String,
    /// Send the student here.
    pub url: String,
}

/// What a verified provider event means to Lectern.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentEvent {
    Paid {
        session_id: String,
        payment_intent: Option<String>,
        amount_cents: i64,
        currency: String,
    },
    Refunded {
        payment_intent: String,
    },
    Disputed {
        payment_intent: String,
    },
    /// An event Lectern has nothing to do for.
    Other,
}

/// A verified event: its id (applied once) and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub id: String,
    pub event: PaymentEvent,
}

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Opens a checkout for `order` with the provider.
    async fn open_checkout(&self, order: &Order) -> Result<Checkout, CatalogError>;
    /// Checks an event's signature and age, then reads it.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, CatalogError>;
}

pub type SharedPayments = std::sync::Arc<dyn PaymentProvider>;

/// Opens a checkout for a priced course the user is not enrolled in, at its price.
pub async fn checkout(
    db: &Db,
    provider: Option<&SharedPayments>,
    public_url: &str,
    user: &AuthUser,
    course_id: &CourseId,
) -> Result<Checkout, CatalogError> {
    let course = get_course(db, course_id).await?;
    if !course.published && !course.editable_by(user) {
        return Err(CatalogError::NotFound("course"));
    }
    if course.price_cents <= 0 {
        return Err(CatalogError::Conflict(
            "this course is free: enroll instead".into(),
        ));
    }
    if enrollment(db, &user.id, course_id).await?.is_some() {
        return Err(CatalogError::Conflict(
            "you are already enrolled in this course".into(),
        ));
    }
    let provider = provider.ok_or_else(|| {
        CatalogError::PaymentRequired(
            "this course cannot be bought here yet (no payment provider is set up): ask its owner for an enrollment code".into(),
        )
    })?;
    let back = format!("{}/#/courses/{course_id}", public_url.trim_end_matches('/'));
    let order = Order {
        course_id: course_id.clone(),
        course_title: course.title.clone(),
        user_id: user.id.clone(),
        amount_cents: course.price_cents,
        currency: "usd",
        success_url: format!("{back}?paid=1"),
        cancel_url: back,
    };
    let checkout = provider.open_checkout(&order).await?;
    let now = now_unix();
    sqlx::query(
        "INSERT INTO payments (id, provider, user_id, course_id, amount_cents, currency, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $7)",
    )
    .bind(&checkout.session_id)
    .bind(provider.name())
    .bind(&order.user_id)
    .bind(course_id)
    .bind(order.amount_cents)
    .bind(order.currency)
    .bind(now)
    .execute(db)
    .await?;
    Ok(checkout)
}

/// Applies a verified event once: a payment enrolls, a refund or dispute revokes.
pub async fn apply(db: &Db, verified: Verified) -> Result<(), CatalogError> {
    let mut tx = db.begin().await?;
    let first = sqlx::query(
        "INSERT INTO payment_events (id, received_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&verified.id)
    .bind(now_unix())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if first == 0 {
        return Ok(()); // delivered again: applied already
    }
    match verified.event {
        PaymentEvent::Paid {
            session_id,
            payment_intent,
            amount_cents,
            currency,
        } => {
            paid(
                &mut tx,
                &session_id,
                payment_intent,
                amount_cents,
                &currency,
            )
            .await?
        }
        PaymentEvent::Refunded { payment_intent } => {
            revoke(&mut tx, &payment_intent, "refunded").await?
        }
        PaymentEvent::Disputed { payment_intent } => {
            revoke(&mut tx, &payment_intent, "disputed").await?
        }
        PaymentEvent::Other => {}
    }
    tx.commit().await?;
    Ok(())
}

use crate::journal::Tx;

/// A checkout was paid: the payment must be one Lectern opened, for its amount.
async fn paid(
    tx: &mut Tx,
    session_id: &str,
    payment_intent: Option<String>,
    amount_cents: i64,
    currency: &str,
) -> Result<(), CatalogError> {
    let row: Option<(UserId, CourseId, i64, String)> = sqlx::query_as(
        "SELECT user_id, course_id, amount_cents, currency FROM payments WHERE id = $1 AND status = 'open'",
    )
    .bind(session_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((user, course, expected, expected_currency)) = row else {
        tracing::warn!(session = %session_id, "a paid checkout Lectern did not open (or already applied); ignored");
        return Ok(());
    };
    if amount_cents != expected || !currency.eq_ignore_ascii_case(&expected_currency) {
        return Err(CatalogError::Invalid(format!(
            "checkout {session_id} was paid {amount_cents} {currency}, not the {expected} {expected_currency} it was opened for"
        )));
    }
    sqlx::query(
        "UPDATE payments SET status = 'paid', payment_intent = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(payment_intent)
    .bind(now_unix())
    .bind(session_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO enrollments (user_id, course_id, kind, price_cents, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id, course_id) DO NOTHING",
    )
    .bind(&user)
    .bind(&course)
    .bind(EnrollmentKind::Purchase.as_str())
    .bind(amount_cents)
    .bind(now_unix())
    .execute(&mut **tx)
    .await?;
    let event = LiveEvent::Purchased {
        course_id: course.clone(),
        user_id: user,
        amount_cents,
        currency: currency.to_ascii_lowercase(),
    };
    tell_owner(tx, &course, event).await
}

/// Journals a purchase's news for the course's owner (live, and to their webhooks).
async fn tell_owner(tx: &mut Tx, course: &CourseId, event: LiveEvent) -> Result<(), CatalogError> {
    let (owner,): (UserId,) = sqlx::query_as("SELECT owner_id FROM courses WHERE id = $1")
        .bind(course)
        .fetch_one(&mut **tx)
        .await?;
    let draft = crate::journal::Draft {
        owner_id: owner,
        course_id: Some(course.clone()),
        event,
        for_students: None,
    };
    crate::journal::record_in(tx, &draft).await?;
    Ok(())
}

/// Money went back: the payment is marked, and the enrollment it bought is taken back.
async fn revoke(tx: &mut Tx, payment_intent: &str, status: &str) -> Result<(), CatalogError> {
    let row: Option<(UserId, CourseId)> = sqlx::query_as(
        "SELECT user_id, course_id FROM payments WHERE payment_intent = $1 AND status = 'paid'",
    )
    .bind(payment_intent)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((user, course)) = row else {
        return Ok(());
    };
    sqlx::query("UPDATE payments SET status = $1, updated_at = $2 WHERE payment_intent = $3")
        .bind(status)
        .bind(now_unix())
        .bind(payment_intent)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM enrollments WHERE user_id = $1 AND course_id = $2 AND kind = $3")
        .bind(&user)
        .bind(&course)
        .bind(EnrollmentKind::Purchase.as_str())
        .execute(&mut **tx)
        .await?;
    tracing::info!(user = %user, course = %course, status, "a purchase was taken back");
    let event = LiveEvent::PurchaseRevoked {
        course_id: course.clone(),
        user_id: user,
        reason: status.to_string(),
    };
    tell_owner(tx, &course, event).await
}
