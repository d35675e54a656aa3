//! RabbitMQ (lapin): `amqp://user:pass@host:port/vhost[?prefix=NAME]`.
//!
//! Topology, every name under an optional prefix (so test runs and tenants can share
//! a broker):
//! - exchange `lectern` (direct); quorum queue `lectern.jobs` (key `jobs`), durable,
//!   persistent messages, publisher confirms, consumers with prefetch 1 and manual ack;
//! - retries: the message is republished to `lectern.jobs.delay.<ms>`, a queue whose TTL
//!   dead-letters it back to `lectern.jobs` (exponential back-off without a plugin);
//! - `lectern.jobs.dead` (key `jobs.dead`) keeps given-up jobs with the reason;
//! - quorum queue `lectern.jobs.audio` (key `audio`), with its own delay and dead
//!   queues, for the whole-lecture audio jobs workers take beside video jobs;
//! - topic exchange `lectern.events`, durable queue `lectern.events.catalog` (`job.#`).
//!
//! The attempt count is our header plus the quorum queue's `x-delivery-count`, so a
//! job redelivered after a worker died counts as a new attempt. A lost connection is
//! re-established on the next call.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::{Consumer, Delivery, Lease, Queue, QueueError, Result, Topic};

const ATTEMPT_HEADER: &str = "x-lectern-attempt";
const REASON_HEADER: &str = "x-lectern-reason";
/// How long one call may wait for the broker. A broker that hangs (rather than
/// refusing) would otherwise hold the caller until the heartbeat gives up.
const CALL_LIMIT: Duration = Duration::from_secs(10);

fn err(e: lapin::Error) -> QueueError {
    QueueError::Backend(e.to_string())
}

/// A broker call within [`CALL_LIMIT`].
async fn limited<T>(what: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CALL_LIMIT, call)
        .await
        .unwrap_or_else(|_| {
            Err(QueueError::Backend(format!(
                "RabbitMQ did not answer {what} within {} s",
                CALL_LIMIT.as_secs()
            )))
        })
}

/// Names of the topology, with the prefix applied.
#[derive(Clone)]
struct Names {
    prefix: String,
}

impl Names {
    fn name(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_string()
        } else {
            format!("{}.{base}", self.prefix)
        }
    }
    fn jobs_exchange(&self) -> String {
        self.name("lectern")
    }
    fn events_exchange(&self) -> String {
        self.name("lectern.events")
    }
    fn queue(&self, topic: Topic) -> String {
        match topic {
            Topic::Jobs => self.name("lectern.jobs"),
            Topic::AudioJobs => self.name("lectern.jobs.audio"),
            Topic::Events => self.name("lectern.events.catalog"),
        }
    }
    fn dead(&self, topic: Topic) -> String {
        format!("{}.dead", self.queue(topic))
    }
    fn delay(&self, topic: Topic, ms: u64) -> String {
        format!("{}.delay.{ms}", self.queue(topic))
    }
    /// Exchange and routing key a topic's messages are published with.
    fn route(&self, topic: Topic) -> (String, &'static str) {
        match topic {
            Topic::Jobs => (self.jobs_exchange(), "jobs"),
            Topic::AudioJobs => (self.jobs_exchange(), "audio"),
            Topic::Events => (self.events_exchange(), "job.event"),
        }
    }
}

struct Link {
    connection: Connection,
    publisher: Channel,
}

pub struct AmqpQueue {
    uri: String,
    names: Names,
    link: Mutex<Option<Link>>,
}

/// Splits our `prefix` parameter off the URL lapin gets.
fn split_prefix(url: &str) -> (String, String) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), String::new());
    };
    let mut prefix = String::new();
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| match p.strip_prefix("prefix=") {
            Some(v) => {
                prefix = v.to_string();
                false
            }
            None => !p.is_empty(),
        })
        .collect();
    let uri = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (uri, prefix)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn header_int(headers: &Option<FieldTable>, name: &str) -> Option<i64> {
    let value = headers
        .as_ref()?
        .inner()
        .get(&ShortString::from(name))?
        .clone();
    match value {
        AMQPValue::ShortShortInt(v) => Some(v as i64),
        AMQPValue::ShortShortUInt(v) => Some(v as i64),
        AMQPValue::ShortInt(v) => Some(v as i64),
        AMQPValue::ShortUInt(v) => Some(v as i64),
        AMQPValue::LongInt(v) => Some(v as i64),
        AMQPValue::LongUInt(v) => Some(v as i64),
        AMQPValue::LongLongInt(v) => Some(v),
        _ => None,
    }
}

fn header_text(headers: &Option<FieldTable>, name: &str) -> Option<String> {
    match headers.as_ref()?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        AMQPValue::ShortString(v) => Some(v.as_str().to_string()),
        _ => None,
    }
}

impl AmqpQueue {
    pub async fn open(url: &str) -> Result<Self> {
        let (uri, prefix) = split_prefix(url);
        let queue = AmqpQueue {
            uri,
            names: Names { prefix },
            link: Mutex::new(None),
        };
        // Fail fast on a wrong URL or credentials, and declare the topology once.
        queue.channel().await?;
        Ok(queue)
    }

    async fn connect(&self) -> Result<Link> {
        let connection = Connection::connect(&self.uri, ConnectionProperties::default())
            .await
            .map_err(err)?;
        let publisher = connection.create_channel().await.map_err(err)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(err)?;
        self.declare(&publisher).await?;
        Ok(Link {
            connection,
            publisher,
        })
    }

    async fn declare(&self, ch: &Channel) -> Result<()> {
        let n = &self.names;
        let exchange_opts = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            n.jobs_exchange().into(),
            ExchangeKind::Direct,
            exchange_opts,
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        ch.exchange_declare(
            n.events_exchange().into(),
            ExchangeKind::Topic,
            exchange_opts,
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        let quorum = args(&[("x-queue-type", text("quorum"))]);
        for topic in [Topic::Jobs, Topic::AudioJobs] {
            ch.queue_declare(n.queue(topic).into(), durable(), quorum.clone())
                .await
                .map_err(err)?;
            let (exchange, key) = n.route(topic);
            ch.queue_bind(
                n.queue(topic).into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
            ch.queue_declare(n.dead(topic).into(), durable(), FieldTable::default())
                .await
                .map_err(err)?;
        }
        ch.queue_declare(n.queue(Topic::Events).into(), durable(), quorum)
            .await
            .map_err(err)?;
        ch.queue_bind(
            n.queue(Topic::Events).into(),
            n.events_exchange().into(),
            "job.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        ch.queue_declare(
            n.dead(Topic::Events).into(),
            durable(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    /// The publishing channel, reconnecting when the connection was lost.
    async fn channel(&self) -> Result<Channel> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            if l.connection.status().connected() && l.publisher.status().connected() {
                return Ok(l.publisher.clone());
            }
            tracing::warn!("RabbitMQ connection lost; reconnecting");
        }
        let fresh = limited("a connection", self.connect()).await?;
        let ch = fresh.publisher.clone();
        *link = Some(fresh);
        Ok(ch)
    }

    async fn forget_link(&self) {
        *self.link.lock().await = None;
    }

    async fn publish_to(
        &self,
        exchange: &str,
        key: &str,
        payload: &[u8],
        headers: FieldTable,
        expiration: Option<u64>,
        delay_ms: Option<u64>,
    ) -> Result<()> {
        let ch = self.channel().await?;
        // When the message is ready for a consumer (a retry: when its delay ends), in
        // seconds, the protocol's resolution; consumers measure their wait from it.
        let ready_at = crate::now_unix() as u64 + delay_ms.unwrap_or(0) / 1000;
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_timestamp(ready_at)
            .with_headers(headers);
        if let Some(ms) = expiration {
            props = props.with_expiration(ms.to_string().into());
        }
        let result = limited("a publish", async {
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    payload,
                    props,
                )
                .await
                .map_err(err)?;
            let confirmation = confirm.await.map_err(err)?;
            if confirmation.is_nack() {
                return Err(QueueError::Backend("the broker refused the message".into()));
            }
            Ok(())
        })
        .await;
        if result.is_err() {
            self.forget_link().await;
        }
        result
    }

    /// Declares the delay queue for one back-off length (idempotent).
    async fn delay_queue(&self, topic: Topic, ms: u64) -> Result<String> {
        let ch = self.channel().await?;
        let name = self.names.delay(topic, ms);
        let (exchange, key) = self.names.route(topic);
        let arguments = args(&[
            ("x-message-ttl", AMQPValue::LongLongInt(ms as i64)),
            ("x-dead-letter-exchange", text(&exchange)),
            ("x-dead-letter-routing-key", text(key)),
            // Delay queues of lengths no longer used go away by themselves.
            (
                "x-expires",
                AMQPValue::LongLongInt((ms as i64 + 60_000) * 10),
            ),
        ]);
        limited("a delay queue", async {
            ch.queue_declare(name.clone().into(), durable(), arguments)
                .await
                .map_err(err)
        })
        .await?;
        Ok(name)
    }

    async fn subscribe(&self, topic: Topic) -> Result<Box<dyn Consumer>> {
        self.channel().await?;
        let ch = {
            let link = self.link.lock().await;
            let link = link
                .as_ref()
                .ok_or_else(|| QueueError::Backend("not connected".into()))?;
            link.connection.create_channel().await.map_err(err)?
        };
        ch.basic_qos(1, BasicQosOptions::default())
            .await
            .map_err(err)?;
        let consumer = ch
            .basic_consume(
                self.names.queue(topic).into(),
                format!("lectern-{}", crate::new_id()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        Ok(Box::new(AmqpConsumer {
            queue: self.clone_handle(),
            topic,
            consumer,
            _channel: ch,
        }))
    }
}

#[async_trait]
impl Queue for AmqpQueue {
    async fn publish(&self, topic: Topic, payload: Vec<u8>) -> Result<()> {
        let (exchange, key) = self.names.route(topic);
        // The publishing span's trace context, for consumers and tools that read headers.
        let headers = match crate::telemetry::current_traceparent() {
            Some(traceparent) => args(&[(crate::telemetry::TRACEPARENT, text(&traceparent))]),
            None => FieldTable::default(),
        };
        self.publish_to(&exchange, key, &payload, headers, None, None)
            .await
    }

    async fn consumer(&self, topic: Topic) -> Result<Box<dyn Consumer>> {
        limited("a new consumer", self.subscribe(topic)).await
    }

    async fn depth(&self, topic: Topic) -> Result<u64> {
        Ok(self.declared(topic).await?.message_count() as u64)
    }

    async fn consumers(&self, topic: Topic) -> Result<u64> {
        Ok(self.declared(topic).await?.consumer_count() as u64)
    }

    async fn dead_letters(&self, topic: Topic) -> Result<u64> {
        Ok(self.passive(&self.names.dead(topic)).await?.message_count() as u64)
    }

    async fn check(&self) -> Result<()> {
        // A round trip: a hung broker keeps its connection looking alive.
        self.declared(Topic::Jobs).await.map(|_| ())
    }
}

/// What a consumer republishes through (retries, dead letters): a queue value with its
/// own link, so consumers never wait on the main publisher's lock.
type Handle = std::sync::Arc<AmqpQueue>;

impl AmqpQueue {
    /// A topic's queue as the broker reports it now (a passive declare: it must exist).
    async fn declared(&self, topic: Topic) -> Result<lapin::Queue> {
        self.passive(&self.names.queue(topic)).await
    }

    /// A queue as the broker reports it now.
    async fn passive(&self, name: &str) -> Result<lapin::Queue> {
        let ch = self.channel().await?;
        let declared = limited("a queue's state", async {
            ch.queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..durable()
                },
                FieldTable::default(),
            )
            .await
            .map_err(err)
        })
        .await;
        if declared.is_err() {
            self.forget_link().await;
        }
        declared
    }

    fn clone_handle(&self) -> Handle {
        std::sync::Arc::new(AmqpQueue {
            uri: self.uri.clone(),
            names: self.names.clone(),
            link: Mutex::new(None),
        })
    }
}

struct AmqpConsumer {
    queue: Handle,
    topic: Topic,
    consumer: lapin::Consumer,
    _channel: Channel,
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Result<Delivery> {
        let delivery = match self.consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(err(e)),
            None => return Err(QueueError::Backend("the broker closed the consumer".into())),
        };
        if let Some(ready_at) = delivery.properties.timestamp() {
            super::observe_wait(self.topic, (*ready_at as i64).saturating_mul(1000));
        }
        let headers = delivery.properties.headers().clone();
        let ours = header_int(&headers, ATTEMPT_HEADER).unwrap_or(1).max(1);
        let redeliveries = header_int(&headers, "x-delivery-count").unwrap_or(0).max(0);
        let attempt = (ours + redeliveries) as u32;
        let traceparent = header_text(&headers, crate::telemetry::TRACEPARENT);
        let payload = delivery.data.clone();
        let lease = AmqpLease {
            queue: self.queue.clone(),
            topic: self.topic,
            acker: delivery.acker,
            payload: payload.clone(),
            attempt,
        };
        Ok(Delivery {
            payload,
            attempt,
            traceparent,
            lease: Box::new(lease),
        })
    }
}

struct AmqpLease {
    queue: Handle,
    topic: Topic,
    acker: lapin::Acker,
    payload: Vec<u8>,
    attempt: u32,
}

#[async_trait]
impl Lease for AmqpLease {
    async fn ack(&self) -> Result<()> {
        limited("an ack", async {
            self.acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(err)
        })
        .await?;
        Ok(())
    }

    async fn retry_after(&self, delay: Duration) -> Result<()> {
        // The copy is confirmed before the original is acked: a crash in between
        // duplicates the job (harmless, outputs are keyed by asset), never loses it.
        let ms = delay.as_millis().max(1) as u64;
        let q = &self.queue;
        let name = q.delay_queue(self.topic, ms).await?;
        let headers = args(&[(
            ATTEMPT_HEADER,
            AMQPValue::LongLongInt(self.attempt as i64 + 1),
        )]);
        q.publish_to("", &name, &self.payload, headers, None, Some(ms))
            .await?;
        self.ack().await
    }

    async fn dead_letter(&self, reason: &str) -> Result<()> {
        let q = &self.queue;
        let headers = args(&[
            (REASON_HEADER, text(reason)),
            (ATTEMPT_HEADER, AMQPValue::LongLongInt(self.attempt as i64)),
        ]);
        q.publish_to(
            "",
            &q.names.dead(self.topic),
            &self.payload,
            headers,
            None,
            None,
        )
        .await?;
        self.ack().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_split_from_the_broker_url() {
        assert_eq!(
            split_prefix("amqp://h:1/%2f?prefix=t1"),
            ("amqp://h:1/%2f".into(), "t1".into())
        );
        assert_eq!(
            split_prefix("amqp://h:1/%2f?heartbeat=10&prefix=t1"),
            ("amqp://h:1/%2f?heartbeat=10".into(), "t1".into())
        );
        assert_eq!(
            split_prefix("amqp://h:1/%2f"),
            ("amqp://h:1/%2f".into(), String::new())
        );
        let n = Names {
            prefix: "t1".into(),
        };
        assert_eq!(n.queue(Topic::Jobs), "t1.lectern.jobs");
        assert_eq!(n.delay(Topic::Jobs, 2000), "t1.lectern.jobs.delay.2000");
        assert_eq!(
            Names {
                prefix: String::new()
            }
            .dead(Topic::Jobs),
            "lectern.jobs.dead"
        );
    }
}
