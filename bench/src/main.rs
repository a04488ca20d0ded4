//! chat-bench: an open-loop load generator for the chat backend (the embedded `chat`, the
//! scaled `chat-api` + `chat-gateway`, or the Node.js reference in `shared/peer`).
//!
//! It speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself ([`sio`]), one tokio task per
//! socket, so that thousands of sockets cost a few kilobytes each on the generator side.
//! Subcommands: `load` (messages at a fixed rate or a ramp, delivery latency and loss),
//! `idle` (memory per connected socket on the server) and `reads` (REST read latency per
//! user, for the storage-at-scale databases). See `bench/README.md`.

mod report;
mod rest;
mod scenario;
mod sio;
mod stats;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(name = "chat-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Users in conversations send messages at a steady rate or a ramp; measures delivery
    /// latency, loss, duplicates, acknowledgement latency and errors.
    Load(LoadArgs),
    /// Holds many connected sockets and reports the servers' memory per socket.
    Idle(IdleArgs),
    /// REST read latency for given users, one request at a time on one connection: inbox
    /// pages, a message page, the unread badge, the counters, searches.
    Reads(ReadsArgs),
}

/// Options shared by every scenario.
#[derive(Args, Debug, Clone, Serialize)]
pub struct Common {
    /// REST origin (the REST base path /api/v1/chat is appended). Loopback only.
    #[arg(long, env = "CHAT_API", default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// Socket.IO origin; repeat for several gateways (sockets are spread round-robin).
    /// Defaults to --api. Loopback only.
    #[arg(long = "gateway", value_name = "URL")]
    pub gateways: Vec<String>,
    /// HS256 secret the servers verify tokens with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    #[serde(skip)]
    pub jwt_secret: String,
    /// The whole run aborts with an error after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub deadline_secs: u64,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Exit non-zero on any loss, duplicate, error, connect failure or disconnect.
    #[arg(long)]
    pub strict: bool,
    /// Server processes to watch (CPU and VmRSS from /proc/<pid>); repeatable. For `idle`,
    /// give them in the order of --gateway (one per gateway) to get memory per socket of
    /// each gateway; with another number, growth is divided by all sockets.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Socket connections opened at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Time allowed for one socket to connect (WebSocket + Socket.IO connect).
    #[arg(long, default_value_t = 10)]
    pub connect_timeout_secs: u64,
    /// Seed of the random choices (senders, conversations, shares); random when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// A free-form label copied into the JSON (e.g. "embedded", "scaled-2gw", "peer").
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct LoadArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Users, each holding one socket.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Conversations (default: users / 2).
    #[arg(long)]
    pub conversations: Option<usize>,
    /// Share of conversations with 3 or 4 participants (the rest have two).
    #[arg(long, default_value_t = 0.05)]
    pub group_share: f64,
    /// Every conversation's participants are on the same gateway (socket `i` goes to
    /// gateway `i % gateways`): with --metrics, shows that a gateway's Redis intake follows
    /// its own users only.
    #[arg(long)]
    pub disjoint: bool,
    /// A `/metrics` URL to read the event bus counters from before the first step and after
    /// the last (repeat, e.g. once per gateway).
    #[arg(long = "metrics", value_name = "URL")]
    pub metrics: Vec<String>,
    /// Steady rate in messages per second (one step of --duration-secs).
    #[arg(long, conflicts_with = "ramp")]
    pub rate: Option<f64>,
    /// Length of the steady-rate run.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Ramp START,STEP,MAX in messages per second: steps of --step-secs each, stopping
    /// after the first step that does not hold.
    #[arg(long, value_name = "START,STEP,MAX")]
    pub ramp: Option<String>,
    /// Length of one ramp step.
    #[arg(long, default_value_t = 8.0)]
    pub step_secs: f64,
    /// Share of messages sent over REST (POST /conversations/{id}/messages); the rest go as
    /// socket `send_message` with an acknowledgement.
    #[arg(long, default_value_t = 0.1)]
    pub rest_share: f64,
    /// Share of socket sends wrapped in `typing_start` / `typing_stop`.
    #[arg(long, default_value_t = 0.1)]
    pub typing_share: f64,
    /// Share of received messages (by participants other than the sender) answered with
    /// `mark_as_read`.
    #[arg(long, default_value_t = 0.2)]
    pub read_share: f64,
    /// Messages one user may send per --user-rate-window-secs (the server's limit; the
    /// generator never plans more, with a 10% margin on the window).
    #[arg(long, default_value_t = 20)]
    pub user_rate_limit: usize,
    #[arg(long, default_value_t = 10.0)]
    pub user_rate_window_secs: f64,
    /// Wait after the last send of a step for outstanding deliveries and acks.
    #[arg(long, default_value_t = 3.0)]
    pub drain_secs: f64,
    /// A step holds when the delivery p99 (to participants other than the sender) is at most
    /// this, with no error, no loss and no duplicate.
    #[arg(long, default_value_t = 100.0)]
    pub hold_p99_ms: f64,
    /// Pacing lag p99 above this marks the generator as the bottleneck.
    #[arg(long, default_value_t = 20.0)]
    pub max_lag_ms: f64,
    /// Each socket joins its conversations' rooms (join_conversation) before the load, so
    /// that typing indicators fan out as in a real client with the conversation open.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub join: bool,
    /// Conversations created at once over REST.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// Pause after every socket is connected (presence announcements settle).
    #[arg(long, default_value_t = 1.0)]
    pub settle_secs: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct IdleArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Sockets to connect (one distinct user each).
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// How long to hold them connected (longer than the ping interval, 25 s, to see pings).
    #[arg(long, default_value_t = 30.0)]
    pub hold_secs: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ReadsArgs {
    /// REST origin (the REST base path /api/v1/chat is appended). Loopback only.
    #[arg(long, env = "CHAT_API", default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// HS256 secret the server verifies tokens with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    #[serde(skip)]
    pub jwt_secret: String,
    /// A user to read as (repeat): e.g. u_landlord, u_support, u_8 in the seeded databases.
    #[arg(long = "user", value_name = "USER", required = true)]
    pub users: Vec<String>,
    /// Timed requests per user and kind of read.
    #[arg(long, default_value_t = 100)]
    pub requests: u64,
    /// Untimed requests before them (per user and kind).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Search terms (repeat); each is one kind of read, `search:<term>`. Default: a common
    /// word, a rare one, a title word and one that matches nothing in the seed.
    #[arg(long = "search", value_name = "TERM",
          default_values_t = ["garden".to_owned(), "ref77".to_owned(), "Elm".to_owned(), "zzzz".to_owned()])]
    pub search: Vec<String>,
    /// The deeper inbox page is the one this many `nextCursor`s in (5: conversations
    /// 101–120 with --inbox-limit 20).
    #[arg(long, default_value_t = 5)]
    pub deep_pages: usize,
    /// Time allowed for one kind of read of one user, warm-up included: once spent, the
    /// warm-up is cut short and timing stops (after at least one timed request).
    #[arg(long, default_value_t = 30.0)]
    pub kind_budget_secs: f64,
    /// Time allowed for one request.
    #[arg(long, default_value_t = 120)]
    pub request_timeout_secs: u64,
    /// `limit` of inbox pages.
    #[arg(long, default_value_t = 20)]
    pub inbox_limit: u32,
    /// `limit` of the message page.
    #[arg(long, default_value_t = 50)]
    pub message_limit: u32,
    /// The whole run aborts with an error after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub deadline_secs: u64,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// A free-form label copied into the JSON (e.g. "postgres", "sqlite").
    #[arg(long)]
    pub label: Option<String>,
}

/// Wall clock in UNIX microseconds (the timestamp carried in message contents).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Accepts only loopback origins: this tool makes thousands of connections and must never
/// be pointed at someone else's machine by mistake.
pub fn loopback(url: &str) -> anyhow::Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url}: not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "ws") {
        bail!("{url}: only http:// (or ws://) origins are supported");
    }
    match parsed.host_str() {
        Some("127.0.0.1" | "localhost" | "[::1]") => Ok(parsed),
        _ => bail!("{url}: refusing a host that is not 127.0.0.1, localhost or ::1"),
    }
}

/// Exit code when `--strict` finds loss, duplicates or errors (or `reads` a non-2xx answer).
const EXIT_STRICT: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let failed_what = if matches!(cli.command, Command::Reads(_)) {
        "reads failed"
    } else {
        "--strict"
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Sockets and requests still in flight are abandoned, not awaited.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("chat-bench: {failed_what}: {}", failures.join("; "));
            ExitCode::from(EXIT_STRICT)
        }
        Err(e) => {
            eprintln!("chat-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario under the deadline; `Ok(failures)` lists what `--strict` rejects (empty
/// without `--strict`).
async fn run(cli: Cli) -> anyhow::Result<Vec<String>> {
    // `reads` has no --strict: a non-2xx answer always fails it.
    let (secret, deadline_secs, strict) = match &cli.command {
        Command::Load(a) => (
            &a.common.jwt_secret,
            a.common.deadline_secs,
            a.common.strict,
        ),
        Command::Idle(a) => (
            &a.common.jwt_secret,
            a.common.deadline_secs,
            a.common.strict,
        ),
        Command::Reads(a) => (&a.jwt_secret, a.deadline_secs, true),
    };
    if secret.len() < 16 {
        bail!("--jwt-secret / JWT_SECRET must be set (at least 16 bytes, as the servers require)");
    }
    let deadline = Duration::from_secs(deadline_secs);
    let outcome = tokio::time::timeout(deadline, async {
        match &cli.command {
            Command::Load(args) => scenario::load::run(args).await,
            Command::Idle(args) => scenario::idle::run(args).await,
            Command::Reads(args) => scenario::reads::run(args).await,
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("deadline of {} s exceeded: run aborted", deadline.as_secs()))??;
    Ok(if strict { outcome } else { Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        assert!(loopback("http://127.0.0.1:8000").is_ok());
        assert!(loopback("http://localhost:8000").is_ok());
        assert!(loopback("http://[::1]:8000").is_ok());
        assert!(loopback("http://10.0.0.1:8000").is_err());
        assert!(loopback("http://example.com").is_err());
        assert!(loopback("https://127.0.0.1").is_err());
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "load",
            "--jwt-secret",
            "0123456789abcdef",
            "--gateway",
            "http://127.0.0.1:8001",
            "--gateway",
            "http://127.0.0.1:8002",
            "--ramp",
            "50,50,200",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
    }

    #[test]
    fn reads_cli_parses_with_default_searches() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "reads",
            "--jwt-secret",
            "0123456789abcdef",
            "--user",
            "u_landlord",
            "--user",
            "u_8",
            "--requests",
            "20",
        ]);
        match cli.map(|c| c.command) {
            Ok(Command::Reads(a)) => {
                assert_eq!(a.users, ["u_landlord", "u_8"]);
                assert_eq!(a.search, ["garden", "ref77", "Elm", "zzzz"]);
                assert_eq!(a.requests, 20);
            }
            other => panic!("{other:?}"),
        }
    }
}
