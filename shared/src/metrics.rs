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
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
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

/// A server-to-client event by name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventName {
    pub event: String,
}

/// A request or client event refused with an error: `rest` or `socket`, and the contract's
/// error code (`rate_limited`, `bad_request`, `forbidden`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub transport: &'static str,
    pub code: String,
}

/// A storage operation, by the name of its `Store` method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DbLabels {
    pub op: &'static str,
}

/// Latency buckets from 0.25 ms to about 4 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
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
    /// Server-to-client events this gateway emitted, by name: one per event and room, however
    /// many sockets the room holds.
    pub events_sent: Family<EventName, Counter>,
    /// Requests and client events answered with an error, by transport and code.
    pub rejected: Family<RejectLabels, Counter>,
    /// From an event's making (on any process) to its emission to this gateway's sockets.
    pub bus_delivery_latency: Histogram,
    /// Storage calls by operation, from the call to the answer (pool wait included).
    pub db_query: Family<DbLabels, Histogram, fn() -> Histogram>,
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
        let events_sent = Family::<EventName, Counter>::default();
        let rejected = Family::<RejectLabels, Counter>::default();
        let bus_delivery_latency = latency_histogram();
        let db_query = Family::<DbLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let mut registry = Registry::with_prefix("chat");
        registry.register(
            "socket_events_sent",
            "Server-to-client events emitted by this gateway, by name (one per event and room)",
            events_sent.clone(),
        );
        registry.register(
            "rejected_requests",
            "REST requests and client events answered with an error, by transport and code",
            rejected.clone(),
        );
        registry.register_with_unit(
            "bus_delivery_latency",
            "From an event's making to its emission to this gateway's sockets",
            Unit::Seconds,
            bus_delivery_latency.clone(),
        );
        registry.register_with_unit(
            "db_query_duration",
            "Storage calls by operation, pool wait included",
            Unit::Seconds,
            db_query.clone(),
        );
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
            events_sent,
            rejected,
            bus_delivery_latency,
            db_query,
            registry: Arc::new(registry),
        }
    }

    /// Counts a request or client event answered with `code`.
    pub fn reject(&self, transport: &'static str, code: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                transport,
                code: code.to_owned(),
            })
            .inc();
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
    if let Some(code) = response.extensions().get::<crate::error::ErrorCode>() {
        metrics.reject("rest", code.as_str());
    }
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
        m.reject("socket", "rate_limited");
        m.bus_delivery_latency.observe(0.003);
        m.db_query
            .get_or_create(&DbLabels { op: "feed" })
            .observe(0.0004);
        let text = m.render();
        assert!(
            text.contains(
                r#"chat_rejected_requests_total{transport="socket",code="rate_limited"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"chat_bus_delivery_latency_seconds_bucket{le="0.004"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chat_db_query_duration_seconds_count{op="feed"} 1"#),
            "{text}"
        );
        assert!(text.contains("chat_messages_persisted_total 3"), "{text}");
        assert!(text.contains("chat_bus_received_bytes_total 120"), "{text}");
        assert!(text.contains("chat_sockets_connected 2"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// The Grafana dashboard in `deploy/` charts only metrics this process exports, under the
    /// names it exports them.
    #[test]
    fn the_dashboard_names_only_exported_metrics() {
        let m = Metrics::new();
        // Every family gets one series, so that each name is in the text.
        let http = HttpLabels {
            method: "GET".into(),
            route: "/x".into(),
            status: 200,
        };
        m.http_requests.get_or_create(&http).inc();
        let event = EventLabels {
            event: "e".into(),
            outcome: "ok".into(),
        };
        m.socket_events.get_or_create(&event).inc();
        m.events_sent
            .get_or_create(&EventName { event: "e".into() })
            .inc();
        m.reject("rest", "bad_request");
        m.db_query
            .get_or_create(&DbLabels { op: "feed" })
            .observe(0.1);
        let text = m.render();
        let exported = |name: &str| {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        };
        let dashboard = include_str!("../../deploy/base/grafana/chat.json");
        let mut charted = Vec::new();
        for (at, _) in dashboard.match_indices("chat_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if name != "chat_" && !charted.contains(&name) {
                charted.push(name);
            }
        }
        assert!(charted.len() >= 10, "the dashboard charts {charted:?}");
        let missing: Vec<&String> = charted.iter().filter(|n| !exported(n)).collect();
        assert!(
            missing.is_empty(),
            "charted but not exported: {missing:?}\n{text}"
        );
    }
}
