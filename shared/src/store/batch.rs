//! The backend-independent half of a batch of sends: given what the database said about the
//! batch's client message ids and conversations, decide each message's fate and `seq`, and
//! what every touched row must become. Both stores run the same plan in one transaction.

use super::{InsertOutcome, MessageRecord, NewMessage};
use std::collections::HashMap;

/// What happens to one message of the batch.
#[derive(Debug, Clone)]
pub(crate) enum Fate {
    /// Inserted with this record (its `seq` assigned).
    Insert(MessageRecord),
    /// Its `(sender, clientMessageId)` is already stored: the first message.
    Stored(MessageRecord),
    /// Its `(sender, clientMessageId)` came earlier in this batch, at this index.
    SameAs(usize),
    /// The conversation is blocked or gone: nothing written.
    Blocked,
}

/// A conversation that gets messages in this batch.
#[derive(Debug, Clone)]
pub(crate) struct ConversationChange {
    pub id: String,
    /// `last_seq` after the batch.
    pub last_seq: i64,
    /// The newest message's id and time: the conversation's last message and activity.
    pub last_message_id: String,
    pub at: i64,
    /// Messages the batch adds to it.
    pub added: i64,
}

/// A sender's own part in one conversation of the batch.
#[derive(Debug, Clone)]
pub(crate) struct SenderChange {
    pub conversation_id: String,
    pub user_id: String,
    /// Messages they added.
    pub sent: i64,
    /// Their newest message's `seq` (their read position moves there) and time.
    pub last_seq: i64,
    pub at: i64,
    /// Messages others added after `last_seq` in this batch: their unread count afterwards.
    pub unread_after: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub fates: Vec<Fate>,
    pub conversations: Vec<ConversationChange>,
    pub senders: Vec<SenderChange>,
}

impl Plan {
    /// The records to insert, in batch order.
    pub fn inserts(&self) -> impl Iterator<Item = &MessageRecord> {
        self.fates.iter().filter_map(|f| match f {
            Fate::Insert(record) => Some(record),
            _ => None,
        })
    }

    /// The outcome of every message, in batch order.
    pub fn outcomes(&self) -> Vec<InsertOutcome> {
        (0..self.fates.len()).map(|i| self.outcome(i)).collect()
    }

    fn outcome(&self, index: usize) -> InsertOutcome {
        match &self.fates[index] {
            Fate::Insert(record) => InsertOutcome::Created(record.clone()),
            Fate::Stored(record) => InsertOutcome::Duplicate(record.clone()),
            Fate::Blocked => InsertOutcome::Blocked,
            // The first one was created (or found) in this batch: this is its retry.
            Fate::SameAs(first) => match self.outcome(*first) {
                InsertOutcome::Created(record) | InsertOutcome::Duplicate(record) => {
                    InsertOutcome::Duplicate(record)
                }
                InsertOutcome::Blocked => InsertOutcome::Blocked,
            },
        }
    }
}

/// Distinct `(sender, clientMessageId)` pairs of the batch, for the lookup of stored ones.
pub(crate) fn client_keys(batch: &[NewMessage]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = batch
        .iter()
        .filter_map(|m| {
            m.client_message_id
                .as_ref()
                .map(|c| (m.sender_id.clone(), c.clone()))
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Distinct conversation ids of the batch, sorted: the order their rows are locked in, the
/// same in every transaction, so that concurrent batches never wait on each other in a cycle.
pub(crate) fn conversation_ids(batch: &[NewMessage]) -> Vec<String> {
    let mut ids: Vec<String> = batch.iter().map(|m| m.conversation_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Decides every message's fate. `stored` maps `(sender, clientMessageId)` to messages already
/// in the database; `conversations` maps each conversation id to `(last_seq, blocked)` as
/// locked by this transaction (a missing id is a conversation that does not exist).
pub(crate) fn plan(
    batch: &[NewMessage],
    stored: &HashMap<(String, String), MessageRecord>,
    conversations: &HashMap<String, (i64, bool)>,
) -> Plan {
    let mut plan = Plan::default();
    let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
    let mut last_seq: HashMap<&str, i64> = HashMap::new();
    for (index, new) in batch.iter().enumerate() {
        if let Some(client_id) = new.client_message_id.as_deref() {
            let key = (new.sender_id.as_str(), client_id);
            if let Some(first) = first_of.get(&key) {
                plan.fates.push(Fate::SameAs(*first));
                continue;
            }
            first_of.insert(key, index);
            if let Some(record) = stored.get(&(new.sender_id.clone(), client_id.to_owned())) {
                plan.fates.push(Fate::Stored(record.clone()));
                continue;
            }
        }
        let Some(&(current, blocked)) = conversations.get(&new.conversation_id) else {
            plan.fates.push(Fate::Blocked);
            continue;
        };
        if blocked {
            plan.fates.push(Fate::Blocked);
            continue;
        }
        let seq = last_seq.entry(&new.conversation_id).or_insert(current);
        *seq += 1;
        plan.fates.push(Fate::Insert(MessageRecord {
            id: new.id.clone(),
            conversation_id: new.conversation_id.clone(),
            seq: *seq,
            sender_id: new.sender_id.clone(),
            kind: new.kind.clone(),
            content: new.content.clone(),
            reply_to: new.reply_to.clone(),
            attachments: new.attachments.clone(),
            client_message_id: new.client_message_id.clone(),
            edited_at: None,
            deleted_at: None,
            created_at: new.now.0,
        }));
    }
    summarise(&mut plan);
    plan
}

/// Fills the conversation and sender changes from the inserts.
fn summarise(plan: &mut Plan) {
    let Plan {
        fates,
        conversations,
        senders,
    } = plan;
    let inserts: Vec<&MessageRecord> = fates
        .iter()
        .filter_map(|f| match f {
            Fate::Insert(record) => Some(record),
            _ => None,
        })
        .collect();
    for record in &inserts {
        match conversations
            .iter_mut()
            .find(|c| c.id == record.conversation_id)
        {
            // Inserts come in seq order within a conversation: the last one is the newest.
            Some(change) => {
                change.last_seq = record.seq;
                change.last_message_id.clone_from(&record.id);
                change.at = change.at.max(record.created_at);
                change.added += 1;
            }
            None => conversations.push(ConversationChange {
                id: record.conversation_id.clone(),
                last_seq: record.seq,
                last_message_id: record.id.clone(),
                at: record.created_at,
                added: 1,
            }),
        }
        match senders
            .iter_mut()
            .find(|s| s.conversation_id == record.conversation_id && s.user_id == record.sender_id)
        {
            Some(sender) => {
                sender.sent += 1;
                sender.last_seq = record.seq;
                sender.at = sender.at.max(record.created_at);
            }
            None => senders.push(SenderChange {
                conversation_id: record.conversation_id.clone(),
                user_id: record.sender_id.clone(),
                sent: 1,
                last_seq: record.seq,
                at: record.created_at,
                unread_after: 0,
            }),
        }
    }
    for sender in senders.iter_mut() {
        sender.unread_after = inserts
            .iter()
            .filter(|m| {
                m.conversation_id == sender.conversation_id
                    && m.sender_id != sender.user_id
                    && m.seq > sender.last_seq
            })
            .count() as i64;
    }
    conversations.sort_by(|a, b| a.id.cmp(&b.id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Millis;

    fn new(id: &str, conversation: &str, sender: &str, client: Option<&str>) -> NewMessage {
        NewMessage {
            id: id.to_owned(),
            conversation_id: conversation.to_owned(),
            sender_id: sender.to_owned(),
            kind: "text".to_owned(),
            content: id.to_owned(),
            reply_to: None,
            attachments: "[]".to_owned(),
            client_message_id: client.map(str::to_owned),
            now: Millis(1_000),
        }
    }

    fn seqs(plan: &Plan) -> Vec<Option<i64>> {
        plan.fates
            .iter()
            .map(|f| match f {
                Fate::Insert(r) => Some(r.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn seqs_follow_each_conversation_in_batch_order_and_skip_nothing() {
        let batch = [
            new("m1", "a", "alice", None),
            new("m2", "b", "bob", None),
            new("m3", "a", "bob", None),
            new("m4", "x", "bob", None),
            new("m5", "a", "alice", None),
        ];
        let conversations =
            HashMap::from([("a".to_owned(), (7, false)), ("b".to_owned(), (0, false))]);
        let plan = plan(&batch, &HashMap::new(), &conversations);
        assert_eq!(seqs(&plan), [Some(8), Some(1), Some(9), None, Some(10)]);
        assert!(matches!(plan.fates[3], Fate::Blocked));
        let a = &plan.conversations[0];
        assert_eq!(
            (
                a.id.as_str(),
                a.last_seq,
                a.last_message_id.as_str(),
                a.added
            ),
            ("a", 10, "m5", 3)
        );
        // Alice's newest is m5 (seq 10): nothing after it. Bob's is m3 (9): alice's m5 after.
        let alice = plan.senders.iter().find(|s| s.user_id == "alice").unwrap();
        assert_eq!((alice.sent, alice.last_seq, alice.unread_after), (2, 10, 0));
        let bob_a = plan
            .senders
            .iter()
            .find(|s| s.user_id == "bob" && s.conversation_id == "a")
            .unwrap();
        assert_eq!((bob_a.sent, bob_a.last_seq, bob_a.unread_after), (1, 9, 1));
    }

    #[test]
    fn retries_in_the_batch_and_stored_ones_take_no_seq() {
        let batch = [
            new("m1", "a", "alice", Some("c1")),
            new("m2", "a", "alice", Some("c1")),
            new("m3", "a", "alice", Some("old")),
            new("m4", "a", "bob", Some("c1")),
        ];
        let stored_record = MessageRecord {
            id: "m0".to_owned(),
            conversation_id: "a".to_owned(),
            seq: 1,
            sender_id: "alice".to_owned(),
            kind: "text".to_owned(),
            content: "x".to_owned(),
            reply_to: None,
            attachments: "[]".to_owned(),
            client_message_id: Some("old".to_owned()),
            edited_at: None,
            deleted_at: None,
            created_at: 1,
        };
        let stored = HashMap::from([(
            ("alice".to_owned(), "old".to_owned()),
            stored_record.clone(),
        )]);
        let conversations = HashMap::from([("a".to_owned(), (1, false))]);
        let plan = plan(&batch, &stored, &conversations);
        assert_eq!(seqs(&plan), [Some(2), None, None, Some(3)]);
        let outcomes = plan.outcomes();
        match (&outcomes[0], &outcomes[1]) {
            (InsertOutcome::Created(first), InsertOutcome::Duplicate(retry)) => {
                assert_eq!(first, retry);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(outcomes[2], InsertOutcome::Duplicate(stored_record));
    }

    #[test]
    fn a_blocked_conversation_takes_nothing() {
        let batch = [
            new("m1", "a", "alice", Some("c1")),
            new("m2", "a", "alice", Some("c1")),
        ];
        let conversations = HashMap::from([("a".to_owned(), (3, true))]);
        let plan = plan(&batch, &HashMap::new(), &conversations);
        assert_eq!(
            plan.outcomes(),
            [InsertOutcome::Blocked, InsertOutcome::Blocked]
        );
        assert!(plan.conversations.is_empty() && plan.senders.is_empty());
    }
}
