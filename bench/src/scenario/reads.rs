//! `reads`: read latency over REST for given users, one request at a time on one connection.
//!
//! Meant for the storage-at-scale databases (`bench/seed/`), where a user may be in ten
//! thousand conversations: for each user and each kind of read (the inbox's first page, a page
//! deeper in, a message page, the unread badge, the counters, searches of several
//! selectivities), a few warm-up requests, then `--requests` timed ones, back to back.
//! Latency is from sending the request to having read the whole body.
//!
//! A kind stops early once `--kind-budget-secs` are spent on it (always after at least one
//! timed request), so that a pathological read (tens of seconds) costs minutes, not hours;
//! its report says how many requests were timed.
//!
//! Any non-2xx answer is a failure (exit 3), except `GET /unread` answering 404: a server
//! without that addition (the Node reference, an older build) is reported as `unsupported`.
//! A refused connection means the server is gone: the remaining reads are not attempted.

use crate::ReadsArgs;
use crate::report::write_json;
use crate::rest::token;
use crate::stats::{Hist, Summary};
use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The REST base path of the contract.
const BASE_PATH: &str = "/api/v1/chat";

/// One kind of read for one user.
#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    /// `inbox`, `inbox_deep`, `messages`, `unread`, `stats` or `search:<term>`.
    pub kind: String,
    /// The request path under the REST base (`None` when the kind could not be set up).
    pub path: Option<String>,
    /// `ok`, `unsupported` (404 on `/unread`), `skipped` (e.g. too few conversations for
    /// the deep page), `failed`, or `not_run` (the server was gone).
    pub status: &'static str,
    pub note: Option<String>,
    /// Timed requests that succeeded (fewer than `--requests` when the time budget ran out:
    /// see `note`).
    pub requests: u64,
    /// Seconds spent on the kind, warm-up included.
    pub spent_secs: f64,
    pub latency: Summary,
    /// Items on the page (pages only), from the first timed answer.
    pub items: Option<usize>,
    /// Whether that page had a `nextCursor` (pages only).
    pub more: Option<bool>,
    /// Bytes of the first timed answer.
    pub bytes: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UserReport {
    pub user: String,
    /// `totalConversations` of the user's `/stats`.
    pub total_conversations: Option<u64>,
    /// `unreadMessages` of the user's `/stats`.
    pub unread_messages: Option<u64>,
    pub kinds: Vec<KindReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReadsReport {
    pub scenario: &'static str,
    pub label: Option<String>,
    pub params: ReadsArgs,
    pub users: Vec<UserReport>,
    pub wall_secs: f64,
    pub failures: Vec<String>,
}

/// A GET that failed: a non-2xx status (with the problem's `code`) or a transport error.
struct Failed {
    status: Option<u16>,
    what: String,
}

struct Client {
    http: reqwest::Client,
    base: String,
    /// A connection was refused: the server is gone, nothing more is attempted.
    gone: AtomicBool,
}

impl Client {
    fn new(api: &reqwest::Url, timeout_secs: u64) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Loopback only: an HTTP(S)_PROXY in the environment must not reroute requests.
            .no_proxy()
            .timeout(Duration::from_secs(timeout_secs))
            .tcp_nodelay(true)
            // Requests go one at a time: one connection, kept open and reused.
            .pool_max_idle_per_host(1)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: format!("{}{BASE_PATH}", api.as_str().trim_end_matches('/')),
            gone: AtomicBool::new(false),
        })
    }

    /// GETs `path` (under the REST base) and reads the whole body; the time covers both.
    async fn get(&self, token: &str, path: &str) -> Result<(Vec<u8>, Duration), Failed> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(Failed {
                status: None,
                what: "not attempted: the server refused a connection earlier".into(),
            });
        }
        let started = Instant::now();
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    self.gone.store(true, Ordering::Relaxed);
                }
                let what = if e.is_timeout() {
                    format!("timeout after {} s", started.elapsed().as_secs())
                } else if e.is_connect() {
                    "connection refused: is the server still running?".to_owned()
                } else {
                    format!("transport: {e}")
                };
                Failed { status: None, what }
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| Failed {
            status: Some(status.as_u16()),
            what: format!("reading the body: {e}"),
        })?;
        let took = started.elapsed();
        if !status.is_success() {
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "-".into());
            return Err(Failed {
                status: Some(status.as_u16()),
                what: format!("http {} ({code})", status.as_u16()),
            });
        }
        Ok((body.to_vec(), took))
    }

    /// GETs `path` and parses the answer as JSON (setup requests, not timed).
    async fn json(&self, token: &str, path: &str) -> Result<serde_json::Value, Failed> {
        let (body, _) = self.get(token, path).await?;
        serde_json::from_slice(&body).map_err(|e| Failed {
            status: None,
            what: format!("unreadable JSON: {e}"),
        })
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn next_cursor(page: &serde_json::Value) -> Option<String> {
    page.get("nextCursor")
        .and_then(|c| c.as_str())
        .map(str::to_owned)
}

/// What a kind needs before it can be timed: its path, or why it cannot run.
enum Plan {
    Path(String),
    Skip(String),
    Fail(String),
}

/// Times one kind: `warmup` untimed requests, then `requests` timed ones.
async fn time_kind(
    client: &Client,
    token: &str,
    kind: &str,
    plan: Plan,
    args: &ReadsArgs,
) -> KindReport {
    let mut report = KindReport {
        kind: kind.to_owned(),
        path: None,
        status: "ok",
        note: None,
        requests: 0,
        spent_secs: 0.0,
        latency: Summary::default(),
        items: None,
        more: None,
        bytes: None,
    };
    if client.gone.load(Ordering::Relaxed) {
        report.status = "not_run";
        report.note = Some("the server refused a connection earlier".into());
        return report;
    }
    let path = match plan {
        Plan::Path(p) => p,
        Plan::Skip(why) => {
            report.status = "skipped";
            report.note = Some(why);
            return report;
        }
        Plan::Fail(why) => {
            report.status = "failed";
            report.note = Some(why);
            return report;
        }
    };
    report.path = Some(path.clone());
    let mut hist = Hist::default();
    let total = args.warmup + args.requests;
    let budget = Duration::from_secs_f64(args.kind_budget_secs);
    let started = Instant::now();
    let mut i = 0;
    while i < total {
        // Out of time: skip the rest of the warm-up, stop after at least one timed request.
        if started.elapsed() > budget {
            if i < args.warmup {
                i = args.warmup;
            } else if report.requests > 0 {
                report.note = Some(format!(
                    "time budget of {} s spent: {} of {} timed requests made",
                    args.kind_budget_secs, report.requests, args.requests
                ));
                break;
            }
        }
        let result = client.get(token, &path).await;
        i += 1;
        match result {
            Ok((body, took)) => {
                if i <= args.warmup {
                    continue;
                }
                hist.record(took);
                report.requests += 1;
                if report.bytes.is_none() {
                    report.bytes = Some(body.len());
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                        && let Some(items) = v.get("items").and_then(|i| i.as_array())
                    {
                        report.items = Some(items.len());
                        report.more = Some(next_cursor(&v).is_some());
                    }
                }
            }
            Err(f) if kind == "unread" && f.status == Some(404) && i == 1 => {
                report.status = "unsupported";
                report.note = Some("GET /unread answers 404 (no such endpoint here)".into());
                return report;
            }
            Err(f) => {
                report.status = "failed";
                report.note = Some(format!("request {i} of {total}: {}", f.what));
                break;
            }
        }
    }
    report.spent_secs = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    report.latency = hist.summary();
    report
}

async fn measure_user(client: &Client, user: &str, args: &ReadsArgs) -> anyhow::Result<UserReport> {
    let ttl = Duration::from_secs(args.deadline_secs + 3600);
    let token = token(args.jwt_secret.as_bytes(), user, ttl)?;
    let limit = args.inbox_limit;
    let inbox = format!("/conversations?limit={limit}");

    // Untimed setup reads: the user's counters, the newest conversation, the deep cursor.
    let stats = client.json(&token, "/stats").await;
    let (total_conversations, unread_messages) = match &stats {
        Ok(s) => (
            s.get("totalConversations")
                .and_then(serde_json::Value::as_u64),
            s.get("unreadMessages").and_then(serde_json::Value::as_u64),
        ),
        Err(_) => (None, None),
    };
    let first = client.json(&token, &inbox).await;
    let newest = match &first {
        Ok(page) => match page
            .get("items")
            .and_then(|i| i.get(0))
            .and_then(|c| c.get("id"))
            .and_then(|id| id.as_str())
        {
            Some(id) => Plan::Path(format!(
                "/conversations/{}/messages?limit={}",
                encode(id),
                args.message_limit
            )),
            None => Plan::Skip(format!("{user} is in no conversation")),
        },
        Err(f) => Plan::Fail(format!("first inbox page: {}", f.what)),
    };
    // The page `deep_pages` cursors in: pages 1..=deep_pages are read to reach it.
    let deep = match &first {
        Err(f) => Plan::Fail(format!("first inbox page: {}", f.what)),
        Ok(page) => {
            let mut cursor = next_cursor(page);
            let mut plan = None;
            for depth in 1..args.deep_pages.max(1) {
                let Some(c) = cursor.clone() else { break };
                match client
                    .json(&token, &format!("{inbox}&cursor={}", encode(&c)))
                    .await
                {
                    Ok(p) => cursor = next_cursor(&p),
                    Err(f) => {
                        plan = Some(Plan::Fail(format!("inbox page {}: {}", depth + 1, f.what)));
                        break;
                    }
                }
            }
            plan.unwrap_or_else(|| match cursor {
                Some(c) => Plan::Path(format!("{inbox}&cursor={}", encode(&c))),
                None => Plan::Skip(format!(
                    "fewer than {} pages of {limit} conversations",
                    args.deep_pages + 1
                )),
            })
        }
    };

    let mut kinds = vec![
        ("inbox".to_owned(), Plan::Path(inbox.clone())),
        ("inbox_deep".to_owned(), deep),
        ("messages".to_owned(), newest),
        ("unread".to_owned(), Plan::Path("/unread".into())),
        ("stats".to_owned(), Plan::Path("/stats".into())),
    ];
    for term in &args.search {
        kinds.push((
            format!("search:{term}"),
            Plan::Path(format!("/conversations/search?q={}", encode(term))),
        ));
    }
    let mut reports = Vec::with_capacity(kinds.len());
    for (kind, plan) in kinds {
        eprintln!("chat-bench: reads: {user} {kind}");
        reports.push(time_kind(client, &token, &kind, plan, args).await);
    }
    Ok(UserReport {
        user: user.to_owned(),
        total_conversations,
        unread_messages,
        kinds: reports,
    })
}

pub async fn run(args: &ReadsArgs) -> anyhow::Result<Vec<String>> {
    let api = crate::loopback(&args.api)?;
    if args.users.is_empty() {
        anyhow::bail!("give at least one --user");
    }
    let client = Client::new(&api, args.request_timeout_secs)?;
    let started = Instant::now();
    let mut users = Vec::new();
    for user in &args.users {
        users.push(measure_user(&client, user, args).await?);
    }
    let mut failures = Vec::new();
    if client.gone.load(Ordering::Relaxed) {
        failures.push("the server refused a connection: the reads after it were not run".into());
    }
    for u in &users {
        if u.total_conversations.is_none() {
            failures.push(format!("{}: /stats gave no totalConversations", u.user));
        }
        for k in u.kinds.iter().filter(|k| k.status == "failed") {
            failures.push(format!(
                "{} {}: {}",
                u.user,
                k.kind,
                k.note.as_deref().unwrap_or("failed")
            ));
        }
    }
    let report = ReadsReport {
        scenario: "reads",
        label: args.label.clone(),
        params: args.clone(),
        users,
        wall_secs: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        failures: failures.clone(),
    };
    print_table(&report);
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(failures)
}

fn print_table(r: &ReadsReport) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`… | head`) must not fail the run: write errors are ignored.
    let _ = writeln!(
        out,
        "{:<14} {:>7} {:<18} {:>5} {:>9} {:>9} {:>9} {:>6}  note",
        "user", "convs", "kind", "n", "p50ms", "p99ms", "maxms", "items"
    );
    for u in &r.users {
        let convs = u
            .total_conversations
            .map_or("?".to_owned(), |n| n.to_string());
        for k in &u.kinds {
            let items = match (k.items, k.more) {
                (Some(n), Some(true)) => format!("{n}+"),
                (Some(n), _) => n.to_string(),
                _ => "-".into(),
            };
            let note = match (k.status, &k.note) {
                ("ok", Some(n)) => n.clone(),
                ("ok", None) => String::new(),
                (s, Some(n)) => format!("{}: {n}", s.to_uppercase()),
                (s, None) => s.to_uppercase(),
            };
            if k.requests > 0 {
                let _ = writeln!(
                    out,
                    "{:<14} {:>7} {:<18} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>6}  {note}",
                    u.user,
                    convs,
                    k.kind,
                    k.requests,
                    k.latency.p50_ms,
                    k.latency.p99_ms,
                    k.latency.max_ms,
                    items
                );
            } else {
                let _ = writeln!(
                    out,
                    "{:<14} {:>7} {:<18} {:>5} {:>9} {:>9} {:>9} {:>6}  {note}",
                    u.user, convs, k.kind, 0, "-", "-", "-", items
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "{} user(s) in {:.1} s; {}",
        r.users.len(),
        r.wall_secs,
        if r.failures.is_empty() {
            "every answer 2xx".to_owned()
        } else {
            format!("{} FAILURE(S)", r.failures.len())
        }
    );
    for f in &r.failures {
        let _ = writeln!(out, "FAILURE: {f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("Elm"), "Elm");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
