// The chat service's client contract in TypeScript: REST resources and bodies, Socket.IO
// events, payloads and acknowledgements. GENERATED from the Rust types by `chat-ts-types`
// (shared/src/ts.rs); do not edit: run clients/typescript/generate.

/**
 * A point in time: RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T10:15:30.123Z`.
 */
export type Timestamp = string;

export type ConversationType = "property_inquiry" | "general" | "support";

export type ConversationStatus = "active" | "archived" | "blocked";

/**
 * A conversation as the calling user sees it: `unreadCount`, `archived` and `muted` are theirs.
 */
export type Conversation = {
  id: string,
  type: ConversationType,
  /**
   * `blocked` when nobody can send; otherwise `archived` when the caller archived it.
   */
  status: ConversationStatus,
  participants: Array<string>,
  createdBy: string,
  propertyId: string | null,
  title: string | null,
  metadata: Record<string, unknown>,
  lastMessage: MessagePreview | null,
  lastMessageAt: Timestamp | null,
  lastSeq: number,
  unreadCount: number,
  archived: boolean,
  muted: boolean,
  createdAt: Timestamp,
  updatedAt: Timestamp,
};

/**
 * The last message of a conversation, as shown in an inbox.
 */
export type MessagePreview = {
  id: string,
  seq: number,
  senderId: string,
  type: MessageType,
  content: string,
  isDeleted: boolean,
  createdAt: Timestamp,
};

export type MessageType = "text" | "image" | "file" | "system" | "property_share";

export type MessageStatus = "sent" | "delivered" | "read";

/**
 * A message, the same for every participant who may see it.
 */
export type Message = {
  id: string,
  conversationId: string,
  seq: number,
  senderId: string,
  /**
   * The other participant in a two-person conversation, `null` otherwise.
   */
  recipientId: string | null,
  type: MessageType,
  content: string,
  /**
   * `read` once every other participant has read it, `sent` before.
   */
  status: MessageStatus,
  readBy: Array<ReadReceipt>,
  replyTo: string | null,
  attachments: Array<Attachment>,
  clientMessageId: string | null,
  isEdited: boolean,
  editedAt: Timestamp | null,
  isDeleted: boolean,
  deletedAt: Timestamp | null,
  createdAt: Timestamp,
};

export type ReadReceipt = {
  userId: string,
  readAt: Timestamp,
};

export type AttachmentType = "image" | "file";

export type Attachment = {
  type: AttachmentType,
  /**
   * An `https://` URL, at most 2048 characters.
   */
  url: string,
  filename: string,
  /**
   * Size in bytes.
   */
  size: number,
  /**
   * Left out when unknown (never `null` in a response).
   */
  mimeType?: string,
};

/**
 * A page of results. `nextCursor` is `null` when nothing more is there.
 */
export type Page<T> = {
  items: Array<T>,
  nextCursor: string | null,
};

export type ReadState = {
  conversationId: string,
  lastReadSeq: number,
  readAt: Timestamp,
  unreadCount: number,
};

export type Stats = {
  totalConversations: number,
  activeConversations: number,
  archivedConversations: number,
  unreadConversations: number,
  unreadMessages: number,
  messagesSent: number,
  messagesReceived: number,
  propertyInquiries: number,
  /**
   * Visible conversations per type; every type is present.
   */
  byType: {
    [key in string]: number
  },
};

/**
 * `GET /unread`: the caller's unread messages over every conversation.
 */
export type UnreadTotal = {
  totalUnread: number,
};

/**
 * `GET /sync`: the caller's change feed after a cursor (contract v1.1).
 */
export type SyncPage = {
  /**
   * Oldest first, each once.
   */
  events: Array<SyncEvent>,
  /**
   * The cursor to pass as `since` next: the last event's, or `since` when there are none
   * (without `since`: the current end of the feed).
   */
  nextCursor: string,
  /**
   * More events wait right now: call again with `nextCursor`.
   */
  hasMore: boolean,
};

/**
 * One change of the feed, as a socket got (or would have got) it. `event` is the
 * socket event's name and narrows `data`. Messages and conversations are as they are
 * now: apply events in order and dedupe messages by `id`.
 */
export type SyncEvent = {
  cursor: string,
  event: "new_message",
  data: Message & Required<FeedCursor>,
} | {
  cursor: string,
  event: "message_edited",
  data: Message & Required<FeedCursor>,
} | {
  cursor: string,
  event: "message_deleted",
  data: Message & Required<FeedCursor>,
} | {
  cursor: string,
  event: "messages_read",
  data: MessagesRead & Required<FeedCursor>,
} | {
  cursor: string,
  event: "conversation_updated",
  data: Conversation & Required<FeedCursor>,
};

/**
 * What a change feed event's payload carries when it reaches a socket (contract v1.1).
 */
export type FeedCursor = {
  /**
   * The event's place in the recipient's own change feed: remember the last one seen and
   * pass it as `since` to `GET /sync` after a reconnect. Always present in a `SyncEvent`'s
   * `data`; on a socket event keep the previous cursor when one comes without.
   */
  cursor?: string,
};

export type CreateConversationRequest = {
  /**
   * The other participants; the caller is always added.
   */
  participantIds: Array<string>,
  type?: ConversationType | null,
  propertyId?: string | null,
  title?: string | null,
  metadata?: Record<string, unknown> | null,
  /**
   * Sent as the caller's first message; also sent when an existing conversation is returned.
   */
  initialMessage?: string | null,
};

export type SendMessageRequest = {
  /**
   * 1 to 4000 characters after trimming; may be empty for `image`/`file` with attachments.
   */
  content: string,
  type?: MessageType | null,
  replyTo?: string | null,
  attachments?: Array<Attachment> | null,
  clientMessageId?: string | null,
};

export type EditMessageRequest = {
  content: string,
};

export type MarkReadRequest = {
  /**
   * Read up to and including this `seq`; default: everything.
   */
  upToSeq?: number | null,
};

export type ArchiveRequest = {
  /**
   * Default `true`.
   */
  archived?: boolean | null,
};

export type MuteRequest = {
  /**
   * Default `true`.
   */
  muted?: boolean | null,
};

export type UpdateConversationRequest = {
  /**
   * New title (1 to 200 characters).
   */
  title?: string | null,
  /**
   * Block (`true`) or unblock (`false`): while blocked nobody can send.
   */
  blocked?: boolean | null,
};

/**
 * Error codes of the client contract (`../shared/CONTRACT.md`, "REST API").
 */
export type ErrorCode = "bad_request" | "unauthorized" | "forbidden" | "not_found" | "conflict" | "payload_too_large" | "rate_limited" | "edit_window_passed" | "blocked" | "unavailable" | "sync_expired" | "internal";

/**
 * `application/problem+json` body (RFC 9457) of every REST error. `code` is one of the
 * contract's error codes.
 */
export type Problem = {
  type: string,
  title: string,
  status: number,
  detail: string,
  code: ErrorCode,
};

/**
 * The `error` of a failed acknowledgement: the same codes as REST's problem documents.
 */
export type AckError = {
  code: ErrorCode,
  /**
   * Human-readable; for `bad_request` it names the field at fault.
   */
  message: string,
  /**
   * `rate_limited` only: how long until a retry can succeed.
   */
  retryAfterMs?: number,
};

/**
 * The `conversationId` every client event names (`send_message` carries the REST body
 * beside it).
 */
export type ConversationRef = {
  conversationId: string,
};

/**
 * `mark_as_read` payload.
 */
export type SocketMarkAsRead = {
  conversationId: string,
  upToSeq?: number | null,
};

/**
 * `join_conversation` acknowledgement, besides `ok: true`.
 */
export type JoinConversationAck = {
  conversation: Conversation,
  /**
   * The other participants online now, as last announced.
   */
  online: Array<string>,
};

/**
 * `send_message` acknowledgement, besides `ok: true`.
 */
export type SendMessageAck = {
  message: Message,
  /**
   * A retry with the same `clientMessageId`: `message` is the first one, nothing new was
   * announced.
   */
  duplicate: boolean,
};

/**
 * `mark_as_read` acknowledgement, besides `ok: true`.
 */
export type MarkAsReadAck = {
  lastReadSeq: number,
  unreadCount: number,
  readAt: Timestamp,
};

/**
 * `messages_read` event payload.
 */
export type MessagesRead = {
  conversationId: string,
  userId: string,
  lastReadSeq: number,
  readAt: Timestamp,
};

/**
 * `unread_count_updated` event payload.
 */
export type UnreadCountUpdated = {
  conversationId: string,
  unreadCount: number,
  totalUnread: number,
};

/**
 * `user_typing_start` / `user_typing_stop` payload.
 */
export type Typing = {
  conversationId: string,
  userId: string,
};

/**
 * `user_status_change` payload.
 */
export type UserStatusChange = {
  userId: string,
  status: PresenceStatus,
  /**
   * The user's last disconnect, or null.
   */
  lastSeen: Timestamp | null,
};

/**
 * `user_status_change`'s `status`.
 */
export type PresenceStatus = "online" | "offline";

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

/**
 * Server-to-client events: `socket.on(name, listener)`. Feed events (those in
 * `SyncEvent`) carry their `cursor`.
 */
export interface ServerToClientEvents {
  /**
   * A message was stored (by socket, REST or a create's `initialMessage`): to every socket of every
   * participant, the sender's included (dedupe by `id`).
   */
  new_message: (payload: Message & FeedCursor) => void;
  /**
   * A message was edited: to every participant.
   */
  message_edited: (payload: Message & FeedCursor) => void;
  /**
   * A message was deleted (`isDeleted: true`, empty `content` and `attachments`): to every
   * participant.
   */
  message_deleted: (payload: Message & FeedCursor) => void;
  /**
   * A participant's read position moved: to every participant.
   */
  messages_read: (payload: MessagesRead & FeedCursor) => void;
  /**
   * The user's own unread counts, when a message arrives or is deleted and when they read. Not in
   * the feed: read the counts again after a reconnect.
   */
  unread_count_updated: (payload: UnreadCountUpdated) => void;
  /**
   * A conversation as this user sees it: to every participant on create, rename, block and unblock;
   * to the user alone on their own archive, mute or delete-for-me.
   */
  conversation_updated: (payload: Conversation & FeedCursor) => void;
  /**
   * Someone in a joined conversation started typing (never the user's own typing). Ends by itself
   * `TYPING_TIMEOUT_MS` (default 8 s) after the last start.
   */
  user_typing_start: (payload: Typing) => void;
  /**
   * Someone in a joined conversation stopped typing, or their typing timed out or their socket
   * disconnected.
   */
  user_typing_stop: (payload: Typing) => void;
  /**
   * A user who shares a conversation with this user came online (first socket) or went offline
   * (last socket).
   */
  user_status_change: (payload: UserStatusChange) => void;
}

/**
 * Client-to-server events: `socket.emit(name, payload)` or
 * `socket.emit(name, payload, (r) => { if (r.ok) ... })`: the acknowledgement callback is
 * optional. For `emitWithAck` and `timeout(ms).emit`, type the socket with
 * `ClientToServerEventsWithAck`.
 */
export interface ClientToServerEvents {
  /**
   * Joins the conversation's room, for its typing indicators. Messages reach every socket of a
   * participant without joining.
   */
  join_conversation: (payload: ConversationRef, ack?: (response: Ack<JoinConversationAck>) => void) => void;
  /**
   * Leaves the conversation's room.
   */
  leave_conversation: (payload: ConversationRef, ack?: (response: Ack) => void) => void;
  /**
   * Sends a message, with the rules of `POST /conversations/:id/messages`. Retry with the same
   * `clientMessageId` after `unavailable` or a timeout.
   */
  send_message: (payload: ConversationRef & SendMessageRequest, ack?: (response: Ack<SendMessageAck>) => void) => void;
  /**
   * The user is typing; repeat at most every few seconds while they do.
   */
  typing_start: (payload: ConversationRef, ack?: (response: Ack) => void) => void;
  /**
   * The user stopped typing.
   */
  typing_stop: (payload: ConversationRef, ack?: (response: Ack) => void) => void;
  /**
   * Moves the user's read position (default: to the end), with the rules of `PUT
   * /conversations/:id/read`.
   */
  mark_as_read: (payload: SocketMarkAsRead, ack?: (response: Ack<MarkAsReadAck>) => void) => void;
}

/**
 * The same events with the acknowledgement callback required, as socket.io-client's
 * `emitWithAck` and `timeout(ms).emit` need it to type the answer:
 * `Socket<ServerToClientEvents, ClientToServerEventsWithAck>`.
 */
export interface ClientToServerEventsWithAck {
  join_conversation: (payload: ConversationRef, ack: (response: Ack<JoinConversationAck>) => void) => void;
  leave_conversation: (payload: ConversationRef, ack: (response: Ack) => void) => void;
  send_message: (payload: ConversationRef & SendMessageRequest, ack: (response: Ack<SendMessageAck>) => void) => void;
  typing_start: (payload: ConversationRef, ack: (response: Ack) => void) => void;
  typing_stop: (payload: ConversationRef, ack: (response: Ack) => void) => void;
  mark_as_read: (payload: SocketMarkAsRead, ack: (response: Ack<MarkAsReadAck>) => void) => void;
}

/**
 * Each client event's acknowledgement: `const r: ClientToServerAcks["send_message"]`.
 */
export interface ClientToServerAcks {
  join_conversation: Ack<JoinConversationAck>;
  leave_conversation: Ack;
  send_message: Ack<SendMessageAck>;
  typing_start: Ack;
  typing_stop: Ack;
  mark_as_read: Ack<MarkAsReadAck>;
}
