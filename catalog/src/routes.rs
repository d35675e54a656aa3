//! Catalog's HTTP surface: thin handlers that unpack requests and call the domain
//! modules.

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lectern_common::auth::AuthUser;
use lectern_common::limits::{Action, ClientIp};
use lectern_common::storage::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CatalogState;
use crate::accounts::{self, User};
use crate::cache::{Cached, Loaded};
use crate::courses::{self, Course, CourseQuery, Lecture, Orphans};
use crate::error::CatalogError;
use crate::events;
use crate::parts;
use crate::playback::{parse_range, playable_file};

/// The catalog's part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        lecture_diagnostics, signup, login, me, my_courses, list_courses, create_course, course_detail, update_course, delete_course,
        create_lecture, enroll, lecture_detail, lecture_ladder, update_lecture, delete_lecture, put_progress, get_progress, playback,
        live_events, play, public_poster
    ),
    tags(
        (name = "accounts", description = "Sign-up, sign-in, the current user"),
        (name = "courses", description = "Catalog, search, course pages, enrollment"),
        (name = "lectures", description = "Lectures, their status and watch progress"),
        (name = "playback", description = "Signed playback URLs and the files behind them"),
        (name = "events", description = "Live transcode and publication events"),
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
        .route(
            "/api/courses/{id}",
            get(course_detail)
                .patch(update_course)
                .delete(delete_course),
        )
        .route("/api/courses/{id}/lectures", post(create_lecture))
        .route("/api/courses/{id}/enroll", post(enroll))
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
        .route("/api/events", get(live_events))
        .route("/media/posters/{file}", get(public_poster))
        // JSON bodies here are a few hundred bytes; a description is at most 20000 characters.
        .layer(axum::extract::DefaultBodyLimit::max(JSON_BODY_LIMIT));
    api.with_state(state)
}

/// Where `PLAY_PREFIX` requests go: a service of its own, put in front of the router.
/// The router would match the token as a path parameter and percent-decode it,
/// and box a layer for the CORS headers, on every request: a cached playlist cost
/// 10.3 µs of CPU that way, 8.6 µs this way.
pub fn play_service(
    state: CatalogState,
) -> impl tower::Service<Request, Response = Response, Error = std::convert::Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    axum::handler::Handler::with_state(play_any_method, state)
}

/// The paths `play_service` answers: `/play/{token}/{path}`.
pub const PLAY_PREFIX: &str = "/play/";

/// The template the play service's latency is recorded under.
pub const PLAY_ROUTE: &str = "/play/{token}/{*path}";

async fn play_any_method(State(s): State<CatalogState>, req: Request) -> Response {
    let mut res = match *req.method() {
        Method::GET | Method::HEAD => play(State(s), req).await.into_response(),
        Method::OPTIONS => play_preflight(),
        _ => lectern_common::http::method_not_allowed(Some("GET, HEAD, OPTIONS")),
    };
    open_cors(&mut res);
    res
}

/// A JSON body whose rejections use the API's error shape. Bodies must be JSON
/// objects: serde would otherwise read a struct from an array of its fields.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = CatalogError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(value)) => object_body(value).map(ApiJson),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(CatalogError::Invalid(
                "send the body as application/json".into(),
            )),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(CatalogError::TooLarge)
            }
            Err(rejection) => Err(CatalogError::Invalid(rejection.body_text())),
        }
    }
}

fn object_body<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, CatalogError> {
    if !value.is_object() {
        return Err(CatalogError::Invalid(
            "the body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| CatalogError::Invalid(format!("invalid JSON body: {e}")))
}

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
    responses((status = 201, description = "Account created; a session token", body = Session), (status = 409, description = "Email already registered", body = lectern_common::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn signup(
    State(s): State<CatalogState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<accounts::Signup>,
) -> Result<(StatusCode, Json<Session>), CatalogError> {
    s.limits.check(Action::Signup, ip, None)?;
    let made = accounts::signup(&s.db, req, s.config.owner_signup).await?;
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
    responses((status = 200, description = "A session token", body = Session), (status = 401, description = "Wrong email or password", body = lectern_common::http::ErrorBody), (status = 429, description = "Too many attempts; see Retry-After", body = lectern_common::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
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
    responses((status = 200, body = User), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
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
    responses((status = 200, description = "Courses the user is enrolled in", body = CourseList), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
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
    responses((status = 200, description = "Published courses (or the owner's own with mine=true)", body = courses::Page<Course>), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn list_courses(
    State(s): State<CatalogState>,
    user: AuthUser,
    query: Result<Query<CourseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<courses::Page<Course>>, CatalogError> {
    let Query(query) = query.map_err(|e| CatalogError::Invalid(e.body_text()))?;
    Ok(Json(courses::list_courses(&s.db, &user, query).await?))
}

#[utoipa::path(
    post, path = "/api/courses", tag = "courses", security(("bearer" = [])), request_body = courses::NewCourse,
    responses((status = 201, body = Course), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
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
    /// The user's progress per lecture, most recent first ("continue where you left off").
    progress: Vec<courses::WatchProgress>,
}

#[utoipa::path(
    get, path = "/api/courses/{id}", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    responses((status = 200, body = CourseDetail), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn course_detail(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<CourseDetail>, CatalogError> {
    let course = courses::visible_course(&s.db, &user, &id).await?;
    let lectures = courses::lectures_of(&s.db, &id).await?;
    let enrolled = courses::enrollment(&s.db, &user.id, &id).await?.is_some();
    let can_edit = course.editable_by(&user);
    let progress = courses::course_progress(&s.db, &user.id, &id).await?;
    Ok(Json(CourseDetail {
        course,
        lectures,
        enrolled,
        can_edit,
        progress,
    }))
}

#[utoipa::path(
    patch, path = "/api/courses/{id}", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")), request_body = courses::CoursePatch,
    responses((status = 200, body = Course), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn update_course(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
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
    responses((status = 204, description = "Deleted with its lectures and files"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn delete_course(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, CatalogError> {
    let orphans = courses::delete_course(&s.db, &user, &id).await?;
    clean_up(&s, orphans);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/courses/{id}/lectures", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "course id")), request_body = courses::NewLecture,
    responses((status = 201, body = Lecture), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn create_lecture(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(new): ApiJson<courses::NewLecture>,
) -> Result<(StatusCode, Json<Lecture>), CatalogError> {
    Ok((
        StatusCode::CREATED,
        Json(courses::create_lecture(&s.db, &user, &id, new).await?),
    ))
}

#[utoipa::path(
    post, path = "/api/courses/{id}/enroll", tag = "courses", security(("bearer" = [])), params(("id" = String, Path, description = "course id")),
    request_body(content = Option<courses::EnrollRequest>, description = "Optional; `{\"purchase\": true}` for a priced course"),
    responses((status = 201, description = "Enrolled", body = courses::Enrollment), (status = 200, description = "Already enrolled", body = courses::Enrollment), (status = 402, description = "A priced course needs purchase: true", body = lectern_common::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn enroll(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<courses::Enrollment>), CatalogError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            CatalogError::TooLarge
        } else {
            CatalogError::Invalid(r.body_text())
        }
    })?;
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
    responses((status = 200, body = Lecture), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn lecture_detail(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Lecture>, CatalogError> {
    Ok(Json(courses::visible_lecture(&s.db, &user, &id).await?.0))
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/ladder", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, body = courses::LectureLadder), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn lecture_ladder(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<courses::LectureLadder>, CatalogError> {
    Ok(Json(courses::lecture_ladder(&s.db, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/diagnostics", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, body = courses::LectureDiagnostics), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn lecture_diagnostics(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<courses::LectureDiagnostics>, CatalogError> {
    Ok(Json(courses::lecture_diagnostics(&s.db, &user, &id).await?))
}

#[utoipa::path(
    patch, path = "/api/lectures/{id}", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")), request_body = courses::LecturePatch,
    responses((status = 200, body = Lecture), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn update_lecture(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<courses::LecturePatch>,
) -> Result<Json<Lecture>, CatalogError> {
    Ok(Json(
        courses::update_lecture(&s.db, &user, &id, patch).await?,
    ))
}

#[utoipa::path(
    delete, path = "/api/lectures/{id}", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 204, description = "Deleted with its files"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn delete_lecture(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
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
    responses((status = 200, body = courses::WatchProgress), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn put_progress(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProgressBody>,
) -> Result<Json<courses::WatchProgress>, CatalogError> {
    Ok(Json(
        courses::save_progress(&s.db, &user, &id, body.position_secs).await?,
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
struct LectureProgress {
    lecture_id: String,
    position_secs: f64,
    completed: bool,
}

#[utoipa::path(
    get, path = "/api/lectures/{id}/progress", tag = "lectures", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, body = LectureProgress), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn get_progress(
    State(s): State<CatalogState>,
    user: AuthUser,
    Path(id): Path<String>,
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
    media_kind: Option<String>,
    poster_url: Option<String>,
    storyboard_url: Option<String>,
}

#[utoipa::path(
    post, path = "/api/lectures/{id}/playback", tag = "playback", security(("bearer" = [])), params(("id" = String, Path, description = "lecture id")),
    responses((status = 200, description = "A signed playback URL", body = PlaybackGrant), (status = 409, description = "Not ready to play yet", body = lectern_common::http::ErrorBody), (status = 429, description = "Too many requests; see Retry-After", body = lectern_common::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn playback(
    State(s): State<CatalogState>,
    user: AuthUser,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<Json<PlaybackGrant>, CatalogError> {
    s.limits.check(Action::PlaybackIssue, ip, Some(&user.id))?;
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
    let video = lecture.media_kind.as_deref() == Some("video") && lecture.status != "playable";
    Ok(Json(PlaybackGrant {
        url: format!("{base}/master.m3u8"),
        expires_at,
        poster_url: video.then(|| format!("{base}/poster.jpg")),
        storyboard_url: video.then(|| format!("{base}/storyboard.vtt")),
        media_kind: lecture.media_kind,
    }))
}

#[utoipa::path(
    get, path = "/api/events", tag = "events", security(("bearer" = [])),
    description = "A WebSocket (send the token as the `bearer, <token>` subprotocol or `?token=`): owners get transcode progress, ready and failed events for their lectures; students `lecture_ready` for courses they are enrolled in.",
    responses((status = 101, description = "Switching to the WebSocket"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn live_events(
    State(s): State<CatalogState>,
    user: AuthUser,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, CatalogError> {
    let ws = ws.map_err(|r| {
        CatalogError::Invalid(format!("this is a WebSocket endpoint: {}", r.body_text()))
    })?;
    let slot = s
        .sockets
        .admit(&user.id, s.config.sockets_per_user)
        .ok_or_else(|| {
            CatalogError::RateLimited(lectern_common::limits::Refusal {
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
        .protocols([lectern_common::auth::WS_BEARER_PROTOCOL])
        .on_upgrade(move |socket| {
            events::serve_socket(socket, user, s.db.clone(), s.hub.clone(), slot)
        }))
}

/// Playback is meant to be embedded anywhere the signed URL goes (an LMS page), so
/// every /play response, errors included, is readable cross-origin.
fn open_cors(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Length, Content-Range, Accept-Ranges, ETag"),
    );
}

fn play_preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Range"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

#[utoipa::path(
    get, path = "/play/{token}/{path}", tag = "playback",
    description = "HLS playlists, segments, poster and storyboard of one lecture, by a playback token. Supports Range, If-None-Match and If-Range; readable cross-origin.",
    params(("token" = String, Path, description = "Playback token from POST /api/lectures/{id}/playback"), ("path" = String, Path, description = "master.m3u8, <rung>/index.m3u8, segments, poster.jpg, storyboard.vtt/jpg"), ("Range" = Option<String>, Header, description = "bytes=start-end")),
    responses((status = 200, description = "The file", content((Vec<u8> = "application/octet-stream"), (String = "application/vnd.apple.mpegurl"))), (status = 206, description = "Part of the file"), (status = 304, description = "Not modified"), (status = 403, description = "Invalid or expired playback token", body = lectern_common::http::ErrorBody), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn play(State(s): State<CatalogState>, req: Request) -> Result<Response, CatalogError> {
    let (method, headers) = (req.method(), req.headers());
    // The route is /play/{token}/{*path}. Read raw rather than through `Path`, which
    // would percent-decode and copy the token on every request: an escaped
    // path is refused below anyway.
    let (token, path) = req
        .uri()
        .path()
        .strip_prefix("/play/")
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
    let content_type = playable_file(path).ok_or(CatalogError::NotFound("file"))?;
    let key = ["assets/", &grant.asset_id, "/", path].concat();
    let remaining = (grant.expires_at - lectern_common::now_unix()).clamp(0, 86_400);
    let direct = s.config.delivery == crate::Delivery::Direct && path.ends_with("/index.m3u8");
    let served = if direct {
        match lectern_common::storage::read_to_vec(s.store.as_ref(), &key).await {
            Ok(bytes) => {
                let text =
                    String::from_utf8(bytes).map_err(|e| CatalogError::Internal(e.to_string()))?;
                return direct_media_playlist(&s, &key, &text, remaining as u64, method).await;
            }
            Err(e) => Err(CatalogError::from(e)),
        }
    } else {
        serve_object(
            &s,
            &key,
            content_type,
            public_max_age(remaining as u64),
            method,
            headers,
        )
        .await
    };
    match served {
        // A lecture still being encoded in parts: its playlists grow in the database
        // until every part is stored and they are written out.
        Err(CatalogError::NotFound(_)) if content_type == "application/vnd.apple.mpegurl" => {
            let live = parts::live_playlists(&s.db, &grant.asset_id)
                .await?
                .ok_or(CatalogError::NotFound("file"))?;
            let text = live.file(path).ok_or(CatalogError::NotFound("file"))?;
            if direct {
                return direct_media_playlist(&s, &key, text, remaining as u64, method).await;
            }
            let headers = [
                (header::CONTENT_TYPE, content_type.to_string()),
                (header::CACHE_CONTROL, "no-cache".to_string()),
                (header::CONTENT_LENGTH, text.len().to_string()),
            ];
            if method == Method::HEAD {
                return Ok((StatusCode::OK, headers).into_response());
            }
            Ok((StatusCode::OK, headers, text.to_string()).into_response())
        }
        other => other,
    }
}

/// `Cache-Control: public, max-age=<secs>`; the header takes the text over without a
/// second copy.
fn public_max_age(secs: u64) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(format!("public, max-age={secs}")))
        .expect("ASCII letters, digits and punctuation")
}

/// A media playlist whose segments point at presigned storage URLs expiring with the
/// playback token. Each response is signed anew, so it is not cacheable.
async fn direct_media_playlist(
    s: &CatalogState,
    key: &str,
    text: &str,
    expires_in: u64,
    method: &Method,
) -> Result<Response, CatalogError> {
    let folder = key.rsplit_once('/').map(|(f, _)| f).unwrap_or_default();
    let ttl = std::time::Duration::from_secs(expires_in.max(1));
    let mut signed = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let url = s
            .store
            .presign_get(&format!("{folder}/{line}"), ttl)
            .await?
            .ok_or_else(|| {
                CatalogError::Internal("direct delivery needs storage that can presign URLs".into())
            })?;
        signed.push(url);
    }
    let mut urls = signed.into_iter();
    let body = lectern_packager::rewrite_segment_uris(text, |uri| {
        urls.next().unwrap_or_else(|| uri.to_string())
    });
    let headers = [
        (
            header::CONTENT_TYPE,
            "application/vnd.apple.mpegurl".to_string(),
        ),
        (header::CACHE_CONTROL, "private, no-store".to_string()),
        (header::CONTENT_LENGTH, body.len().to_string()),
    ];
    if method == Method::HEAD {
        return Ok((StatusCode::OK, headers).into_response());
    }
    Ok((StatusCode::OK, headers, body).into_response())
}

/// Streams a stored object with Range, ETag and conditional GET support.
async fn serve_object(
    s: &CatalogState,
    key: &str,
    content_type: &'static str,
    cache_control: HeaderValue,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, CatalogError> {
    // A plain GET (a player fetching a segment) opens the object once, and the GETs
    // that miss the cache at the same moment share that one read; HEAD and ranges look
    // at its metadata first.
    let plain_get = method == Method::GET && !headers.contains_key(header::RANGE);
    let mut opened = None;
    let cached = if plain_get {
        let load = || async {
            let read = s.store.read(key, None).await?;
            if !s.play_cache.admits(read.meta.size) {
                return Ok(Err(read));
            }
            let (etag, last_modified) = validators(&read.meta)?;
            // Kept so the socket can send it with sendfile: a stored file is mapped in
            // place (a few quick system calls, not worth a blocking thread), anything
            // else is read into a memory file.
            let mapped = s
                .store
                .local_path(key)
                .and_then(|path| lectern_common::zero_copy::map_stored_file(&path, read.meta.size));
            let bytes = match mapped {
                Some(bytes) => bytes,
                None => lectern_common::zero_copy::file_backed(
                    collect(read.body, read.meta.size).await?,
                ),
            };
            Ok::<_, CatalogError>(Ok(Cached {
                meta: read.meta,
                bytes,
                etag,
                last_modified,
            }))
        };
        match s.play_cache.get_or_load(key, load).await? {
            Loaded::Kept(cached) => Some(cached),
            Loaded::Passed(read) => {
                opened = Some(read);
                None
            }
        }
    } else {
        s.play_cache.get(key)
    };
    let fetched_meta: ObjectMeta;
    let (meta, etag, last_modified) = match &cached {
        Some(c) => (&c.meta, c.etag.clone(), c.last_modified.clone()),
        None => {
            fetched_meta = match &opened {
                Some(read) => read.meta.clone(),
                None => s.store.head(key).await?,
            };
            let (etag, last_modified) = validators(&fetched_meta)?;
            (&fetched_meta, etag, last_modified)
        }
    };
    // The response is built in place: a separate header map would be copied into it.
    // Room for what the edge adds too (id, CORS, nosniff): growing rehashes them all.
    let mut res = Response::new(Body::empty());
    *res.headers_mut() = HeaderMap::with_capacity(16);
    let h = res.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(v) = last_modified {
        h.insert(header::LAST_MODIFIED, v);
    }
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim() == meta.etag || t.trim() == "*")
    }) {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(res);
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // If-Range with a stale validator means: send the whole new object.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == meta.etag);
    let range = if if_range_ok {
        parse_range(range_header, meta.size)?
    } else {
        None
    };
    let length = match range {
        Some(r) => {
            let v = format!("bytes {}-{}/{}", r.start, r.end, meta.size);
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&v).map_err(|e| CatalogError::Internal(e.to_string()))?,
            );
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.byte_count()
        }
        None => meta.size,
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if method == Method::HEAD {
        return Ok(res);
    }
    *res.body_mut() = match (&cached, opened) {
        (Some(c), _) => Body::from(match range {
            Some(r) => c.bytes.slice(r.start as usize..=r.end as usize),
            None => c.bytes.clone(),
        }),
        (None, Some(read)) if range.is_none() => Body::from_stream(read.body),
        (None, _) => Body::from_stream(s.store.read(key, range).await?.body),
    };
    Ok(res)
}

/// An object's `ETag` and `Last-Modified` headers.
fn validators(meta: &ObjectMeta) -> Result<(HeaderValue, Option<HeaderValue>), CatalogError> {
    let etag =
        HeaderValue::from_str(&meta.etag).map_err(|e| CatalogError::Internal(e.to_string()))?;
    let modified =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(meta.modified_unix.max(0) as u64);
    Ok((
        etag,
        HeaderValue::from_str(&httpdate::fmt_http_date(modified)).ok(),
    ))
}

async fn collect(
    mut body: lectern_common::storage::ByteStream,
    size: u64,
) -> Result<bytes::Bytes, CatalogError> {
    use futures::StreamExt;
    let mut buf = bytes::BytesMut::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(
            &chunk.map_err(|e| CatalogError::Internal(format!("reading a stored file: {e}")))?,
        );
    }
    Ok(buf.freeze())
}

/// Course-card posters: public for published courses, like a thumbnail on a
/// catalog page (the lecture itself still needs a playback token).
#[utoipa::path(
    get, path = "/media/posters/{file}", tag = "playback", params(("file" = String, Path, description = "<lecture id>.jpg")),
    description = "The poster of a ready video lecture in a published course (for course cards).",
    responses((status = 200, description = "JPEG", content_type = "image/jpeg", body = Vec<u8>), (status = 304, description = "Not modified"), (status = "default", description = "Refused or failed; `error.code` says why", body = lectern_common::http::ErrorBody))
)]
async fn public_poster(
    State(s): State<CatalogState>,
    Path(file): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, CatalogError> {
    let lecture_id = file
        .strip_suffix(".jpg")
        .ok_or(CatalogError::NotFound("poster"))?;
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT l.ready_asset_id FROM lectures l JOIN courses c ON c.id = l.course_id
         WHERE l.id = $1 AND c.published = 1 AND l.media_kind = 'video'",
    )
    .bind(lecture_id)
    .fetch_optional(&s.db)
    .await?;
    let asset = row
        .and_then(|(a,)| a)
        .ok_or(CatalogError::NotFound("poster"))?;
    serve_object(
        &s,
        &format!("assets/{asset}/poster.jpg"),
        "image/jpeg",
        HeaderValue::from_static("public, max-age=300"),
        &method,
        &headers,
    )
    .await
}
