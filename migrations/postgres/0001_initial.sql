-- Initial schema, PostgreSQL (scaled mode). The SQLite twin is ../sqlite/0001_initial.sql;
-- both keep the same tables, columns and meaning so that one Rust row mapping fits both.
--
-- Times are bigints: milliseconds since the Unix epoch, UTC. Exact, sortable, and the same
-- Rust type (i64) on both backends. Ids are text (UUIDv7 for ours, platform ids for users).
-- Applied under sqlx's advisory lock, so replicas starting together migrate once.

create table conversations (
    id              text primary key,
    type            text not null check (type in ('property_inquiry', 'general', 'support')),
    created_by      text not null,
    property_id     text,
    title           text,
    metadata        text not null default '{}',   -- JSON object, kept as text like on SQLite
    -- Create-or-get key: a hash of (type, property, sorted participants) for conversations that
    -- must not be duplicated (property inquiries, two-person general chats); null otherwise.
    -- A unique key, not a read-then-write, is what makes concurrent creates return one row.
    dedupe_key      text unique,
    -- Per-conversation message counter. `update ... set last_seq = last_seq + 1` takes the row
    -- lock, so concurrent sends to one conversation serialise there and get 1, 2, 3 ... with
    -- no gap (a rollback undoes both) and no repeat; sends to other conversations don't wait.
    last_seq        bigint not null default 0,
    last_message_id text,
    last_message_at bigint,
    -- Ordering key of inboxes: the last message's time, or the creation time.
    activity_at     bigint not null,
    blocked         boolean not null default false,
    blocked_by      text,
    created_at      bigint not null,
    updated_at      bigint not null,
    -- Title and property metadata, for conversation search.
    search_doc      tsvector generated always as (
        to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(property_id, '') || ' ' || metadata)
    ) stored
);
create index conversations_search on conversations using gin (search_doc);

-- Per-participant state. Unread counts are derived from last_read_seq, never stored, so they
-- cannot drift under concurrent sends and reads.
create table participants (
    conversation_id  text not null references conversations (id) on delete cascade,
    user_id          text not null,
    role             text not null default 'member' check (role in ('creator', 'member')),
    last_read_seq    bigint not null default 0,
    last_read_at     bigint,
    archived         boolean not null default false,
    muted            boolean not null default false,
    -- Delete-for-me: messages with seq <= hidden_until_seq are gone for this user, and the
    -- conversation is out of their inbox until last_seq passes it.
    hidden_until_seq bigint,
    joined_at        bigint not null,
    primary key (conversation_id, user_id)
);
-- Inbox, stats and search start from the caller's participations.
create index participants_by_user on participants (user_id, conversation_id);

create table messages (
    id                text primary key,
    conversation_id   text not null references conversations (id) on delete cascade,
    seq               bigint not null,
    sender_id         text not null,
    type              text not null check (type in ('text', 'image', 'file', 'system', 'property_share')),
    content           text not null,
    reply_to          text,
    attachments       text not null default '[]',  -- JSON array, kept as text like on SQLite
    client_message_id text,
    edited_at         bigint,
    deleted_at        bigint,
    created_at        bigint not null,
    -- Full-text search over message text ('simple': no stemming, user text is multilingual).
    search_doc        tsvector generated always as (to_tsvector('simple', content)) stored,
    -- Pages by seq in both directions, unread counts (seq > last_read_seq) and the seq guard.
    unique (conversation_id, seq),
    -- Idempotent sends: the same clientMessageId from the same sender is one message.
    unique (sender_id, client_message_id)
);
-- messagesSent in stats.
create index messages_by_sender on messages (sender_id);
create index messages_search on messages using gin (search_doc);
