//! The embedded all-in-one server as a value: the REST API, Socket.IO and the demo page on one
//! router, so that `main.rs` stays thin and the tests boot exactly what `chat` serves.

pub mod demo;

use axum::Router;
use chat_shared::app::Core;
use chat_shared::config::Settings;

/// What `chat` serves on its one port: the REST API (with health, metrics and docs), the
/// gateway's Socket.IO endpoint (`socket_io`, from `chat_gateway::mount`) and the demo page,
/// all inside the same HTTP layers.
pub fn app(core: Core, settings: &Settings, socket_io: Router) -> Router {
    chat_api::router_with(core, settings, socket_io.merge(demo::router(settings)))
}
