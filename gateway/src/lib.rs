//! `chat-gateway`: the Socket.IO side of the chat (socketioxide on axum).
//!
//! - [`auth`]: the handshake is authenticated before any handler runs;
//! - [`handlers`]: the client events of the contract, each calling the same domain service as
//!   REST, each answered with an acknowledgement;
//! - [`delivery`]: events from the bus to the rooms of this replica's sockets;
//! - [`presence`], [`typing`]: who is online, who is typing.
//!
//! Rooms: every socket is in `u:<userId>` (all of a user's events go there, so each socket
//! gets each event once) and in `c:<conversationId>` for each conversation it joined (typing).

pub mod auth;
pub mod delivery;
pub mod handlers;
pub mod presence;
pub mod typing;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chat_shared::app::Core;
use chat_shared::config::Settings;
use chat_shared::events::{Audience, Event, names};
use chat_shared::time::Millis;
use chat_shared::wire::{PresenceStatus, UserStatusChange};
use presence::{LocalPresence, Presence, RedisPresence};
use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Sid;
use std::sync::Arc;
use std::time::Duration;
use typing::Typing;

/// Default port of `chat-gateway`.
pub const DEFAULT_PORT: u16 = 8001;

/// Where Socket.IO is served (socket.io-client's default `path`).
pub const SOCKET_PATH: &str = "/socket.io/";

/// The room of every socket of one user.
pub fn user_room(user: &str) -> String {
    format!("u:{user}")
}

/// The room of the sockets that joined one conversation.
pub fn conversation_room(conversation: &str) -> String {
    format!("c:{conversation}")
}

/// A socket admitted by the connect middleware whose connect handler has not run yet: its
/// user, its counted address, and when it was admitted.
pub(crate) type Handshake = (String, Option<std::net::IpAddr>, std::time::Instant);

/// What the socket handlers share.
pub struct Gateway {
    pub core: Core,
    pub presence: Arc<dyn Presence>,
    pub typing: Arc<Typing>,
    /// Disconnect handlers still running (a shutdown waits for them).
    pub(crate) disconnecting: std::sync::atomic::AtomicUsize,
    /// Event handlers still running: their acks are owed (a shutdown waits for them before
    /// closing the sockets).
    pub(crate) in_flight: std::sync::atomic::AtomicUsize,
    /// When the last client event arrived, ms after `started` (a drain waits for a quiet
    /// moment: events already sent by a client may still be on their way in).
    pub(crate) last_event_ms: std::sync::atomic::AtomicU64,
    pub(crate) started: std::time::Instant,
    /// Those sockets per user, for `MAX_SOCKETS_PER_USER`.
    pub(crate) per_user: SocketCounts<String>,
    /// And per client address, for `MAX_SOCKETS_PER_IP`.
    pub(crate) per_ip: SocketCounts<std::net::IpAddr>,
    pub(crate) max_sockets_per_ip: usize,
    pub(crate) client_ip_header: Option<axum::http::HeaderName>,
    /// Set on SIGTERM: new Engine.IO sessions are refused (`503`, clients retry elsewhere)
    /// and readiness turns false.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// Sockets set up by the connect middleware whose connect handler has not run yet. A
    /// transport that dies during the handshake never gets a disconnect handler; these are
    /// undone by the presence loop instead.
    pub(crate) handshakes: std::sync::Mutex<std::collections::HashMap<Sid, Handshake>>,
}

/// A running gateway: its route (to merge into a router) and its Socket.IO handle.
pub struct Mounted {
    /// `/socket.io/`, websocket and long-polling.
    pub router: Router,
    pub io: SocketIo,
    pub gateway: Arc<Gateway>,
}

/// Builds the Socket.IO endpoint and starts delivering events and keeping presence.
pub async fn mount(core: Core, settings: &Settings) -> anyhow::Result<Mounted> {
    let presence_ttl = Duration::from_secs(settings.presence_ttl_secs);
    let presence: Arc<dyn Presence> = match &settings.redis_url {
        Some(url) => {
            Arc::new(RedisPresence::connect(url, &settings.redis_prefix, presence_ttl).await?)
        }
        None => Arc::new(LocalPresence::default()),
    };
    let typing = Typing::new(
        core.events.clone(),
        Duration::from_millis(settings.typing_timeout_ms),
    );
    let gateway = Arc::new(Gateway {
        core,
        presence,
        typing,
        disconnecting: std::sync::atomic::AtomicUsize::new(0),
        in_flight: std::sync::atomic::AtomicUsize::new(0),
        last_event_ms: std::sync::atomic::AtomicU64::new(0),
        started: std::time::Instant::now(),
        per_user: SocketCounts::default(),
        per_ip: SocketCounts::default(),
        max_sockets_per_ip: settings.max_sockets_per_ip,
        client_ip_header: settings.client_ip_header().flatten(),
        draining: std::sync::atomic::AtomicBool::new(false),
        handshakes: std::sync::Mutex::default(),
    });
    let limit = settings.max_body_bytes;
    let (service, io) = SocketIo::builder()
        // Polling bodies and WebSocket messages alike: the contract's packet limit. A bigger
        // packet closes that connection, never the server.
        .max_payload(u64::try_from(limit).unwrap_or(u64::MAX))
        .ws_max_message_size(limit)
        .ws_max_frame_size(limit)
        // Events queued per socket before a slow client starts losing them. A bound, not an
        // allocation: the queue grows in blocks of 32 packets as it fills.
        .max_buffer_size(1024)
        // Each WebSocket keeps a read buffer of this size for its whole life, idle or not
        // (engineioxide's default is 4 KiB). A packet bigger than this still arrives whole:
        // the buffer grows to the frame's length and is read in pieces of this size, so a
        // large packet costs more read calls, not a refusal. Chat packets are mostly well under
        // 1 KiB; 1 KiB instead of 4 saves about 3-4 KiB of RSS per socket.
        .ws_read_buffer_size(1024)
        .with_state(gateway.clone())
        .build_svc();
    // engineioxide keeps each socket's request head (`SocketRef::req_parts`: the handshake
    // reads its Authorization header and query) for as long as the socket lives. As hyper
    // parses it, its header values are slices of the connection's read buffer, so keeping
    // them keeps that whole buffer (16 KiB) alive next to every WebSocket, long after the
    // upgrade. Copying them out first lets the buffer go once the upgrade is done.
    let service = tower::ServiceExt::map_request(service, detach_request_head);
    io.ns("/", handlers::on_connect.with(auth::authenticate));

    let receiver =
        gateway.core.events.take_receiver().ok_or_else(|| {
            anyhow::anyhow!("the event bus already has a gateway in this process")
        })?;
    tokio::spawn(delivery::run(
        io.clone(),
        receiver,
        gateway.core.metrics.clone(),
    ));
    tokio::spawn(keep_presence(gateway.clone(), io.clone(), presence_ttl / 3));

    let router = Router::new().route_service(SOCKET_PATH, service).layer(
        axum::middleware::from_fn_with_state(gateway.clone(), refuse_new_sessions_while_draining),
    );
    Ok(Mounted {
        router,
        io,
        gateway,
    })
}

/// The same request with its head copied into allocations of its own, so that keeping it
/// does not keep hyper's read buffer: header values, the URI, and axum's `OriginalUri` (all
/// of them otherwise slices of that buffer). Names, the body and other extensions are kept.
fn detach_request_head(request: axum::extract::Request) -> axum::extract::Request {
    use axum::extract::OriginalUri;
    use axum::http::{HeaderMap, HeaderValue, Uri};
    fn own_uri(uri: &Uri) -> Uri {
        Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
    }
    let (mut parts, body) = request.into_parts();
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    parts.uri = own_uri(&parts.uri);
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
        *original = own_uri(original);
    }
    axum::extract::Request::from_parts(parts, body)
}

/// While draining, a request that would open a new Engine.IO session (no `sid` in its
/// query) gets `503`: socket.io-client retries with backoff, by then elsewhere. Requests of
/// sessions already open go through until the sockets are closed.
async fn refuse_new_sessions_while_draining(
    State(gateway): State<Arc<Gateway>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // The query is read only while draining: every long-polling request passes here.
    if gateway.draining.load(std::sync::atomic::Ordering::Relaxed)
        && !request
            .uri()
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "sid"))
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    next.run(request).await
}

impl Mounted {
    /// A clean stop within `grace`, in order:
    /// 1. refuse new sessions and report not ready;
    /// 2. let running event handlers finish and events already sent arrive (no handler running
    ///    and no event for 150 ms), so that every ack owed is sent (at most half of `grace`);
    /// 3. close every socket: clients reconnect, to another replica behind a load balancer,
    ///    and their users' presence and typing end now rather than when presence expires;
    /// 4. wait for the disconnect handlers, then for the bus to publish what was announced.
    ///
    /// Never asks socketioxide about its sockets after closing it: its namespace is gone by
    /// then (asking panicked in socketioxide 0.18).
    pub async fn shutdown(&self, grace: Duration) {
        use std::sync::atomic::Ordering;
        let gateway = &self.gateway;
        let start = tokio::time::Instant::now();
        let deadline = start + grace;
        gateway.draining.store(true, Ordering::Relaxed);
        let sockets = gateway.sockets();
        tracing::info!(sockets, grace_secs = grace.as_secs_f64(), "draining");
        // Every event a client has sent gets its ack: wait until no handler runs and no event
        // has come in for a moment (events sent just before the signal may still be on their
        // way in), at most half of the grace.
        const QUIET: Duration = Duration::from_millis(150);
        gateway.event_arrived(); // the quiet moment starts no earlier than the signal
        let acks_by = start + grace / 2;
        wait_until(acks_by, || {
            gateway.in_flight.load(Ordering::Relaxed) == 0 && gateway.quiet_for() >= QUIET
        })
        .await;
        let unanswered = gateway.in_flight.load(Ordering::Relaxed);
        if unanswered > 0 {
            tracing::warn!(unanswered, "closing sockets with handlers still running");
        }
        // Closed at the transport, so that socket.io-client reconnects by itself (a
        // Socket.IO disconnect packet would tell it not to). socketioxide runs no disconnect
        // handler then: their work is done here, for the sockets it held.
        let sockets = self.io.of("/").map(|ns| ns.sockets()).unwrap_or_default();
        if tokio::time::timeout_at(deadline, self.io.clone().close())
            .await
            .is_err()
        {
            tracing::warn!("sockets still closing when the grace ran out");
        }
        use futures::StreamExt;
        futures::stream::iter(sockets)
            .for_each_concurrent(64, |socket| async move {
                handlers::socket_gone(gateway, &socket).await;
            })
            .await;
        let closed_by = deadline
            .checked_sub(Duration::from_secs(1))
            .filter(|t| *t > tokio::time::Instant::now())
            .unwrap_or(deadline);
        wait_until(closed_by, || {
            gateway.sockets() == 0 && gateway.disconnecting.load(Ordering::Relaxed) == 0
        })
        .await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        chat_shared::events::drain(gateway.core.events.as_ref(), left).await;
        tracing::info!(
            took_ms = start.elapsed().as_millis() as u64,
            sockets_left = gateway.sockets(),
            "drained"
        );
    }
}

/// Polls `done` until it holds or `deadline` passes.
async fn wait_until(deadline: tokio::time::Instant, done: impl Fn() -> bool) {
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The standalone gateway's port: Socket.IO and its health endpoints, in the HTTP layers.
pub fn router(mounted: &Mounted, settings: &Settings) -> Router {
    let health = Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .with_state(mounted.gateway.clone())
        .route(
            "/metrics",
            get(chat_shared::metrics::handler).with_state(mounted.gateway.core.metrics.clone()),
        );
    chat_shared::http::with_http_layers(health.merge(mounted.router.clone()), settings)
}

/// Ready when the database answers and, in scaled mode, Redis carries events both ways.
async fn ready(
    State(gateway): State<Arc<Gateway>>,
) -> Result<&'static str, (StatusCode, &'static str)> {
    if gateway.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    }
    if let Err(e) = gateway.core.store.ping().await {
        tracing::warn!(error = %e, "readiness: database unavailable");
        return Err((StatusCode::SERVICE_UNAVAILABLE, "database unavailable"));
    }
    if !gateway.core.events.is_healthy() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "event bus unavailable"));
    }
    Ok("ready")
}

impl Gateway {
    /// Notes that a client event arrived now.
    pub(crate) fn event_arrived(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_event_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long no client event has arrived.
    fn quiet_for(&self) -> Duration {
        let last = self
            .last_event_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    /// Admits a socket of `user` from `ip`: counts it in, per user, per address and in all
    /// (`/metrics`' `chat_sockets_connected`), unless `user` or `ip` holds as many sockets as they may on this replica
    /// (then nothing is counted). Each check and its count are one step, so concurrent
    /// handshakes cannot pass a limit together.
    pub(crate) fn admit_socket(&self, user: &str, ip: Option<std::net::IpAddr>) -> bool {
        let max_user = self.core.service.limits().max_sockets_per_user;
        if !self.per_user.admit(user, max_user) {
            return false;
        }
        if let Some(ip) = ip
            && !self.per_ip.admit(&ip, self.max_sockets_per_ip)
        {
            self.per_user.release(user);
            return false;
        }
        self.core.metrics.sockets_connected.inc();
        true
    }

    /// Authenticated sockets on this replica that are not gone yet (as on `/metrics`).
    pub(crate) fn sockets(&self) -> i64 {
        self.core.metrics.sockets_connected.get()
    }

    /// Counts out a socket [`Gateway::admit_socket`] admitted.
    pub(crate) fn release_socket(&self, user: &str, ip: Option<std::net::IpAddr>) {
        self.per_user.release(user);
        if let Some(ip) = ip {
            self.per_ip.release(&ip);
        }
        self.core.metrics.sockets_connected.dec();
    }

    /// The client's address: the configured header's first address (a trusted proxy's), or
    /// the peer's when there is no such header or it holds no address (a client that reached
    /// the gateway without the proxy is still counted, by its own address).
    pub(crate) fn client_ip(&self, parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
        let from_header = self.client_ip_header.as_ref().and_then(|header| {
            parts
                .headers
                .get(header)?
                .to_str()
                .ok()?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        });
        from_header.or_else(|| {
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip())
        })
    }

    pub fn now(&self) -> Millis {
        self.core.service.clock().now()
    }

    /// `user_status_change` to everyone who shares a conversation with `user`.
    pub async fn announce_status(&self, user: &str, online: bool, last_seen: Option<Millis>) {
        let contacts = match self.core.store.contacts(user).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(user, error = %e, "presence change not announced");
                return;
            }
        };
        let payload = UserStatusChange {
            user_id: user.to_owned(),
            status: if online {
                PresenceStatus::Online
            } else {
                PresenceStatus::Offline
            },
            last_seen,
        };
        self.core.events.publish(Event::to_users(
            contacts.iter().map(String::as_str),
            names::USER_STATUS_CHANGE,
            &payload,
        ));
    }

    /// A user's first socket anywhere connected.
    pub async fn came_online(&self, user: &str) {
        let last_seen = self.presence.last_seen(user).await.unwrap_or_else(|e| {
            tracing::warn!(user, error = %e, "last seen unavailable");
            None
        });
        self.announce_status(user, true, last_seen).await;
    }

    /// Completes once events for `audience` reach this replica (see
    /// [`chat_shared::events::EventBus::watch`]).
    pub async fn watch(&self, audience: &Audience) {
        self.core.events.watch(audience).await;
    }

    /// Undoes what the connect middleware set up for sockets whose handshake never completed
    /// (their connect handler did not run within a few seconds and they are gone).
    async fn abandoned_handshakes(&self, io: &SocketIo) {
        let stale: Vec<(Sid, String, Option<std::net::IpAddr>)> = match self.handshakes.lock() {
            Ok(mut map) => {
                let old: Vec<Sid> = map
                    .iter()
                    .filter(|(_, (_, _, at))| at.elapsed() > Duration::from_secs(10))
                    .map(|(sid, _)| *sid)
                    .collect();
                old.into_iter()
                    .filter_map(|sid| map.remove(&sid).map(|(user, ip, _)| (sid, user, ip)))
                    .collect()
            }
            Err(_) => return,
        };
        for (sid, user, ip) in stale {
            if io.get_socket(sid).is_some() {
                continue;
            }
            tracing::debug!(user, %sid, "undoing a handshake that never completed");
            self.release_socket(&user, ip);
            self.unwatch(&Audience::User(user.clone()));
            handlers::gone_offline(self, &user, &sid.to_string()).await;
        }
    }

    pub fn unwatch(&self, audience: &Audience) {
        self.core.events.unwatch(audience);
    }
}

/// Refreshes this replica's sockets in the presence store, registers again those that went
/// missing while still connected, undoes handshakes that never completed, and sweeps users
/// whose replica died, announcing what changed.
async fn keep_presence(gateway: Arc<Gateway>, io: SocketIo, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when this replica's refreshes have been succeeding. Sweeping waits until that has
    // lasted a whole presence lifetime: after a Redis outage every entry has expired, and
    // sweeping at once would take other replicas' users offline before those replicas had a
    // chance to refresh them.
    let ttl = every * 3;
    let mut refreshing_since: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        // `io.sockets()` panics once the server is closed (a drain): stop then.
        let Some(namespace) = io.of("/") else {
            return;
        };
        let live = namespace.sockets();
        let sockets: Vec<(String, String)> = live
            .iter()
            .filter_map(|s| {
                let user = s.extensions.get::<auth::SocketUser>()?;
                Some((user.0.id.as_str().to_owned(), s.id.to_string()))
            })
            .collect();
        let now = gateway.now();
        let refreshed = gateway.presence.refresh(&sockets, now).await;
        for (user, sid) in refreshed.missing {
            let still_connected = live
                .iter()
                .any(|s| s.id.to_string() == sid && s.connected());
            if !still_connected {
                continue;
            }
            match gateway.presence.connected(&user, &sid, now).await {
                Ok(true) => gateway.came_online(&user).await,
                Ok(false) => {}
                Err(e) => tracing::warn!(user, error = %e, "presence not recorded"),
            }
        }
        gateway.abandoned_handshakes(&io).await;
        if refreshed.errors > 0 {
            refreshing_since = None;
            continue;
        }
        let since = *refreshing_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < ttl {
            continue;
        }
        match gateway.presence.sweep(now).await {
            Ok(gone) => {
                for user in gone {
                    tracing::info!(user, "presence expired (its replica stopped): offline");
                    gateway.announce_status(&user, false, Some(now)).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence sweep failed"),
        }
    }
}

/// Sockets per key (a user, a client address) on this replica.
pub(crate) struct SocketCounts<K>(std::sync::Mutex<std::collections::HashMap<K, usize>>);

impl<K> Default for SocketCounts<K> {
    fn default() -> Self {
        Self(std::sync::Mutex::default())
    }
}

impl<K: std::hash::Hash + Eq> SocketCounts<K> {
    /// Counts one more socket for `key` unless it holds `max` already (`0`: no limit).
    fn admit<Q>(&self, key: &Q, max: usize) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let Ok(mut map) = self.0.lock() else {
            return true;
        };
        match map.get_mut(key) {
            Some(n) if max > 0 && *n >= max => false,
            Some(n) => {
                *n += 1;
                true
            }
            None => {
                map.insert(key.to_owned(), 1);
                true
            }
        }
    }

    /// Counts one socket of `key` out.
    fn release<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Ok(mut map) = self.0.lock()
            && let Some(n) = map.get_mut(key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(key);
            }
        }
    }
}
