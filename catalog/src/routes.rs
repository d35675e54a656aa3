//! Catalog's HTTP surface: thin handlers that unpack requests and call the domain
//! modules.

use axum::extract::{Path, Request, State, WebSocketUpgrade};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lectern_seams::ids::{AssetId, AttachmentId, CourseId, LectureId};
use lectern_seams::lecture::LectureStatus;
use lectern_web::auth::AuthUser;
use lectern_web::http::{ApiJson, ApiQuery, object_body};
use lectern_web::limits::{Action, ClientIp};
use serde::Serialize;

use crate::CatalogState;
use crate::accounts::{self, User};
use crate::analytics;
use crate::attachments::{self, Attachment, AttachmentList, DownloadLink, NewAttachment};
use crate::captions::{self, CaptionOptions, CaptionPatch, CaptionTrack};
use crate::chapters::{self, Chapter, ChapterList};
use crate::courses::{self, Course, CourseQuery, Lecture, Orphans};
use crate::delivery::{self, Delivery, PlayFile};
use crate::error::CatalogError;
use crate::events;
use crate::journal;
use crate::parts;
use crate::playback::{PLAYLIST_TYPE, playable_file};
use crate::webhooks::{
    self, DeliveryLog, Endpoint, EndpointList, EndpointPatch, EndpointWithSecret, NewEndpoint,
    WebhookDelivery,
};

/// The catalog's part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        lecture_diagnostics, signup, login, me, my_courses, list_courses, create_course, course_detail, update_course, delete_course,
        create_lecture, enroll, lecture_detail, lecture_ladder, update_lecture, delete_lecture, put_progress, get_progress, playback,
        live_events, play, play_grant, public_poster, list_captions, put_captions, patch_captions, delete_captions,
        list_chapters, put_chapters, list_slides, slide_thumbnail, search, list_codes, create_code, delete_code, checkout, stripe_webhook,
        create_attachment, list_attachments, delete_attachment, attachment_link, attachment_file,
        post_beacon, lecture_analytics, course_analytics, course_analytics_csv,
        list_webhooks, create_webhook, get_webhook, update_webhook, delete_webhook, rotate_webhook, webhook_deliveries, resend_delivery,
        crate::mail::http::verify_email, crate::mail::http::resend_verification, crate::mail::http::request_password_reset,
        crate::mail::http::confirm_password_reset, crate::mail::http::unsubscribe_page, crate::mail::http::unsubscribe
    ),
    tags(
        (name = "accounts", description = "Sign-up, sign-in, the current user"),
        (name = "courses", description = "Catalog, search, course pages, enrollment"),
        (name = "lectures", description = "Lectures, their status and watch progress"),
        (name = "playback", description = "Signed playback URLs and the files behind them"),
        (name = "events", description = "Live transcode and publication events"),
        (name = "attachments", description = "Slides, PDFs and code handed out with a course or lecture"),
        (name = "analytics", description = "Viewing beacons from players; views, retention and quality of experience for owners"),
        (name = "webhooks", description = "Owners' endpoints for signed event deliveries (Standard Webhooks)"),
    )
)]
pub struct CatalogApi;

/// The largest JSON body the catalog reads.
pub const JSON_BODY_LIMIT: usize = 128 * 1024;

pub fn router(state: CatalogState) -> Router {
    let api = Router::new()
        .route("/api/auth/signup", post(signup))
        .route("/api/auth/login", post(login))
        .route("/api/me", get(me))
        .route("/api/me/courses", get(my_courses))
        .route("/api/courses", get(list_courses).post(create_course))
        .route("/api/search", get(search))
        .route(
            "/api/courses/{id}",
            get(course_detail)
                .patch(update_course)
                .delete(delete_course),
        )
        .route("/api/courses/{id}/lectures", post(create_lecture))
        .route("/api/courses/{id}/enroll", post(enroll))
        .route("/api/courses/{id}/checkout", post(checkout))
        .route("/api/payments/stripe/webhook", post(stripe_webhook))
        .route("/api/courses/{id}/codes", get(list_codes).post(create_code))
        .route(
            "/api/courses/{id}/codes/{code}",
            axum::routing::delete(delete_code),
        )
        .route(
            "/api/lectures/{id}",
            get(lecture_detail)
                .patch(update_lecture)
                .delete(delete_lecture),
        )
        .route("/api/lectures/{id}/playback", post(playback))
        .route("/api/lectures/{id}/ladder", get(lecture_ladder))
        .route("/api/lectures/{id}/diagnostics", get(lecture_diagnostics))
        .route(
            "/api/lectures/{id}/progress",
            get(get_progress).put(put_progress),
        )
        .route("/api/lectures/{id}/captions", get(list_captions))
        .route(
            "/api/lectures/{id}/chapters",
            get(list_chapters).put(put_chapters),
        )
        .route("/api/lectures/{id}/slides", get(list_slides))
        .route(
            "/api/lectures/{id}/slides/{position}/thumbnail",
            get(slide_thumbnail),
        )
        .route(
            "/api/lectures/{id}/captions/{language}",
            axum::routing::put(put_captions)
                .patch(patch_captions)
                .delete(delete_captions)
                .layer(axum::extract::DefaultBodyLimit::max(
                    captions::MAX_CAPTION_BYTES,
                )),
        )
        .route(
            "/api/courses/{id}/attachments",
            get(list_attachments).post(create_attachment),
        )
        .route(
            "/api/attachments/{id}",
            axum::routing::delete(delete_attachment),
        )
        .route("/api/attachments/{id}/link", post(attachment_link))
        .route("/api/attachments/files/{token}", get(attachment_file))
        .route(
            "/api/beacons",
            post(post_beacon).layer(axum::extract::DefaultBodyLimit::max(BEACON_BODY_LIMIT)),
        )
        .route("/api/lectures/{id}/analytics", get(lecture_analytics))
        .route("/api/courses/{id}/analytics", get(course_analytics))
        .route("/api/courses/{id}/analytics.csv", get(course_analytics_csv))
        .route("/api/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/api/webhooks/{id}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
        .route("/api/webhooks/{id}/rotate", post(rotate_webhook))
        .route("/api/webhooks/{id}/deliveries", get(webhook_deliveries))
        .route(
            "/api/webhooks/{id}/deliveries/{delivery}/resend",
            post(resend_delivery),
        )
        // Address verification, password resets, one-click unsubscribe.
        .merge(crate::mail::http::routes())
        .route("/api/events", get(live_events))
        .route("/media/posters/{file}", get(public_poster))
        // JSON bodies here are a few hundred bytes; a description is at most 20000 characters.
        .layer(axum::extract::DefaultBodyLimit::max(JSON_BODY_LIMIT));
    api.with_state(state)
}

/// `/play/{token}/{path}`: playback files, readable from any origin (a signed URL is
/// the credential, and it is meant to be embedded anywhere it goes, an LMS page).
pub fn play_router(state: CatalogState) -> Router {
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers([header::RANGE])
        .expose_headers([
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::ETAG,
        ])
        .max_age(std::time::Duration::from_secs(86_400));
    Router::new()
        .route("/play/{token}/", get(play_grant))
        .route("/play/{token}/{*path}", get(play))
        .method_not_allowed_fallback(|| async {
            lectern_web::http::method_not_allowed(Some("GET, HEAD, OPTIONS"))
        })
        .layer(cors)
        .with_state(state)
}

/// The paths `play_router` answers.
pub const PLAY_PREFIX: &str = "/play/";

/// The path prefixes Lectern's services answer under (the API with ingest's uploads,
/// playback, public posters); a web app served beside them keeps out.
pub const SERVICE_PREFIXES: [&str; 3] = ["/api/", PLAY_PREFIX, "/media/"];

#[derive(Serialize, utoipa::ToSchema)]
struct Session {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    user: User,
    /// Set on a sign-up as owner where owners are approved by an admin
    /// (`LECTERN_OWNER_SIGNUP=approval`): the account is a student's until then.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    owner_request_pending: bool,
}

#[utoipa::path(
    post, path = "/api/auth/signup", tag = "accounts", request_body = accounts::Signup,
    responses((status = 201, description = "Account created; a session token", body = Session), (status = 409, description = "Email already registered", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn signup(
    State(s): State<CatalogState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<accounts::Signup>,
) -> Result<(StatusCode, Json<Session>), CatalogError> {
    s.limits.check(Action::Signup, ip, None)?;
    let made = accounts::signup(&s.db, req, s.config.owner_signup).await?;
    crate::mail::http::after_signup(&s, &made.user).await;
    let token = s.tokens.issue(&made.user.id, made.user.role);
    Ok((
        StatusCode::CREATED,
        Json(Session {
            token,
            user: made.user,
            owner_request_pending: made.owner_request_pending,
        }),
    ))
}

#[utoipa::path(
    post, path = "/api/auth/login", tag = "accounts", request_body = accounts::Login,
    responses((status = 200, description = "A session token", body = Session), (status = 401, description = "Wrong email or password", body = lectern_web::http::ErrorBody), (status = 429, description = "Too many attempts; see Retry-After", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn login(
    State(s): State<CatalogState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<accounts::Login>,
) -> Result<Json<Session>, CatalogError> {
    let user = accounts::guarded_login(&s.db, &s.limits, ip, req).await?;
    let token = s.tokens.issue(&user.id, user.role);
    Ok(Json(Session {
        token,
        user,
        owner_request_pending: false,
    }))
}

#[utoipa::path(
    get, path = "/api/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = User), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn me(State(s): State<CatalogState>, user: AuthUser) -> Result<Json<User>, CatalogError> {
    Ok(Json(accounts::get_user(&s.db, &user.id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
struct CourseList {
    items: Vec<Course>,
}

#[utoipa::path(
    get, path = "/api/me/courses", tag = "courses", security(("bearer" = [])),
    responses((status = 200, description = "Courses the user is enrolled in", body = CourseList), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn my_courses(
    State(s): State<CatalogState>,
    user: AuthUser,
) -> Result<Json<CourseList>, CatalogError> {
    Ok(Json(CourseList {
        items: courses::my_courses(&s.db, &user).await?,
    }))
}

#[utoipa::path(
    get, path = "/api/courses", tag = "courses", security(("bearer" = [])), params(CourseQuery),
    responses((status = 200, description = "Published courses (or the owner's own with mine=true)", body = courses::Page<Course>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn list_courses(
    State(s): State<CatalogState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<CourseQuery>,
) -> Result<Json<courses::Page<Course>>, CatalogError> {
    Ok(Json(courses::list_courses(&s.db, &user, query).await?))
}

#[utoipa::path(
    post, path = "/api/courses", tag = "courses", security(("bearer" = [])), request_body = courses::NewCourse,
    responses((status = 201, body = Course), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn create_course(
    State(s): State<CatalogState>,
    user: AuthUser,
    ApiJson(new): ApiJson<courses::NewCourse>,
) -> Result<(StatusCode, Json<Course>), CatalogError> {
    Ok((
        StatusCode::CREATED,
        Json(courses::create_course(&s.db, &user, new).await?),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
struct CourseDetail {
    #[serde(flatten)]
    course: Course,
    lectures: Vec<Lecture>,
    enrolled: bool,
    can_edit: bool,
    /// Whether it can be bought here (priced, and a payment provider is set up).
    can_buy: bool,
    /// The user's progress per lecture, most recent first ("continue where you left off").
    progress: Vec<courses::WatchProgress>,
}

#[utoipa::path(
    get, path = "/api/courses/{id}", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    responses((status = 200, body = CourseDetail), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn course_detail(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
) -> Result<Json<CourseDetail>, CatalogError> {
    let course = courses::visible_course(&s.db, &user, &id).await?;
    let lectures = courses::lectures_of(&s.db, &id).await?;
    let enrolled = courses::enrollment(&s.db, &user.id, &id).await?.is_some();
    let can_edit = course.editable_by(&user);
    let progress = courses::course_progress(&s.db, &user.id, &id).await?;
    let can_buy = course.price_cents > 0 && s.config.payments.is_some();
    Ok(Json(CourseDetail {
        can_buy,
        course,
        lectures,
        enrolled,
        can_edit,
        progress,
    }))
}

#[utoipa::path(
    patch, path = "/api/courses/{id}", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")), request_body = courses::CoursePatch,
    responses((status = 200, body = Course), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn update_course(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
    ApiJson(patch): ApiJson<courses::CoursePatch>,
) -> Result<Json<Course>, CatalogError> {
    Ok(Json(
        courses::update_course(&s.db, &user, &id, patch).await?,
    ))
}

/// Removes a deletion's stored files in the background; a failure only leaves
/// unreferenced bytes behind.
fn clean_up(s: &CatalogState, orphans: Orphans) {
    let store = s.store.clone();
    tokio::spawn(async move {
        for prefix in orphans.asset_prefixes {
            if let Err(e) = store.delete_prefix(&prefix).await {
                tracing::warn!(prefix, error = %e, "could not delete an asset's files");
            }
        }
        for key in orphans.source_keys {
            let _ = store.delete(&key).await;
        }
    });
}

#[utoipa::path(
    delete, path = "/api/courses/{id}", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    responses((status = 204, description = "Deleted with its lectures and files"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn delete_course(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
) -> Result<StatusCode, CatalogError> {
    let orphans = courses::delete_course(&s.db, &user, &id).await?;
    clean_up(&s, orphans);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/courses/{id}/lectures", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "course id")), request_body = courses::NewLecture,
    responses((status = 201, body = Lecture), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn create_lecture(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
    ApiJson(new): ApiJson<courses::NewLecture>,
) -> Result<(StatusCode, Json<Lecture>), CatalogError> {
    Ok((
        StatusCode::CREATED,
        Json(courses::create_lecture(&s.db, &user, &id, new).await?),
    ))
}

#[utoipa::path(
    post, path = "/api/courses/{id}/enroll", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    request_body(content = Option<courses::EnrollRequest>, description = "Optional; `{\"code\": \"K7QF-2MZP-9XRT\"}` for a priced course"),
    responses((status = 201, description = "Enrolled", body = courses::Enrollment), (status = 200, description = "Already enrolled", body = courses::Enrollment), (status = 402, description = "A priced course without an enrollment code: it cannot be bought here yet", body = lectern_web::http::ErrorBody), (status = 403, description = "The code is not this course's, used up or expired", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn enroll(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<courses::Enrollment>), CatalogError> {
    let body = body?;
    // The body is optional: none subscribes to a free course. One that is there must be
    // a JSON object (a lone newline is not: the API description says so).
    let req: courses::EnrollRequest = if body.is_empty() {
        Default::default()
    } else {
        object_body(
            serde_json::from_slice(&body)
                .map_err(|e| CatalogError::Invalid(format!("invalid JSON body: {e}")))?,
        )?
    };
    let (enrollment, created) = courses::enroll(&s.db, &user, &id, req).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(enrollment),
    ))
}

#[utoipa::path(
    get, path = "/api/lectures/{id}", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, body = Lecture), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn lecture_detail(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<Json<Lecture>, CatalogError> {
    Ok(Json(courses::visible_lecture(&s.db, &user, &id).await?.0))
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/ladder", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, body = courses::LectureLadder), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn lecture_ladder(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<Json<courses::LectureLadder>, CatalogError> {
    Ok(Json(courses::lecture_ladder(&s.db, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/diagnostics", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, body = courses::LectureDiagnostics), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn lecture_diagnostics(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<Json<courses::LectureDiagnostics>, CatalogError> {
    Ok(Json(courses::lecture_diagnostics(&s.db, &user, &id).await?))
}

#[utoipa::path(
    patch, path = "/api/lectures/{id}", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")), request_body = courses::LecturePatch,
    responses((status = 200, body = Lecture), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn update_lecture(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
    ApiJson(patch): ApiJson<courses::LecturePatch>,
) -> Result<Json<Lecture>, CatalogError> {
    Ok(Json(
        courses::update_lecture(&s.db, &user, &id, patch).await?,
    ))
}

#[utoipa::path(
    delete, path = "/api/lectures/{id}", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 204, description = "Deleted with its files"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn delete_lecture(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<StatusCode, CatalogError> {
    let orphans = courses::delete_lecture(&s.db, &user, &id).await?;
    clean_up(&s, orphans);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
struct ProgressBody {
    #[schema(minimum = 0)]
    position_secs: f64,
}

#[utoipa::path(
    put, path = "/api/lectures/{id}/progress", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")), request_body = ProgressBody,
    responses((status = 200, body = courses::WatchProgress), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn put_progress(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
    ApiJson(body): ApiJson<ProgressBody>,
) -> Result<Json<courses::WatchProgress>, CatalogError> {
    Ok(Json(
        courses::save_progress(&s.db, &user, &id, body.position_secs).await?,
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
struct LectureProgress {
    lecture_id: LectureId,
    position_secs: f64,
    completed: bool,
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/progress", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, body = LectureProgress), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn get_progress(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<Json<LectureProgress>, CatalogError> {
    courses::visible_lecture(&s.db, &user, &id).await?;
    let mine = courses::lecture_progress(&s.db, &user.id, &id).await?;
    Ok(Json(LectureProgress {
        position_secs: mine.as_ref().map(|p| p.position_secs).unwrap_or(0.0),
        completed: mine.as_ref().is_some_and(|p| p.completed),
        lecture_id: id,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct PlaybackGrant {
    url: String,
    expires_at: i64,
    /// Sent with the player's viewing beacons (`POST /api/beacons`); valid 12 hours.
    beacon_token: String,
    media_kind: Option<String>,
    poster_url: Option<String>,
    storyboard_url: Option<String>,
}

#[utoipa::path(
    post, path = "/api/lectures/{id}/playback", tag = "playback", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, description = "A signed playback URL", body = PlaybackGrant), (status = 409, description = "Not ready to play yet", body = lectern_web::http::ErrorBody), (status = 429, description = "Too many requests; see Retry-After", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn playback(
    State(s): State<CatalogState>,
    user: AuthUser,
    ip: ClientIp,
    Path(id): Path<LectureId>,
) -> Result<Json<PlaybackGrant>, CatalogError> {
    s.limits
        .check(Action::PlaybackIssue, ip, Some(user.id.as_str()))?;
    let (lecture, course) = courses::visible_lecture(&s.db, &user, &id).await?;
    if !courses::may_play(&s.db, &user, &course).await? {
        return Err(CatalogError::Forbidden(
            "enroll in this course to watch its lectures".into(),
        ));
    }
    let asset = lecture.ready_asset_id.clone().ok_or_else(|| {
        CatalogError::Conflict(format!(
            "the lecture is not ready to play (status: {})",
            lecture.status
        ))
    })?;
    let (token, expires_at) = s.playback.issue(&lecture.id, &asset)?;
    let base = format!(
        "{}/play/{token}",
        s.config
            .public_url
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/')
    );
    // A lecture still encoding in parts gets its poster and storyboard last.
    let video =
        lecture.media_kind.as_deref() == Some("video") && lecture.status != LectureStatus::Playable;
    Ok(Json(PlaybackGrant {
        url: format!("{base}/master.m3u8"),
        expires_at,
        beacon_token: s.playback.issue_beacon(&lecture.id, &user.id)?,
        poster_url: video.then(|| format!("{base}/poster.jpg")),
        storyboard_url: video.then(|| format!("{base}/storyboard.vtt")),
        media_kind: lecture.media_kind,
    }))
}

/// Where a client that was away resumes: after the last event number it saw.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// The `seq` of the last event seen; the WebSocket first sends what came after it,
    /// the feed answers it.
    after: Option<i64>,
    /// Feed only: events per answer, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/api/events", tag = "events", security(("bearer" = [])), params(EventsQuery),
    description = "Events a user may see, each with a `seq` number: owners get transcode progress, playable, ready and failed events for their lectures; students `lecture_ready` and `playable` for courses they are enrolled in. As a WebSocket (send the token as the `bearer, <token>` subprotocol or `?token=`), live, after first sending what came after `after`; a `{\"type\": \"resync\"}` says events were missed that are no longer kept (reload the state). As a plain GET, a feed of what came after `after` (kept 14 days).",
    responses((status = 101, description = "Switching to the WebSocket"), (status = 200, description = "The feed", body = journal::Missed), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn live_events(
    State(s): State<CatalogState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: axum::http::HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, CatalogError> {
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) if !headers.contains_key(header::UPGRADE) => {
            let after = query.after.unwrap_or(0);
            let limit = query.limit.unwrap_or(100);
            return Ok(Json(journal::missed(&s.db, &user, after, limit).await?).into_response());
        }
        Err(r) => {
            return Err(CatalogError::Invalid(format!(
                "not a WebSocket upgrade: {}",
                r.body_text()
            )));
        }
    };
    let slot = s
        .sockets
        .admit(user.id.as_str(), s.config.sockets_per_user)
        .ok_or_else(|| {
            CatalogError::RateLimited(lectern_web::limits::Refusal {
                message: format!(
                    "at most {} live connections per account are open at once",
                    s.config.sockets_per_user
                ),
                retry_after: std::time::Duration::from_secs(5),
            })
        })?;
    // Clients only listen; anything they send is small.
    Ok(ws
        .max_message_size(4096)
        .protocols([lectern_web::auth::WS_BEARER_PROTOCOL])
        .on_upgrade(move |socket| {
            events::serve_socket(
                socket,
                user,
                s.db.clone(),
                s.journal.clone(),
                slot,
                query.after,
            )
        }))
}

#[utoipa::path(
    get, path = "/play/{token}/{path}", tag = "playback",
    description = "HLS playlists, segments, poster and storyboard of one lecture, by a playback token. Supports Range, If-None-Match and If-Range; readable cross-origin.",
    params(("token" = String, Path, description = "Playback token from POST /api/lectures/{id}/playback"), ("path" = String, Path, description = "master.m3u8, <rung>/index.m3u8, segments, poster.jpg, storyboard.vtt/jpg"), ("Range" = Option<String>, Header, description = "bytes=start-end")),
    responses((status = 200, description = "The file", content((Vec<u8> = "application/octet-stream"), (String = "application/vnd.apple.mpegurl"))), (status = 206, description = "Part of the file"), (status = 304, description = "Not modified"), (status = 403, description = "Invalid or expired playback token", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn play(State(s): State<CatalogState>, req: Request) -> Result<Response, CatalogError> {
    // The route is /play/{token}/{*path}. Read raw rather than through `Path`, which
    // would percent-decode: an escaped path is refused below anyway.
    let (token, path) = req
        .uri()
        .path()
        .strip_prefix(PLAY_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .ok_or(CatalogError::NotFound("file"))?;
    let grant = s
        .playback
        .verify(token)
        .ok_or(CatalogError::BadPlaybackToken)?;
    // Our file names never need escaping; an escaped path is an attempt at something.
    if req.uri().path().contains('%') {
        return Err(CatalogError::Invalid(
            "escaped characters are not allowed in playback paths".into(),
        ));
    }
    if let Some(file) = path.strip_prefix("subs/") {
        return subtitle_file(&s, &grant.asset_id, file, req.method()).await;
    }
    if path == lectern_packager::MASTER_PLAYLIST
        && let Some(master) = master_with_captions(&s, &grant.asset_id).await?
    {
        return Ok(delivery::made_playlist(master, "no-cache", req.method()));
    }
    let content_type = playable_file(path).ok_or(CatalogError::NotFound("file"))?;
    let path = path.to_string();
    let key = format!("assets/{}/{path}", grant.asset_id);
    let expires_in = grant.seconds_left().min(86_400);
    let method = req.method().clone();
    let file = PlayFile {
        key: &key,
        content_type,
        cache_control: public_max_age(expires_in),
        expires_in,
    };
    match delivery::deliver(&s, file, req).await {
        // A lecture still being encoded in parts: its playlists grow in the database
        // until every part is stored and they are written out.
        Err(CatalogError::NotFound(_)) if content_type == PLAYLIST_TYPE => {
            let live = parts::live_playlists(&s.db, &grant.asset_id)
                .await?
                .ok_or(CatalogError::NotFound("file"))?;
            let text = live.file(&path).ok_or(CatalogError::NotFound("file"))?;
            if s.config.delivery == Delivery::Direct && path.ends_with("/index.m3u8") {
                return delivery::direct_media_playlist(&s, &key, text, expires_in, &method).await;
            }
            Ok(delivery::made_playlist(
                text.to_string(),
                "no-cache",
                &method,
            ))
        }
        other => other,
    }
}

/// The master playlist with the lecture's captions as a subtitle group; None when it
/// has none (the stored master is sent as it is).
async fn master_with_captions(
    s: &CatalogState,
    asset: &AssetId,
) -> Result<Option<String>, CatalogError> {
    let tracks = captions::subtitle_tracks(&s.db, asset).await?;
    if tracks.is_empty() {
        return Ok(None);
    }
    let key = format!("assets/{asset}/{}", lectern_packager::MASTER_PLAYLIST);
    let master = match lectern_seams::storage::read_to_vec(s.store.as_ref(), &key).await {
        Ok(bytes) => bytes,
        // Still encoding in parts: the master is made from the database.
        Err(lectern_seams::storage::StorageError::NotFound(_)) => {
            parts::live_playlists(&s.db, asset)
                .await?
                .and_then(|live| {
                    live.file(lectern_packager::MASTER_PLAYLIST)
                        .map(|t| t.as_bytes().to_vec())
                })
                .ok_or(CatalogError::NotFound("file"))?
        }
        Err(e) => return Err(e.into()),
    };
    lectern_packager::captions::with_subtitles(&master, &tracks)
        .map(Some)
        .ok_or_else(|| CatalogError::Internal(format!("{key} is not a master playlist")))
}

/// `subs/{language}/index.m3u8` and `subs/{language}/seg_NNNNN.vtt`: a subtitle
/// rendition, cut from the stored captions on the lecture's segment grid.
async fn subtitle_file(
    s: &CatalogState,
    asset: &AssetId,
    file: &str,
    method: &Method,
) -> Result<Response, CatalogError> {
    use lectern_packager::captions as vtt;
    let (language, name) = file.split_once('/').ok_or(CatalogError::NotFound("file"))?;
    let segment = vtt::subtitle_segment_index(name);
    if segment.is_none() && name != lectern_packager::MEDIA_PLAYLIST {
        return Err(CatalogError::NotFound("file"));
    }
    let (cues, duration) = captions::subtitle_source(&s.db, asset, language).await?;
    let segment_secs = lectern_seams::messages::SEGMENT_SECS;
    let Some(index) = segment else {
        let playlist = vtt::subtitle_playlist(duration, segment_secs);
        return Ok(delivery::made_playlist(playlist, "no-cache", method));
    };
    if index as f64 * f64::from(segment_secs) >= duration.max(f64::from(segment_secs)) {
        return Err(CatalogError::NotFound("file"));
    }
    let body = vtt::webvtt_segment(&cues, index, segment_secs);
    Ok(delivery::made_file(
        body,
        "text/vtt; charset=utf-8",
        "no-cache",
        method,
    ))
}

/// What a playback token grants, for a front that sends the files itself (nginx's
/// `auth_request`, `deploy/nginx/lectern.conf.template`): the asset's folder, when the
/// grant ends, and how long the answer may be remembered (until then; the token itself
/// carries the grant, so nothing could revoke it sooner). Both are readable in the token.
#[utoipa::path(
    get, path = "/play/{token}/", tag = "playback",
    params(("token" = String, Path, description = "Playback token from POST /api/lectures/{id}/playback")),
    responses((status = 200, description = "The token is valid: `X-Lectern-Asset` names the asset, `X-Lectern-Expires` when the grant ends, `X-Accel-Expires` how long a front may remember this answer"), (status = 403, description = "Invalid or expired playback token", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn play_grant(
    State(s): State<CatalogState>,
    Path(token): Path<String>,
) -> Result<Response, CatalogError> {
    let grant = s
        .playback
        .verify(&token)
        .ok_or(CatalogError::BadPlaybackToken)?;
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_secs(grant.expires_at as u64);
    let headers = [
        ("x-lectern-asset", grant.asset_id.to_string()),
        ("x-lectern-expires", httpdate::fmt_http_date(expires)),
        ("x-accel-expires", grant.seconds_left().to_string()),
    ];
    Ok((StatusCode::OK, headers).into_response())
}

fn public_max_age(secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={secs}")).expect("ASCII")
}

/// Course-card posters: public for published courses, like a thumbnail on a
/// catalog page (the lecture itself still needs a playback token).
#[utoipa::path(
    get, path = "/media/posters/{file}", tag = "playback", params(("file" = String, Path, description = "<lecture id>.jpg")),
    description = "The poster of a ready video lecture in a published course (for course cards).",
    responses((status = 200, description = "JPEG", content_type = "image/jpeg", body = Vec<u8>), (status = 304, description = "Not modified"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn public_poster(
    State(s): State<CatalogState>,
    Path(file): Path<String>,
    req: Request,
) -> Result<Response, CatalogError> {
    let lecture_id = file
        .strip_suffix(".jpg")
        .and_then(LectureId::parse)
        .ok_or(CatalogError::NotFound("poster"))?;
    let asset = courses::published_poster_asset(&s.db, &lecture_id)
        .await?
        .ok_or(CatalogError::NotFound("poster"))?;
    let file = PlayFile {
        key: &format!("assets/{asset}/poster.jpg"),
        content_type: "image/jpeg",
        cache_control: HeaderValue::from_static("public, max-age=300"),
        expires_in: 300,
    };
    delivery::deliver(&s, file, req).await
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/captions", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, description = "The lecture's captions, the default first", body = Vec<CaptionTrack>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn list_captions(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<Json<Vec<CaptionTrack>>, CatalogError> {
    Ok(Json(captions::list(&s.db, &user, &id).await?))
}

#[utoipa::path(
    put, path = "/api/lectures/{id}/captions/{language}", tag = "lectures", security(("bearer" = [])),
    description = "Stores or replaces one language's captions from a WebVTT or SRT file (SRT is converted). A fault is named by line and cue. Students see them at once, also on a lecture that is already ready.",
    params(("id" = String, Path, description = "lecture id"), ("language" = String, Path, description = "BCP 47 language tag, e.g. en or pt-BR"), CaptionOptions),
    request_body(content = String, content_type = "text/vtt", description = "WebVTT or SRT, UTF-8, at most 2 MiB"),
    responses((status = 201, description = "Added", body = CaptionTrack), (status = 200, description = "Replaced", body = CaptionTrack), (status = 413, description = "Larger than 2 MiB", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn put_captions(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path((id, language)): Path<(LectureId, String)>,
    ApiQuery(options): ApiQuery<CaptionOptions>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<CaptionTrack>), CatalogError> {
    let body = body?;
    let (track, created) = captions::put(&s.db, &user, &id, &language, options, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(track)))
}

#[utoipa::path(
    patch, path = "/api/lectures/{id}/captions/{language}", tag = "lectures", security(("bearer" = [])),
    params(("id" = String, Path, description = "lecture id"), ("language" = String, Path, description = "BCP 47 language tag")),
    request_body = CaptionPatch,
    responses((status = 200, description = "Changed", body = CaptionTrack), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn patch_captions(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path((id, language)): Path<(LectureId, String)>,
    ApiJson(patch): ApiJson<CaptionPatch>,
) -> Result<Json<CaptionTrack>, CatalogError> {
    Ok(Json(
        captions::patch(&s.db, &user, &id, &language, patch).await?,
    ))
}

#[utoipa::path(
    delete, path = "/api/lectures/{id}/captions/{language}", tag = "lectures", security(("bearer" = [])),
    params(("id" = String, Path, description = "lecture id"), ("language" = String, Path, description = "BCP 47 language tag")),
    responses((status = 204, description = "Removed"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn delete_captions(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path((id, language)): Path<(LectureId, String)>,
) -> Result<StatusCode, CatalogError> {
    captions::delete(&s.db, &user, &id, &language).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/chapters", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, description = "The lecture's chapters in time order", body = Vec<Chapter>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn list_chapters(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<Json<Vec<Chapter>>, CatalogError> {
    Ok(Json(chapters::list(&s.db, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/slides", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    description = "The slides found in the lecture's picture, with the title read from each: proposed chapters for the course's owner to review and publish with `PUT /api/lectures/{id}/chapters`. Empty until the lecture's slides job has run.",
    responses((status = 200, description = "The slides in time order", body = Vec<crate::slides::Slide>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn list_slides(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<Json<Vec<crate::slides::Slide>>, CatalogError> {
    Ok(Json(crate::slides::list(&s.db, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/slides/{position}/thumbnail", tag = "lectures", security(("bearer" = [])),
    params(("id" = String, Path, description = "lecture id"), ("position" = i64, Path, description = "the slide's position, 0 first")),
    responses((status = 200, description = "JPEG", content_type = "image/jpeg", body = Vec<u8>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn slide_thumbnail(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path((id, position)): Path<(LectureId, String)>,
) -> Result<Response, CatalogError> {
    // Parsed here, so a position that is not a number is the API's JSON 404.
    let position = position
        .parse::<i64>()
        .map_err(|_| CatalogError::NotFound("slide"))?;
    let jpeg = crate::slides::thumbnail(&s.db, &s.store, &user, &id, position).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=300"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        jpeg,
    )
        .into_response())
}

#[utoipa::path(
    put, path = "/api/lectures/{id}/chapters", tag = "lectures", security(("bearer" = [])),
    description = "Replaces the lecture's chapters: a JSON list, or a WebVTT chapters file (`Content-Type: text/vtt`; each cue's start and text). Start times in order, within the lecture; an empty list removes them.",
    params(("id" = String, Path, description = "lecture id")),
    request_body(content((ChapterList = "application/json"), (String = "text/vtt"))),
    responses((status = 200, description = "The chapters now", body = Vec<Chapter>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn put_chapters(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Vec<Chapter>>, CatalogError> {
    let body = body?;
    let webvtt = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/vtt"));
    let list = if webvtt {
        chapters::from_webvtt(&body)?
    } else {
        let value = serde_json::from_slice(&body)
            .map_err(|e| CatalogError::Invalid(format!("invalid JSON body: {e}")))?;
        object_body::<ChapterList>(value)?.chapters
    };
    Ok(Json(chapters::put(&s.db, &user, &id, list).await?))
}

#[utoipa::path(
    get, path = "/api/search", tag = "courses", security(("bearer" = [])), params(crate::search::SearchQuery),
    description = "Courses, lecture titles and what is said in lectures (their captions), ranked together. A hit in a lecture's words has `start_secs`: open the lecture there.",
    responses((status = 200, description = "One page of hits", body = courses::Page<crate::search::Hit>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn search(
    State(s): State<CatalogState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<crate::search::SearchQuery>,
) -> Result<Json<courses::Page<crate::search::Hit>>, CatalogError> {
    Ok(Json(crate::search::search(&s.db, &user, query).await?))
}

#[utoipa::path(
    get, path = "/api/courses/{id}/codes", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    responses((status = 200, description = "The course's enrollment codes, newest first", body = Vec<crate::codes::EnrollmentCode>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn list_codes(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
) -> Result<Json<Vec<crate::codes::EnrollmentCode>>, CatalogError> {
    Ok(Json(crate::codes::list(&s.db, &user, &id).await?))
}

#[utoipa::path(
    post, path = "/api/courses/{id}/codes", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    description = "Makes an enrollment code: free access to the course for `max_uses` students (any number if omitted) until it expires.",
    request_body = crate::codes::NewCode,
    responses((status = 201, description = "The new code", body = crate::codes::EnrollmentCode), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn create_code(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
    ApiJson(new): ApiJson<crate::codes::NewCode>,
) -> Result<(StatusCode, Json<crate::codes::EnrollmentCode>), CatalogError> {
    let code = crate::codes::create(&s.db, &user, &id, new).await?;
    Ok((StatusCode::CREATED, Json(code)))
}

#[utoipa::path(
    delete, path = "/api/courses/{id}/codes/{code}", tag = "courses", security(("bearer" = [])),
    params(("id" = String, Path, description = "course id"), ("code" = String, Path, description = "the code")),
    responses((status = 204, description = "Deleted: no one else enrolls with it"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn delete_code(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path((id, code)): Path<(CourseId, String)>,
) -> Result<StatusCode, CatalogError> {
    crate::codes::delete(&s.db, &user, &id, &code).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/courses/{id}/checkout", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    description = "Opens a checkout with the payment provider for the course's price; send the student to `url`. Enrollment follows the provider's signed event, not this call.",
    responses((status = 201, description = "Pay at `url`", body = crate::payments::Checkout), (status = 402, description = "No payment provider is set up", body = lectern_web::http::ErrorBody), (status = 409, description = "Free, or already enrolled", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn checkout(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
) -> Result<(StatusCode, Json<crate::payments::Checkout>), CatalogError> {
    let public_url = s.config.public_url.as_deref().unwrap_or_default();
    let opened =
        crate::payments::checkout(&s.db, s.config.payments.as_ref(), public_url, &user, &id)
            .await?;
    Ok((StatusCode::CREATED, Json(opened)))
}

#[utoipa::path(
    post, path = "/api/payments/stripe/webhook", tag = "courses",
    description = "Stripe's events (`checkout.session.completed` enrolls, `charge.refunded` in full and `charge.dispute.created` take the course back), checked against `Stripe-Signature` within five minutes; each is applied once.",
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "Applied, or already applied"), (status = 400, description = "Not signed by Stripe for this endpoint, or too old", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn stripe_webhook(
    State(s): State<CatalogState>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, CatalogError> {
    let body = body?;
    let provider = s
        .config
        .payments
        .as_ref()
        .filter(|p| p.name() == "stripe")
        .ok_or(CatalogError::NotFound("payment provider"))?;
    let verified = provider.verify(&headers, &body, lectern_seams::now_unix())?;
    crate::payments::apply(&s.db, verified).await?;
    Ok(Json(serde_json::json!({ "received": true })))
}

#[utoipa::path(
    post, path = "/api/courses/{id}/attachments", tag = "attachments", security(("bearer" = [])), params(("id" = String, Path, description = "course id")), request_body = NewAttachment,
    description = "Announces an attachment of the course or one of its lectures. Its bytes follow by tus to `/api/uploads` with Upload-Metadata `attachment_id` and `filename` and Upload-Length equal to `size`; the last chunk's answer says whether its kind (read from the bytes) is one Lectern hands out (`unsupported_file_type` otherwise).",
    responses((status = 201, description = "Waiting for its bytes", body = Attachment), (status = 413, description = "Larger than LECTERN_MAX_ATTACHMENT_BYTES", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn create_attachment(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
    ApiJson(new): ApiJson<NewAttachment>,
) -> Result<(StatusCode, Json<Attachment>), CatalogError> {
    let made = attachments::create(&s, &user, &id, new).await?;
    Ok((StatusCode::CREATED, Json(made)))
}

#[utoipa::path(
    get, path = "/api/courses/{id}/attachments", tag = "attachments", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    description = "The course's attachments (the course's own and its lectures'), oldest first: all of them for the owner, the ready ones for enrolled students.",
    responses((status = 200, body = AttachmentList), (status = 403, description = "Not enrolled", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn list_attachments(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
) -> Result<Json<AttachmentList>, CatalogError> {
    Ok(Json(AttachmentList {
        attachments: attachments::list(&s.db, &user, &id).await?,
    }))
}

#[utoipa::path(
    delete, path = "/api/attachments/{id}", tag = "attachments", security(("bearer" = [])), params(("id" = String, Path, description = "attachment id")),
    responses((status = 204, description = "Deleted with its file"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn delete_attachment(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<AttachmentId>,
) -> Result<StatusCode, CatalogError> {
    let key = attachments::delete(&s.db, &user, &id).await?;
    clean_up(
        &s,
        Orphans {
            source_keys: key.into_iter().collect(),
            ..Orphans::default()
        },
    );
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/attachments/{id}/link", tag = "attachments", security(("bearer" = [])), params(("id" = String, Path, description = "attachment id")),
    description = "A download link for a ready attachment, valid for LECTERN_ATTACHMENT_LINK_SECS: this server's `/api/attachments/files/{token}`, or a presigned object-store URL under `PLAYBACK_DELIVERY=direct`. Either answers with `Content-Disposition: attachment`.",
    responses((status = 200, body = DownloadLink), (status = 403, description = "Not enrolled", body = lectern_web::http::ErrorBody), (status = 409, description = "Its file is not ready", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn attachment_link(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<AttachmentId>,
) -> Result<Json<DownloadLink>, CatalogError> {
    Ok(Json(attachments::link(&s, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/attachments/files/{token}", tag = "attachments", params(("token" = String, Path, description = "from a download link")),
    description = "An attachment's file, to be saved: `Content-Disposition: attachment`, its type read from its bytes, `nosniff` and a sandbox. The link is the credential; an expired or forged one gets 403 `bad_download_link`.",
    responses((status = 200, description = "The file", content_type = "application/octet-stream"), (status = 403, description = "The link is forged or expired", body = lectern_web::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_web::http::ErrorBody))
)]
async fn attachment_file(
    State(s): State<CatalogState>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, CatalogError> {
    attachments::download(&s, &token, req).await
}

const ERRORS: &str = "Refused or failed; `error.code` says why";

#[utoipa::path(
    get, path = "/api/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = EndpointList), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn list_webhooks(
    State(s): State<CatalogState>,
    user: AuthUser,
) -> Result<Json<EndpointList>, CatalogError> {
    Ok(Json(EndpointList {
        endpoints: webhooks::list(&s.db, &user).await?,
    }))
}

#[utoipa::path(
    post, path = "/api/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = NewEndpoint,
    description = "Registers an endpoint for the owner's events. Deliveries are POSTed as `{type, timestamp, data}` and signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the secret in this answer, shown once. The URL must be http(s) and resolve to public addresses only (unless LECTERN_WEBHOOK_ALLOW_PRIVATE is set); redirects are not followed.",
    responses((status = 201, body = EndpointWithSecret), (status = 400, description = "A URL that is not http(s), carries credentials, or reaches a private address", body = lectern_web::http::ErrorBody), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn create_webhook(
    State(s): State<CatalogState>,
    user: AuthUser,
    ApiJson(new): ApiJson<NewEndpoint>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), CatalogError> {
    let made = webhooks::create(&s.db, &s.config.webhooks, &user, new).await?;
    Ok((StatusCode::CREATED, Json(made)))
}

#[utoipa::path(
    get, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path, description = "endpoint id")),
    responses((status = 200, body = Endpoint), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn get_webhook(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, CatalogError> {
    Ok(Json(webhooks::get(&s.db, &user, &id).await?))
}

#[utoipa::path(
    patch, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path, description = "endpoint id")), request_body = EndpointPatch,
    description = "Changes an endpoint's URL, event types or description, or enables it again after Lectern disabled it.",
    responses((status = 200, body = Endpoint), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn update_webhook(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<EndpointPatch>,
) -> Result<Json<Endpoint>, CatalogError> {
    Ok(Json(
        webhooks::update(&s.db, &s.config.webhooks, &user, &id, patch).await?,
    ))
}

#[utoipa::path(
    delete, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path, description = "endpoint id")),
    responses((status = 204, description = "Deleted with its deliveries"), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn delete_webhook(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, CatalogError> {
    webhooks::delete(&s.db, &user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/webhooks/{id}/rotate", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path, description = "endpoint id")),
    description = "A new secret, shown once. For 24 hours deliveries are signed with both, so the receiver can switch without missing one.",
    responses((status = 200, body = EndpointWithSecret), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn rotate_webhook(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<EndpointWithSecret>, CatalogError> {
    Ok(Json(webhooks::rotate(&s.db, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])), params(("id" = String, Path, description = "endpoint id")),
    description = "The endpoint's last 100 deliveries, newest first: state, attempts, the last attempt's status, latency and the start of its answer.",
    responses((status = 200, body = DeliveryLog), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn webhook_deliveries(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<DeliveryLog>, CatalogError> {
    Ok(Json(DeliveryLog {
        deliveries: webhooks::deliveries(&s.db, &user, &id).await?,
    }))
}

#[utoipa::path(
    post, path = "/api/webhooks/{id}/deliveries/{delivery}/resend", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "endpoint id"), ("delivery" = String, Path, description = "delivery id (its webhook-id)")),
    description = "Sends a delivered or failed delivery again, now, once.",
    responses((status = 202, body = WebhookDelivery), (status = 409, description = "The endpoint is disabled, or the delivery is already waiting", body = lectern_web::http::ErrorBody), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn resend_delivery(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<WebhookDelivery>), CatalogError> {
    let queued = webhooks::resend(&s.db, &user, &id, &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

/// The largest beacon body read.
const BEACON_BODY_LIMIT: usize = 16 * 1024;

#[utoipa::path(
    post, path = "/api/beacons", tag = "analytics", request_body = analytics::Beacon,
    description = "What a player saw, batched (at most 200 events, 16 KiB): a view starting, stalls, rendition switches, ranges watched, errors. The grant's `beacon_token` is the credential (no Authorization header, so `navigator.sendBeacon` can send it); any content type is read as JSON. Accepted beacons are recorded within a second; no address is stored.",
    responses((status = 204, description = "Taken"), (status = 403, description = "The beacon token is forged or expired", body = lectern_web::http::ErrorBody), (status = 429, description = "Too many beacons waiting; see Retry-After", body = lectern_web::http::ErrorBody), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn post_beacon(
    State(s): State<CatalogState>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<StatusCode, CatalogError> {
    let beacon: analytics::Beacon = serde_json::from_slice(&body?)
        .map_err(|e| CatalogError::Invalid(format!("invalid beacon: {e}")))?;
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    s.beacons.accept(&s.playback, beacon, agent)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/analytics", tag = "analytics", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    description = "For the course's owner: views, unique viewers, watch time, completion rate, the audience-retention curve (share of views still watching at each hundredth), views per day, and quality of experience (startup p50/p95, rebuffer ratio, errors by browser).",
    responses((status = 200, body = analytics::LectureReport), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn lecture_analytics(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<LectureId>,
) -> Result<Json<analytics::LectureReport>, CatalogError> {
    Ok(Json(analytics::lecture_report(&s.db, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/courses/{id}/analytics", tag = "analytics", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    description = "For the owner: the course's totals, views per day and quality of experience, with a line per lecture.",
    responses((status = 200, body = analytics::CourseReport), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn course_analytics(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
) -> Result<Json<analytics::CourseReport>, CatalogError> {
    Ok(Json(analytics::course_report(&s.db, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/courses/{id}/analytics.csv", tag = "analytics", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    description = "The course report's lecture lines as CSV, for a spreadsheet.",
    responses((status = 200, description = "CSV, a line per lecture", content_type = "text/csv", body = String), (status = "default", description = ERRORS, body = lectern_web::http::ErrorBody))
)]
async fn course_analytics_csv(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<CourseId>,
) -> Result<Response, CatalogError> {
    let report = analytics::course_report(&s.db, &user, &id).await?;
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"lectern-course-{id}.csv\""),
        ),
    ];
    Ok((headers, analytics::course_csv(&report)).into_response())
}
