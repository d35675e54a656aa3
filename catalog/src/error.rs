//! Catalog's one error type and its HTTP mapping.

use axum::response::{IntoResponse, Response};
use lectern_web::http::{ErrorCode, error_response, internal_error};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Invalid(String),
    #[error("email or password is wrong")]
    BadCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PaymentRequired(String),
    #[error("the playback link is invalid or has expired")]
    BadPlaybackToken,
    #[error("the request body is larger than this route accepts")]
    TooLarge,
    /// A file announced larger than its kind may be.
    #[error("{0}")]
    TooLargeFile(String),
    #[error("the download link is invalid or has expired")]
    BadDownloadLink,
    #[error("{}", .0.message)]
    RateLimited(lectern_web::limits::Refusal),
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("storage: {0}")]
    Storage(lectern_seams::storage::StorageError),
    #[error("{0}")]
    Internal(String),
}

impl From<lectern_seams::storage::StorageError> for CatalogError {
    fn from(e: lectern_seams::storage::StorageError) -> Self {
        match e {
            lectern_seams::storage::StorageError::NotFound(_)
            | lectern_seams::storage::StorageError::InvalidKey(_) => CatalogError::NotFound("file"),
            other => CatalogError::Storage(other),
        }
    }
}

impl From<lectern_web::limits::Refusal> for CatalogError {
    fn from(r: lectern_web::limits::Refusal) -> Self {
        CatalogError::RateLimited(r)
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let code = match &self {
            CatalogError::Invalid(_) => ErrorCode::Invalid,
            CatalogError::BadCredentials => ErrorCode::BadCredentials,
            CatalogError::Forbidden(_) => ErrorCode::Forbidden,
            CatalogError::NotFound(_) => ErrorCode::NotFound,
            CatalogError::Conflict(_) => ErrorCode::Conflict,
            CatalogError::PaymentRequired(_) => ErrorCode::PurchaseRequired,
            CatalogError::BadPlaybackToken => ErrorCode::BadPlaybackToken,
            CatalogError::TooLarge | CatalogError::TooLargeFile(_) => ErrorCode::PayloadTooLarge,
            CatalogError::BadDownloadLink => ErrorCode::BadDownloadLink,
            CatalogError::RateLimited(refusal) => {
                return lectern_web::http::rate_limited(refusal);
            }
            CatalogError::RangeNotSatisfiable { size } => {
                let mut res = error_response(ErrorCode::RangeNotSatisfiable, &message);
                if let Ok(v) = format!("bytes */{size}").parse() {
                    res.headers_mut()
                        .insert(axum::http::header::CONTENT_RANGE, v);
                }
                return res;
            }
            CatalogError::Db(_) | CatalogError::Storage(_) | CatalogError::Internal(_) => {
                return internal_error("catalog request failed", &self);
            }
        };
        error_response(code, &message)
    }
}

impl From<lectern_web::http::BadBody> for CatalogError {
    fn from(bad: lectern_web::http::BadBody) -> Self {
        match bad.code {
            lectern_web::http::ErrorCode::PayloadTooLarge => CatalogError::TooLarge,
            _ => CatalogError::Invalid(bad.message),
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for CatalogError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            CatalogError::TooLarge
        } else {
            CatalogError::Invalid(r.body_text())
        }
    }
}
