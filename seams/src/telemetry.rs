//! Trace context across Lectern's hops, as W3C `traceparent` text: from an HTTP request
//! into the upload's row, from the upload's finish into its transcode jobs (the
//! message's field and the AMQP header), and from a job into the events it reports.
//!
//! Every function here is harmless when tracing is off (no OpenTelemetry layer in the
//! subscriber): spans then have no trace context, so nothing is written and nothing is
//! read. The binary's `telemetry` module sets the layer up.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::messages::JobEvent;

/// The W3C header (and AMQP header, and field) that carries trace context.
pub const TRACEPARENT: &str = "traceparent";

/// `00-{trace id}-{span id}-{flags}` for a valid span context; None for an invalid one.
pub fn format_traceparent(cx: &SpanContext) -> Option<String> {
    cx.is_valid().then(|| {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags().to_u8() & 0x01
        )
    })
}

/// The remote span context a `traceparent` names, when it is well formed (version 00,
/// or a later version read as 00 as the specification asks) and not all zeros.
pub fn parse_traceparent(text: &str) -> Option<SpanContext> {
    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let cx = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 0x01),
        true,
        TraceState::default(),
    );
    cx.is_valid().then_some(cx)
}

/// The `traceparent` of `span`, when tracing is on.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    format_traceparent(span.context().span().span_context())
}

/// The `traceparent` of the span the caller runs in, when tracing is on.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The trace id of `span` as 32 hex digits, when tracing is on.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| format!("{:032x}", sc.trace_id()))
}

/// Makes the span named by `traceparent` the parent of `span` (which must not have been
/// entered yet), and records the trace id in the span's `trace_id` field if it has one,
/// so log lines carry it. Without a parent the span starts a trace of its own.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(parent) = traceparent.and_then(parse_traceparent) {
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }
    if let Some(id) = trace_id_of(span) {
        span.record("trace_id", id.as_str());
    }
}

/// Like [`continue_trace`], and links `span` to the span the caller runs in when that
/// one is in another trace (a tus PATCH's request span, which began its own).
pub fn continue_trace_linked(span: &tracing::Span, traceparent: Option<&str>) {
    let caller = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .clone();
    continue_trace(span, traceparent);
    if caller.is_valid()
        && trace_id_of(span).is_some_and(|id| id != format!("{:032x}", caller.trace_id()))
    {
        span.add_link(caller);
    }
}

/// A job event as it travels: the event's own JSON with the reporting span's
/// `traceparent` beside its fields. Readers that know nothing of it decode the event as
/// before (unknown fields are ignored).
#[derive(Serialize)]
struct TracedEvent<'a> {
    #[serde(flatten)]
    event: &'a JobEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

#[derive(Deserialize)]
struct TraceOnly {
    #[serde(default)]
    traceparent: Option<String>,
}

/// The queue payload of `event`, carrying the current span's trace context.
pub fn event_payload(event: &JobEvent) -> Vec<u8> {
    serde_json::to_vec(&TracedEvent {
        event,
        traceparent: current_traceparent(),
    })
    .expect("events serialize")
}

/// The `traceparent` a queue payload (a job or an event) carries, if any.
pub fn traceparent_in(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<TraceOnly>(payload)
        .ok()?
        .traceparent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AssetId, LectureId};

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_survives_a_round_trip() {
        let cx = parse_traceparent(SAMPLE).unwrap();
        assert_eq!(
            format!("{:032x}", cx.trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(format!("{:016x}", cx.span_id()), "00f067aa0ba902b7");
        assert!(cx.is_sampled() && cx.is_remote());
        assert_eq!(format_traceparent(&cx).as_deref(), Some(SAMPLE));
        let unsampled = SAMPLE.replace("-01", "-00");
        assert!(!parse_traceparent(&unsampled).unwrap().is_sampled());
        assert_eq!(
            format_traceparent(&parse_traceparent(&unsampled).unwrap()).as_deref(),
            Some(unsampled.as_str())
        );
        // A later version may add fields; its first four are read as version 00's.
        assert!(parse_traceparent(&format!("cc{}-extra", &SAMPLE[2..])).is_some());
    }

    #[test]
    fn malformed_or_empty_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        assert_eq!(format_traceparent(&SpanContext::NONE), None);
    }

    #[test]
    fn without_tracing_nothing_is_carried() {
        let span = tracing::info_span!("x", trace_id = tracing::field::Empty);
        continue_trace(&span, Some(SAMPLE));
        assert_eq!(traceparent_of(&span), None);
        assert_eq!(current_traceparent(), None);
    }

    #[test]
    fn events_carry_their_traceparent_beside_their_fields() {
        let event = JobEvent::Progress {
            job_id: "j".into(),
            lecture_id: LectureId::new(),
            asset_id: AssetId::new(),
            percent: 5,
        };
        let traced = TracedEvent {
            event: &event,
            traceparent: Some(SAMPLE.into()),
        };
        let payload = serde_json::to_vec(&traced).unwrap();
        assert_eq!(serde_json::from_slice::<JobEvent>(&payload).unwrap(), event);
        assert_eq!(traceparent_in(&payload).as_deref(), Some(SAMPLE));
        // Without tracing, the payload is the event's JSON as it always was.
        assert_eq!(event_payload(&event), serde_json::to_vec(&event).unwrap());
        assert_eq!(traceparent_in(&event_payload(&event)), None);
        assert_eq!(traceparent_in(b"not json"), None);
    }
}
