//! Stripe Checkout: a Checkout Session opened by the server (`POST /v1/checkout/sessions`,
//! form-encoded, with an idempotency key), and webhook events checked as Stripe signs
//! them: `Stripe-Signature: t=…,v1=…`, HMAC-SHA256 of `t.body` with the endpoint's
//! secret, within five minutes of `t`.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{Checkout, Order, PaymentEvent, PaymentProvider, Verified};
use crate::error::CatalogError;

/// How old a signed event may be (Stripe's libraries' default tolerance).
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// The secret API key (`sk_…`).
    pub secret_key: String,
    /// The webhook endpoint's signing secret (`whsec_…`).
    pub webhook_secret: String,
    /// `https://api.stripe.com`, or a server speaking the same endpoints.
    pub api_base: String,
}

pub struct Stripe {
    config: StripeConfig,
    http: reqwest::Client,
}

impl Stripe {
    pub fn new(config: StripeConfig) -> Result<Self, CatalogError> {
        // reqwest's rustls takes the process's provider: ring, as the rest of Lectern.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| CatalogError::Internal(format!("HTTP client: {e}")))?;
        Ok(Self { config, http })
    }
}

#[derive(Deserialize)]
struct SessionCreated {
    id: String,
    url: String,
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

#[async_trait::async_trait]
impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn open_checkout(&self, order: &Order) -> Result<Checkout, CatalogError> {
        let amount = order.amount_cents.to_string();
        let form = [
            ("mode", "payment"),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", order.currency),
            ("line_items[0][price_data][unit_amount]", &amount),
            (
                "line_items[0][price_data][product_data][name]",
                &order.course_title,
            ),
            ("success_url", &order.success_url),
            ("cancel_url", &order.cancel_url),
            ("client_reference_id", order.user_id.as_str()),
            ("metadata[course_id]", order.course_id.as_str()),
            ("metadata[user_id]", order.user_id.as_str()),
        ];
        let url = format!(
            "{}/v1/checkout/sessions",
            self.config.api_base.trim_end_matches('/')
        );
        let res = self
            .http
            .post(url)
            .bearer_auth(&self.config.secret_key)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable(format!("could not reach Stripe: {e}")))?;
        let status = res.status();
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            tracing::warn!(%status, body = %body.chars().take(500).collect::<String>(), "Stripe refused a Checkout Session");
            return Err(unavailable(format!("Stripe answered {status}")));
        }
        let created: SessionCreated = res
            .json()
            .await
            .map_err(|e| unavailable(format!("Stripe's answer was not a Checkout Session: {e}")))?;
        Ok(Checkout {
            session_id: created.id,
            url: created.url,
        })
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, CatalogError> {
        let header = headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refused("no Stripe-Signature header"))?;
        check_signature(&self.config.webhook_secret, header, body, now)?;
        let event: Event = serde_json::from_slice(body)
            .map_err(|e| CatalogError::Invalid(format!("not a Stripe event: {e}")))?;
        Ok(Verified {
            event: meaning(&event.kind, &event.data.object),
            id: event.id,
        })
    }
}

fn unavailable(message: String) -> CatalogError {
    CatalogError::Internal(message)
}

fn refused(why: &str) -> CatalogError {
    CatalogError::Invalid(format!("webhook refused: {why}"))
}

/// Checks `Stripe-Signature` against the body: one `v1` must be the HMAC of `t.body`,
/// and `t` within [`TOLERANCE_SECS`] of now.
pub fn check_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), CatalogError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.extend(hex::decode(sig).ok()),
            _ => {}
        }
    }
    let t = timestamp.ok_or_else(|| refused("the signature has no timestamp"))?;
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(refused("the signature is outside the replay window"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    if signatures
        .iter()
        .any(|sig| mac.clone().verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(refused("the signature does not match"))
    }
}

/// What an event of `kind` about `object` means to Lectern.
fn meaning(kind: &str, object: &serde_json::Value) -> PaymentEvent {
    let text = |key: &str| object.get(key).and_then(|v| v.as_str()).map(str::to_string);
    match kind {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
            if text("payment_status").as_deref() == Some("paid") =>
        {
            match (
                text("id"),
                object.get("amount_total").and_then(|v| v.as_i64()),
            ) {
                (Some(session_id), Some(amount_cents)) => PaymentEvent::Paid {
                    session_id,
                    payment_intent: text("payment_intent"),
                    amount_cents,
                    currency: text("currency").unwrap_or_default(),
                },
                _ => PaymentEvent::Other,
            }
        }
        // A partial refund keeps the course; a full one takes it back.
        "charge.refunded" if object.get("refunded").and_then(|v| v.as_bool()) == Some(true) => {
            text("payment_intent").map_or(PaymentEvent::Other, |payment_intent| {
                PaymentEvent::Refunded { payment_intent }
            })
        }
        "charge.dispute.created" => text("payment_intent")
            .map_or(PaymentEvent::Other, |payment_intent| {
                PaymentEvent::Disputed { payment_intent }
            }),
        _ => PaymentEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked_with_their_replay_window() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000;
        let good = sign("whsec_a", now - 10, body);
        assert!(check_signature("whsec_a", &good, body, now).is_ok());
        // Another v1 beside the right one (Stripe sends one per active secret).
        let rolled = format!("{good},v1={}", "00".repeat(32));
        assert!(check_signature("whsec_a", &rolled, body, now).is_ok());
        for (header, body_sent, at) in [
            (good.clone(), &br#"{"id":"evt_2"}"#[..], now),
            (sign("whsec_b", now, body), &body[..], now),
            (sign("whsec_a", now - 301, body), &body[..], now),
            (sign("whsec_a", now + 301, body), &body[..], now),
            ("v1=abcd".to_string(), &body[..], now),
            (format!("t={now},v0=00"), &body[..], now),
        ] {
            assert!(
                check_signature("whsec_a", &header, body_sent, at).is_err(),
                "{header}"
            );
        }
    }

    #[test]
    fn events_mean_what_stripe_says() {
        let paid = serde_json::json!({"id": "cs_1", "payment_status": "paid", "amount_total": 1900, "currency": "usd", "payment_intent": "pi_1"});
        assert_eq!(
            meaning("checkout.session.completed", &paid),
            PaymentEvent::Paid {
                session_id: "cs_1".into(),
                payment_intent: Some("pi_1".into()),
                amount_cents: 1900,
                currency: "usd".into()
            }
        );
        let unpaid =
            serde_json::json!({"id": "cs_1", "payment_status": "unpaid", "amount_total": 1900});
        assert_eq!(
            meaning("checkout.session.completed", &unpaid),
            PaymentEvent::Other
        );
        let partial = serde_json::json!({"payment_intent": "pi_1", "refunded": false});
        assert_eq!(meaning("charge.refunded", &partial), PaymentEvent::Other);
        let full = serde_json::json!({"payment_intent": "pi_1", "refunded": true});
        assert_eq!(
            meaning("charge.refunded", &full),
            PaymentEvent::Refunded {
                payment_intent: "pi_1".into()
            }
        );
        assert_eq!(
            meaning("charge.dispute.created", &full),
            PaymentEvent::Disputed {
                payment_intent: "pi_1".into()
            }
        );
        assert_eq!(meaning("invoice.paid", &paid), PaymentEvent::Other);
    }
}
