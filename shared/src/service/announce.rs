//! Announcing committed changes: which events a change makes, with which payload, for whom.
//!
//! Every method here runs after the store has committed, and none of them fails the caller:
//! the change happened, and a client that misses its event catches up through the API. A
//! failed read of per-user data (a view, unread counts) is logged and that event skipped.

use super::{ChatService, to_conversation, to_message};
use crate::domain::Caller;
use crate::events::{Event, names};
use crate::store::{MessageRecord, ParticipantRecord};
use crate::wire::{Conversation, Message, MessagesRead, ReadState, UnreadCountUpdated};

impl ChatService {
    /// `new_message` to every participant, then everyone's new unread counts.
    pub(super) async fn announce_new_message(
        &self,
        record: &MessageRecord,
        participants: &[ParticipantRecord],
    ) -> Message {
        let message = to_message(record, participants);
        self.announce_message(names::NEW_MESSAGE, &message, participants);
        self.announce_unread(&record.conversation_id).await;
        message
    }

    /// A message event (`new_message`, `message_edited`, `message_deleted`) to every
    /// participant, the payload serialized once.
    pub(super) fn announce_message(
        &self,
        name: &str,
        message: &Message,
        participants: &[ParticipantRecord],
    ) {
        self.events.publish(Event::to_users(
            participants.iter().map(|p| p.user_id.as_str()),
            name,
            message,
        ));
    }

    /// `unread_count_updated` to every participant of the conversation, each with their own
    /// counts.
    pub(super) async fn announce_unread(&self, conversation_id: &str) {
        let counts = match self.store.unread_counts(conversation_id).await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(conversation = conversation_id, error = %e, "unread counts not announced");
                return;
            }
        };
        self.events.publish(
            counts
                .iter()
                .filter_map(|c| {
                    Event::to_user(
                        &c.user_id,
                        names::UNREAD_COUNT_UPDATED,
                        &UnreadCountUpdated {
                            conversation_id: conversation_id.to_owned(),
                            unread_count: c.unread,
                            total_unread: c.total,
                        },
                    )
                })
                .collect(),
        );
    }

    /// A moved read position: `messages_read` to every participant, and the reader's own
    /// `unread_count_updated`.
    pub(super) async fn announce_read(
        &self,
        caller: &Caller,
        state: &ReadState,
        participants: &[ParticipantRecord],
    ) {
        let mut events = Event::to_users(
            participants.iter().map(|p| p.user_id.as_str()),
            names::MESSAGES_READ,
            &MessagesRead {
                conversation_id: state.conversation_id.clone(),
                user_id: caller.id.as_str().to_owned(),
                last_read_seq: state.last_read_seq,
                read_at: state.read_at,
            },
        );
        match self.store.unread_total(caller.id.as_str()).await {
            Ok(total) => events.extend(Event::to_user(
                caller.id.as_str(),
                names::UNREAD_COUNT_UPDATED,
                &UnreadCountUpdated {
                    conversation_id: state.conversation_id.clone(),
                    unread_count: state.unread_count,
                    total_unread: total,
                },
            )),
            Err(e) => tracing::warn!(error = %e, "unread total not announced"),
        }
        self.events.publish(events);
    }

    /// `conversation_updated` with each recipient's own view: to every participant, or to
    /// `only` (their own archive, mute or delete-for-me).
    pub(super) async fn announce_conversation(&self, conversation_id: &str, only: Option<&str>) {
        let users: Vec<String> = match only {
            Some(user) => vec![user.to_owned()],
            None => match self.store.participants(conversation_id).await {
                Ok(ps) => ps.into_iter().map(|p| p.user_id).collect(),
                Err(e) => {
                    tracing::warn!(conversation = conversation_id, error = %e, "conversation_updated not announced");
                    return;
                }
            },
        };
        let mut events = Vec::with_capacity(users.len());
        for user in &users {
            match self.store.conversation(user, conversation_id).await {
                Ok(Some(view)) => events.extend(Event::to_user(
                    user,
                    names::CONVERSATION_UPDATED,
                    &to_conversation(view),
                )),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(conversation = conversation_id, user, error = %e, "conversation_updated not announced");
                }
            }
        }
        self.events.publish(events);
    }

    /// `conversation_updated` to one user, with the view already in hand.
    pub(super) fn announce_view(&self, user: &str, conversation: &Conversation) {
        self.events.publish(
            Event::to_user(user, names::CONVERSATION_UPDATED, conversation)
                .into_iter()
                .collect(),
        );
    }
}
