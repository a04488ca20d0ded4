-- Seeds a migrated, empty PostgreSQL database for the storage-at-scale benchmark.
--
--   psql -v conversations=1000000 -v per_conversation=10 -f bench/seed/postgres.sql "$URL"
--
-- Shape (all in SQL, server-side, so 10M messages load in minutes, not hours):
-- * `u_landlord` is in conversations 1..10000 (property inquiries, one tenant each);
-- * `u_support` is in conversations 10001..22000 (support);
-- * every other conversation is between two ordinary users `u_<n>`, each of whom ends up in
--   about 5 conversations (general or property inquiries);
-- * each conversation has `per_conversation` messages, alternating senders, words from a
--   small vocabulary plus one rarer word, so that searches match a few or many;
-- * each participant has read a pseudo-random prefix, so unread counts vary;
-- * counters and user_stats are computed set-wise at the end, exactly as the store keeps them
--   (the small seed in CI-free checks ran `Store::counter_drift` on it: 0).
\set ON_ERROR_STOP on
\timing on
set synchronous_commit = off;

-- Ordinary users: about 5 conversations each.
select :conversations - 22000 as ordinary_conversations \gset
select greatest(2, (2 * :ordinary_conversations / 5)) as ordinary_users \gset

-- Indexes and triggers are rebuilt after the load: maintaining them row by row is what
-- would take hours.
alter table participants disable trigger user;
drop index if exists participants_inbox;
drop index if exists participants_inbox_by_status;
drop index if exists participants_by_user;
drop index if exists messages_search;
alter table messages drop constraint if exists messages_pkey;
alter table messages drop constraint if exists messages_conversation_id_seq_key;
alter table messages drop constraint if exists messages_sender_id_client_message_id_key;
alter table messages drop constraint if exists messages_conversation_id_fkey;
alter table participants drop constraint if exists participants_conversation_id_fkey;

-- Who is in conversation i: (a, b), a the creator.
create temp table seed_pairs as
select i,
    'c' || lpad(i::text, 8, '0') as id,
    case when i <= 10000 then 't_' || i when i <= 22000 then 'u_' || (i % :ordinary_users)
         else 'u_' || ((2 * i) % :ordinary_users) end as a,
    case when i <= 10000 then 'u_landlord' when i <= 22000 then 'u_support'
         else 'u_' || ((2 * i + 1 + 2 * (i / greatest(1, :ordinary_users / 2))) % :ordinary_users) end as b,
    case when i <= 10000 then 'property_inquiry' when i <= 22000 then 'support'
         when i % 3 = 0 then 'property_inquiry' else 'general' end as type,
    -- Activity spread pseudo-randomly over a year, so every user's inbox order is scrambled.
    1700000000000 + ((i::bigint * 7919) % 31536000) * 1000 as at
from generate_series(1, :conversations) as i;

insert into conversations (id, type, created_by, property_id, title, metadata, dedupe_key,
    last_seq, last_message_id, last_message_at, activity_at, created_at, updated_at)
select id, type, a,
    case when type = 'property_inquiry' then 'prop_' || (i % 50000) end,
    case when type = 'property_inquiry' then 'Flat ' || (i % 50000) || ' on Elm St' end,
    case when type = 'property_inquiry'
         then '{"propertyTitle":"Flat ' || (i % 50000) || ' on Elm St","propertyAddress":"' || (i % 997) || ' Elm St"}'
         else '{}' end,
    null, :per_conversation, id || '_' || :per_conversation, at, at, at - 3600000, at
from seed_pairs;

insert into participants (conversation_id, user_id, role, last_read_seq, last_read_at, joined_at,
    activity_at, conversation_type)
select p.id, u.user_id, u.role,
    -- Read a pseudo-random prefix; about a third have read everything.
    least(:per_conversation, (hashtext(p.id || u.user_id) & 65535) % (:per_conversation + 6)),
    p.at, p.at - 3600000, p.at, p.type
from seed_pairs p,
     lateral (values (p.a, 'creator'), (p.b, 'member')) as u(user_id, role)
-- A generated pair can repeat a user (a tiny ordinary population): keep one row then.
on conflict do nothing;

insert into messages (id, conversation_id, seq, sender_id, type, content, attachments, created_at)
select p.id || '_' || s, p.id, s,
    case when s % 2 = 1 then p.a else p.b end,
    'text',
    (array['Is it still available','Sure','What about the deposit','The viewing is at 5pm',
           'Can I bring my dog','Rent is due on the first','Thanks','See you then'])[1 + (s + p.i) % 8]
      || ' ' || (array['garden','parking','balcony','lease','keys','heating','internet','laundry'])[1 + (p.i % 8)]
      || ' ref' || ((p.i * 31 + s) % 1024),
    '[]',
    p.at - (:per_conversation - s) * 60000
from seed_pairs p, generate_series(1, :per_conversation) as s;

-- Counters, exactly as the store keeps them (nothing is deleted or hidden in the seed).
update participants p set
    -- The creator `a` sent the odd seqs, `b` the even ones; unread = the other's after r.
    unread_count = case when p.user_id = sp.a
        then :per_conversation / 2 - p.last_read_seq / 2
        else (:per_conversation + 1) / 2 - (p.last_read_seq + 1) / 2 end,
    sent_count = case when p.user_id = sp.a then (:per_conversation + 1) / 2 else :per_conversation / 2 end,
    received_count = case when p.user_id = sp.a then :per_conversation / 2 else (:per_conversation + 1) / 2 end
from seed_pairs sp where sp.id = p.conversation_id;

alter table messages add constraint messages_pkey primary key (id);
alter table messages add constraint messages_conversation_id_seq_key unique (conversation_id, seq);
alter table messages add constraint messages_sender_id_client_message_id_key unique (sender_id, client_message_id);
alter table messages add constraint messages_conversation_id_fkey
    foreign key (conversation_id) references conversations (id) on delete cascade;
alter table participants add constraint participants_conversation_id_fkey
    foreign key (conversation_id) references conversations (id) on delete cascade;
create index participants_by_user on participants (user_id, conversation_id);
create index participants_inbox on participants (user_id, activity_at desc, conversation_id desc);
create index participants_inbox_by_status
    on participants (user_id, archived, activity_at desc, conversation_id desc);
create index messages_search on messages using gin (search_doc);

delete from user_stats;
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
alter table participants enable trigger user;

vacuum analyze;
select (select count(*) from conversations) as conversations,
       (select count(*) from messages) as messages,
       (select count(*) from participants where user_id = 'u_landlord') as landlord,
       (select count(*) from participants where user_id = 'u_support') as support,
       (select count(*) from participants where user_id = 'u_7') as ordinary;
