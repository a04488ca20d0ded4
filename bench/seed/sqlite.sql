-- Seeds a migrated, empty SQLite database for the storage-at-scale benchmark: the same shape
-- as postgres.sql (read it for the design). Parameters come as a one-row table `seed_params`
-- created by the caller (the script drops it and its own work tables at the end):
--
--   sqlite3 data.db "create table seed_params as select 1000000 as conversations, 10 as per_conversation" \
--     ".read bench/seed/sqlite.sql"
--
-- Participants rows are inserted with their final counters, so the user_stats triggers keep
-- user_stats exact as they go; the FTS5 triggers index every message.
pragma journal_mode = wal;
pragma synchronous = off;
pragma cache_size = -1000000;
pragma temp_store = memory;

create table seed_vars as
select conversations, per_conversation,
    max(2, (2 * (conversations - 22000)) / 5) as ordinary_users
from seed_params;

create table seed_pairs as
select value as i,
    'c' || printf('%08d', value) as id,
    case when value <= 10000 then 't_' || value
         when value <= 22000 then 'u_' || (value % v.ordinary_users)
         else 'u_' || ((2 * value) % v.ordinary_users) end as a,
    case when value <= 10000 then 'u_landlord' when value <= 22000 then 'u_support'
         else 'u_' || ((2 * value + 1 + 2 * (value / max(1, v.ordinary_users / 2))) % v.ordinary_users) end as b,
    case when value <= 10000 then 'property_inquiry' when value <= 22000 then 'support'
         when value % 3 = 0 then 'property_inquiry' else 'general' end as type,
    1700000000000 + ((value * 7919) % 31536000) * 1000 as at
from seed_vars v, generate_series(1, v.conversations);

begin;
insert into conversations (id, type, created_by, property_id, title, metadata, dedupe_key,
    last_seq, last_message_id, last_message_at, activity_at, created_at, updated_at)
select p.id, p.type, p.a,
    case when p.type = 'property_inquiry' then 'prop_' || (p.i % 50000) end,
    case when p.type = 'property_inquiry' then 'Flat ' || (p.i % 50000) || ' on Elm St' end,
    case when p.type = 'property_inquiry'
         then '{"propertyTitle":"Flat ' || (p.i % 50000) || ' on Elm St","propertyAddress":"' || (p.i % 997) || ' Elm St"}'
         else '{}' end,
    null, v.per_conversation, p.id || '_' || v.per_conversation, p.at, p.at, p.at - 3600000, p.at
from seed_pairs p, seed_vars v;

-- The creator `a` sent the odd seqs, `b` the even ones; r is the read position.
insert into participants (conversation_id, user_id, role, last_read_seq, last_read_at, joined_at,
    activity_at, conversation_type, unread_count, sent_count, received_count)
select id, user_id, role, r, at, at - 3600000, at, type,
    case when role = 'creator' then n / 2 - r / 2 else (n + 1) / 2 - (r + 1) / 2 end,
    case when role = 'creator' then (n + 1) / 2 else n / 2 end,
    case when role = 'creator' then n / 2 else (n + 1) / 2 end
from (
    select p.id, p.a as user_id, 'creator' as role, p.at, p.type, v.per_conversation as n,
        min(v.per_conversation, ((p.i * 2654435761) % 65536) % (v.per_conversation + 6)) as r
    from seed_pairs p, seed_vars v
    union all
    select p.id, p.b, 'member', p.at, p.type, v.per_conversation,
        min(v.per_conversation, ((p.i * 40503 + 7) % 65536) % (v.per_conversation + 6))
    from seed_pairs p, seed_vars v
);

insert into messages (id, conversation_id, seq, sender_id, type, content, attachments, created_at)
select p.id || '_' || s.value, p.id, s.value,
    case when s.value % 2 = 1 then p.a else p.b end,
    'text',
    (case (s.value + p.i) % 8 when 0 then 'Is it still available' when 1 then 'Sure'
        when 2 then 'What about the deposit' when 3 then 'The viewing is at 5pm'
        when 4 then 'Can I bring my dog' when 5 then 'Rent is due on the first'
        when 6 then 'Thanks' else 'See you then' end)
      || ' ' || (case p.i % 8 when 0 then 'garden' when 1 then 'parking' when 2 then 'balcony'
        when 3 then 'lease' when 4 then 'keys' when 5 then 'heating' when 6 then 'internet'
        else 'laundry' end)
      || ' ref' || ((p.i * 31 + s.value) % 1024),
    '[]',
    p.at - (v.per_conversation - s.value) * 60000
from seed_pairs p, seed_vars v, generate_series(1, v.per_conversation) s;
commit;

drop table seed_pairs;
drop table seed_vars;
drop table seed_params;
analyze;
select (select count(*) from conversations) as conversations,
       (select count(*) from messages) as messages,
       (select count(*) from participants where user_id = 'u_landlord') as landlord,
       (select count(*) from participants where user_id = 'u_support') as support,
       (select count(*) from participants where user_id = 'u_7') as ordinary;
