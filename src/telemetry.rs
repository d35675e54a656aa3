//! The process's log and trace output, set up once: log lines as text or, with
//! `LECTERN_LOG_FORMAT=json`, as JSON objects carrying their spans' fields (request id,
//! trace id); and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set for a role that serves,
//! every span exported over OTLP (HTTP, protobuf) as an OpenTelemetry span.
//!
//! How trace context crosses the database and the queue is `lectern_seams::telemetry`.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::Command;

/// The standard variable that turns tracing on (the exporter appends `/v1/traces`).
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const LOG_FORMAT: &str = "LECTERN_LOG_FORMAT";
/// The longest an export may take (the batch processor waits on it).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Exports what is still queued when dropped (the role is stopping).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(EXPORT_TIMEOUT)
        {
            eprintln!("lectern: exporting the last spans failed: {e}");
        }
    }
}

/// What a role's log looks like and whether its spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    json: bool,
    /// `OTEL_SERVICE_NAME`, or `lectern-<role>`; None: no traces.
    service: Option<String>,
}

/// Reads the settings from `var` (the environment); `role` is None for the commands
/// that serve nothing (they trace nothing).
fn settings(role: Option<&str>, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
    let set = |name| var(name).filter(|v| !v.trim().is_empty());
    let json = match set(LOG_FORMAT).as_deref().map(str::trim) {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => anyhow::bail!("{LOG_FORMAT} is {other:?}: use text or json"),
    };
    let on = set(ENDPOINT).is_some() || set(TRACES_ENDPOINT).is_some();
    let service = role
        .filter(|_| on)
        .map(|role| set(SERVICE_NAME).unwrap_or_else(|| format!("lectern-{role}")));
    Ok(Settings { json, service })
}

/// The role name of a command that serves (its service name is `lectern-<role>`).
fn role_of(command: &Command) -> Option<&'static str> {
    match command {
        Command::Serve => Some("serve"),
        Command::Ingest => Some("ingest"),
        Command::Catalog => Some("catalog"),
        Command::Worker => Some("worker"),
        _ => None,
    }
}

/// Installs the global subscriber: `filter` and the log on `writer`, plus the
/// OpenTelemetry layer when tracing is configured. Call within the Tokio runtime.
pub fn init(
    command: &Command,
    writer: BoxMakeWriter,
    ansi: bool,
    filter: EnvFilter,
) -> anyhow::Result<Telemetry> {
    let settings = settings(role_of(command), |name| std::env::var(name).ok())?;
    let provider = settings.service.as_deref().map(provider).transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("lectern"))
            .with_threads(false)
    });
    let log = if settings.json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(log)
        .with(otel)
        .try_init()
        .context("installing the log")?;
    if let Some(service) = &settings.service {
        tracing::info!(service, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

fn provider(service: &str) -> anyhow::Result<SdkTracerProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .context("building the OTLP exporter's HTTP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(Exporter {
            client,
            runtime: tokio::runtime::Handle::current(),
        })
        .build()
        .context("building the OTLP span exporter")?;
    // The batch processor's thread honours OTEL_BSP_SCHEDULE_DELAY and the other
    // OTEL_BSP_* settings.
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build())
}

/// The OTLP exporter's HTTP client: the reqwest 0.13 client the tree has (rustls on
/// ring). The batch processor exports from a thread of its own, outside the runtime,
/// so each request runs as a task on the runtime.
#[derive(Debug)]
struct Exporter {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// An OTLP answer is a small protobuf; anything longer is cut off here.
const MAX_ANSWER: usize = 1 << 20;

#[async_trait::async_trait]
impl HttpClient for Exporter {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let mut answer = client.execute(request).await?;
                let mut body = Vec::new();
                while let Some(chunk) = answer.chunk().await? {
                    if body.len() + chunk.len() > MAX_ANSWER {
                        return Err("the OTLP endpoint's answer is too long".into());
                    }
                    body.extend_from_slice(&chunk);
                }
                let mut response = Response::builder()
                    .status(answer.status())
                    .body(Bytes::from(body))?;
                *response.headers_mut() = std::mem::take(answer.headers_mut());
                Ok::<_, HttpError>(response)
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let off = settings(Some("worker"), env(&[])).unwrap();
        assert_eq!(
            off,
            Settings {
                json: false,
                service: None
            }
        );
        let blank = settings(Some("worker"), env(&[(ENDPOINT, " ")])).unwrap();
        assert_eq!(blank.service, None);
        let on = settings(Some("worker"), env(&[(ENDPOINT, "http://127.0.0.1:4318")])).unwrap();
        assert_eq!(on.service.as_deref(), Some("lectern-worker"));
        let named = settings(
            Some("serve"),
            env(&[
                (TRACES_ENDPOINT, "http://c/v1/traces"),
                (SERVICE_NAME, "edu"),
            ]),
        )
        .unwrap();
        assert_eq!(named.service.as_deref(), Some("edu"));
        // Commands that serve nothing trace nothing.
        let cli = settings(None, env(&[(ENDPOINT, "http://127.0.0.1:4318")])).unwrap();
        assert_eq!(cli.service, None);
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        assert!(settings(None, env(&[(LOG_FORMAT, "json")])).unwrap().json);
        assert!(!settings(None, env(&[(LOG_FORMAT, "text")])).unwrap().json);
        assert!(settings(None, env(&[(LOG_FORMAT, "yaml")])).is_err());
    }

    /// The client answers with what the endpoint said, from a thread outside the
    /// runtime, as the batch processor calls it.
    #[test]
    fn the_exporter_client_works_from_outside_the_runtime() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4096];
            let _ = socket.read(&mut head).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-seen: yes\r\n\r\nok")
                .await
                .unwrap();
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Exporter {
            client: reqwest::Client::new(),
            runtime: runtime.handle().clone(),
        };
        let request = Request::post(format!("http://{addr}/v1/traces"))
            .body(Bytes::from_static(b"spans"))
            .unwrap();
        let answer = std::thread::spawn(move || block_on_here(client.send_bytes(request)).unwrap())
            .join()
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.body().as_ref(), b"ok");
        assert_eq!(answer.headers()["x-seen"], "yes");
    }

    /// A plain executor for the test thread (no runtime on it, as in the processor's).
    fn block_on_here<F: std::future::Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(future)
    }
}
