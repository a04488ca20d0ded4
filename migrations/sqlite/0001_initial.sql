-- Initial schema, SQLite (embedded default). The PostgreSQL twin is ../postgres/0001_initial.sql;
-- both keep the same tables, columns and meaning so that one Rust row mapping fits both.
--
-- Times are integers: milliseconds since the Unix epoch, UTC. Exact, sortable, and the same
-- Rust type (i64) on both backends. Ids are text (UUIDv7 for ours, platform ids for users).

create table conversations (
    id              text primary key,
    type            text not null check (type in ('property_inquiry', 'general', 'support')),
    created_by      text not null,
    property_id     text,
    title           text,
    metadata        text not null default '{}',   -- JSON object
    -- Create-or-get key: a hash of (type, property, sorted participants) for conversations that
    -- must not be duplicated (property inquiries, two-person general chats); null otherwise.
    -- A unique key, not a read-then-write, is what makes concurrent creates return one row.
    dedupe_key      text unique,
    -- Per-conversation message counter. Incremented in the same transaction that inserts the
    -- message, so seq is 1, 2, 3 ... with no gap (a rollback undoes both) and no repeat.
    last_seq        integer not null default 0,
    last_message_id text,
    last_message_at integer,
    -- Ordering key of inboxes: the last message's time, or the creation time.
    activity_at     integer not null,
    blocked         integer not null default 0,
    blocked_by      text,
    created_at      integer not null,
    updated_at      integer not null
);

-- Per-participant state. Unread counts are derived from last_read_seq, never stored, so they
-- cannot drift under concurrent sends and reads.
create table participants (
    conversation_id  text not null references conversations (id) on delete cascade,
    user_id          text not null,
    role             text not null default 'member' check (role in ('creator', 'member')),
    last_read_seq    integer not null default 0,
    last_read_at     integer,
    archived         integer not null default 0,
    muted            integer not null default 0,
    -- Delete-for-me: messages with seq <= hidden_until_seq are gone for this user, and the
    -- conversation is out of their inbox until last_seq passes it.
    hidden_until_seq integer,
    joined_at        integer not null,
    primary key (conversation_id, user_id)
);
-- Inbox, stats and search start from the caller's participations.
create index participants_by_user on participants (user_id, conversation_id);

create table messages (
    id                text primary key,
    conversation_id   text not null references conversations (id) on delete cascade,
    seq               integer not null,
    sender_id         text not null,
    type              text not null check (type in ('text', 'image', 'file', 'system', 'property_share')),
    content           text not null,
    reply_to          text,
    attachments       text not null default '[]',  -- JSON array
    client_message_id text,
    edited_at         integer,
    deleted_at        integer,
    created_at        integer not null,
    -- Pages by seq in both directions, unread counts (seq > last_read_seq) and the seq guard.
    unique (conversation_id, seq),
    -- Idempotent sends: the same clientMessageId from the same sender is one message.
    unique (sender_id, client_message_id)
);
-- messagesSent in stats.
create index messages_by_sender on messages (sender_id);

-- Full-text search over message text: an external-content FTS5 index kept in step by triggers.
create virtual table messages_fts using fts5 (
    content,
    content = 'messages',
    content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);

create trigger messages_fts_insert after insert on messages begin
    insert into messages_fts (rowid, content) values (new.rowid, new.content);
end;

create trigger messages_fts_delete after delete on messages begin
    insert into messages_fts (messages_fts, rowid, content) values ('delete', old.rowid, old.content);
end;

create trigger messages_fts_update after update of content on messages begin
    insert into messages_fts (messages_fts, rowid, content) values ('delete', old.rowid, old.content);
    insert into messages_fts (rowid, content) values (new.rowid, new.content);
end;
