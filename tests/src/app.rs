//! `TestApp`: the REST API, the Socket.IO gateway and the demo page on one ephemeral port, as
//! the embedded `chat` serves them, with a fresh database, an injected clock and a client per
//! user.

use crate::db::{Backend, TestDb, fresh_db};
use chat_shared::app::Core;
use chat_shared::auth::{Claims, JwtVerifier, now_secs};
use chat_shared::config::{Cli, Settings};
use chat_shared::time::ManualClock;
use clap::Parser;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use std::sync::Arc;

pub const SECRET: &str = "test-secret-0123456789abcdef";

/// Where a test app's JWT key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// `--jwt-secret` [`SECRET`], or the test's own `--jwt-public-key`.
    Configured,
    /// None configured: the embedded server's generated development secret.
    Generated,
}

pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub origin: String,
    /// `<origin>/api/v1/chat`
    pub base: String,
    pub backend: Backend,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    /// The app's core (its service and store), for what a test does behind the API.
    pub core: Core,
    /// Stops the server as SIGTERM stops a binary (see [`TestApp::shut_down`]).
    #[allow(clippy::type_complexity)]
    stop: std::sync::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<std::io::Result<()>>,
        )>,
    >,
    verifier: Arc<JwtVerifier>,
    db_url: String,
    _db: Option<TestDb>,
}

/// An answer: status, headers and the body parsed as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    /// The problem document's `code`, when this is an error.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts a problem document with this status and code, and returns its `detail`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "status of {:?}", self.body);
        assert_eq!(self.code(), code, "code of {:?}", self.body);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], json!(status));
        assert!(self.body["title"].is_string() && self.body["type"].is_string());
        self.body["detail"].as_str().unwrap_or("").to_owned()
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }
}

impl TestApp {
    /// Boots the API on `backend` with test defaults (a rate limit high enough not to matter).
    /// `None` when the backend is not available (the reason has been printed).
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, &[]).await
    }

    /// As [`TestApp::spawn`], with extra command-line flags (e.g. `--rate-limit-messages 3`).
    pub async fn spawn_with(backend: Backend, flags: &[&str]) -> Option<Self> {
        let db = fresh_db(backend).await?;
        let url = db.url.clone();
        Some(Self::boot(&url, backend, flags, Some(db)).await)
    }

    /// An app on the database at `url` (one the test owns, e.g. a private cluster's).
    pub async fn spawn_at(url: &str, backend: Backend, flags: &[&str]) -> Self {
        Self::boot(url, backend, flags, None).await
    }

    /// Stops the server gracefully, as SIGTERM stops `chat-api`: no new connections, requests
    /// in flight finish. Resolves when it has stopped.
    pub async fn shut_down(&self) -> std::io::Result<()> {
        let Some((stop, served)) = self.stop.lock().ok().and_then(|mut s| s.take()) else {
            return Ok(());
        };
        let _ = stop.send(());
        served.await.unwrap_or(Ok(()))
    }

    /// Another replica on this app's database (for scaled mode: give both `--redis-url`).
    /// It must not outlive `self`, which owns the database.
    pub async fn replica(&self, flags: &[&str]) -> Self {
        Self::boot(&self.db_url, self.backend, flags, None).await
    }

    /// The embedded server as a fresh clone runs it: no `JWT_SECRET` nor `JWT_PUBLIC_KEY`, so
    /// it generates its development secret (beside the SQLite file) and `dev_secret` is on.
    pub async fn spawn_with_generated_secret() -> Self {
        let db = fresh_db(Backend::Sqlite).await.expect("SQLite always runs");
        let url = db.url.clone();
        Self::boot_keyed(&url, Backend::Sqlite, &[], Some(db), Key::Generated).await
    }

    async fn boot(db_url: &str, backend: Backend, flags: &[&str], db: Option<TestDb>) -> Self {
        Self::boot_keyed(db_url, backend, flags, db, Key::Configured).await
    }

    async fn boot_keyed(
        db_url: &str,
        backend: Backend,
        flags: &[&str],
        db: Option<TestDb>,
        key: Key,
    ) -> Self {
        let mut args = vec![
            "chat",
            "--database-url",
            db_url,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--database-max-connections",
            "5",
        ];
        // A rate limit high enough not to matter, unless the test sets its own (clap refuses
        // a flag given twice).
        if !flags.contains(&"--rate-limit-messages") {
            args.extend_from_slice(&["--rate-limit-messages", "100000"]);
        }
        // The test secret, unless the test configures a public key alone or none at all.
        if key == Key::Configured && !flags.contains(&"--jwt-public-key") {
            args.extend_from_slice(&["--jwt-secret", SECRET]);
        }
        args.extend_from_slice(flags);
        let mut settings: Settings = Cli::try_parse_from(args)
            .expect("test flags parse")
            .settings;
        if key == Key::Generated {
            chat_shared::app::ensure_jwt_key(&mut settings, chat_shared::app::Mode::Embedded)
                .expect("a development secret beside the test database");
            assert!(
                settings.dev_secret,
                "no key configured: the generated secret"
            );
        }
        let clock = ManualClock::default();
        let core = Core::build_with_clock(&settings, Arc::new(clock.clone()))
            .await
            .expect("core builds");
        let verifier = core.verifier.clone();
        // As the embedded `chat` serves them: REST, Socket.IO and the demo page on one port.
        let gateway = chat_gateway::mount(core.clone(), &settings)
            .await
            .expect("gateway mounts");
        let app = chat_server::app(core.clone(), &settings, gateway.router);
        let listener = chat_shared::app::listen(([127, 0, 0, 1], 0).into())
            .await
            .expect("bind");
        let addr = axum::serve::Listener::local_addr(&listener).expect("local addr");
        // Served as the binaries serve: until asked to stop, then gracefully.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let events = core.events.clone();
        let served = tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.await;
            };
            chat_shared::app::serve_until(
                listener,
                app,
                std::time::Duration::from_secs(5),
                events,
                async {},
                stop,
            )
            .await
        });
        let origin = format!("http://{addr}");
        eprintln!("[{}] TestApp at {origin}", backend.name());
        Self {
            base: format!("{origin}{}", chat_api::BASE),
            origin,
            backend,
            clock,
            http: reqwest::Client::new(),
            stop: std::sync::Mutex::new(Some((stop, served))),
            core,
            verifier,
            db_url: db_url.to_owned(),
            _db: db,
        }
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.origin))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("the metrics text")
    }

    /// A Socket.IO connection of `user` (websocket, `auth: { token }`).
    pub async fn socket(&self, user: &str) -> crate::sio::SioClient {
        crate::sio::SioClient::connect(&self.origin, &self.token(user)).await
    }

    /// A valid token for `user` (role `user`).
    pub fn token(&self, user: &str) -> String {
        self.token_with(user, None, 3600)
    }

    pub fn token_with(&self, user: &str, role: Option<&str>, ttl_secs: i64) -> String {
        self.verifier
            .mint(&Claims {
                sub: user.to_owned(),
                exp: now_secs().saturating_add_signed(ttl_secs),
                name: None,
                role: role.map(str::to_owned),
                iss: None,
                aud: None,
            })
            .expect("mint")
    }

    /// A client acting as `user`.
    pub fn user(&self, user: &str) -> UserClient<'_> {
        UserClient {
            app: self,
            token: Some(self.token(user)),
            id: user.to_owned(),
        }
    }

    /// A client sending this exact `Authorization` token (or none).
    pub fn raw(&self, token: Option<String>) -> UserClient<'_> {
        UserClient {
            app: self,
            token,
            id: String::new(),
        }
    }

    /// A request to a path under the API base, answered as a [`TestResponse`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<RequestBody>,
    ) -> TestResponse {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.http.request(method, url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req = match body {
            Some(RequestBody::Json(v)) => req.json(&v),
            Some(RequestBody::Raw(bytes)) => {
                req.header("content-type", "application/json").body(bytes)
            }
            None => req,
        };
        let res = req.send().await.expect("request reaches the server");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

pub enum RequestBody {
    Json(Value),
    Raw(Vec<u8>),
}

/// One method per endpoint of the contract, as one user.
pub struct UserClient<'a> {
    pub app: &'a TestApp,
    pub token: Option<String>,
    pub id: String,
}

impl UserClient<'_> {
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.app
            .request(
                method,
                path,
                self.token.as_deref(),
                body.map(RequestBody::Json),
            )
            .await
    }

    pub async fn call_raw(&self, method: Method, path: &str, body: Vec<u8>) -> TestResponse {
        self.app
            .request(
                method,
                path,
                self.token.as_deref(),
                Some(RequestBody::Raw(body)),
            )
            .await
    }

    /// The current end of this user's change feed (`GET /sync` without `since`): the cursor
    /// to sync from later.
    pub async fn feed_end(&self) -> String {
        let res = self.call(Method::GET, "/sync", None).await;
        res.assert_status(200)["nextCursor"]
            .as_str()
            .expect("nextCursor")
            .to_owned()
    }

    pub async fn list_conversations(&self, query: &str) -> TestResponse {
        self.call(Method::GET, &format!("/conversations{query}"), None)
            .await
    }

    pub async fn create_conversation(&self, body: Value) -> TestResponse {
        self.call(Method::POST, "/conversations", Some(body)).await
    }

    /// Creates a two-person general conversation with `other` and returns its id.
    pub async fn conversation_with(&self, other: &str) -> String {
        let res = self
            .create_conversation(json!({ "participantIds": [other] }))
            .await;
        assert!(res.status.is_success(), "create: {}", res.body);
        res.body["id"].as_str().expect("id").to_owned()
    }

    pub async fn get_conversation(&self, id: &str) -> TestResponse {
        self.call(Method::GET, &format!("/conversations/{id}"), None)
            .await
    }

    pub async fn update_conversation(&self, id: &str, body: Value) -> TestResponse {
        self.call(Method::PATCH, &format!("/conversations/{id}"), Some(body))
            .await
    }

    pub async fn delete_conversation(&self, id: &str) -> TestResponse {
        self.call(Method::DELETE, &format!("/conversations/{id}"), None)
            .await
    }

    pub async fn list_messages(&self, id: &str, query: &str) -> TestResponse {
        self.call(
            Method::GET,
            &format!("/conversations/{id}/messages{query}"),
            None,
        )
        .await
    }

    pub async fn send(&self, id: &str, body: Value) -> TestResponse {
        self.call(
            Method::POST,
            &format!("/conversations/{id}/messages"),
            Some(body),
        )
        .await
    }

    /// Sends a text message and returns it (asserting success).
    pub async fn say(&self, id: &str, text: &str) -> Value {
        let res = self.send(id, json!({ "content": text })).await;
        assert_eq!(res.status, StatusCode::CREATED, "send: {}", res.body);
        res.body
    }

    pub async fn mark_read(&self, id: &str, body: Value) -> TestResponse {
        self.call(
            Method::PUT,
            &format!("/conversations/{id}/read"),
            Some(body),
        )
        .await
    }

    pub async fn archive(&self, id: &str, body: Value) -> TestResponse {
        self.call(
            Method::PUT,
            &format!("/conversations/{id}/archive"),
            Some(body),
        )
        .await
    }

    pub async fn mute(&self, id: &str, body: Value) -> TestResponse {
        self.call(
            Method::PUT,
            &format!("/conversations/{id}/mute"),
            Some(body),
        )
        .await
    }

    pub async fn edit_message(&self, id: &str, body: Value) -> TestResponse {
        self.call(Method::PUT, &format!("/messages/{id}"), Some(body))
            .await
    }

    pub async fn delete_message(&self, id: &str) -> TestResponse {
        self.call(Method::DELETE, &format!("/messages/{id}"), None)
            .await
    }

    pub async fn search(&self, query: &str) -> TestResponse {
        self.call(Method::GET, &format!("/conversations/search{query}"), None)
            .await
    }

    pub async fn stats(&self) -> TestResponse {
        self.call(Method::GET, "/stats", None).await
    }

    pub async fn unread(&self) -> TestResponse {
        self.call(Method::GET, "/unread", None).await
    }
}
