//! The mail routes: confirming an address, resetting a password, one-click
//! unsubscribe. Thin handlers over [`super::account`].

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use lectern_web::auth::AuthUser;
use lectern_web::http::{ApiJson, ApiQuery, ErrorBody};
use lectern_web::limits::{Action, ClientIp};
use serde::{Deserialize, Serialize};

use super::{Settings, account, templates::escape};
use crate::CatalogState;
use crate::accounts::{self, Email, User};
use crate::error::CatalogError;

const ERRORS: &str = "Refused or failed; `error.code` says why";

/// The mail routes, merged into the catalog's API router.
pub fn routes() -> Router<CatalogState> {
    Router::new()
        .route("/api/auth/verify", post(verify_email))
        .route("/api/auth/verify/resend", post(resend_verification))
        .route("/api/auth/password-reset", post(request_password_reset))
        .route(
            "/api/auth/password-reset/confirm",
            post(confirm_password_reset),
        )
        .route(
            "/api/mail/unsubscribe",
            axum::routing::get(unsubscribe_page).post(unsubscribe),
        )
}

fn settings(s: &CatalogState) -> Result<&Settings, CatalogError> {
    s.config
        .mail
        .as_deref()
        .ok_or(CatalogError::NotFound("mail service"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenBody {
    /// The `token` of the link in the mail.
    #[schema(max_length = 1000)]
    pub token: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResetConfirm {
    /// The `token` of the link in the reset mail.
    #[schema(max_length = 200)]
    pub token: String,
    #[schema(format = Password, min_length = 8, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub message: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UnsubscribeQuery {
    /// The token of the link in the mail.
    #[param(max_length = 1000)]
    pub token: String,
}

#[utoipa::path(
    post, path = "/api/auth/verify", tag = "accounts", request_body = TokenBody,
    description = "Confirms the address a verify mail went to, with its link's token; the link works once, for 3 days.",
    responses((status = 200, description = "Confirmed: the user", body = User), (status = 400, description = "The link is forged or expired", body = ErrorBody), (status = 409, description = "Confirmed already", body = ErrorBody), (status = "default", description = ERRORS, body = ErrorBody))
)]
pub async fn verify_email(
    State(s): State<CatalogState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Json<User>, CatalogError> {
    Ok(Json(
        account::verify(&s.db, settings(&s)?, &body.token).await?,
    ))
}

#[utoipa::path(
    post, path = "/api/auth/verify/resend", tag = "accounts", security(("bearer" = [])),
    description = "Sends the signed-in user another mail to confirm their address (at most one a minute).",
    responses((status = 202, description = "On its way", body = Accepted), (status = 409, description = "Confirmed already, or a mail went out less than a minute ago", body = ErrorBody), (status = "default", description = ERRORS, body = ErrorBody))
)]
pub async fn resend_verification(
    State(s): State<CatalogState>,
    user: AuthUser,
) -> Result<(StatusCode, Json<Accepted>), CatalogError> {
    let settings = settings(&s)?;
    let user = accounts::get_user(&s.db, &user.id).await?;
    account::send_verification(&s.db, settings, &user).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message: format!("A confirmation link is on its way to {}.", user.email),
        }),
    ))
}

#[utoipa::path(
    post, path = "/api/auth/password-reset", tag = "accounts", request_body = ResetRequest,
    description = "Mails a password reset link (good once, for 30 minutes) to the account with this address. The answer is the same whether or not there is one, and comes before any work on it.",
    responses((status = 202, description = "If an account has the address, a link is on its way", body = Accepted), (status = 429, description = "Too many requests; see Retry-After", body = ErrorBody), (status = "default", description = ERRORS, body = ErrorBody))
)]
pub async fn request_password_reset(
    State(s): State<CatalogState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<(StatusCode, Json<Accepted>), CatalogError> {
    s.limits.check(Action::Login, ip, None)?;
    let email = Email::parse(&req.email)?;
    // The work happens after the answer, so its time tells nothing of the account.
    if let Some(settings) = s.config.mail.clone() {
        let db = s.db.clone();
        tokio::spawn(async move {
            if let Err(e) = account::request_reset(&db, &settings, &email).await {
                tracing::warn!(error = %e, "a password reset could not be written");
            }
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message: "If an account has this address, a link to reset its password is on its way."
                .into(),
        }),
    ))
}

#[utoipa::path(
    post, path = "/api/auth/password-reset/confirm", tag = "accounts", request_body = ResetConfirm,
    description = "Sets a new password with a reset link's token. The token, and every other reset token of the account, is used up.",
    responses((status = 204, description = "The password is changed"), (status = 400, description = "The link is invalid, used or expired, or the password too short", body = ErrorBody), (status = "default", description = ERRORS, body = ErrorBody))
)]
pub async fn confirm_password_reset(
    State(s): State<CatalogState>,
    ApiJson(req): ApiJson<ResetConfirm>,
) -> Result<StatusCode, CatalogError> {
    account::confirm_reset(&s.db, &req.token, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{0}</title></head><body style=\"font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em\">\
         <h1>{0}</h1>{body}</body></html>",
        escape(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

#[utoipa::path(
    get, path = "/api/mail/unsubscribe", tag = "accounts", params(UnsubscribeQuery),
    description = "The page a digest's unsubscribe link opens: a button that unsubscribes (a GET changes nothing, so link scanners do not unsubscribe anyone).",
    responses((status = 200, description = "A page with the button", content_type = "text/html"), (status = "default", description = ERRORS, body = ErrorBody))
)]
pub async fn unsubscribe_page(
    State(s): State<CatalogState>,
    ApiQuery(q): ApiQuery<UnsubscribeQuery>,
) -> Result<Response, CatalogError> {
    settings(&s)?;
    Ok(html_page(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<p>Get no more mail about new lectures of this course?</p>\
             <form method=\"post\" action=\"?token={}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\">Unsubscribe</button></form>",
            escape(&q.token)
        ),
    ))
}

#[utoipa::path(
    post, path = "/api/mail/unsubscribe", tag = "accounts", params(UnsubscribeQuery),
    description = "One-click unsubscribe (RFC 8058): the `List-Unsubscribe` URL of a new-lecture digest, POSTed with the body `List-Unsubscribe=One-Click`, needs no sign-in: the signed token names the student and the course. No more digests of the course go to the student.",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`List-Unsubscribe=One-Click` (anything else is ignored)"),
    responses((status = 200, description = "Unsubscribed", content_type = "text/html"), (status = 400, description = "The link is forged", body = ErrorBody), (status = "default", description = ERRORS, body = ErrorBody))
)]
pub async fn unsubscribe(
    State(s): State<CatalogState>,
    ApiQuery(q): ApiQuery<UnsubscribeQuery>,
) -> Result<Response, CatalogError> {
    let course = account::unsubscribe(&s.db, settings(&s)?, &q.token).await?;
    let what = if course.is_empty() {
        "this course".to_string()
    } else {
        format!("“{}”", escape(&course))
    };
    Ok(html_page(
        StatusCode::OK,
        "Unsubscribed",
        &format!("<p>You will get no more mail about new lectures of {what}.</p>"),
    ))
}

/// Sends a new account the mail that confirms its address, when mail is set up; a
/// failure is logged (the account stands, and `/api/auth/verify/resend` sends another).
pub async fn after_signup(s: &CatalogState, user: &User) {
    if let Some(settings) = s.config.mail.as_deref()
        && let Err(e) = account::send_verification(&s.db, settings, user).await
    {
        tracing::warn!(user = %user.id, error = %e, "the confirmation mail could not be written");
    }
}
