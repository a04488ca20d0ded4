//! TypeScript definitions of the client contract, generated from the Rust types (feature `ts`).
//! `clients/typescript/generate` writes them with the `chat-ts-types` binary, and
//! `clients/typescript/check` fails when the committed copy is no longer what this module
//! renders.
//!
//! Resources, payloads, request bodies and acknowledgements derive `ts_rs::TS` where they are
//! defined (`wire.rs`, `error.rs`, `http.rs`), and ts-rs follows their serde attributes
//! (`rename_all`, `rename`, `skip_serializing_if`). This module adds what a derive cannot see:
//! how a timestamp serializes, free-form JSON objects, the change feed's [`SyncEvent`] (one
//! variant per feed event), the acknowledgement envelope of [`crate::wire::ack_body`], and the
//! two Socket.IO event maps, built from the event names of [`crate::events`] with each event's
//! payload and acknowledgement types. Renaming an event or a type therefore changes the output.

use crate::error::ErrorCode;
use crate::events::{client_names, names};
use crate::http::Problem;
use crate::time::Millis;
use crate::wire::*;
use ts_rs::{Config, TS};

/// How the definitions are rendered. Integers (`seq`, counts, sizes) are `number`: serde_json
/// writes them as JSON numbers and they stay far below 2^53, while ts-rs's default, `bigint`,
/// is not what `JSON.parse` returns.
pub fn config() -> Config {
    Config::new().with_large_int("number")
}

/// `Millis` serializes as an RFC 3339 string (`crate::time`), not as its inner number.
impl TS for Millis {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn docs() -> Option<String> {
        Some(ts_rs::format_docs(&[
            " A point in time: RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T10:15:30.123Z`.",
        ]))
    }

    fn name(_: &Config) -> String {
        "Timestamp".to_owned()
    }

    fn inline(_: &Config) -> String {
        "string".to_owned()
    }

    fn decl(_: &Config) -> String {
        "type Timestamp = string;".to_owned()
    }

    fn decl_concrete(cfg: &Config) -> String {
        Self::decl(cfg)
    }
}

/// A JSON object whose keys the contract leaves open (a conversation's `metadata`): typed
/// `Record<string, unknown>`, so that a client narrows before it reads, never `any`.
pub struct JsonObject;

impl TS for JsonObject {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn name(_: &Config) -> String {
        "Record<string, unknown>".to_owned()
    }

    fn inline(cfg: &Config) -> String {
        Self::name(cfg)
    }
}

/// What a change feed event's payload carries when it reaches a socket (contract v1.1).
#[derive(TS)]
pub struct FeedCursor {
    /// The event's place in the recipient's own change feed: remember the last one seen and
    /// pass it as `since` to `GET /sync` after a reconnect. Always present in a `SyncEvent`'s
    /// `data`; on a socket event keep the previous cursor when one comes without.
    #[ts(optional)]
    pub cursor: Option<String>,
}

/// `GET /sync`'s events: one variant per feed event, each with the payload a socket gets.
impl TS for SyncEvent {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn docs() -> Option<String> {
        Some(ts_rs::format_docs(&[
            " One change of the feed, as a socket got (or would have got) it. `event` is the",
            " socket event's name and narrows `data`. Messages and conversations are as they are",
            " now: apply events in order and dedupe messages by `id`.",
        ]))
    }

    fn name(_: &Config) -> String {
        "SyncEvent".to_owned()
    }

    fn inline(cfg: &Config) -> String {
        server_events(cfg)
            .iter()
            .filter(|e| e.feed)
            .map(|e| {
                format!(
                    "{{ cursor: string, event: \"{}\", data: {} & Required<FeedCursor>, }}",
                    e.name, e.payload
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn decl(cfg: &Config) -> String {
        format!("type SyncEvent = {};", Self::inline(cfg))
    }

    fn decl_concrete(cfg: &Config) -> String {
        Self::decl(cfg)
    }
}

/// A server-to-client event.
pub struct ServerEvent {
    pub name: &'static str,
    /// The payload's TypeScript type, without the feed cursor.
    pub payload: String,
    /// Written to the recipient's change feed, and so delivered with a `cursor`.
    pub feed: bool,
    pub docs: &'static str,
}

/// `feed` comes from the store's list of feed events, so the two cannot disagree.
fn server<T: TS>(cfg: &Config, name: &'static str, docs: &'static str) -> ServerEvent {
    ServerEvent {
        name,
        payload: T::name(cfg),
        feed: crate::store::FeedKind::parse(name).is_some(),
        docs,
    }
}

/// Every server-to-client event of the contract, with its payload type.
pub fn server_events(cfg: &Config) -> Vec<ServerEvent> {
    vec![
        server::<Message>(
            cfg,
            names::NEW_MESSAGE,
            "A message was stored (by socket, REST or a create's `initialMessage`): to every socket of every participant, the sender's included (dedupe by `id`).",
        ),
        server::<Message>(
            cfg,
            names::MESSAGE_EDITED,
            "A message was edited: to every participant.",
        ),
        server::<Message>(
            cfg,
            names::MESSAGE_DELETED,
            "A message was deleted (`isDeleted: true`, empty `content` and `attachments`): to every participant.",
        ),
        server::<MessagesRead>(
            cfg,
            names::MESSAGES_READ,
            "A participant's read position moved: to every participant.",
        ),
        server::<UnreadCountUpdated>(
            cfg,
            names::UNREAD_COUNT_UPDATED,
            "The user's own unread counts, when a message arrives or is deleted and when they read. Not in the feed: read the counts again after a reconnect.",
        ),
        server::<Conversation>(
            cfg,
            names::CONVERSATION_UPDATED,
            "A conversation as this user sees it: to every participant on create, rename, block and unblock; to the user alone on their own archive, mute or delete-for-me.",
        ),
        server::<Typing>(
            cfg,
            names::USER_TYPING_START,
            "Someone in a joined conversation started typing (never the user's own typing). Ends by itself `TYPING_TIMEOUT_MS` (default 8 s) after the last start.",
        ),
        server::<Typing>(
            cfg,
            names::USER_TYPING_STOP,
            "Someone in a joined conversation stopped typing, or their typing timed out or their socket disconnected.",
        ),
        server::<UserStatusChange>(
            cfg,
            names::USER_STATUS_CHANGE,
            "A user who shares a conversation with this user came online (first socket) or went offline (last socket).",
        ),
    ]
}

/// A client-to-server event.
pub struct ClientEvent {
    pub name: &'static str,
    /// The payload's TypeScript type.
    pub payload: String,
    /// The fields of a successful acknowledgement besides `ok`, when there are any.
    pub ack: Option<String>,
    pub docs: &'static str,
}

/// Every client-to-server event the gateway handles, with its payload and acknowledgement.
pub fn client_events(cfg: &Config) -> Vec<ClientEvent> {
    let conversation_ref = ConversationRef::name(cfg);
    vec![
        ClientEvent {
            name: client_names::JOIN_CONVERSATION,
            payload: conversation_ref.clone(),
            ack: Some(JoinConversationAck::name(cfg)),
            docs: "Joins the conversation's room, for its typing indicators. Messages reach every socket of a participant without joining.",
        },
        ClientEvent {
            name: client_names::LEAVE_CONVERSATION,
            payload: conversation_ref.clone(),
            ack: None,
            docs: "Leaves the conversation's room.",
        },
        ClientEvent {
            name: client_names::SEND_MESSAGE,
            payload: format!("{conversation_ref} & {}", SendMessageRequest::name(cfg)),
            ack: Some(SendMessageAck::name(cfg)),
            docs: "Sends a message, with the rules of `POST /conversations/:id/messages`. Retry with the same `clientMessageId` after `unavailable` or a timeout.",
        },
        ClientEvent {
            name: client_names::TYPING_START,
            payload: conversation_ref.clone(),
            ack: None,
            docs: "The user is typing; repeat at most every few seconds while they do.",
        },
        ClientEvent {
            name: client_names::TYPING_STOP,
            payload: conversation_ref,
            ack: None,
            docs: "The user stopped typing.",
        },
        ClientEvent {
            name: client_names::MARK_AS_READ,
            payload: SocketMarkAsRead::name(cfg),
            ack: Some(MarkAsReadAck::name(cfg)),
            docs: "Moves the user's read position (default: to the end), with the rules of `PUT /conversations/:id/read`.",
        },
    ]
}

/// The acknowledgement envelope of [`crate::wire::ack_body`], narrowed by `ok`.
const ACK_TYPES: &str = "\
/**
 * The answer to a client event's acknowledgement callback. Narrow on `ok`:
 * `if (r.ok) r.message; else r.error.code`.
 */
export type Ack<T = {}> = AckSuccess<T> | AckFailure;

/**
 * A successful acknowledgement: `ok: true` and the event's fields.
 */
export type AckSuccess<T = {}> = { ok: true } & T;

/**
 * A failed acknowledgement. After `unavailable` nothing was stored: retry.
 */
export type AckFailure = {
  ok: false,
  error: AckError,
};
";

/// The declarations written as they are, in this order (one per line of the output).
fn declarations(cfg: &Config) -> Vec<String> {
    fn decl<T: TS + ?Sized>(cfg: &Config) -> String {
        format!(
            "{}export {}",
            T::docs().unwrap_or_default(),
            format_decl(&T::decl(cfg))
        )
    }
    vec![
        decl::<Millis>(cfg),
        // Resources.
        decl::<ConversationType>(cfg),
        decl::<ConversationStatus>(cfg),
        decl::<Conversation>(cfg),
        decl::<MessagePreview>(cfg),
        decl::<MessageType>(cfg),
        decl::<MessageStatus>(cfg),
        decl::<Message>(cfg),
        decl::<ReadReceipt>(cfg),
        decl::<AttachmentType>(cfg),
        decl::<Attachment>(cfg),
        decl::<Page<()>>(cfg),
        decl::<ReadState>(cfg),
        decl::<Stats>(cfg),
        decl::<UnreadTotal>(cfg),
        decl::<SyncPage>(cfg),
        decl::<SyncEvent>(cfg),
        decl::<FeedCursor>(cfg),
        // REST request bodies.
        decl::<CreateConversationRequest>(cfg),
        decl::<SendMessageRequest>(cfg),
        decl::<EditMessageRequest>(cfg),
        decl::<MarkReadRequest>(cfg),
        decl::<ArchiveRequest>(cfg),
        decl::<MuteRequest>(cfg),
        decl::<UpdateConversationRequest>(cfg),
        // Errors.
        decl::<ErrorCode>(cfg),
        decl::<Problem>(cfg),
        decl::<AckError>(cfg),
        // Socket event payloads and acknowledgements.
        decl::<ConversationRef>(cfg),
        decl::<SocketMarkAsRead>(cfg),
        decl::<JoinConversationAck>(cfg),
        decl::<SendMessageAck>(cfg),
        decl::<MarkAsReadAck>(cfg),
        decl::<MessagesRead>(cfg),
        decl::<UnreadCountUpdated>(cfg),
        decl::<Typing>(cfg),
        decl::<UserStatusChange>(cfg),
        decl::<PresenceStatus>(cfg),
    ]
}

/// The whole `index.d.ts`.
pub fn render() -> String {
    let cfg = config();
    let mut out = String::from(
        "// The chat service's client contract in TypeScript: REST resources and bodies, Socket.IO\n\
         // events, payloads and acknowledgements. GENERATED from the Rust types by `chat-ts-types`\n\
         // (shared/src/ts.rs); do not edit: run clients/typescript/generate.\n\n",
    );
    for decl in declarations(&cfg) {
        out.push_str(&decl);
        out.push_str("\n\n");
    }
    out.push_str(ACK_TYPES);
    out.push('\n');

    let server = server_events(&cfg);
    out.push_str(
        "/**\n * Server-to-client events: `socket.on(name, listener)`. Feed events (those in\n * `SyncEvent`) carry their `cursor`.\n */\nexport interface ServerToClientEvents {\n",
    );
    for e in &server {
        let payload = if e.feed {
            format!("{} & FeedCursor", e.payload)
        } else {
            e.payload.clone()
        };
        out.push_str(&jsdoc(e.docs));
        out.push_str(&format!("  {}: (payload: {payload}) => void;\n", e.name));
    }
    out.push_str("}\n\n");

    let client = client_events(&cfg);
    let ack = |e: &ClientEvent| match &e.ack {
        Some(fields) => format!("Ack<{fields}>"),
        None => "Ack".to_owned(),
    };
    out.push_str(
        "/**\n * Client-to-server events: `socket.emit(name, payload)` or\n * `socket.emit(name, payload, (r) => { if (r.ok) ... })`: the acknowledgement callback is\n * optional. For `emitWithAck` and `timeout(ms).emit`, type the socket with\n * `ClientToServerEventsWithAck`.\n */\nexport interface ClientToServerEvents {\n",
    );
    for e in &client {
        out.push_str(&jsdoc(e.docs));
        out.push_str(&format!(
            "  {}: (payload: {}, ack?: (response: {}) => void) => void;\n",
            e.name,
            e.payload,
            ack(e)
        ));
    }
    out.push_str("}\n\n");
    out.push_str(
        "/**\n * The same events with the acknowledgement callback required, as socket.io-client's\n * `emitWithAck` and `timeout(ms).emit` need it to type the answer:\n * `Socket<ServerToClientEvents, ClientToServerEventsWithAck>`.\n */\nexport interface ClientToServerEventsWithAck {\n",
    );
    for e in &client {
        out.push_str(&format!(
            "  {}: (payload: {}, ack: (response: {}) => void) => void;\n",
            e.name,
            e.payload,
            ack(e)
        ));
    }
    out.push_str("}\n\n");
    out.push_str(
        "/**\n * Each client event's acknowledgement: `const r: ClientToServerAcks[\"send_message\"]`.\n */\nexport interface ClientToServerAcks {\n",
    );
    for e in &client {
        out.push_str(&format!("  {}: {};\n", e.name, ack(e)));
    }
    out.push_str("}\n");
    out
}

/// A doc comment for a member of an interface, wrapped at 100 columns.
fn jsdoc(text: &str) -> String {
    let mut out = String::from("  /**\n");
    let mut line = String::from("   *");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 100 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("   *");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push_str("\n   */\n");
    out
}

/// Lays out one ts-rs declaration (ts-rs writes each on one line): every field of an object
/// type on its own line, doc comments above their field.
fn format_decl(decl: &str) -> String {
    let mut out = String::with_capacity(decl.len() * 2);
    // The open brackets; fields are split only directly inside an object's braces.
    let mut open: Vec<char> = Vec::new();
    let mut chars = decl.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        while out.ends_with(' ') {
            out.pop();
        }
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                while let Some(s) = chars.next() {
                    out.push(s);
                    if s == '\\' {
                        out.extend(chars.next());
                    } else if s == '"' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                // A doc comment: its lines re-indented to the field it documents.
                let mut comment = String::from("/");
                let mut prev = ' ';
                for s in chars.by_ref() {
                    comment.push(s);
                    if prev == '*' && s == '/' {
                        break;
                    }
                    prev = s;
                }
                let depth = open.len();
                for (i, line) in comment.lines().enumerate() {
                    if i > 0 {
                        newline(&mut out, depth);
                        out.push(' ');
                    }
                    out.push_str(line.trim());
                }
                newline(&mut out, depth);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            '{' => {
                open.push(c);
                out.push(c);
                newline(&mut out, open.len());
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            '}' => {
                open.pop();
                newline(&mut out, open.len());
                out.push(c);
            }
            '<' | '(' | '[' => {
                open.push(c);
                out.push(c);
            }
            '>' | ')' | ']' => {
                open.pop();
                out.push(c);
            }
            ',' if open.last() == Some(&'{') => {
                out.push(c);
                // Whatever follows (a field or the closing brace) starts a line.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() != Some(&'}') {
                    newline(&mut out, open.len());
                }
            }
            '\n' => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::feed::FeedKind;
    use std::collections::BTreeSet;

    #[test]
    fn every_server_event_is_typed_and_the_feed_ones_carry_a_cursor() {
        let events = server_events(&config());
        let typed: BTreeSet<&str> = events.iter().map(|e| e.name).collect();
        let all = BTreeSet::from([
            names::NEW_MESSAGE,
            names::MESSAGE_EDITED,
            names::MESSAGE_DELETED,
            names::MESSAGES_READ,
            names::UNREAD_COUNT_UPDATED,
            names::CONVERSATION_UPDATED,
            names::USER_TYPING_START,
            names::USER_TYPING_STOP,
            names::USER_STATUS_CHANGE,
        ]);
        assert_eq!(typed, all);
        assert_eq!(typed.len(), events.len(), "each event once");
        for e in &events {
            assert_eq!(
                e.feed,
                FeedKind::parse(e.name).is_some(),
                "{}: in the feed exactly when the store writes it there",
                e.name
            );
        }
    }

    #[test]
    fn every_client_event_is_typed() {
        let typed: BTreeSet<&str> = client_events(&config()).iter().map(|e| e.name).collect();
        assert_eq!(
            typed,
            BTreeSet::from([
                client_names::JOIN_CONVERSATION,
                client_names::LEAVE_CONVERSATION,
                client_names::SEND_MESSAGE,
                client_names::TYPING_START,
                client_names::TYPING_STOP,
                client_names::MARK_AS_READ,
            ])
        );
    }

    /// The fields a rendered object type declares: `name` for `name: T`, `name?` for `name?: T`.
    fn declared_fields(rendered: &str, ty: &str) -> BTreeSet<String> {
        let start = format!("export type {ty} = {{\n");
        let body = rendered
            .split_once(&start)
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split_once("\n};"))
            .map(|(body, _)| body)
            .unwrap_or_else(|| panic!("{ty} is not declared as an object type"));
        body.lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && !l.trim().starts_with('*'))
            .filter(|l| !l.trim_start().starts_with("/**"))
            .filter_map(|l| l.trim().split_once(": ").map(|(name, _)| name.to_owned()))
            .collect()
    }

    /// What a serialized value has: each key, `?` added where the type may leave it out.
    fn serialized_fields(value: &impl serde::Serialize, optional: &[&str]) -> BTreeSet<String> {
        let json = serde_json::to_value(value).expect("serializes");
        json.as_object()
            .expect("an object")
            .keys()
            .map(|k| {
                if optional.contains(&k.as_str()) {
                    format!("{k}?")
                } else {
                    k.clone()
                }
            })
            .collect()
    }

    fn message() -> Message {
        Message {
            id: "m1".into(),
            conversation_id: "c1".into(),
            seq: 1,
            sender_id: "u_a".into(),
            recipient_id: None,
            kind: MessageType::PropertyShare,
            content: "hi".into(),
            status: MessageStatus::Sent,
            read_by: vec![],
            reply_to: None,
            attachments: vec![],
            client_message_id: None,
            is_edited: false,
            edited_at: None,
            is_deleted: false,
            deleted_at: None,
            created_at: Millis(0),
        }
    }

    #[test]
    fn declared_fields_are_the_serialized_ones() {
        let rendered = render();
        let attachment = Attachment {
            kind: AttachmentType::File,
            url: "https://x".into(),
            filename: "a.pdf".into(),
            size: 1,
            mime_type: Some("application/pdf".into()),
        };
        let conversation = Conversation {
            id: "c1".into(),
            kind: ConversationType::PropertyInquiry,
            status: ConversationStatus::Active,
            participants: vec![],
            created_by: "u_a".into(),
            property_id: None,
            title: None,
            metadata: serde_json::json!({}),
            last_message: None,
            last_message_at: None,
            last_seq: 0,
            unread_count: 0,
            archived: false,
            muted: false,
            created_at: Millis(0),
            updated_at: Millis(0),
        };
        let error = AckError::from(&crate::error::ChatError::rate_limited(
            std::time::Duration::from_millis(5),
        ));
        let cases = [
            ("Message", serialized_fields(&message(), &[])),
            ("Attachment", serialized_fields(&attachment, &["mimeType"])),
            ("Conversation", serialized_fields(&conversation, &[])),
            ("AckError", serialized_fields(&error, &["retryAfterMs"])),
            (
                "UserStatusChange",
                serialized_fields(
                    &UserStatusChange {
                        user_id: "u".into(),
                        status: PresenceStatus::Online,
                        last_seen: None,
                    },
                    &[],
                ),
            ),
            (
                "MarkAsReadAck",
                serialized_fields(
                    &MarkAsReadAck {
                        last_read_seq: 1,
                        unread_count: 0,
                        read_at: Millis(0),
                    },
                    &[],
                ),
            ),
        ];
        for (ty, serialized) in cases {
            assert_eq!(declared_fields(&rendered, ty), serialized, "{ty}");
        }
        assert!(rendered.contains("  type: MessageType,\n"), "{rendered}");
        assert!(rendered.contains("  createdAt: Timestamp,\n"));
        assert!(rendered.contains("  editedAt: Timestamp | null,\n"));
        assert!(rendered.contains("  metadata: Record<string, unknown>,\n"));
        assert!(rendered.contains(
            "export type MessageType = \"text\" | \"image\" | \"file\" | \"system\" | \"property_share\";"
        ));
        let code: String = rendered
            .lines()
            .filter(|l| !l.trim_start().starts_with("/**") && !l.trim_start().starts_with('*'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !code
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|word| word == "any"),
            "no `any` where the contract names a shape"
        );
        assert!(!rendered.contains("bigint"), "integers are JSON numbers");
    }

    #[test]
    fn timestamps_are_the_rfc_3339_strings_the_type_says() {
        let json = serde_json::to_value(Millis(1_795_000_530_123)).expect("serializes");
        assert_eq!(json, serde_json::json!("2026-11-18T11:15:30.123Z"));
    }

    #[test]
    fn request_bodies_leave_out_what_the_service_defaults() {
        let rendered = render();
        for (ty, fields) in [
            (
                "SendMessageRequest",
                [
                    "content",
                    "type?",
                    "replyTo?",
                    "attachments?",
                    "clientMessageId?",
                ]
                .as_slice(),
            ),
            (
                "CreateConversationRequest",
                &[
                    "participantIds",
                    "type?",
                    "propertyId?",
                    "title?",
                    "metadata?",
                    "initialMessage?",
                ],
            ),
            ("SocketMarkAsRead", &["conversationId", "upToSeq?"]),
        ] {
            let expected: BTreeSet<String> = fields.iter().map(|f| (*f).to_owned()).collect();
            assert_eq!(declared_fields(&rendered, ty), expected, "{ty}");
        }
    }

    #[test]
    fn the_ack_types_describe_the_ack_body() {
        // `wire::tests` pins what `ack_body` sends; these are the same shapes in TypeScript.
        assert!(ACK_TYPES.contains("export type AckSuccess<T = {}> = { ok: true } & T;"));
        assert!(ACK_TYPES.contains("  ok: false,\n  error: AckError,\n"));
    }

    #[test]
    fn a_one_line_declaration_is_laid_out_field_by_field() {
        let decl = "type A = { a: string, \n/**\n * Doc, with {braces}.\n */\nb: Record<string, unknown>, c: { [key in string]: number }, d: \"x, }\" | null, };";
        assert_eq!(
            format_decl(decl),
            "type A = {\n  a: string,\n  /**\n   * Doc, with {braces}.\n   */\n  b: Record<string, unknown>,\n  c: {\n    [key in string]: number\n  },\n  d: \"x, }\" | null,\n};"
        );
    }
}
