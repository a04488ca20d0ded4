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

/// In-process sliding log: the times of each user's sends within the last window.
pub struct LocalRateLimiter {
    messages: usize,
    window: Duration,
    log: Mutex<HashMap<String, VecDeque<Instant>>>,
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
            log.retain(|_, sends| {
                sends
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let sends = log.entry(user.to_owned()).or_default();
        while sends
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            sends.pop_front();
        }
        if sends.len() < self.messages {
            sends.push_back(now);
            return Ok(());
        }
        // The oldest send in the window leaves it first.
        let oldest = sends.front().copied().unwrap_or(now);
        Err(window.saturating_sub(now.duration_since(oldest)))
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
            sends.pop_back();
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
