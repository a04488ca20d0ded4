//! `GET /sync`: a user's change feed after a cursor (contract v1.1). The store keeps what
//! happened (`store::feed`); the payloads are built here when the feed is read, the same
//! way the live events are.

use super::{ChatService, to_conversation, to_message};
use crate::domain::Caller;
use crate::error::{ChatError, ChatResult, ErrorCode};
use crate::events::Event;
use crate::store::feed::{cursor, parse_cursor};
use crate::store::{FeedEntry, FeedKind, MessageRecord, ParticipantRecord};
use crate::time::Millis;
use crate::wire::{MessagesRead, SyncEvent, SyncPage};
use std::collections::HashMap;

/// Events per page when the client does not say.
const DEFAULT_LIMIT: i64 = 100;
/// Most events per page.
const MAX_LIMIT: i64 = 500;

impl ChatService {
    /// The caller's events after `since`, oldest first, at most `limit` (1–500, default
    /// 100). Without `since`: none, and the current end of the feed to start from.
    pub async fn sync(
        &self,
        caller: &Caller,
        since: Option<&str>,
        limit: Option<i64>,
    ) -> ChatResult<SyncPage> {
        let user = caller.id.as_str();
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                return Err(ChatError::bad_request(format!(
                    "limit: must be between 1 and {MAX_LIMIT}"
                )));
            }
        };
        let Some(since) = since else {
            let page = self.store.feed(user, i64::MAX, 0).await?;
            return Ok(SyncPage {
                events: Vec::new(),
                next_cursor: cursor(user, page.head),
                has_more: false,
            });
        };
        let not_yours = || ChatError::bad_request("since: not a cursor of your change feed");
        let since = parse_cursor(user, since).ok_or_else(not_yours)?;
        let mut page = self.store.feed(user, since, limit + 1).await?;
        if since > page.head {
            return Err(not_yours());
        }
        if pruned_after(since, page.head, &page.entries) {
            return Err(ChatError::new(
                ErrorCode::SyncExpired,
                "since: older than the change feed keeps; reload the conversations, then \
                 call sync without since",
            ));
        }
        let has_more = page.entries.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        page.entries
            .truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = page.entries.last().map_or(since, |e| e.pos);
        let events = self.materialize(user, &page.entries).await?;
        Ok(SyncPage {
            events,
            next_cursor: cursor(user, next),
            has_more,
        })
    }

    /// Deletes the change feed's entries older than the retention, in chunks; returns how
    /// many went.
    pub async fn prune_feed(&self) -> ChatResult<u64> {
        const CHUNK: i64 = 10_000;
        let retention = i64::try_from(self.limits.feed_retention.as_millis()).unwrap_or(i64::MAX);
        let before = Millis(self.clock.now().0.saturating_sub(retention));
        let mut pruned = 0;
        loop {
            let n = self.store.prune_feed(before, CHUNK).await?;
            pruned += n;
            if n < CHUNK as u64 {
                return Ok(pruned);
            }
        }
    }

    /// One pass of the outbox relay: claims the rows due (changes whose events the process
    /// that made them did not get onto Redis within `after`: it died, or Redis was away) and
    /// publishes their events again from the feed, with each participant's unread counts as
    /// they are now. A row goes when Redis took its events (see `Event::outbox`), so a row
    /// whose relay dies too is taken again later. Returns how many rows it took.
    pub async fn relay_outbox(&self, after: std::time::Duration) -> ChatResult<usize> {
        let now = self.clock.now();
        let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let rows = self
            .store
            .claim_outbox(Millis(now.0.saturating_sub(after)), now, 100)
            .await?;
        for row in &rows {
            let mut events = Vec::new();
            for (user, pos) in &row.entries {
                let page = self.store.feed(user, pos - 1, 1).await?;
                let entries: Vec<FeedEntry> =
                    page.entries.into_iter().filter(|e| e.pos == *pos).collect();
                for mut e in self.materialize(user, &entries).await? {
                    if let Some(object) = e.data.as_object_mut() {
                        object.remove("cursor");
                    }
                    if let Some(mut event) = Event::to_user(user, e.event, &e.data) {
                        event.cursor = Some(e.cursor);
                        events.push(event);
                    }
                }
            }
            match self.store.unread_counts(&row.conversation_id).await {
                Ok(counts) => self.publish_unread(&row.conversation_id, &counts, None),
                Err(e) => tracing::warn!(error = %e, "relay: unread counts not announced"),
            }
            match events.last_mut() {
                Some(last) => last.outbox = Some(row.id),
                // Nothing left to say (pruned): the row has done its work.
                None => self.store.outbox_done(&[row.id]).await?,
            }
            self.events.publish(events);
        }
        if !rows.is_empty() {
            tracing::info!(
                changes = rows.len(),
                "outbox relay published changes left behind"
            );
        }
        Ok(rows.len())
    }

    /// Each entry's event as a socket gets it now. An entry whose subject is gone (never
    /// expected: messages and conversations are not removed) is left out; its cursor is
    /// still passed by `nextCursor`.
    async fn materialize(&self, user: &str, entries: &[FeedEntry]) -> ChatResult<Vec<SyncEvent>> {
        let message_ids: Vec<String> = entries
            .iter()
            .filter_map(|e| e.message_id.clone())
            .collect();
        let messages: HashMap<String, MessageRecord> = if message_ids.is_empty() {
            HashMap::new()
        } else {
            self.store
                .messages_by_id(&message_ids)
                .await?
                .into_iter()
                .map(|m| (m.id.clone(), m))
                .collect()
        };
        let mut participants: HashMap<&str, Vec<ParticipantRecord>> = HashMap::new();
        let mut views = HashMap::new();
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let conversation = entry.conversation_id.as_str();
            let data = match entry.kind {
                FeedKind::NewMessage | FeedKind::MessageEdited | FeedKind::MessageDeleted => {
                    let Some(record) = entry.message_id.as_ref().and_then(|id| messages.get(id))
                    else {
                        continue;
                    };
                    if !participants.contains_key(conversation) {
                        let ps = self.store.participants(conversation).await?;
                        participants.insert(conversation, ps);
                    }
                    let ps = participants
                        .get(conversation)
                        .map_or(&[][..], Vec::as_slice);
                    serde_json::to_value(to_message(record, ps))
                }
                FeedKind::MessagesRead => serde_json::to_value(MessagesRead {
                    conversation_id: entry.conversation_id.clone(),
                    user_id: entry.actor.clone().unwrap_or_default(),
                    last_read_seq: entry.seq.unwrap_or(0),
                    read_at: Millis(entry.at),
                }),
                FeedKind::ConversationUpdated => {
                    if !views.contains_key(conversation) {
                        let view = self.store.conversation(user, conversation).await?;
                        views.insert(conversation, view.map(to_conversation));
                    }
                    let Some(Some(view)) = views.get(conversation) else {
                        continue;
                    };
                    serde_json::to_value(view)
                }
            };
            let mut data = data.map_err(|e| ChatError::internal(&e))?;
            let cursor = cursor(user, entry.pos);
            if let Some(object) = data.as_object_mut() {
                object.insert("cursor".to_owned(), cursor.clone().into());
            }
            events.push(SyncEvent {
                cursor,
                event: entry.kind.as_str(),
                data,
            });
        }
        Ok(events)
    }
}

/// Whether entries after `since` are missing from `entries` (the feed's next ones, up to its
/// `head`): positions have no gaps, so one missing was pruned. Pruning goes by time, written
/// by several replicas' clocks, so a later position may go before an earlier one: the whole
/// page is checked, not only its first entry.
fn pruned_after(since: i64, head: i64, entries: &[crate::store::FeedEntry]) -> bool {
    since < head && (entries.is_empty() || !(since + 1..).zip(entries).all(|(pos, e)| e.pos == pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FeedEntry, FeedKind};

    fn at(pos: i64) -> FeedEntry {
        FeedEntry {
            pos,
            kind: FeedKind::NewMessage,
            conversation_id: "c".to_owned(),
            message_id: None,
            actor: None,
            seq: None,
            at: 0,
        }
    }

    #[test]
    fn a_gap_anywhere_in_the_page_means_pruned() {
        assert!(!pruned_after(3, 6, &[at(4), at(5), at(6)]));
        assert!(!pruned_after(6, 6, &[]), "at the end: nothing missing");
        assert!(pruned_after(3, 6, &[]), "everything after 3 is gone");
        assert!(pruned_after(3, 6, &[at(5), at(6)]), "the first is gone");
        assert!(
            pruned_after(3, 6, &[at(4), at(6)]),
            "one in the middle is gone"
        );
    }
}
