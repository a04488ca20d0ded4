//! Figures: latency histograms, counts by code, and readings of `/proc` (CPU time, RSS).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Highest latency tracked: one hour, in microseconds. Longer values are clamped to it
/// (nothing in a run lasts that long: the run has a hard deadline).
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits (HDR: fixed memory, exact
/// enough percentiles whatever the number of samples).
#[derive(Clone)]
pub struct Hist {
    /// `None` only if the histogram could not be created, which cannot happen with the
    /// constant bounds above; recording is then a no-op rather than a panic.
    h: Option<Histogram<u64>>,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            h: Histogram::new_with_bounds(1, MAX_MICROS, 3).ok(),
        }
    }
}

impl Hist {
    pub fn record_micros(&mut self, micros: u64) {
        if let Some(h) = &mut self.h {
            h.saturating_record(micros.clamp(1, MAX_MICROS));
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.record_micros(u64::try_from(d.as_micros()).unwrap_or(MAX_MICROS));
    }

    pub fn summary(&self) -> Summary {
        let Some(h) = &self.h else {
            return Summary::default();
        };
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |v: u64| round3(v as f64 / 1000.0);
        Summary {
            count: h.len(),
            mean_ms: round3(h.mean() / 1000.0),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Counts by a string key (error codes, event names), ordered for stable output.
pub type Codes = BTreeMap<String, u64>;

pub fn bump(codes: &mut Codes, key: &str) {
    // No allocation for a key already there (event names are counted per frame).
    match codes.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            codes.insert(key.to_owned(), 1);
        }
    }
}

/// Locks a mutex, taking the data even if another thread panicked while holding it: figures
/// are better than an aborted run.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Clock ticks per second of `/proc/<pid>/stat` times. `sysconf(_SC_CLK_TCK)` would need
/// `unsafe` (forbidden in this workspace); USER_HZ is 100 on every Linux architecture in use.
const CLK_TCK: f64 = 100.0;

/// CPU time (user + system) of a process, `None` for this process, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last
    // `)`. Fields after it start at field 3 (state); utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / CLK_TCK))
}

/// Resident set size of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU use over a span as a percentage of one core.
pub fn cpu_percent(before: Option<Duration>, after: Option<Duration>, wall: Duration) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) if !wall.is_zero() => {
            let pct = a.saturating_sub(b).as_secs_f64() / wall.as_secs_f64() * 100.0;
            (pct * 10.0).round() / 10.0
        }
        _ => 0.0,
    }
}

/// The machine's CPU jiffies since boot: `(busy, total)` over all cores, from `/proc/stat`.
fn machine_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total.saturating_sub(idle), total))
}

/// CPU readings of this process, of the server processes named by `--pid` and of the whole
/// machine, taken at the start of a span and turned into percentages at its end. The
/// machine's figure shows what the others cannot: a database, or another job, eating the
/// cores the server and the generator share.
pub struct CpuProbe {
    pids: Vec<u32>,
    start: std::time::Instant,
    own: Option<Duration>,
    servers: Vec<Option<Duration>>,
    machine: Option<(u64, u64)>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerCpu {
    pub pid: u32,
    /// User + system CPU as a percentage of one core.
    pub cpu_percent: f64,
    pub rss_kib: Option<u64>,
}

impl CpuProbe {
    pub fn start(pids: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            start: std::time::Instant::now(),
            own: cpu_time(None),
            servers: pids.iter().map(|p| cpu_time(Some(*p))).collect(),
            machine: machine_jiffies(),
        }
    }

    /// Busy share of all cores since [`CpuProbe::start`], in percent (100 = every core busy).
    pub fn machine_busy_percent(&self) -> Option<f64> {
        let ((b0, t0), (b1, t1)) = (self.machine?, machine_jiffies()?);
        let total = t1.checked_sub(t0).filter(|t| *t > 0)?;
        let pct = b1.saturating_sub(b0) as f64 / total as f64 * 100.0;
        Some((pct * 10.0).round() / 10.0)
    }

    /// `(own CPU %, per server)` since [`CpuProbe::start`].
    pub fn finish(&self) -> (f64, Vec<ServerCpu>) {
        let wall = self.start.elapsed();
        let own = cpu_percent(self.own, cpu_time(None), wall);
        let servers = self
            .pids
            .iter()
            .zip(&self.servers)
            .map(|(pid, before)| ServerCpu {
                pid: *pid,
                cpu_percent: cpu_percent(*before, cpu_time(Some(*pid)), wall),
                rss_kib: rss_kib(*pid),
            })
            .collect();
        (own, servers)
    }
}

/// Cores available to this process (for judging whether the generator was CPU-bound).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_percentiles() {
        let mut h = Hist::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn own_cpu_and_rss_are_readable() {
        assert!(cpu_time(None).is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
