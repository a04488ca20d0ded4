-- The transactional outbox; the PostgreSQL twin, ../postgres/0005_outbox.sql, explains it.
-- Written only when the process publishes to Redis (a single gateway on SQLite with Redis);
-- the embedded default delivers in process and has no use for it.

create table outbox (
    id integer primary key autoincrement,
    due_at integer not null,
    conversation_id text not null,
    entries text not null
);

create index outbox_due on outbox (due_at);
