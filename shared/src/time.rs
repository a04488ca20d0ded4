//! Time as the service sees it: milliseconds since the Unix epoch, UTC, read from an injected
//! [`Clock`] so that tests can move it (the 24-hour edit window is tested without waiting).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A point in time in epoch milliseconds. Stored as a `bigint` in both databases (exact, and
/// the same Rust type on both backends); shown to clients as RFC 3339 with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub i64);

impl Millis {
    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis(Utc::now().timestamp_millis())
    }
}

/// A clock that tests move by hand. Starts at the wall-clock time of its creation.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl Default for ManualClock {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(SystemClock.now().0)))
    }
}

impl ManualClock {
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}
