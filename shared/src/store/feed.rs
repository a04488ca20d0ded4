//! The change feed (contract v1.1), the part both stores share: what a change appends to its
//! recipients' feeds, how positions are handed out, and the cursor clients hold.
//!
//! Each user's feed is numbered 1, 2, 3, … without gaps. A change appends its entries in its
//! own transaction: it adds, per recipient, how many entries it brings to that user's row of
//! `feed_heads` (which it then holds locked until commit, on PostgreSQL) and numbers them
//! from the new head downwards. The next change for the same user waits for the lock and
//! commits after, so a reader never sees position n+1 before n: what a client has seen is a
//! prefix, whichever replica wrote it. See `migrations/postgres/0004_feed.sql`.

use crate::events::names;
use sha2::{Digest, Sha256};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::collections::{BTreeMap, HashMap};

/// Both backends' queries (`$1` the user, `$2` after which position, `$3` how many), and the
/// participants a change's entries go to (`$1` the conversation).
pub(crate) const FEED_HEAD_SQL: &str = "select pos from feed_heads where user_id = $1";
pub(crate) const FEED_PAGE_SQL: &str = "select pos, kind, conversation_id, message_id, actor, seq, at from feed \
     where user_id = $1 and pos > $2 order by pos limit $3";
pub(crate) const RECIPIENTS_SQL: &str =
    "select user_id from participants where conversation_id = $1 order by user_id";

/// What an entry records. The payload is built when the feed is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedKind {
    NewMessage,
    MessageEdited,
    MessageDeleted,
    MessagesRead,
    ConversationUpdated,
}

impl FeedKind {
    /// The socket event's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewMessage => names::NEW_MESSAGE,
            Self::MessageEdited => names::MESSAGE_EDITED,
            Self::MessageDeleted => names::MESSAGE_DELETED,
            Self::MessagesRead => names::MESSAGES_READ,
            Self::ConversationUpdated => names::CONVERSATION_UPDATED,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            names::NEW_MESSAGE => Self::NewMessage,
            names::MESSAGE_EDITED => Self::MessageEdited,
            names::MESSAGE_DELETED => Self::MessageDeleted,
            names::MESSAGES_READ => Self::MessagesRead,
            names::CONVERSATION_UPDATED => Self::ConversationUpdated,
            _ => return None,
        })
    }
}

/// One entry to append: for whom, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedWrite {
    pub user_id: String,
    pub kind: FeedKind,
    pub conversation_id: String,
    /// Message events: the message.
    pub message_id: Option<String>,
    /// `messages_read`: the reader and their new position.
    pub actor: Option<String>,
    pub seq: Option<i64>,
    /// When it happened, ms (`messages_read`: `readAt`).
    pub at: i64,
}

impl FeedWrite {
    /// The same entry for each of `users`.
    pub fn for_each<'a>(
        users: impl IntoIterator<Item = &'a str>,
        template: &FeedWrite,
    ) -> Vec<FeedWrite> {
        users
            .into_iter()
            .map(|user| FeedWrite {
                user_id: user.to_owned(),
                ..template.clone()
            })
            .collect()
    }

    /// A message event for one user.
    pub fn message(user: &str, kind: FeedKind, conversation: &str, message: &str, at: i64) -> Self {
        Self {
            user_id: user.to_owned(),
            kind,
            conversation_id: conversation.to_owned(),
            message_id: Some(message.to_owned()),
            actor: None,
            seq: None,
            at,
        }
    }

    /// `conversation_updated` for one user.
    pub fn conversation(user: &str, conversation: &str, at: i64) -> Self {
        Self {
            user_id: user.to_owned(),
            kind: FeedKind::ConversationUpdated,
            conversation_id: conversation.to_owned(),
            message_id: None,
            actor: None,
            seq: None,
            at,
        }
    }
}

/// `messages_read` of `reader` at `seq`, to be appended for every participant.
pub(crate) fn read_entry(conversation: &str, reader: &str, seq: i64, at: i64) -> FeedWrite {
    FeedWrite {
        user_id: String::new(),
        kind: FeedKind::MessagesRead,
        conversation_id: conversation.to_owned(),
        message_id: None,
        actor: Some(reader.to_owned()),
        seq: Some(seq),
        at,
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub pos: i64,
    pub kind: FeedKind,
    pub conversation_id: String,
    pub message_id: Option<String>,
    pub actor: Option<String>,
    pub seq: Option<i64>,
    pub at: i64,
}

impl FeedEntry {
    pub(crate) fn from_row<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    {
        let kind: String = row.try_get("kind")?;
        Ok(Self {
            pos: row.try_get("pos")?,
            kind: FeedKind::parse(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "kind".to_owned(),
                source: format!("unknown feed entry kind {kind:?}").into(),
            })?,
            conversation_id: row.try_get("conversation_id")?,
            message_id: row.try_get("message_id")?,
            actor: row.try_get("actor")?,
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
        })
    }
}

/// Entries of one user's feed after a position, and where the feed ends now.
#[derive(Debug, Clone, Default)]
pub struct FeedPage {
    /// The last position given out in this feed (0: nothing yet).
    pub head: i64,
    /// Entries after the asked position, oldest first, at most the asked limit.
    pub entries: Vec<FeedEntry>,
}

/// Where a change's entries landed: each recipient's position of it, and the change's
/// outbox row when it has one (scaled mode): deleted once its events are on Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursors {
    pub positions: Vec<(String, i64)>,
    pub outbox: Option<i64>,
}

impl Cursors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// `user`'s position of this change.
    pub fn of(&self, user: &str) -> Option<i64> {
        self.positions
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| *p)
    }
}

/// A change's outbox row: its conversation and its entries, `(user, position)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub conversation_id: String,
    pub entries: Vec<(String, i64)>,
}

impl OutboxRow {
    pub(crate) fn from_row<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id: row.try_get("id")?,
            conversation_id: row.try_get("conversation_id")?,
            entries: parse_outbox_entries(&row.try_get::<String, _>("entries")?),
        })
    }
}

/// An outbox row's entries (each recipient and the position of the change in their feed), as
/// the JSON text the row stores.
pub(crate) fn outbox_entries(cursors: &Cursors) -> String {
    serde_json::json!(cursors.positions).to_string()
}

/// The entries of [`outbox_entries`]' text. Text that is not theirs (only a hand-edited row
/// could hold it) gives none, said in a warning: the relay then drops the row.
pub(crate) fn parse_outbox_entries(text: &str) -> Vec<(String, i64)> {
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "outbox row with unreadable entries: its events are not relayed");
        Vec::new()
    })
}

/// How many entries each user gets, in user order: the order in which a change takes the
/// users' `feed_heads` rows (the same order everywhere, so that changes never deadlock).
pub(crate) fn counts_by_user(writes: &[FeedWrite]) -> BTreeMap<&str, i64> {
    let mut counts = BTreeMap::new();
    for w in writes {
        *counts.entry(w.user_id.as_str()).or_insert(0) += 1;
    }
    counts
}

/// Each write's position, given every user's head after the change added its entries: a
/// user's entries take the positions up to the head, in the order of `writes`.
pub(crate) fn positions(writes: &[FeedWrite], heads: &HashMap<String, i64>) -> Option<Vec<i64>> {
    let counts = counts_by_user(writes);
    let mut next: HashMap<&str, i64> = HashMap::with_capacity(counts.len());
    for (user, n) in &counts {
        next.insert(user, heads.get(*user)? - n + 1);
    }
    writes
        .iter()
        .map(|w| {
            let p = next.get_mut(w.user_id.as_str())?;
            let pos = *p;
            *p += 1;
            Some(pos)
        })
        .collect()
}

/// The recipients' positions of one change, from the positions of its writes.
pub(crate) fn cursors(writes: &[FeedWrite], positions: &[i64]) -> Cursors {
    Cursors {
        positions: writes
            .iter()
            .zip(positions)
            .map(|(w, p)| (w.user_id.clone(), *p))
            .collect(),
        outbox: None,
    }
}

/// The `new_message` entries of a batch: for each message created (in batch order), one per
/// participant of its conversation (`members`: the participants of each conversation of the
/// batch). Returns the writes and, for each, the index of its message in the batch.
pub(crate) fn message_writes(
    outcomes: &[super::InsertOutcome],
    members: &HashMap<&str, Vec<&str>>,
) -> (Vec<FeedWrite>, Vec<usize>) {
    let mut writes = Vec::new();
    let mut owners = Vec::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        if let super::InsertOutcome::Created(m) = outcome {
            for user in members
                .get(m.conversation_id.as_str())
                .into_iter()
                .flatten()
            {
                writes.push(FeedWrite::message(
                    user,
                    FeedKind::NewMessage,
                    &m.conversation_id,
                    &m.id,
                    m.created_at,
                ));
                owners.push(index);
            }
        }
    }
    (writes, owners)
}

/// Per message of a batch of `n`, the cursors of its entries.
pub(crate) fn cursors_by_message(
    n: usize,
    writes: &[FeedWrite],
    owners: &[usize],
    positions: &[i64],
) -> Vec<Cursors> {
    let mut out = vec![Cursors::new(); n];
    for ((w, owner), pos) in writes.iter().zip(owners).zip(positions) {
        if let Some(c) = out.get_mut(*owner) {
            c.positions.push((w.user_id.clone(), *pos));
        }
    }
    out
}

/// The cursor a client holds for position `pos` of `user`'s feed: opaque to it; here the
/// position and a tag of the user, so that a cursor of another feed is told apart.
pub fn cursor(user: &str, pos: i64) -> String {
    format!("{pos}.{}", tag(user))
}

/// The position a cursor names in `user`'s feed; `None` when it is not a cursor of that feed.
pub fn parse_cursor(user: &str, cursor: &str) -> Option<i64> {
    let (pos, t) = cursor.split_once('.')?;
    if t != tag(user) {
        return None;
    }
    pos.parse::<i64>().ok().filter(|p| *p >= 0)
}

fn tag(user: &str) -> String {
    let digest = Sha256::digest(user.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(user: &str) -> FeedWrite {
        FeedWrite::conversation(user, "c", 0)
    }

    #[test]
    fn positions_count_down_from_each_head_in_write_order() {
        let writes = [write("b"), write("a"), write("b"), write("b")];
        let heads = HashMap::from([("a".to_owned(), 7), ("b".to_owned(), 3)]);
        assert_eq!(positions(&writes, &heads), Some(vec![1, 7, 2, 3]));
        assert_eq!(
            counts_by_user(&writes).into_iter().collect::<Vec<_>>(),
            vec![("a", 1), ("b", 3)]
        );
        assert_eq!(positions(&writes, &HashMap::new()), None, "a head missing");
    }

    #[test]
    fn cursors_name_one_feed() {
        let c = cursor("u_alice", 42);
        assert_eq!(parse_cursor("u_alice", &c), Some(42));
        assert_eq!(parse_cursor("u_bob", &c), None, "another user's cursor");
        assert_eq!(parse_cursor("u_alice", "42"), None);
        assert_eq!(parse_cursor("u_alice", "x.y"), None);
        assert_eq!(parse_cursor("u_alice", &c.replace("42", "-1")), None);
    }
}
