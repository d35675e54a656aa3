//! Sending deliveries: the Standard Webhooks payload and signature, and the loop that
//! takes due deliveries from the outbox, POSTs them (no redirects, a time limit, public
//! addresses only), records each attempt, schedules the next with back-off, and
//! disables an endpoint whose delivery runs out of retries. Every catalog process runs
//! it; a delivery is claimed with a guarded update, so one process sends it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use lectern_seams::db::Db;
use lectern_seams::ids::UserId;
use lectern_seams::now_unix;
use sha2::Sha256;

use super::{DeliveryState, EventType, Settings, guard};
use crate::error::CatalogError;
use crate::events::LiveEvent;
use crate::journal::{Draft, Journal};

/// The body of a delivery: `{type, timestamp, data}`, `data` being the event as its
/// owner's live connection sees it (with its journal number).
pub fn payload(kind: EventType, event: &str, at: i64) -> Result<String, CatalogError> {
    let mut data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(event).map_err(|e| CatalogError::Internal(e.to_string()))?;
    data.remove("type");
    let timestamp = time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .ok_or_else(|| CatalogError::Internal(format!("{at} is not a time")))?;
    Ok(
        serde_json::json!({"type": kind.as_str(), "timestamp": timestamp, "data": data})
            .to_string(),
    )
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with a `whsec_` secret's key.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| format!("a webhook secret is not base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Deliveries one look takes at most (and sends at once).
const BATCH: i64 = 16;
/// The largest part of an answer kept in the log.
const EXCERPT_BYTES: usize = 1024;

/// Sends due deliveries until the task is dropped.
pub async fn run(db: Db, settings: Arc<Settings>, journal: Journal) {
    let http = match client(&settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks cannot be sent: no HTTP client");
            return;
        }
    };
    loop {
        match due(&db, &settings).await {
            Ok(ids) => {
                futures::stream::iter(ids)
                    .for_each_concurrent(None, |id| {
                        let (db, http, settings, journal) = (&db, &http, &settings, &journal);
                        async move {
                            if let Err(e) = attempt(db, http, settings, journal, &id).await {
                                tracing::warn!(delivery = %id, error = %e, "a webhook attempt could not be recorded");
                            }
                        }
                    })
                    .await;
            }
            Err(e) => tracing::warn!(error = %e, "looking for due webhook deliveries failed"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn client(settings: &Settings) -> reqwest::Result<reqwest::Client> {
    // reqwest's rustls takes the process's provider: ring, as the rest of Lectern.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .dns_resolver(Arc::new(guard::PublicResolver {
            allow_private: settings.allow_private,
        }))
        .user_agent(concat!("Lectern-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Claims the due deliveries this process will send.
async fn due(db: &Db, settings: &Settings) -> Result<Vec<String>, sqlx::Error> {
    let lease = settings.timeout.as_secs() as i64 + 30;
    crate::outbox::claim_due(db, "webhook_deliveries", lease, BATCH).await
}

/// What one attempt came to.
struct Outcome {
    status: Option<i64>,
    latency_ms: i64,
    excerpt: Option<String>,
    error: Option<String>,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

type Target = (
    String,
    String,
    Option<String>,
    Option<i64>,
    i64,
    UserId,
    String,
    String,
    i64,
);

async fn attempt(
    db: &Db,
    http: &reqwest::Client,
    settings: &Settings,
    journal: &Journal,
    id: &str,
) -> Result<(), CatalogError> {
    let row: Option<Target> = sqlx::query_as(
        "SELECT e.id, e.secret, e.previous_secret, e.previous_until, e.enabled, e.owner_id, e.url, d.payload, d.attempts
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let Some((endpoint, secret, previous, previous_until, enabled, owner, url, body, attempts)) =
        row
    else {
        return Ok(()); // its endpoint was deleted
    };
    if enabled == 0 {
        return finish(db, id, DeliveryState::Failed).await;
    }
    let mut secrets = vec![secret];
    if let (Some(p), Some(until)) = (previous, previous_until)
        && until > now_unix()
    {
        secrets.push(p);
    }
    let outcome = post(http, settings, &url, id, &secrets, &body).await;
    let attempts = attempts + 1;
    record(db, id, attempts, &outcome).await?;
    if outcome.delivered() {
        return finish(db, id, DeliveryState::Delivered).await;
    }
    match settings.retry_secs.get(attempts as usize - 1) {
        Some(wait) => {
            sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id = $2")
                .bind(now_unix() + *wait as i64)
                .bind(id)
                .execute(db)
                .await?;
            Ok(())
        }
        // A resend past the schedule was one attempt; its failure changes nothing more.
        None if attempts as usize > settings.retry_secs.len() + 1 => {
            finish(db, id, DeliveryState::Failed).await
        }
        None => {
            finish(db, id, DeliveryState::Failed).await?;
            disable(db, journal, &endpoint, &owner, &url, attempts).await
        }
    }
}

/// POSTs the body, signed with every current secret.
async fn post(
    http: &reqwest::Client,
    settings: &Settings,
    url: &str,
    id: &str,
    secrets: &[String],
    body: &str,
) -> Outcome {
    let started = Instant::now();
    let failed = |error: String| Outcome {
        status: None,
        latency_ms: started.elapsed().as_millis() as i64,
        excerpt: None,
        error: Some(error),
    };
    // A literal address never meets the resolver: check it here.
    if !settings.allow_private
        && let Ok(parsed) = reqwest::Url::parse(url)
        && let Some(host) = parsed.host_str()
        && host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
        && let Err(e) = guard::public_addrs(host, 0).await
    {
        return failed(e);
    }
    let timestamp = now_unix();
    let mut signatures = Vec::new();
    for secret in secrets {
        match signature(secret, id, timestamp, body) {
            Ok(s) => signatures.push(s),
            Err(e) => return failed(e),
        }
    }
    let sent = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures.join(" "))
        .body(body.to_string())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return failed(describe(&e)),
    };
    let status = i64::from(response.status().as_u16());
    let mut excerpt = Vec::new();
    let mut stream = response.bytes_stream();
    while excerpt.len() < EXCERPT_BYTES {
        match stream.next().await {
            Some(Ok(chunk)) => excerpt.extend_from_slice(&chunk),
            _ => break,
        }
    }
    excerpt.truncate(EXCERPT_BYTES);
    Outcome {
        status: Some(status),
        latency_ms: started.elapsed().as_millis() as i64,
        excerpt: Some(String::from_utf8_lossy(&excerpt).into_owned()),
        error: None,
    }
}

/// A failed request in words, without anything from inside Lectern.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    // The resolver's refusal says which address was refused and why.
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        let text = inner.to_string();
        if text.contains("public addresses only") {
            return text;
        }
        source = inner.source();
    }
    what.to_string()
}

async fn record(db: &Db, id: &str, attempts: i64, o: &Outcome) -> Result<(), CatalogError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET attempts = $1, last_status = $2, last_latency_ms = $3, last_response = $4, last_error = $5
         WHERE id = $6",
    )
    .bind(attempts)
    .bind(o.status)
    .bind(o.latency_ms)
    .bind(o.excerpt.as_deref())
    .bind(o.error.as_deref())
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

async fn finish(db: &Db, id: &str, state: DeliveryState) -> Result<(), CatalogError> {
    sqlx::query("UPDATE webhook_deliveries SET state = $1, finished_at = $2 WHERE id = $3")
        .bind(state.as_str())
        .bind(now_unix())
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Turns an endpoint off after a delivery ran out of retries, fails what waits for it,
/// and tells its owner (live, and in the journal).
async fn disable(
    db: &Db,
    journal: &Journal,
    endpoint: &str,
    owner: &UserId,
    url: &str,
    attempts: i64,
) -> Result<(), CatalogError> {
    let reason = format!(
        "a delivery failed {attempts} times over about a day; fix the receiver, enable the endpoint and resend what failed"
    );
    let mut tx = db.begin().await?;
    let changed = sqlx::query(
        "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at = $2 WHERE id = $3 AND enabled = 1",
    )
    .bind(&reason)
    .bind(now_unix())
    .bind(endpoint)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 1 {
        sqlx::query("UPDATE webhook_deliveries SET state = $1, finished_at = $2 WHERE endpoint_id = $3 AND state = $4")
            .bind(DeliveryState::Failed.as_str())
            .bind(now_unix())
            .bind(endpoint)
            .bind(DeliveryState::Pending.as_str())
            .execute(&mut *tx)
            .await?;
        let draft = Draft {
            owner_id: owner.clone(),
            course_id: None,
            event: LiveEvent::WebhookDisabled {
                endpoint_id: endpoint.to_string(),
                url: url.to_string(),
                reason: reason.clone(),
            },
            for_students: None,
        };
        crate::journal::record_in(&mut tx, &draft).await?;
        tracing::warn!(endpoint, %reason, "webhook endpoint disabled");
    }
    tx.commit().await?;
    journal.nudge();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn payloads_carry_type_time_and_the_event() {
        let p = payload(
            EventType::LectureReady,
            r#"{"seq":4,"type":"ready","lecture_id":"l","course_id":"c","duration_secs":3.5}"#,
            1_700_000_000,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["type"], "lecture.ready");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(v["data"]["lecture_id"], "l");
        assert_eq!(v["data"]["seq"], 4);
        assert!(v["data"].get("type").is_none());
    }
}
