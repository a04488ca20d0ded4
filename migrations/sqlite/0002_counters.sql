-- Reads that cost the page, not the user's history. The PostgreSQL twin,
-- ../postgres/0003_counters.sql, explains the design; in short:
--
-- * participants carries the counters of its own row (unread, sent, received), the
--   conversation's activity time and type, and whether it is hidden (delete-for-me); the store
--   moves them in the same transaction as the change that moves them;
-- * user_stats holds each user's sums over their participations, maintained by the triggers
--   below from every change of a participants row;
-- * the inbox walks an index in (user, activity) order and stops after the page.
--
-- SQLite has one writer at a time, so row-level triggers cannot deadlock here.

alter table participants add column unread_count integer not null default 0;
alter table participants add column sent_count integer not null default 0;
alter table participants add column received_count integer not null default 0;
alter table participants add column activity_at integer not null default 0;
alter table participants add column hidden integer not null default 0;
alter table participants add column conversation_type text not null default 'general';

update participants set
    conversation_type = (select c.type from conversations c where c.id = participants.conversation_id),
    activity_at = (select c.activity_at from conversations c where c.id = participants.conversation_id),
    hidden = hidden_until_seq is not null and (select c.last_seq from conversations c
        where c.id = participants.conversation_id) <= hidden_until_seq,
    unread_count = (select count(*) from messages m where m.conversation_id = participants.conversation_id
        and m.seq > participants.last_read_seq and m.sender_id <> participants.user_id
        and m.deleted_at is null),
    sent_count = (select count(*) from messages m where m.conversation_id = participants.conversation_id
        and m.sender_id = participants.user_id and m.deleted_at is null),
    received_count = (select count(*) from messages m where m.conversation_id = participants.conversation_id
        and m.sender_id <> participants.user_id and m.deleted_at is null
        and m.seq > coalesce(participants.hidden_until_seq, 0));

create index participants_inbox on participants (user_id, activity_at desc, conversation_id desc);
create index participants_inbox_by_status
    on participants (user_id, archived, activity_at desc, conversation_id desc);

drop index if exists messages_by_sender;

create table user_stats (
    user_id              text primary key,
    conversations        integer not null default 0,
    archived             integer not null default 0,
    unread_conversations integer not null default 0,
    unread_messages      integer not null default 0,
    messages_sent        integer not null default 0,
    messages_received    integer not null default 0,
    property_inquiries   integer not null default 0,
    general              integer not null default 0,
    support              integer not null default 0
);

insert into user_stats
select user_id,
    sum(not hidden),
    sum(not hidden and archived),
    sum(not hidden and unread_count > 0),
    sum(unread_count),
    sum(sent_count),
    sum(received_count),
    sum(not hidden and conversation_type = 'property_inquiry'),
    sum(not hidden and conversation_type = 'general'),
    sum(not hidden and conversation_type = 'support')
from participants group by user_id;

create trigger participants_stats_insert after insert on participants begin
    insert into user_stats (user_id, conversations, archived, unread_conversations,
        unread_messages, messages_sent, messages_received, property_inquiries, general, support)
    values (new.user_id, not new.hidden, not new.hidden and new.archived,
        not new.hidden and new.unread_count > 0, new.unread_count, new.sent_count,
        new.received_count, not new.hidden and new.conversation_type = 'property_inquiry',
        not new.hidden and new.conversation_type = 'general',
        not new.hidden and new.conversation_type = 'support')
    on conflict (user_id) do update set
        conversations = conversations + excluded.conversations,
        archived = archived + excluded.archived,
        unread_conversations = unread_conversations + excluded.unread_conversations,
        unread_messages = unread_messages + excluded.unread_messages,
        messages_sent = messages_sent + excluded.messages_sent,
        messages_received = messages_received + excluded.messages_received,
        property_inquiries = property_inquiries + excluded.property_inquiries,
        general = general + excluded.general,
        support = support + excluded.support;
end;

-- Only changes of the columns the sums depend on (not read positions, mute, activity).
create trigger participants_stats_update after update of hidden, archived, unread_count,
    sent_count, received_count on participants
when old.hidden <> new.hidden or old.archived <> new.archived
    or old.unread_count <> new.unread_count or old.sent_count <> new.sent_count
    or old.received_count <> new.received_count
begin
    update user_stats set
        conversations = conversations + (not new.hidden) - (not old.hidden),
        archived = archived + (not new.hidden and new.archived) - (not old.hidden and old.archived),
        unread_conversations = unread_conversations + (not new.hidden and new.unread_count > 0)
            - (not old.hidden and old.unread_count > 0),
        unread_messages = unread_messages + new.unread_count - old.unread_count,
        messages_sent = messages_sent + new.sent_count - old.sent_count,
        messages_received = messages_received + new.received_count - old.received_count,
        property_inquiries = property_inquiries
            + (not new.hidden and new.conversation_type = 'property_inquiry')
            - (not old.hidden and old.conversation_type = 'property_inquiry'),
        general = general + (not new.hidden and new.conversation_type = 'general')
            - (not old.hidden and old.conversation_type = 'general'),
        support = support + (not new.hidden and new.conversation_type = 'support')
            - (not old.hidden and old.conversation_type = 'support')
    where user_id = new.user_id;
end;

create trigger participants_stats_delete after delete on participants begin
    update user_stats set
        conversations = conversations - (not old.hidden),
        archived = archived - (not old.hidden and old.archived),
        unread_conversations = unread_conversations - (not old.hidden and old.unread_count > 0),
        unread_messages = unread_messages - old.unread_count,
        messages_sent = messages_sent - old.sent_count,
        messages_received = messages_received - old.received_count,
        property_inquiries = property_inquiries - (not old.hidden and old.conversation_type = 'property_inquiry'),
        general = general - (not old.hidden and old.conversation_type = 'general'),
        support = support - (not old.hidden and old.conversation_type = 'support')
    where user_id = old.user_id;
end;
