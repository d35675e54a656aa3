//! Webhooks: owners register endpoints (a URL, the event types they want, a secret
//! shown once and rotated with an overlap) and Lectern POSTs each such event to them,
//! signed per Standard Webhooks. Deliveries are written with the journal entry they
//! carry and sent from that outbox ([`send`]), retried with back-off for about a day;
//! an endpoint whose delivery runs out of retries is disabled, and its owner told. The
//! `webhook_endpoints` and `webhook_deliveries` tables are the catalog's.

pub mod guard;
pub mod send;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lectern_seams::db::Db;
use lectern_seams::ids::UserId;
use lectern_seams::now_unix;
use lectern_web::auth::{AuthUser, Role};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;
use crate::journal::Tx;

/// What an endpoint may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    /// A lecture's file arrived whole.
    #[serde(rename = "upload.completed")]
    UploadCompleted,
    /// A lecture plays while the rest is encoded.
    #[serde(rename = "lecture.playable")]
    LecturePlayable,
    #[serde(rename = "lecture.ready")]
    LectureReady,
    #[serde(rename = "lecture.failed")]
    LectureFailed,
    #[serde(rename = "enrollment.created")]
    EnrollmentCreated,
    #[serde(rename = "purchase.completed")]
    PurchaseCompleted,
    /// Refunded or disputed: the enrollment was taken back.
    #[serde(rename = "purchase.refunded")]
    PurchaseRefunded,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::UploadCompleted,
        EventType::LecturePlayable,
        EventType::LectureReady,
        EventType::LectureFailed,
        EventType::EnrollmentCreated,
        EventType::PurchaseCompleted,
        EventType::PurchaseRefunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UploadCompleted => "upload.completed",
            EventType::LecturePlayable => "lecture.playable",
            EventType::LectureReady => "lecture.ready",
            EventType::LectureFailed => "lecture.failed",
            EventType::EnrollmentCreated => "enrollment.created",
            EventType::PurchaseCompleted => "purchase.completed",
            EventType::PurchaseRefunded => "purchase.refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// How deliveries go out (`LECTERN_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether endpoints may be private, loopback or link-local addresses (an operator's
    /// choice for a closed network; never the default).
    pub allow_private: bool,
    /// Seconds before each retry after a failed attempt; the delivery fails after the
    /// last, and its endpoint is disabled.
    pub retry_secs: Vec<u64>,
    /// How long one attempt may take, connection to answer.
    pub timeout: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_private: false,
            // About 28 hours in all, as Standard Webhooks senders do.
            retry_secs: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000],
            timeout: std::time::Duration::from_secs(15),
        }
    }
}

/// Endpoints one owner may have.
pub const MAX_ENDPOINTS: i64 = 20;
/// How long a rotated-out secret still signs.
pub const ROTATION_OVERLAP_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<EventType>,
    pub enabled: bool,
    /// Why it was disabled, when Lectern disabled it.
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation also signs.
    pub previous_secret_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An endpoint with its signing secret: shown when it is made and when it is rotated,
/// never again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_` and the base64 key, as Standard Webhooks libraries take it.
    pub secret: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewEndpoint {
    /// An http(s) URL of a public address.
    #[schema(max_length = 2000)]
    pub url: String,
    #[schema(min_items = 1)]
    pub event_types: Vec<EventType>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct EndpointPatch {
    #[schema(max_length = 2000)]
    pub url: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    #[schema(max_length = 200)]
    pub description: Option<String>,
    /// Re-enable a disabled endpoint (its failed deliveries stay failed: resend them).
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One event's delivery to an endpoint, as the delivery log shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    /// The `webhook-id` header: the same on every attempt, for receivers to skip repeats.
    pub id: String,
    pub event_type: EventType,
    pub state: DeliveryState,
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<i64>,
    /// The last attempt's HTTP status; null when no answer came.
    pub last_status: Option<i64>,
    pub last_latency_ms: Option<i64>,
    /// The start of the last answer's body (at most 1 KiB, as text).
    pub last_response: Option<String>,
    /// Why the last attempt got no answer (refused address, timeout, connection).
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// What was sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryLog {
    pub deliveries: Vec<WebhookDelivery>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<Endpoint>,
}

type EndpointRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, enabled, disabled_reason, previous_until, created_at, updated_at";

fn endpoint_of(row: EndpointRow) -> Endpoint {
    let (id, url, description, types, enabled, disabled_reason, previous_until, created, updated) =
        row;
    Endpoint {
        id,
        url,
        description,
        event_types: types.split(',').filter_map(EventType::parse).collect(),
        enabled: enabled != 0,
        disabled_reason,
        previous_secret_until: previous_until.filter(|t| *t > now_unix()),
        created_at: created,
        updated_at: updated,
    }
}

/// The stored form of a set of types: `,a,b,` (so one LIKE finds a type).
fn types_text(types: &[EventType]) -> Result<String, CatalogError> {
    if types.is_empty() {
        return Err(CatalogError::Invalid(
            "event_types must name at least one event type".into(),
        ));
    }
    let mut names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    Ok(format!(",{},", names.join(",")))
}

fn new_secret() -> String {
    let key: [u8; 32] = rand::rng().random();
    format!("whsec_{}", STANDARD.encode(key))
}

fn owner_only(user: &AuthUser) -> Result<(), CatalogError> {
    if user.role == Role::Student {
        return Err(CatalogError::Forbidden(
            "only course owners have webhooks".into(),
        ));
    }
    Ok(())
}

fn check_description(text: &str) -> Result<String, CatalogError> {
    let text = text.trim();
    if text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err(CatalogError::Invalid(
            "description must be at most 200 characters without control characters".into(),
        ));
    }
    Ok(text.to_string())
}

/// Registers an endpoint for `user`; its secret is in the answer, once.
pub async fn create(
    db: &Db,
    settings: &Settings,
    user: &AuthUser,
    new: NewEndpoint,
) -> Result<EndpointWithSecret, CatalogError> {
    owner_only(user)?;
    let url = guard::check_url(&new.url, settings.allow_private).await?;
    let types = types_text(&new.event_types)?;
    let description = check_description(&new.description)?;
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM webhook_endpoints WHERE owner_id = $1")
            .bind(&user.id)
            .fetch_one(db)
            .await?;
    if count >= MAX_ENDPOINTS {
        return Err(CatalogError::Conflict(format!(
            "an account has at most {MAX_ENDPOINTS} webhook endpoints"
        )));
    }
    let id = format!("ep_{}", uuid::Uuid::new_v4().simple());
    let secret = new_secret();
    let now = now_unix();
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, owner_id, url, description, event_types, secret, enabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)",
    )
    .bind(&id)
    .bind(&user.id)
    .bind(url.as_str())
    .bind(&description)
    .bind(&types)
    .bind(&secret)
    .bind(now)
    .execute(db)
    .await?;
    let endpoint = get(db, user, &id).await?;
    Ok(EndpointWithSecret { endpoint, secret })
}

/// The user's endpoints (an admin's own, like anyone's).
pub async fn list(db: &Db, user: &AuthUser) -> Result<Vec<Endpoint>, CatalogError> {
    owner_only(user)?;
    let rows: Vec<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE owner_id = $1 ORDER BY created_at, id"
    )))
    .bind(&user.id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(endpoint_of).collect())
}

/// One of the user's endpoints (another's is not found).
pub async fn get(db: &Db, user: &AuthUser, id: &str) -> Result<Endpoint, CatalogError> {
    owner_only(user)?;
    let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND owner_id = $2"
    )))
    .bind(id)
    .bind(&user.id)
    .fetch_optional(db)
    .await?;
    row.map(endpoint_of)
        .ok_or(CatalogError::NotFound("webhook endpoint"))
}

pub async fn update(
    db: &Db,
    settings: &Settings,
    user: &AuthUser,
    id: &str,
    patch: EndpointPatch,
) -> Result<Endpoint, CatalogError> {
    let current = get(db, user, id).await?;
    let url = match &patch.url {
        Some(u) => guard::check_url(u, settings.allow_private)
            .await?
            .to_string(),
        None => current.url,
    };
    let types = types_text(patch.event_types.as_deref().unwrap_or(&current.event_types))?;
    let description = match &patch.description {
        Some(d) => check_description(d)?,
        None => current.description,
    };
    let enabled = patch.enabled.unwrap_or(current.enabled);
    sqlx::query(
        "UPDATE webhook_endpoints SET url = $1, event_types = $2, description = $3, enabled = $4,
                disabled_reason = CASE WHEN $4 = 1 THEN NULL ELSE disabled_reason END, updated_at = $5
         WHERE id = $6 AND owner_id = $7",
    )
    .bind(&url)
    .bind(&types)
    .bind(&description)
    .bind(i64::from(enabled))
    .bind(now_unix())
    .bind(id)
    .bind(&user.id)
    .execute(db)
    .await?;
    get(db, user, id).await
}

pub async fn delete(db: &Db, user: &AuthUser, id: &str) -> Result<(), CatalogError> {
    get(db, user, id).await?;
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND owner_id = $2")
        .bind(id)
        .bind(&user.id)
        .execute(db)
        .await?;
    Ok(())
}

/// A new secret; the old one also signs for [`ROTATION_OVERLAP_SECS`], so receivers
/// can switch without losing a delivery.
pub async fn rotate(
    db: &Db,
    user: &AuthUser,
    id: &str,
) -> Result<EndpointWithSecret, CatalogError> {
    get(db, user, id).await?;
    let secret = new_secret();
    let now = now_unix();
    sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $1, secret = $2, updated_at = $3
         WHERE id = $4 AND owner_id = $5",
    )
    .bind(now + ROTATION_OVERLAP_SECS)
    .bind(&secret)
    .bind(now)
    .bind(id)
    .bind(&user.id)
    .execute(db)
    .await?;
    let endpoint = get(db, user, id).await?;
    Ok(EndpointWithSecret { endpoint, secret })
}

type DeliveryRow = (
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    String,
);

fn delivery_of(row: DeliveryRow) -> Result<WebhookDelivery, CatalogError> {
    let (
        id,
        kind,
        state,
        attempts,
        next,
        status,
        latency,
        response,
        error,
        created,
        finished,
        payload,
    ) = row;
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| CatalogError::Internal(format!("delivery {id} in state {state:?}")))?;
    Ok(WebhookDelivery {
        event_type: EventType::parse(&kind)
            .ok_or_else(|| CatalogError::Internal(format!("delivery {id} of type {kind:?}")))?,
        state,
        attempts,
        next_attempt_at: (state == DeliveryState::Pending).then_some(next),
        last_status: status,
        last_latency_ms: latency,
        last_response: response,
        last_error: error,
        created_at: created,
        finished_at: finished,
        payload: serde_json::from_str(&payload)
            .map_err(|e| CatalogError::Internal(e.to_string()))?,
        id,
    })
}

const DELIVERY_COLUMNS: &str = "id, event_type, state, attempts, next_attempt_at, last_status, last_latency_ms, last_response, last_error, created_at, finished_at, payload";

/// The endpoint's last 100 deliveries, newest first.
pub async fn deliveries(
    db: &Db,
    user: &AuthUser,
    id: &str,
) -> Result<Vec<WebhookDelivery>, CatalogError> {
    get(db, user, id).await?;
    let rows: Vec<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1
         ORDER BY created_at DESC, id DESC LIMIT 100"
    )))
    .bind(id)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(delivery_of).collect()
}

/// Sends a delivery again now (one attempt; a failure does not disable the endpoint
/// again). The endpoint must be enabled.
pub async fn resend(
    db: &Db,
    user: &AuthUser,
    id: &str,
    delivery: &str,
) -> Result<WebhookDelivery, CatalogError> {
    let endpoint = get(db, user, id).await?;
    if !endpoint.enabled {
        return Err(CatalogError::Conflict(
            "the endpoint is disabled: enable it before resending".into(),
        ));
    }
    let changed = sqlx::query(
        "UPDATE webhook_deliveries SET state = $1, next_attempt_at = $2, finished_at = NULL
         WHERE id = $3 AND endpoint_id = $4 AND state <> $1",
    )
    .bind(DeliveryState::Pending.as_str())
    .bind(now_unix())
    .bind(delivery)
    .bind(id)
    .execute(db)
    .await?
    .rows_affected();
    let row: Option<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2"
    )))
    .bind(delivery)
    .bind(id)
    .fetch_optional(db)
    .await?;
    let found = row.ok_or(CatalogError::NotFound("delivery"))?;
    if changed == 0 {
        return Err(CatalogError::Conflict(
            "the delivery is already waiting to be sent".into(),
        ));
    }
    delivery_of(found)
}

/// Records a delivery of the journal entry `event` (its JSON, with its number) to each
/// enabled endpoint of `owner` that takes `kind`, in the entry's transaction.
pub(crate) async fn fan_out(
    tx: &mut Tx,
    owner: &UserId,
    kind: EventType,
    event: &str,
) -> Result<(), CatalogError> {
    let endpoints: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM webhook_endpoints WHERE owner_id = $1 AND enabled = 1 AND event_types LIKE $2",
    )
    .bind(owner)
    .bind(format!("%,{},%", kind.as_str()))
    .fetch_all(&mut **tx)
    .await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let payload = send::payload(kind, event, now_unix())?;
    for (endpoint,) in endpoints {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, state, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
        )
        .bind(format!("msg_{}", uuid::Uuid::new_v4().simple()))
        .bind(&endpoint)
        .bind(kind.as_str())
        .bind(&payload)
        .bind(DeliveryState::Pending.as_str())
        .bind(now_unix())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_sets_are_stored_so_one_like_finds_a_type() {
        let text = types_text(&[
            EventType::LectureReady,
            EventType::UploadCompleted,
            EventType::LectureReady,
        ])
        .unwrap();
        assert_eq!(text, ",lecture.ready,upload.completed,");
        assert!(types_text(&[]).is_err());
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let s = new_secret();
        let key = STANDARD.decode(s.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(s, new_secret());
    }
}
