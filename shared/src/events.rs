//! Client-visible events and the bus that carries them from the process that made a change
//! (API or gateway) to every gateway that has sockets to deliver them to.
//!
//! An [`Event`] is addressed to one [`Audience`]: a user (every socket of that user, on any
//! replica) or a conversation room (sockets that joined it: typing only). Its payload is
//! serialized once, when the event is made, and travels as JSON text.
//!
//! Two buses implement [`EventBus`]: [`LocalBus`] inside one process (the embedded default)
//! and [`crate::redis_bus::RedisBus`] across processes (scaled mode). Publishing never blocks
//! and never fails the caller: the change is already committed (with its feed entries and, when
//! scaled, its outbox row), and a client that missed an event recovers it from its change feed.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Server-to-client event names, as `CONTRACT.md` spells them.
pub mod names {
    pub const NEW_MESSAGE: &str = "new_message";
    pub const MESSAGE_EDITED: &str = "message_edited";
    pub const MESSAGE_DELETED: &str = "message_deleted";
    pub const MESSAGES_READ: &str = "messages_read";
    pub const UNREAD_COUNT_UPDATED: &str = "unread_count_updated";
    pub const CONVERSATION_UPDATED: &str = "conversation_updated";
    pub const USER_TYPING_START: &str = "user_typing_start";
    pub const USER_TYPING_STOP: &str = "user_typing_stop";
    pub const USER_STATUS_CHANGE: &str = "user_status_change";
}

/// Client-to-server event names, as `CONTRACT.md` spells them: the gateway registers a handler
/// under each, and the TypeScript definitions (`crate::ts`, feature `ts`) name them the same.
pub mod client_names {
    pub const JOIN_CONVERSATION: &str = "join_conversation";
    pub const LEAVE_CONVERSATION: &str = "leave_conversation";
    pub const SEND_MESSAGE: &str = "send_message";
    pub const TYPING_START: &str = "typing_start";
    pub const TYPING_STOP: &str = "typing_stop";
    pub const MARK_AS_READ: &str = "mark_as_read";
}

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Audience {
    /// Every socket of one user, wherever it is connected.
    User(String),
    /// The sockets that joined one conversation's room.
    Conversation(String),
}

/// One event for one audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub audience: Audience,
    /// The Socket.IO event name.
    pub name: String,
    /// The payload as JSON text, serialized once for every audience that shares it.
    pub payload: Arc<str>,
    /// Sockets of this user don't get the event (a typer doesn't see their own typing).
    pub except_user: Option<String>,
    /// The event's place in the recipient's change feed (contract v1.1), added to the payload
    /// as `cursor` when it reaches a socket. Set for a user's own copy of a feed event.
    pub cursor: Option<String>,
    /// On the last event of a change that has an outbox row (scaled mode): once this event is
    /// on Redis, so are the change's others, and the row can go. Not sent anywhere.
    pub outbox: Option<i64>,
    /// The trace id of the request or socket event that made it ([`crate::trace`]).
    pub trace: Option<Arc<str>>,
    /// When it was made, in microseconds since the Unix epoch (wall clock: it is compared
    /// on another process), for the publish-to-deliver latency.
    pub made_at_us: i64,
}

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Event {
    /// The same payload for each of `users`, serialized once.
    pub fn to_users<'a, T: Serialize + ?Sized>(
        users: impl IntoIterator<Item = &'a str>,
        name: &str,
        payload: &T,
    ) -> Vec<Self> {
        let Some(payload) = to_json(name, payload) else {
            return Vec::new();
        };
        let trace = crate::trace::current();
        let made_at_us = now_us();
        users
            .into_iter()
            .map(|user| Self {
                audience: Audience::User(user.to_owned()),
                name: name.to_owned(),
                payload: payload.clone(),
                except_user: None,
                cursor: None,
                outbox: None,
                trace: trace.clone(),
                made_at_us,
            })
            .collect()
    }

    /// Gives each user's event its place in that user's feed, from the change's `cursors`,
    /// and the last one the change's outbox row.
    pub fn with_cursors(mut events: Vec<Self>, cursors: &crate::store::Cursors) -> Vec<Self> {
        if cursors.is_empty() {
            return events;
        }
        for event in &mut events {
            if let Audience::User(user) = &event.audience
                && let Some(pos) = cursors.of(user)
            {
                event.cursor = Some(crate::store::feed::cursor(user, pos));
            }
        }
        if let Some(last) = events.last_mut() {
            last.outbox = cursors.outbox;
        }
        events
    }

    /// The payload as a socket gets it: with `"cursor"` first when the event has one.
    pub fn delivered_payload(&self) -> std::borrow::Cow<'_, str> {
        match (&self.cursor, self.payload.strip_prefix('{')) {
            (Some(cursor), Some(rest)) => {
                let cursor = serde_json::Value::from(cursor.as_str());
                let sep = if rest.trim_start().starts_with('}') {
                    ""
                } else {
                    ","
                };
                std::borrow::Cow::Owned(format!("{{\"cursor\":{cursor}{sep}{rest}"))
            }
            _ => std::borrow::Cow::Borrowed(&self.payload),
        }
    }

    /// One user's own event (their view of a conversation, their unread counts).
    pub fn to_user<T: Serialize + ?Sized>(user: &str, name: &str, payload: &T) -> Option<Self> {
        Self::to_users([user], name, payload).pop()
    }

    /// An event for the sockets in a conversation's room, except `except_user`'s.
    pub fn to_room<T: Serialize + ?Sized>(
        conversation_id: &str,
        name: &str,
        payload: &T,
        except_user: Option<&str>,
    ) -> Option<Self> {
        Some(Self {
            audience: Audience::Conversation(conversation_id.to_owned()),
            name: name.to_owned(),
            payload: to_json(name, payload)?,
            except_user: except_user.map(str::to_owned),
            cursor: None,
            outbox: None,
            trace: crate::trace::current(),
            made_at_us: now_us(),
        })
    }
}

/// Wire types always serialize; a failure is a bug, logged rather than panicking a request.
fn to_json<T: Serialize + ?Sized>(name: &str, payload: &T) -> Option<Arc<str>> {
    match serde_json::to_string(payload) {
        Ok(json) => Some(json.into()),
        Err(e) => {
            tracing::error!(event = name, error = %e, "event payload does not serialize");
            None
        }
    }
}

/// Carries events between processes.
pub trait EventBus: Send + Sync + 'static {
    /// `"local"` or `"redis"`, for logs and health.
    fn kind(&self) -> &'static str;

    /// Hands events over in order. Never blocks: a bus that cannot keep up drops (and counts)
    /// what it cannot hold.
    fn publish(&self, events: Vec<Event>);

    /// This process has sockets for `audience` (counted: call [`EventBus::unwatch`] as often).
    /// Only watched audiences reach [`EventBus::take_receiver`]'s stream. The returned future
    /// completes once events for `audience` are actually flowing (Redis confirmed the
    /// subscription), or when that cannot be known soon (Redis away): a caller that awaits it
    /// before telling the client "joined" never promises events that cannot arrive yet.
    fn watch(&self, audience: &Audience) -> Watched;

    /// The counterpart of [`EventBus::watch`].
    fn unwatch(&self, audience: &Audience);

    /// The stream of events for this process's watched audiences. The first call takes it;
    /// later calls get `None` (one gateway per process).
    fn take_receiver(&self) -> Option<mpsc::Receiver<Event>>;

    /// Whether the bus can currently deliver across processes (always, for the local bus).
    fn is_healthy(&self) -> bool;

    /// Whether this process delivers events to sockets (a gateway took the receiver).
    fn delivers(&self) -> bool;

    /// Events dropped since start because a queue was full.
    fn dropped(&self) -> u64;

    /// Events handed over but not yet sent on (for a clean shutdown to wait on).
    fn pending(&self) -> usize;
}

/// Waits until `bus` has sent on what it was given, at most `limit`.
pub async fn drain(bus: &dyn EventBus, limit: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while bus.pending() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if bus.pending() > 0 {
        tracing::warn!(
            pending = bus.pending(),
            "shutting down with events not yet published"
        );
    }
}

/// What [`EventBus::watch`] returns.
pub type Watched = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A [`Watched`] that is already complete (in-process buses watch nothing).
pub fn watched_now() -> Watched {
    Box::pin(std::future::ready(()))
}

/// Events waiting for the gateway's delivery loop, per process.
pub const DELIVERY_QUEUE: usize = 65_536;

/// The in-process bus of the embedded default: publishing hands the event straight to this
/// process's gateway. Watching is not needed: every audience is local.
pub struct LocalBus {
    tx: mpsc::Sender<Event>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Event>>>,
    /// Set once a gateway takes the receiver; before that (or in a process without one)
    /// events have nowhere to go and are discarded.
    delivering: std::sync::atomic::AtomicBool,
    dropped: AtomicU64,
}

impl LocalBus {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            delivering: std::sync::atomic::AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus for LocalBus {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn publish(&self, events: Vec<Event>) {
        if !self.delivering.load(Ordering::Relaxed) {
            return;
        }
        for event in events {
            match self.tx.try_send(event) {
                Ok(()) => {}
                // Nobody delivers in this process (an API without gateway): nothing to do.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(event = %event.name, dropped = n, "delivery queue full: event dropped");
                }
            }
        }
    }

    fn watch(&self, _: &Audience) -> Watched {
        watched_now()
    }

    fn unwatch(&self, _: &Audience) {}

    fn take_receiver(&self) -> Option<mpsc::Receiver<Event>> {
        let rx = self.rx.lock().ok()?.take()?;
        self.delivering.store(true, Ordering::Relaxed);
        Some(rx)
    }

    fn is_healthy(&self) -> bool {
        true
    }

    fn delivers(&self) -> bool {
        self.delivering.load(Ordering::Relaxed)
    }

    fn pending(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_bus_delivers_in_order_and_payloads_are_shared() {
        let bus = LocalBus::new();
        let mut rx = bus.take_receiver().expect("first take");
        assert!(bus.take_receiver().is_none());
        let events = Event::to_users(["a", "b"], names::NEW_MESSAGE, &serde_json::json!({"x": 1}));
        assert!(Arc::ptr_eq(&events[0].payload, &events[1].payload));
        bus.publish(events);
        let first = rx.recv().await.expect("first");
        let second = rx.recv().await.expect("second");
        assert_eq!(first.audience, Audience::User("a".into()));
        assert_eq!(second.audience, Audience::User("b".into()));
        assert_eq!(&*first.payload, r#"{"x":1}"#);
    }

    #[test]
    fn a_feed_event_reaches_each_user_with_their_own_cursor() {
        let events = Event::to_users(["a", "b"], names::NEW_MESSAGE, &serde_json::json!({"x": 1}));
        let cursors = crate::store::Cursors {
            positions: vec![("b".to_owned(), 9), ("a".to_owned(), 4)],
            outbox: Some(12),
        };
        let events = Event::with_cursors(events, &cursors);
        let a: serde_json::Value =
            serde_json::from_str(&events[0].delivered_payload()).expect("json");
        let b: serde_json::Value =
            serde_json::from_str(&events[1].delivered_payload()).expect("json");
        assert_eq!(a["cursor"], crate::store::feed::cursor("a", 4));
        assert_eq!(b["cursor"], crate::store::feed::cursor("b", 9));
        assert_eq!((a["x"].clone(), b["x"].clone()), (1.into(), 1.into()));
        assert_eq!(
            (events[0].outbox, events[1].outbox),
            (None, Some(12)),
            "the change's last event carries its outbox row"
        );
        let bare = Event::to_user("c", names::NEW_MESSAGE, &serde_json::json!({})).expect("event");
        assert_eq!(bare.delivered_payload(), "{}");
        let one = crate::store::Cursors {
            positions: vec![("c".to_owned(), 1)],
            outbox: None,
        };
        let empty = Event::with_cursors(vec![bare], &one);
        let c: serde_json::Value =
            serde_json::from_str(&empty[0].delivered_payload()).expect("an empty object too");
        assert_eq!(c["cursor"], crate::store::feed::cursor("c", 1));
    }

    #[test]
    fn without_a_receiver_events_are_discarded_quietly() {
        let bus = LocalBus::new();
        let one = Event::to_user("a", names::NEW_MESSAGE, &1).expect("event");
        bus.publish(vec![one; DELIVERY_QUEUE + 3]);
        assert_eq!(bus.dropped(), 0);
        let mut rx = bus.take_receiver().expect("receiver");
        assert!(
            rx.try_recv().is_err(),
            "nothing was queued before delivery started"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let bus = LocalBus::new();
        let _rx = bus.take_receiver();
        let one = Event::to_user("a", names::NEW_MESSAGE, &1).expect("event");
        bus.publish(vec![one; DELIVERY_QUEUE + 3]);
        assert_eq!(bus.dropped(), 3);
    }
}
