-- Message search, tokenised the way the query is.
--
-- 0001 indexed `to_tsvector('simple', content)`. PostgreSQL's default parser keeps e-mail
-- addresses, file names, URLs and decimals as single tokens ("bob@example.com",
-- "lease-v2.pdf"), while the search term is split into alphanumeric words and matched as
-- prefixes ("bob:* & example:* & com:*"), so such messages were never found. SQLite's FTS5
-- (unicode61) splits on every non-alphanumeric character; this makes PostgreSQL do the same.
--
-- A generated column's expression cannot be altered before PostgreSQL 17, so the column is
-- rebuilt. This rewrites the messages table once, at upgrade time.
drop index if exists messages_search;
alter table messages drop column search_doc;
alter table messages add column search_doc tsvector generated always as (
    to_tsvector('simple', regexp_replace(content, '[^[:alnum:]]+', ' ', 'g'))
) stored;
create index messages_search on messages using gin (search_doc);

-- Conversation search matches title, property id and metadata with ILIKE (substring, any
-- punctuation), never through this column: drop it and its index so inserts don't pay for them.
drop index if exists conversations_search;
alter table conversations drop column search_doc;
