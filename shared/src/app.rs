//! Start-up shared by the binaries: telemetry, the core handles every transport needs, and
//! the `migrate`/`token` subcommands.

use crate::auth::{Claims, JwtVerifier, generate_secret, now_secs};
use crate::config::{ConfigError, Settings, redact_url};
use crate::events::{EventBus, LocalBus};
use crate::metrics::Metrics;
use crate::ratelimit::{LocalRateLimiter, RateLimiter, RedisRateLimiter};
use crate::redis_bus::RedisBus;
use crate::service::ChatService;
use crate::store::{self, Store};
use crate::time::{Clock, SystemClock};
use std::path::Path;
use std::sync::Arc;

pub use crate::telemetry::{init_telemetry, shutdown_telemetry};

/// How a binary runs: the all-in-one embedded server, or one replica of the scaled mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `chat`: may generate a development JWT secret when none is configured.
    Embedded,
    /// `chat-api`, `chat-gateway`: refuse to start without a configured key.
    Scaled,
}

/// Cheap-to-clone handles shared by REST and Socket.IO.
#[derive(Clone)]
pub struct Core {
    pub service: ChatService,
    pub verifier: Arc<JwtVerifier>,
    pub store: Arc<dyn Store>,
    /// Redis pub/sub when `REDIS_URL` is set, in-process otherwise.
    pub events: Arc<dyn EventBus>,
    /// What `GET /metrics` shows.
    pub metrics: Metrics,
}

impl Core {
    /// Connects (and migrates) the store and builds the service.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Core::build`], with an injected clock (tests move time by hand).
    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        let verifier = Arc::new(JwtVerifier::from_settings(settings)?);
        let store = store::connect(&settings.database_url, settings.database_max_connections)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open database {}: {e}",
                    redact_url(&settings.database_url)
                )
            })?;
        tracing::info!(backend = store.backend(), "database ready");
        let metrics = Metrics::new();
        let store = store::Timed::wrap(store, metrics.db_query.clone());
        let limits = settings.limits();
        // The per-user message limit: in Redis when scaled, so that it holds across replicas;
        // in-process in the embedded default.
        let limiter: Arc<dyn RateLimiter> = match &settings.redis_url {
            Some(url) => Arc::new(
                RedisRateLimiter::new(
                    url,
                    &settings.redis_prefix,
                    limits.rate_limit_messages,
                    limits.rate_limit_window,
                )
                .map_err(|e| anyhow::anyhow!("cannot use REDIS_URL {}: {e}", redact_url(url)))?,
            ),
            None => Arc::new(LocalRateLimiter::new(
                limits.rate_limit_messages,
                limits.rate_limit_window,
            )),
        };
        // Scaled mode: changes record outbox rows, deleted once Redis took their events.
        let (published_tx, published_rx) = tokio::sync::mpsc::unbounded_channel();
        store.record_outbox(settings.redis_url.is_some());
        let events: Arc<dyn EventBus> = match &settings.redis_url {
            Some(url) => RedisBus::start(
                url,
                &settings.redis_prefix,
                metrics.bus.clone(),
                Some(published_tx),
            )
            .map_err(|e| anyhow::anyhow!("cannot use REDIS_URL {}: {e}", redact_url(url)))?,
            None => Arc::new(LocalBus::new()),
        };
        tracing::info!(bus = events.kind(), "event bus ready");
        let service = ChatService::new(
            store.clone(),
            clock,
            limiter,
            limits,
            events.clone(),
            metrics.clone(),
        );
        tokio::spawn(prune_feed_now_and_then(service.clone()));
        if settings.redis_url.is_some() {
            tokio::spawn(clear_published(store.clone(), published_rx));
            tokio::spawn(relay_outbox(
                service.clone(),
                events.clone(),
                metrics.clone(),
                std::time::Duration::from_millis(settings.outbox_relay_after_ms),
            ));
        }
        Ok(Self {
            service,
            verifier,
            store,
            events,
            metrics,
        })
    }
}

/// Deletes the outbox rows whose events Redis took, a batch at a time. A row whose delete
/// fails stays, and the relay publishes it again later: a duplicate, never a loss.
async fn clear_published(
    store: Arc<dyn Store>,
    mut published: tokio::sync::mpsc::UnboundedReceiver<Vec<i64>>,
) {
    let mut batch = Vec::new();
    while published.recv_many(&mut batch, 256).await > 0 {
        let ids: Vec<i64> = batch.drain(..).flatten().collect();
        if let Err(e) = store.outbox_done(&ids).await {
            tracing::warn!(error = %e, rows = ids.len(), "outbox rows not cleared: the relay will publish them again");
        }
    }
}

/// Every second, while Redis takes events and the publish queue is short, publishes the
/// changes left behind (see [`ChatService::relay_outbox`]) and updates the backlog gauge.
async fn relay_outbox(
    service: ChatService,
    events: Arc<dyn EventBus>,
    metrics: Metrics,
    after: std::time::Duration,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1).min(after));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(backlog) = service.store().outbox_backlog().await {
            metrics.outbox_backlog.set(backlog);
        }
        if !events.is_healthy() || events.pending() > 1_000 {
            continue;
        }
        if let Err(e) = service.relay_outbox(after).await {
            tracing::warn!(error = %e, "outbox relay pass failed");
        }
    }
}

/// Prunes the change feed a minute after start, then every ten minutes. Every process does:
/// the deletes are idempotent, and whichever replica runs first does the work.
async fn prune_feed_now_and_then(service: ChatService) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(600),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match service.prune_feed().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "change feed pruned"),
            Err(e) => tracing::warn!(error = %e, "change feed not pruned"),
        }
    }
}

/// Where the embedded server keeps a generated development secret: beside the SQLite file, so
/// that `chat token …` in another terminal signs tokens the running server accepts.
fn dev_secret_path(settings: &Settings) -> std::path::PathBuf {
    let sqlite_file = settings
        .database_url
        .strip_prefix("sqlite://")
        .or_else(|| settings.database_url.strip_prefix("sqlite:"));
    sqlite_file
        .and_then(|file| Path::new(file).parent())
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("data"))
        .join(".jwt-secret")
}

/// Makes sure a JWT key is configured. Embedded mode without one uses a generated secret
/// (kept in `data/.jwt-secret` and announced); scaled mode refuses to start.
pub fn ensure_jwt_key(settings: &mut Settings, mode: Mode) -> Result<(), ConfigError> {
    if settings.jwt_secret.is_some() || settings.jwt_public_key.is_some() {
        return Ok(());
    }
    if mode == Mode::Scaled {
        return Err(ConfigError(
            "JWT_SECRET (or JWT_PUBLIC_KEY) is required: this binary verifies the platform's \
             tokens and will not run with a made-up key"
                .to_owned(),
        ));
    }
    let path = dev_secret_path(settings);
    let secret = match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 16 => s.trim().to_owned(),
        _ => {
            let secret = generate_secret();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
            }
            std::fs::write(&path, &secret)
                .map_err(|e| ConfigError(format!("cannot write {}: {e}", path.display())))?;
            secret
        }
    };
    tracing::warn!(
        path = %path.display(),
        "JWT_SECRET is not set: using a generated development secret. Tokens from your \
         platform will not verify; set JWT_SECRET to its secret."
    );
    settings.jwt_secret = Some(secret);
    settings.dev_secret = true;
    Ok(())
}

/// Signs a token for `user` with the configured secret.
pub fn mint_token(
    settings: &Settings,
    user: &str,
    name: Option<String>,
    role: &str,
    ttl_secs: u64,
) -> anyhow::Result<String> {
    crate::domain::UserId::parse(user, "user")?;
    if !matches!(role, "user" | "support" | "admin") {
        anyhow::bail!("role must be user, support or admin");
    }
    let verifier = JwtVerifier::from_settings(settings)?;
    Ok(verifier.mint(&Claims {
        sub: user.to_owned(),
        exp: now_secs() + ttl_secs,
        name,
        role: Some(role.to_owned()),
        iss: settings.jwt_issuer.clone(),
        aud: settings.jwt_audience.clone(),
    })?)
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested, draining");
}

/// Parses the command line, sets up logging (and span export, sent as `service`) and runs
/// `migrate` or `token`. Returns the settings when the binary should serve (no command, or
/// `serve`). The caller ends with [`shutdown_telemetry`].
pub async fn run_cli(mode: Mode, service: &str) -> anyhow::Result<Option<Settings>> {
    use crate::config::{Cli, Command};
    use clap::Parser;
    let Cli {
        command,
        mut settings,
    } = Cli::parse();
    init_telemetry(&settings.log_format, service)?;
    ensure_jwt_key(&mut settings, mode)?;
    match command.unwrap_or(Command::Serve) {
        Command::Serve => Ok(Some(settings)),
        Command::Migrate => {
            Core::build(&settings).await?;
            tracing::info!("migrations applied");
            Ok(None)
        }
        Command::Token {
            user,
            name,
            role,
            ttl_secs,
        } => {
            let token = mint_token(&settings, &user, name, &role, ttl_secs)?;
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            Ok(None)
        }
    }
}

/// Serves `app` until Ctrl-C or SIGTERM, then stops within `grace`: runs `drain` (the
/// gateway closes its sockets there), stops accepting, lets in-flight requests finish, and
/// publishes the events they announced. Whatever is still open when `grace` has passed is
/// dropped: the process must exit before the orchestrator kills it.
pub async fn serve(
    listener: Listener,
    app: axum::Router,
    grace: std::time::Duration,
    events: Arc<dyn EventBus>,
    drain: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_until(listener, app, grace, events, drain, shutdown_signal()).await
}

/// [`serve`], stopping when `stop` completes instead of on a signal (tests stop one app of
/// several in a process this way).
pub async fn serve_until(
    listener: Listener,
    app: axum::Router,
    grace: std::time::Duration,
    events: Arc<dyn EventBus>,
    drain: impl std::future::Future<Output = ()> + Send + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use std::future::IntoFuture;
    let (signalled, signal) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let serving = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.await;
            let _ = signalled.send(tokio::time::Instant::now());
            drain.await;
        })
        .into_future();
    tokio::pin!(serving);
    let deadline = tokio::select! {
        served = &mut serving => {
            // The listener failed before any signal.
            served?;
            return Ok(());
        }
        at = signal => match at {
            Ok(at) => at + grace,
            Err(_) => return serving.await,
        },
    };
    match tokio::time::timeout_at(deadline, &mut serving).await {
        Ok(served) => served?,
        Err(_) => tracing::warn!("connections still open when the grace ran out: closing them"),
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    crate::events::drain(events.as_ref(), left).await;
    tracing::info!("stopped");
    Ok(())
}

/// The end of `main`: exit 0, or the error's messages on stderr and exit 1. No backtrace (even
/// with `RUST_BACKTRACE=1`): at start-up the message says what to fix, e.g. the setting.
pub fn report(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Accepted connections of [`listen`]: TCP with Nagle's algorithm off.
pub type Listener = axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

/// Binds `addr` for serving. Every accepted connection gets `TCP_NODELAY`: a chat writes
/// small frames (an ack, an event) and waits for the answer, and with Nagle's algorithm on,
/// a small write behind an unacknowledged one waits for the peer's delayed ACK, about 40 ms.
pub async fn listen(addr: std::net::SocketAddr) -> std::io::Result<Listener> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(listener.tap_io(nodelay as fn(&mut tokio::net::TcpStream)))
}

fn nodelay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}
