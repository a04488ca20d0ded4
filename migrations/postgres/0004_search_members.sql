-- Message search that costs the searcher's matches, not everyone's.
--
-- "My conversations whose messages mention X" either walked every conversation of the
-- searcher (a landlord has 10,000) checking its messages, or read every message of the
-- database that mentions X. Each message now carries its conversation's members, and one
-- GIN index covers text and members together, so `search_doc @@ X and members @> {U}`
-- intersects the two posting lists inside the index (GIN skips through the longer list
-- using the shorter one). Membership never changes after a conversation is created, so a
-- message's members never go stale.
--
-- The backfill rewrites the messages table once, at upgrade time.
alter table messages add column members text[];

update messages m set members = p.members
from (select conversation_id, array_agg(user_id order by user_id) as members
      from participants group by conversation_id) p
where p.conversation_id = m.conversation_id;

drop index if exists messages_search;
create index messages_search on messages using gin (search_doc, members);
