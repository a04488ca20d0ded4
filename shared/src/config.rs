//! Typed configuration, from command-line flags and the environment (flags win).
//!
//! Every value is checked at start: an invalid one stops the process with a message naming
//! it. Secrets are never printed (`Debug` redacts them).

use clap::{Args, Parser, Subcommand};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Command line shared by the three binaries (`chat`, `chat-api`, `chat-gateway`).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default when no command is given).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Print a signed HS256 token for USER, for trying the API by hand.
    Token {
        /// The user id (`sub` claim).
        user: String,
        /// Display name (`name` claim).
        #[arg(long)]
        name: Option<String>,
        /// `user`, `support` or `admin`.
        #[arg(long, default_value = "user")]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_secs: u64,
    },
}

#[derive(Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// `sqlite:<path>` (embedded default) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/chat.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Database connections per process.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// Redis for the event bus and presence across replicas (scaled mode).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "chat")]
    pub redis_prefix: String,

    /// A `typing_start` without `typing_stop` ends by itself after this long, milliseconds.
    #[arg(long, env = "TYPING_TIMEOUT_MS", default_value_t = 8_000)]
    pub typing_timeout_ms: u64,
    /// A gateway replica that stops refreshing its sockets' presence (it crashed) has its
    /// users go offline after this long, seconds. Refreshed every third of it.
    #[arg(long, env = "PRESENCE_TTL_SECS", default_value_t = 30)]
    pub presence_ttl_secs: u64,

    /// HS256 shared secret of the rental platform's tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key for RS256 or ES256 tokens (the PEM itself, or a path to it).
    #[arg(long, env = "JWT_PUBLIC_KEY", hide_env_values = true)]
    pub jwt_public_key: Option<String>,
    /// Required `iss` claim, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// Browser origins allowed by CORS, comma-separated (`*` for any).
    #[arg(long, env = "CLIENT_URL", default_value = "http://localhost:3000")]
    pub client_url: String,

    /// Maximum message length, characters after trimming.
    #[arg(long, env = "MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub max_message_chars: usize,
    /// Maximum REST body (and socket packet), bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Messages a user may send in any window-long span, REST and socket together (per
    /// process for now).
    #[arg(long, env = "RATE_LIMIT_MESSAGES", default_value_t = 20)]
    pub rate_limit_messages: u32,
    /// The rate-limit window, seconds.
    #[arg(long, env = "RATE_LIMIT_WINDOW_SECS", default_value_t = 10)]
    pub rate_limit_window_secs: u64,
    /// Participants per conversation, the creator included.
    #[arg(long, env = "MAX_PARTICIPANTS", default_value_t = 50)]
    pub max_participants: usize,
    /// Conversations one socket may have joined at once (`join_conversation`).
    #[arg(long, env = "MAX_JOINS_PER_SOCKET", default_value_t = 1000)]
    pub max_joins_per_socket: usize,
    /// `typing_start` and `typing_stop` one socket may send in any 10 s, together.
    #[arg(long, env = "TYPING_EVENTS_PER_10S", default_value_t = 30)]
    pub typing_events_per_10s: u32,
    /// Sockets one user may hold on one gateway replica at once.
    #[arg(long, env = "MAX_SOCKETS_PER_USER", default_value_t = 50)]
    pub max_sockets_per_user: usize,
    /// Sockets one client address may hold on one gateway replica at once; 0: no limit.
    /// Behind a load balancer, set CLIENT_IP_HEADER too, or every client has its address.
    #[arg(long, env = "MAX_SOCKETS_PER_IP", default_value_t = 0)]
    pub max_sockets_per_ip: usize,
    /// A request header that carries the client's address, set by a trusted proxy in front
    /// (e.g. `x-forwarded-for`: its first address is taken). Unset: the peer's address.
    #[arg(long, env = "CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// How long after sending a message its sender may edit or delete it, seconds.
    #[arg(long, env = "EDIT_WINDOW_SECS", default_value_t = 24 * 3600)]
    pub edit_window_secs: u64,

    /// How long the change feed (`GET /sync`) keeps each change, hours (at least 7 days by
    /// the contract's default). Older entries are pruned; a cursor older than that answers
    /// `410 sync_expired`.
    #[arg(long, env = "FEED_RETENTION_HOURS", default_value_t = 7 * 24)]
    pub feed_retention_hours: u64,
    /// Scaled mode: a change whose events are not on Redis this long after it committed (the
    /// process that made it died, or Redis was away) is published again from the outbox by
    /// a relay, milliseconds.
    #[arg(long, env = "OUTBOX_RELAY_AFTER_MS", default_value_t = 5_000)]
    pub outbox_relay_after_ms: u64,
    /// A REST request or socket event not finished in this long answers `unavailable`
    /// (`503`), milliseconds: the contract's bound while the database or Redis is away.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 1_800)]
    pub request_timeout_ms: u64,
    /// On SIGTERM or Ctrl-C, how long the process may take to stop, seconds: in-flight
    /// requests and acks finish, sockets are closed (clients reconnect elsewhere), queued
    /// events are published. Keep it below Kubernetes' terminationGracePeriodSeconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,

    /// `text` (human) or `json` (one object per line) logs. Filter with RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Set at start when no key was configured and the embedded server uses its generated
    /// development secret: only then may it print a ready-made token.
    #[arg(skip)]
    pub dev_secret: bool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("typing_timeout_ms", &self.typing_timeout_ms)
            .field("presence_ttl_secs", &self.presence_ttl_secs)
            .field("jwt_secret", &redact(&self.jwt_secret))
            .field("jwt_public_key", &redact(&self.jwt_public_key))
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("client_url", &self.client_url)
            .field("limits", &self.limits())
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .finish_non_exhaustive()
    }
}

/// Hides a password in `scheme://user:password@host/…`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The contract's configurable limits, as the domain service uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_chars: usize,
    pub max_body_bytes: usize,
    pub rate_limit_messages: u32,
    pub rate_limit_window: Duration,
    pub max_participants: usize,
    pub edit_window: Duration,
    /// How long a request or socket event may take before it answers `unavailable`.
    pub request_timeout: Duration,
    /// How long the change feed keeps each change.
    pub feed_retention: Duration,
    pub max_joins_per_socket: usize,
    pub typing_events_per_10s: u32,
    pub max_sockets_per_user: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_chars: 4000,
            max_body_bytes: 64 * 1024,
            rate_limit_messages: 20,
            rate_limit_window: Duration::from_secs(10),
            max_participants: 50,
            edit_window: Duration::from_secs(24 * 3600),
            request_timeout: Duration::from_millis(1_800),
            feed_retention: Duration::from_secs(7 * 24 * 3600),
            max_joins_per_socket: 1000,
            typing_events_per_10s: 30,
            max_sockets_per_user: 50,
        }
    }
}

/// A configuration value that cannot work; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// The limits the domain service enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_chars: self.max_message_chars,
            max_body_bytes: self.max_body_bytes,
            rate_limit_messages: self.rate_limit_messages,
            rate_limit_window: Duration::from_secs(self.rate_limit_window_secs),
            max_participants: self.max_participants,
            edit_window: Duration::from_secs(self.edit_window_secs),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            feed_retention: Duration::from_secs(self.feed_retention_hours.saturating_mul(3600)),
            max_joins_per_socket: self.max_joins_per_socket,
            typing_events_per_10s: self.typing_events_per_10s,
            max_sockets_per_user: self.max_sockets_per_user,
        }
    }

    /// Checks what clap cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError(m.to_owned()));
        if self.max_message_chars == 0 {
            return fail("MAX_MESSAGE_CHARS must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            return fail("MAX_BODY_BYTES must be at least 1024");
        }
        if self.rate_limit_messages == 0 || self.rate_limit_window_secs == 0 {
            return fail("RATE_LIMIT_MESSAGES and RATE_LIMIT_WINDOW_SECS must be at least 1");
        }
        if self.max_joins_per_socket == 0
            || self.typing_events_per_10s == 0
            || self.max_sockets_per_user == 0
        {
            return fail(
                "MAX_JOINS_PER_SOCKET, TYPING_EVENTS_PER_10S and MAX_SOCKETS_PER_USER must be at least 1",
            );
        }
        if self.feed_retention_hours == 0 {
            return fail("FEED_RETENTION_HOURS must be at least 1");
        }
        // The batching writer turns away a send with under 100 ms left (`store::writer`).
        if self.request_timeout_ms < 500 {
            return fail("REQUEST_TIMEOUT_MS must be at least 500");
        }
        if self.max_participants < 2 {
            return fail("MAX_PARTICIPANTS must be at least 2");
        }
        if self.database_max_connections == 0 {
            return fail("DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return fail("DATABASE_URL must start with sqlite: or postgres://");
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return fail("REDIS_URL must start with redis:// or rediss://");
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return fail("REDIS_PREFIX must be non-empty, without spaces");
        }
        if self.typing_timeout_ms == 0 {
            return fail("TYPING_TIMEOUT_MS must be at least 1");
        }
        if self.presence_ttl_secs < 3 {
            return fail("PRESENCE_TTL_SECS must be at least 3");
        }
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 16
        {
            return fail("JWT_SECRET must be at least 16 bytes");
        }
        if self.client_ip_header().is_some_and(|h| h.is_none()) {
            return fail("CLIENT_IP_HEADER must be an HTTP header name, e.g. x-forwarded-for");
        }
        Ok(())
    }

    /// `CLIENT_IP_HEADER` as a header name: `None` when unset, `Some(None)` when it is not a
    /// valid name ([`Settings::validate`] refuses that).
    pub fn client_ip_header(&self) -> Option<Option<axum::http::HeaderName>> {
        let name = self.client_ip_header.as_deref()?.trim();
        Some(axum::http::HeaderName::from_bytes(name.as_bytes()).ok())
    }

    /// CORS origins from `CLIENT_URL`; `None` means any origin.
    pub fn cors_origins(&self) -> Option<Vec<String>> {
        let origins: Vec<String> = self
            .client_url
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if origins.iter().any(|o| o == "*") {
            None
        } else {
            Some(origins)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://chat:s3cret@db:5432/chat"),
            "postgres://chat:***@db:5432/chat"
        );
        assert_eq!(redact_url("sqlite://data/chat.db"), "sqlite://data/chat.db");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
    }

    /// Every setting is in the README's configuration table, and `--help` names each one's
    /// variable without printing the value of one that may hold a secret.
    #[test]
    fn every_setting_is_documented_and_help_keeps_secrets() {
        use clap::CommandFactory;
        let readme = include_str!("../../README.md");
        let table = readme
            .split("## Configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or("");
        let mut command = Cli::command();
        let mut undocumented = Vec::new();
        let mut names = 0;
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
                continue;
            };
            names += 1;
            if !table
                .lines()
                .any(|l| l.starts_with('|') && l.contains(&format!("`{env}`")))
            {
                undocumented.push(env.to_owned());
            }
        }
        assert!(names >= 30, "only {names} settings found");
        assert!(
            undocumented.is_empty(),
            "not in the README table: {undocumented:?}"
        );
        // clap prints `[env: NAME=value]` for a variable that is set, unless told not to.
        for secret_arg in ["jwt_secret", "jwt_public_key", "database_url", "redis_url"] {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == secret_arg)
                .expect("the argument exists");
            assert!(
                arg.is_hide_env_values_set(),
                "{secret_arg} would print its value in --help"
            );
        }
        let help = command.render_long_help().to_string();
        assert!(
            help.contains("JWT_SECRET") && help.contains("REQUEST_TIMEOUT_MS"),
            "{help}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cli = Cli::try_parse_from(["chat", "--max-participants", "1"]).expect("parses");
        let err = cli.settings.validate().expect_err("rejected");
        assert!(err.to_string().contains("MAX_PARTICIPANTS"), "{err}");
        let cli = Cli::try_parse_from(["chat", "--database-url", "mysql://x"]).expect("parses");
        assert!(cli.settings.validate().is_err());
        let cli =
            Cli::try_parse_from(["chat", "--client-ip-header", "x forwarded"]).expect("parses");
        let err = cli.settings.validate().expect_err("rejected");
        assert!(err.to_string().contains("CLIENT_IP_HEADER"), "{err}");
    }
}
