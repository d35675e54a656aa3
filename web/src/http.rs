//! The one JSON error shape of every Lectern HTTP error,
//! `{"error": {"code": "...", "message": "..."}}`, and the one list of its codes
//! (`ErrorCode`). Each crate maps its own error type onto it once.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every error code the API answers with: the one list, shown in the OpenAPI
/// description. Each code has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed or a value is out of range.
    Invalid,
    /// 401: no valid access token.
    Unauthenticated,
    /// 401: email or password is wrong.
    BadCredentials,
    /// 403: the account may not do this.
    Forbidden,
    /// 403: the playback token is forged, tampered or expired.
    BadPlaybackToken,
    /// 403: the download link is forged, tampered or expired.
    BadDownloadLink,
    /// 404
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 409: the resource is in a state that does not allow this.
    Conflict,
    /// 409: a tus chunk's Upload-Offset is not the upload's offset.
    OffsetMismatch,
    /// 410: the unfinished upload expired.
    UploadExpired,
    /// 402: a priced course must be bought.
    PurchaseRequired,
    /// 413: the body or the upload is larger than allowed.
    PayloadTooLarge,
    /// 413: the owner's upload quota would be exceeded.
    QuotaExceeded,
    /// 415
    UnsupportedMediaType,
    /// 415: an attachment's bytes are not a kind of file Lectern hands out.
    UnsupportedFileType,
    /// 460 (tus checksum extension): the chunk was discarded.
    ChecksumMismatch,
    /// 412: a tus version this server does not speak.
    TusVersion,
    /// 416
    RangeNotSatisfiable,
    /// 429: see Retry-After.
    RateLimited,
    /// 503: the server took too long to answer.
    Timeout,
    /// 503: a backend the request needs is not answering; see Retry-After.
    Unavailable,
    /// 500: logged on the server; nothing more is said.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::Invalid,
        ErrorCode::Unauthenticated,
        ErrorCode::BadCredentials,
        ErrorCode::Forbidden,
        ErrorCode::BadPlaybackToken,
        ErrorCode::BadDownloadLink,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::OffsetMismatch,
        ErrorCode::UploadExpired,
        ErrorCode::PurchaseRequired,
        ErrorCode::PayloadTooLarge,
        ErrorCode::QuotaExceeded,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::UnsupportedFileType,
        ErrorCode::ChecksumMismatch,
        ErrorCode::TusVersion,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::RateLimited,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// A Markdown list of every code and its status, for the OpenAPI description.
    pub fn described() -> String {
        ErrorCode::ALL
            .iter()
            .map(|c| format!("- `{}` ({})\n", c.as_str(), c.status().as_u16()))
            .collect()
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Invalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated | ErrorCode::BadCredentials => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::BadPlaybackToken | ErrorCode::BadDownloadLink => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict | ErrorCode::OffsetMismatch => StatusCode::CONFLICT,
            ErrorCode::UploadExpired => StatusCode::GONE,
            ErrorCode::PurchaseRequired => StatusCode::PAYMENT_REQUIRED,
            ErrorCode::PayloadTooLarge | ErrorCode::QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType | ErrorCode::UnsupportedFileType => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ErrorCode::ChecksumMismatch => {
                StatusCode::from_u16(460).expect("460 is a valid status")
            }
            ErrorCode::TusVersion => StatusCode::PRECONDITION_FAILED,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Timeout | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it is written in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadPlaybackToken => "bad_playback_token",
            ErrorCode::BadDownloadLink => "bad_download_link",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::OffsetMismatch => "offset_mismatch",
            ErrorCode::UploadExpired => "upload_expired",
            ErrorCode::PurchaseRequired => "purchase_required",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UnsupportedFileType => "unsupported_file_type",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::TusVersion => "tus_version",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable.
    pub code: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
}

/// What a refusal (a 4xx answer) said, for the edge to log with the request's id,
/// method, path and client.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// The response for an error: the stable JSON body with the code's status. A refusal
/// carries its code and message as a `Refusal` extension, which the edge logs; server
/// errors are logged by the caller and sent with a generic message, so no internal
/// detail reaches a client.
pub fn error_response(code: ErrorCode, message: &str) -> Response {
    let status = code.status();
    let body = ErrorBody {
        error: ErrorDetail {
            code,
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
        res.extensions_mut().insert(Refusal {
            code,
            message: body.error.message,
        });
    }
    res
}

/// 405 for a method the route does not take; `allow` lists the ones it does, when the
/// caller knows them.
pub fn method_not_allowed(allow: Option<&'static str>) -> Response {
    let mut res = error_response(
        ErrorCode::MethodNotAllowed,
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
    let mut res = error_response(ErrorCode::RateLimited, &refusal.message);
    res.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        refusal.retry_after_secs().into(),
    );
    res
}

/// What went wrong behind a 500, kept on the response for error tracking (a response
/// extension is never sent to the client).
#[derive(Debug, Clone)]
pub struct ServerFailure {
    pub context: String,
    pub detail: String,
}

/// The response for an unexpected failure: logged here with its detail, answered with
/// a generic 500.
pub fn internal_error(context: &str, detail: &dyn std::fmt::Display) -> Response {
    let detail = detail.to_string();
    tracing::error!(%detail, "{context}");
    let mut res = error_response(ErrorCode::Internal, "internal server error");
    res.extensions_mut().insert(ServerFailure {
        context: context.to_string(),
        detail,
    });
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_written_as_serde_writes_it() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} twice");
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn the_body_and_status_follow_the_code() {
        let res = error_response(ErrorCode::QuotaExceeded, "over");
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let refusal = res.extensions().get::<Refusal>().unwrap();
        assert_eq!(
            (refusal.code, refusal.message.as_str()),
            (ErrorCode::QuotaExceeded, "over")
        );
        let server = error_response(ErrorCode::Internal, "x");
        assert!(server.extensions().get::<Refusal>().is_none());
    }
}

/// A JSON body whose rejections use the API's error shape. Bodies must be JSON
/// objects: serde would otherwise read a struct from an array of its fields.
pub struct ApiJson<T>(pub T);

/// Why a request body was refused: `invalid` or `payload_too_large`, with the reason.
#[derive(Debug)]
pub struct BadBody {
    pub code: ErrorCode,
    pub message: String,
}

impl BadBody {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Invalid,
            message: message.into(),
        }
    }
}

impl IntoResponse for BadBody {
    fn into_response(self) -> Response {
        error_response(self.code, &self.message)
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = BadBody;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(value)) => object_body(value).map(ApiJson),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(BadBody::invalid("send the body as application/json"))
            }
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(BadBody {
                code: ErrorCode::PayloadTooLarge,
                message: rejection.body_text(),
            }),
            Err(rejection) => Err(BadBody::invalid(rejection.body_text())),
        }
    }
}

/// A JSON object read into `T` (an array or a scalar is refused).
pub fn object_body<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, BadBody> {
    if !value.is_object() {
        return Err(BadBody::invalid("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| BadBody::invalid(format!("invalid JSON body: {e}")))
}

/// A query string whose rejections use the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = BadBody;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| ApiQuery(q))
            .map_err(|e| BadBody::invalid(e.body_text()))
    }
}
