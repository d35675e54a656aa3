//! Refusing at once what a dead backend would only make wait: a request needing a
//! backend whose circuit breaker is open gets 503 `unavailable` with Retry-After.
//! Segments of ready lectures need only storage, so students keep watching while the
//! database is away.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use lectern_seams::breaker::{Backend, PROBE_EVERY, SharedBreakers};

use crate::http::{ErrorCode, error_response};

/// The backends a request to `path` cannot be answered without.
pub fn needs(path: &str) -> &'static [Backend] {
    const DB: &[Backend] = &[Backend::Database];
    const DB_AND_STORE: &[Backend] = &[Backend::Database, Backend::Storage];
    const STORE: &[Backend] = &[Backend::Storage];
    if path.starts_with("/api/uploads")
        || path.starts_with("/api/transcodes")
        || path.starts_with("/api/attachments/files/")
    {
        DB_AND_STORE
    } else if path.starts_with("/play/") {
        STORE
    } else if path.starts_with("/api/") && path != "/api/openapi.json" {
        DB
    } else {
        &[]
    }
}

pub async fn refuse_when_down(
    State(breakers): State<SharedBreakers>,
    req: Request,
    next: Next,
) -> Response {
    let down = needs(req.uri().path())
        .iter()
        .find(|b| breakers.is_open(**b));
    let Some(backend) = down else {
        return next.run(req).await;
    };
    let message = format!(
        "the {} is not answering; try again in a moment",
        backend.as_str()
    );
    let mut res = error_response(ErrorCode::Unavailable, &message);
    let wait = (PROBE_EVERY.as_secs() * 2).max(1);
    res.headers_mut()
        .insert("retry-after", HeaderValue::from(wait));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_needs_what_it_reads() {
        assert_eq!(needs("/api/courses"), &[Backend::Database]);
        assert_eq!(
            needs("/api/uploads/abc"),
            &[Backend::Database, Backend::Storage]
        );
        assert_eq!(needs("/play/token/720p/seg_00001.ts"), &[Backend::Storage]);
        assert!(needs("/readyz").is_empty());
        assert!(needs("/api/openapi.json").is_empty());
        assert!(needs("/index.html").is_empty());
    }
}
