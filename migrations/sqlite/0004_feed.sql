-- The change feed of contract v1.1. The PostgreSQL twin, ../postgres/0004_feed.sql, explains
-- it in full. Here a change takes its positions from feed_heads inside the one write
-- transaction SQLite allows at a time, so positions are visible in their order by nature.

create table feed_heads (
    user_id text primary key,
    pos integer not null
);

create table feed (
    user_id text not null,
    pos integer not null,
    kind text not null,
    conversation_id text not null,
    message_id text,
    actor text,
    seq integer,
    at integer not null,
    primary key (user_id, pos)
) without rowid;

create index feed_at on feed (at);
