//! The client events of the contract. Each takes an optional acknowledgement, answered with
//! `{ ok: true, ... }` or `{ ok: false, error: { code, message } }`; a payload that does not
//! fit is `bad_request` (the socket stays connected); a conversation the user is not in is
//! `not_found`. Sending and reading call the same domain service as REST, which announces the
//! change to every participant after its commit.
//!
//! Handlers are registered by the connect middleware ([`crate::auth::authenticate`] calls
//! [`register`]), before the client learns that it is connected: socketioxide runs the
//! connect handler on another task, and a client that emits at once would otherwise race it.

use crate::auth::SocketUser;
use crate::{Gateway, conversation_room, user_room};
use chat_shared::domain::Caller;
use chat_shared::error::{ChatError, ChatResult, ErrorCode};
use chat_shared::events::{Audience, client_names};
use chat_shared::wire::{
    ConversationRef, JoinConversationAck, MarkAsReadAck, SendMessageAck, SendMessageRequest,
    SocketMarkAsRead, ack_body, from_object,
};
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::extract::{AckSender, MaybeExtension, SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// Conversations this socket joined (and so watches on the bus). Closed by the disconnect
/// handler: a join still in flight then adds nothing, so no watch outlives the socket.
#[derive(Debug, Clone, Default)]
pub struct Joined(Arc<Mutex<JoinedState>>);

#[derive(Debug, Default)]
struct JoinedState {
    conversations: HashSet<String>,
    closed: bool,
}

/// What [`Joined::add`] did.
enum Join<T> {
    /// The socket is gone: nothing recorded.
    Closed,
    /// Joined before: nothing to do.
    Already,
    /// Recorded; `then` ran.
    Added(T),
    /// The socket has joined as many conversations as it may.
    Full,
}

impl Joined {
    /// Records a join and runs `then` under the same lock when it is new, unless the socket
    /// holds `max` joins already.
    fn add<T>(&self, conversation: &str, max: usize, then: impl FnOnce() -> T) -> Join<T> {
        let Ok(mut state) = self.0.lock() else {
            return Join::Closed;
        };
        if state.closed {
            return Join::Closed;
        }
        if state.conversations.contains(conversation) {
            return Join::Already;
        }
        if state.conversations.len() >= max {
            return Join::Full;
        }
        state.conversations.insert(conversation.to_owned());
        Join::Added(then())
    }

    /// Records a leave and runs `then` under the same lock when it was joined.
    fn remove(&self, conversation: &str, then: impl FnOnce()) {
        if let Ok(mut state) = self.0.lock()
            && state.conversations.remove(conversation)
        {
            then();
        }
    }

    fn contains(&self, conversation: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|state| state.conversations.contains(conversation))
    }

    fn is_closed(&self) -> bool {
        self.0.lock().map_or(true, |state| state.closed)
    }

    /// Closes the set and returns what was joined; `None` when it was closed already.
    fn close(&self) -> Option<Vec<String>> {
        let mut state = self.0.lock().ok()?;
        if state.closed {
            return None;
        }
        state.closed = true;
        Some(state.conversations.drain().collect())
    }
}

/// What a handler works with.
struct Ctx {
    gateway: Arc<Gateway>,
    socket: SocketRef,
    caller: Arc<Caller>,
    joined: Joined,
}

/// Puts an authenticated socket in its user's room and registers its handlers. Returns once
/// the user's events reach this replica.
pub async fn register(socket: &SocketRef, gateway: &Gateway, caller: &Caller) {
    let user = caller.id.as_str();
    socket.extensions.insert(Joined::default());
    socket.extensions.insert(TypingBudget::default());
    socket.join(user_room(user));

    handle(socket, client_names::JOIN_CONVERSATION, join_conversation);
    handle(socket, client_names::LEAVE_CONVERSATION, leave_conversation);
    handle(socket, client_names::SEND_MESSAGE, send_message);
    handle(socket, client_names::TYPING_START, typing_start);
    handle(socket, client_names::TYPING_STOP, typing_stop);
    handle(socket, client_names::MARK_AS_READ, mark_as_read);
    socket.on_fallback(unknown_event);
    socket.on_disconnect(on_disconnect);
    gateway.watch(&Audience::User(user.to_owned())).await;
}

/// Any other event: its acknowledgement, if asked for, says `bad_request` (an unanswered ack
/// would leave the client waiting for its timeout); the socket stays.
async fn unknown_event(
    socketioxide::extract::Event(name): socketioxide::extract::Event,
    ack: AckSender,
    State(gateway): State<Arc<Gateway>>,
) {
    gateway.event_arrived();
    let shown: String = name.chars().take(64).collect();
    let result = Err(ChatError::bad_request(format!(
        "event: `{shown}` is not an event of this API (see docs/events.md)"
    )));
    // One label for every unknown name: a client cannot grow the metrics without bound.
    count(&gateway, "unknown", &result);
    answer(ack, "unknown", result);
}

/// Connect handler. Everything a socket needs was set up by the connect middleware, before
/// the client learned it is connected; this only records the connection in the logs.
pub async fn on_connect(
    socket: SocketRef,
    State(gateway): State<Arc<Gateway>>,
    MaybeExtension(user): MaybeExtension<SocketUser>,
) {
    // The handshake completed: from now on the disconnect handler undoes the setup.
    if let Ok(mut pending) = gateway.handshakes.lock() {
        pending.remove(&socket.id);
    }
    if let Some(SocketUser(caller)) = user {
        tracing::debug!(user = caller.id.as_str(), sid = %socket.id, "socket connected");
    }
}

async fn on_disconnect(
    socket: SocketRef,
    reason: DisconnectReason,
    State(gateway): State<Arc<Gateway>>,
) {
    tracing::debug!(sid = %socket.id, ?reason, "socket disconnected");
    socket_gone(&gateway, &socket).await;
}

/// Undoes what a connected socket set up: its count, its typing, its watches on the bus and
/// its presence (announcing `offline` when it was its user's last socket). Runs once per
/// socket: from its disconnect handler, or from a drain, after which socketioxide runs no
/// disconnect handler (it forgets its namespaces before closing their sockets).
pub(crate) async fn socket_gone(gateway: &Gateway, socket: &SocketRef) {
    let Some(SocketUser(caller)) = socket.extensions.get::<SocketUser>() else {
        return;
    };
    // Closing the joined set is the "once": whoever closes it first does the rest.
    let Some(conversations) = socket.extensions.get::<Joined>().and_then(|j| j.close()) else {
        return;
    };
    let _busy = Busy::new(&gateway.disconnecting);
    let ip = socket
        .extensions
        .get::<crate::auth::SocketIp>()
        .map(|s| s.0);
    gateway.release_socket(caller.id.as_str(), ip);
    let user = caller.id.as_str();
    let sid = socket.id.to_string();
    gateway.typing.socket_gone(&sid);
    for conversation in conversations {
        gateway.unwatch(&Audience::Conversation(conversation));
    }
    gateway.unwatch(&Audience::User(user.to_owned()));
    gone_offline(gateway, user, &sid).await;
}

/// Counts a running disconnect handler for as long as it lives.
struct Busy<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Busy<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) async fn gone_offline(gateway: &Gateway, user: &str, sid: &str) {
    let now = gateway.now();
    match gateway.presence.disconnected(user, sid, now).await {
        Ok(true) => gateway.announce_status(user, false, Some(now)).await,
        Ok(false) => {}
        Err(e) => tracing::warn!(user, error = %e, "presence not updated"),
    }
}

/// Registers `event`: parses nothing itself, but guarantees every call is answered.
fn handle<F, Fut>(socket: &SocketRef, event: &'static str, f: F)
where
    F: Fn(Ctx, Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ChatResult<Value>> + Send + 'static,
{
    socket.on(
        event,
        move |socket: SocketRef,
              TryData(data): TryData<Value>,
              ack: AckSender,
              State(gateway): State<Arc<Gateway>>| {
            let f = f.clone();
            // Every log line of the event carries the socket and a trace id, which the
            // events it announces take across the bus (see `chat_shared::trace`).
            let trace = chat_shared::trace::new_id();
            let span = tracing::info_span!(
                "socket_event",
                event,
                socket_id = %socket.id,
                trace_id = %trace,
            );
            let work = async move {
                let counted = Arc::clone(&gateway);
                counted.event_arrived();
                let _busy = Busy::new(&counted.in_flight);
                let user = socket.extensions.get::<SocketUser>();
                let joined = socket.extensions.get::<Joined>().unwrap_or_default();
                let result = match (data, user) {
                    (_, None) => Err(ChatError::unauthorized("socket is not authenticated")),
                    (Err(_), _) => Err(ChatError::bad_request(
                        "payload: expected an object as the first argument",
                    )),
                    (Ok(data), Some(SocketUser(caller))) => {
                        let timeout = gateway.core.service.limits().request_timeout;
                        let ctx = Ctx {
                            gateway,
                            socket,
                            caller,
                            joined,
                        };
                        // A send already handed to the batching writer goes on without us
                        // and is found by a retry with the same clientMessageId.
                        chat_shared::deadline::within(timeout, f(ctx, data))
                            .await
                            .unwrap_or_else(|| {
                                tracing::warn!(event, "event timed out: answering unavailable");
                                Err(ChatError::new(
                                    ErrorCode::Unavailable,
                                    "the request did not complete in time, retry later",
                                ))
                            })
                    }
                };
                count(&counted, event, &result);
                answer(ack, event, result);
            };
            chat_shared::trace::within(trace, work).instrument(span)
        },
    );
}

/// Counts a client event by name and outcome on `/metrics`.
fn count(gateway: &Gateway, event: &str, result: &ChatResult<Value>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => {
            gateway.core.metrics.reject("socket", e.code.as_str());
            e.code.as_str()
        }
    };
    tracing::debug!(outcome, "event answered");
    gateway
        .core
        .metrics
        .socket_events
        .get_or_create(&chat_shared::metrics::EventLabels {
            event: event.to_owned(),
            outcome: outcome.to_owned(),
        })
        .inc();
}

/// The acknowledgement: `{ ok: true, ...fields }` or `{ ok: false, error }`
/// ([`ack_body`], whose shape the TypeScript definitions describe).
fn answer(ack: AckSender, event: &str, result: ChatResult<Value>) {
    if let Err(e) = &result
        && matches!(e.code, ErrorCode::Internal | ErrorCode::Unavailable)
    {
        tracing::warn!(event, error = %e, "socket event failed");
    }
    if let Err(e) = ack.send(&ack_body(result)) {
        tracing::debug!(event, error = %e, "acknowledgement not sent");
    }
}

/// An acknowledgement's fields from its wire type (`JoinConversationAck`, …): the type is
/// what the TypeScript definitions are generated from, so the two cannot drift apart.
fn fields<T: Serialize>(ack: &T) -> ChatResult<Value> {
    serde_json::to_value(ack).map_err(|e| ChatError::internal(&e))
}

fn conversation_ref(data: &Value) -> ChatResult<ConversationRef> {
    from_object(data.clone(), "payload")
}

async fn join_conversation(ctx: Ctx, data: Value) -> ChatResult<Value> {
    let id = conversation_ref(&data)?.conversation_id;
    let conversation = ctx
        .gateway
        .core
        .service
        .get_conversation(&ctx.caller, &id)
        .await?;
    let max = ctx.gateway.core.service.limits().max_joins_per_socket;
    let watched = ctx.joined.add(&id, max, || {
        ctx.socket.join(conversation_room(&id));
        ctx.gateway
            .core
            .events
            .watch(&Audience::Conversation(id.clone()))
    });
    match watched {
        // The ack promises typing from now on: only once the room's channel is subscribed.
        Join::Added(subscribed) => subscribed.await,
        Join::Full => {
            return Err(ChatError::bad_request(format!(
                "conversationId: this socket has joined {max} conversations, the most it may \
                 (MAX_JOINS_PER_SOCKET); leave one first"
            )));
        }
        Join::Closed | Join::Already => {}
    }
    // Who is online now, so that a client can show it before any `user_status_change`.
    let others: Vec<String> = conversation
        .participants
        .iter()
        .filter(|p| p.as_str() != ctx.caller.id.as_str())
        .cloned()
        .collect();
    let online = ctx
        .gateway
        .presence
        .online(&others)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "presence unavailable for join_conversation");
            Vec::new()
        });
    fields(&JoinConversationAck {
        conversation,
        online,
    })
}

async fn leave_conversation(ctx: Ctx, data: Value) -> ChatResult<Value> {
    let id = member_conversation(&ctx, &data).await?;
    ctx.joined.remove(&id, || {
        ctx.socket.leave(conversation_room(&id));
        ctx.gateway.unwatch(&Audience::Conversation(id.clone()));
    });
    Ok(json!({}))
}

async fn send_message(ctx: Ctx, data: Value) -> ChatResult<Value> {
    let id = conversation_ref(&data)?.conversation_id;
    let request: SendMessageRequest = from_object(data, "payload")?;
    let sent = ctx
        .gateway
        .core
        .service
        .send_message(&ctx.caller, &id, request)
        .await?;
    fields(&SendMessageAck {
        message: sent.message,
        duplicate: !sent.created,
    })
}

/// The payload's conversation, which the user must be in: known for a conversation this
/// socket joined, checked otherwise (a stranger gets `not_found`, as from REST).
async fn member_conversation(ctx: &Ctx, data: &Value) -> ChatResult<String> {
    let id = conversation_ref(data)?.conversation_id;
    if !ctx.joined.contains(&id) {
        ctx.gateway
            .core
            .service
            .check_participant(&ctx.caller, &id)
            .await?;
    }
    Ok(id)
}

/// The typing events of one socket in the last 10 s, to hold them to
/// `TYPING_EVENTS_PER_10S`.
#[derive(Debug, Clone, Default)]
pub struct TypingBudget(Arc<Mutex<chat_shared::ratelimit::SlidingLog>>);

const TYPING_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes one typing event from the socket's budget, or says when one is free again.
fn typing_allowed(ctx: &Ctx) -> ChatResult<()> {
    let limit = ctx.gateway.core.service.limits().typing_events_per_10s as usize;
    let budget = ctx
        .socket
        .extensions
        .get::<TypingBudget>()
        .unwrap_or_default();
    let Ok(mut log) = budget.0.lock() else {
        return Ok(());
    };
    log.take(limit, TYPING_WINDOW, std::time::Instant::now())
        .map_err(|wait| ChatError {
            detail: format!(
                "too many typing events on this socket (TYPING_EVENTS_PER_10S); retry in {} ms",
                wait.as_millis()
            ),
            ..ChatError::rate_limited(wait)
        })
}

async fn typing_start(ctx: Ctx, data: Value) -> ChatResult<Value> {
    typing_allowed(&ctx)?;
    let id = member_conversation(&ctx, &data).await?;
    // A socket that disconnected while this was checked must not leave an indicator behind.
    if !ctx.joined.is_closed() {
        ctx.gateway
            .typing
            .start(&id, ctx.caller.id.as_str(), &ctx.socket.id.to_string());
    }
    Ok(json!({}))
}

async fn typing_stop(ctx: Ctx, data: Value) -> ChatResult<Value> {
    typing_allowed(&ctx)?;
    let id = member_conversation(&ctx, &data).await?;
    ctx.gateway.typing.stop(&id, ctx.caller.id.as_str());
    Ok(json!({}))
}

async fn mark_as_read(ctx: Ctx, data: Value) -> ChatResult<Value> {
    let request: SocketMarkAsRead = from_object(data, "payload")?;
    let state = ctx
        .gateway
        .core
        .service
        .mark_read(&ctx.caller, &request.conversation_id, request.up_to_seq)
        .await?;
    fields(&MarkAsReadAck {
        last_read_seq: state.last_read_seq,
        unread_count: state.unread_count,
        read_at: state.read_at,
    })
}
