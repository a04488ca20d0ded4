-- Reads that cost the page, not the user's history.
--
-- Until now unread counts were derived on every read (count the messages after each read
-- position), the inbox sorted all of a user's conversations, and /stats scanned all of their
-- messages. For a landlord in 10,000 conversations each of those took hundreds of
-- milliseconds. This migration stores what those reads need, and keeps it exact:
--
-- * participants carries the counters of its own row (unread, sent, received), the
--   conversation's activity time and type, and whether it is hidden (delete-for-me). The
--   store updates them in the same transaction as the change that moves them (a send, a
--   read, a delete, a hide), so they are as exact as the rows they summarise.
-- * user_stats holds each user's sums over their participations, maintained by the trigger
--   below from every change of a participants row: no code path can forget it.
-- * the inbox walks an index in (user, activity) order and stops after the page.

alter table participants
    -- Messages after last_read_seq that others sent and did not delete.
    add column unread_count      bigint  not null default 0,
    -- Messages this participant sent here and did not delete.
    add column sent_count        bigint  not null default 0,
    -- Messages others sent here, not deleted, after hidden_until_seq.
    add column received_count    bigint  not null default 0,
    -- Copy of conversations.activity_at: the inbox order, in the index below.
    add column activity_at       bigint  not null default 0,
    -- Delete-for-me in effect: last_seq <= hidden_until_seq. Cleared by the next message.
    add column hidden            boolean not null default false,
    -- Copy of conversations.type, which never changes: /stats counts by it.
    add column conversation_type text    not null default 'general';

update participants p set
    conversation_type = c.type,
    activity_at = c.activity_at,
    hidden = p.hidden_until_seq is not null and c.last_seq <= p.hidden_until_seq,
    unread_count = (select count(*) from messages m where m.conversation_id = p.conversation_id
        and m.seq > p.last_read_seq and m.sender_id <> p.user_id and m.deleted_at is null),
    sent_count = (select count(*) from messages m where m.conversation_id = p.conversation_id
        and m.sender_id = p.user_id and m.deleted_at is null),
    received_count = (select count(*) from messages m where m.conversation_id = p.conversation_id
        and m.sender_id <> p.user_id and m.deleted_at is null
        and m.seq > coalesce(p.hidden_until_seq, 0))
from conversations c where c.id = p.conversation_id;

-- Inbox pages: keyset order (activity_at desc, conversation_id desc), with and without the
-- archived filter (status=active|archived), each read as far as the page and no further.
create index participants_inbox on participants (user_id, activity_at desc, conversation_id desc);
create index participants_inbox_by_status
    on participants (user_id, archived, activity_at desc, conversation_id desc);

-- messagesSent is now participants.sent_count: this index only slowed inserts.
drop index if exists messages_by_sender;

-- One row per user: the sums /stats and totalUnread need, over the conversations they see.
create table user_stats (
    user_id              text primary key,
    conversations        bigint not null default 0,  -- visible (not hidden)
    archived             bigint not null default 0,  -- visible and archived
    unread_conversations bigint not null default 0,  -- visible with unread_count > 0
    unread_messages      bigint not null default 0,  -- sum of unread_count (0 when hidden)
    messages_sent        bigint not null default 0,
    messages_received    bigint not null default 0,
    property_inquiries   bigint not null default 0,  -- visible, by type
    general              bigint not null default 0,
    support              bigint not null default 0
);

insert into user_stats
select user_id,
    count(*) filter (where not hidden),
    count(*) filter (where not hidden and archived),
    count(*) filter (where not hidden and unread_count > 0),
    coalesce(sum(unread_count), 0),
    coalesce(sum(sent_count), 0),
    coalesce(sum(received_count), 0),
    count(*) filter (where not hidden and conversation_type = 'property_inquiry'),
    count(*) filter (where not hidden and conversation_type = 'general'),
    count(*) filter (where not hidden and conversation_type = 'support')
from participants group by user_id;

-- The signed contribution of one version of a participants row to its user's sums.
create function user_stats_of(
    user_id text, hidden boolean, archived boolean, unread_count bigint, sent_count bigint,
    received_count bigint, conversation_type text, sign bigint
) returns user_stats language sql immutable as $$
    select user_id,
        sign * (not hidden)::int,
        sign * (not hidden and archived)::int,
        sign * (not hidden and unread_count > 0)::int,
        sign * unread_count,
        sign * sent_count,
        sign * received_count,
        sign * (not hidden and conversation_type = 'property_inquiry')::int,
        sign * (not hidden and conversation_type = 'general')::int,
        sign * (not hidden and conversation_type = 'support')::int
$$;

-- Adds signed contributions, one upsert per user, in user order.
create function user_stats_add(deltas user_stats[]) returns void language sql as $$
    insert into user_stats as s
    select d.user_id, sum(d.conversations), sum(d.archived), sum(d.unread_conversations),
        sum(d.unread_messages), sum(d.messages_sent), sum(d.messages_received),
        sum(d.property_inquiries), sum(d.general), sum(d.support)
    from unnest(deltas) d
    group by d.user_id
    having bool_or(d.conversations <> 0 or d.archived <> 0 or d.unread_conversations <> 0
        or d.unread_messages <> 0 or d.messages_sent <> 0 or d.messages_received <> 0
        or d.property_inquiries <> 0 or d.general <> 0 or d.support <> 0)
    order by d.user_id
    on conflict (user_id) do update set
        conversations = s.conversations + excluded.conversations,
        archived = s.archived + excluded.archived,
        unread_conversations = s.unread_conversations + excluded.unread_conversations,
        unread_messages = s.unread_messages + excluded.unread_messages,
        messages_sent = s.messages_sent + excluded.messages_sent,
        messages_received = s.messages_received + excluded.messages_received,
        property_inquiries = s.property_inquiries + excluded.property_inquiries,
        general = s.general + excluded.general,
        support = s.support + excluded.support
$$;

-- Applies the difference between the old and new versions of the changed participants rows.
-- Statement-level with transition tables rather than per row: a batch of sends changes many
-- rows in one statement, and this folds them into one upsert per user, in user order.
-- Locking user_stats rows in one global order (after the conversations and participants rows
-- the statement already holds) is what keeps two concurrent batches from deadlocking.
create function user_stats_apply() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        perform user_stats_add(array(
            select user_stats_of(n.user_id, n.hidden, n.archived, n.unread_count, n.sent_count,
                n.received_count, n.conversation_type, 1) from new_rows n));
    elsif tg_op = 'UPDATE' then
        perform user_stats_add(array(
            select user_stats_of(n.user_id, n.hidden, n.archived, n.unread_count, n.sent_count,
                n.received_count, n.conversation_type, 1) from new_rows n
            union all
            select user_stats_of(o.user_id, o.hidden, o.archived, o.unread_count, o.sent_count,
                o.received_count, o.conversation_type, -1) from old_rows o));
    else
        perform user_stats_add(array(
            select user_stats_of(o.user_id, o.hidden, o.archived, o.unread_count, o.sent_count,
                o.received_count, o.conversation_type, -1) from old_rows o));
    end if;
    return null;
end $$;

-- A trigger with transition tables may name one event only, hence three.
create trigger participants_stats_insert after insert on participants
    referencing new table as new_rows for each statement execute function user_stats_apply();
create trigger participants_stats_update after update on participants
    referencing old table as old_rows new table as new_rows
    for each statement execute function user_stats_apply();
create trigger participants_stats_delete after delete on participants
    referencing old table as old_rows for each statement execute function user_stats_apply();
