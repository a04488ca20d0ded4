//! Typing indicators: `user_typing_start` when a user starts typing in a conversation,
//! `user_typing_stop` when they stop, after the timeout without a stop, or when the socket
//! that was typing disconnects. State lives on the replica of the typing socket; the events
//! cross replicas on the conversation's channel.

use chat_shared::events::{Event, EventBus, names};
use chat_shared::wire::Typing as TypingPayload;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Who is typing where, on this replica.
pub struct Typing {
    bus: Arc<dyn EventBus>,
    timeout: Duration,
    typing: Mutex<HashMap<(String, String), Entry>>,
    next_generation: std::sync::atomic::AtomicU64,
}

/// One user typing in one conversation.
struct Entry {
    /// The socket that is typing (its disconnect ends it).
    socket: String,
    /// When it ends unless re-armed.
    deadline: Instant,
    /// Tells this typing apart from a later one under the same key, for its timer.
    generation: u64,
}

impl Typing {
    pub fn new(bus: Arc<dyn EventBus>, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            bus,
            timeout,
            typing: Mutex::default(),
            next_generation: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// `typing_start`: announces a start unless already typing, and pushes the deadline back.
    /// Clients send it on every keystroke: a repeat only moves the deadline of the one timer.
    pub fn start(self: &Arc<Self>, conversation: &str, user: &str, socket: &str) {
        let key = (conversation.to_owned(), user.to_owned());
        let deadline = Instant::now() + self.timeout;
        let started = {
            let Ok(mut map) = self.typing.lock() else {
                return;
            };
            match map.get_mut(&key) {
                Some(entry) => {
                    entry.deadline = deadline;
                    entry.socket = socket.to_owned();
                    None
                }
                None => {
                    let generation = self
                        .next_generation
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    map.insert(
                        key.clone(),
                        Entry {
                            socket: socket.to_owned(),
                            deadline,
                            generation,
                        },
                    );
                    Some(generation)
                }
            }
        };
        let Some(generation) = started else {
            return;
        };
        self.announce(names::USER_TYPING_START, conversation, user);
        let this = Arc::clone(self);
        tokio::spawn(async move { this.expire(key, generation, deadline).await });
    }

    /// The timer of one typing: sleeps to the deadline, again while it was pushed back, and
    /// announces the stop if the typing is still the same one when the deadline passes.
    async fn expire(&self, key: (String, String), generation: u64, mut deadline: Instant) {
        loop {
            tokio::time::sleep_until(deadline).await;
            let Ok(mut map) = self.typing.lock() else {
                return;
            };
            match map.get(&key) {
                Some(entry) if entry.generation == generation => {
                    if entry.deadline > deadline {
                        deadline = entry.deadline;
                        continue;
                    }
                    map.remove(&key);
                }
                // Stopped (or stopped and started again: that one has its own timer).
                _ => return,
            }
            drop(map);
            self.announce(names::USER_TYPING_STOP, &key.0, &key.1);
            return;
        }
    }

    /// `typing_stop`: announces the stop if the user was typing there.
    pub fn stop(&self, conversation: &str, user: &str) {
        let was_typing = self.typing.lock().is_ok_and(|mut map| {
            map.remove(&(conversation.to_owned(), user.to_owned()))
                .is_some()
        });
        if was_typing {
            self.announce(names::USER_TYPING_STOP, conversation, user);
        }
    }

    /// A socket disconnected: whatever it was typing stops.
    pub fn socket_gone(&self, socket: &str) {
        let ended: Vec<(String, String)> = match self.typing.lock() {
            Ok(mut map) => {
                let keys: Vec<_> = map
                    .iter()
                    .filter(|(_, entry)| entry.socket == socket)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &keys {
                    map.remove(k);
                }
                keys
            }
            Err(_) => return,
        };
        for (conversation, user) in ended {
            self.announce(names::USER_TYPING_STOP, &conversation, &user);
        }
    }

    fn announce(&self, name: &str, conversation: &str, user: &str) {
        let payload = TypingPayload {
            conversation_id: conversation.to_owned(),
            user_id: user.to_owned(),
        };
        self.bus.publish(
            Event::to_room(conversation, name, &payload, Some(user))
                .into_iter()
                .collect(),
        );
    }
}
