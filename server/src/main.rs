//! `chat`: the embedded all-in-one server. `cargo run --release` on a fresh clone serves the
//! REST API, Socket.IO and a demo page (`/`) on one port, on SQLite, with in-process bus,
//! presence and limits: nothing to install.

use chat_shared::app::{Core, Mode, mint_token, run_cli};
use std::net::SocketAddr;

const DEFAULT_PORT: u16 = 8000;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = run().await;
    // After the drain, whatever it returned: the spans of the last requests are still buffered.
    chat_shared::app::shutdown_telemetry().await;
    chat_shared::app::report(result)
}

async fn run() -> anyhow::Result<()> {
    let Some(settings) = run_cli(Mode::Embedded, env!("CARGO_BIN_NAME")).await? else {
        return Ok(());
    };
    let core = Core::build(&settings).await?;
    // One port: the REST API, Socket.IO and the demo page, inside the same HTTP layers.
    let events = core.events.clone();
    let gateway = chat_gateway::mount(core.clone(), &settings).await?;
    let app = chat_server::app(core, &settings, gateway.router.clone());
    let addr = SocketAddr::new(settings.host, settings.port.unwrap_or(DEFAULT_PORT));
    let listener = chat_shared::app::listen(addr).await?;
    let local = axum::serve::Listener::local_addr(&listener)?;
    let host = if local.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        local.ip().to_string()
    };
    tracing::info!(addr = %local, "chat listening (embedded: REST and Socket.IO, SQLite, in-process bus)");
    // Printed, not logged: a block to copy from, whatever the log format. With a secret, a
    // line that works as printed (a fresh token for a demo user and the inbox); with only a
    // public key (RS256/ES256) tokens come from the platform.
    // A ready-made token only with the generated development secret: signed with the
    // platform's secret it would be a real credential, printed into whatever keeps the logs.
    let url = format!("http://{host}:{}/api/v1/chat/conversations", local.port());
    // The demo page mints its own tokens only with the development secret; otherwise it
    // takes a platform token in its URL or its form.
    let demo = if settings.dev_secret {
        "open it in two windows as two users"
    } else {
        "add ?token=<a platform token>"
    };
    let try_it = if settings.dev_secret {
        match mint_token(
            &settings,
            "u_alice",
            Some("Alice".to_owned()),
            "user",
            86_400,
        ) {
            Ok(token) => format!("curl -H 'Authorization: Bearer {token}' {url}"),
            Err(_) => format!(
                "curl -H \"Authorization: Bearer $(cargo run -q --release -- token u_alice)\" {url}"
            ),
        }
    } else {
        format!("curl -H \"Authorization: Bearer <a token signed by your platform's key>\" {url}")
    };
    if settings.log_format == "json" {
        // Nothing but JSON lines on stderr: log collectors parse every line. No token here.
        tracing::info!(
            url = %format!("http://{host}:{}", local.port()),
            demo = "/",
            docs = "/api/v1/chat/docs",
            "chat is up"
        );
    } else {
        eprintln!(
            "\n  Chat is up on http://{host}:{port}\n  \
         Demo:    http://{host}:{port}/  ({demo})\n  \
         Try it:  {try_it}\n  \
         Tokens:  cargo run --release -- token <user-id>\n  \
         Socket.IO: io(\"http://{host}:{port}\", {{ auth: {{ token }} }})  (events: docs/events.md)\n  \
         API docs: http://{host}:{port}/api/v1/chat/docs\n",
            port = local.port()
        );
    }
    let grace = std::time::Duration::from_secs(settings.shutdown_grace_secs);
    chat_shared::app::serve(listener, app, grace, events, async move {
        gateway.shutdown(grace).await;
    })
    .await?;
    Ok(())
}
