//! The OpenAPI 3.1 document, generated from the handlers and wire types, and an interactive
//! page to read it (Scalar: nothing is fetched at build time; the page loads Scalar's script from
//! its CDN when a browser opens it).

use crate::problem::Problem;
use crate::{AppState, routes};
use axum::Router;
use chat_shared::error::ErrorCode;
use chat_shared::wire::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chat API",
        version = "1",
        description = "REST API of the property-rental chat. Errors are RFC 9457 problem \
                       documents (`application/problem+json`) with a `code`. Realtime events \
                       are described in docs/events.md."
    ),
    servers((url = "/api/v1/chat")),
    paths(
        routes::list_conversations,
        routes::create_conversation,
        routes::get_conversation,
        routes::update_conversation,
        routes::delete_conversation,
        routes::list_messages,
        routes::send_message,
        routes::mark_read,
        routes::archive,
        routes::mute,
        routes::edit_message,
        routes::delete_message,
        routes::search,
        routes::stats,
        routes::unread,
        routes::sync,
    ),
    components(schemas(
        Problem, ErrorCode, Conversation, Message, MessagePreview, ReadReceipt, Attachment,
        Page<Conversation>, Page<Message>, Stats, UnreadTotal, ReadState, MessagesRead, UnreadCountUpdated,
        SyncPage, SyncEvent
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "conversations"), (name = "messages"), (name = "stats"),
        (name = "sync", description = "The change feed (contract v1.1): recover every change \
            missed while offline, in order, exactly once")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

/// `GET /openapi.json` and `GET /docs` (relative to the API base).
pub fn docs() -> Router<AppState> {
    let spec = ApiDoc::openapi();
    let json = axum::Json(spec.clone());
    Router::new()
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let json = json.clone();
                async move { json }
            }),
        )
        .merge(Scalar::with_url("/docs", spec))
}
