//! A Socket.IO v5 client over Engine.IO v4, WebSocket transport only, written for load: one
//! tokio task per socket, small buffers, no parsing of frames nobody looks at.
//!
//! Engine.IO packets (one per WebSocket text frame on this transport): `0` open (JSON with
//! `sid`, `pingInterval`, `pingTimeout`), `1` close, `2` ping from the server (answered `3`),
//! `4` message. Socket.IO packets inside a message: `40{auth}` connect (answered `40{"sid"}`
//! or `44{"message"}` connect_error), `41` disconnect, `42[...]` event (`42<id>[...]` asks for
//! an ack), `43<id>[...]` ack.
//!
//! What the scenarios do with incoming frames is theirs: the task hands every event and ack
//! to an [`Observer`]. Outgoing events are built by a closure at the moment they are written,
//! so a timestamp inside a payload is the time it left, not the time it was queued.

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What an acknowledgement answers, so that the observer can file it without a lookup.
#[derive(Clone, Copy, Debug)]
pub enum AckKind {
    /// `send_message` number `seq` of step `step`.
    Send { step: u32, seq: u32 },
    /// `mark_as_read`, sent during step `step`.
    Read { step: u32 },
    /// `typing_start` / `typing_stop`, sent during step `step`.
    Typing { step: u32 },
}

/// A payload built when written: returns the JSON text of the event's arguments after the
/// name (e.g. `{"conversationId":…}`).
pub type Build = Box<dyn FnOnce() -> String + Send>;

/// Work for a socket's task.
pub enum Outgoing {
    /// Emits `event`; with `ack`, asks for an acknowledgement and reports it to the observer.
    /// `scheduled` is when the scenario meant it to leave (for pacing lag).
    Emit {
        event: &'static str,
        build: Build,
        ack: Option<AckKind>,
        scheduled: Option<Instant>,
    },
    /// Emits `event` with `payload` and sends its acknowledgement (the JSON array text) back.
    Call {
        event: &'static str,
        payload: String,
        reply: oneshot::Sender<String>,
    },
    /// Closes the connection (not counted as a disconnect).
    Close,
}

/// What a scenario does with a socket's traffic. Called on the socket's own task: keep it
/// short (record and return).
pub trait Observer: Send + Sync + 'static {
    /// An event from the server; `frame` is the JSON array `["name", payload…]`, `received`
    /// the wall clock when the frame was read (UNIX microseconds). May answer with one emit.
    fn on_event(&self, socket: usize, frame: &str, received: u64) -> Option<Outgoing>;
    /// An acknowledgement; `frame` is its JSON array of arguments.
    fn on_ack(&self, socket: usize, kind: AckKind, frame: &str, elapsed: Duration);
    /// An emit with a schedule was written `lag` after its scheduled time.
    fn on_written(&self, kind: Option<AckKind>, lag: Duration);
    /// The connection ended other than by [`Outgoing::Close`].
    fn on_disconnect(&self, socket: usize, reason: &str);
}

/// A connected socket's handle: its queue and whether it is still up.
#[derive(Clone)]
pub struct SocketHandle {
    pub tx: mpsc::UnboundedSender<Outgoing>,
    pub alive: Arc<AtomicBool>,
}

impl SocketHandle {
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Queues `out`; `false` if the socket is gone.
    pub fn send(&self, out: Outgoing) -> bool {
        self.tx.send(out).is_ok()
    }

    /// Emits `event` with `payload` and waits up to `within` for the acknowledgement.
    pub async fn call(
        &self,
        event: &'static str,
        payload: String,
        within: Duration,
    ) -> Option<String> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Outgoing::Call {
            event,
            payload,
            reply,
        }) {
            return None;
        }
        tokio::time::timeout(within, rx).await.ok()?.ok()
    }

    pub fn close(&self) {
        let _ = self.tx.send(Outgoing::Close);
    }
}

/// Why a connection attempt failed. `code()` is the short key used in reports.
#[derive(Debug)]
pub enum ConnectError {
    /// `connect_error` from the server, with its `message` (e.g. `unauthorized`).
    Refused(String),
    /// The WebSocket could not be opened (refused, reset, HTTP error on upgrade...).
    Transport(String),
    /// No open or connect answer in time.
    Timeout,
    /// Something that is not Engine.IO / Socket.IO.
    Protocol(String),
}

impl ConnectError {
    pub fn code(&self) -> String {
        match self {
            Self::Refused(m) => format!("connect_error:{m}"),
            Self::Transport(m) => format!("transport:{m}"),
            Self::Timeout => "timeout".to_owned(),
            Self::Protocol(_) => "protocol".to_owned(),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protocol(m) => write!(f, "protocol: {m}"),
            other => f.write_str(&other.code()),
        }
    }
}

/// A socket after a successful Socket.IO connect, not yet running.
pub struct Opened {
    ws: Ws,
    /// The server pings every `ping_interval`; without any frame for `ping_interval +
    /// ping_timeout` the connection is taken as dead (as socket.io-client does).
    silence_limit: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenPacket {
    ping_interval: u64,
    ping_timeout: u64,
}

/// `ws://host:port/socket.io/?EIO=4&transport=websocket` from an `http://host:port` origin.
pub fn ws_url(origin: &reqwest::Url) -> String {
    let host = origin.host_str().unwrap_or("127.0.0.1");
    let port = origin.port_or_known_default().unwrap_or(80);
    format!("ws://{host}:{port}/socket.io/?EIO=4&transport=websocket")
}

/// Small buffers: tungstenite allocates its read buffer eagerly (128 KiB by default), which
/// would be over a gigabyte for ten thousand idle sockets. Our frames are a few hundred bytes.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
}

/// Opens the WebSocket and completes the Socket.IO connect with `auth: { token }`.
pub async fn connect(url: &str, token: &str, within: Duration) -> Result<Opened, ConnectError> {
    tokio::time::timeout(within, connect_inner(url, token))
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

async fn connect_inner(url: &str, token: &str) -> Result<Opened, ConnectError> {
    // Nagle off: frames are small and latency is what is measured.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
        .await
        .map_err(|e| ConnectError::Transport(transport_code(&e)))?;
    let open = next_text(&mut ws)
        .await
        .ok_or_else(|| ConnectError::Protocol("closed before the open packet".into()))?;
    let body = open.strip_prefix('0').ok_or_else(|| {
        ConnectError::Protocol(format!("expected an open packet, got {open:.60}"))
    })?;
    let info: OpenPacket = serde_json::from_str(body)
        .map_err(|e| ConnectError::Protocol(format!("open packet: {e}")))?;
    let auth = serde_json::json!({ "token": token });
    ws.send(Message::text(format!("40{auth}")))
        .await
        .map_err(|e| ConnectError::Transport(transport_code(&e)))?;
    loop {
        let text = next_text(&mut ws)
            .await
            .ok_or_else(|| ConnectError::Protocol("closed during the connect".into()))?;
        if text.starts_with("40") {
            return Ok(Opened {
                ws,
                silence_limit: Duration::from_millis(info.ping_interval + info.ping_timeout),
            });
        }
        if let Some(body) = text.strip_prefix("44") {
            let message = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            return Err(ConnectError::Refused(message));
        }
        if text == "2" {
            ws.send(Message::text("3"))
                .await
                .map_err(|e| ConnectError::Transport(transport_code(&e)))?;
        }
        // Anything else before the connect answer (none expected) is ignored.
    }
}

/// A short, stable key for a WebSocket error (the full text varies with addresses).
fn transport_code(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Io(io) => format!("io:{:?}", io.kind()),
        Error::Http(resp) => format!("http:{}", resp.status().as_u16()),
        Error::ConnectionClosed | Error::AlreadyClosed => "closed".to_owned(),
        Error::Protocol(p) => format!("ws-protocol:{p}"),
        other => format!("ws:{other}"),
    }
}

/// The next text frame, `None` once the connection is closed or broken.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Starts the socket's task. `index` identifies it to the observer.
pub fn spawn<O: Observer>(opened: Opened, index: usize, observer: Arc<O>) -> SocketHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let alive = Arc::new(AtomicBool::new(true));
    let task = SocketTask {
        ws: opened.ws,
        silence_limit: opened.silence_limit,
        index,
        observer,
        pending: HashMap::new(),
        next_id: 1,
        alive: alive.clone(),
    };
    tokio::spawn(task.run(rx));
    SocketHandle { tx, alive }
}

enum Pending {
    Observer(AckKind, Instant),
    Reply(oneshot::Sender<String>),
}

struct SocketTask<O> {
    ws: Ws,
    silence_limit: Duration,
    index: usize,
    observer: Arc<O>,
    /// Acknowledgements awaited, by ack id.
    pending: HashMap<u64, Pending>,
    next_id: u64,
    alive: Arc<AtomicBool>,
}

/// How many queued emits are written before one flush.
const WRITE_BATCH: usize = 64;

impl<O: Observer> SocketTask<O> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        let reason = self.event_loop(&mut rx).await;
        self.alive.store(false, Ordering::Relaxed);
        match reason {
            Some(reason) => self.observer.on_disconnect(self.index, &reason),
            None => {
                // Our own close: say goodbye at the Socket.IO level, then close the WebSocket.
                let _ = self.ws.feed(Message::text("41")).await;
                let _ = self.ws.close(None).await;
            }
        }
    }

    /// Runs until the connection ends: `Some(reason)`, or `None` when asked to close.
    async fn event_loop(&mut self, rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Option<String> {
        let silence = tokio::time::sleep(self.silence_limit);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                frame = self.ws.next() => {
                    silence.as_mut().reset(tokio::time::Instant::now() + self.silence_limit);
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if let Err(reason) = self.on_text(&text).await {
                                return Some(reason);
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => return Some("closed by server".into()),
                        Some(Err(e)) => return Some(transport_code(&e)),
                        Some(Ok(_)) => {}
                    }
                }
                out = rx.recv() => {
                    // Every handle dropped: the scenario is over, close as asked.
                    let out = out?;
                    if matches!(out, Outgoing::Close) {
                        return None;
                    }
                    if let Err(e) = self.write(out).await {
                        return Some(e);
                    }
                    // Batch whatever else is queued into one flush.
                    for _ in 0..WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(Outgoing::Close) => return None,
                            Ok(out) => {
                                if let Err(e) = self.write(out).await {
                                    return Some(e);
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.ws.flush().await {
                        return Some(transport_code(&e));
                    }
                }
                () = &mut silence => return Some("ping timeout".into()),
            }
        }
    }

    /// Queues one emit on the WebSocket (flushed by the caller).
    async fn write(&mut self, out: Outgoing) -> Result<(), String> {
        let (event, payload, pending, scheduled, kind) = match out {
            Outgoing::Emit {
                event,
                build,
                ack,
                scheduled,
            } => {
                let now = Instant::now();
                let pending = ack.map(|k| Pending::Observer(k, now));
                (event, build(), pending, scheduled, ack)
            }
            Outgoing::Call {
                event,
                payload,
                reply,
            } => (event, payload, Some(Pending::Reply(reply)), None, None),
            Outgoing::Close => return Ok(()),
        };
        if let Some(at) = scheduled {
            self.observer
                .on_written(kind, Instant::now().saturating_duration_since(at));
        }
        let frame = match pending {
            Some(p) => {
                let id = self.next_id;
                self.next_id += 1;
                self.pending.insert(id, p);
                format!("42{id}[\"{event}\",{payload}]")
            }
            None => format!("42[\"{event}\",{payload}]"),
        };
        self.ws
            .feed(Message::text(frame))
            .await
            .map_err(|e| transport_code(&e))
    }

    async fn on_text(&mut self, text: &str) -> Result<(), String> {
        let received = crate::now_micros();
        match text.as_bytes().first() {
            Some(b'2') => {
                // Engine.IO ping: answer at once (a late pong gets the socket closed).
                self.ws
                    .send(Message::text("3"))
                    .await
                    .map_err(|e| transport_code(&e))?;
            }
            Some(b'1') => return Err("engine.io close".into()),
            Some(b'4') => match text.as_bytes().get(1) {
                Some(b'2') => {
                    // An event; an ack id after `42` (the server asking for an ack) is skipped:
                    // nothing in the contract asks clients for one.
                    let frame = text[2..].trim_start_matches(|c: char| c.is_ascii_digit());
                    if let Some(out) = self.observer.on_event(self.index, frame, received) {
                        self.write(out).await?;
                        self.ws.flush().await.map_err(|e| transport_code(&e))?;
                    }
                }
                Some(b'3') => {
                    let rest = &text[2..];
                    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                    let Ok(id) = rest[..digits].parse::<u64>() else {
                        return Ok(());
                    };
                    let frame = &rest[digits..];
                    match self.pending.remove(&id) {
                        Some(Pending::Observer(kind, sent)) => {
                            self.observer
                                .on_ack(self.index, kind, frame, sent.elapsed());
                        }
                        Some(Pending::Reply(reply)) => {
                            let _ = reply.send(frame.to_owned());
                        }
                        None => {}
                    }
                }
                Some(b'1') => return Err("socket.io disconnect".into()),
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }
}

/// The first argument of an acknowledgement, as far as the figures need it.
#[derive(Deserialize)]
pub struct AckBody {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<AckError>,
}

#[derive(Deserialize)]
pub struct AckError {
    pub code: String,
}

/// `Ok(())` for `[{"ok":true,…}]`, else the error code (`malformed` if unreadable).
pub fn ack_result(frame: &str) -> Result<(), String> {
    match serde_json::from_str::<(AckBody,)>(frame) {
        Ok((AckBody { ok: true, .. },)) => Ok(()),
        Ok((AckBody { error, .. },)) => Err(error.map_or_else(|| "unknown".into(), |e| e.code)),
        // The ack carries the whole message: a tuple of one ignores nothing extra, so try
        // the lenient form (more arguments) before calling it malformed.
        Err(_) => match serde_json::from_str::<Vec<AckBody>>(frame) {
            Ok(v) => match v.into_iter().next() {
                Some(AckBody { ok: true, .. }) => Ok(()),
                Some(AckBody { error, .. }) => {
                    Err(error.map_or_else(|| "unknown".into(), |e| e.code))
                }
                None => Err("malformed".into()),
            },
            Err(_) => Err("malformed".into()),
        },
    }
}

/// The name of an event frame `["name", …]` without parsing the rest.
pub fn event_name(frame: &str) -> &str {
    frame
        .strip_prefix("[\"")
        .and_then(|r| r.split('"').next())
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks() {
        assert_eq!(ack_result(r#"[{"ok":true,"message":{"id":"x"}}]"#), Ok(()));
        assert_eq!(
            ack_result(r#"[{"ok":false,"error":{"code":"rate_limited","retryAfterMs":5}}]"#),
            Err("rate_limited".into())
        );
        assert_eq!(ack_result("nope"), Err("malformed".into()));
    }

    #[test]
    fn names() {
        assert_eq!(event_name(r#"["new_message",{"a":1}]"#), "new_message");
        assert_eq!(event_name("x"), "?");
    }

    #[test]
    fn urls() {
        let origin = reqwest::Url::parse("http://127.0.0.1:8001").ok();
        assert_eq!(
            origin.map(|o| ws_url(&o)),
            Some("ws://127.0.0.1:8001/socket.io/?EIO=4&transport=websocket".to_owned())
        );
    }
}
