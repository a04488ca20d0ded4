//! Events from the bus to this replica's sockets. A user's events go to their user room, so
//! each of their sockets gets each event once, whatever conversation rooms it joined; typing
//! goes to the conversation room minus the typer's sockets. The payload arrives as JSON text
//! and goes out as that text (a `RawValue`): socketioxide writes it into the packet once per
//! broadcast without a parse and a second serialisation.
//!
//! Each delivery runs in a `deliver` span with the trace id of the request or client event that
//! made the event (on whichever process), and is counted on `/metrics` with its latency.

use crate::{conversation_room, user_room};
use chat_shared::events::{Audience, Event, now_us};
use chat_shared::metrics::{EventName, Metrics};
use socketioxide::SocketIo;
use tokio::sync::mpsc;
use tracing::Instrument;

pub async fn run(io: SocketIo, mut events: mpsc::Receiver<Event>, metrics: Metrics) {
    while let Some(event) = events.recv().await {
        let span = tracing::debug_span!(
            "deliver",
            event = %event.name,
            trace_id = event.trace.as_deref().unwrap_or(""),
        );
        let made_at_us = event.made_at_us;
        let name = event.name.clone();
        if deliver(&io, event).instrument(span).await {
            metrics
                .events_sent
                .get_or_create(&EventName { event: name })
                .inc();
            if made_at_us > 0 {
                let micros = now_us().saturating_sub(made_at_us).max(0);
                #[allow(clippy::cast_precision_loss)]
                metrics
                    .bus_delivery_latency
                    .observe(micros as f64 / 1_000_000.0);
            }
        }
    }
    tracing::debug!("event bus closed: delivery stopped");
}

/// Emits `event` to this replica's sockets of its audience; `false` when it has none here.
async fn deliver(io: &SocketIo, event: Event) -> bool {
    let room = match &event.audience {
        Audience::User(user) => user_room(user),
        Audience::Conversation(conversation) => conversation_room(conversation),
    };
    let except = event.except_user.as_deref().map(user_room);
    // `io.to` panics once the server is closed: events announced by the disconnects of a
    // drain have no socket of this replica left to go to.
    let Some(namespace) = io.of("/") else {
        return false;
    };
    let target = || {
        let to = namespace.clone().to(room.clone());
        match &except {
            Some(except) => to.except(except.clone()),
            None => to,
        }
    };
    // The in-process bus hands over every event; most users have no socket here.
    if target().sockets().is_empty() {
        return false;
    }
    // Spliced as it is, not parsed into a tree and written again for every recipient room.
    let text = event.delivered_payload();
    let payload: &serde_json::value::RawValue = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(event = %event.name, error = %e, "undeliverable payload");
            return false;
        }
    };
    if let Err(e) = target().emit(event.name.as_str(), payload).await {
        // Partial: the other sockets got it. A closing socket or a full per-socket queue
        // (a client far behind) is that client's loss, recovered through the API.
        tracing::debug!(event = %event.name, error = %e, "event not delivered to every socket");
    }
    tracing::debug!("delivered");
    true
}
