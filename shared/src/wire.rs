//! Types that cross the wire, exactly as `CONTRACT.md` spells them (camelCase JSON).
//!
//! Requests are deserialized leniently (unknown fields ignored) and then parsed into domain
//! values by the service; responses are built by the service from storage records.

use crate::error::{ChatError, ErrorCode};
use crate::time::Millis;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ConversationType {
    PropertyInquiry,
    General,
    Support,
}

impl ConversationType {
    pub const ALL: [Self; 3] = [Self::PropertyInquiry, Self::General, Self::Support];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PropertyInquiry => "property_inquiry",
            Self::General => "general",
            Self::Support => "support",
        }
    }

    pub fn from_db(s: &str) -> Self {
        match s {
            "property_inquiry" => Self::PropertyInquiry,
            "support" => Self::Support,
            _ => Self::General,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ConversationStatus {
    Active,
    Archived,
    Blocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum MessageType {
    Text,
    Image,
    File,
    System,
    PropertyShare,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::File => "file",
            Self::System => "system",
            Self::PropertyShare => "property_share",
        }
    }

    pub fn from_db(s: &str) -> Self {
        match s {
            "image" => Self::Image,
            "file" => Self::File,
            "system" => Self::System,
            "property_share" => Self::PropertyShare,
            _ => Self::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum AttachmentType {
    Image,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Attachment {
    #[serde(rename = "type")]
    pub kind: AttachmentType,
    /// An `https://` URL, at most 2048 characters.
    pub url: String,
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// Left out when unknown (never `null` in a response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReadReceipt {
    pub user_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub read_at: Millis,
}

/// A message, the same for every participant who may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
    /// The other participant in a two-person conversation, `null` otherwise.
    pub recipient_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub content: String,
    /// `read` once every other participant has read it, `sent` before.
    pub status: MessageStatus,
    pub read_by: Vec<ReadReceipt>,
    pub reply_to: Option<String>,
    pub attachments: Vec<Attachment>,
    pub client_message_id: Option<String>,
    pub is_edited: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub edited_at: Option<Millis>,
    pub is_deleted: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<Millis>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

/// The last message of a conversation, as shown in an inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MessagePreview {
    pub id: String,
    pub seq: i64,
    pub sender_id: String,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub content: String,
    pub is_deleted: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

/// A conversation as the calling user sees it: `unreadCount`, `archived` and `muted` are theirs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Conversation {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ConversationType,
    /// `blocked` when nobody can send; otherwise `archived` when the caller archived it.
    pub status: ConversationStatus,
    pub participants: Vec<String>,
    pub created_by: String,
    pub property_id: Option<String>,
    pub title: Option<String>,
    #[schema(value_type = Object)]
    #[cfg_attr(feature = "ts", ts(as = "crate::ts::JsonObject"))]
    pub metadata: serde_json::Value,
    pub last_message: Option<MessagePreview>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_message_at: Option<Millis>,
    pub last_seq: i64,
    pub unread_count: i64,
    pub archived: bool,
    pub muted: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

/// A page of results. `nextCursor` is `null` when nothing more is there.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields = nullable))]
pub struct CreateConversationRequest {
    /// The other participants; the caller is always added.
    pub participant_ids: Vec<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<ConversationType>,
    #[serde(default)]
    pub property_id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    #[cfg_attr(feature = "ts", ts(as = "Option<crate::ts::JsonObject>"))]
    pub metadata: Option<serde_json::Value>,
    /// Sent as the caller's first message; also sent when an existing conversation is returned.
    #[serde(default)]
    pub initial_message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields = nullable))]
pub struct SendMessageRequest {
    /// 1 to 4000 characters after trimming; may be empty for `image`/`file` with attachments.
    #[serde(default)]
    pub content: String,
    #[serde(default, rename = "type")]
    pub kind: Option<MessageType>,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub attachments: Option<Vec<Attachment>>,
    #[serde(default)]
    pub client_message_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields = nullable))]
pub struct MarkReadRequest {
    /// Read up to and including this `seq`; default: everything.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub up_to_seq: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReadState {
    pub conversation_id: String,
    pub last_read_seq: i64,
    #[schema(value_type = String, format = DateTime)]
    pub read_at: Millis,
    pub unread_count: i64,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields = nullable))]
pub struct ArchiveRequest {
    /// Default `true`.
    #[serde(default)]
    pub archived: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields = nullable))]
pub struct MuteRequest {
    /// Default `true`.
    #[serde(default)]
    pub muted: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields = nullable))]
pub struct UpdateConversationRequest {
    /// New title (1 to 200 characters).
    #[serde(default)]
    pub title: Option<String>,
    /// Block (`true`) or unblock (`false`): while blocked nobody can send.
    #[serde(default)]
    pub blocked: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct EditMessageRequest {
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Stats {
    pub total_conversations: i64,
    pub active_conversations: i64,
    pub archived_conversations: i64,
    pub unread_conversations: i64,
    pub unread_messages: i64,
    pub messages_sent: i64,
    pub messages_received: i64,
    pub property_inquiries: i64,
    /// Visible conversations per type; every type is present.
    pub by_type: BTreeMap<String, i64>,
}

/// `GET /unread`: the caller's unread messages over every conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnreadTotal {
    pub total_unread: i64,
}

/// `GET /sync`: the caller's change feed after a cursor (contract v1.1).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SyncPage {
    /// Oldest first, each once.
    pub events: Vec<SyncEvent>,
    /// The cursor to pass as `since` next: the last event's, or `since` when there are none
    /// (without `since`: the current end of the feed).
    pub next_cursor: String,
    /// More events wait right now: call again with `nextCursor`.
    pub has_more: bool,
}

/// One change of the feed, as a socket got (or would have got) it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncEvent {
    /// Its place in the caller's feed (the `cursor` of the socket event).
    pub cursor: String,
    /// The socket event's name: `new_message`, `message_edited`, `message_deleted`,
    /// `messages_read` or `conversation_updated`.
    pub event: &'static str,
    /// The socket event's payload, `cursor` included. Messages and conversations are as they
    /// are now (events are idempotent: apply them in order and dedupe messages by `id`).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// `messages_read` event payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MessagesRead {
    pub conversation_id: String,
    pub user_id: String,
    pub last_read_seq: i64,
    #[schema(value_type = String, format = DateTime)]
    pub read_at: Millis,
}

/// `unread_count_updated` event payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnreadCountUpdated {
    pub conversation_id: String,
    pub unread_count: i64,
    pub total_unread: i64,
}

/// A request value (REST body, socket payload) as `T`: it must be a JSON object, and the
/// first field that does not fit is named (`what` names the whole value).
pub fn from_object<T: DeserializeOwned>(
    value: serde_json::Value,
    what: &str,
) -> Result<T, ChatError> {
    if !value.is_object() {
        return Err(ChatError::bad_request(format!(
            "{what}: must be a JSON object"
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            ChatError::bad_request(inner)
        } else {
            ChatError::bad_request(format!("{path}: {inner}"))
        }
    })
}

/// The `conversationId` every client event names (`send_message` carries the REST body
/// beside it).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConversationRef {
    pub conversation_id: String,
}

/// `mark_as_read` payload.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields = nullable))]
pub struct SocketMarkAsRead {
    pub conversation_id: String,
    #[serde(default)]
    pub up_to_seq: Option<i64>,
}

/// `user_typing_start` / `user_typing_stop` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Typing {
    pub conversation_id: String,
    pub user_id: String,
}

/// `user_status_change` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UserStatusChange {
    pub user_id: String,
    pub status: PresenceStatus,
    /// The user's last disconnect, or null.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<Millis>,
}

/// `user_status_change`'s `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum PresenceStatus {
    Online,
    Offline,
}

/// `join_conversation` acknowledgement, besides `ok: true`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JoinConversationAck {
    pub conversation: Conversation,
    /// The other participants online now, as last announced.
    pub online: Vec<String>,
}

/// `send_message` acknowledgement, besides `ok: true`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SendMessageAck {
    pub message: Message,
    /// A retry with the same `clientMessageId`: `message` is the first one, nothing new was
    /// announced.
    pub duplicate: bool,
}

/// `mark_as_read` acknowledgement, besides `ok: true`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MarkAsReadAck {
    pub last_read_seq: i64,
    pub unread_count: i64,
    pub read_at: Millis,
}

/// The `error` of a failed acknowledgement: the same codes as REST's problem documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AckError {
    pub code: ErrorCode,
    /// Human-readable; for `bad_request` it names the field at fault.
    pub message: String,
    /// `rate_limited` only: how long until a retry can succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub retry_after_ms: Option<u64>,
}

impl From<&ChatError> for AckError {
    fn from(e: &ChatError) -> Self {
        Self {
            code: e.code,
            message: e.detail.clone(),
            // At least 1: `0` would read as "retry at once" and fail again.
            retry_after_ms: e
                .retry_after
                .map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)),
        }
    }
}

/// The acknowledgement of a client event: `{ ok: true, ...fields }` or
/// `{ ok: false, error }`. `fields` is an ack struct above (or `{}`).
pub fn ack_body(result: Result<serde_json::Value, ChatError>) -> serde_json::Value {
    match result {
        Ok(fields) => {
            let mut body = serde_json::Map::new();
            body.insert("ok".to_owned(), serde_json::Value::Bool(true));
            if let serde_json::Value::Object(fields) = fields {
                body.extend(fields);
            }
            serde_json::Value::Object(body)
        }
        Err(e) => serde_json::json!({ "ok": false, "error": AckError::from(&e) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The acknowledgement envelope, as `clients/typescript`'s `Ack` type describes it.
    #[test]
    fn acks_are_ok_with_fields_or_not_ok_with_an_error() {
        assert_eq!(
            ack_body(Ok(json!({ "duplicate": false }))),
            json!({ "ok": true, "duplicate": false })
        );
        assert_eq!(ack_body(Ok(json!({}))), json!({ "ok": true }));
        assert_eq!(
            ack_body(Err(ChatError::bad_request("content: empty"))),
            json!({ "ok": false, "error": { "code": "bad_request", "message": "content: empty" } })
        );
        let limited = ack_body(Err(ChatError::rate_limited(
            std::time::Duration::from_micros(10),
        )));
        assert_eq!(limited["error"]["code"], "rate_limited");
        assert_eq!(limited["error"]["retryAfterMs"], 1, "never 0");
    }
}
