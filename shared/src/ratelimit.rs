//! Message rate limits: one trait, so that a Redis implementation can make the limit hold
//! across replicas (scaled mode) while the embedded default counts in-process.
//!
//! The contract's limit is "N messages per window": at most N sends in any window-long span
//! of time. A sliding log does exactly that (a token bucket such as governor's GCRA lets a
//! burst of N through and then refills, so a window can hold nearly 2N).

use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one unit of `user`'s budget, or says how long until one is available.
    async fn check(&self, user: &str) -> Result<(), Duration>;

    /// Gives back the unit the last `check` took: the send turned out to be a retry of one
    /// already stored, which costs nothing.
    async fn refund(&self, user: &str);
}

/// The times of one sender's events within the last window: at most `limit` in any
/// window-long span.
#[derive(Debug, Default)]
pub struct SlidingLog(VecDeque<Instant>);

impl SlidingLog {
    /// Takes one event at `now`, or says how long until the oldest leaves the window.
    pub fn take(&mut self, limit: usize, window: Duration, now: Instant) -> Result<(), Duration> {
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.0.pop_front();
        }
        if self.0.len() < limit {
            self.0.push_back(now);
            return Ok(());
        }
        let oldest = self.0.front().copied().unwrap_or(now);
        Err(window.saturating_sub(now.duration_since(oldest)))
    }

    /// Gives back the last event taken.
    fn give_back(&mut self) {
        self.0.pop_back();
    }

    fn last(&self) -> Option<Instant> {
        self.0.back().copied()
    }
}

/// In-process sliding log: the times of each user's sends within the last window.
pub struct LocalRateLimiter {
    messages: usize,
    window: Duration,
    log: Mutex<HashMap<String, SlidingLog>>,
}

/// Users kept before those with no send in the last window are forgotten.
const RETAIN_THRESHOLD: usize = 10_000;

impl LocalRateLimiter {
    pub fn new(messages: u32, window: Duration) -> Self {
        Self {
            messages: usize::try_from(messages).unwrap_or(usize::MAX).max(1),
            window,
            log: Mutex::default(),
        }
    }

    /// As [`RateLimiter::check`], at `now`.
    fn check_at(&self, user: &str, now: Instant) -> Result<(), Duration> {
        let Ok(mut log) = self.log.lock() else {
            // A poisoned lock means a panic elsewhere; sending is better than refusing all.
            return Ok(());
        };
        let window = self.window;
        if log.len() > RETAIN_THRESHOLD {
            log.retain(|_, sends| sends.last().is_some_and(|t| now.duration_since(t) < window));
        }
        log.entry(user.to_owned())
            .or_default()
            .take(self.messages, window, now)
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, user: &str) -> Result<(), Duration> {
        self.check_at(user, Instant::now())
    }

    async fn refund(&self, user: &str) {
        if let Ok(mut log) = self.log.lock()
            && let Some(sends) = log.get_mut(user)
        {
            sends.give_back();
        }
    }
}

/// The sliding log in Redis, shared by every replica: one sorted set per user, scored by the
/// time of each send on Redis's own clock (replicas' clocks may differ), trimmed, counted and
/// added to in one script, so that concurrent sends on several replicas never pass the limit
/// together.
const SLIDING_LOG: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
";

/// How long a limit check waits for Redis before counting in-process instead.
const REDIS_WAIT: Duration = Duration::from_millis(300);

/// The limit across replicas (scaled mode). While Redis cannot answer, each process counts
/// on its own (the in-process log), so sends go on, limited per replica, and a warning says so.
pub struct RedisRateLimiter {
    client: redis::Client,
    conn: std::sync::RwLock<Option<redis::aio::ConnectionManager>>,
    connecting: std::sync::atomic::AtomicBool,
    script: redis::Script,
    prefix: String,
    messages: u32,
    window: Duration,
    fallback: LocalRateLimiter,
    degraded: std::sync::atomic::AtomicBool,
    /// While Redis does not answer, it is asked again only after this (ms after `started`):
    /// sends do not each wait for a Redis that is away.
    retry_after_ms: std::sync::atomic::AtomicU64,
    started: Instant,
    nonce: std::sync::atomic::AtomicU64,
}

impl RedisRateLimiter {
    /// Fails only on a URL that cannot work; an unreachable Redis is retried on use.
    pub fn new(
        url: &str,
        prefix: &str,
        messages: u32,
        window: Duration,
    ) -> Result<std::sync::Arc<Self>, redis::RedisError> {
        let limiter = std::sync::Arc::new(Self {
            client: redis::Client::open(url)?,
            conn: std::sync::RwLock::new(None),
            connecting: std::sync::atomic::AtomicBool::new(false),
            script: redis::Script::new(SLIDING_LOG),
            prefix: prefix.to_owned(),
            messages: messages.max(1),
            window,
            fallback: LocalRateLimiter::new(messages, window),
            degraded: std::sync::atomic::AtomicBool::new(false),
            retry_after_ms: std::sync::atomic::AtomicU64::new(0),
            started: Instant::now(),
            nonce: std::sync::atomic::AtomicU64::new(rand::random()),
        });
        limiter.connect_in_background();
        Ok(limiter)
    }

    fn key(&self, user: &str) -> String {
        format!("{}:rl:{user}", self.prefix)
    }

    /// Starts connecting unless a connection exists or an attempt is under way.
    fn connect_in_background(self: &std::sync::Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(REDIS_WAIT))
                .set_number_of_retries(1);
            match this.client.get_connection_manager_with_config(config).await {
                Ok(conn) => {
                    if let Ok(mut slot) = this.conn.write() {
                        *slot = Some(conn);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "rate limiter: redis unreachable");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            this.connecting.store(false, Ordering::Release);
        });
    }

    fn connection(self: &std::sync::Arc<Self>) -> Option<redis::aio::ConnectionManager> {
        let conn = self.conn.read().ok().and_then(|c| c.clone());
        if conn.is_none() {
            self.connect_in_background();
        }
        conn
    }

    /// Notes whether Redis answered, logging each change once.
    fn note(&self, redis_ok: bool) {
        use std::sync::atomic::Ordering;
        let was_degraded = self.degraded.swap(!redis_ok, Ordering::Relaxed);
        if was_degraded && redis_ok {
            tracing::info!("rate limiter: redis answers again, the limit holds across replicas");
        } else if !was_degraded && !redis_ok {
            tracing::warn!("rate limiter: redis unavailable, counting per process meanwhile");
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn check_redis(self: &std::sync::Arc<Self>, user: &str) -> Option<Result<(), Duration>> {
        use std::sync::atomic::Ordering;
        if self.elapsed_ms() < self.retry_after_ms.load(Ordering::Relaxed) {
            return None;
        }
        let result = self.ask_redis(user).await;
        if result.is_none() {
            self.retry_after_ms
                .store(self.elapsed_ms() + 1_000, Ordering::Relaxed);
        }
        result
    }

    async fn ask_redis(self: &std::sync::Arc<Self>, user: &str) -> Option<Result<(), Duration>> {
        let mut conn = self.connection()?;
        let nonce = self
            .nonce
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = self.script.key(self.key(user));
        invocation.arg(self.messages).arg(window_ms).arg(nonce);
        let call = invocation.invoke_async::<u64>(&mut conn);
        match tokio::time::timeout(REDIS_WAIT, call).await {
            Ok(Ok(0)) => Some(Ok(())),
            Ok(Ok(wait_ms)) => Some(Err(Duration::from_millis(wait_ms))),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "rate limiter: redis failed");
                None
            }
            Err(_) => None,
        }
    }
}

/// A [`RedisRateLimiter`] behind the trait (the `Arc` lets it reconnect in the background).
#[async_trait]
impl RateLimiter for std::sync::Arc<RedisRateLimiter> {
    async fn check(&self, user: &str) -> Result<(), Duration> {
        match self.check_redis(user).await {
            Some(result) => {
                self.note(true);
                result
            }
            None => {
                self.note(false);
                self.fallback.check(user).await
            }
        }
    }

    async fn refund(&self, user: &str) {
        if self.degraded.load(std::sync::atomic::Ordering::Relaxed) {
            self.fallback.refund(user).await;
            return;
        }
        let Some(mut conn) = self.connection() else {
            return;
        };
        // The newest entry goes: the same count as removing this send's own.
        let mut pop = redis::cmd("ZPOPMAX");
        pop.arg(self.key(user));
        let call = pop.query_async::<redis::Value>(&mut conn);
        if !matches!(tokio::time::timeout(REDIS_WAIT, call).await, Ok(Ok(_))) {
            tracing::debug!(user, "rate limiter: refund not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_per_user_and_says_when_to_retry() {
        let limiter = LocalRateLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(limiter.check_at("a", t0 + Duration::from_secs(i)).is_ok());
        }
        let wait = limiter
            .check_at("a", t0 + Duration::from_secs(4))
            .expect_err("fourth is limited");
        assert_eq!(
            wait,
            Duration::from_secs(6),
            "until the first send leaves the window"
        );
        assert!(
            limiter.check_at("b", t0 + Duration::from_secs(4)).is_ok(),
            "other users are not affected"
        );
    }

    #[tokio::test]
    async fn a_refunded_unit_can_be_used_again() {
        let limiter = LocalRateLimiter::new(2, Duration::from_secs(10));
        assert!(limiter.check("a").await.is_ok());
        assert!(limiter.check("a").await.is_ok());
        assert!(limiter.check("a").await.is_err());
        limiter.refund("a").await;
        assert!(limiter.check("a").await.is_ok(), "the refund made room");
        assert!(limiter.check("a").await.is_err());
    }

    #[test]
    fn no_window_ever_holds_more_than_the_limit() {
        let limiter = LocalRateLimiter::new(20, Duration::from_secs(10));
        let t0 = Instant::now();
        // Try a send every 100 ms for a minute and keep the accepted times.
        let accepted: Vec<Instant> = (0..600)
            .map(|i| t0 + Duration::from_millis(100 * i))
            .filter(|&t| limiter.check_at("a", t).is_ok())
            .collect();
        for (i, start) in accepted.iter().enumerate() {
            let within = accepted[i..]
                .iter()
                .take_while(|t| t.duration_since(*start) < Duration::from_secs(10))
                .count();
            assert!(within <= 20, "{within} sends within 10 s of send {i}");
        }
        // And the budget is really used: 20 per 10 s, six windows.
        assert_eq!(accepted.len(), 120);
    }
}
