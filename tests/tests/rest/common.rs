//! Helpers shared by the REST tests: shape checks of the contract's resources and small
//! accessors for pages.

use chat_tests::app::{TestApp, TestResponse, UserClient};
use serde_json::Value;

/// The field names of a Conversation, exactly as the contract spells them (camelCase).
pub const CONVERSATION_FIELDS: &[&str] = &[
    "id",
    "type",
    "status",
    "participants",
    "createdBy",
    "propertyId",
    "title",
    "metadata",
    "lastMessage",
    "lastMessageAt",
    "lastSeq",
    "unreadCount",
    "archived",
    "muted",
    "createdAt",
    "updatedAt",
];

/// The field names of a Message.
pub const MESSAGE_FIELDS: &[&str] = &[
    "id",
    "conversationId",
    "seq",
    "senderId",
    "recipientId",
    "type",
    "content",
    "status",
    "readBy",
    "replyTo",
    "attachments",
    "clientMessageId",
    "isEdited",
    "editedAt",
    "isDeleted",
    "deletedAt",
    "createdAt",
];

/// `2026-11-23T10:15:30.123Z`: RFC 3339, UTC, exactly three fraction digits.
#[track_caller]
pub fn assert_time(value: &Value, what: &str) -> chrono::DateTime<chrono::Utc> {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: a time string, got {value}"));
    let bytes = s.as_bytes();
    assert!(
        s.len() == 24
            && bytes[4] == b'-'
            && bytes[10] == b'T'
            && bytes[19] == b'.'
            && bytes[23] == b'Z'
            && s[20..23].bytes().all(|b| b.is_ascii_digit()),
        "{what}: RFC 3339 with milliseconds and Z, got {s}"
    );
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{what}: {s} does not parse: {e}"))
        .with_timezone(&chrono::Utc)
}

#[track_caller]
pub fn assert_opt_time(value: &Value, what: &str) {
    if !value.is_null() {
        assert_time(value, what);
    }
}

#[track_caller]
fn assert_keys(value: &Value, fields: &[&str], what: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: an object, got {value}"));
    for field in fields {
        assert!(
            object.contains_key(*field),
            "{what}: no `{field}` in {value}"
        );
    }
    for key in object.keys() {
        assert!(
            !key.contains('_'),
            "{what}: `{key}` is not camelCase in {value}"
        );
    }
}

/// Every field of a Conversation is there, camelCase, with its type.
#[track_caller]
pub fn assert_conversation_shape(c: &Value) {
    assert_keys(c, CONVERSATION_FIELDS, "conversation");
    assert!(c["id"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
    assert!(
        matches!(
            c["type"].as_str(),
            Some("property_inquiry" | "general" | "support")
        ),
        "{c}"
    );
    assert!(
        matches!(
            c["status"].as_str(),
            Some("active" | "archived" | "blocked")
        ),
        "{c}"
    );
    let participants = c["participants"].as_array().expect("participants array");
    assert!(participants.len() >= 2, "{c}");
    assert!(participants.iter().all(Value::is_string), "{c}");
    assert!(c["createdBy"].is_string(), "{c}");
    assert!(
        c["propertyId"].is_null() || c["propertyId"].is_string(),
        "{c}"
    );
    assert!(c["title"].is_null() || c["title"].is_string(), "{c}");
    assert!(c["metadata"].is_object(), "{c}");
    assert!(c["lastSeq"].is_i64(), "{c}");
    assert!(c["unreadCount"].as_i64().is_some_and(|n| n >= 0), "{c}");
    assert!(c["archived"].is_boolean() && c["muted"].is_boolean(), "{c}");
    assert_time(&c["createdAt"], "createdAt");
    assert_time(&c["updatedAt"], "updatedAt");
    assert_opt_time(&c["lastMessageAt"], "lastMessageAt");
    let last = &c["lastMessage"];
    if last.is_null() {
        assert_eq!(c["lastSeq"], 0, "no last message means no message: {c}");
        assert!(c["lastMessageAt"].is_null(), "{c}");
    } else {
        assert_keys(
            last,
            &["id", "seq", "senderId", "type", "content", "createdAt"],
            "lastMessage",
        );
        assert!(last["seq"].is_i64() && last["id"].is_string(), "{c}");
        assert_time(&last["createdAt"], "lastMessage.createdAt");
    }
}

/// Every field of a Message is there, camelCase, with its type.
#[track_caller]
pub fn assert_message_shape(m: &Value) {
    assert_keys(m, MESSAGE_FIELDS, "message");
    assert!(m["id"].as_str().is_some_and(|s| !s.is_empty()), "{m}");
    assert!(m["conversationId"].is_string(), "{m}");
    assert!(m["seq"].as_i64().is_some_and(|s| s >= 1), "{m}");
    assert!(m["senderId"].is_string(), "{m}");
    assert!(
        m["recipientId"].is_null() || m["recipientId"].is_string(),
        "{m}"
    );
    assert!(
        matches!(
            m["type"].as_str(),
            Some("text" | "image" | "file" | "system" | "property_share")
        ),
        "{m}"
    );
    assert!(m["content"].is_string(), "{m}");
    assert!(
        matches!(m["status"].as_str(), Some("sent" | "delivered" | "read")),
        "{m}"
    );
    for receipt in m["readBy"].as_array().expect("readBy array") {
        assert!(receipt["userId"].is_string(), "{m}");
        assert_time(&receipt["readAt"], "readBy[].readAt");
    }
    assert!(m["replyTo"].is_null() || m["replyTo"].is_string(), "{m}");
    assert!(m["attachments"].is_array(), "{m}");
    assert!(
        m["clientMessageId"].is_null() || m["clientMessageId"].is_string(),
        "{m}"
    );
    assert!(
        m["isEdited"].is_boolean() && m["isDeleted"].is_boolean(),
        "{m}"
    );
    assert_eq!(
        m["isEdited"].as_bool(),
        Some(!m["editedAt"].is_null()),
        "{m}"
    );
    assert_eq!(
        m["isDeleted"].as_bool(),
        Some(!m["deletedAt"].is_null()),
        "{m}"
    );
    assert_opt_time(&m["editedAt"], "editedAt");
    assert_opt_time(&m["deletedAt"], "deletedAt");
    assert_time(&m["createdAt"], "createdAt");
}

pub fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("a string, got {v}"))
        .to_owned()
}

/// `items` of a page.
#[track_caller]
pub fn items(page: &Value) -> &Vec<Value> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page, got {page}"))
}

/// `id`s of a page's items, in order.
pub fn ids(page: &Value) -> Vec<String> {
    items(page).iter().map(|i| str_of(&i["id"])).collect()
}

/// `seq`s of a page of messages, in order.
pub fn seqs(page: &Value) -> Vec<i64> {
    items(page)
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

/// `nextCursor`: `None` when null, otherwise the string.
#[track_caller]
pub fn next_cursor(page: &Value) -> Option<String> {
    match &page["nextCursor"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("nextCursor: a string or null, got {other}"),
    }
}

/// GET the conversation as `who` and return it (asserting 200).
pub async fn conversation(who: &UserClient<'_>, id: &str) -> Value {
    who.get_conversation(id).await.assert_status(200).clone()
}

/// The caller's `unreadCount` of a conversation.
pub async fn unread(who: &UserClient<'_>, id: &str) -> i64 {
    conversation(who, id).await["unreadCount"]
        .as_i64()
        .expect("unreadCount")
}

/// The whole page body, asserting 200.
pub fn ok(res: &TestResponse) -> Value {
    res.assert_status(200).clone()
}

/// A client of `user` whose token carries `role`.
pub fn staff<'a>(app: &'a TestApp, user: &str, role: &str) -> UserClient<'a> {
    UserClient {
        app,
        token: Some(app.token_with(user, Some(role), 3600)),
        id: user.to_owned(),
    }
}

/// Unpadded base64url, for hand-built tokens.
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// A conversation-scoped and a message-scoped call for every route, so that "not found"
/// can be checked on all of them at once. Returns `(label, response)` pairs.
pub async fn every_route(
    who: &UserClient<'_>,
    conversation_id: &str,
    message_id: &str,
) -> Vec<(String, TestResponse)> {
    use serde_json::json;
    let c = conversation_id;
    vec![
        (
            format!("GET /conversations/{c}"),
            who.get_conversation(c).await,
        ),
        (
            format!("PATCH /conversations/{c}"),
            who.update_conversation(c, json!({ "title": "mine now" }))
                .await,
        ),
        (
            format!("PATCH /conversations/{c} blocked"),
            who.update_conversation(c, json!({ "blocked": true })).await,
        ),
        (
            format!("GET /conversations/{c}/messages"),
            who.list_messages(c, "").await,
        ),
        (
            format!("GET /conversations/{c}/messages?after=0"),
            who.list_messages(c, "?after=0").await,
        ),
        (
            format!("POST /conversations/{c}/messages"),
            who.send(c, json!({ "content": "let me in" })).await,
        ),
        (
            format!("PUT /conversations/{c}/read"),
            who.mark_read(c, json!({})).await,
        ),
        (
            format!("PUT /conversations/{c}/archive"),
            who.archive(c, json!({ "archived": true })).await,
        ),
        (
            format!("PUT /conversations/{c}/mute"),
            who.mute(c, json!({ "muted": true })).await,
        ),
        (
            format!("DELETE /conversations/{c}"),
            who.delete_conversation(c).await,
        ),
        (
            format!("PUT /messages/{message_id}"),
            who.edit_message(message_id, json!({ "content": "edited by a stranger" }))
                .await,
        ),
        (
            format!("DELETE /messages/{message_id}"),
            who.delete_message(message_id).await,
        ),
    ]
}

/// The first item of a page answered with 200.
#[track_caller]
pub fn first_item(res: &TestResponse) -> Value {
    let page = ok(res);
    items(&page)
        .first()
        .unwrap_or_else(|| panic!("an empty page: {page}"))
        .clone()
}
