//! Events from the bus to this replica's sockets. A user's events go to their user room, so
//! each of their sockets gets each event once, whatever conversation rooms it joined; typing
//! goes to the conversation room minus the typer's sockets. The payload arrives as JSON text
//! and goes out as that text (a `RawValue`): socketioxide writes it into the packet once per
//! broadcast without a parse and a second serialisation.

use crate::{conversation_room, user_room};
use chat_shared::events::{Audience, Event};
use socketioxide::SocketIo;
use tokio::sync::mpsc;

pub async fn run(io: SocketIo, mut events: mpsc::Receiver<Event>) {
    while let Some(event) = events.recv().await {
        deliver(&io, event).await;
    }
    tracing::debug!("event bus closed: delivery stopped");
}

async fn deliver(io: &SocketIo, event: Event) {
    let room = match &event.audience {
        Audience::User(user) => user_room(user),
        Audience::Conversation(conversation) => conversation_room(conversation),
    };
    let except = event.except_user.as_deref().map(user_room);
    // `io.to` panics once the server is closed: events announced by the disconnects of a
    // drain have no socket of this replica left to go to.
    let Some(namespace) = io.of("/") else {
        return;
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
        return;
    }
    // Spliced as it is, not parsed into a tree and written again for every recipient room.
    let text = event.delivered_payload();
    let payload: &serde_json::value::RawValue = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(event = %event.name, error = %e, "undeliverable payload");
            return;
        }
    };
    if let Err(e) = target().emit(event.name.as_str(), payload).await {
        // Partial: the other sockets got it. A closing socket or a full per-socket queue
        // (a client far behind) is that client's loss, recovered through the API.
        tracing::debug!(event = %event.name, error = %e, "event not delivered to every socket");
    }
}
