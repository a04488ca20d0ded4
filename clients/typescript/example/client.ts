// A small client of the chat service, typed only by this package. `../check` compiles it with
// `tsc --strict --noEmit` (it is never run): if the generated types stop fitting a real
// socket.io-client program, the check goes red.
import { io, type Socket } from "socket.io-client";
import type {
  ClientToServerAcks,
  ClientToServerEvents,
  ClientToServerEventsWithAck,
  Conversation,
  Message,
  MessageType,
  Page,
  Problem,
  SendMessageRequest,
  ServerToClientEvents,
  SyncPage,
} from "@chat/client-types";

const CHAT_URL = "http://localhost:8000";
const API = `${CHAT_URL}/api/v1/chat`;
declare const token: string;

const messages = new Map<string, Message>();
const conversations = new Map<string, Conversation>();
let cursor: string | undefined;

// --- Callback style: acknowledgements are optional ------------------------------------------
const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(CHAT_URL, {
  auth: { token },
});

socket.on("connect_error", (err) => console.log(err.message)); // "unauthorized"
socket.on("new_message", (m) => {
  if (messages.has(m.id)) return; // the sender's own copy, or a retry
  messages.set(m.id, m);
  const kind: MessageType = m.type;
  const sent = new Date(m.createdAt); // RFC 3339 string
  console.log(kind, sent.getTime(), m.seq + 1, m.attachments.map((a) => a.mimeType ?? a.type));
  cursor = m.cursor ?? cursor;
});
socket.on("message_edited", (m) => messages.set(m.id, m));
socket.on("message_deleted", (m) => {
  if (m.isDeleted && m.deletedAt !== null) messages.set(m.id, m);
});
socket.on("messages_read", ({ conversationId, userId, lastReadSeq, readAt }) => {
  console.log(conversationId, userId, lastReadSeq, Date.parse(readAt));
});
socket.on("unread_count_updated", ({ conversationId, unreadCount, totalUnread }) => {
  console.log(conversationId, unreadCount, totalUnread);
});
socket.on("conversation_updated", (c) => {
  conversations.set(c.id, c);
  const title = c.metadata["propertyTitle"]; // unknown: narrowed before use
  if (typeof title === "string") console.log(title.toUpperCase(), c.lastMessage?.content);
});
socket.on("user_typing_start", ({ conversationId, userId }) => console.log(conversationId, userId));
socket.on("user_typing_stop", ({ conversationId, userId }) => console.log(conversationId, userId));
socket.on("user_status_change", ({ userId, status, lastSeen }) => {
  const online: boolean = status === "online";
  console.log(userId, online, lastSeen === null ? "never" : new Date(lastSeen));
});

const body: SendMessageRequest = {
  content: "Is it still available?",
  clientMessageId: "c-123",
};
socket.emit("send_message", { conversationId: "c1", ...body }, (r) => {
  if (r.ok) {
    const id: string = r.message.id;
    console.log(id, r.message.seq, r.duplicate);
  } else if (r.error.code === "rate_limited") {
    console.log("retry in", r.error.retryAfterMs ?? 1000, "ms");
  } else {
    console.log(r.error.code, r.error.message);
  }
});
socket.emit("typing_start", { conversationId: "c1" }); // no acknowledgement wanted
socket.emit("join_conversation", { conversationId: "c1" }, (r) => {
  if (r.ok) console.log(r.conversation.unreadCount, r.online.length);
});
socket.emit("mark_as_read", { conversationId: "c1", upToSeq: 7 }, (r) => {
  if (r.ok) console.log(r.lastReadSeq, r.unreadCount, r.readAt);
});

// --- Promise style: `emitWithAck` and `timeout` need the acknowledgement in the type ---------
async function promiseStyle(): Promise<void> {
  const acked: Socket<ServerToClientEvents, ClientToServerEventsWithAck> = io(CHAT_URL, {
    auth: { token },
  });
  const r = await acked.emitWithAck("send_message", {
    conversationId: "c1",
    content: "Saturday 10am works.",
    type: "text",
  });
  if (r.ok) console.log(r.message.id);
  else console.log(r.error.code);
  const joined: ClientToServerAcks["join_conversation"] = await acked
    .timeout(5000)
    .emitWithAck("join_conversation", { conversationId: "c1" });
  if (joined.ok) conversations.set(joined.conversation.id, joined.conversation);
  acked.timeout(5000).emit("leave_conversation", { conversationId: "c1" }, (err, left) => {
    if (err) console.log("no answer in time");
    else if (!left.ok) console.log(left.error.code);
  });
}

// --- REST: the change feed after a reconnect --------------------------------------------------
async function api<T>(path: string): Promise<T> {
  const res = await fetch(`${API}${path}`, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) {
    const problem = (await res.json()) as Problem;
    throw new Error(`${problem.status} ${problem.code}: ${problem.detail}`);
  }
  return (await res.json()) as T;
}

async function catchUp(): Promise<void> {
  for (;;) {
    const page = await api<SyncPage>(`/sync?since=${encodeURIComponent(cursor ?? "")}`);
    for (const e of page.events) {
      switch (e.event) {
        case "new_message":
        case "message_edited":
        case "message_deleted":
          messages.set(e.data.id, e.data);
          break;
        case "messages_read":
          console.log(e.data.userId, e.data.lastReadSeq);
          break;
        case "conversation_updated":
          conversations.set(e.data.id, e.data);
          break;
      }
      cursor = e.data.cursor;
    }
    cursor = page.nextCursor;
    if (!page.hasMore) break;
  }
  const inbox = await api<Page<Conversation>>("/conversations?limit=20");
  for (const c of inbox.items) conversations.set(c.id, c);
  console.log(inbox.nextCursor ?? "no more");
}

socket.on("connect", () => void catchUp().then(promiseStyle));
