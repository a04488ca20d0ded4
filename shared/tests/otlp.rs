//! Span export over OTLP/HTTP: a span recorded through the layer reaches a collector with its
//! name, its fields and the service name. Built only with the `otlp` feature (`[[test]]` in
//! shared/Cargo.toml): `cargo test --workspace --features chat-shared/otlp --test otlp`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chat_shared::telemetry::otlp;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

/// The bodies POSTed to `/v1/traces`, in order.
type Received = Arc<Mutex<Vec<Bytes>>>;

/// A collector that accepts every export and keeps its body. Returns the URL to export to.
async fn fake_collector(received: Received) -> String {
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(|State(received): State<Received>, body: Bytes| async move {
                received.lock().unwrap().push(body);
                StatusCode::OK
            }),
        )
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    format!("http://{addr}/v1/traces")
}

fn string_value(value: Option<&AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string_value(kv.value.as_ref()))
}

#[tokio::test]
async fn a_span_reaches_the_collector_with_its_name_fields_and_service_name() {
    // Arrange
    let received = Received::default();
    let endpoint = fake_collector(received.clone()).await;
    let (layer, export) = otlp::layer("chat-otlp-test", Some(&endpoint)).unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);

    // Act
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", method = "GET", request_id = "abc");
        let _entered = span.enter();
        tracing::info!("handled");
    });
    export.shutdown().await;

    // Assert
    let bodies = received.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "the collector received no export");
    let requests: Vec<ExportTraceServiceRequest> = bodies
        .iter()
        .map(|body| {
            ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP protobuf body")
        })
        .collect();
    let resource_spans = requests.iter().flat_map(|r| &r.resource_spans);
    let (resource, span) = resource_spans
        .flat_map(|rs| {
            rs.scope_spans
                .iter()
                .flat_map(|ss| &ss.spans)
                .map(move |span| (rs.resource.as_ref(), span))
        })
        .find(|(_, span)| span.name == "request")
        .expect("a span named `request`");
    assert_eq!(attribute(&span.attributes, "request_id"), Some("abc"));
    assert_eq!(attribute(&span.attributes, "method"), Some("GET"));
    let expected_service =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "chat-otlp-test".to_owned());
    assert_eq!(
        attribute(&resource.expect("a resource").attributes, "service.name"),
        Some(expected_service.as_str())
    );
}

#[tokio::test]
async fn an_https_endpoint_is_refused_at_start() {
    // Arrange, Act
    let refused = otlp::layer::<tracing_subscriber::Registry>(
        "chat-otlp-test",
        Some("https://collector.example:4318/v1/traces"),
    );

    // Assert
    let error = refused.err().expect("an error for an https endpoint");
    assert!(error.to_string().contains("https"), "{error}");
}
