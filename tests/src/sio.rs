//! A minimal Socket.IO v5 client over WebSocket, for Rust tests of the gateway at the protocol
//! level (the JavaScript suite in `tests/e2e` proves compatibility with the official client).
//! Written here rather than taken from a crate because the tests also need to send what no
//! well-behaved client sends: oversized frames, malformed packets.
//!
//! Engine.IO packets used: `0` open, `2`/`3` ping/pong, `4` message. Socket.IO packets inside
//! a message: `0` connect, `2` event, `3` ack, `4` connect error.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any wait lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A connected client.
pub struct SioClient {
    ws: Ws,
    /// Events received while waiting for something else: `(name, payload)`.
    events: VecDeque<(String, Value)>,
    next_ack: u64,
    pub sid: String,
}

/// How the handshake ended.
#[derive(Debug)]
pub enum Handshake {
    Connected(Box<SioClient>),
    /// `connect_error` with this `message`.
    Refused(String),
}

impl std::fmt::Debug for SioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SioClient").field("sid", &self.sid).finish()
    }
}

/// `ws://host:port/socket.io/?EIO=4&transport=websocket` plus `query`.
fn url(origin: &str, query: &str) -> String {
    let host = origin.trim_start_matches("http://");
    let extra = if query.is_empty() {
        String::new()
    } else {
        format!("&{query}")
    };
    format!("ws://{host}/socket.io/?EIO=4&transport=websocket{extra}")
}

impl SioClient {
    /// Connects with `auth` as the CONNECT payload (e.g. `{"token": …}`), `query` appended to
    /// the URL and `headers` on the upgrade request.
    pub async fn handshake(
        origin: &str,
        auth: Option<Value>,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Handshake {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url(origin, query)
            .into_client_request()
            .expect("ws request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .expect("header name"),
                value.parse().expect("header value"),
            );
        }
        let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("ws connect in time")
            .expect("ws connects");
        let open = next_text(&mut ws).await.expect("engine.io open packet");
        assert!(open.starts_with('0'), "engine.io open, got {open}");
        let connect = match auth {
            Some(auth) => format!("40{auth}"),
            None => "40".to_owned(),
        };
        ws.send(Message::text(connect)).await.expect("send connect");
        loop {
            let text = next_text(&mut ws).await.expect("connect answer");
            if let Some(body) = text.strip_prefix("40") {
                let sid = serde_json::from_str::<Value>(body).expect("connect body")["sid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                return Handshake::Connected(Box::new(Self {
                    ws,
                    events: VecDeque::new(),
                    next_ack: 1,
                    sid,
                }));
            }
            if let Some(body) = text.strip_prefix("44") {
                let error: Value = serde_json::from_str(body).expect("connect_error body");
                return Handshake::Refused(error["message"].as_str().unwrap_or("").to_owned());
            }
            if text == "2" {
                ws.send(Message::text("3")).await.expect("pong");
            }
        }
    }

    /// Connects with `auth: { token }`, expecting success.
    pub async fn connect(origin: &str, token: &str) -> Self {
        match Self::handshake(origin, Some(json!({ "token": token })), "", &[]).await {
            Handshake::Connected(c) => *c,
            Handshake::Refused(m) => panic!("connection refused: {m}"),
        }
    }

    /// Sends a raw engine.io text frame (for malformed and oversized packets).
    pub async fn send_raw(&mut self, frame: String) -> Result<(), String> {
        self.ws
            .send(Message::text(frame))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a raw binary WebSocket frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        self.ws
            .send(Message::binary(bytes))
            .await
            .map_err(|e| e.to_string())
    }

    /// Emits `event` with `args` (each one an argument) and no acknowledgement.
    pub async fn emit_args(&mut self, event: &str, args: &[Value]) {
        let mut packet = vec![json!(event)];
        packet.extend_from_slice(args);
        self.send_raw(format!("42{}", Value::Array(packet)))
            .await
            .expect("emit");
    }

    /// Emits `event` with `args` and waits for its acknowledgement's first argument.
    pub async fn call_args(&mut self, event: &str, args: &[Value]) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let mut packet = vec![json!(event)];
        packet.extend_from_slice(args);
        self.send_raw(format!("42{id}{}", Value::Array(packet)))
            .await
            .expect("emit");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = tokio::time::timeout_at(deadline, next_text(&mut self.ws))
                .await
                .unwrap_or_else(|_| panic!("no ack for {event} within {WAIT:?}"))
                .unwrap_or_else(|| panic!("connection closed while waiting for the {event} ack"));
            if let Some(rest) = text.strip_prefix("43") {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if digits == id.to_string() {
                    let args: Value =
                        serde_json::from_str(&rest[digits.len()..]).expect("ack body");
                    return args[0].clone();
                }
            } else {
                self.absorb(&text).await;
            }
        }
    }

    /// [`SioClient::call_args`] with one payload argument.
    pub async fn call(&mut self, event: &str, payload: Value) -> Value {
        self.call_args(event, &[payload]).await
    }

    /// Handles a frame that is not the awaited ack: pings are answered, events kept.
    async fn absorb(&mut self, text: &str) {
        if text == "2" {
            let _ = self.ws.send(Message::text("3")).await;
        } else if let Some(body) = text.strip_prefix("42") {
            let body = body.trim_start_matches(|c: char| c.is_ascii_digit());
            if let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(body)
                && !items.is_empty()
            {
                let name = items.remove(0).as_str().unwrap_or_default().to_owned();
                let payload = items.into_iter().next().unwrap_or(Value::Null);
                self.events.push_back((name, payload));
            }
        }
    }

    /// Reads frames for up to `within`, keeping events. `false` if the connection closed.
    pub async fn pump(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, next_text(&mut self.ws)).await {
                Err(_) => return true,
                Ok(None) => return false,
                Ok(Some(text)) => self.absorb(&text).await,
            }
        }
    }

    /// Waits for the next `name` event matching `filter`, keeping others for later.
    pub async fn expect_event(&mut self, name: &str, filter: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.events.iter().position(|(n, p)| n == name && filter(p)) {
                return self.events.remove(i).map(|(_, p)| p).unwrap_or_default();
            }
            let text = tokio::time::timeout_at(deadline, next_text(&mut self.ws))
                .await
                .unwrap_or_else(|_| {
                    panic!("no {name} event within {WAIT:?}; got {:?}", self.events)
                })
                .unwrap_or_else(|| panic!("connection closed while waiting for {name}"));
            self.absorb(&text).await;
        }
    }

    /// Every received `name` event so far (after pumping for `settle`), removed from the queue.
    pub async fn take_events(&mut self, name: &str, settle: Duration) -> Vec<Value> {
        self.pump(settle).await;
        let (taken, kept): (Vec<_>, Vec<_>) = self.events.drain(..).partition(|(n, _)| n == name);
        self.events = kept.into();
        taken.into_iter().map(|(_, p)| p).collect()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The next text frame, `None` once the connection is closed.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
