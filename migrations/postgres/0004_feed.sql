-- The change feed of contract v1.1 (`GET /api/v1/chat/sync`, `cursor` on socket events).
--
-- Each user's feed is numbered 1, 2, 3, … without gaps. A change takes its positions from
-- `feed_heads` with an update of the recipient's row, and holds that row's lock until it
-- commits: the next change for the same user waits, takes the next position, and commits
-- after. So a feed's positions become visible in their order, whichever replica wrote them,
-- and a reader that has seen position n never later finds a new n' < n. Rows are taken in
-- user order, after the conversations and participants a change locks, so that concurrent
-- changes never deadlock.
--
-- A feed row records what happened, not the payload: `sync` builds the payload when it is
-- read (the message or conversation as it is then; events are idempotent for the client).
-- Rows older than the retention (7 days by default) are pruned by `at`; a `since` whose next
-- position is gone answers `410 sync_expired`.

create table feed_heads (
    user_id text primary key,
    pos bigint not null
);

create table feed (
    user_id text not null,
    pos bigint not null,
    -- new_message, message_edited, message_deleted, messages_read, conversation_updated
    kind text not null,
    conversation_id text not null,
    -- message events: the message
    message_id text,
    -- messages_read: the reader and their new position
    actor text,
    seq bigint,
    -- when it happened, milliseconds since the epoch (messages_read: readAt)
    at bigint not null,
    primary key (user_id, pos)
);

create index feed_at on feed (at);
