//! Typing indicators: `user_typing_start` when a user starts typing in a conversation,
//! `user_typing_stop` when they stop, after the timeout without a stop, or when the socket
//! that was typing disconnects. State lives on the replica of the typing socket; the events
//! cross replicas on the conversation's channel.

use chat_shared::events::{Event, EventBus, names};
use chat_shared::wire::Typing as TypingPayload;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who is typing where, on this replica.
pub struct Typing {
    bus: Arc<dyn EventBus>,
    timeout: Duration,
    /// (conversation, user) → (socket id, generation of its timer).
    typing: Mutex<HashMap<(String, String), (String, u64)>>,
    next_generation: std::sync::atomic::AtomicU64,
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

    /// `typing_start`: announces a start unless already typing, and (re)arms the timeout.
    pub fn start(self: &Arc<Self>, conversation: &str, user: &str, socket: &str) {
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = (conversation.to_owned(), user.to_owned());
        let was_typing = match self.typing.lock() {
            Ok(mut map) => map
                .insert(key.clone(), (socket.to_owned(), generation))
                .is_some(),
            Err(_) => return,
        };
        if !was_typing {
            self.announce(names::USER_TYPING_START, conversation, user);
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(this.timeout).await;
            let expired = match this.typing.lock() {
                Ok(mut map) => {
                    let current = map.get(&key).is_some_and(|(_, g)| *g == generation);
                    if current {
                        map.remove(&key);
                    }
                    current
                }
                Err(_) => false,
            };
            if expired {
                this.announce(names::USER_TYPING_STOP, &key.0, &key.1);
            }
        });
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
                    .filter(|(_, (s, _))| s == socket)
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
