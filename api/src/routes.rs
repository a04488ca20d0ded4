//! REST handlers: extract, call the domain service, answer. No rule of the chat lives here.

use crate::AppState;
use crate::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::problem::{ApiResult, Problem};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chat_shared::service::ListConversations;
use chat_shared::wire::{
    ArchiveRequest, Conversation, ConversationType, CreateConversationRequest, EditMessageRequest,
    MarkReadRequest, Message, MuteRequest, Page, ReadState, SendMessageRequest, Stats, SyncPage,
    UnreadTotal, UpdateConversationRequest,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Active,
    Archived,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListConversationsQuery {
    /// `active` (not archived by you) or `archived`.
    status: Option<StatusFilter>,
    #[serde(rename = "type")]
    #[param(rename = "type", inline)]
    kind: Option<ConversationType>,
    property_id: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListMessagesQuery {
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Newest first, messages with `seq` below this.
    #[param(minimum = 0)]
    before: Option<i64>,
    /// Oldest first, messages with `seq` above this (catch-up after reconnect).
    #[param(minimum = 0)]
    after: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// 1 to 200 characters; every word must match.
    #[param(min_length = 1, max_length = 200)]
    q: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `201` for a new resource, `200` for an existing one (create-or-get, idempotent sends).
fn created_or_ok<T: serde::Serialize>(created: bool, body: T) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// The caller's conversations, most recent activity first.
#[utoipa::path(get, path = "/conversations", tag = "conversations",
    params(ListConversationsQuery),
    responses((status = 200, body = Page<Conversation>), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list_conversations(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<ListConversationsQuery>,
) -> ApiResult<Json<Page<Conversation>>> {
    let filter = ListConversations {
        archived: q.status.map(|s| matches!(s, StatusFilter::Archived)),
        kind: q.kind,
        property_id: q.property_id,
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(
        state
            .core
            .service
            .list_conversations(&caller, filter)
            .await?,
    ))
}

/// Create-or-get: an existing property inquiry with the same participants and property, or
/// two-person general conversation with the same pair, is returned with `200`.
#[utoipa::path(post, path = "/conversations", tag = "conversations",
    request_body = CreateConversationRequest,
    responses((status = 201, body = Conversation, description = "created"),
               (status = 200, body = Conversation, description = "already existed"),
               (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn create_conversation(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<CreateConversationRequest>,
) -> ApiResult<Response> {
    let (conversation, created) = state.core.service.create_conversation(&caller, req).await?;
    Ok(created_or_ok(created, conversation))
}

#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 200, body = Conversation), (status = 404, body = Problem)))]
pub async fn get_conversation(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(
        state.core.service.get_conversation(&caller, &id).await?,
    ))
}

/// Rename, block or unblock (an addition to the contract). Any participant may rename or
/// block; only whoever blocked it, or support staff, may unblock.
#[utoipa::path(patch, path = "/conversations/{id}", tag = "conversations",
    params(("id" = String, Path)), request_body = UpdateConversationRequest,
    responses((status = 200, body = Conversation), (status = 400, body = Problem),
               (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn update_conversation(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<UpdateConversationRequest>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(
        state
            .core
            .service
            .update_conversation(&caller, &id, req)
            .await?,
    ))
}

/// Delete for me: hidden for the caller with its history up to now; a later message brings
/// it back with only the newer messages.
#[utoipa::path(delete, path = "/conversations/{id}", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_conversation(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    state.core.service.delete_for_me(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of messages: newest first (`before`, or neither), or oldest first (`after`).
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path), ListMessagesQuery),
    responses((status = 200, body = Page<Message>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_messages(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<ListMessagesQuery>,
) -> ApiResult<Json<Page<Message>>> {
    Ok(Json(
        state
            .core
            .service
            .list_messages(&caller, &id, q.limit, q.before, q.after)
            .await?,
    ))
}

/// Send. The same `clientMessageId` from the same sender answers `200` with the first message.
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path)), request_body = SendMessageRequest,
    responses((status = 201, body = Message, description = "sent"),
               (status = 200, body = Message, description = "already sent with this clientMessageId"),
               (status = 400, body = Problem), (status = 403, body = Problem, description = "blocked"),
               (status = 404, body = Problem), (status = 409, body = Problem),
               (status = 413, body = Problem), (status = 429, body = Problem)))]
pub async fn send_message(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> ApiResult<Response> {
    let sent = state.core.service.send_message(&caller, &id, req).await?;
    Ok(created_or_ok(sent.created, sent.message))
}

/// Move the caller's read position (never backwards); default: everything.
#[utoipa::path(put, path = "/conversations/{id}/read", tag = "conversations",
    params(("id" = String, Path)), request_body = MarkReadRequest,
    responses((status = 200, body = ReadState), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn mark_read(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<MarkReadRequest>,
) -> ApiResult<Json<ReadState>> {
    Ok(Json(
        state
            .core
            .service
            .mark_read(&caller, &id, req.up_to_seq)
            .await?,
    ))
}

/// Archive (default) or unarchive, for the caller only.
#[utoipa::path(put, path = "/conversations/{id}/archive", tag = "conversations",
    params(("id" = String, Path)), request_body = ArchiveRequest,
    responses((status = 200, body = Conversation), (status = 404, body = Problem)))]
pub async fn archive(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<ArchiveRequest>,
) -> ApiResult<Json<Conversation>> {
    let archived = req.archived.unwrap_or(true);
    Ok(Json(
        state
            .core
            .service
            .set_archived(&caller, &id, archived)
            .await?,
    ))
}

/// Mute (default) or unmute, for the caller only (an addition to the contract).
#[utoipa::path(put, path = "/conversations/{id}/mute", tag = "conversations",
    params(("id" = String, Path)), request_body = MuteRequest,
    responses((status = 200, body = Conversation), (status = 404, body = Problem)))]
pub async fn mute(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<MuteRequest>,
) -> ApiResult<Json<Conversation>> {
    let muted = req.muted.unwrap_or(true);
    Ok(Json(
        state.core.service.set_muted(&caller, &id, muted).await?,
    ))
}

/// Edit your own message within the edit window.
#[utoipa::path(put, path = "/messages/{id}", tag = "messages",
    params(("id" = String, Path)), request_body = EditMessageRequest,
    responses((status = 200, body = Message), (status = 400, body = Problem),
               (status = 403, body = Problem, description = "forbidden or edit_window_passed"),
               (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn edit_message(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<EditMessageRequest>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        state
            .core
            .service
            .edit_message(&caller, &id, &req.content)
            .await?,
    ))
}

/// Delete your own message within the edit window; it keeps its `id` and `seq`.
#[utoipa::path(delete, path = "/messages/{id}", tag = "messages",
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_message(
    State(state): State<AppState>,
    Auth(caller): Auth,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    state.core.service.delete_message(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's conversations whose title, property, participants or messages match `q`.
#[utoipa::path(get, path = "/conversations/search", tag = "conversations",
    params(SearchQuery),
    responses((status = 200, body = Page<Conversation>), (status = 400, body = Problem)))]
pub async fn search(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Page<Conversation>>> {
    Ok(Json(
        state
            .core
            .service
            .search_conversations(&caller, q.q.as_deref(), q.limit, q.cursor.as_deref())
            .await?,
    ))
}

/// The caller's unread total: the badge, in one cheap read (the same figure as
/// `unreadMessages` in `/stats` and `totalUnread` in `unread_count_updated`).
#[utoipa::path(get, path = "/unread", tag = "stats",
    responses((status = 200, body = UnreadTotal), (status = 401, body = Problem)))]
pub async fn unread(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<UnreadTotal>> {
    Ok(Json(state.core.service.unread_total(&caller).await?))
}

/// Counters for the caller.
#[utoipa::path(get, path = "/stats", tag = "stats",
    responses((status = 200, body = Stats), (status = 401, body = Problem)))]
pub async fn stats(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Json<Stats>> {
    Ok(Json(state.core.service.stats(&caller).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// A cursor: from a socket event's `cursor`, or a previous answer's `nextCursor`.
    /// Without it: no events, and `nextCursor` is the current end of the feed.
    since: Option<String>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The caller's change feed after `since`: every `new_message`, `message_edited`,
/// `message_deleted`, `messages_read` and `conversation_updated` their sockets were sent,
/// oldest first, each once. `410 sync_expired` when `since` is older than the feed keeps
/// (reload the conversations, then sync without `since`); `400` when it is not a cursor of
/// the caller's feed.
#[utoipa::path(get, path = "/sync", tag = "sync",
    params(SyncQuery),
    responses((status = 200, body = SyncPage), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 410, body = Problem)))]
pub async fn sync(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<SyncQuery>,
) -> ApiResult<Json<SyncPage>> {
    Ok(Json(
        state
            .core
            .service
            .sync(&caller, q.since.as_deref(), q.limit)
            .await?,
    ))
}
