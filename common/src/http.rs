//! The one JSON error shape of every Lectern HTTP error:
//! `{"error": {"code": "...", "message": "..."}}`. Each crate maps its own error type
//! onto it once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: invalid, unauthorized, forbidden, not_found,
    /// rate_limited, quota_exceeded, payload_too_large, …
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
}

/// What a refusal (a 4xx answer) said, for the edge to log with the request's id,
/// method, path and client.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

/// The response for an error: the stable JSON body with the given status. A refusal
/// carries its code and message as a `Refusal` extension, which the edge logs; server
/// errors are logged by the caller and sent with a generic message, so no internal
/// detail reaches a client.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.to_string(),
        },
    };
    let json = serde_json::to_string(&body)
        .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"internal error"}}"#.into());
    let mut res = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response();
    if status.is_client_error() {
        let ErrorBody {
            error: ErrorDetail { code, message },
        } = body;
        res.extensions_mut().insert(Refusal { code, message });
    }
    res
}

/// 405 for a method the route does not take; `allow` lists the ones it does, when the
/// caller knows them.
pub fn method_not_allowed(allow: Option<&'static str>) -> Response {
    let mut res = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    );
    if let Some(allow) = allow {
        res.headers_mut().insert(
            axum::http::header::ALLOW,
            axum::http::HeaderValue::from_static(allow),
        );
    }
    res
}

/// 429 with the refusal's reason and when to come back (Retry-After, whole seconds).
pub fn rate_limited(refusal: &crate::limits::Refusal) -> Response {
    let mut res = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &refusal.message,
    );
    res.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        refusal.retry_after_secs().into(),
    );
    res
}

/// The response for an unexpected failure: logged here with its detail, answered with
/// a generic 500.
pub fn internal_error(context: &str, detail: &dyn std::fmt::Display) -> Response {
    tracing::error!(%detail, "{context}");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
    )
}
