//! `chat-gateway`: one replica of the Socket.IO gateway (scaled mode).

use chat_shared::app::{Core, Mode, run_cli};
use std::net::SocketAddr;

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
            "REDIS_URL is not set: this gateway only sees changes made through itself \
             (fine for one replica with no chat-api beside it)"
        );
    }
    let events = core.events.clone();
    let mounted = chat_gateway::mount(core, &settings).await?;
    let app = chat_gateway::router(&mounted, &settings);
    let mounted = std::sync::Arc::new(mounted);
    let addr = SocketAddr::new(
        settings.host,
        settings.port.unwrap_or(chat_gateway::DEFAULT_PORT),
    );
    let listener = chat_shared::app::listen(addr).await?;
    tracing::info!(addr = %axum::serve::Listener::local_addr(&listener)?, "chat-gateway listening");
    let grace = std::time::Duration::from_secs(settings.shutdown_grace_secs);
    chat_shared::app::serve(listener, app, grace, events, async move {
        mounted.shutdown(grace).await;
    })
    .await?;
    Ok(())
}
