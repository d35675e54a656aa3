//! The SMTP side: the server named by `LECTERN_SMTP_URL`, the messages (a plain-text
//! and an HTML part, `List-Unsubscribe` where there is one) and the loop that sends
//! what is due in the outbox, retrying on a schedule.

use lectern_seams::db::Db;
use lectern_seams::now_unix;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Settings;

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit,
    /// Plain, then STARTTLS, which the server must offer (`smtp://`, port 587).
    StartTls,
    /// No TLS at all (`smtp://…?tls=none`): a relay on loopback or a test server only.
    None,
}

/// A mail server, as `LECTERN_SMTP_URL` names it.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl SmtpTarget {
    /// `smtp://[user:pass@]host[:port][?tls=starttls|none]` or
    /// `smtps://[user:pass@]host[:port]`; user and password percent-encoded.
    pub fn parse(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let mut security = match parsed.scheme() {
            "smtp" => Security::StartTls,
            "smtps" => Security::Implicit,
            other => return Err(format!("the scheme must be smtp or smtps, not {other}")),
        };
        for (key, value) in parsed.query_pairs() {
            match (key.as_ref(), value.as_ref(), security) {
                ("tls", "none", Security::StartTls) => security = Security::None,
                ("tls", "starttls" | "required", Security::StartTls) => {}
                ("tls", "implicit", _) => security = Security::Implicit,
                ("tls", v, _) => {
                    return Err(format!(
                        "tls={v} is not one of starttls, implicit, none (none only with smtp://)"
                    ));
                }
                (k, _, _) => return Err(format!("unknown parameter {k}")),
            }
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL names no host")?
            .trim_matches(['[', ']'])
            .to_string();
        let port = parsed.port().unwrap_or(match security {
            Security::Implicit => 465,
            Security::StartTls | Security::None => 587,
        });
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| "the user or password is not percent-encoded UTF-8".to_string())
        };
        let credentials = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            (user, password) => Some((decode(user)?, decode(password.unwrap_or(""))?)),
        };
        Ok(Self {
            host,
            port,
            security,
            credentials,
        })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// The transport for the configured server: TLS verified against the system's
/// certificates, AUTH when credentials are given.
pub fn transport(settings: &Settings) -> Result<Transport, String> {
    // lettre's rustls takes the process's provider: ring, as the rest of Lectern.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let target = &settings.smtp;
    let tls = || TlsParameters::new(target.host.clone()).map_err(|e| e.to_string());
    let tls = match target.security {
        Security::Implicit => Tls::Wrapper(tls()?),
        Security::StartTls => Tls::Required(tls()?),
        Security::None => Tls::None,
    };
    let mut builder = Transport::builder_dangerous(target.host.clone())
        .port(target.port)
        .tls(tls)
        .timeout(Some(settings.timeout));
    if let Some((user, password)) = &target.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// One mail of the outbox.
pub struct Outgoing {
    pub recipient: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub unsubscribe_url: Option<String>,
}

/// The message: text and HTML alternatives, and for a mail one may unsubscribe from,
/// `List-Unsubscribe` with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
/// (RFC 8058).
pub fn message(from: &Mailbox, mail: &Outgoing) -> Result<Message, String> {
    let to: Mailbox = mail
        .recipient
        .parse()
        .map_err(|e| format!("the recipient is not an address: {e}"))?;
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ));
    if let Some(url) = &mail.unsubscribe_url {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{url}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(mail.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html.clone()),
                ),
        )
        .map_err(|e| e.to_string())
}

/// Mails one look takes at most.
const BATCH: i64 = 16;

/// Claims the due mails this process will send.
async fn due(db: &Db, settings: &Settings) -> Result<Vec<String>, sqlx::Error> {
    let lease = settings.timeout.as_secs() as i64 + 30;
    crate::outbox::claim_due(db, "mail_outbox", lease, BATCH).await
}

/// Sends the due mails one after another (one SMTP conversation each).
pub async fn send_due(
    db: &Db,
    settings: &Settings,
    transport: &Transport,
) -> Result<(), sqlx::Error> {
    for id in due(db, settings).await? {
        let row: Option<(String, String, String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT recipient, subject, text_body, html_body, unsubscribe_url, attempts FROM mail_outbox WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(db)
        .await?;
        let Some((recipient, subject, text, html, unsubscribe_url, attempts)) = row else {
            continue;
        };
        let mail = Outgoing {
            recipient,
            subject,
            text,
            html,
            unsubscribe_url,
        };
        let result = match message(&settings.from, &mail) {
            Ok(m) => transport
                .send(m)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let attempts = attempts + 1;
        match result {
            Ok(()) => {
                // What was sent is not kept: reset and verify links are secrets.
                sqlx::query(
                    "UPDATE mail_outbox SET state = 'sent', attempts = $1, sent_at = $2, last_error = NULL,
                     text_body = '', html_body = '' WHERE id = $3",
                )
                .bind(attempts)
                .bind(now_unix())
                .bind(&id)
                .execute(db)
                .await?;
                tracing::info!(mail = %id, "mail sent");
            }
            Err(error) => {
                let next = settings.retry_secs.get(attempts as usize - 1);
                tracing::warn!(mail = %id, attempts, %error, retry_in = ?next, "a mail could not be sent");
                let (state, at) = match next {
                    Some(wait) => ("pending", now_unix() + *wait as i64),
                    None => ("failed", now_unix()),
                };
                sqlx::query(
                    "UPDATE mail_outbox SET state = $1, attempts = $2, next_attempt_at = $3, last_error = $4 WHERE id = $5",
                )
                .bind(state)
                .bind(attempts)
                .bind(at)
                .bind(error.chars().take(500).collect::<String>())
                .bind(&id)
                .execute(db)
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_server_security_and_login() {
        let t = SmtpTarget::parse("smtp://ada%40x.org:p%3Ass@mail.example.org").unwrap();
        assert_eq!(t.host, "mail.example.org");
        assert_eq!(t.port, 587);
        assert_eq!(t.security, Security::StartTls);
        assert_eq!(t.credentials, Some(("ada@x.org".into(), "p:ss".into())));
        assert!(
            !format!("{t:?}").contains("p:ss"),
            "the password stays out of logs"
        );

        let t = SmtpTarget::parse("smtps://mail.example.org").unwrap();
        assert_eq!(
            (t.port, t.security, t.credentials),
            (465, Security::Implicit, None)
        );

        let t = SmtpTarget::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.security),
            ("127.0.0.1", 2525, Security::None)
        );

        for bad in [
            "http://mail.example.org",
            "smtps://mail.example.org?tls=none",
            "smtp://mail.example.org?tls=maybe",
            "smtp://mail.example.org?verify=no",
            "smtp://",
            "nonsense",
        ] {
            assert!(SmtpTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_have_both_parts_and_one_click_unsubscribe() {
        let from: Mailbox = "Lectern <lectern@example.org>".parse().unwrap();
        let mail = Outgoing {
            recipient: "ada@example.org".into(),
            subject: "2 new lectures in Signals".into(),
            text: "plain words".into(),
            html: "<p>html words</p>".into(),
            unsubscribe_url: Some("https://l.example/api/mail/unsubscribe?token=abc.def".into()),
        };
        let raw = String::from_utf8(message(&from, &mail).unwrap().formatted()).unwrap();
        assert!(
            raw.contains(
                "List-Unsubscribe: <https://l.example/api/mail/unsubscribe?token=abc.def>"
            ),
            "{raw}"
        );
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        let plain = Outgoing {
            unsubscribe_url: None,
            ..mail
        };
        let raw = String::from_utf8(message(&from, &plain).unwrap().formatted()).unwrap();
        assert!(!raw.contains("List-Unsubscribe"));
        assert!(
            message(
                &from,
                &Outgoing {
                    recipient: "nobody".into(),
                    ..plain
                }
            )
            .is_err()
        );
    }
}
