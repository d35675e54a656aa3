//! Lectern's HTTP API as the client uses it: signing in, the course and its lectures,
//! one error type, and retries of what may be retried.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lectern_seams::ids::{CourseId, LectureId};
use lectern_seams::lecture::LectureStatus;
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use crate::args::Credentials;

/// Attempts of one request before its error is reported (about 1.5 min of waits).
pub const ATTEMPTS: u32 = 8;
/// Attempts before the server first answered: a mistyped address fails in seconds.
const FIRST_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Auth(String),
    /// The server refused: its `error.message`.
    #[error("{message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{}: {}", .0, causes(.1))]
    Network(String, #[source] reqwest::Error),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("interrupted")]
    Interrupted,
}

/// An error and its causes, "a: b: c" (reqwest's own words leave out why).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

impl ClientError {
    /// A refusal about this one file (too large, over quota, not a video…): the other
    /// files may still go. Anything else stops the run.
    pub fn is_per_file(&self) -> bool {
        matches!(self, ClientError::Server { status, .. }
            if (400..500).contains(status) && !matches!(*status, 401 | 403 | 429))
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A lecture as the API describes it (the fields the client reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Lecture {
    pub id: LectureId,
    pub status: LectureStatus,
    #[serde(default)]
    pub progress_percent: i64,
    pub failure_reason: Option<String>,
    pub duration_secs: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct Course {
    pub title: String,
    #[serde(default)]
    pub can_edit: bool,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Waits between attempts: 0.5 s doubling to 30 s, or what Retry-After asks (at most
/// 5 min).
pub fn backoff(attempt: u32, headers: Option<&HeaderMap>) -> Duration {
    let asked = headers
        .and_then(|h| h.get(RETRY_AFTER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match asked {
        Some(secs) => Duration::from_secs(secs.min(300)),
        None => Duration::from_millis(500u64 << attempt.min(6)).min(Duration::from_secs(30)),
    }
}

/// Answers worth asking again: overloaded, rate-limited or a server fault.
pub fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: Mutex<String>,
    login: Option<(String, String)>,
    /// The server has answered once.
    reached: AtomicBool,
}

impl Api {
    /// Signs in (or takes the token) and checks the token works.
    pub async fn sign_in(base: Url, credentials: Credentials) -> Result<Api, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("lectern-upload/", env!("CARGO_PKG_VERSION")))
            // A redirect never carries the bearer token anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ClientError::Network("setting up HTTP".into(), e))?;
        let (token, login) = match credentials {
            Credentials::Token(t) => (t, None),
            Credentials::Password { email, password } => (String::new(), Some((email, password))),
        };
        let api = Api {
            http,
            base,
            token: Mutex::new(token),
            login,
            reached: AtomicBool::new(false),
        };
        if api.login.is_some() {
            api.log_in().await?;
        }
        Ok(api)
    }

    pub fn url(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("API paths join onto the base")
    }

    /// Whether `url` is on the server's own origin (where the token may go).
    pub fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// A request with the current token.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let token = self.token.lock().expect("token lock").clone();
        self.http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
    }

    /// Signs in again where a password was given (the token expired); false where the
    /// client holds only a token.
    pub async fn renew(&self) -> Result<bool, ClientError> {
        if self.login.is_none() {
            return Ok(false);
        }
        self.log_in().await.map(|()| true)
    }

    async fn log_in(&self) -> Result<(), ClientError> {
        let (email, password) = self.login.as_ref().expect("signed in with a password");
        let body = serde_json::json!({"email": email, "password": password});
        let url = self.url("api/auth/login");
        let res = self
            .retrying("signing in", true, || {
                self.http.post(url.clone()).json(&body)
            })
            .await?;
        if res.status() == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Auth(error_of(res).await.to_string()));
        }
        #[derive(Deserialize)]
        struct Session {
            token: String,
        }
        let session: Session = json_of(res, "signing in").await?;
        *self.token.lock().expect("token lock") = session.token;
        Ok(())
    }

    /// Sends the request `build` makes, again after a transient failure (a network error
    /// where `idempotent`, or before the request left; 429 and 5xx always) and after
    /// signing in again when the token expired.
    pub async fn send(
        &self,
        what: &str,
        idempotent: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let res = self.retrying(what, idempotent, &build).await?;
        if res.status() != StatusCode::UNAUTHORIZED || !self.renew().await? {
            return Ok(res);
        }
        self.retrying(what, idempotent, &build).await
    }

    async fn retrying(
        &self,
        what: &str,
        idempotent: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = build().send().await;
            if sent.is_ok() {
                self.reached.store(true, Ordering::Relaxed);
            }
            let limit = if self.reached.load(Ordering::Relaxed) {
                ATTEMPTS
            } else {
                FIRST_ATTEMPTS
            };
            let wait = match sent {
                Ok(res) if is_transient(res.status()) && attempt < limit => {
                    backoff(attempt, Some(res.headers()))
                }
                Ok(res) => return Ok(res),
                Err(e) if attempt < limit && (idempotent || e.is_connect()) => {
                    backoff(attempt, None)
                }
                Err(e) => return Err(ClientError::Network(what.to_string(), e)),
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The course, checked to be one the signed-in user may add lectures to.
    pub async fn editable_course(&self, id: &CourseId) -> Result<Course, ClientError> {
        let url = self.url(&format!("api/courses/{id}"));
        let res = self
            .send("reading the course", true, || {
                self.request(Method::GET, url.clone())
            })
            .await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::Usage(format!(
                "no course {id} (or it is not visible to this account)"
            )));
        }
        let course: Course = json_of(res, "reading the course").await?;
        if !course.can_edit {
            return Err(ClientError::Auth(format!(
                "this account may not add lectures to \u{201c}{}\u{201d}; sign in as its owner",
                course.title
            )));
        }
        Ok(course)
    }

    /// Adds a lecture after the course's last one.
    pub async fn create_lecture(
        &self,
        course: &CourseId,
        title: &str,
    ) -> Result<Lecture, ClientError> {
        let url = self.url(&format!("api/courses/{course}/lectures"));
        let body = serde_json::json!({ "title": title });
        let res = self
            .send("adding a lecture", false, || {
                self.request(Method::POST, url.clone()).json(&body)
            })
            .await?;
        json_of(res, "adding a lecture").await
    }

    /// The lecture, or None when it no longer exists.
    pub async fn lecture(&self, id: &LectureId) -> Result<Option<Lecture>, ClientError> {
        let url = self.url(&format!("api/lectures/{id}"));
        let res = self
            .send("reading a lecture", true, || {
                self.request(Method::GET, url.clone())
            })
            .await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        json_of(res, "reading a lecture").await.map(Some)
    }
}

/// The body of a successful answer, or the server's error.
pub async fn json_of<T: serde::de::DeserializeOwned>(
    res: Response,
    what: &str,
) -> Result<T, ClientError> {
    if !res.status().is_success() {
        return Err(error_of(res).await);
    }
    res.json()
        .await
        .map_err(|e| ClientError::Network(what.to_string(), e))
}

/// The server's `{"error": {"code", "message"}}`, or the bare status when the answer
/// is not Lectern's (a proxy's page).
pub async fn error_of(res: Response) -> ClientError {
    let status = res.status();
    let body = res.bytes().await.unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            String::new(),
            format!("the server answered {status} without Lectern's error body"),
        ),
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::Auth(message),
        _ => ClientError::Server {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_and_respects_retry_after() {
        assert_eq!(backoff(1, None), Duration::from_secs(1));
        assert_eq!(backoff(2, None), Duration::from_secs(2));
        assert_eq!(backoff(20, None), Duration::from_secs(30));
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(backoff(1, Some(&h)), Duration::from_secs(7));
        h.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(backoff(1, Some(&h)), Duration::from_secs(300));
    }

    #[test]
    fn only_a_files_own_refusal_lets_the_others_go_on() {
        let server = |status| ClientError::Server {
            status,
            code: String::new(),
            message: String::new(),
        };
        assert!(server(413).is_per_file());
        assert!(server(400).is_per_file());
        assert!(!server(429).is_per_file());
        assert!(!server(500).is_per_file());
        assert!(!ClientError::Auth("no".into()).is_per_file());
    }
}
