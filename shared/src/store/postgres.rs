//! PostgreSQL backend: the scaled mode. Replicas share the database, so every guarantee is
//! the database's: the row lock taken by `update conversations set last_seq = last_seq + 1`
//! serialises sends per conversation (other conversations don't wait), unique keys make
//! create-or-get and idempotent sends race-free, and read positions only move forward.

use super::sqlite::like_pattern;
use super::{
    CONTACTS_SQL, ConversationQuery, ConversationRecord, ConversationView, InsertOutcome,
    MessageRecord, NewConversation, NewMessage, ParticipantRecord, ReadOutcome, SeqRange,
    StatsRecord, Store, StoreResult, UNREAD_COUNTS_SQL, UnreadCounts, assemble_views,
    conversation_columns, fold_stats, message_columns, migrator, unread_count_of_p, visible_to_p,
};
use crate::time::Millis;
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
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
];

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and migrates (under sqlx's advisory lock: replicas may start together).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self { pool })
    }

    /// Applies pending migrations (also done by `connect`).
    pub async fn migrate(&self) -> StoreResult<()> {
        migrator(MIGRATIONS).run(&self.pool).await?;
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
    async fn create_conversation(&self, new: &NewConversation) -> StoreResult<(String, bool)> {
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
            return Ok((existing, false));
        }
        for user in &new.participants {
            sqlx::query(
                "insert into participants (conversation_id, user_id, role, joined_at) \
                 values ($1, $2, $3, $4)",
            )
            .bind(&new.id)
            .bind(user)
            .bind(if *user == new.created_by {
                "creator"
            } else {
                "member"
            })
            .bind(new.now.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((new.id.clone(), true))
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
        if let Some((activity, id)) = &query.before {
            qb.push(" and (c.activity_at < ")
                .push_bind(*activity)
                .push(" or (c.activity_at = ")
                .push_bind(*activity)
                .push(" and c.id < ")
                .push_bind(id)
                .push("))");
        }
        qb.push(" order by c.activity_at desc, c.id desc limit ")
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

    #[tracing::instrument(skip_all, fields(conversation = %new.conversation_id))]
    async fn insert_message(&self, new: &NewMessage) -> StoreResult<InsertOutcome> {
        // Fast path for retries: no transaction, no row lock.
        if let Some(client_id) = &new.client_message_id
            && let Some(first) = self.message_by_client_id(&new.sender_id, client_id).await?
        {
            return Ok(InsertOutcome::Duplicate(first));
        }
        let mut tx = self.pool.begin().await?;
        let seq: Option<i64> = sqlx::query_scalar(
            "update conversations set last_seq = last_seq + 1, last_message_id = $2, \
               last_message_at = $3, activity_at = $3, updated_at = $3 \
             where id = $1 and not blocked returning last_seq",
        )
        .bind(&new.conversation_id)
        .bind(&new.id)
        .bind(new.now.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = seq else {
            return Ok(InsertOutcome::Blocked);
        };
        let row = sqlx::query(
            "insert into messages (id, conversation_id, seq, sender_id, type, content, reply_to, \
               attachments, client_message_id, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             on conflict (sender_id, client_message_id) do nothing \
             returning id, conversation_id, seq, sender_id, type, content, reply_to, \
               attachments, client_message_id, edited_at, deleted_at, created_at",
        )
        .bind(&new.id)
        .bind(&new.conversation_id)
        .bind(seq)
        .bind(&new.sender_id)
        .bind(&new.kind)
        .bind(&new.content)
        .bind(&new.reply_to)
        .bind(&new.attachments)
        .bind(&new.client_message_id)
        .bind(new.now.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            // A concurrent send with the same clientMessageId committed first. Rolling back
            // returns the seq just taken, so the sequence stays gap-free.
            tx.rollback().await?;
            let first = self
                .message_by_client_id(
                    &new.sender_id,
                    new.client_message_id.as_deref().unwrap_or_default(),
                )
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            return Ok(InsertOutcome::Duplicate(first));
        };
        let message = MessageRecord::from_row(&row)?;
        sqlx::query(
            "update participants set last_read_seq = greatest(last_read_seq, $3), last_read_at = $4 \
             where conversation_id = $1 and user_id = $2",
        )
        .bind(&new.conversation_id)
        .bind(&new.sender_id)
        .bind(seq)
        .bind(new.now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(InsertOutcome::Created(message))
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
            "select p.last_read_seq, p.last_read_at, ",
            unread_count_of_p!(),
            " as unread_count from participants p \
             where p.conversation_id = $1 and p.user_id = $2"
        ))
        .bind(conversation_id)
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let last_read_seq: i64 = row.try_get("last_read_seq")?;
        Ok(ReadOutcome {
            last_read_seq,
            last_read_at: row.try_get("last_read_at")?,
            unread_count: row.try_get("unread_count")?,
            moved: last_read_seq > before,
        })
    }

    async fn set_flags(
        &self,
        conversation_id: &str,
        user: &str,
        archived: Option<bool>,
        muted: Option<bool>,
    ) -> StoreResult<()> {
        sqlx::query(
            "update participants set archived = coalesce($3::boolean, archived), \
               muted = coalesce($4::boolean, muted) \
             where conversation_id = $1 and user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .bind(archived)
        .bind(muted)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn hide(&self, conversation_id: &str, user: &str) -> StoreResult<()> {
        sqlx::query(
            "update participants as p set hidden_until_seq = c.last_seq, \
               last_read_seq = greatest(p.last_read_seq, c.last_seq) \
             from conversations c where c.id = p.conversation_id \
               and p.conversation_id = $1 and p.user_id = $2",
        )
        .bind(conversation_id)
        .bind(user)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_conversation(
        &self,
        id: &str,
        title: Option<&str>,
        blocked: Option<(bool, &str)>,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn edit_message(
        &self,
        id: &str,
        content: &str,
        now: Millis,
    ) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(
            "update messages set content = $2, edited_at = $3 \
             where id = $1 and deleted_at is null \
             returning id, conversation_id, seq, sender_id, type, content, reply_to, \
               attachments, client_message_id, edited_at, deleted_at, created_at",
        )
        .bind(id)
        .bind(content)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(MessageRecord::from_row).transpose()?)
    }

    async fn delete_message(&self, id: &str, now: Millis) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(
            "update messages set content = '', attachments = '[]', \
               deleted_at = coalesce(deleted_at, $2) \
             where id = $1 \
             returning id, conversation_id, seq, sender_id, type, content, reply_to, \
               attachments, client_message_id, edited_at, deleted_at, created_at",
        )
        .bind(id)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(MessageRecord::from_row).transpose()?)
    }

    async fn unread_total(&self, user: &str) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(concat!(
            "select cast(coalesce(sum(",
            unread_count_of_p!(),
            "), 0) as bigint) from participants p where p.user_id = $1"
        ))
        .bind(user)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn stats(&self, user: &str) -> StoreResult<StatsRecord> {
        let rows = sqlx::query(concat!(
            "select c.type, p.archived, ",
            unread_count_of_p!(),
            " as unread_count from participants p \
             join conversations c on c.id = p.conversation_id \
             where p.user_id = $1 and ",
            visible_to_p!()
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("type")?,
                r.try_get::<bool, _>("archived")?,
                r.try_get::<i64, _>("unread_count")?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let sent: i64 = sqlx::query_scalar(
            "select count(*) from messages where sender_id = $1 and deleted_at is null",
        )
        .bind(user)
        .fetch_one(&self.pool)
        .await?;
        let received: i64 = sqlx::query_scalar(
            "select count(*) from participants p join messages m on m.conversation_id = p.conversation_id \
             where p.user_id = $1 and m.sender_id <> $1 and m.deleted_at is null \
               and m.seq > coalesce(p.hidden_until_seq, 0)",
        )
        .bind(user)
        .fetch_one(&self.pool)
        .await?;
        Ok(fold_stats(rows, sent, received))
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
}
