//! The event bus across processes: Redis pub/sub with one channel per user and one per
//! conversation room, subscribed only while this process has sockets for them.
//!
//! - `{prefix}:u:{userId}` carries everything for one user's sockets: messages, edits, reads,
//!   unread counts, conversation updates, presence of their contacts.
//! - `{prefix}:c:{conversationId}` carries typing for the sockets that joined the room.
//!
//! A replica's Redis traffic therefore grows with its own users, not with all traffic
//! (`docs/realtime.md` explains the choice over socketioxide's Redis adapter).
//!
//! Both directions survive a Redis restart: the publisher keeps its batch and retries on a
//! reconnecting connection manager (events published meanwhile wait in a bounded queue), and
//! the subscriber reconnects with backoff and resubscribes to every watched channel. Events
//! published while the subscriber was away are not replayed; clients catch up through the
//! change feed (`GET /sync`). Events that never reached Redis are published again from the
//! outbox (see `ChatService::relay_outbox`).

use crate::events::{Audience, DELIVERY_QUEUE, Event, EventBus, Watched};
use crate::metrics::BusMetrics;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Events waiting to be published, per process.
const PUBLISH_QUEUE: usize = 65_536;
/// Events per pipeline round trip.
const PUBLISH_BATCH: usize = 512;
/// An idle publisher pings this often, so health reflects Redis even without traffic.
const IDLE_PING: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a watcher waits for Redis to confirm a subscription before going on without it.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// What travels on a channel: the event name, the excluded user, the payload as is, and the
/// event's id (its publisher and that publisher's sequence number), by which a subscriber
/// drops the second copy of a batch that was published again after a failure.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    i: Option<EventId>,
    e: &'a str,
    #[serde(default)]
    x: Option<&'a str>,
    /// The recipient's feed cursor, when the event has one.
    #[serde(default)]
    c: Option<&'a str>,
    /// The trace id of the request that made the event.
    #[serde(default)]
    t: Option<&'a str>,
    /// When it was made (microseconds since the Unix epoch).
    #[serde(default)]
    m: i64,
    #[serde(borrow)]
    d: &'a RawValue,
}

/// `(publisher, sequence)`: unique per event across processes.
type EventId = (u64, u64);

/// Ids of the events seen lately, to drop republished copies.
struct Recent {
    seen: std::collections::HashSet<EventId>,
    order: std::collections::VecDeque<EventId>,
}

impl Recent {
    /// A retried batch holds at most `PUBLISH_BATCH` events, published again soon after: a
    /// window many batches wide catches every copy.
    const WINDOW: usize = 32 * PUBLISH_BATCH;

    fn new() -> Self {
        Self {
            seen: std::collections::HashSet::with_capacity(Self::WINDOW),
            order: std::collections::VecDeque::with_capacity(Self::WINDOW),
        }
    }

    /// `true` the first time `id` is seen.
    fn first_time(&mut self, id: EventId) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

enum Control {
    /// Subscribe (again: Redis ignores a repeat) and say so once Redis confirmed.
    Subscribe(String, tokio::sync::oneshot::Sender<()>),
    Unsubscribe(String),
}

#[derive(Default)]
struct Health {
    publisher_up: AtomicBool,
    subscriber_started: AtomicBool,
    subscriber_up: AtomicBool,
    dropped: AtomicU64,
    /// Queued or in a batch, not yet published.
    pending: std::sync::atomic::AtomicUsize,
}

pub struct RedisBus {
    client: redis::Client,
    prefix: Arc<str>,
    publish_tx: mpsc::Sender<Event>,
    /// Watched channels and how many local holders each has. Control messages are sent under
    /// this lock so that their order matches the map's history.
    watched: Arc<Mutex<HashMap<String, usize>>>,
    control_tx: mpsc::UnboundedSender<Control>,
    control_rx: Mutex<Option<mpsc::UnboundedReceiver<Control>>>,
    health: Arc<Health>,
    metrics: BusMetrics,
}

impl RedisBus {
    /// Starts the publisher. The subscriber starts with [`EventBus::take_receiver`], so a
    /// process that only publishes (`chat-api`) holds no subscription. Fails only on a URL
    /// that cannot work; an unreachable Redis is retried in the background (and reported by
    /// [`EventBus::is_healthy`]).
    /// Outbox rows whose events Redis took are sent to `published` (see
    /// [`Event::outbox`]).
    pub fn start(
        url: &str,
        prefix: &str,
        metrics: BusMetrics,
        published: Option<mpsc::UnboundedSender<Vec<i64>>>,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let prefix: Arc<str> = prefix.into();
        tokio::spawn(publish_loop(
            client.clone(),
            prefix.clone(),
            publish_rx,
            health.clone(),
            metrics.clone(),
            published,
        ));
        Ok(Arc::new(Self {
            client,
            prefix,
            publish_tx,
            watched: Arc::default(),
            control_tx,
            control_rx: Mutex::new(Some(control_rx)),
            health,
            metrics,
        }))
    }
}

fn channel(prefix: &str, audience: &Audience) -> String {
    match audience {
        Audience::User(id) => format!("{prefix}:u:{id}"),
        Audience::Conversation(id) => format!("{prefix}:c:{id}"),
    }
}

fn audience(prefix: &str, channel: &str) -> Option<Audience> {
    let rest = channel.strip_prefix(prefix)?.strip_prefix(':')?;
    if let Some(user) = rest.strip_prefix("u:") {
        Some(Audience::User(user.to_owned()))
    } else {
        rest.strip_prefix("c:")
            .map(|c| Audience::Conversation(c.to_owned()))
    }
}

/// The envelope of `event` as JSON. The payload was serialized once, when the event was made,
/// and is spliced in as it is: not parsed again for each of the channels it goes to.
fn envelope(event: &Event, id: EventId) -> Option<String> {
    let name = serde_json::to_string(&event.name).ok()?;
    let except = match &event.except_user {
        Some(user) => format!(r#","x":{}"#, serde_json::to_string(user).ok()?),
        None => String::new(),
    };
    let cursor = match &event.cursor {
        Some(cursor) => format!(r#","c":{}"#, serde_json::to_string(cursor).ok()?),
        None => String::new(),
    };
    let trace = match &event.trace {
        Some(trace) => format!(r#","t":{}"#, serde_json::to_string(trace).ok()?),
        None => String::new(),
    };
    Some(format!(
        r#"{{"i":[{},{}],"e":{name}{except}{cursor}{trace},"m":{},"d":{}}}"#,
        id.0, id.1, event.made_at_us, event.payload
    ))
}

fn decode(prefix: &str, channel: &str, payload: &[u8]) -> Option<(Event, Option<EventId>)> {
    let audience = audience(prefix, channel)?;
    let envelope: Envelope<'_> = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(channel, error = %e, "ignoring a message that is not an event");
            return None;
        }
    };
    let event = Event {
        audience,
        name: envelope.e.to_owned(),
        payload: envelope.d.get().into(),
        except_user: envelope.x.map(str::to_owned),
        cursor: envelope.c.map(str::to_owned),
        outbox: None,
        trace: envelope.t.map(Into::into),
        made_at_us: envelope.m,
    };
    Some((event, envelope.i))
}

fn backoff_after(current: Duration) -> Duration {
    (current * 2).min(MAX_BACKOFF)
}

async fn connect_manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(MAX_BACKOFF);
    client.get_connection_manager_with_config(config).await
}

/// Publishes queued events in pipelined batches, in order. A failed batch is kept and
/// retried, so a Redis restart delays events rather than losing them (a batch that failed
/// halfway may be delivered twice: clients dedupe by id).
async fn publish_loop(
    client: redis::Client,
    prefix: Arc<str>,
    mut rx: mpsc::Receiver<Event>,
    health: Arc<Health>,
    metrics: BusMetrics,
    published: Option<mpsc::UnboundedSender<Vec<i64>>>,
) {
    let mut conn: Option<ConnectionManager> = None;
    let mut batch: Vec<(String, String)> = Vec::new();
    // Outbox rows completed by the events of `batch`.
    let mut outboxes: Vec<i64> = Vec::new();
    // Events taken off the queue for the current batch (some may not serialize).
    let mut taken = 0usize;
    let publisher: u64 = rand::random();
    let mut sequence = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        if batch.is_empty() {
            // Connected: wait for events, pinging when idle. Not connected: try now (the
            // failure path backs off), so a replica is ready as soon as Redis answers.
            let idle = if health.publisher_up.load(Ordering::Relaxed) {
                IDLE_PING
            } else {
                Duration::ZERO
            };
            match tokio::time::timeout(idle, rx.recv()).await {
                Ok(None) => return,
                Ok(Some(first)) => {
                    let mut next = Some(first);
                    while let Some(e) = next.take() {
                        taken += 1;
                        sequence += 1;
                        if let Some(body) = envelope(&e, (publisher, sequence)) {
                            batch.push((channel(&prefix, &e.audience), body));
                        }
                        outboxes.extend(e.outbox);
                        if batch.len() < PUBLISH_BATCH {
                            next = rx.try_recv().ok();
                        }
                    }
                }
                // Idle: fall through to a ping.
                Err(_) => {}
            }
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match connect_manager(&client).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    if health.publisher_up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "redis unreachable: events wait for it");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = backoff_after(backoff);
                    continue;
                }
            },
        };
        let mut pipe = redis::pipe();
        if batch.is_empty() {
            pipe.cmd("PING").ignore();
        }
        for (channel, body) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(body).ignore();
        }
        match pipe.query_async::<()>(c).await {
            Ok(()) => {
                metrics.published.inc_by(batch.len() as u64);
                metrics
                    .published_bytes
                    .inc_by(batch.iter().map(|(_, body)| body.len() as u64).sum());
                health.pending.fetch_sub(taken, Ordering::Relaxed);
                taken = 0;
                batch.clear();
                if !outboxes.is_empty()
                    && let Some(published) = &published
                {
                    let _ = published.send(std::mem::take(&mut outboxes));
                }
                outboxes.clear();
                backoff = Duration::from_millis(100);
                if !health.publisher_up.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis publisher connected");
                }
            }
            Err(e) => {
                if health.publisher_up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, pending = batch.len(), "redis publish failed: retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = backoff_after(backoff);
            }
        }
    }
}

/// Keeps one pub/sub connection subscribed to every watched channel, reconnecting with
/// backoff, and forwards what arrives to the gateway's delivery queue.
async fn subscribe_loop(
    client: redis::Client,
    prefix: Arc<str>,
    watched: Arc<Mutex<HashMap<String, usize>>>,
    mut control: mpsc::UnboundedReceiver<Control>,
    deliver: mpsc::Sender<Event>,
    health: Arc<Health>,
    metrics: BusMetrics,
) {
    let mut backoff = Duration::from_millis(100);
    // Kept across reconnects: a batch is republished exactly around them.
    let mut recent = Recent::new();
    loop {
        let pubsub = match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis subscriber cannot connect");
                tokio::time::sleep(backoff).await;
                backoff = backoff_after(backoff);
                continue;
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = backoff_after(backoff);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        // The map is the truth: whatever was asked before now is in it.
        let mut waiting = Vec::new();
        let channels: Vec<String> = {
            let Ok(map) = watched.lock() else { return };
            while let Ok(ctl) = control.try_recv() {
                if let Control::Subscribe(_, done) = ctl {
                    waiting.push(done);
                }
            }
            map.keys().cloned().collect()
        };
        if !channels.is_empty()
            && let Err(e) = sink.subscribe(&channels).await
        {
            tracing::debug!(error = %e, "redis resubscribe failed");
            tokio::time::sleep(backoff).await;
            backoff = backoff_after(backoff);
            continue;
        }
        for done in waiting {
            let _ = done.send(());
        }
        backoff = Duration::from_millis(100);
        health.subscriber_up.store(true, Ordering::Relaxed);
        tracing::info!(channels = channels.len(), "redis subscriber connected");
        let mut liveness = tokio::time::interval(IDLE_PING * 2);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        liveness.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    metrics.received.inc();
                    metrics.received_bytes.inc_by(msg.get_payload_bytes().len() as u64);
                    let Some((event, id)) = decode(&prefix, msg.get_channel_name(), msg.get_payload_bytes()) else {
                        continue;
                    };
                    if id.is_some_and(|id| !recent.first_time(id)) {
                        tracing::debug!(event = %event.name, "dropping a republished event");
                        continue;
                    }
                    if let Err(mpsc::error::TrySendError::Full(event)) = deliver.try_send(event) {
                        let n = health.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(event = %event.name, dropped = n, "delivery queue full: event dropped");
                    }
                }
                ctl = control.recv() => {
                    let Some(first) = ctl else { return };
                    // Whatever else is queued goes in the same round trips (a reconnect storm
                    // of sockets asks for thousands of channels at once).
                    let mut batch = vec![first];
                    while batch.len() < 1024 {
                        match control.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = apply(&mut sink, batch).await {
                        tracing::debug!(error = %e, "redis subscription change failed");
                        break;
                    }
                }
                _ = liveness.tick() => {
                    // A connection that died silently (failover, a dropped NAT entry) never
                    // ends the stream: ask, and reconnect when no answer comes.
                    let alive = tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::warn!("redis subscriber connection does not answer");
                        break;
                    }
                }
            }
        }
        health.subscriber_up.store(false, Ordering::Relaxed);
        tracing::warn!("redis subscription lost: reconnecting");
    }
}

/// Applies subscription changes in order, consecutive subscribes in one command each, and
/// confirms them to their watchers.
async fn apply(sink: &mut redis::aio::PubSubSink, batch: Vec<Control>) -> redis::RedisResult<()> {
    let mut channels = Vec::new();
    let mut confirms = Vec::new();
    for control in batch {
        match control {
            Control::Subscribe(ch, done) => {
                channels.push(ch);
                confirms.push(done);
            }
            Control::Unsubscribe(ch) => {
                if !channels.is_empty() {
                    sink.subscribe(std::mem::take(&mut channels)).await?;
                    for done in confirms.drain(..) {
                        let _ = done.send(());
                    }
                }
                sink.unsubscribe(ch).await?;
            }
        }
    }
    if !channels.is_empty() {
        sink.subscribe(channels).await?;
        for done in confirms {
            let _ = done.send(());
        }
    }
    Ok(())
}

impl EventBus for RedisBus {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn publish(&self, events: Vec<Event>) {
        for event in events {
            self.health.pending.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.publish_tx.try_send(event) {
                self.health.pending.fetch_sub(1, Ordering::Relaxed);
                if let mpsc::error::TrySendError::Full(event) = e {
                    let n = self.health.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(event = %event.name, dropped = n, "publish queue full: event dropped");
                }
            }
        }
    }

    fn watch(&self, audience: &Audience) -> Watched {
        let ch = channel(&self.prefix, audience);
        let (done, confirmed) = tokio::sync::oneshot::channel();
        if let Ok(mut map) = self.watched.lock() {
            let holders = map.entry(ch.clone()).or_insert(0);
            if *holders == 0 {
                self.metrics.channels.inc();
            }
            *holders += 1;
            // Sent for every watcher, not only the first: the first one's subscription may
            // still be on its way, and this watcher must not go on before it is confirmed.
            let _ = self.control_tx.send(Control::Subscribe(ch, done));
        }
        Box::pin(async move {
            // Dropped unanswered (Redis away: the resubscription will cover it) or slow: go on.
            let _ = tokio::time::timeout(SUBSCRIBE_WAIT, confirmed).await;
        })
    }

    fn unwatch(&self, audience: &Audience) {
        let ch = channel(&self.prefix, audience);
        let Ok(mut map) = self.watched.lock() else {
            return;
        };
        if let Some(n) = map.get_mut(&ch) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ch);
                self.metrics.channels.dec();
                let _ = self.control_tx.send(Control::Unsubscribe(ch));
            }
        }
    }

    fn take_receiver(&self) -> Option<mpsc::Receiver<Event>> {
        let control = self.control_rx.lock().ok()?.take()?;
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        self.health
            .subscriber_started
            .store(true, Ordering::Relaxed);
        tokio::spawn(subscribe_loop(
            self.client.clone(),
            self.prefix.clone(),
            self.watched.clone(),
            control,
            tx,
            self.health.clone(),
            self.metrics.clone(),
        ));
        Some(rx)
    }

    fn is_healthy(&self) -> bool {
        self.health.publisher_up.load(Ordering::Relaxed)
            && (!self.health.subscriber_started.load(Ordering::Relaxed)
                || self.health.subscriber_up.load(Ordering::Relaxed))
    }

    fn delivers(&self) -> bool {
        self.health.subscriber_started.load(Ordering::Relaxed)
    }

    fn pending(&self) -> usize {
        self.health.pending.load(Ordering::Relaxed)
    }

    fn dropped(&self) -> u64 {
        self.health.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_user_ids_with_colons() {
        for a in [
            Audience::User("u:42@x".into()),
            Audience::Conversation("0193-abc".into()),
        ] {
            assert_eq!(audience("chat", &channel("chat", &a)), Some(a));
        }
        assert_eq!(audience("chat", "other:u:x"), None);
        assert_eq!(audience("chat", "chatx:u:x"), None);
    }

    #[test]
    fn envelopes_carry_the_payload_verbatim() {
        let event = Event::to_room(
            "c1",
            "user_typing_start",
            &serde_json::json!({"a": [1, "é"]}),
            Some("u1"),
        )
        .expect("event");
        let body = envelope(&event, (7, 42)).expect("envelope");
        let back = decode("chat", "chat:c:c1", body.as_bytes()).expect("decodes");
        assert_eq!(back, (event, Some((7, 42))));
        assert!(decode("chat", "chat:c:c1", b"not json").is_none());
        // A feed event keeps its recipient's cursor across the bus.
        let mut mine =
            Event::to_user("u1", "new_message", &serde_json::json!({"id": "m"})).expect("event");
        mine.cursor = Some("3.abcd".to_owned());
        // And the trace id of the request that made it, and when.
        mine.trace = Some("req-9".into());
        assert!(mine.made_at_us > 1_700_000_000_000_000);
        let body = envelope(&mine, (7, 43)).expect("envelope");
        let back = decode("chat", "chat:u:u1", body.as_bytes()).expect("decodes");
        assert_eq!(back, (mine, Some((7, 43))));
    }

    #[test]
    fn republished_events_are_dropped_within_the_window() {
        let mut recent = Recent::new();
        assert!(recent.first_time((1, 1)));
        assert!(!recent.first_time((1, 1)), "the second copy");
        assert!(recent.first_time((2, 1)), "another publisher's event 1");
        for n in 2..=Recent::WINDOW as u64 + 1 {
            assert!(recent.first_time((1, n)));
        }
        assert!(
            !recent.first_time((1, Recent::WINDOW as u64)),
            "still in the window"
        );
        assert!(
            recent.first_time((1, 1)),
            "forgotten once out of the window"
        );
    }
}
