//! `chat-api`: one replica of the stateless REST service (scaled mode).

use chat_shared::app::{Core, Mode, run_cli};
use std::net::SocketAddr;

/// Default port of `chat-api`.
const DEFAULT_PORT: u16 = 8000;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = run().await;
    // After the drain, whatever it returned: the spans of the last requests are still buffered.
    chat_shared::app::shutdown_telemetry().await;
    chat_shared::app::report(result)
}

async fn run() -> anyhow::Result<()> {
    let Some(settings) = run_cli(Mode::Scaled, env!("CARGO_BIN_NAME")).await? else {
        return Ok(());
    };
    let core = Core::build(&settings).await?;
    if settings.redis_url.is_none() {
        tracing::warn!(
            "REDIS_URL is not set: changes made through this API are not pushed to any gateway"
        );
    }
    let events = core.events.clone();
    let app = chat_api::router(core, &settings);
    let addr = SocketAddr::new(settings.host, settings.port.unwrap_or(DEFAULT_PORT));
    let listener = chat_shared::app::listen(addr).await?;
    tracing::info!(addr = %axum::serve::Listener::local_addr(&listener)?, "chat-api listening");
    let grace = std::time::Duration::from_secs(settings.shutdown_grace_secs);
    chat_shared::app::serve(listener, app, grace, events, async {}).await?;
    Ok(())
}
