//! Ingest's one error type and its HTTP mapping.

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use lectern_web::http::{ErrorCode, error_response, internal_error};

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
    /// An attachment's bytes are not a kind Lectern hands out (the reason says what).
    #[error("{0}")]
    UnsupportedFileType(String),
    #[error("the chunk does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
    #[error("this server speaks tus 1.0.0; send Tus-Resumable: 1.0.0")]
    TusVersion,
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{}", .0.message)]
    RateLimited(lectern_web::limits::Refusal),
    #[error("storage: {0}")]
    Storage(#[from] lectern_seams::storage::StorageError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("queue: {0}")]
    Queue(#[from] lectern_seams::queue::QueueError),
    /// Analysing an upload could not run (not the file's fault).
    #[error("{0}")]
    Internal(String),
}

impl From<crate::tus::HeaderError> for IngestError {
    fn from(e: crate::tus::HeaderError) -> Self {
        IngestError::BadRequest(e.to_string())
    }
}

impl From<lectern_web::limits::Refusal> for IngestError {
    fn from(r: lectern_web::limits::Refusal) -> Self {
        IngestError::RateLimited(r)
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let code = match &self {
            IngestError::BadRequest(_) => ErrorCode::Invalid,
            IngestError::Forbidden(_) => ErrorCode::Forbidden,
            IngestError::NotFound(_) => ErrorCode::NotFound,
            IngestError::Gone => ErrorCode::UploadExpired,
            IngestError::OffsetConflict { .. } => ErrorCode::OffsetMismatch,
            IngestError::Conflict(_) => ErrorCode::Conflict,
            IngestError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            IngestError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            IngestError::RateLimited(refusal) => {
                return lectern_web::http::rate_limited(refusal);
            }
            IngestError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            IngestError::UnsupportedFileType(_) => ErrorCode::UnsupportedFileType,
            IngestError::ChecksumMismatch => ErrorCode::ChecksumMismatch,
            IngestError::TusVersion => {
                let mut res = error_response(ErrorCode::TusVersion, &message);
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
        error_response(code, &message)
    }
}
