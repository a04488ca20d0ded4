//! Prometheus metrics, served as text on `GET /metrics` by both binaries.
//!
//! One [`Metrics`] per process (per [`crate::app::Core`]), with its own registry rather than a
//! global recorder, so that replicas booted side by side in one test process keep separate
//! figures.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The event bus's traffic on this process. With Redis, `received` counts what this
/// replica's subscription brought in: it grows with its own sockets' users and rooms, not
/// with all traffic.
#[derive(Clone, Default)]
pub struct BusMetrics {
    pub published: Counter,
    pub published_bytes: Counter,
    pub received: Counter,
    pub received_bytes: Counter,
    /// Redis channels this process is subscribed to.
    pub channels: Gauge,
}

/// An HTTP answer: the route as declared (`/api/v1/chat/conversations/{id}`, not the id), the
/// method and the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// A client event and how it was answered: `ok` or the error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
    pub outcome: String,
}

/// Every figure this process exports. Cheap to clone: each handle is shared.
#[derive(Clone)]
pub struct Metrics {
    pub messages_persisted: Counter,
    pub sockets_connected: Gauge,
    /// REST answers by route, method and status (rate-limited and refused ones included).
    pub http_requests: Family<HttpLabels, Counter>,
    /// Socket.IO client events by name and outcome.
    pub socket_events: Family<EventLabels, Counter>,
    /// Outbox rows waiting for their events to reach Redis (scaled mode).
    pub outbox_backlog: Gauge,
    pub bus: BusMetrics,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let messages_persisted = Counter::default();
        let sockets_connected = Gauge::default();
        let outbox_backlog = Gauge::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let socket_events = Family::<EventLabels, Counter>::default();
        let bus = BusMetrics::default();
        let mut registry = Registry::with_prefix("chat");
        registry.register(
            "messages_persisted",
            "Messages committed to the database by this process",
            messages_persisted.clone(),
        );
        registry.register(
            "sockets_connected",
            "Socket.IO sockets connected to this process",
            sockets_connected.clone(),
        );
        registry.register(
            "http_requests",
            "REST answers by route, method and status",
            http_requests.clone(),
        );
        registry.register(
            "socket_events",
            "Socket.IO client events by name and outcome (ok, or the error code)",
            socket_events.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Changes whose events are not on Redis yet (scaled mode)",
            outbox_backlog.clone(),
        );
        registry.register(
            "bus_published",
            "Events this process published on Redis",
            bus.published.clone(),
        );
        registry.register(
            "bus_published_bytes",
            "Bytes of the events this process published on Redis",
            bus.published_bytes.clone(),
        );
        registry.register(
            "bus_received",
            "Events this process received from Redis for its sockets",
            bus.received.clone(),
        );
        registry.register(
            "bus_received_bytes",
            "Bytes of the events this process received from Redis",
            bus.received_bytes.clone(),
        );
        registry.register(
            "bus_channels",
            "Redis channels this process is subscribed to",
            bus.channels.clone(),
        );
        Self {
            messages_persisted,
            sockets_connected,
            http_requests,
            socket_events,
            outbox_backlog,
            bus,
            registry: Arc::new(registry),
        }
    }

    /// The OpenMetrics text exposition (Prometheus reads it).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Counts every answer of the router it wraps by its declared route, method and status.
pub async fn count_http(
    axum::extract::State(metrics): axum::extract::State<Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` for axum routers whose state can give the metrics.
pub async fn handler(
    axum::extract::State(metrics): axum::extract::State<Metrics>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_their_values() {
        let m = Metrics::new();
        m.messages_persisted.inc_by(3);
        m.bus.received_bytes.inc_by(120);
        m.sockets_connected.set(2);
        let text = m.render();
        assert!(text.contains("chat_messages_persisted_total 3"), "{text}");
        assert!(text.contains("chat_bus_received_bytes_total 120"), "{text}");
        assert!(text.contains("chat_sockets_connected 2"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
