//! Storage: one trait, two backends.
//!
//! [`Store`] is the port the domain service talks to: each method is one atomic operation on
//! the database (one statement or one transaction). Rules about *who* may do *what* live in
//! [`crate::service`]; the store guarantees what only the database can guarantee: unique
//! create-or-get keys, gap-free `seq`, idempotent `clientMessageId`, monotonic read positions.
//!
//! Both backends share the record types and their row mapping below; the schemas in
//! `migrations/{sqlite,postgres}` keep the same columns for that reason.

mod batch;
pub mod feed;
mod postgres;
mod sqlite;
mod timed;
pub mod writer;

pub use timed::Timed;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub use feed::{Cursors, FeedEntry, FeedKind, FeedPage, FeedWrite, OutboxRow};

use crate::time::Millis;
use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url `{0}` (expected sqlite:… or postgres://…)")]
    UnsupportedUrl(String),
    /// One failure of a batch, shared by every write in it.
    #[error(transparent)]
    Shared(Arc<StoreError>),
    /// The batching writer has stopped (the process is shutting down).
    #[error("the writer has stopped")]
    WriterStopped,
    /// A write waited in the batching writer's queue past its deadline: not written.
    #[error("the write waited too long for the database and was not made")]
    Expired,
}

impl StoreError {
    /// True when the database could not be reached (as opposed to a query failing).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Shared(inner) => inner.is_unavailable(),
            Self::WriterStopped | Self::Expired => true,
            // The server is shutting down, restarting or out of connections (class 57:
            // operator intervention, e.g. 57P01 when an administrator stopped it; 08:
            // connection exceptions; 53: insufficient resources). PostgreSQL's SQLSTATEs are
            // five characters; SQLite's numeric codes are not.
            Self::Sqlx(sqlx::Error::Database(e)) => e.code().is_some_and(|c| {
                c.len() == 5 && (c.starts_with("57") || c.starts_with("08") || c.starts_with("53"))
            }),
            other => matches!(
                other,
                Self::Sqlx(
                    sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::WorkerCrashed
                )
            ),
        }
    }

    /// True when a concurrent writer took the same unique key first (PostgreSQL `23505`,
    /// SQLite `2067`): the batch is rolled back and tried again, and its check finds the key.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A conversation row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    pub id: String,
    pub kind: String,
    pub created_by: String,
    pub property_id: Option<String>,
    pub title: Option<String>,
    /// JSON object as text.
    pub metadata: String,
    pub last_seq: i64,
    pub last_message_id: Option<String>,
    pub last_message_at: Option<i64>,
    pub activity_at: i64,
    pub blocked: bool,
    pub blocked_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One participant's state in one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRecord {
    pub conversation_id: String,
    pub user_id: String,
    pub role: String,
    pub last_read_seq: i64,
    pub last_read_at: Option<i64>,
    pub archived: bool,
    pub muted: bool,
    pub hidden_until_seq: Option<i64>,
    pub joined_at: i64,
}

impl ParticipantRecord {
    /// Messages up to this seq are hidden from this participant (delete-for-me).
    pub fn hidden_seq(&self) -> i64 {
        self.hidden_until_seq.unwrap_or(0)
    }
}

/// The result of moving a read position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The position after the call.
    pub last_read_seq: i64,
    /// When the position last moved; `None` while the participant has never read anything.
    pub last_read_at: Option<i64>,
    /// Messages from others after the position.
    pub unread_count: i64,
    /// Whether this call moved the position (a repeated or backwards read does not).
    pub moved: bool,
    /// Each participant's feed position of the `messages_read` (when it moved).
    pub cursors: feed::Cursors,
}

/// A message row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub kind: String,
    pub content: String,
    pub reply_to: Option<String>,
    /// JSON array as text.
    pub attachments: String,
    pub client_message_id: Option<String>,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub created_at: i64,
}

/// A conversation with everything needed to show it to one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationView {
    pub conversation: ConversationRecord,
    /// The viewing user's own state.
    pub me: ParticipantRecord,
    /// Every participant (the viewer included), ordered by user id.
    pub participants: Vec<ParticipantRecord>,
    /// Messages after the viewer's read position that others sent and did not delete.
    pub unread_count: i64,
    /// The newest message, unless the viewer hid it.
    pub last_message: Option<MessageRecord>,
}

/// What `create_conversation` writes.
#[derive(Debug, Clone)]
pub struct NewConversation {
    pub id: String,
    pub kind: String,
    pub created_by: String,
    pub property_id: Option<String>,
    pub title: Option<String>,
    pub metadata: String,
    pub dedupe_key: Option<String>,
    /// Distinct, the creator included.
    pub participants: Vec<String>,
    pub now: Millis,
}

/// What `insert_message` writes; `seq` is assigned by the store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub kind: String,
    pub content: String,
    pub reply_to: Option<String>,
    pub attachments: String,
    pub client_message_id: Option<String>,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored with the next `seq`.
    Created(MessageRecord),
    /// The sender already sent this `clientMessageId`: the first message, unchanged.
    Duplicate(MessageRecord),
    /// The conversation is blocked; nothing was written.
    Blocked,
}

/// Filters and keyset position of an inbox page or a search.
#[derive(Debug, Clone, Default)]
pub struct ConversationQuery {
    /// `Some(true)`: only archived ones, `Some(false)`: only non-archived ones.
    pub archived: Option<bool>,
    pub kind: Option<String>,
    pub property_id: Option<String>,
    /// Search terms (already split and cleaned): every term must match the title, the
    /// property id or metadata, a participant id, or the text of a message the user can see.
    pub search: Vec<String>,
    /// Keyset: only conversations ordered after `(activity_at, id)`, descending.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// Which slice of a conversation's messages to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqRange {
    /// Newest first, `seq < before` (`None`: from the newest).
    Before(Option<i64>),
    /// Oldest first, `seq > after`.
    After(i64),
}

/// Counters behind `GET /stats`, for one user over the conversations they can see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsRecord {
    pub total: i64,
    pub archived: i64,
    pub unread_conversations: i64,
    pub unread_messages: i64,
    pub messages_sent: i64,
    pub messages_received: i64,
    /// (type, count) for visible conversations.
    pub by_type: Vec<(String, i64)>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, for logs and test output.
    fn backend(&self) -> &'static str;

    /// Cheap round trip for readiness probes.
    async fn ping(&self) -> StoreResult<()>;

    /// Inserts the conversation and its participants (and their `conversation_updated` feed
    /// entries), or, when `dedupe_key` is already taken, returns the id of the existing
    /// conversation. Returns `(id, created, cursors)`.
    async fn create_conversation(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(String, bool, Cursors)>;

    /// The conversation as `user` sees it; `None` when it does not exist or `user` is not a
    /// participant.
    async fn conversation(&self, user: &str, id: &str) -> StoreResult<Option<ConversationView>>;

    /// Conversations of `user` not hidden by delete-for-me, most recent activity first.
    async fn list_conversations(
        &self,
        user: &str,
        query: &ConversationQuery,
    ) -> StoreResult<Vec<ConversationView>>;

    /// Every participant of a conversation, ordered by user id.
    async fn participants(&self, conversation_id: &str) -> StoreResult<Vec<ParticipantRecord>>;

    /// Group commit: every message of `batch` in one transaction. Each takes the next `seq` of
    /// its conversation (in batch order), moves the conversation's last message and activity,
    /// the sender's read position, and every participant's counters. A
    /// `(sender, clientMessageId)` already stored, or earlier in the batch, answers
    /// `Duplicate` with the first message; a blocked conversation answers `Blocked` and
    /// nothing of that message is written. Outcomes are in batch order. Each message created
    /// is a `new_message` entry in every participant's feed.
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Inserted>;

    /// One message: [`Store::insert_messages`] with a batch of one.
    async fn insert_message(&self, new: &NewMessage) -> StoreResult<InsertOutcome> {
        let mut inserted = self.insert_messages(std::slice::from_ref(new)).await?;
        inserted
            .outcomes
            .pop()
            .ok_or(StoreError::Sqlx(sqlx::Error::RowNotFound))
    }

    async fn message(&self, id: &str) -> StoreResult<Option<MessageRecord>>;

    async fn message_by_client_id(
        &self,
        sender: &str,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>>;

    /// Messages with `seq > hidden_until`, in the range's order, at most `limit`.
    async fn list_messages(
        &self,
        conversation_id: &str,
        hidden_until: i64,
        range: SeqRange,
        limit: i64,
    ) -> StoreResult<Vec<MessageRecord>>;

    /// Moves `user`'s read position forward to `min(up_to, last_seq)` (everything when `None`);
    /// never backwards. The read time changes only when the position moves, and then every
    /// participant's feed gets a `messages_read` entry.
    async fn mark_read(
        &self,
        conversation_id: &str,
        user: &str,
        up_to: Option<i64>,
        now: Millis,
    ) -> StoreResult<ReadOutcome>;

    /// Sets the per-user archived and/or muted flags; a `conversation_updated` entry in that
    /// user's feed.
    async fn set_flags(
        &self,
        conversation_id: &str,
        user: &str,
        archived: Option<bool>,
        muted: Option<bool>,
        now: Millis,
    ) -> StoreResult<Cursors>;

    /// Delete-for-me: hides every message up to the current `last_seq` and marks them read;
    /// a `conversation_updated` entry in that user's feed.
    async fn hide(&self, conversation_id: &str, user: &str, now: Millis) -> StoreResult<Cursors>;

    /// Renames and/or blocks (`Some((true, by))`) or unblocks (`Some((false, by))`); a
    /// `conversation_updated` entry in every participant's feed.
    async fn update_conversation(
        &self,
        id: &str,
        title: Option<&str>,
        blocked: Option<(bool, &str)>,
        now: Millis,
    ) -> StoreResult<Cursors>;

    /// Replaces the content and sets `edited_at`; `None` if no such (undeleted) message. A
    /// `message_edited` entry in every participant's feed.
    async fn edit_message(
        &self,
        id: &str,
        content: &str,
        now: Millis,
    ) -> StoreResult<Option<(MessageRecord, Cursors)>>;

    /// Blanks content and attachments and sets `deleted_at` (kept if already deleted). The
    /// cursors of its `message_deleted` entries are empty when it was deleted already (no
    /// new entry, no event).
    async fn delete_message(
        &self,
        id: &str,
        now: Millis,
    ) -> StoreResult<Option<(MessageRecord, Cursors)>>;

    /// Entries of `user`'s feed after position `since`, oldest first, at most `limit`, and
    /// the feed's head.
    async fn feed(&self, user: &str, since: i64, limit: i64) -> StoreResult<FeedPage>;

    /// Deletes feed entries from before `before`, at most `max` of them; returns how many.
    async fn prune_feed(&self, before: Millis, max: i64) -> StoreResult<u64>;

    /// Messages by id, in no particular order (missing ids are left out).
    async fn messages_by_id(&self, ids: &[String]) -> StoreResult<Vec<MessageRecord>>;

    /// From now on, every change with feed entries also records an outbox row (scaled mode,
    /// where events go over Redis).
    fn record_outbox(&self, on: bool);

    /// Outbox rows due before `due_before`, at most `limit`, claimed: their due time moves to
    /// `now`, so that no other relay takes them until they are due again.
    async fn claim_outbox(
        &self,
        due_before: Millis,
        now: Millis,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>>;

    /// Deletes outbox rows whose events Redis took.
    async fn outbox_done(&self, ids: &[i64]) -> StoreResult<()>;

    /// Outbox rows waiting (for `/metrics`).
    async fn outbox_backlog(&self) -> StoreResult<i64>;

    /// Unread messages of `user` over all conversations they can see.
    async fn unread_total(&self, user: &str) -> StoreResult<i64>;

    async fn stats(&self, user: &str) -> StoreResult<StatsRecord>;

    /// Every participant's unread count in one conversation, with their total over all
    /// conversations: the `unread_count_updated` payloads after a change.
    async fn unread_counts(&self, conversation_id: &str) -> StoreResult<Vec<UnreadCounts>>;

    /// Everyone who shares a conversation with `user` (not `user`): who sees their presence.
    async fn contacts(&self, user: &str) -> StoreResult<Vec<String>>;

    /// How many stored counters differ from what the messages say they should be: participants
    /// rows whose counters, activity or hidden flag are off, plus users whose `user_stats` row
    /// is not the sum of their participations. Always 0; reads the whole database, so it is
    /// for tests and for an operator's consistency check, never for a request.
    async fn counter_drift(&self) -> StoreResult<i64>;
}

/// Both backends' first step of a delete: blanks a message not deleted yet (`$1` id, `$2` time).
pub(crate) const DELETE_MESSAGE_SQL: &str = "update messages set content = '', attachments = '[]', deleted_at = $2 \
     where id = $1 and deleted_at is null \
     returning id, conversation_id, seq, sender_id, type, content, reply_to, \
       attachments, client_message_id, edited_at, deleted_at, created_at";

/// Both backends' second step: the deleted message (`$1` conversation, `$2` sender, `$3`
/// seq) leaves the sender's sent count, and the unread and received counts of everyone who
/// counted it.
pub(crate) const UNCOUNT_DELETED_SQL: &str = "update participants set \
       sent_count = sent_count - case when user_id = $2 then 1 else 0 end, \
       unread_count = unread_count - \
         case when user_id <> $2 and $3 > last_read_seq then 1 else 0 end, \
       received_count = received_count - \
         case when user_id <> $2 and $3 > coalesce(hidden_until_seq, 0) then 1 else 0 end \
     where conversation_id = $1";

/// Both backends' [`Store::counter_drift`].
pub(crate) const COUNTER_DRIFT_SQL: &str = "select \
    (select count(*) from participants p join conversations c on c.id = p.conversation_id where \
       p.unread_count <> (select count(*) from messages m where m.conversation_id = p.conversation_id \
         and m.seq > p.last_read_seq and m.sender_id <> p.user_id and m.deleted_at is null) \
       or p.sent_count <> (select count(*) from messages m where m.conversation_id = p.conversation_id \
         and m.sender_id = p.user_id and m.deleted_at is null) \
       or p.received_count <> (select count(*) from messages m \
         where m.conversation_id = p.conversation_id and m.sender_id <> p.user_id \
         and m.deleted_at is null and m.seq > coalesce(p.hidden_until_seq, 0)) \
       or p.activity_at <> c.activity_at or p.conversation_type <> c.type \
       or p.hidden <> (p.hidden_until_seq is not null and c.last_seq <= p.hidden_until_seq)) \
  + (select count(*) from ( \
       select user_id, count(*) filter (where not hidden) as conversations, \
         count(*) filter (where not hidden and archived) as archived, \
         count(*) filter (where not hidden and unread_count > 0) as unread_conversations, \
         sum(unread_count) as unread_messages, sum(sent_count) as messages_sent, \
         sum(received_count) as messages_received, \
         count(*) filter (where not hidden and conversation_type = 'property_inquiry') as pi, \
         count(*) filter (where not hidden and conversation_type = 'general') as ge, \
         count(*) filter (where not hidden and conversation_type = 'support') as su \
       from participants group by user_id) a \
     left join user_stats s on s.user_id = a.user_id \
     where s.user_id is null or s.conversations <> a.conversations or s.archived <> a.archived \
       or s.unread_conversations <> a.unread_conversations \
       or s.unread_messages <> a.unread_messages or s.messages_sent <> a.messages_sent \
       or s.messages_received <> a.messages_received or s.property_inquiries <> a.pi \
       or s.general <> a.ge or s.support <> a.su) as drift";

/// A conversation's id and every participant's unread counts in it.
pub type ConversationCounts = (String, Arc<[UnreadCounts]>);

/// What a batch of sends did.
#[derive(Debug, Clone, Default)]
pub struct Inserted {
    /// One per message of the batch, in its order.
    pub outcomes: Vec<InsertOutcome>,
    /// One per message of the batch: each participant's feed position of its `new_message`
    /// (empty for a message not created).
    pub cursors: Vec<Cursors>,
    /// Every participant's counts after the batch, for each conversation that got a message.
    pub unread: Vec<ConversationCounts>,
}

impl Inserted {
    /// The counts after the batch in `conversation_id`, if it got a message.
    pub fn unread_of(&self, conversation_id: &str) -> Option<Arc<[UnreadCounts]>> {
        self.unread
            .iter()
            .find(|(c, _)| c == conversation_id)
            .map(|(_, counts)| Arc::clone(counts))
    }
}

/// One participant's unread counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadCounts {
    pub user_id: String,
    /// In the conversation asked about.
    pub unread: i64,
    /// Over all the user's conversations.
    pub total: i64,
}

/// Both backends' `unread_counts` query (`$1`: the conversation): stored counters.
pub(crate) const UNREAD_COUNTS_SQL: &str = "select p.user_id, p.unread_count as unread, \
       coalesce(s.unread_messages, 0) as total \
     from participants p left join user_stats s on s.user_id = p.user_id \
     where p.conversation_id = $1 order by p.user_id";

/// Groups rows `(conversation_id, user_id, unread, total)`, ordered by conversation.
pub(crate) fn group_counts<'r, R>(rows: &'r [R]) -> Result<Vec<ConversationCounts>, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut groups: Vec<(String, Vec<UnreadCounts>)> = Vec::new();
    for row in rows {
        let conversation: String = row.try_get("conversation_id")?;
        let counts = UnreadCounts::from_row(row)?;
        match groups.last_mut() {
            Some((id, list)) if *id == conversation => list.push(counts),
            _ => groups.push((conversation, vec![counts])),
        }
    }
    Ok(groups
        .into_iter()
        .map(|(id, list)| (id, Arc::from(list)))
        .collect())
}

/// Both backends' `contacts` query (`$1`: the user).
pub(crate) const CONTACTS_SQL: &str = "select distinct q.user_id from participants p \
     join participants q on q.conversation_id = p.conversation_id \
     where p.user_id = $1 and q.user_id <> $1 order by q.user_id";

impl UnreadCounts {
    pub(crate) fn from_row<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            user_id: row.try_get("user_id")?,
            unread: row.try_get("unread")?,
            total: row.try_get("total")?,
        })
    }
}

/// Opens the store named by `url`: `sqlite:…` or `postgres://…`, migrated.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

// Row mapping, shared by both backends: the schemas keep the same column names and types
// (text, 64-bit integers, booleans), so one generic function per record fits both.

impl ConversationRecord {
    pub(crate) fn from_row<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id: row.try_get("id")?,
            kind: row.try_get("type")?,
            created_by: row.try_get("created_by")?,
            property_id: row.try_get("property_id")?,
            title: row.try_get("title")?,
            metadata: row.try_get("metadata")?,
            last_seq: row.try_get("last_seq")?,
            last_message_id: row.try_get("last_message_id")?,
            last_message_at: row.try_get("last_message_at")?,
            activity_at: row.try_get("activity_at")?,
            blocked: row.try_get("blocked")?,
            blocked_by: row.try_get("blocked_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

impl ParticipantRecord {
    pub(crate) fn from_row<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            conversation_id: row.try_get("conversation_id")?,
            user_id: row.try_get("user_id")?,
            role: row.try_get("role")?,
            last_read_seq: row.try_get("last_read_seq")?,
            last_read_at: row.try_get("last_read_at")?,
            archived: row.try_get("archived")?,
            muted: row.try_get("muted")?,
            hidden_until_seq: row.try_get("hidden_until_seq")?,
            joined_at: row.try_get("joined_at")?,
        })
    }
}

impl MessageRecord {
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
            seq: row.try_get("seq")?,
            sender_id: row.try_get("sender_id")?,
            kind: row.try_get("type")?,
            content: row.try_get("content")?,
            reply_to: row.try_get("reply_to")?,
            attachments: row.try_get("attachments")?,
            client_message_id: row.try_get("client_message_id")?,
            edited_at: row.try_get("edited_at")?,
            deleted_at: row.try_get("deleted_at")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Assembles views from the rows of a batch: conversations (with the viewer's unread count),
/// all their participants, and their last messages. Shared by both backends.
pub(crate) fn assemble_views(
    user: &str,
    conversations: Vec<(ConversationRecord, i64)>,
    participants: Vec<ParticipantRecord>,
    last_messages: Vec<MessageRecord>,
) -> Vec<ConversationView> {
    conversations
        .into_iter()
        .filter_map(|(conversation, unread_count)| {
            let members: Vec<ParticipantRecord> = participants
                .iter()
                .filter(|p| p.conversation_id == conversation.id)
                .cloned()
                .collect();
            // A conversation whose viewer is not among its participants cannot be shown.
            let me = members.iter().find(|p| p.user_id == user)?.clone();
            let last_message = last_messages
                .iter()
                .find(|m| Some(&m.id) == conversation.last_message_id.as_ref())
                .filter(|m| m.seq > me.hidden_seq())
                .cloned();
            Some(ConversationView {
                conversation,
                me,
                participants: members,
                unread_count,
                last_message,
            })
        })
        .collect()
}

/// Builds a migrator from migrations compiled into the binary, so a container needs no
/// `migrations/` folder at run time. `files` is `(version, description, sql)`.
pub(crate) fn migrator(files: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Column lists shared by both backends' queries (`c` is conversations, `m` messages).
macro_rules! conversation_columns {
    () => {
        "c.id, c.type, c.created_by, c.property_id, c.title, c.metadata, c.last_seq, \
         c.last_message_id, c.last_message_at, c.activity_at, c.blocked, c.blocked_by, \
         c.created_at, c.updated_at"
    };
}
macro_rules! message_columns {
    () => {
        "m.id, m.conversation_id, m.seq, m.sender_id, m.type, m.content, m.reply_to, \
         m.attachments, m.client_message_id, m.edited_at, m.deleted_at, m.created_at"
    };
}
/// The unread count of participant `p` in conversation `c`: messages after the read position
/// that others sent and did not delete (hidden ones are at or below the read position).
macro_rules! unread_count_of_p {
    () => {
        "p.unread_count"
    };
}
/// The same count computed from the messages: what `p.unread_count` is kept equal to, and how
/// a read recomputes it (the cost is the unread messages, not the history).
macro_rules! count_unread_of_p {
    () => {
        "(select count(*) from messages u where u.conversation_id = p.conversation_id \
          and u.seq > p.last_read_seq and u.sender_id <> p.user_id and u.deleted_at is null)"
    };
}
/// The participant `p` has not hidden the conversation (or a newer message brought it back).
macro_rules! visible_to_p {
    () => {
        "not p.hidden"
    };
}
/// The columns of `user_stats` behind `GET /stats`, in [`StatsRecord`] order.
pub(crate) const STATS_SQL: &str = "select conversations, archived, unread_conversations, \
       unread_messages, messages_sent, messages_received, property_inquiries, general, support \
     from user_stats where user_id = $1";
/// Both backends' `unread_total` (`$1`: the user).
pub(crate) const UNREAD_TOTAL_SQL: &str =
    "select coalesce((select unread_messages from user_stats where user_id = $1), 0)";

pub(crate) use {
    conversation_columns, count_unread_of_p, message_columns, unread_count_of_p, visible_to_p,
};

impl StatsRecord {
    /// From a row of [`STATS_SQL`]; `None` (a user with no conversation) is all zeros.
    pub(crate) fn from_row<'r, R>(row: Option<&'r R>) -> Result<Self, sqlx::Error>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let Some(row) = row else {
            return Ok(Self::default());
        };
        let by_type = [
            ("property_inquiry", row.try_get("property_inquiries")?),
            ("general", row.try_get("general")?),
            ("support", row.try_get("support")?),
        ];
        Ok(Self {
            total: row.try_get("conversations")?,
            archived: row.try_get("archived")?,
            unread_conversations: row.try_get("unread_conversations")?,
            unread_messages: row.try_get("unread_messages")?,
            messages_sent: row.try_get("messages_sent")?,
            messages_received: row.try_get("messages_received")?,
            by_type: by_type
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
        })
    }
}
