//! The trace id of the request or socket event being served, carried with the events it
//! announces across the bus to the gateway that delivers them.
//!
//! REST runs each request [`within`] its `x-request-id`; the gateway runs each client event
//! within a fresh id. An [`crate::events::Event`] made while serving takes that id
//! ([`current`]), travels with it over Redis, and the delivering gateway logs it in its
//! `deliver` span: one id to search for in every process's logs, from the request that made a
//! change to the sockets that received it. Work spawned on a request's behalf keeps the id
//! with [`carry`].

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static TRACE_ID: Arc<str>;
}

/// Runs `work` with `id` as the current trace id.
pub async fn within<F: Future>(id: Arc<str>, work: F) -> F::Output {
    TRACE_ID.scope(id, work).await
}

/// The trace id of the current request or event, if it runs [`within`] one.
pub fn current() -> Option<Arc<str>> {
    TRACE_ID.try_with(Arc::clone).ok()
}

/// `work` with the current trace id (if any), for `tokio::spawn`: a spawned task does not
/// inherit task-locals.
pub fn carry<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let id = current();
    async move {
        match id {
            Some(id) => TRACE_ID.scope(id, work).await,
            None => work.await,
        }
    }
}

/// A fresh id for a socket event (REST requests use their `x-request-id`).
pub fn new_id() -> Arc<str> {
    uuid::Uuid::new_v4().simple().to_string().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawned_work_keeps_the_id_only_when_carried() {
        assert!(current().is_none());
        let id: Arc<str> = "r-1".into();
        let (carried, bare) = within(id, async {
            let carried = tokio::spawn(carry(async { current() }));
            let bare = tokio::spawn(async { current() });
            (carried.await, bare.await)
        })
        .await;
        assert_eq!(carried.ok().flatten().as_deref(), Some("r-1"));
        assert_eq!(bare.ok().flatten(), None);
    }
}
