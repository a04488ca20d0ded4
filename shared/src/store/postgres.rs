//! PostgreSQL backend: the scaled mode. Replicas share the database, so every guarantee is
//! the database's: the row lock taken by `update conversations set last_seq = last_seq + 1`
//! serialises sends per conversation (other conversations don't wait), unique keys make
//! create-or-get and idempotent sends race-free, and read positions only move forward.

use super::batch;
use super::feed::{self, Cursors, FeedEntry, FeedKind, FeedPage, FeedWrite, OutboxRow, read_entry};
use super::sqlite::like_pattern;
use super::{
    CONTACTS_SQL, ConversationQuery, ConversationRecord, ConversationView, MessageRecord,
    NewConversation, NewMessage, ParticipantRecord, ReadOutcome, STATS_SQL, SeqRange, StatsRecord,
    Store, StoreResult, UNREAD_COUNTS_SQL, UNREAD_TOTAL_SQL, UnreadCounts, assemble_views,
    conversation_columns, count_unread_of_p, message_columns, migrator, unread_count_of_p,
    visible_to_p,
};
use super::{Inserted, StoreError, group_counts};
use crate::time::Millis;
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use std::collections::HashMap;
use std::time::Duration;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "message search tokens",
        include_str!("../../../migrations/postgres/0002_message_search_tokens.sql"),
    ),
    (
        3,
        "counters",
        include_str!("../../../migrations/postgres/0003_counters.sql"),
    ),
    (
        4,
        "change feed",
        include_str!("../../../migrations/postgres/0004_feed.sql"),
    ),
    (
        5,
        "outbox",
        include_str!("../../../migrations/postgres/0005_outbox.sql"),
    ),
];

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Whether changes record outbox rows (set when events go over Redis).
    outbox: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PostgresStore {
    /// Connects and migrates (under sqlx's advisory lock: replicas may start together).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // Below the contract's 2 s: with the server down, a request fails with
            // `unavailable` instead of waiting for a connection that cannot come.
            .acquire_timeout(Duration::from_millis(1500))
            // No JIT: it compiles a plan when its estimated cost is high (a search over a
            // landlord's 10,000 conversations), adding tens of milliseconds to requests that
            // run in a few. Set per session rather than in the URL's `options`, which the
            // caller may use (the tests select their schema there).
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "set jit = off").await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self {
            pool,
            outbox: std::sync::Arc::default(),
        })
    }

    /// Applies pending migrations (also done by `connect`).
    pub async fn migrate(&self) -> StoreResult<()> {
        migrator(MIGRATIONS).run(&self.pool).await?;
        Ok(())
    }

    /// Records the outbox row of one change when outbox rows are on (see `record_outbox`).
    async fn record(
        &self,
        tx: &mut sqlx::PgConnection,
        conversation_id: &str,
        cursors: &mut Cursors,
        now: i64,
    ) -> StoreResult<()> {
        if self.outbox.load(std::sync::atomic::Ordering::Relaxed) {
            record_outbox(tx, &mut [(conversation_id, cursors)], now).await?;
        }
        Ok(())
    }

    /// The connection pool, for tooling and tests that need the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn views(
        &self,
        user: &str,
        conversations: Vec<(ConversationRecord, i64)>,
    ) -> StoreResult<Vec<ConversationView>> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = conversations.iter().map(|(c, _)| c.id.clone()).collect();
        let last_ids: Vec<String> = conversations
            .iter()
            .filter_map(|(c, _)| c.last_message_id.clone())
            .collect();
        let participants = sqlx::query(
            "select * from participants \
             where conversation_id = any($1) order by user_id",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(ParticipantRecord::from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let last_messages = sqlx::query(concat!(
            "select ",
            message_columns!(),
            " from messages m where m.id = any($1)"
        ))
        .bind(&last_ids)
        .fetch_all(&self.pool)
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

impl PostgresStore {
    async fn try_insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Inserted> {
        let mut tx = self.pool.begin().await?;
        let keys = batch::client_keys(batch);
        let mut stored = HashMap::new();
        if !keys.is_empty() {
            let (senders, client_ids): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
            let rows = sqlx::query(concat!(
                "select ",
                message_columns!(),
                " from messages m join unnest($1::text[], $2::text[]) as k(sender, client_id) \
                 on m.sender_id = k.sender and m.client_message_id = k.client_id"
            ))
            .bind(&senders)
            .bind(&client_ids)
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
        // Row locks in id order (see batch::conversation_ids). `no key update`, the lock an
        // update of non-key columns takes anyway: it does not conflict with the `key share`
        // lock that foreign-key checks take (a read that updates its participants row twice
        // checks its conversation), which `for update` would turn into a deadlock.
        let conversations: HashMap<String, (i64, bool)> = sqlx::query(
            "select id, last_seq, blocked from conversations where id = any($1) \
             order by id for no key update",
        )
        .bind(batch::conversation_ids(batch))
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

        let rows: Vec<&MessageRecord> = plan.inserts().collect();
        sqlx::query(
            "insert into messages (id, conversation_id, seq, sender_id, type, content, reply_to, \
               attachments, client_message_id, created_at) \
             select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
               $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[])",
        )
        .bind(rows.iter().map(|m| m.id.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|m| m.conversation_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|m| m.seq).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|m| m.sender_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.content.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|m| m.reply_to.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|m| m.attachments.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|m| m.client_message_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;

        let changes = &plan.conversations;
        let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        sqlx::query(
            "update conversations c set last_seq = u.last_seq, last_message_id = u.message_id, \
               last_message_at = u.at, activity_at = u.at, updated_at = u.at \
             from unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) \
               as u(id, last_seq, message_id, at) \
             where c.id = u.id",
        )
        .bind(&ids)
        .bind(changes.iter().map(|c| c.last_seq).collect::<Vec<_>>())
        .bind(
            changes
                .iter()
                .map(|c| c.last_message_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(changes.iter().map(|c| c.at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        // Every participant first as a receiver of everything added, then each sender
        // corrected: their own messages are not received, and their read position moves to
        // their newest message, after which only what others added later is unread.
        sqlx::query(
            "update participants p set activity_at = u.at, hidden = false, \
               unread_count = p.unread_count + u.added, \
               received_count = p.received_count + u.added \
             from unnest($1::text[], $2::bigint[], $3::bigint[]) as u(id, at, added) \
             where p.conversation_id = u.id",
        )
        .bind(&ids)
        .bind(changes.iter().map(|c| c.at).collect::<Vec<_>>())
        .bind(changes.iter().map(|c| c.added).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        let senders = &plan.senders;
        sqlx::query(
            "update participants p set unread_count = u.unread_after, \
               received_count = p.received_count - u.sent, sent_count = p.sent_count + u.sent, \
               last_read_seq = greatest(p.last_read_seq, u.last_seq), last_read_at = u.at \
             from unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
               $6::bigint[]) as u(conversation_id, user_id, sent, last_seq, at, unread_after) \
             where p.conversation_id = u.conversation_id and p.user_id = u.user_id",
        )
        .bind(
            senders
                .iter()
                .map(|s| s.conversation_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            senders
                .iter()
                .map(|s| s.user_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(senders.iter().map(|s| s.sent).collect::<Vec<_>>())
        .bind(senders.iter().map(|s| s.last_seq).collect::<Vec<_>>())
        .bind(senders.iter().map(|s| s.at).collect::<Vec<_>>())
        .bind(senders.iter().map(|s| s.unread_after).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        let counts = sqlx::query(
            "select p.conversation_id, p.user_id, p.unread_count as unread, \
               coalesce(s.unread_messages, 0) as total \
             from participants p left join user_stats s on s.user_id = p.user_id \
             where p.conversation_id = any($1) order by p.conversation_id, p.user_id",
        )
        .bind(&ids)
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
}

/// One feed entry, appended inside `tx`: its cursors.
async fn append_one(tx: &mut sqlx::PgConnection, write: FeedWrite) -> StoreResult<Cursors> {
    let writes = [write];
    let positions = append_feed(tx, &writes).await?;
    Ok(feed::cursors(&writes, &positions))
}

/// Appends `writes` to their users' feeds inside `tx` and returns each one's position. The
/// users' `feed_heads` rows are taken in user order, after whatever conversations and
/// participants rows the change locked, and held until it commits: the next change for the
/// same user takes the next positions and becomes visible after this one.
async fn append_feed(tx: &mut sqlx::PgConnection, writes: &[FeedWrite]) -> StoreResult<Vec<i64>> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let counts = feed::counts_by_user(writes);
    let users: Vec<&str> = counts.keys().copied().collect();
    let adds: Vec<i64> = counts.values().copied().collect();
    let heads: HashMap<String, i64> = sqlx::query(
        "insert into feed_heads (user_id, pos) \
         select * from unnest($1::text[], $2::bigint[]) order by 1 \
         on conflict (user_id) do update set pos = feed_heads.pos + excluded.pos \
         returning user_id, pos",
    )
    .bind(&users)
    .bind(&adds)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("user_id")?, r.try_get("pos")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let positions =
        feed::positions(writes, &heads).ok_or(StoreError::Sqlx(sqlx::Error::RowNotFound))?;
    sqlx::query(
        "insert into feed (user_id, pos, kind, conversation_id, message_id, actor, seq, at) \
         select * from unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
           $6::text[], $7::bigint[], $8::bigint[])",
    )
    .bind(
        writes
            .iter()
            .map(|w| w.user_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(&positions)
    .bind(writes.iter().map(|w| w.kind.as_str()).collect::<Vec<_>>())
    .bind(
        writes
            .iter()
            .map(|w| w.conversation_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        writes
            .iter()
            .map(|w| w.message_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        writes
            .iter()
            .map(|w| w.actor.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(writes.iter().map(|w| w.seq).collect::<Vec<_>>())
    .bind(writes.iter().map(|w| w.at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(positions)
}

/// Records the outbox rows of `changes` (a conversation and the change's cursors each) in
/// `tx`, one per change with entries, and sets each one's row id.
async fn record_outbox(
    tx: &mut sqlx::PgConnection,
    changes: &mut [(&str, &mut Cursors)],
    now: i64,
) -> StoreResult<()> {
    let changes: Vec<&mut (&str, &mut Cursors)> =
        changes.iter_mut().filter(|(_, c)| !c.is_empty()).collect();
    if changes.is_empty() {
        return Ok(());
    }
    // Ids first, so that each row's id is known without relying on the order of RETURNING.
    let ids: Vec<i64> = sqlx::query_scalar(
        "select nextval(pg_get_serial_sequence('outbox', 'id')) from generate_series(1, $1)",
    )
    .bind(i64::try_from(changes.len()).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "insert into outbox (id, due_at, conversation_id, entries) \
         select id, $2, c, e from unnest($1::bigint[], $3::text[], $4::text[]) as u(id, c, e)",
    )
    .bind(&ids)
    .bind(now)
    .bind(changes.iter().map(|(c, _)| *c).collect::<Vec<_>>())
    .bind(
        changes
            .iter()
            .map(|(_, cursors)| feed::outbox_entries(cursors))
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    for ((_, cursors), id) in changes.into_iter().zip(ids) {
        cursors.outbox = Some(id);
    }
    Ok(())
}

/// Appends `template` for every participant of its conversation.
async fn append_for_participants(
    tx: &mut sqlx::PgConnection,
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

fn conversation_with_unread(row: &PgRow) -> Result<(ConversationRecord, i64), sqlx::Error> {
    Ok((
        ConversationRecord::from_row(row)?,
        row.try_get("unread_count")?,
    ))
}

/// A `to_tsquery` text matching every word of `term` as a prefix, or `None` when the term has
/// no word. Built from alphanumeric tokens only, so user input can never be tsquery syntax.
fn tsquery_prefix(term: &str) -> Option<String> {
    let tokens: Vec<String> = term
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| format!("{}:*", t.to_lowercase()))
        .collect();
    (!tokens.is_empty()).then(|| tokens.join(" & "))
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(id = %new.id))]
    async fn create_conversation(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(String, bool, Cursors)> {
        let mut tx = self.pool.begin().await?;
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
        .fetch_optional(&self.pool)
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
        let mut qb = QueryBuilder::<Postgres>::new(concat!(
            "select ",
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
        for term in &query.search {
            let like = like_pattern(term);
            qb.push(" and (c.title ilike ")
                .push_bind(like.clone())
                .push(" escape '\\' or c.property_id ilike ")
                .push_bind(like.clone())
                .push(" escape '\\' or c.metadata ilike ")
                .push_bind(like.clone())
                .push(
                    " escape '\\' or exists (select 1 from participants q \
                     where q.conversation_id = c.id and q.user_id ilike ",
                )
                .push_bind(like)
                .push(" escape '\\')");
            if let Some(tsquery) = tsquery_prefix(term) {
                qb.push(
                    " or exists (select 1 from messages m where m.conversation_id = c.id \
                     and m.seq > coalesce(p.hidden_until_seq, 0) \
                     and m.search_doc @@ to_tsquery('simple', ",
                )
                .push_bind(tsquery)
                .push("))");
            }
            qb.push(")");
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
            .fetch_all(&self.pool)
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
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(ParticipantRecord::from_row)
                .collect::<Result<Vec<_>, _>>()?,
        )
    }

    #[tracing::instrument(skip_all, fields(size = batch.len()))]
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Inserted> {
        // A concurrent batch on another replica may take one of our clientMessageIds between
        // our check and our insert: the insert then fails as a whole, and the retry finds it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_insert_messages(batch).await {
                Err(e) if e.is_unique_violation() && attempt < 3 => continue,
                result => return result,
            }
        }
    }

    async fn message(&self, id: &str) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(concat!(
            "select ",
            message_columns!(),
            " from messages m where m.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
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
        .fetch_optional(&self.pool)
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
            .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let before: i64 = sqlx::query_scalar(
            "select last_read_seq from participants where conversation_id = $1 and user_id = $2 for update",
        )
        .bind(conversation_id)
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "update participants as p set \
               last_read_seq = greatest(p.last_read_seq, least(coalesce($3::bigint, c.last_seq), c.last_seq)), \
               last_read_at = case \
                 when least(coalesce($3::bigint, c.last_seq), c.last_seq) > p.last_read_seq then $4 \
                 else p.last_read_at end \
             from conversations c where c.id = p.conversation_id \
               and p.conversation_id = $1 and p.user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .bind(up_to)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(concat!(
            "update participants as p set unread_count = ",
            count_unread_of_p!(),
            " where p.conversation_id = $1 and p.user_id = $2 \
             returning last_read_seq, last_read_at, unread_count"
        ))
        .bind(conversation_id)
        .bind(user)
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
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "update participants set archived = coalesce($3::boolean, archived), \
               muted = coalesce($4::boolean, muted) \
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
        let mut tx = self.pool.begin().await?;
        // The conversation first, shared: a batch of sends holds it while it adds messages,
        // so `last_seq` here is the committed one and the counters zeroed below cannot miss
        // messages committed meanwhile. (An update joining `conversations` would re-check a
        // concurrently updated participants row against the conversation row it read before.)
        let last_seq: Option<i64> =
            sqlx::query_scalar("select last_seq from conversations where id = $1 for share")
                .bind(conversation_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(last_seq) = last_seq else {
            return Ok(Cursors::new());
        };
        let updated = sqlx::query(
            "update participants set hidden_until_seq = $3, hidden = true, \
               unread_count = 0, received_count = 0, \
               last_read_seq = greatest(last_read_seq, $3) \
             where conversation_id = $1 and user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .bind(last_seq)
        .execute(&mut *tx)
        .await?;
        // As on SQLite: no participant row, no feed entry.
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
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "update conversations set title = coalesce($2::text, title), \
               blocked = coalesce($3::boolean, blocked), \
               blocked_by = case when $3::boolean is null then blocked_by \
                 when $3::boolean then $4::text else null end, \
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
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
        // The conversation first (as a batch of sends and a hide lock it), then the message
        // and the participants rows: one lock order everywhere.
        sqlx::query(
            "select 1 from conversations \
             where id = (select conversation_id from messages where id = $1) for share",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
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
            .fetch_optional(&self.pool)
            .await?;
        let rows = sqlx::query(feed::FEED_PAGE_SQL)
            .bind(user)
            .bind(since)
            .bind(limit)
            .fetch_all(&self.pool)
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
            "delete from feed where ctid in \
             (select ctid from feed where at < $1 limit $2)",
        )
        .bind(before.0)
        .bind(max)
        .execute(&self.pool)
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
        // `skip locked`: relays on other replicas take other rows meanwhile.
        let rows = sqlx::query(
            "update outbox set due_at = $2 where id in \
               (select id from outbox where due_at < $1 order by id limit $3 \
                for update skip locked) \
             returning id, conversation_id, entries",
        )
        .bind(due_before.0)
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(OutboxRow::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn outbox_done(&self, ids: &[i64]) -> StoreResult<()> {
        sqlx::query("delete from outbox where id = any($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_backlog(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from outbox")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn messages_by_id(&self, ids: &[String]) -> StoreResult<Vec<MessageRecord>> {
        let rows = sqlx::query(concat!(
            "select ",
            message_columns!(),
            " from messages m where m.id = any($1)"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(MessageRecord::from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn unread_total(&self, user: &str) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(UNREAD_TOTAL_SQL)
            .bind(user)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn stats(&self, user: &str) -> StoreResult<StatsRecord> {
        let row = sqlx::query(STATS_SQL)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(StatsRecord::from_row(row.as_ref())?)
    }

    async fn unread_counts(&self, conversation_id: &str) -> StoreResult<Vec<UnreadCounts>> {
        let rows = sqlx::query(UNREAD_COUNTS_SQL)
            .bind(conversation_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(UnreadCounts::from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn contacts(&self, user: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(CONTACTS_SQL)
            .bind(user)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn counter_drift(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(super::COUNTER_DRIFT_SQL)
            .fetch_one(&self.pool)
            .await?)
    }
}
