//! The domain service: every rule of the chat, in one place. REST handlers and socket handlers
//! both call it, so a rule (who may send, what unread means, how long edits are allowed) has
//! exactly one implementation.
//!
//! Methods take the authenticated [`Caller`] and untrusted request values, parse them into
//! domain values, check who may do what, and let the [`Store`] do the atomic part.

mod announce;
mod sync;

use crate::config::Limits;
use crate::domain::{Caller, ClientMessageId, MessageBody, PropertyId, UserId};
use crate::error::{ChatError, ChatResult, ErrorCode};
use crate::events::{EventBus, names};
use crate::ratelimit::RateLimiter;
use crate::store::writer::BatchWriter;
use crate::store::{
    ConversationQuery, ConversationView, InsertOutcome, MessageRecord, NewConversation, NewMessage,
    ParticipantRecord, SeqRange, Store,
};
use crate::time::{Clock, Millis};
use crate::wire::{
    Attachment, Conversation, ConversationStatus, ConversationType, CreateConversationRequest,
    Message, MessagePreview, MessageStatus, MessageType, Page, ReadReceipt, ReadState,
    SendMessageRequest, Stats, UnreadTotal, UpdateConversationRequest,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Most attachments on one message.
const MAX_ATTACHMENTS: usize = 10;
/// Longest title, characters.
const MAX_TITLE_CHARS: usize = 200;
/// Largest metadata object, bytes of JSON.
const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Search: query length and the number of terms used.
const MAX_QUERY_CHARS: usize = 200;
const MAX_QUERY_TERMS: usize = 8;

#[derive(Clone)]
pub struct ChatService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limiter: Arc<dyn RateLimiter>,
    limits: Limits,
    /// Where client-visible changes are announced, after their commit.
    events: Arc<dyn EventBus>,
    /// Group commit for sends.
    writer: BatchWriter,
    /// Who is in each conversation. Membership never changes after a conversation is created
    /// (the contract has no way to add or remove a participant, and conversations are never
    /// deleted), so an entry can never be stale and needs no invalidation, on one replica or
    /// many. Only members are cached; a stranger's lookups always ask the database.
    members: moka::sync::Cache<String, Arc<[String]>>,
}

/// Most messages written in one transaction.
const MAX_BATCH: usize = 256;
/// Conversations whose membership is kept in memory.
const MEMBERS_CACHED: u64 = 200_000;

/// Filters of `GET /conversations`, unparsed.
#[derive(Debug, Clone, Default)]
pub struct ListConversations {
    pub archived: Option<bool>,
    pub kind: Option<ConversationType>,
    pub property_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// What a send did.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    /// False when the `clientMessageId` was already used: `message` is the first one.
    pub created: bool,
}

impl ChatService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limiter: Arc<dyn RateLimiter>,
        limits: Limits,
        events: Arc<dyn EventBus>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        // SQLite has one writer connection: a second worker would only queue behind it.
        // PostgreSQL overlaps the round trips of concurrent transactions.
        let workers = if store.backend() == "sqlite" { 1 } else { 2 };
        Self {
            writer: BatchWriter::start(
                Arc::clone(&store),
                MAX_BATCH,
                workers,
                metrics.messages_persisted,
            ),
            members: moka::sync::Cache::new(MEMBERS_CACHED),
            store,
            clock,
            limiter,
            limits,
            events,
        }
    }

    /// Until when a send may wait in the batching writer and its batch may take to commit: a
    /// little before the request's own deadline, so that a send answered `unavailable` was not
    /// written (a batch past it is rolled back; only a COMMIT already sent when the deadline
    /// passes may still land, and a retry with the same `clientMessageId` then finds it).
    fn write_deadline(&self) -> tokio::time::Instant {
        const MARGIN: std::time::Duration = std::time::Duration::from_millis(300);
        let deadline = crate::deadline::current()
            .unwrap_or_else(|| tokio::time::Instant::now() + self.limits.request_timeout);
        deadline
            .checked_sub(MARGIN)
            .unwrap_or_else(tokio::time::Instant::now)
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Create-or-get. Returns the conversation and whether it was created.
    pub async fn create_conversation(
        &self,
        caller: &Caller,
        req: CreateConversationRequest,
    ) -> ChatResult<(Conversation, bool)> {
        let mut participants = vec![caller.id.clone()];
        for (i, raw) in req.participant_ids.iter().enumerate() {
            let id = UserId::parse(raw, &format!("participantIds[{i}]"))?;
            if !participants.contains(&id) {
                participants.push(id);
            }
        }
        if participants.len() < 2 {
            return Err(ChatError::bad_request(
                "participantIds: name at least one participant besides the caller",
            ));
        }
        if participants.len() > self.limits.max_participants {
            return Err(ChatError::bad_request(format!(
                "participantIds: at most {} participants, the caller included",
                self.limits.max_participants
            )));
        }
        let property_id = req
            .property_id
            .as_deref()
            .map(PropertyId::parse)
            .transpose()?;
        let kind = req.kind.unwrap_or(if property_id.is_some() {
            ConversationType::PropertyInquiry
        } else {
            ConversationType::General
        });
        if kind == ConversationType::PropertyInquiry && property_id.is_none() {
            return Err(ChatError::bad_request(
                "propertyId: required for a property_inquiry",
            ));
        }
        let metadata = match req.metadata {
            None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
            Some(value @ serde_json::Value::Object(_)) => value,
            Some(_) => return Err(ChatError::bad_request("metadata: must be a JSON object")),
        };
        let metadata_text = metadata.to_string();
        if metadata_text.len() > MAX_METADATA_BYTES {
            return Err(ChatError::bad_request(format!(
                "metadata: at most {MAX_METADATA_BYTES} bytes of JSON"
            )));
        }
        let title = match req.title {
            Some(title) => Some(parse_title(&title)?),
            None => metadata
                .get("propertyTitle")
                .and_then(|t| t.as_str())
                .map(|t| t.trim().chars().take(MAX_TITLE_CHARS).collect::<String>())
                .filter(|t| !t.is_empty()),
        };
        // Validate the initial message before writing anything, so a bad one creates nothing.
        let initial = req
            .initial_message
            .as_deref()
            .map(|text| MessageBody::parse(text, self.limits.max_message_chars, false))
            .transpose()
            .map_err(|e| {
                ChatError::bad_request(e.detail.replacen("content", "initialMessage", 1))
            })?;

        participants.sort();
        let dedupe_key = dedupe_key(kind, property_id.as_ref(), &participants);
        let new = NewConversation {
            id: new_id(),
            kind: kind.as_str().to_owned(),
            created_by: caller.id.as_str().to_owned(),
            property_id: property_id.map(PropertyId::into_string),
            title,
            metadata: metadata_text,
            dedupe_key,
            participants: participants.iter().map(|p| p.as_str().to_owned()).collect(),
            now: self.clock.now(),
        };
        let (id, created, cursors) = self.store.create_conversation(&new).await?;
        let mut first = None;
        if let Some(body) = initial {
            let sent = match self.limit(caller).await {
                Ok(()) => match self.new_message(
                    caller,
                    &id,
                    MessageType::Text,
                    body,
                    None,
                    Vec::new(),
                    None,
                ) {
                    Ok(new) => self
                        .writer
                        .insert(new, self.write_deadline())
                        .await
                        .map_err(ChatError::from),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match sent.map(|w| (w.outcome, w.cursors)) {
                Ok((InsertOutcome::Created(record), first_cursors)) => {
                    first = Some((record, first_cursors));
                }
                Ok((InsertOutcome::Duplicate(_), _)) => {}
                // An existing conversation may be blocked: the question was not delivered.
                Ok((InsertOutcome::Blocked, _)) => return Err(blocked()),
                Err(e) => {
                    // The conversation exists now whatever became of the message.
                    if created {
                        self.announce_created(&id, cursors, None);
                    }
                    return Err(e);
                }
            }
        }
        if created {
            self.announce_created(&id, cursors, first);
        } else if let Some((record, first_cursors)) = first {
            let participants = self.store.participants(&id).await?;
            self.announce_new_message(&record, &participants, &first_cursors);
        }
        let conversation = self.get_conversation(caller, &id).await?;
        Ok((conversation, created))
    }

    /// `not_found` unless the caller is a participant of the conversation.
    pub async fn check_participant(
        &self,
        caller: &Caller,
        conversation_id: &str,
    ) -> ChatResult<()> {
        self.members(caller, conversation_id).await.map(drop)
    }

    /// The participants' ids of a conversation the caller is in (cached); `not_found`
    /// otherwise.
    pub async fn members(
        &self,
        caller: &Caller,
        conversation_id: &str,
    ) -> ChatResult<Arc<[String]>> {
        let is_member = |ids: &[String]| ids.iter().any(|u| u == caller.id.as_str());
        if let Some(ids) = self.members.get(conversation_id)
            && is_member(&ids)
        {
            return Ok(ids);
        }
        if !storable(conversation_id) {
            return Err(ChatError::not_found("conversation"));
        }
        let ids: Arc<[String]> = self
            .store
            .participants(conversation_id)
            .await?
            .into_iter()
            .map(|p| p.user_id)
            .collect();
        if !is_member(&ids) {
            return Err(ChatError::not_found("conversation"));
        }
        self.members
            .insert(conversation_id.to_owned(), Arc::clone(&ids));
        Ok(ids)
    }

    pub async fn get_conversation(&self, caller: &Caller, id: &str) -> ChatResult<Conversation> {
        if !storable(id) {
            return Err(ChatError::not_found("conversation"));
        }
        let view = self
            .store
            .conversation(caller.id.as_str(), id)
            .await?
            .ok_or_else(|| ChatError::not_found("conversation"))?;
        Ok(to_conversation(view))
    }

    pub async fn list_conversations(
        &self,
        caller: &Caller,
        filter: ListConversations,
    ) -> ChatResult<Page<Conversation>> {
        let property_id = filter
            .property_id
            .as_deref()
            .map(PropertyId::parse)
            .transpose()?
            .map(PropertyId::into_string);
        let query = ConversationQuery {
            archived: filter.archived,
            kind: filter.kind.map(|k| k.as_str().to_owned()),
            property_id,
            search: Vec::new(),
            before: filter.cursor.as_deref().map(parse_cursor).transpose()?,
            limit: page_limit(filter.limit, 20)?,
        };
        self.conversation_page(caller, query).await
    }

    /// Conversations of the caller whose title, property, participants or messages match
    /// every term of `q`.
    pub async fn search_conversations(
        &self,
        caller: &Caller,
        q: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> ChatResult<Page<Conversation>> {
        let q = q.map(str::trim).unwrap_or_default();
        if q.is_empty() || q.chars().count() > MAX_QUERY_CHARS || !storable(q) {
            return Err(ChatError::bad_request(format!(
                "q: 1 to {MAX_QUERY_CHARS} characters, no NUL"
            )));
        }
        let query = ConversationQuery {
            search: q
                .split_whitespace()
                .take(MAX_QUERY_TERMS)
                .map(str::to_owned)
                .collect(),
            before: cursor.map(parse_cursor).transpose()?,
            limit: page_limit(limit, 20)?,
            ..ConversationQuery::default()
        };
        self.conversation_page(caller, query).await
    }

    async fn conversation_page(
        &self,
        caller: &Caller,
        mut query: ConversationQuery,
    ) -> ChatResult<Page<Conversation>> {
        let limit = query.limit;
        // One more than asked tells whether a next page exists.
        query.limit += 1;
        let mut views = self
            .store
            .list_conversations(caller.id.as_str(), &query)
            .await?;
        let more = views.len() as i64 > limit;
        views.truncate(usize::try_from(limit).unwrap_or(0));
        let next_cursor = more
            .then(|| views.last())
            .flatten()
            .map(|v| format!("{}.{}", v.conversation.activity_at, v.conversation.id));
        Ok(Page {
            items: views.into_iter().map(to_conversation).collect(),
            next_cursor,
        })
    }

    pub async fn list_messages(
        &self,
        caller: &Caller,
        conversation_id: &str,
        limit: Option<i64>,
        before: Option<i64>,
        after: Option<i64>,
    ) -> ChatResult<Page<Message>> {
        let limit = page_limit(limit, 50)?;
        let range = match (before, after) {
            (Some(_), Some(_)) => {
                return Err(ChatError::bad_request(
                    "before, after: give one of them, not both",
                ));
            }
            (Some(b), None) if b < 1 => {
                return Err(ChatError::bad_request("before: must be a seq of 1 or more"));
            }
            (None, Some(a)) if a < 0 => {
                return Err(ChatError::bad_request("after: must be a seq of 0 or more"));
            }
            (Some(b), None) => SeqRange::Before(Some(b)),
            (None, Some(a)) => SeqRange::After(a),
            (None, None) => SeqRange::Before(None),
        };
        let participants = self.participants_for(caller, conversation_id).await?;
        let me = member(&participants, caller)?;
        let mut records = self
            .store
            .list_messages(conversation_id, me.hidden_seq(), range, limit + 1)
            .await?;
        let more = records.len() as i64 > limit;
        records.truncate(usize::try_from(limit).unwrap_or(0));
        let next_cursor = more
            .then(|| records.last())
            .flatten()
            .map(|m| m.seq.to_string());
        Ok(Page {
            items: records
                .iter()
                .map(|m| to_message(m, &participants))
                .collect(),
            next_cursor,
        })
    }

    /// Sends a message. Idempotent per sender and `clientMessageId`.
    pub async fn send_message(
        &self,
        caller: &Caller,
        conversation_id: &str,
        req: SendMessageRequest,
    ) -> ChatResult<Sent> {
        let kind = req.kind.unwrap_or(MessageType::Text);
        if kind == MessageType::System {
            return Err(ChatError::bad_request(
                "type: clients cannot send system messages",
            ));
        }
        let attachments = req.attachments.unwrap_or_default();
        validate_attachments(&attachments)?;
        let allow_empty =
            matches!(kind, MessageType::Image | MessageType::File) && !attachments.is_empty();
        let body = MessageBody::parse(&req.content, self.limits.max_message_chars, allow_empty)?;
        let client_id = req
            .client_message_id
            .as_deref()
            .map(ClientMessageId::parse)
            .transpose()?;

        let members = self.members(caller, conversation_id).await?;
        if let Some(reply_to) = &req.reply_to {
            let participants = self.participants_for(caller, conversation_id).await?;
            let me = member(&participants, caller)?;
            let target = if storable(reply_to) {
                self.store.message(reply_to).await?
            } else {
                None
            };
            if !target
                .is_some_and(|t| t.conversation_id == conversation_id && t.seq > me.hidden_seq())
            {
                return Err(ChatError::bad_request(
                    "replyTo: not a message of this conversation",
                ));
            }
        }
        if let Err(limited) = self.limit(caller).await {
            // A retry of an acknowledged send is answered even when the sender is limited.
            // (Otherwise the batch finds it: looking it up first would cost every send a
            // query.)
            if let Some(client_id) = &client_id
                && let Some(first) = self
                    .store
                    .message_by_client_id(caller.id.as_str(), client_id.as_str())
                    .await?
            {
                let participants = self.store.participants(conversation_id).await?;
                return self.duplicate(first, conversation_id, &participants);
            }
            return Err(limited);
        }
        let new = self.new_message(
            caller,
            conversation_id,
            kind,
            body,
            req.reply_to,
            attachments,
            client_id,
        )?;
        // On its own task: a caller that goes away (an HTTP client hanging up) must not take
        // the announcement of a committed message with it.
        let service = self.clone();
        let conversation_id = conversation_id.to_owned();
        let deadline = self.write_deadline();
        tokio::spawn(crate::trace::carry(async move {
            let written = service.writer.insert(new, deadline).await?;
            match written.outcome {
                InsertOutcome::Created(record) => {
                    let message = to_new_message(&record, &members);
                    service.announce_message(
                        names::NEW_MESSAGE,
                        &message,
                        members.iter().map(String::as_str),
                        &written.cursors,
                    );
                    if let Some(counts) = written.unread {
                        service.publish_unread(&conversation_id, &counts, None);
                    }
                    Ok(Sent {
                        message,
                        created: true,
                    })
                }
                InsertOutcome::Duplicate(first) => {
                    // A retry of an acknowledged send costs nothing.
                    service.limiter.refund(&first.sender_id).await;
                    let participants = service.store.participants(&conversation_id).await?;
                    service.duplicate(first, &conversation_id, &participants)
                }
                InsertOutcome::Blocked => Err(blocked()),
            }
        }))
        .await
        .map_err(|e| ChatError::internal(&e))?
    }

    fn duplicate(
        &self,
        first: MessageRecord,
        conversation_id: &str,
        participants: &[ParticipantRecord],
    ) -> ChatResult<Sent> {
        if first.conversation_id != conversation_id {
            return Err(ChatError::new(
                ErrorCode::Conflict,
                "clientMessageId: already used for a message in another conversation",
            ));
        }
        Ok(Sent {
            message: to_message(&first, participants),
            created: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn new_message(
        &self,
        caller: &Caller,
        conversation_id: &str,
        kind: MessageType,
        body: MessageBody,
        reply_to: Option<String>,
        attachments: Vec<Attachment>,
        client_id: Option<ClientMessageId>,
    ) -> ChatResult<NewMessage> {
        let attachments =
            serde_json::to_string(&attachments).map_err(|e| ChatError::internal(&e))?;
        Ok(NewMessage {
            id: new_id(),
            conversation_id: conversation_id.to_owned(),
            sender_id: caller.id.as_str().to_owned(),
            kind: kind.as_str().to_owned(),
            content: body.into_string(),
            reply_to,
            attachments,
            client_message_id: client_id.map(ClientMessageId::into_string),
            now: self.clock.now(),
        })
    }

    async fn limit(&self, caller: &Caller) -> ChatResult<()> {
        self.limiter
            .check(caller.id.as_str())
            .await
            .map_err(ChatError::rate_limited)
    }

    /// Moves the caller's read position (never backwards) and returns it with the unread count.
    pub async fn mark_read(
        &self,
        caller: &Caller,
        conversation_id: &str,
        up_to_seq: Option<i64>,
    ) -> ChatResult<ReadState> {
        if up_to_seq.is_some_and(|s| s < 0) {
            return Err(ChatError::bad_request("upToSeq: must be 0 or more"));
        }
        let members = self.members(caller, conversation_id).await?;
        let now = self.clock.now();
        let read = self
            .store
            .mark_read(conversation_id, caller.id.as_str(), up_to_seq, now)
            .await?;
        let state = ReadState {
            conversation_id: conversation_id.to_owned(),
            last_read_seq: read.last_read_seq,
            // Never read anything yet (position 0): there is no earlier read time to report.
            read_at: read.last_read_at.map_or(now, Millis),
            unread_count: read.unread_count,
        };
        if read.moved {
            self.announce_read(caller, &state, &members, &read.cursors);
        }
        Ok(state)
    }

    /// Archives or unarchives for the caller only.
    pub async fn set_archived(
        &self,
        caller: &Caller,
        conversation_id: &str,
        archived: bool,
    ) -> ChatResult<Conversation> {
        self.set_flags(caller, conversation_id, Some(archived), None)
            .await
    }

    /// Mutes or unmutes for the caller only.
    pub async fn set_muted(
        &self,
        caller: &Caller,
        conversation_id: &str,
        muted: bool,
    ) -> ChatResult<Conversation> {
        self.set_flags(caller, conversation_id, None, Some(muted))
            .await
    }

    async fn set_flags(
        &self,
        caller: &Caller,
        conversation_id: &str,
        archived: Option<bool>,
        muted: Option<bool>,
    ) -> ChatResult<Conversation> {
        let participants = self.participants_for(caller, conversation_id).await?;
        member(&participants, caller)?;
        let cursors = self
            .store
            .set_flags(
                conversation_id,
                caller.id.as_str(),
                archived,
                muted,
                self.clock.now(),
            )
            .await?;
        let conversation = self.get_conversation(caller, conversation_id).await?;
        self.announce_view(caller.id.as_str(), &conversation, &cursors);
        Ok(conversation)
    }

    /// Delete-for-me: hides the conversation and its history up to now for the caller.
    pub async fn delete_for_me(&self, caller: &Caller, conversation_id: &str) -> ChatResult<()> {
        let participants = self.participants_for(caller, conversation_id).await?;
        member(&participants, caller)?;
        let cursors = self
            .store
            .hide(conversation_id, caller.id.as_str(), self.clock.now())
            .await?;
        self.announce_conversation(conversation_id, Some(caller.id.as_str()), cursors);
        // Delete-for-me reads everything: the user's badge changes.
        self.announce_unread(conversation_id, Some(caller.id.as_str()));
        Ok(())
    }

    /// Renames, blocks or unblocks. Any participant may rename or block; only whoever blocked
    /// (or support staff) may unblock.
    pub async fn update_conversation(
        &self,
        caller: &Caller,
        conversation_id: &str,
        req: UpdateConversationRequest,
    ) -> ChatResult<Conversation> {
        let title = req.title.as_deref().map(parse_title).transpose()?;
        if !storable(conversation_id) {
            return Err(ChatError::not_found("conversation"));
        }
        let view = self
            .store
            .conversation(caller.id.as_str(), conversation_id)
            .await?
            .ok_or_else(|| ChatError::not_found("conversation"))?;
        if req.blocked == Some(false)
            && view.conversation.blocked
            && view.conversation.blocked_by.as_deref() != Some(caller.id.as_str())
            && !caller.role.is_staff()
        {
            return Err(ChatError::forbidden(
                "blocked: only the participant who blocked it, or support, can unblock",
            ));
        }
        // Blocking what is already blocked changes nothing: otherwise the other participant
        // could take the block over (becoming `blocked_by`) and then lift it.
        let blocked = req.blocked.filter(|&b| !(b && view.conversation.blocked));
        let changed = title
            .as_ref()
            .is_some_and(|t| view.conversation.title.as_ref() != Some(t))
            || blocked.is_some_and(|b| b != view.conversation.blocked);
        // Nothing changes, nothing is written: no feed entry, no event.
        if changed {
            let cursors = self
                .store
                .update_conversation(
                    conversation_id,
                    title.as_deref(),
                    blocked.map(|b| (b, caller.id.as_str())),
                    self.clock.now(),
                )
                .await?;
            self.announce_conversation(conversation_id, None, cursors);
        }
        self.get_conversation(caller, conversation_id).await
    }

    /// Edits the caller's own message within the edit window.
    pub async fn edit_message(
        &self,
        caller: &Caller,
        message_id: &str,
        content: &str,
    ) -> ChatResult<Message> {
        let (message, participants) = self.own_message(caller, message_id).await?;
        if message.deleted_at.is_some() {
            return Err(ChatError::new(
                ErrorCode::Conflict,
                "message: deleted messages cannot be edited",
            ));
        }
        let kind = MessageType::from_db(&message.kind);
        let allow_empty =
            matches!(kind, MessageType::Image | MessageType::File) && message.attachments != "[]";
        let body = MessageBody::parse(content, self.limits.max_message_chars, allow_empty)?;
        let (edited, cursors) = self
            .store
            .edit_message(message_id, body.as_str(), self.clock.now())
            .await?
            .ok_or_else(|| {
                ChatError::new(ErrorCode::Conflict, "message: deleted while being edited")
            })?;
        let message = to_message(&edited, &participants);
        self.announce_message(
            names::MESSAGE_EDITED,
            &message,
            participants.iter().map(|p| p.user_id.as_str()),
            &cursors,
        );
        Ok(message)
    }

    /// Deletes the caller's own message within the edit window. Deleting twice is harmless.
    pub async fn delete_message(&self, caller: &Caller, message_id: &str) -> ChatResult<Message> {
        let (before, participants) = self.own_message(caller, message_id).await?;
        let (deleted, cursors) = self
            .store
            .delete_message(message_id, self.clock.now())
            .await?
            .ok_or_else(|| ChatError::not_found("message"))?;
        let message = to_message(&deleted, &participants);
        // Deleted by this call (not before it, not by a concurrent one): announced once.
        if before.deleted_at.is_none() && !cursors.is_empty() {
            self.announce_message(
                names::MESSAGE_DELETED,
                &message,
                participants.iter().map(|p| p.user_id.as_str()),
                &cursors,
            );
            // A deleted message no longer counts as unread.
            self.announce_unread(&deleted.conversation_id, None);
        }
        Ok(message)
    }

    /// A message the caller sent, still inside the edit window.
    async fn own_message(
        &self,
        caller: &Caller,
        message_id: &str,
    ) -> ChatResult<(MessageRecord, Vec<ParticipantRecord>)> {
        if !storable(message_id) {
            return Err(ChatError::not_found("message"));
        }
        let message = self
            .store
            .message(message_id)
            .await?
            .ok_or_else(|| ChatError::not_found("message"))?;
        let participants = self.store.participants(&message.conversation_id).await?;
        let visible = participants
            .iter()
            .any(|p| p.user_id == caller.id.as_str() && message.seq > p.hidden_seq());
        if !visible {
            return Err(ChatError::not_found("message"));
        }
        if message.sender_id != caller.id.as_str() {
            return Err(ChatError::forbidden(
                "only the sender can edit or delete a message",
            ));
        }
        let window = i64::try_from(self.limits.edit_window.as_millis()).unwrap_or(i64::MAX);
        if self.clock.now().0.saturating_sub(message.created_at) > window {
            return Err(ChatError::new(
                ErrorCode::EditWindowPassed,
                format!(
                    "messages can be edited or deleted for {} s after sending",
                    self.limits.edit_window.as_secs()
                ),
            ));
        }
        Ok((message, participants))
    }

    pub async fn unread_total(&self, caller: &Caller) -> ChatResult<UnreadTotal> {
        Ok(UnreadTotal {
            total_unread: self.store.unread_total(caller.id.as_str()).await?,
        })
    }

    pub async fn stats(&self, caller: &Caller) -> ChatResult<Stats> {
        let record = self.store.stats(caller.id.as_str()).await?;
        let by_type = ConversationType::ALL
            .iter()
            .map(|k| {
                let n = record
                    .by_type
                    .iter()
                    .find(|(t, _)| t == k.as_str())
                    .map_or(0, |(_, n)| *n);
                (k.as_str().to_owned(), n)
            })
            .collect::<std::collections::BTreeMap<_, _>>();
        Ok(Stats {
            total_conversations: record.total,
            active_conversations: record.total - record.archived,
            archived_conversations: record.archived,
            unread_conversations: record.unread_conversations,
            unread_messages: record.unread_messages,
            messages_sent: record.messages_sent,
            messages_received: record.messages_received,
            property_inquiries: by_type
                .get(ConversationType::PropertyInquiry.as_str())
                .copied()
                .unwrap_or(0),
            by_type,
        })
    }

    /// Participants of a conversation the caller is in; `not_found` otherwise.
    async fn participants_for(
        &self,
        caller: &Caller,
        conversation_id: &str,
    ) -> ChatResult<Vec<ParticipantRecord>> {
        if !storable(conversation_id) {
            return Err(ChatError::not_found("conversation"));
        }
        let participants = self.store.participants(conversation_id).await?;
        member(&participants, caller)?;
        Ok(participants)
    }
}

fn blocked() -> ChatError {
    ChatError::new(
        ErrorCode::Blocked,
        "this conversation is blocked: nobody can send",
    )
}

/// Whether `id` may name a stored row at all. No id contains NUL (PostgreSQL text cannot even
/// hold one), so such an id names nothing: it is answered without asking the database, which
/// would otherwise fail the query.
fn storable(id: &str) -> bool {
    !id.contains('\0')
}

fn member<'a>(
    participants: &'a [ParticipantRecord],
    caller: &Caller,
) -> ChatResult<&'a ParticipantRecord> {
    participants
        .iter()
        .find(|p| p.user_id == caller.id.as_str())
        .ok_or_else(|| ChatError::not_found("conversation"))
}

/// UUIDv7: unique and sortable by creation time.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn parse_title(raw: &str) -> ChatResult<String> {
    let title = raw.trim();
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS || !storable(title) {
        return Err(ChatError::bad_request(format!(
            "title: 1 to {MAX_TITLE_CHARS} characters, no NUL"
        )));
    }
    Ok(title.to_owned())
}

fn page_limit(limit: Option<i64>, default: i64) -> ChatResult<i64> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(ChatError::bad_request("limit: must be between 1 and 100")),
    }
}

/// Conversation cursors are `<activity ms>.<id>` of the last item of the previous page:
/// opaque to clients, stable under inserts (keyset, not offset).
fn parse_cursor(cursor: &str) -> ChatResult<(i64, String)> {
    cursor
        .split_once('.')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
        .filter(|(_, id)| !id.is_empty() && storable(id))
        .ok_or_else(|| ChatError::bad_request("cursor: not a cursor this service returned"))
}

/// The create-or-get key, or `None` for conversations that may be duplicated (groups and
/// support threads). Hashed so that 50 participants fit any index.
fn dedupe_key(
    kind: ConversationType,
    property: Option<&PropertyId>,
    sorted_participants: &[UserId],
) -> Option<String> {
    let scope = match kind {
        ConversationType::PropertyInquiry => property?.as_str(),
        ConversationType::General if sorted_participants.len() == 2 => "",
        _ => return None,
    };
    let mut hasher = Sha256::new();
    hasher.update(kind.as_str());
    hasher.update([0]);
    hasher.update(scope);
    for p in sorted_participants {
        hasher.update([0]);
        hasher.update(p.as_str());
    }
    Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

fn validate_attachments(attachments: &[Attachment]) -> ChatResult<()> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ChatError::bad_request(format!(
            "attachments: at most {MAX_ATTACHMENTS}"
        )));
    }
    for (i, a) in attachments.iter().enumerate() {
        if !a.url.starts_with("https://") || a.url.len() > 2048 || a.url.len() <= 8 {
            return Err(ChatError::bad_request(format!(
                "attachments[{i}].url: an https:// URL of at most 2048 characters"
            )));
        }
        if a.filename.trim().is_empty() || a.filename.chars().count() > 255 {
            return Err(ChatError::bad_request(format!(
                "attachments[{i}].filename: 1 to 255 characters"
            )));
        }
        if a.mime_type
            .as_ref()
            .is_some_and(|m| m.is_empty() || m.len() > 255)
        {
            return Err(ChatError::bad_request(format!(
                "attachments[{i}].mimeType: 1 to 255 characters"
            )));
        }
    }
    Ok(())
}

/// The wire message, with `readBy`/`status` derived from the participants' read positions.
pub fn to_message(record: &MessageRecord, participants: &[ParticipantRecord]) -> Message {
    message_with(
        record,
        participants
            .iter()
            .map(|p| (p.user_id.as_str(), p.last_read_seq, p.last_read_at)),
    )
}

/// The wire message just created: nobody but its sender has read it yet.
fn to_new_message(record: &MessageRecord, members: &[String]) -> Message {
    message_with(record, members.iter().map(|u| (u.as_str(), 0, None)))
}

/// The wire message, from each participant's `(id, read position, read time)`.
fn message_with<'a>(
    record: &MessageRecord,
    participants: impl Iterator<Item = (&'a str, i64, Option<i64>)>,
) -> Message {
    let participants: Vec<(&str, i64, Option<i64>)> = participants.collect();
    let others: Vec<&(&str, i64, Option<i64>)> = participants
        .iter()
        .filter(|(user, _, _)| *user != record.sender_id)
        .collect();
    let read_by: Vec<ReadReceipt> = others
        .iter()
        .filter(|(_, read, _)| *read >= record.seq)
        .map(|(user, _, at)| ReadReceipt {
            user_id: (*user).to_owned(),
            read_at: Millis(at.unwrap_or(record.created_at)),
        })
        .collect();
    let status = if !others.is_empty() && read_by.len() == others.len() {
        MessageStatus::Read
    } else {
        MessageStatus::Sent
    };
    let attachments = serde_json::from_str(&record.attachments).unwrap_or_else(|e| {
        tracing::warn!(message = %record.id, error = %e, "unreadable attachments");
        Vec::new()
    });
    Message {
        id: record.id.clone(),
        conversation_id: record.conversation_id.clone(),
        seq: record.seq,
        sender_id: record.sender_id.clone(),
        recipient_id: (participants.len() == 2)
            .then(|| others.first().map(|(user, _, _)| (*user).to_owned()))
            .flatten(),
        kind: MessageType::from_db(&record.kind),
        content: record.content.clone(),
        status,
        read_by,
        reply_to: record.reply_to.clone(),
        attachments,
        client_message_id: record.client_message_id.clone(),
        is_edited: record.edited_at.is_some(),
        edited_at: record.edited_at.map(Millis),
        is_deleted: record.deleted_at.is_some(),
        deleted_at: record.deleted_at.map(Millis),
        created_at: Millis(record.created_at),
    }
}

/// The wire conversation as the viewer sees it.
pub fn to_conversation(view: ConversationView) -> Conversation {
    let c = view.conversation;
    let status = if c.blocked {
        ConversationStatus::Blocked
    } else if view.me.archived {
        ConversationStatus::Archived
    } else {
        ConversationStatus::Active
    };
    let metadata = serde_json::from_str(&c.metadata).unwrap_or_else(|e| {
        tracing::warn!(conversation = %c.id, error = %e, "unreadable metadata");
        serde_json::Value::Object(Default::default())
    });
    Conversation {
        kind: ConversationType::from_db(&c.kind),
        status,
        participants: view.participants.into_iter().map(|p| p.user_id).collect(),
        created_by: c.created_by,
        property_id: c.property_id,
        title: c.title,
        metadata,
        last_message: view.last_message.map(|m| MessagePreview {
            id: m.id,
            seq: m.seq,
            sender_id: m.sender_id,
            kind: MessageType::from_db(&m.kind),
            content: m.content,
            is_deleted: m.deleted_at.is_some(),
            created_at: Millis(m.created_at),
        }),
        last_message_at: c.last_message_at.map(Millis),
        last_seq: c.last_seq,
        unread_count: view.unread_count,
        archived: view.me.archived,
        muted: view.me.muted,
        created_at: Millis(c.created_at),
        updated_at: Millis(c.updated_at),
        id: c.id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(ids: &[&str]) -> Vec<UserId> {
        ids.iter()
            .map(|i| UserId::parse(i, "t").expect("valid"))
            .collect()
    }

    #[test]
    fn dedupe_keys_follow_the_contract() {
        let pair = users(&["a", "b"]);
        let trio = users(&["a", "b", "c"]);
        let p1 = PropertyId::parse("p1").expect("valid");
        let p2 = PropertyId::parse("p2").expect("valid");
        let general = dedupe_key(ConversationType::General, None, &pair);
        assert!(general.is_some());
        assert_eq!(general, dedupe_key(ConversationType::General, None, &pair));
        assert_eq!(dedupe_key(ConversationType::General, None, &trio), None);
        assert_eq!(dedupe_key(ConversationType::Support, None, &pair), None);
        let inquiry = dedupe_key(ConversationType::PropertyInquiry, Some(&p1), &pair);
        assert_ne!(
            inquiry,
            dedupe_key(ConversationType::PropertyInquiry, Some(&p2), &pair)
        );
        assert_ne!(inquiry, general);
        assert!(dedupe_key(ConversationType::PropertyInquiry, Some(&p1), &trio).is_some());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_a_bad_request() {
        assert_eq!(parse_cursor("17.abc"), Ok((17, "abc".to_owned())));
        for bad in ["", "abc", "x.y", "12.", ".id"] {
            assert_eq!(
                parse_cursor(bad).map_err(|e| e.code),
                Err(ErrorCode::BadRequest),
                "{bad}"
            );
        }
    }
}
