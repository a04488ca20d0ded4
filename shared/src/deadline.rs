//! The deadline of the request or socket event being served: REST and the gateway run each
//! one [`within`] the configured timeout, and code below them can ask for it ([`current`]),
//! so that work queued on the caller's behalf is dropped once the caller has answered
//! `unavailable` instead of being done after all.

use std::future::Future;
use tokio::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with a deadline `timeout` from now; `None` when it did not finish by then.
pub async fn within<F: Future>(timeout: Duration, work: F) -> Option<F::Output> {
    let deadline = Instant::now() + timeout;
    DEADLINE
        .scope(deadline, tokio::time::timeout_at(deadline, work))
        .await
        .ok()
}

/// The deadline of the current request or event, if it runs [`within`] one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_sees_its_deadline_and_is_cut_there() {
        assert!(current().is_none());
        let before = Instant::now();
        let seen = within(Duration::from_secs(2), async { current() })
            .await
            .flatten()
            .expect("a deadline inside");
        assert!(seen >= before + Duration::from_secs(2));
        assert!(seen <= Instant::now() + Duration::from_secs(2));
        let start = Instant::now();
        let slow = within(
            Duration::from_millis(50),
            tokio::time::sleep(Duration::from_secs(5)),
        )
        .await;
        assert!(slow.is_none());
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
