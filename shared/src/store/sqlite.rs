//! SQLite backend: the embedded default. One file under `./data/`, WAL mode.
//!
//! SQLite allows one writer at a time. Rather than let concurrent write transactions collide
//! (`SQLITE_BUSY` when a deferred transaction upgrades to a write lock), every write goes
//! through a dedicated pool of exactly one connection, so writers queue in-process in FIFO
//! order; reads use a separate pool and, thanks to WAL, never wait for the writer.

use super::batch;
use super::feed::{self, Cursors, FeedEntry, FeedKind, FeedPage, FeedWrite, OutboxRow, read_entry};
use super::{
    CONTACTS_SQL, ConversationQuery, ConversationRecord, ConversationView, MessageRecord,
    NewConversation, NewMessage, ParticipantRecord, ReadOutcome, STATS_SQL, SeqRange, StatsRecord,
    Store, StoreResult, UNREAD_COUNTS_SQL, UNREAD_TOTAL_SQL, UnreadCounts, assemble_views,
    conversation_columns, message_columns, migrator, unread_count_of_p, visible_to_p,
};
use super::{Inserted, StoreError, group_counts};
use crate::time::Millis;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "counters",
        include_str!("../../../migrations/sqlite/0002_counters.sql"),
    ),
    (
        3,
        "search members",
        include_str!("../../../migrations/sqlite/0003_search_members.sql"),
    ),
    (
        4,
        "change feed",
        include_str!("../../../migrations/sqlite/0004_feed.sql"),
    ),
    (
        5,
        "outbox",
        include_str!("../../../migrations/sqlite/0005_outbox.sql"),
    ),
];

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Whether changes record outbox rows (set when events go over Redis).
    outbox: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) and migrates the database at `url`.
    pub async fn connect(url: &str, max_readers: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only an OS crash or
            // power loss may roll back the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        migrator(MIGRATIONS).run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(max_readers.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            outbox: std::sync::Arc::default(),
        })
    }

    /// Records the outbox row of one change when outbox rows are on (see `record_outbox`).
    async fn record(
        &self,
        tx: &mut sqlx::SqliteConnection,
        conversation_id: &str,
        cursors: &mut Cursors,
        now: i64,
    ) -> StoreResult<()> {
        if self.outbox.load(std::sync::atomic::Ordering::Relaxed) {
            record_outbox(tx, &mut [(conversation_id, cursors)], now).await?;
        }
        Ok(())
    }

    /// Applies pending migrations (also done by `connect`).
    pub async fn migrate(&self) -> StoreResult<()> {
        migrator(MIGRATIONS).run(&self.writer).await?;
        Ok(())
    }

    async fn views(
        &self,
        user: &str,
        conversations: Vec<(ConversationRecord, i64)>,
    ) -> StoreResult<Vec<ConversationView>> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_list(conversations.iter().map(|(c, _)| c.id.as_str()));
        let last_ids = json_list(
            conversations
                .iter()
                .filter_map(|(c, _)| c.last_message_id.as_deref()),
        );
        let participants = sqlx::query(
            "select * from participants \
             where conversation_id in (select value from json_each($1)) order by user_id",
        )
        .bind(&ids)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(ParticipantRecord::from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let last_messages = sqlx::query(concat!(
            "select ",
            message_columns!(),
            " from messages m where m.id in (select value from json_each($1))"
        ))
        .bind(&last_ids)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(MessageRecord::from_row)
        .collect::<Result<Vec<_>, _>>()?;
        Ok(assemble_views(
            user,
            conversations,
            participants,
            last_messages,
        ))
    }
}

/// Appends `writes` to their users' feeds inside `tx` (the one write transaction SQLite
/// allows at a time) and returns each one's position.
async fn append_feed(
    tx: &mut sqlx::SqliteConnection,
    writes: &[FeedWrite],
) -> StoreResult<Vec<i64>> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let counts: Vec<(&str, i64)> = feed::counts_by_user(writes).into_iter().collect();
    let heads: HashMap<String, i64> = sqlx::query(
        "insert into feed_heads (user_id, pos) \
         select value ->> 0, value ->> 1 from json_each($1) where true \
         on conflict (user_id) do update set pos = feed_heads.pos + excluded.pos \
         returning user_id, pos",
    )
    .bind(serde_json::json!(counts).to_string())
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("user_id")?, r.try_get("pos")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let positions =
        feed::positions(writes, &heads).ok_or(StoreError::Sqlx(sqlx::Error::RowNotFound))?;
    let rows: Vec<serde_json::Value> = writes
        .iter()
        .zip(&positions)
        .map(|(w, pos)| {
            serde_json::json!([
                w.user_id,
                pos,
                w.kind.as_str(),
                w.conversation_id,
                w.message_id,
                w.actor,
                w.seq,
                w.at
            ])
        })
        .collect();
    sqlx::query(
        "insert into feed (user_id, pos, kind, conversation_id, message_id, actor, seq, at) \
         select value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
           value ->> 6, value ->> 7 from json_each($1)",
    )
    .bind(serde_json::Value::from(rows).to_string())
    .execute(&mut *tx)
    .await?;
    Ok(positions)
}

/// Records the outbox rows of `changes` in `tx`, one per change with entries, and sets each
/// one's row id. One writer at a time: the ids after the largest ever given are free.
async fn record_outbox(
    tx: &mut sqlx::SqliteConnection,
    changes: &mut [(&str, &mut Cursors)],
    now: i64,
) -> StoreResult<()> {
    let changes: Vec<&mut (&str, &mut Cursors)> =
        changes.iter_mut().filter(|(_, c)| !c.is_empty()).collect();
    if changes.is_empty() {
        return Ok(());
    }
    let last: i64 = sqlx::query_scalar(
        "select max(coalesce((select max(id) from outbox), 0), \
           coalesce((select seq from sqlite_sequence where name = 'outbox'), 0))",
    )
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<serde_json::Value> = changes
        .iter()
        .enumerate()
        .map(|(i, (c, cursors))| {
            serde_json::json!([last + 1 + i as i64, c, feed::outbox_entries(cursors)])
        })
        .collect();
    sqlx::query(
        "insert into outbox (id, due_at, conversation_id, entries) \
         select value ->> 0, $2, value ->> 1, value ->> 2 from json_each($1)",
    )
    .bind(serde_json::Value::from(rows).to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (i, (_, cursors)) in changes.into_iter().enumerate() {
        cursors.outbox = Some(last + 1 + i as i64);
    }
    Ok(())
}

/// Appends `template` for every participant of its conversation.
async fn append_for_participants(
    tx: &mut sqlx::SqliteConnection,
    template: &FeedWrite,
) -> StoreResult<Cursors> {
    let users: Vec<String> = sqlx::query_scalar(feed::RECIPIENTS_SQL)
        .bind(&template.conversation_id)
        .fetch_all(&mut *tx)
        .await?;
    let writes = FeedWrite::for_each(users.iter().map(String::as_str), template);
    let positions = append_feed(tx, &writes).await?;
    Ok(feed::cursors(&writes, &positions))
}

/// One entry for one user.
async fn append_one(tx: &mut sqlx::SqliteConnection, write: FeedWrite) -> StoreResult<Cursors> {
    let writes = [write];
    let positions = append_feed(tx, &writes).await?;
    Ok(feed::cursors(&writes, &positions))
}

/// A JSON array of strings, for `in (select value from json_each(?))`: one bound parameter
/// for a list of any length.
fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    serde_json::Value::from(items.collect::<Vec<_>>()).to_string()
}

fn conversation_with_unread(row: &SqliteRow) -> Result<(ConversationRecord, i64), sqlx::Error> {
    Ok((
        ConversationRecord::from_row(row)?,
        row.try_get("unread_count")?,
    ))
}

/// An FTS5 query for messages of `user`'s conversations matching `term` as a prefix phrase;
/// quotes make any input safe to match. Members are indexed as their ids in hex (migration
/// 0003), which the tokenizer keeps whole.
fn fts_member_prefix(user: &str, term: &str) -> String {
    let hex: String = user.bytes().map(|b| format!("{b:02X}")).collect();
    format!(
        "members : \"{hex}\" AND content : \"{}\"*",
        term.replace('"', "\"\"")
    )
}

/// A LIKE pattern matching `term` anywhere (with `escape '\'`).
pub(super) fn like_pattern(term: &str) -> String {
    let escaped = term
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.reader).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(id = %new.id))]
    async fn create_conversation(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(String, bool, Cursors)> {
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "insert into conversations (id, type, created_by, property_id, title, metadata, \
               dedupe_key, activity_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8) \
             on conflict (dedupe_key) do nothing",
        )
        .bind(&new.id)
        .bind(&new.kind)
        .bind(&new.created_by)
        .bind(&new.property_id)
        .bind(&new.title)
        .bind(&new.metadata)
        .bind(&new.dedupe_key)
        .bind(new.now.0)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            let existing: String =
                sqlx::query_scalar("select id from conversations where dedupe_key = $1")
                    .bind(&new.dedupe_key)
                    .fetch_one(&mut *tx)
                    .await?;
            return Ok((existing, false, Cursors::new()));
        }
        for user in &new.participants {
            sqlx::query(
                "insert into participants (conversation_id, user_id, role, joined_at, \
                   activity_at, conversation_type) values ($1, $2, $3, $4, $4, $5)",
            )
            .bind(&new.id)
            .bind(user)
            .bind(if *user == new.created_by {
                "creator"
            } else {
                "member"
            })
            .bind(new.now.0)
            .bind(&new.kind)
            .execute(&mut *tx)
            .await?;
        }
        let mut cursors =
            append_for_participants(&mut tx, &FeedWrite::conversation("", &new.id, new.now.0))
                .await?;
        self.record(&mut tx, &new.id, &mut cursors, new.now.0)
            .await?;
        tx.commit().await?;
        Ok((new.id.clone(), true, cursors))
    }

    async fn conversation(&self, user: &str, id: &str) -> StoreResult<Option<ConversationView>> {
        let row = sqlx::query(concat!(
            "select ",
            conversation_columns!(),
            ", ",
            unread_count_of_p!(),
            " as unread_count from conversations c \
             join participants p on p.conversation_id = c.id and p.user_id = $1 \
             where c.id = $2"
        ))
        .bind(user)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let found = conversation_with_unread(&row)?;
        Ok(self.views(user, vec![found]).await?.pop())
    }

    #[tracing::instrument(skip(self))]
    async fn list_conversations(
        &self,
        user: &str,
        query: &ConversationQuery,
    ) -> StoreResult<Vec<ConversationView>> {
        let mut qb = QueryBuilder::<Sqlite>::new("");
        // Per search term, the user's conversations whose messages match, with the newest
        // matching seq (to leave out what the user hid): one FTS query that intersects the
        // term with the user's member token inside the index (see migration 0003), computed
        // once, never per conversation.
        for (i, term) in query.search.iter().enumerate() {
            qb.push(if i == 0 { "with " } else { ", " })
                .push(format!("hits{i} as materialized ("))
                .push(
                    "select m.conversation_id, max(m.seq) as top from messages_fts f \
                     join messages m on m.rowid = f.rowid where messages_fts match ",
                )
                .push_bind(fts_member_prefix(user, term))
                .push(" group by m.conversation_id)");
        }
        qb.push(concat!(
            " select ",
            conversation_columns!(),
            ", ",
            unread_count_of_p!(),
            " as unread_count from participants p \
             join conversations c on c.id = p.conversation_id where ",
            visible_to_p!(),
            " and p.user_id = "
        ));
        qb.push_bind(user);
        if let Some(archived) = query.archived {
            qb.push(" and p.archived = ").push_bind(archived);
        }
        if let Some(kind) = &query.kind {
            qb.push(" and c.type = ").push_bind(kind);
        }
        if let Some(property) = &query.property_id {
            qb.push(" and c.property_id = ").push_bind(property);
        }
        for (i, term) in query.search.iter().enumerate() {
            let like = like_pattern(term);
            qb.push(" and (c.title like ")
                .push_bind(like.clone())
                .push(" escape '\\' or c.property_id like ")
                .push_bind(like.clone())
                .push(" escape '\\' or c.metadata like ")
                .push_bind(like.clone())
                .push(
                    " escape '\\' or exists (select 1 from participants q \
                     where q.conversation_id = c.id and q.user_id like ",
                )
                .push_bind(like)
                .push(format!(
                    " escape '\\') or exists (select 1 from hits{i} h \
                     where h.conversation_id = c.id and h.top > coalesce(p.hidden_until_seq, 0)))"
                ));
        }
        // Keyset on the participant's copy of the activity time, in the order of the
        // participants_inbox indexes: the page is read from the index and nothing more.
        if let Some((activity, id)) = &query.before {
            qb.push(" and (p.activity_at < ")
                .push_bind(*activity)
                .push(" or (p.activity_at = ")
                .push_bind(*activity)
                .push(" and p.conversation_id < ")
                .push_bind(id)
                .push("))");
        }
        qb.push(" order by p.activity_at desc, p.conversation_id desc limit ")
            .push_bind(query.limit);
        let rows = qb
            .build()
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(conversation_with_unread)
            .collect::<Result<Vec<_>, _>>()?;
        self.views(user, rows).await
    }

    async fn participants(&self, conversation_id: &str) -> StoreResult<Vec<ParticipantRecord>> {
        Ok(
            sqlx::query("select * from participants where conversation_id = $1 order by user_id")
                .bind(conversation_id)
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(ParticipantRecord::from_row)
                .collect::<Result<Vec<_>, _>>()?,
        )
    }

    #[tracing::instrument(skip_all, fields(size = batch.len()))]
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Inserted> {
        // The single writer connection serialises this whole transaction against every other
        // write, so the checks below cannot race with another insert.
        let mut tx = self.writer.begin().await?;
        let keys = batch::client_keys(batch);
        let mut stored = HashMap::new();
        if !keys.is_empty() {
            let rows = sqlx::query(concat!(
                "select ",
                message_columns!(),
                " from json_each($1) k join messages m \
                 on m.sender_id = k.value ->> 0 and m.client_message_id = k.value ->> 1"
            ))
            .bind(serde_json::json!(keys).to_string())
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let record = MessageRecord::from_row(row)?;
                let key = (
                    record.sender_id.clone(),
                    record.client_message_id.clone().unwrap_or_default(),
                );
                stored.insert(key, record);
            }
        }
        let conversations: HashMap<String, (i64, bool)> = sqlx::query(
            "select id, last_seq, blocked from conversations \
             where id in (select value from json_each($1))",
        )
        .bind(serde_json::json!(batch::conversation_ids(batch)).to_string())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                (r.try_get("last_seq")?, r.try_get("blocked")?),
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let plan = batch::plan(batch, &stored, &conversations);
        if plan.conversations.is_empty() {
            tx.commit().await?;
            return Ok(Inserted {
                cursors: vec![Cursors::new(); batch.len()],
                outcomes: plan.outcomes(),
                unread: Vec::new(),
            });
        }

        // Lists go in as one JSON parameter each: one statement per step, whatever the batch.
        let rows: Vec<serde_json::Value> = plan
            .inserts()
            .map(|m| {
                serde_json::json!([
                    m.id,
                    m.conversation_id,
                    m.seq,
                    m.sender_id,
                    m.kind,
                    m.content,
                    m.reply_to,
                    m.attachments,
                    m.client_message_id,
                    m.created_at
                ])
            })
            .collect();
        sqlx::query(
            "insert into messages (id, conversation_id, seq, sender_id, type, content, reply_to, \
               attachments, client_message_id, created_at) \
             select value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
               value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9 \
             from json_each($1)",
        )
        .bind(serde_json::Value::from(rows).to_string())
        .execute(&mut *tx)
        .await?;

        let changes = serde_json::Value::from(
            plan.conversations
                .iter()
                .map(|c| serde_json::json!([c.id, c.last_seq, c.last_message_id, c.at, c.added]))
                .collect::<Vec<_>>(),
        )
        .to_string();
        sqlx::query(
            "update conversations set last_seq = u.value ->> 1, \
               last_message_id = u.value ->> 2, last_message_at = u.value ->> 3, \
               activity_at = u.value ->> 3, updated_at = u.value ->> 3 \
             from json_each($1) as u where conversations.id = u.value ->> 0",
        )
        .bind(&changes)
        .execute(&mut *tx)
        .await?;
        // Every participant first as a receiver of everything added, then each sender
        // corrected: their own messages are not received, and their read position moves to
        // their newest message, after which only what others added later is unread.
        sqlx::query(
            "update participants set activity_at = u.value ->> 3, hidden = 0, \
               unread_count = unread_count + (u.value ->> 4), \
               received_count = received_count + (u.value ->> 4) \
             from json_each($1) as u where participants.conversation_id = u.value ->> 0",
        )
        .bind(&changes)
        .execute(&mut *tx)
        .await?;
        let senders = serde_json::Value::from(
            plan.senders
                .iter()
                .map(|s| {
                    serde_json::json!([
                        s.conversation_id,
                        s.user_id,
                        s.sent,
                        s.last_seq,
                        s.at,
                        s.unread_after
                    ])
                })
                .collect::<Vec<_>>(),
        )
        .to_string();
        sqlx::query(
            "update participants set unread_count = u.value ->> 5, \
               received_count = received_count - (u.value ->> 2), \
               sent_count = sent_count + (u.value ->> 2), \
               last_read_seq = max(last_read_seq, u.value ->> 3), last_read_at = u.value ->> 4 \
             from json_each($1) as u \
             where participants.conversation_id = u.value ->> 0 \
               and participants.user_id = u.value ->> 1",
        )
        .bind(&senders)
        .execute(&mut *tx)
        .await?;
        let counts = sqlx::query(
            "select p.conversation_id, p.user_id, p.unread_count as unread, \
               coalesce(s.unread_messages, 0) as total \
             from participants p left join user_stats s on s.user_id = p.user_id \
             where p.conversation_id in (select value ->> 0 from json_each($1)) \
             order by p.conversation_id, p.user_id",
        )
        .bind(&changes)
        .fetch_all(&mut *tx)
        .await?;
        let unread = group_counts(&counts)?;
        let outcomes = plan.outcomes();
        let members: HashMap<&str, Vec<&str>> = unread
            .iter()
            .map(|(c, counts)| {
                (
                    c.as_str(),
                    counts.iter().map(|u| u.user_id.as_str()).collect(),
                )
            })
            .collect();
        let (writes, owners) = feed::message_writes(&outcomes, &members);
        let positions = append_feed(&mut tx, &writes).await?;
        let mut cursors = feed::cursors_by_message(batch.len(), &writes, &owners, &positions);
        if self.outbox.load(std::sync::atomic::Ordering::Relaxed) {
            let now = batch.first().map_or(0, |m| m.now.0);
            let mut changes: Vec<(&str, &mut Cursors)> = batch
                .iter()
                .map(|m| m.conversation_id.as_str())
                .zip(cursors.iter_mut())
                .collect();
            record_outbox(&mut tx, &mut changes, now).await?;
        }
        tx.commit().await?;
        Ok(Inserted {
            cursors,
            outcomes,
            unread,
        })
    }

    async fn message(&self, id: &str) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(concat!(
            "select ",
            message_columns!(),
            " from messages m where m.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(MessageRecord::from_row).transpose()?)
    }

    async fn message_by_client_id(
        &self,
        sender: &str,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(concat!(
            "select ",
            message_columns!(),
            " from messages m where m.sender_id = $1 and m.client_message_id = $2"
        ))
        .bind(sender)
        .bind(client_message_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(MessageRecord::from_row).transpose()?)
    }

    async fn list_messages(
        &self,
        conversation_id: &str,
        hidden_until: i64,
        range: SeqRange,
        limit: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        let query = match range {
            SeqRange::Before(before) => sqlx::query(concat!(
                "select ",
                message_columns!(),
                " from messages m where m.conversation_id = $1 and m.seq > $2 and m.seq < $3 \
                 order by m.seq desc limit $4"
            ))
            .bind(conversation_id)
            .bind(hidden_until)
            .bind(before.unwrap_or(i64::MAX)),
            SeqRange::After(after) => sqlx::query(concat!(
                "select ",
                message_columns!(),
                " from messages m where m.conversation_id = $1 and m.seq > $2 and m.seq > $3 \
                 order by m.seq asc limit $4"
            ))
            .bind(conversation_id)
            .bind(hidden_until)
            .bind(after),
        };
        Ok(query
            .bind(limit)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(MessageRecord::from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    async fn mark_read(
        &self,
        conversation_id: &str,
        user: &str,
        up_to: Option<i64>,
        now: Millis,
    ) -> StoreResult<ReadOutcome> {
        // On the one writer connection, in one transaction: the position and the unread
        // count in one update (every SET expression sees the row as it was, so the count is
        // taken after the new position), and, when the position moved, every participant's
        // feed entry.
        let mut tx = self.writer.begin().await?;
        let before: i64 = sqlx::query_scalar(
            "select last_read_seq from participants where conversation_id = $1 and user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
        let row = sqlx::query(
            "update participants as p set \
               last_read_seq = max(p.last_read_seq, min(coalesce($3, c.last_seq), c.last_seq)), \
               last_read_at = case \
                 when min(coalesce($3, c.last_seq), c.last_seq) > p.last_read_seq then $4 \
                 else p.last_read_at end, \
               unread_count = (select count(*) from messages u \
                 where u.conversation_id = p.conversation_id \
                   and u.seq > max(p.last_read_seq, min(coalesce($3, c.last_seq), c.last_seq)) \
                   and u.sender_id <> p.user_id and u.deleted_at is null) \
             from conversations c where c.id = p.conversation_id \
               and p.conversation_id = $1 and p.user_id = $2 \
             returning last_read_seq, last_read_at, unread_count",
        )
        .bind(conversation_id)
        .bind(user)
        .bind(up_to)
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await?;
        let last_read_seq: i64 = row.try_get("last_read_seq")?;
        let last_read_at: Option<i64> = row.try_get("last_read_at")?;
        let moved = last_read_seq > before;
        let mut cursors = if moved {
            append_for_participants(
                &mut tx,
                &read_entry(
                    conversation_id,
                    user,
                    last_read_seq,
                    last_read_at.unwrap_or(now.0),
                ),
            )
            .await?
        } else {
            Cursors::new()
        };
        self.record(&mut tx, conversation_id, &mut cursors, now.0)
            .await?;
        tx.commit().await?;
        Ok(ReadOutcome {
            last_read_seq,
            last_read_at,
            unread_count: row.try_get("unread_count")?,
            moved,
            cursors,
        })
    }

    async fn set_flags(
        &self,
        conversation_id: &str,
        user: &str,
        archived: Option<bool>,
        muted: Option<bool>,
        now: Millis,
    ) -> StoreResult<Cursors> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "update participants set archived = coalesce($3, archived), muted = coalesce($4, muted) \
             where conversation_id = $1 and user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .bind(archived)
        .bind(muted)
        .execute(&mut *tx)
        .await?;
        let mut cursors = if updated.rows_affected() > 0 {
            append_one(
                &mut tx,
                FeedWrite::conversation(user, conversation_id, now.0),
            )
            .await?
        } else {
            Cursors::new()
        };
        self.record(&mut tx, conversation_id, &mut cursors, now.0)
            .await?;
        tx.commit().await?;
        Ok(cursors)
    }

    async fn hide(&self, conversation_id: &str, user: &str, now: Millis) -> StoreResult<Cursors> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "update participants as p set hidden_until_seq = c.last_seq, hidden = true, \
               unread_count = 0, received_count = 0, last_read_seq = max(p.last_read_seq, c.last_seq) \
             from conversations c where c.id = p.conversation_id \
               and p.conversation_id = $1 and p.user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let mut cursors = if updated.rows_affected() > 0 {
            append_one(
                &mut tx,
                FeedWrite::conversation(user, conversation_id, now.0),
            )
            .await?
        } else {
            Cursors::new()
        };
        self.record(&mut tx, conversation_id, &mut cursors, now.0)
            .await?;
        tx.commit().await?;
        Ok(cursors)
    }

    async fn update_conversation(
        &self,
        id: &str,
        title: Option<&str>,
        blocked: Option<(bool, &str)>,
        now: Millis,
    ) -> StoreResult<Cursors> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "update conversations set title = coalesce($2, title), \
               blocked = coalesce($3, blocked), \
               blocked_by = case when $3 is null then blocked_by when $3 then $4 else null end, \
               updated_at = $5 \
             where id = $1",
        )
        .bind(id)
        .bind(title)
        .bind(blocked.map(|(b, _)| b))
        .bind(blocked.map(|(_, by)| by))
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let mut cursors = if updated.rows_affected() > 0 {
            append_for_participants(&mut tx, &FeedWrite::conversation("", id, now.0)).await?
        } else {
            Cursors::new()
        };
        self.record(&mut tx, id, &mut cursors, now.0).await?;
        tx.commit().await?;
        Ok(cursors)
    }

    async fn edit_message(
        &self,
        id: &str,
        content: &str,
        now: Millis,
    ) -> StoreResult<Option<(MessageRecord, Cursors)>> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "update messages set content = $2, edited_at = $3 \
             where id = $1 and deleted_at is null \
             returning id, conversation_id, seq, sender_id, type, content, reply_to, \
               attachments, client_message_id, edited_at, deleted_at, created_at",
        )
        .bind(id)
        .bind(content)
        .bind(now.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let message = MessageRecord::from_row(&row)?;
        let mut cursors = append_for_participants(
            &mut tx,
            &FeedWrite::message(
                "",
                FeedKind::MessageEdited,
                &message.conversation_id,
                &message.id,
                now.0,
            ),
        )
        .await?;
        self.record(&mut tx, &message.conversation_id, &mut cursors, now.0)
            .await?;
        tx.commit().await?;
        Ok(Some((message, cursors)))
    }

    async fn delete_message(
        &self,
        id: &str,
        now: Millis,
    ) -> StoreResult<Option<(MessageRecord, Cursors)>> {
        let mut tx = self.writer.begin().await?;
        let deleted = sqlx::query(super::DELETE_MESSAGE_SQL)
            .bind(id)
            .bind(now.0)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = deleted else {
            // Already deleted (or no such message): nothing changes, counters included.
            let row = sqlx::query(concat!(
                "select ",
                message_columns!(),
                " from messages m where m.id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            let message = row.as_ref().map(MessageRecord::from_row).transpose()?;
            return Ok(message.map(|m| (m, Cursors::new())));
        };
        let message = MessageRecord::from_row(&row)?;
        sqlx::query(super::UNCOUNT_DELETED_SQL)
            .bind(&message.conversation_id)
            .bind(&message.sender_id)
            .bind(message.seq)
            .execute(&mut *tx)
            .await?;
        let mut cursors = append_for_participants(
            &mut tx,
            &FeedWrite::message(
                "",
                FeedKind::MessageDeleted,
                &message.conversation_id,
                &message.id,
                now.0,
            ),
        )
        .await?;
        self.record(&mut tx, &message.conversation_id, &mut cursors, now.0)
            .await?;
        tx.commit().await?;
        Ok(Some((message, cursors)))
    }

    async fn feed(&self, user: &str, since: i64, limit: i64) -> StoreResult<FeedPage> {
        let head: Option<i64> = sqlx::query_scalar(feed::FEED_HEAD_SQL)
            .bind(user)
            .fetch_optional(&self.reader)
            .await?;
        let rows = sqlx::query(feed::FEED_PAGE_SQL)
            .bind(user)
            .bind(since)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        Ok(FeedPage {
            head: head.unwrap_or(0),
            entries: rows
                .iter()
                .map(FeedEntry::from_row)
                .collect::<Result<_, _>>()?,
        })
    }

    async fn prune_feed(&self, before: Millis, max: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "delete from feed where (user_id, pos) in \
             (select user_id, pos from feed where at < $1 limit $2)",
        )
        .bind(before.0)
        .bind(max)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    fn record_outbox(&self, on: bool) {
        self.outbox.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    async fn claim_outbox(
        &self,
        due_before: Millis,
        now: Millis,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "update outbox set due_at = $2 where id in \
               (select id from outbox where due_at < $1 order by id limit $3) \
             returning id, conversation_id, entries",
        )
        .bind(due_before.0)
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        let mut out = rows
            .iter()
            .map(OutboxRow::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn outbox_done(&self, ids: &[i64]) -> StoreResult<()> {
        sqlx::query("delete from outbox where id in (select value from json_each($1))")
            .bind(serde_json::json!(ids).to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn outbox_backlog(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from outbox")
            .fetch_one(&self.reader)
            .await?)
    }

    async fn messages_by_id(&self, ids: &[String]) -> StoreResult<Vec<MessageRecord>> {
        let rows = sqlx::query(concat!(
            "select ",
            message_columns!(),
            " from messages m where m.id in (select value from json_each($1))"
        ))
        .bind(json_list(ids.iter().map(String::as_str)))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(MessageRecord::from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn unread_total(&self, user: &str) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(UNREAD_TOTAL_SQL)
            .bind(user)
            .fetch_one(&self.reader)
            .await?)
    }

    async fn stats(&self, user: &str) -> StoreResult<StatsRecord> {
        let row = sqlx::query(STATS_SQL)
            .bind(user)
            .fetch_optional(&self.reader)
            .await?;
        Ok(StatsRecord::from_row(row.as_ref())?)
    }

    async fn unread_counts(&self, conversation_id: &str) -> StoreResult<Vec<UnreadCounts>> {
        let rows = sqlx::query(UNREAD_COUNTS_SQL)
            .bind(conversation_id)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .iter()
            .map(UnreadCounts::from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn contacts(&self, user: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(CONTACTS_SQL)
            .bind(user)
            .fetch_all(&self.reader)
            .await?)
    }

    async fn counter_drift(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(super::COUNTER_DRIFT_SQL)
            .fetch_one(&self.reader)
            .await?)
    }
}
