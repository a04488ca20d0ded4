//! Output: a human-readable table on stdout, and every figure as JSON with `--json FILE`.
//! Progress and warnings go to stderr, so stdout stays the table alone.

use crate::scenario::idle::IdleReport;
use crate::scenario::load::{LoadReport, StepReport};
use crate::stats::Codes;
use anyhow::Context;
use serde::Serialize;
use std::io::Write;

/// Writes to stdout, ignoring a closed pipe (`chat-bench … | head` must not fail the run).
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, $($arg)*);
    }};
}

pub fn write_json(path: &std::path::Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising the report")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

fn codes(c: &Codes) -> String {
    if c.is_empty() {
        return "-".into();
    }
    c.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line per step, printed as each step ends (a ramp shows progress); the header first.
pub fn load_step_line(s: &StepReport, header: bool) {
    if header {
        out!(
            "{:>4} {:>8} {:>7} {:>7} {:>7} {:>5} {:>8} {:>5} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>5}  {}",
            "step",
            "rate/s",
            "sent",
            "acked",
            "deliv",
            "lost",
            "own",
            "dup",
            "err",
            "p50ms",
            "p99ms",
            "p99.9ms",
            "maxms",
            "ack99s",
            "ack99r",
            "lag99",
            "gen%",
            "holds"
        );
    }
    let d = &s.deliveries;
    out!(
        "{:>4} {:>8} {:>7} {:>7} {:>7} {:>5} {:>8} {:>5} {:>4} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7.2} {:>5.0}  {}",
        s.step,
        s.rate,
        s.sent_socket + s.sent_rest,
        s.acked,
        d.delivered_others,
        d.lost_others + d.lost_own,
        format!("{}/{}", d.delivered_own, d.expected_own),
        d.duplicates_others + d.duplicates_own,
        s.error_count,
        s.latency_others.p50_ms,
        s.latency_others.p99_ms,
        s.latency_others.p999_ms,
        s.latency_others.max_ms,
        s.ack_socket.p99_ms,
        s.ack_rest.p99_ms,
        s.pacing_lag.p99_ms,
        s.generator_cpu_percent,
        if s.holds {
            "yes".to_owned()
        } else {
            format!("NO: {}", s.reasons.join("; "))
        }
    );
}

pub fn load_summary(r: &LoadReport) {
    let p = &r.params;
    let s = &r.setup;
    out!("");
    out!(
        "run {} (seed {}){}: {} users, {} conversations ({} groups), {} sending users",
        r.run,
        r.seed,
        r.label
            .as_deref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default(),
        s.users,
        s.conversations,
        s.group_conversations,
        s.senders
    );
    out!(
        "  api {}  gateways {}",
        p.common.api,
        if p.common.gateways.is_empty() {
            "(the api)".to_owned()
        } else {
            p.common.gateways.join(" ")
        }
    );
    out!(
        "  conversations: {} created in {:.2} s, status {}, failures {}",
        s.conversations_created,
        s.create_secs,
        codes(&s.create_status),
        codes(&s.create_failures)
    );
    let c = &s.connect;
    out!(
        "  sockets: {}/{} connected in {:.2} s ({}/s), connect p50 {:.1} ms p99 {:.1} ms max {:.1} ms, per gateway {:?}, failures {}",
        c.connected,
        c.attempted,
        c.wall_secs,
        c.per_second,
        c.connect_time.p50_ms,
        c.connect_time.p99_ms,
        c.connect_time.max_ms,
        c.per_gateway,
        codes(&c.failures)
    );
    if s.joins > 0 {
        out!(
            "  join_conversation: {} (ack p99 {:.1} ms), failures {}",
            s.joins,
            s.join_time.p99_ms,
            codes(&s.join_failures)
        );
    }
    for b in &r.bus {
        let per_sec = |n: u64| n as f64 / b.seconds.max(1e-9);
        out!(
            "  bus at {}: received {} events ({:.0}/s, {:.1} KiB/s), published {} ({:.0}/s, {:.1} KiB/s), {} channels",
            b.url,
            b.received,
            per_sec(b.received),
            per_sec(b.received_bytes) / 1024.0,
            b.published,
            per_sec(b.published),
            per_sec(b.published_bytes) / 1024.0,
            b.channels
        );
    }
    for st in &r.steps {
        let d = &st.deliveries;
        out!(
            "  step {} @ {} msg/s for {} s: planned {}, sent {} socket + {} REST ({} msg/s achieved)",
            st.step,
            st.rate,
            st.duration_secs,
            st.planned,
            st.sent_socket,
            st.sent_rest,
            st.achieved_rate
        );
        out!(
            "    acked {}, failed {}, no ack {}, not sent {}; deliveries to others {}/{} (lost {}), to the sender's own socket {}/{} (lost {}), duplicates {}+{}, misdelivered {}, excluded (socket down) {}",
            st.acked,
            st.ack_failed,
            st.no_ack,
            st.not_sent,
            d.delivered_others,
            d.expected_others,
            d.lost_others,
            d.delivered_own,
            d.expected_own,
            d.lost_own,
            d.duplicates_others,
            d.duplicates_own,
            d.misdelivered,
            d.excluded_socket_down
        );
        for (name, h) in [
            ("delivery (others)", &st.latency_others),
            ("delivery (own)", &st.latency_own),
            ("ack send_message", &st.ack_socket),
            ("ack REST POST", &st.ack_rest),
            ("ack mark_as_read", &st.ack_read),
            ("ack typing", &st.ack_typing),
            ("pacing lag", &st.pacing_lag),
        ] {
            if h.count > 0 {
                out!(
                    "    {name:<18} n={:<7} p50 {:>8.2}  p90 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2} ms",
                    h.count,
                    h.p50_ms,
                    h.p90_ms,
                    h.p99_ms,
                    h.p999_ms,
                    h.max_ms
                );
            }
        }
        out!(
            "    generator CPU {:.0}% of one core{}; machine {} busy; reads sent {}, typing events sent {}",
            st.generator_cpu_percent,
            st.generator_note
                .as_deref()
                .map(|n| format!(" (GENERATOR-BOUND: {n})"))
                .unwrap_or_default(),
            st.machine_cpu_busy_percent
                .map_or("?".to_owned(), |m| format!("{m:.0}% of all cores")),
            st.reads_sent,
            st.typing_sent
        );
        for srv in &st.servers {
            out!(
                "    server pid {}: CPU {:.0}% of one core, RSS {} KiB",
                srv.pid,
                srv.cpu_percent,
                srv.rss_kib.map_or("?".into(), |k| k.to_string())
            );
        }
        out!("    errors: {}", codes(&st.errors));
        out!("    events: {}", codes(&st.events));
    }
    out!(
        "  late deliveries (after their step's drain) {}, foreign messages {}, disconnects {}",
        r.late_deliveries,
        r.foreign_messages,
        codes(&r.disconnects)
    );
    if r.params.ramp.is_some() {
        out!(
            "  highest rate that held: {}",
            r.max_held_rate
                .map_or("none".to_owned(), |v| format!("{v} msg/s"))
        );
    }
    if r.failures.is_empty() {
        out!("  no loss, no duplicate, no error");
    } else {
        for f in &r.failures {
            out!("  FAILURE: {f}");
        }
    }
}

pub fn idle(r: &IdleReport) {
    let c = &r.connect;
    out!(
        "run {}{}: {}/{} sockets connected in {:.2} s ({}/s), connect p50 {:.1} ms p99 {:.1} ms max {:.1} ms, per gateway {:?}, failures {}",
        r.run,
        r.label
            .as_deref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default(),
        c.connected,
        c.attempted,
        c.wall_secs,
        c.per_second,
        c.connect_time.p50_ms,
        c.connect_time.p99_ms,
        c.connect_time.max_ms,
        c.per_gateway,
        codes(&c.failures)
    );
    out!(
        "held {:.1} s: {} still connected, disconnects {}, events {}; generator RSS {} KiB",
        r.hold_secs,
        r.alive_after_hold,
        codes(&r.disconnects),
        codes(&r.events),
        r.generator_rss_kib
            .map_or("?".to_owned(), |k| k.to_string())
    );
    if !r.memory.is_empty() {
        out!(
            "{:>8} {:>8} {:>12} {:>12} {:>12} {:>14} {:>16}",
            "pid",
            "sockets",
            "before KiB",
            "connected",
            "after hold",
            "KiB/socket",
            "KiB/socket hold"
        );
        let opt = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
        let optf = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.2}"));
        for m in &r.memory {
            out!(
                "{:>8} {:>8} {:>12} {:>12} {:>12} {:>14} {:>16}",
                m.pid.map_or("total".to_owned(), |p| p.to_string()),
                m.sockets,
                opt(m.before_kib),
                opt(m.connected_kib),
                opt(m.after_hold_kib),
                optf(m.per_socket_kib),
                optf(m.per_socket_after_hold_kib)
            );
        }
    }
    for f in &r.failures {
        out!("FAILURE: {f}");
    }
}
