//! Traces of a record's delivery (OpenTelemetry): for a record whose publish was sampled, a
//! `herald.deliver` span (the consumer handing it to the hub, then the fan-out, with the number
//! of recipients) that joins the publisher's trace, and one `herald.socket_write` span under it
//! per WebSocket write that carried it.
//!
//! The spans go to the global tracer provider, which the binary installs when `[tracing]` is
//! configured ([`enable`]); until then every function here returns after one relaxed load. A
//! record that was not sampled costs one branch on its `Option`.

use opentelemetry::trace::{Span, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer};
use opentelemetry::{Context, KeyValue, global};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use herald_core::{Record, TraceParent};

use crate::outbox::OutItem;

/// The instrumentation scope's name in exported spans.
pub const SCOPE: &str = "herald";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns span creation on (the binary calls it once it installed a tracer provider).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are made at all.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// An OpenTelemetry context whose (remote) parent is `t`.
pub fn parent_context(t: &TraceParent) -> Context {
    let sc = SpanContext::new(TraceId::from_bytes(t.trace_id), SpanId::from_bytes(t.span_id), TraceFlags::new(t.flags), true, TraceState::default());
    Context::new().with_remote_span_context(sc)
}

/// The `traceparent` of a span context, when it is valid.
pub fn traceparent_of(sc: &SpanContext) -> Option<TraceParent> {
    sc.is_valid().then(|| TraceParent { trace_id: sc.trace_id().to_bytes(), span_id: sc.span_id().to_bytes(), flags: sc.trace_flags().to_u8() })
}

/// The `herald.publish` span of one `POST /v1/publish` (the API call until the bus took the
/// records), a child of the publisher's `traceparent` when it sent one.
pub struct PublishSpan {
    span: global::BoxedSpan,
    /// What the records carry: this span's context (sampled or not, as the sampler decided).
    pub context: Option<TraceParent>,
}

impl PublishSpan {
    /// Starts the span when tracing is on (`None` otherwise).
    pub fn start(parent: Option<TraceParent>, records: usize) -> Option<Self> {
        if !enabled() {
            return None;
        }
        let tracer = global::tracer(SCOPE);
        let cx = parent.as_ref().map_or_else(Context::new, parent_context);
        let span = tracer
            .span_builder("herald.publish")
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("http.request.method", "POST"), KeyValue::new("url.path", "/v1/publish"), KeyValue::new("herald.records", records as i64)])
            .start_with_context(&tracer, &cx);
        let context = traceparent_of(span.span_context());
        Some(Self { span, context })
    }

    /// Ends the span: where the first record landed, or why the publish failed.
    pub fn finish(mut self, first: Result<(&str, &str, u32, u64), &str>) {
        match first {
            Ok((account, channel, partition, offset)) => {
                self.span.set_attribute(KeyValue::new("herald.account", account.to_owned()));
                self.span.set_attribute(KeyValue::new("herald.channel", channel.to_owned()));
                self.span.set_attribute(KeyValue::new("herald.partition", partition as i64));
                self.span.set_attribute(KeyValue::new("herald.offset", offset as i64));
            }
            Err(e) => self.span.set_status(opentelemetry::trace::Status::error(e.to_owned())),
        }
        self.span.end();
    }
}

/// The `herald.deliver` span of one sampled record on this node, open from the moment its
/// batch reached the hub until its fan-out ended.
pub struct DeliverSpan {
    span: global::BoxedSpan,
    /// Its context, the parent of the socket writes that carry the record.
    pub context: Option<TraceParent>,
}

impl DeliverSpan {
    /// Starts the span for `r` (its batch reached the hub at `started_ms`) when tracing is on
    /// and its publish was sampled; `None` otherwise (the unsampled path: one branch).
    pub fn start(r: &Record, started_ms: u64, node_region: &str) -> Option<Self> {
        let t = r.trace.filter(TraceParent::sampled)?;
        if !enabled() {
            return None;
        }
        let tracer = global::tracer(SCOPE);
        let span = tracer
            .span_builder("herald.deliver")
            .with_kind(SpanKind::Consumer)
            .with_start_time(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(started_ms))
            .with_attributes([
                KeyValue::new("herald.account", r.account.as_str().to_owned()),
                KeyValue::new("herald.channel", r.channel.as_str().to_owned()),
                KeyValue::new("herald.message_id", r.id.as_str().to_owned()),
                KeyValue::new("herald.partition", r.partition as i64),
                KeyValue::new("herald.offset", r.offset as i64),
                KeyValue::new("herald.region", node_region.to_owned()),
            ])
            .start_with_context(&tracer, &parent_context(&t));
        let context = traceparent_of(span.span_context());
        Some(Self { span, context })
    }

    /// Ends the span with the number of connections the record was queued to here.
    pub fn finish(mut self, recipients: usize) {
        self.span.set_attribute(KeyValue::new("herald.recipients", recipients as i64));
        self.span.end();
        if let Some(t) = self.context {
            tracing::debug!(trace_id = %t.trace_id_hex(), recipients, "traced record fanned out");
        }
    }
}

/// Open `herald.socket_write` spans, one per traced record in a batch being written; they end
/// when this is dropped (after the write). `None` when nothing in the batch is traced.
pub struct SocketWrite(Vec<global::BoxedSpan>);

/// Starts a `herald.socket_write` span for each traced record among `items`, which a
/// connection's writer is about to write.
pub fn socket_write(items: &[OutItem]) -> Option<SocketWrite> {
    if !enabled() {
        return None;
    }
    let mut spans = Vec::new();
    for item in items {
        if let OutItem::Record(r) = item
            && let Some(t) = &r.trace
        {
            let tracer = global::tracer(SCOPE);
            let span = tracer
                .span_builder("herald.socket_write")
                .with_kind(SpanKind::Internal)
                .with_attributes([KeyValue::new("herald.channel", r.channel.as_str().to_owned()), KeyValue::new("herald.batch_items", items.len() as i64)])
                .start_with_context(&tracer, &parent_context(t));
            spans.push(span);
        }
    }
    (!spans.is_empty()).then_some(SocketWrite(spans))
}

impl Drop for SocketWrite {
    fn drop(&mut self) {
        for s in &mut self.0 {
            s.end();
        }
    }
}
