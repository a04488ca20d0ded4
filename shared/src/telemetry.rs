//! Logs to stderr and, in builds with the `otlp` feature, spans to an OpenTelemetry collector
//! over OTLP/HTTP (docs/observability.md).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The standard variables that ask for span export, the traces-only one first (it wins, as in
/// the exporter itself).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The first of [`ENDPOINT_VARS`] that is set and not empty, with its value.
fn endpoint_from_env() -> Option<(&'static str, String)> {
    ENDPOINT_VARS.into_iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .map(|value| (var, value))
    })
}

/// What every layer stands on: the registry behind the `RUST_LOG` filter, so that the filter
/// decides for the logs and the exported spans alike.
type Filtered = tracing_subscriber::layer::Layered<EnvFilter, Registry>;
type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Logs to stderr, human-readable or JSON lines, filtered by `RUST_LOG` (default `info`). In a
/// build with the `otlp` feature and with `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, also exports the spans, as `service` unless
/// `OTEL_SERVICE_NAME` says otherwise; [`shutdown_telemetry`] sends what is still buffered.
///
/// Call it inside the tokio runtime (the exporter's batches run there). A second call does
/// nothing: the first subscriber stays. An export that cannot be set up (an `https`
/// endpoint, another protocol) is an error, returned after the logs are set up.
pub fn init_telemetry(format: &str, service: &str) -> anyhow::Result<()> {
    if tracing::dispatcher::has_been_set() {
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt: BoxedLayer = if format == "json" {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let requested = endpoint_from_env();
    #[cfg(feature = "otlp")]
    let (otel, exporting, failed) = match &requested {
        None => (None, None, None),
        Some((var, endpoint)) => match otlp::layer(service, None) {
            Ok((layer, export)) => (Some(layer.boxed()), Some((*var, endpoint, export)), None),
            Err(e) => (
                None,
                None,
                Some(e.context(format!("cannot export spans ({var})"))),
            ),
        },
    };
    #[cfg(not(feature = "otlp"))]
    let otel: Option<BoxedLayer> = None;
    let layers: Vec<BoxedLayer> = std::iter::once(fmt).chain(otel).collect();
    // False only if another thread installed a subscriber since the check above: that one stays.
    let installed = Registry::default()
        .with(filter)
        .with(layers)
        .try_init()
        .is_ok();

    #[cfg(feature = "otlp")]
    {
        if let Some((var, endpoint, export)) = exporting {
            if installed {
                tracing::info!(
                    endpoint = %crate::config::redact_url(endpoint),
                    from = var,
                    service = %export.service_name(),
                    "exporting spans over OTLP/HTTP"
                );
                *otlp::EXPORT
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(export);
            } else {
                // Dropped here, the provider would block this thread on its own batch task.
                tokio::spawn(export.shutdown());
            }
        } else if requested.is_none() {
            tracing::debug!("OTLP span export off: OTEL_EXPORTER_OTLP_ENDPOINT is not set");
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (service, installed);
        if let Some((var, _)) = requested {
            tracing::warn!(
                "{var} is set, but this build has no OTLP export: no span is sent. Build with \
                 `--features otlp` (docs/observability.md)."
            );
        }
    }
    Ok(())
}

/// Sends the spans still buffered and stops the exporter that [`init_telemetry`] started; does
/// nothing without one. The last step of each binary's `main`; waits 3 s at most.
pub async fn shutdown_telemetry() {
    #[cfg(feature = "otlp")]
    {
        let export = otlp::EXPORT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(export) = export {
            export.shutdown().await;
        }
    }
}

/// The OTLP/HTTP exporter behind a `tracing` layer.
#[cfg(feature = "otlp")]
pub mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use std::time::Duration;
    use tracing_opentelemetry::OpenTelemetryLayer;

    /// How long [`Export::shutdown`] waits for the last batch. The deploy manifests leave 5 s
    /// between the end of the drain (preStop 5 s + `SHUTDOWN_GRACE_SECS` 20 s) and the kill at
    /// `terminationGracePeriodSeconds` 30: the flush fits inside, with room to exit.
    pub const SHUTDOWN_WITHIN: Duration = Duration::from_secs(3);

    /// The exporter [`super::init_telemetry`] installed with the global subscriber. It lives as
    /// long as that subscriber, which is process-wide too; a slot rather than a guard so that
    /// `main` can flush it without `run_cli`'s callers carrying a value around.
    pub(super) static EXPORT: std::sync::Mutex<Option<Export>> = std::sync::Mutex::new(None);

    /// The variables that choose the wire protocol, the traces-only one first.
    const PROTOCOL_VARS: [&str; 2] = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ];

    /// The tracer provider that batches and sends the spans the layer hands it. End it with
    /// [`Export::shutdown`]: when the SDK's last handle (this or the layer's) is dropped on an
    /// async worker instead, the SDK blocks that worker until its batch task answers.
    #[derive(Debug)]
    pub struct Export {
        provider: SdkTracerProvider,
        service_name: String,
    }

    impl Export {
        /// The `service.name` the spans are sent under.
        pub fn service_name(&self) -> &str {
            &self.service_name
        }

        /// Sends what is buffered and stops, within [`SHUTDOWN_WITHIN`]. Failures are logged:
        /// the process is ending and has nothing better to do with them.
        pub async fn shutdown(self) {
            // The SDK blocks its caller until the batch task (on this runtime) answers: off the
            // async workers, or a runtime with one worker would wait for itself.
            let provider = self.provider;
            let stopping = tokio::task::spawn_blocking(move || provider.shutdown());
            match tokio::time::timeout(SHUTDOWN_WITHIN, stopping).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "span exporter did not shut down cleanly")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "span exporter shutdown panicked"),
                Err(_) => tracing::warn!(
                    within = ?SHUTDOWN_WITHIN,
                    "span exporter did not finish sending: the last spans may be lost"
                ),
            }
        }
    }

    /// A layer exporting the spans it sees over OTLP/HTTP (protobuf), batched on the current
    /// tokio runtime, and the [`Export`] to shut down at exit. Installs nothing globally.
    ///
    /// `endpoint` is the full URL to POST to (`…/v1/traces`); `None` reads it, like the headers,
    /// timeout and batch settings, from the standard `OTEL_*` variables. The spans are sent as
    /// `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`), else as `service`.
    /// Must be called inside a tokio runtime.
    pub fn layer<S>(
        service: &str,
        endpoint: Option<&str>,
    ) -> anyhow::Result<(OpenTelemetryLayer<S, SdkTracer>, Export)>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let target = endpoint
            .map(str::to_owned)
            .or_else(|| super::endpoint_from_env().map(|(_, value)| value))
            .unwrap_or_default();
        // Checked here rather than left to fail at every export: hyper's plain client cannot
        // speak TLS, and this build encodes protobuf only.
        if target
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("https:")
        {
            anyhow::bail!(
                "{} uses https, and this build exports over plain HTTP only (no TLS stack): \
                 send to a collector or agent nearby over http://",
                crate::config::redact_url(&target)
            );
        }
        for var in PROTOCOL_VARS {
            if let Ok(protocol) = std::env::var(var)
                && !protocol.is_empty()
                && protocol != "http/protobuf"
            {
                anyhow::bail!("{var}={protocol}: this build exports http/protobuf only");
            }
        }

        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let exporter = exporter.build()?;

        let detected = Resource::builder().build();
        let named = detected
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
        let resource = if named {
            detected
        } else {
            Resource::builder()
                .with_service_name(service.to_owned())
                .build()
        };
        let service_name = resource
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map(|name| name.to_string())
            .unwrap_or_default();

        let batches =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("chat");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        Ok((
            layer,
            Export {
                provider,
                service_name,
            },
        ))
    }
}
