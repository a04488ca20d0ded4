//! Announcing committed changes: which events a change makes, with which payload, for whom.
//!
//! Every method here runs after the store has committed, and none of them fails the caller:
//! the change happened, and a client that misses its event catches up through the API. A
//! failed read of per-user data (a view, unread counts) is logged and that event skipped.
//!
//! Events whose payload is at hand are published at once, in the caller's order. Those that
//! need more reads (unread counts, each user's view of a conversation) are published from a
//! spawned task: an HTTP handler is dropped when its client goes away, and the announcement
//! of a committed change must not go with it.

use super::{ChatService, to_conversation, to_message};
use crate::domain::Caller;
use crate::events::{Event, names};
use crate::store::{Cursors, MessageRecord, ParticipantRecord, UnreadCounts};
use crate::wire::{Conversation, Message, MessagesRead, ReadState, UnreadCountUpdated};

impl ChatService {
    /// Runs the rest of an announcement on its own task.
    fn in_background<F, Fut>(&self, work: F)
    where
        F: FnOnce(ChatService) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let service = self.clone();
        tokio::spawn(crate::trace::carry(async move { work(service).await }));
    }

    /// `new_message` to every participant, then everyone's new unread counts.
    pub(super) fn announce_new_message(
        &self,
        record: &MessageRecord,
        participants: &[ParticipantRecord],
        cursors: &Cursors,
    ) -> Message {
        let message = to_message(record, participants);
        self.announce_message(
            names::NEW_MESSAGE,
            &message,
            participants.iter().map(|p| p.user_id.as_str()),
            cursors,
        );
        self.announce_unread(&record.conversation_id, None);
        message
    }

    /// A new conversation: each participant's view, then its first message if any (in that
    /// order, so that clients learn of the conversation before its messages).
    pub(super) fn announce_created(
        &self,
        conversation_id: &str,
        cursors: Cursors,
        first: Option<(MessageRecord, Cursors)>,
    ) {
        let conversation_id = conversation_id.to_owned();
        self.in_background(move |service| async move {
            service
                .conversation_views(&conversation_id, None, &cursors)
                .await;
            if let Some((record, first_cursors)) = first {
                match service.store.participants(&conversation_id).await {
                    Ok(participants) => {
                        service.announce_new_message(&record, &participants, &first_cursors);
                    }
                    Err(e) => {
                        tracing::warn!(conversation = %conversation_id, error = %e, "new_message not announced");
                    }
                }
            }
        });
    }

    /// A message event (`new_message`, `message_edited`, `message_deleted`) to every
    /// participant, as the contract says (one who hid the message with delete-for-me too: a
    /// client ignores an edit of a message it does not hold), the payload serialized once.
    pub(super) fn announce_message<'a>(
        &self,
        name: &str,
        message: &Message,
        recipients: impl Iterator<Item = &'a str>,
        cursors: &Cursors,
    ) {
        self.events.publish(Event::with_cursors(
            Event::to_users(recipients, name, message),
            cursors,
        ));
    }

    /// `unread_count_updated` to every participant of the conversation (or to `only`), each
    /// with their own counts.
    pub(super) fn announce_unread(&self, conversation_id: &str, only: Option<&str>) {
        let conversation_id = conversation_id.to_owned();
        let only = only.map(str::to_owned);
        self.in_background(move |service| async move {
            let counts = match service.store.unread_counts(&conversation_id).await {
                Ok(counts) => counts,
                Err(e) => {
                    tracing::warn!(conversation = %conversation_id, error = %e, "unread counts not announced");
                    return;
                }
            };
            service.publish_unread(&conversation_id, &counts, only.as_deref());
        });
    }

    /// `unread_count_updated` from counts in hand, to each participant (or to `only`).
    pub(super) fn publish_unread(
        &self,
        conversation_id: &str,
        counts: &[UnreadCounts],
        only: Option<&str>,
    ) {
        self.events.publish(
            counts
                .iter()
                .filter(|c| only.is_none_or(|u| u == c.user_id))
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
    pub(super) fn announce_read(
        &self,
        caller: &Caller,
        state: &ReadState,
        members: &[String],
        cursors: &Cursors,
    ) {
        self.events.publish(Event::with_cursors(
            Event::to_users(
                members.iter().map(String::as_str),
                names::MESSAGES_READ,
                &MessagesRead {
                    conversation_id: state.conversation_id.clone(),
                    user_id: caller.id.as_str().to_owned(),
                    last_read_seq: state.last_read_seq,
                    read_at: state.read_at,
                },
            ),
            cursors,
        ));
        let reader = caller.id.as_str().to_owned();
        let update = UnreadCountUpdated {
            conversation_id: state.conversation_id.clone(),
            unread_count: state.unread_count,
            total_unread: 0,
        };
        self.in_background(move |service| async move {
            match service.store.unread_total(&reader).await {
                Ok(total_unread) => service.events.publish(
                    Event::to_user(
                        &reader,
                        names::UNREAD_COUNT_UPDATED,
                        &UnreadCountUpdated {
                            total_unread,
                            ..update
                        },
                    )
                    .into_iter()
                    .collect(),
                ),
                Err(e) => tracing::warn!(error = %e, "unread total not announced"),
            }
        });
    }

    /// `conversation_updated` with each recipient's own view: to every participant, or to
    /// `only` (their own archive, mute or delete-for-me).
    pub(super) fn announce_conversation(
        &self,
        conversation_id: &str,
        only: Option<&str>,
        cursors: Cursors,
    ) {
        let conversation_id = conversation_id.to_owned();
        let only = only.map(str::to_owned);
        self.in_background(move |service| async move {
            service
                .conversation_views(&conversation_id, only.as_deref(), &cursors)
                .await;
        });
    }

    async fn conversation_views(
        &self,
        conversation_id: &str,
        only: Option<&str>,
        cursors: &Cursors,
    ) {
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
        self.events.publish(Event::with_cursors(events, cursors));
    }

    /// `conversation_updated` to one user, with the view already in hand.
    pub(super) fn announce_view(&self, user: &str, conversation: &Conversation, cursors: &Cursors) {
        self.events.publish(Event::with_cursors(
            Event::to_user(user, names::CONVERSATION_UPDATED, conversation)
                .into_iter()
                .collect(),
            cursors,
        ));
    }
}
