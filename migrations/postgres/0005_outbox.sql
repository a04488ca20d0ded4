-- The transactional outbox (scaled mode): a change that makes feed events records, in its
-- own transaction, one row naming its entries in its recipients' feeds. The process that
-- made the change publishes the events to Redis at once and deletes the row when Redis took
-- them. A relay in every process publishes, from the feed, the rows left behind: a process
-- that died between commit and publish, or events that waited out a Redis outage longer than
-- the in-memory queue. Subscribers drop a second copy by event id, clients by message id.

create table outbox (
    id bigserial primary key,
    -- milliseconds; moved forward when a relay claims the row, so that one relay at a time
    -- publishes it, and again only if it is still there a while later
    due_at bigint not null,
    conversation_id text not null,
    -- the change's feed entries, as a JSON array of [user, position]
    entries text not null
);

create index outbox_due on outbox (due_at);
