//! `chat-gateway`: the Socket.IO gateway. Its events arrive with the realtime issue; for now
//! it serves its health endpoints so that deployments and probes can be wired.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chat_shared::app::Core;

/// Default port of `chat-gateway`.
pub const DEFAULT_PORT: u16 = 8001;

/// The gateway's HTTP surface.
pub fn router(core: Core) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .with_state(core)
}

async fn ready(State(core): State<Core>) -> Result<&'static str, StatusCode> {
    core.store
        .ping()
        .await
        .map(|()| "ready")
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}
