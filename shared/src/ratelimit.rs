//! Message rate limits: one trait, so that a Redis implementation can make the limit hold
//! across replicas (scaled mode) while the embedded default counts in-process.

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter as Governor};
use std::num::NonZeroU32;
use std::time::Duration;

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one unit of `user`'s budget, or says how long until one is available.
    async fn check(&self, user: &str) -> Result<(), Duration>;
}

/// In-process GCRA limiter (governor): `messages` per `window`, as a burst of `messages`
/// refilled evenly over the window.
pub struct LocalRateLimiter {
    limiter: Governor<String, governor::state::keyed::DefaultKeyedStateStore<String>, DefaultClock>,
    clock: DefaultClock,
}

/// Keys kept before idle users are forgotten (a user whose budget is full again needs none).
const RETAIN_THRESHOLD: usize = 10_000;

impl LocalRateLimiter {
    pub fn new(messages: u32, window: Duration) -> Self {
        let burst = NonZeroU32::new(messages).unwrap_or(NonZeroU32::MIN);
        let period = window / burst.get();
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        Self {
            limiter: Governor::keyed(quota),
            clock: DefaultClock::default(),
        }
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, user: &str) -> Result<(), Duration> {
        if self.limiter.len() > RETAIN_THRESHOLD {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&user.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_budget_is_per_user_and_says_when_to_retry() {
        let limiter = LocalRateLimiter::new(3, Duration::from_secs(10));
        for _ in 0..3 {
            assert!(limiter.check("a").await.is_ok());
        }
        let wait = limiter.check("a").await.expect_err("fourth is limited");
        assert!(
            wait > Duration::from_secs(2) && wait <= Duration::from_secs(4),
            "{wait:?}"
        );
        assert!(
            limiter.check("b").await.is_ok(),
            "other users are not affected"
        );
    }
}
