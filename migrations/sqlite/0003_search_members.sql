-- Message search that costs the searcher's matches, not everyone's.
--
-- The FTS5 index held message text only, so "my conversations whose messages mention X" ran
-- the MATCH once per conversation of the searcher (each run walking X's whole posting list)
-- or joined every message of the database that mentions X: a landlord in 10,000
-- conversations waited 20 to 45 seconds for a common word. The index now also holds, per
-- message, its conversation's members as tokens, so one query intersects "mentions X" with
-- "is in a conversation of user U" inside the index: `members : <U> AND content : X*`.
--
-- Members are hex-encoded user ids: one alphanumeric token each, so no user id can match
-- another's (the unicode61 tokenizer would split "u_landlord" into "u" and "landlord").
-- Membership never changes after a conversation is created, so a message's tokens never go
-- stale. The index reads its content from a view, so no column is added to messages. The
-- members are listed in user id order everywhere: an FTS5 'delete' must repeat exactly the
-- tokens that were inserted.

drop trigger messages_fts_insert;
drop trigger messages_fts_delete;
drop trigger messages_fts_update;
drop table messages_fts;

create view messages_search as
select m.rowid as rid, m.content,
    (select group_concat(h, ' ') from (select hex(p.user_id) as h from participants p
     where p.conversation_id = m.conversation_id order by p.user_id)) as members
from messages m;

create virtual table messages_fts using fts5 (
    content,
    members,
    content = 'messages_search',
    content_rowid = 'rid',
    tokenize = 'unicode61 remove_diacritics 2'
);
insert into messages_fts (messages_fts) values ('rebuild');

create trigger messages_fts_insert after insert on messages begin
    insert into messages_fts (rowid, content, members) values (new.rowid, new.content,
        (select group_concat(h, ' ') from (select hex(p.user_id) as h from participants p
         where p.conversation_id = new.conversation_id order by p.user_id)));
end;

create trigger messages_fts_delete after delete on messages begin
    insert into messages_fts (messages_fts, rowid, content, members) values ('delete', old.rowid,
        old.content, (select group_concat(h, ' ') from (select hex(p.user_id) as h from participants p
         where p.conversation_id = old.conversation_id order by p.user_id)));
end;

create trigger messages_fts_update after update of content on messages begin
    insert into messages_fts (messages_fts, rowid, content, members) values ('delete', old.rowid,
        old.content, (select group_concat(h, ' ') from (select hex(p.user_id) as h from participants p
         where p.conversation_id = old.conversation_id order by p.user_id)));
    insert into messages_fts (rowid, content, members) values (new.rowid, new.content,
        (select group_concat(h, ' ') from (select hex(p.user_id) as h from participants p
         where p.conversation_id = new.conversation_id order by p.user_id)));
end;
