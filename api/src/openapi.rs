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
        SyncPage, SyncEvent, routes::StatusFilter
    )),
    modifiers(&BearerAuth, &ProblemResponses),
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

/// Every error response as it is served: an RFC 9457 problem document under
/// `application/problem+json`; and on every operation the answers any request can get
/// (`400` for a bad body or query, `401` without a valid token, `503` while a dependency is
/// away), so that a client generated from this document expects them.
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        const PROBLEM: &str = "application/problem+json";
        let problem = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        PROBLEM,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, response) in &mut operation.responses.responses {
                    if (status.starts_with('4') || status.starts_with('5'))
                        && let RefOr::T(response) = response
                        && let Some(content) = response.content.shift_remove("application/json")
                    {
                        response.content.insert(PROBLEM.to_owned(), content);
                    }
                }
                for (status, description) in [
                    (
                        "400",
                        "A body, query or path value the API does not accept (`bad_request`)",
                    ),
                    ("401", "No valid token (`unauthorized`)"),
                    (
                        "503",
                        "The database or another dependency is away (`unavailable`); retry",
                    ),
                ] {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description));
                }
            }
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
