//! [`Timed`]: a [`Store`] that times every call into `chat_db_query_duration_seconds{op}`.
//!
//! Each call is timed from the caller's side, pool wait included: what a request waits for.
//! The batching writer's group commits show as `insert_messages`, one observation per batch.

use super::*;
use crate::metrics::DbLabels;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

pub struct Timed {
    inner: Arc<dyn Store>,
    histograms: Family<DbLabels, Histogram, fn() -> Histogram>,
}

impl Timed {
    pub fn wrap(
        inner: Arc<dyn Store>,
        histograms: Family<DbLabels, Histogram, fn() -> Histogram>,
    ) -> Arc<dyn Store> {
        Arc::new(Self { inner, histograms })
    }

    async fn time<T>(&self, op: &'static str, call: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = call.await;
        self.histograms
            .get_or_create(&DbLabels { op })
            .observe(started.elapsed().as_secs_f64());
        out
    }
}

#[async_trait]
impl Store for Timed {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.time("ping", self.inner.ping()).await
    }

    async fn create_conversation(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(String, bool, Cursors)> {
        let call = self.inner.create_conversation(new);
        self.time("create_conversation", call).await
    }

    async fn conversation(&self, user: &str, id: &str) -> StoreResult<Option<ConversationView>> {
        self.time("conversation", self.inner.conversation(user, id))
            .await
    }

    async fn list_conversations(
        &self,
        user: &str,
        query: &ConversationQuery,
    ) -> StoreResult<Vec<ConversationView>> {
        let call = self.inner.list_conversations(user, query);
        self.time("list_conversations", call).await
    }

    async fn participants(&self, conversation_id: &str) -> StoreResult<Vec<ParticipantRecord>> {
        let call = self.inner.participants(conversation_id);
        self.time("participants", call).await
    }

    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Inserted> {
        let call = self.inner.insert_messages(batch);
        self.time("insert_messages", call).await
    }

    async fn message(&self, id: &str) -> StoreResult<Option<MessageRecord>> {
        self.time("message", self.inner.message(id)).await
    }

    async fn message_by_client_id(
        &self,
        sender: &str,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let call = self.inner.message_by_client_id(sender, client_message_id);
        self.time("message_by_client_id", call).await
    }

    async fn list_messages(
        &self,
        conversation_id: &str,
        hidden_until: i64,
        range: SeqRange,
        limit: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        let call = self
            .inner
            .list_messages(conversation_id, hidden_until, range, limit);
        self.time("list_messages", call).await
    }

    async fn mark_read(
        &self,
        conversation_id: &str,
        user: &str,
        up_to: Option<i64>,
        now: Millis,
    ) -> StoreResult<ReadOutcome> {
        let call = self.inner.mark_read(conversation_id, user, up_to, now);
        self.time("mark_read", call).await
    }

    async fn set_flags(
        &self,
        conversation_id: &str,
        user: &str,
        archived: Option<bool>,
        muted: Option<bool>,
        now: Millis,
    ) -> StoreResult<Cursors> {
        let call = self
            .inner
            .set_flags(conversation_id, user, archived, muted, now);
        self.time("set_flags", call).await
    }

    async fn hide(&self, conversation_id: &str, user: &str, now: Millis) -> StoreResult<Cursors> {
        self.time("hide", self.inner.hide(conversation_id, user, now))
            .await
    }

    async fn update_conversation(
        &self,
        id: &str,
        title: Option<&str>,
        blocked: Option<(bool, &str)>,
        now: Millis,
    ) -> StoreResult<Cursors> {
        let call = self.inner.update_conversation(id, title, blocked, now);
        self.time("update_conversation", call).await
    }

    async fn edit_message(
        &self,
        id: &str,
        content: &str,
        now: Millis,
    ) -> StoreResult<Option<(MessageRecord, Cursors)>> {
        let call = self.inner.edit_message(id, content, now);
        self.time("edit_message", call).await
    }

    async fn delete_message(
        &self,
        id: &str,
        now: Millis,
    ) -> StoreResult<Option<(MessageRecord, Cursors)>> {
        let call = self.inner.delete_message(id, now);
        self.time("delete_message", call).await
    }

    async fn feed(&self, user: &str, since: i64, limit: i64) -> StoreResult<FeedPage> {
        self.time("feed", self.inner.feed(user, since, limit)).await
    }

    async fn prune_feed(&self, before: Millis, max: i64) -> StoreResult<u64> {
        self.time("prune_feed", self.inner.prune_feed(before, max))
            .await
    }

    async fn messages_by_id(&self, ids: &[String]) -> StoreResult<Vec<MessageRecord>> {
        self.time("messages_by_id", self.inner.messages_by_id(ids))
            .await
    }

    fn record_outbox(&self, on: bool) {
        self.inner.record_outbox(on);
    }

    async fn claim_outbox(
        &self,
        due_before: Millis,
        now: Millis,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>> {
        let call = self.inner.claim_outbox(due_before, now, limit);
        self.time("claim_outbox", call).await
    }

    async fn outbox_done(&self, ids: &[i64]) -> StoreResult<()> {
        self.time("outbox_done", self.inner.outbox_done(ids)).await
    }

    async fn outbox_backlog(&self) -> StoreResult<i64> {
        self.time("outbox_backlog", self.inner.outbox_backlog())
            .await
    }

    async fn unread_total(&self, user: &str) -> StoreResult<i64> {
        self.time("unread_total", self.inner.unread_total(user))
            .await
    }

    async fn stats(&self, user: &str) -> StoreResult<StatsRecord> {
        self.time("stats", self.inner.stats(user)).await
    }

    async fn unread_counts(&self, conversation_id: &str) -> StoreResult<Vec<UnreadCounts>> {
        let call = self.inner.unread_counts(conversation_id);
        self.time("unread_counts", call).await
    }

    async fn contacts(&self, user: &str) -> StoreResult<Vec<String>> {
        self.time("contacts", self.inner.contacts(user)).await
    }

    async fn counter_drift(&self) -> StoreResult<i64> {
        self.time("counter_drift", self.inner.counter_drift()).await
    }
}
