//! `chat-api`: the stateless REST service. Routing, extraction and HTTP concerns only; the
//! rules are in `chat_shared::service`.

pub mod extract;
pub mod openapi;
pub mod problem;
pub mod routes;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use chat_shared::app::Core;
use chat_shared::config::Settings;
use chat_shared::error::ErrorCode;
use chat_shared::http::with_http_layers;
use problem::ApiError;

/// Base path of every REST endpoint.
pub const BASE: &str = "/api/v1/chat";

/// What handlers share: cheap handles only.
#[derive(Clone)]
pub struct AppState {
    pub core: Core,
}

/// The REST API with its health endpoints, documentation and HTTP layers.
pub fn router(core: Core, settings: &Settings) -> Router {
    router_with(core, settings, Router::new())
}

/// [`router`] with `extra` routes (the embedded server's Socket.IO endpoint) inside the same
/// HTTP layers.
pub fn router_with(core: Core, settings: &Settings, extra: Router) -> Router {
    let state = AppState { core };
    let max_body = state.core.service.limits().max_body_bytes;
    let timeout = state.core.service.limits().request_timeout;
    let api = Router::new()
        .route(
            "/conversations",
            get(routes::list_conversations).post(routes::create_conversation),
        )
        .route("/conversations/search", get(routes::search))
        .route(
            "/conversations/{id}",
            get(routes::get_conversation)
                .patch(routes::update_conversation)
                .delete(routes::delete_conversation),
        )
        .route(
            "/conversations/{id}/messages",
            get(routes::list_messages).post(routes::send_message),
        )
        .route("/conversations/{id}/read", put(routes::mark_read))
        .route("/conversations/{id}/archive", put(routes::archive))
        .route("/conversations/{id}/mute", put(routes::mute))
        .route(
            "/messages/{id}",
            put(routes::edit_message).delete(routes::delete_message),
        )
        .route("/stats", get(routes::stats))
        .route("/unread", get(routes::unread))
        .route("/sync", get(routes::sync))
        .merge(openapi::docs())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);

    let routes = Router::new()
        .nest(BASE, api)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        // Everything above answers within the timeout; not /metrics, nor Socket.IO's
        // long-polling requests (merged in below), which wait on purpose.
        .layer(axum::middleware::from_fn_with_state(timeout, deadline))
        .layer(axum::middleware::from_fn_with_state(
            state.core.metrics.clone(),
            chat_shared::metrics::count_http,
        ))
        .route(
            "/metrics",
            get(chat_shared::metrics::handler).with_state(state.core.metrics.clone()),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    with_http_layers(routes.merge(extra), settings)
}

/// Answers `503 unavailable` for a request that has not finished in `timeout` (the database
/// or Redis is away and did not fail fast). A send that was already handed to the batching
/// writer is not cancelled by this: retried with the same `clientMessageId`, it is found.
async fn deadline(
    State(timeout): State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // The request's id is the trace id of the events it announces.
    let trace: std::sync::Arc<str> = request
        .headers()
        .get(&chat_shared::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .into();
    let work = chat_shared::trace::within(trace, next.run(request));
    match chat_shared::deadline::within(timeout, work).await {
        Some(response) => response,
        None => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "request timed out: answering unavailable"
            );
            ApiError::new(
                ErrorCode::Unavailable,
                "the request did not complete in time, retry later",
            )
            .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    // Built here rather than from an `ApiError`: the problem document's `status` must match
    // the HTTP status (RFC 9457), and no error code maps to 405.
    let status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    let body = problem::Problem {
        kind: format!("urn:chat:problem:{}", ErrorCode::BadRequest.as_str()),
        title: "Method not allowed",
        status: status.as_u16(),
        detail: "method not allowed here".to_owned(),
        code: ErrorCode::BadRequest,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        axum::Json(body),
    )
        .into_response()
}

/// Liveness: the process answers.
async fn live() -> &'static str {
    "ok"
}

/// Readiness: the database answers, and, where this process also serves sockets (the
/// embedded server), the event bus delivers. A `chat-api` replica stays ready while Redis is
/// away: REST keeps working, and its events wait in the publisher's queue.
async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.core.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(ErrorCode::Unavailable, "database unavailable")
    })?;
    let events = &state.core.events;
    if events.delivers() && !events.is_healthy() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "event bus unavailable",
        ));
    }
    Ok("ready")
}
