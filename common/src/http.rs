//! The one JSON error shape of every Lectern HTTP error:
//! `{"error": {"code": "...", "message": "..."}}`. Each crate maps its own error type
//! onto it once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// The response for an error: the stable JSON body with the given status.
/// Server errors are logged by the caller and sent with a generic message, so no
/// internal detail reaches a client.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_string(&ErrorBody { error: ErrorDetail { code, message } })
        .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"internal error"}}"#.into());
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The response for an unexpected failure: logged here with its detail, answered with
/// a generic 500.
pub fn internal_error(context: &str, detail: &dyn std::fmt::Display) -> Response {
    tracing::error!(%detail, "{context}");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error")
}
