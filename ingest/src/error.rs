//! Ingest's one error type and its HTTP mapping.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lectern_common::http::{error_response, internal_error};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("upload expired")]
    Gone,
    #[error("Upload-Offset {given} does not match the upload's offset {actual}")]
    OffsetConflict { given: u64, actual: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("PATCH bodies must be sent as application/offset+octet-stream")]
    UnsupportedMediaType,
    #[error("the chunk does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
    #[error("this server speaks tus 1.0.0; send Tus-Resumable: 1.0.0")]
    TusVersion,
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{}", .0.message)]
    RateLimited(lectern_common::limits::Refusal),
    #[error("storage: {0}")]
    Storage(#[from] lectern_common::storage::StorageError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("queue: {0}")]
    Queue(#[from] lectern_common::queue::QueueError),
    /// Analysing an upload could not run (not the file's fault).
    #[error("{0}")]
    Internal(String),
}

impl From<crate::tus::HeaderError> for IngestError {
    fn from(e: crate::tus::HeaderError) -> Self {
        IngestError::BadRequest(e.to_string())
    }
}

impl From<lectern_common::limits::Refusal> for IngestError {
    fn from(r: lectern_common::limits::Refusal) -> Self {
        IngestError::RateLimited(r)
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let (status, code) = match &self {
            IngestError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            IngestError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            IngestError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            IngestError::Gone => (StatusCode::GONE, "upload_expired"),
            IngestError::OffsetConflict { .. } => (StatusCode::CONFLICT, "offset_mismatch"),
            IngestError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            IngestError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            IngestError::QuotaExceeded(_) => (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"),
            IngestError::RateLimited(refusal) => {
                return lectern_common::http::rate_limited(refusal);
            }
            IngestError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            IngestError::ChecksumMismatch => (
                StatusCode::from_u16(460).expect("460 is a valid status"),
                "checksum_mismatch",
            ),
            IngestError::TusVersion => {
                let mut res =
                    error_response(StatusCode::PRECONDITION_FAILED, "tus_version", &message);
                res.headers_mut()
                    .insert("tus-version", HeaderValue::from_static(crate::tus::VERSION));
                return res;
            }
            IngestError::Storage(_)
            | IngestError::Db(_)
            | IngestError::Queue(_)
            | IngestError::Internal(_) => {
                return internal_error("upload request failed", &self);
            }
        };
        error_response(status, code, &message)
    }
}
