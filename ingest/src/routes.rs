//! The tus HTTP surface: thin handlers that read headers and call `uploads`; and
//! transcoding a lecture's original again (`originals`).

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lectern_seams::ids::LectureId;
use lectern_seams::lecture::LectureStatus;
use lectern_web::auth::AuthUser;
use lectern_web::http::ApiJson;
use lectern_web::limits::{Action, ClientIp};

use crate::IngestState;
use crate::error::IngestError;
use crate::tus;
use crate::uploads::{self, NewUpload, Upload};

/// Ingest's part of the OpenAPI description: the tus 1.0 upload endpoints.
#[derive(utoipa::OpenApi)]
#[openapi(paths(options, create, head, patch, terminate, transcode_again), tags((name = "uploads", description = "Resumable uploads (tus 1.0)"), (name = "transcodes", description = "Transcoding a lecture's original again")))]
pub struct IngestApi;

/// Where uploads live; bodies sent there stream for as long as the client sends.
pub const UPLOADS_PATH: &str = "/api/uploads";

pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/api/uploads", post(create).options(options))
        .route(
            "/api/uploads/{id}",
            axum::routing::head(head)
                .patch(patch)
                .delete(terminate)
                .options(options),
        )
        .layer(middleware::from_fn(tus_headers))
        .route(TRANSCODES_PATH, post(transcode_again))
        .with_state(state)
}

/// Where a lecture's original is transcoded again (served by ingest, like uploads).
pub const TRANSCODES_PATH: &str = "/api/transcodes";

#[derive(serde::Deserialize, utoipa::ToSchema)]
struct TranscodeRequest {
    /// A ready or failed lecture of a course you own.
    #[schema(value_type = String, format = "uuid")]
    lecture_id: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct TranscodeStarted {
    lecture_id: LectureId,
    status: LectureStatus,
}

#[utoipa::path(
    post, path = "/api/transcodes", tag = "transcodes", security(("bearer" = [])), request_body = TranscodeRequest,
    description = "Transcodes a ready or failed lecture's last accepted file again, with the current ladder settings. An original in cold storage is brought back first. Students play what is ready until the new renditions are.",
    responses((status = 202, description = "The lecture is processing again", body = TranscodeStarted), (status = 409, description = "The lecture is not ready or failed, has no accepted file, or its original is moving to cold storage", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn transcode_again(
    State(state): State<IngestState>,
    user: AuthUser,
    ApiJson(req): ApiJson<TranscodeRequest>,
) -> Result<(StatusCode, Json<TranscodeStarted>), IngestError> {
    // Like an id in a path, one that is not an id names no lecture.
    let lecture_id = LectureId::parse(&req.lecture_id)
        .ok_or_else(|| IngestError::NotFound("no such lecture".into()))?;
    crate::originals::transcode_again(&state, &user, &lecture_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TranscodeStarted {
            lecture_id,
            status: LectureStatus::Processing,
        }),
    ))
}

/// Every tus response carries Tus-Resumable; every request but OPTIONS must too.
async fn tus_headers(req: Request, next: Next) -> Response {
    let wrong_version = req.method() != Method::OPTIONS
        && req.headers().get("tus-resumable").map(|v| v.as_bytes())
            != Some(tus::VERSION.as_bytes());
    let mut res = if wrong_version {
        IngestError::TusVersion.into_response()
    } else {
        next.run(req).await
    };
    res.headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(tus::VERSION));
    res
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn expires_header(upload: &Upload) -> HeaderValue {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(upload.expires_at.max(0) as u64);
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).expect("HTTP dates are ASCII")
}

fn offset_headers(upload: &Upload) -> [(&'static str, HeaderValue); 2] {
    [
        ("upload-offset", HeaderValue::from(upload.received)),
        ("upload-expires", expires_header(upload)),
    ]
}

#[utoipa::path(
    options, path = "/api/uploads", tag = "uploads",
    description = "tus discovery: version, extensions (creation, creation-with-upload, termination, checksum, expiration), checksum algorithms, maximum size.",
    responses((status = 204, description = "What this tus server supports", headers(("Tus-Version" = String), ("Tus-Extension" = String), ("Tus-Checksum-Algorithm" = String), ("Tus-Max-Size" = u64))))
)]
async fn options(State(state): State<IngestState>) -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [
            ("tus-version", HeaderValue::from_static(tus::VERSION)),
            ("tus-extension", HeaderValue::from_static(tus::EXTENSIONS)),
            (
                "tus-checksum-algorithm",
                HeaderValue::from_static(tus::CHECKSUM_ALGORITHMS),
            ),
            (
                "tus-max-size",
                HeaderValue::from(state.config.max_upload_bytes),
            ),
        ],
    )
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    header_str(headers, header::CONTENT_TYPE.as_str())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(tus::OFFSET_CONTENT_TYPE)
        })
        .unwrap_or(false)
}

/// The request body as a stream that ends in an error when the client sends nothing
/// for `idle`: a stalled connection then keeps the bytes it delivered and releases the
/// upload, so the client can resume from another connection.
fn body_stream(body: Body, idle: std::time::Duration) -> lectern_seams::storage::ByteStream {
    use futures::StreamExt;
    let chunks = body.into_data_stream();
    Box::pin(futures::stream::unfold(
        Some(chunks),
        move |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no bytes arrived for {} s", idle.as_secs()),
                    );
                    Some((Err(e), None))
                }
            }
        },
    ))
}

fn checksum_of(headers: &HeaderMap) -> Result<Option<tus::Checksum>, IngestError> {
    header_str(headers, "upload-checksum")
        .map(tus::parse_checksum)
        .transpose()
        .map_err(Into::into)
}

#[utoipa::path(
    post, path = "/api/uploads", tag = "uploads", security(("bearer" = [])),
    description = "tus creation (and creation-with-upload). Upload-Metadata must carry `filename` and either `lecture_id` (a lecture of a course you own: its video or audio) or `attachment_id` (an attachment announced with `POST /api/courses/{id}/attachments`; Upload-Length must be its size). `filetype` is kept but never trusted.",
    params(("Tus-Resumable" = String, Header, description = "Must be 1.0.0", example = "1.0.0"), ("Upload-Length" = u64, Header, description = "Total size in bytes"), ("Upload-Metadata" = Option<String>, Header, description = "tus metadata: comma-separated `key base64value` pairs"), ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of the first chunk")),
    request_body(content = Option<Vec<u8>>, content_type = "application/offset+octet-stream", description = "Optional first chunk"),
    responses((status = 201, description = "Created; Location is the upload URL", headers(("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String), ("Tus-Resumable" = String))), (status = 413, description = "Larger than Tus-Max-Size or the owner's quota", body = lectern_web::http::ErrorBody), (status = 429, description = "Too many uploads created; see Retry-After", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn create(
    State(state): State<IngestState>,
    user: AuthUser,
    ip: ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    state
        .limits
        .check(Action::UploadCreate, ip, Some(user.id.as_str()))?;
    if headers.contains_key("upload-defer-length") {
        return Err(IngestError::BadRequest(
            "Upload-Defer-Length is not supported; send Upload-Length".into(),
        ));
    }
    let length = tus::parse_u64(
        header_str(&headers, "upload-length")
            .ok_or_else(|| IngestError::BadRequest("Upload-Length is required".into()))?,
        "Upload-Length",
    )?;
    let metadata_header = header_str(&headers, "upload-metadata")
        .unwrap_or("")
        .to_string();
    let metadata = tus::parse_metadata(&metadata_header)?;
    let mut upload = uploads::create(
        &state,
        &user,
        NewUpload {
            length,
            metadata_header,
            metadata,
        },
    )
    .await?;
    // creation-with-upload: the first chunk may ride on the POST.
    if is_offset_stream(&headers) {
        let checksum = checksum_of(&headers)?;
        upload = uploads::append(
            &state,
            &upload,
            0,
            checksum,
            body_stream(body, state.config.upload_idle),
        )
        .await?;
    }
    let location = format!("/api/uploads/{}", upload.id);
    let mut res = (StatusCode::CREATED, offset_headers(&upload)).into_response();
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ids are ASCII"),
    );
    Ok(res)
}

#[utoipa::path(
    head, path = "/api/uploads/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = String, Path, description = "upload id"), ("Tus-Resumable" = String, Header, description = "Must be 1.0.0", example = "1.0.0")),
    responses((status = 200, description = "Where to resume", headers(("Upload-Offset" = u64), ("Upload-Length" = u64), ("Upload-Expires" = String), ("Upload-Metadata" = String), ("Tus-Resumable" = String))), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn head(
    State(state): State<IngestState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, IngestError> {
    let upload = uploads::load_for(&state, &user, &id).await?;
    let mut res = (StatusCode::OK, offset_headers(&upload)).into_response();
    let h = res.headers_mut();
    h.insert("upload-length", HeaderValue::from(upload.length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !upload.metadata.is_empty()
        && let Ok(v) = HeaderValue::from_str(&upload.metadata)
    {
        h.insert("upload-metadata", v);
    }
    Ok(res)
}

#[utoipa::path(
    patch, path = "/api/uploads/{id}", tag = "uploads", security(("bearer" = [])),
    description = "Appends a chunk at Upload-Offset. The last byte finishes the upload: the file is probed and the lecture turns processing (or failed, with a reason).",
    params(("id" = String, Path, description = "upload id"), ("Tus-Resumable" = String, Header, description = "Must be 1.0.0", example = "1.0.0"), ("Upload-Offset" = u64, Header, description = "Where this chunk starts"), ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this chunk; a mismatch discards it (460)")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "Stored", headers(("Upload-Offset" = u64, description = "Bytes received so far"), ("Upload-Expires" = String, description = "When an unfinished upload is removed (HTTP date)"), ("Tus-Resumable" = String))), (status = 409, description = "Upload-Offset is not the upload's offset", body = lectern_web::http::ErrorBody), (status = 460, description = "Checksum mismatch; the chunk was discarded", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn patch(
    State(state): State<IngestState>,
    user: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    if !is_offset_stream(&headers) {
        return Err(IngestError::UnsupportedMediaType);
    }
    let offset = tus::parse_u64(
        header_str(&headers, "upload-offset")
            .ok_or_else(|| IngestError::BadRequest("Upload-Offset is required".into()))?,
        "Upload-Offset",
    )?;
    let checksum = checksum_of(&headers)?;
    let upload = uploads::load_for(&state, &user, &id).await?;
    if let Some(len) =
        header_str(&headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok())
        && offset.saturating_add(len) > upload.length
    {
        return Err(IngestError::TooLarge(
            "the chunk runs past Upload-Length".into(),
        ));
    }
    let upload = uploads::append(
        &state,
        &upload,
        offset,
        checksum,
        body_stream(body, state.config.upload_idle),
    )
    .await?;
    Ok((StatusCode::NO_CONTENT, offset_headers(&upload)).into_response())
}

#[utoipa::path(
    delete, path = "/api/uploads/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = String, Path, description = "upload id"), ("Tus-Resumable" = String, Header, description = "Must be 1.0.0", example = "1.0.0")),
    responses((status = 204, description = "Removed with its bytes"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn terminate(
    State(state): State<IngestState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, IngestError> {
    let upload = uploads::load_for(&state, &user, &id).await?;
    uploads::terminate(&state, &upload).await?;
    Ok(StatusCode::NO_CONTENT)
}
