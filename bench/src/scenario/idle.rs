//! `idle`: C sockets of C distinct users connected and held, answering pings; the servers'
//! resident memory (VmRSS) before connecting, once all are connected, and after the hold
//! gives their memory per connected socket.

use crate::IdleArgs;
use crate::report;
use crate::rest::token;
use crate::scenario::{ConnectFigures, Target, close_all, connect_all, run_id};
use crate::sio::{AckKind, Observer, Outgoing, SocketHandle, event_name};
use crate::stats::{Codes, bump, lock, rss_kib};
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    events: Mutex<Codes>,
    disconnects: Mutex<Codes>,
    disconnected: AtomicU64,
}

impl Observer for Counts {
    fn on_event(&self, _socket: usize, frame: &str, _received: u64) -> Option<Outgoing> {
        bump(&mut lock(&self.events), event_name(frame));
        None
    }
    fn on_ack(&self, _socket: usize, _kind: AckKind, _frame: &str, _elapsed: Duration) {}
    fn on_written(&self, _kind: Option<AckKind>, _lag: Duration) {}
    fn on_disconnect(&self, _socket: usize, reason: &str) {
        self.disconnected.fetch_add(1, Ordering::Relaxed);
        bump(&mut lock(&self.disconnects), reason);
    }
}

/// Memory of one server process at the three points, in KiB, and per socket.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    pub pid: Option<u32>,
    /// The sockets its growth is divided by.
    pub sockets: usize,
    pub before_kib: Option<u64>,
    pub connected_kib: Option<u64>,
    pub after_hold_kib: Option<u64>,
    /// (connected - before) / sockets.
    pub per_socket_kib: Option<f64>,
    /// (after hold - before) / sockets.
    pub per_socket_after_hold_kib: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    pub label: Option<String>,
    pub run: String,
    pub params: IdleArgs,
    pub connect: ConnectFigures,
    pub hold_secs: f64,
    /// Sockets still connected at the end of the hold.
    pub alive_after_hold: usize,
    pub disconnects: Codes,
    pub events: Codes,
    /// This process's own RSS with every socket connected.
    pub generator_rss_kib: Option<u64>,
    /// One entry per `--pid`, then the total (pid `null`).
    pub memory: Vec<Memory>,
    pub failures: Vec<String>,
}

fn per_socket(before: Option<u64>, after: Option<u64>, sockets: usize) -> Option<f64> {
    let (b, a) = (before?, after?);
    if sockets == 0 {
        return None;
    }
    let v = (a as f64 - b as f64) / sockets as f64;
    Some((v * 100.0).round() / 100.0)
}

fn sum(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.sum()
}

pub async fn run(args: &IdleArgs) -> anyhow::Result<Vec<String>> {
    let common = &args.common;
    let target = Target::new(common)?;
    let seed = common.seed.unwrap_or_else(rand::random);
    let run = run_id(seed);
    let ttl = Duration::from_secs(common.deadline_secs + 3600);
    let tokens: Vec<String> = (0..args.sockets)
        .map(|i| {
            token(
                common.jwt_secret.as_bytes(),
                &format!("idle-{run}-u{i}"),
                ttl,
            )
        })
        .collect::<anyhow::Result<_>>()?;

    let rss = |pids: &[u32]| pids.iter().map(|p| rss_kib(*p)).collect::<Vec<_>>();
    let before = rss(&common.pids);
    let observer = std::sync::Arc::new(Counts::default());
    eprintln!(
        "chat-bench: run {run}: connecting {} idle sockets over {} gateway(s)",
        args.sockets,
        target.ws_urls.len()
    );
    let (sockets, connect) = connect_all(&target, &tokens, common, observer.clone()).await;
    let connected = rss(&common.pids);
    let generator_rss_kib = rss_kib(std::process::id());
    let n = connect.connected;

    eprintln!("chat-bench: {n} connected; holding {} s", args.hold_secs);
    let hold_start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.hold_secs)).await;
    let after = rss(&common.pids);
    let alive = sockets
        .iter()
        .flatten()
        .filter(|s| SocketHandle::is_alive(s))
        .count();
    let hold_secs = hold_start.elapsed().as_secs_f64();
    close_all(&sockets).await;

    // With as many --pid as gateways, the i-th pid is taken to be the i-th gateway and its
    // growth is divided by that gateway's sockets; otherwise by all sockets.
    let paired = common.pids.len() == connect.per_gateway.len();
    let mut memory: Vec<Memory> = common
        .pids
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            let sockets = if paired { connect.per_gateway[i] } else { n };
            Memory {
                pid: Some(*pid),
                sockets,
                before_kib: before[i],
                connected_kib: connected[i],
                after_hold_kib: after[i],
                per_socket_kib: per_socket(before[i], connected[i], sockets),
                per_socket_after_hold_kib: per_socket(before[i], after[i], sockets),
            }
        })
        .collect();
    if !common.pids.is_empty() {
        let (b, c, a) = (
            sum(before.iter().copied()),
            sum(connected.iter().copied()),
            sum(after.iter().copied()),
        );
        memory.push(Memory {
            pid: None,
            sockets: n,
            before_kib: b,
            connected_kib: c,
            after_hold_kib: a,
            per_socket_kib: per_socket(b, c, n),
            per_socket_after_hold_kib: per_socket(b, a, n),
        });
    }

    let mut failures = Vec::new();
    if connect.failed > 0 {
        failures.push(format!("{} connect failure(s)", connect.failed));
    }
    let dropped = observer.disconnected.load(Ordering::Relaxed);
    if dropped > 0 {
        failures.push(format!("{dropped} disconnect(s) during the hold"));
    }
    let report = IdleReport {
        scenario: "idle",
        label: common.label.clone(),
        run,
        params: args.clone(),
        connect,
        hold_secs: (hold_secs * 10.0).round() / 10.0,
        alive_after_hold: alive,
        disconnects: lock(&observer.disconnects).clone(),
        events: lock(&observer.events).clone(),
        generator_rss_kib,
        memory,
        failures: failures.clone(),
    };
    report::idle(&report);
    if let Some(path) = &common.json {
        report::write_json(path, &report)?;
    }
    Ok(failures)
}
