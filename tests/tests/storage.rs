//! Storage suite: the `Store` trait's guarantees, checked directly (no HTTP) on both backends.
//!
//! Each test body is written once, as `async fn name(store: Arc<dyn Store>)` (or
//! `async fn name(db: &TestDb)` when it needs the URL), and [`storage_tests!`] turns it into
//! `sqlite::name` and `postgres::name`, each on a fresh database. The PostgreSQL leg returns
//! early, with the reason printed, when `TEST_DATABASE_URL` is unset (fails with
//! `REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_shared::store::{
    ConversationQuery, ConversationView, InsertOutcome, MessageRecord, NewConversation, NewMessage,
    SeqRange, StatsRecord, Store, StoreError, connect,
};
use chat_shared::time::Millis;
use chat_tests::db::{Backend, TestDb, fresh_db};
use futures::future::join_all;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

/// Generates the modules `sqlite` and `postgres`, each with one test per name: `store: [...]`
/// bodies get a connected store, `db: [...]` bodies the fresh database itself.
macro_rules! storage_tests {
    (store: [$($name:ident),* $(,)?], db: [$($db_name:ident),* $(,)?] $(,)?) => {
        storage_tests!(@leg sqlite, Sqlite, [$($name),*], [$($db_name),*]);
        storage_tests!(@leg postgres, Postgres, [$($name),*], [$($db_name),*]);
    };
    (@leg $module:ident, $backend:ident, [$($name:ident),*], [$($db_name:ident),*]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::with_store(super::Backend::$backend, stringify!($name), super::$name)
                        .await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $db_name() {
                    let Some(db) = super::test_db(super::Backend::$backend, stringify!($db_name))
                        .await
                    else {
                        return;
                    };
                    super::$db_name(&db).await;
                }
            )*
        }
    };
}

storage_tests! {
    store: [
        create_or_get_by_dedupe_key,
        concurrent_creates_with_one_dedupe_key_make_one_conversation,
        conversation_is_invisible_to_non_participants,
        concurrent_sends_get_gap_free_seqs,
        duplicate_client_message_id_returns_first_and_consumes_no_seq,
        concurrent_duplicates_create_exactly_one,
        blocked_conversation_refuses_messages,
        list_messages_pages_in_both_directions,
        mark_read_moves_forward_only_and_caps_at_last_seq,
        hide_then_new_message_brings_conversation_back,
        list_conversations_orders_pages_and_filters,
        search_matches_title_metadata_participants_and_visible_text,
        edit_and_delete_messages,
        unread_total_sums_unread_over_conversations,
        stats_count_visible_conversations,
        a_batch_numbers_each_conversation_and_answers_each_message,
        concurrent_batches_and_changes_keep_every_counter_exact,
        the_writer_turns_away_a_send_about_to_time_out,
    ],
    db: [
        databases_are_isolated_and_reconnecting_keeps_data,
        concurrent_writers_on_two_replicas_fill_a_feed_in_order,
    ],
}

async fn test_db(backend: Backend, name: &str) -> Option<TestDb> {
    // `fresh_db` prints why when it skips.
    let db = fresh_db(backend).await?;
    eprintln!("[{}] storage::{name}", backend.name());
    Some(db)
}

async fn with_store<F, Fut>(backend: Backend, name: &str, body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = test_db(backend, name).await else {
        return;
    };
    let store = connect(&db.url, 5).await.expect("connect and migrate");
    assert_eq!(store.backend(), backend.name());
    store.ping().await.expect("ping");
    body(store).await;
    // `db` outlives the store: dropping it removes the database.
    drop(db);
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn conversation(creator: &str, others: &[&str], kind: &str, now: i64) -> NewConversation {
    let mut participants = vec![creator.to_owned()];
    participants.extend(others.iter().map(|&u| u.to_owned()));
    NewConversation {
        id: new_id(),
        kind: kind.to_owned(),
        created_by: creator.to_owned(),
        property_id: None,
        title: None,
        metadata: "{}".to_owned(),
        dedupe_key: None,
        participants,
        now: Millis(now),
    }
}

/// Creates a conversation that must be new; returns its id.
async fn create(store: &Arc<dyn Store>, new: &NewConversation) -> String {
    let (id, created, _) = store.create_conversation(new).await.unwrap();
    assert!(created, "expected a new conversation");
    assert_eq!(id, new.id);
    id
}

/// A general conversation of `creator` and `others`, created at `now`.
async fn general(store: &Arc<dyn Store>, creator: &str, others: &[&str], now: i64) -> String {
    create(store, &conversation(creator, others, "general", now)).await
}

fn message(conversation_id: &str, sender: &str, content: &str, now: i64) -> NewMessage {
    NewMessage {
        id: new_id(),
        conversation_id: conversation_id.to_owned(),
        sender_id: sender.to_owned(),
        kind: "text".to_owned(),
        content: content.to_owned(),
        reply_to: None,
        attachments: "[]".to_owned(),
        client_message_id: None,
        now: Millis(now),
    }
}

fn with_client_id(mut new: NewMessage, client_id: &str) -> NewMessage {
    new.client_message_id = Some(client_id.to_owned());
    new
}

/// Inserts a message that must be created; returns the stored record.
async fn insert(store: &Arc<dyn Store>, new: &NewMessage) -> MessageRecord {
    match store.insert_message(new).await.unwrap() {
        InsertOutcome::Created(m) => {
            assert_eq!(m.id, new.id);
            m
        }
        other => panic!("expected Created, got {other:?}"),
    }
}

async fn send(
    store: &Arc<dyn Store>,
    conversation_id: &str,
    sender: &str,
    content: &str,
    now: i64,
) -> MessageRecord {
    insert(store, &message(conversation_id, sender, content, now)).await
}

async fn view(store: &Arc<dyn Store>, user: &str, id: &str) -> ConversationView {
    store
        .conversation(user, id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{user} should see conversation {id}"))
}

fn all() -> ConversationQuery {
    ConversationQuery {
        limit: 100,
        ..ConversationQuery::default()
    }
}

async fn list_ids(store: &Arc<dyn Store>, user: &str, query: &ConversationQuery) -> Vec<String> {
    store
        .list_conversations(user, query)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.conversation.id)
        .collect()
}

async fn search(store: &Arc<dyn Store>, user: &str, terms: &[&str]) -> BTreeSet<String> {
    let query = ConversationQuery {
        search: terms.iter().map(|&t| t.to_owned()).collect(),
        ..all()
    };
    list_ids(store, user, &query).await.into_iter().collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|&id| id.clone()).collect()
}

async fn seqs(
    store: &Arc<dyn Store>,
    conversation_id: &str,
    hidden_until: i64,
    range: SeqRange,
    limit: i64,
) -> Vec<i64> {
    store
        .list_messages(conversation_id, hidden_until, range, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            assert_eq!(m.conversation_id, conversation_id);
            m.seq
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Conversations

async fn create_or_get_by_dedupe_key(store: Arc<dyn Store>) {
    let mut first = conversation("alice", &["bob"], "property_inquiry", 1_000);
    first.title = Some("Hello".to_owned());
    first.property_id = Some("prop-1".to_owned());
    first.metadata = r#"{"k":"v"}"#.to_owned();
    first.dedupe_key = Some("inquiry:prop-1:alice:bob".to_owned());
    let id = create(&store, &first).await;

    // Same key, different everything else: the first conversation, untouched.
    let mut again = conversation("bob", &["carol"], "general", 2_000);
    again.title = Some("Other".to_owned());
    again.dedupe_key = first.dedupe_key.clone();
    assert_eq!(
        store.create_conversation(&again).await.unwrap(),
        (id.clone(), false, chat_shared::store::Cursors::new()),
        "no new feed entries either"
    );
    assert!(store.conversation("carol", &id).await.unwrap().is_none());
    assert!(
        store
            .conversation("bob", &again.id)
            .await
            .unwrap()
            .is_none()
    );

    let v = view(&store, "alice", &id).await;
    let c = &v.conversation;
    assert_eq!(c.id, id);
    assert_eq!(c.kind, "property_inquiry");
    assert_eq!(c.created_by, "alice");
    assert_eq!(c.title.as_deref(), Some("Hello"));
    assert_eq!(c.property_id.as_deref(), Some("prop-1"));
    assert_eq!(c.metadata, r#"{"k":"v"}"#);
    assert_eq!(c.last_seq, 0);
    assert_eq!(c.last_message_id, None);
    assert_eq!(c.last_message_at, None);
    assert_eq!(
        (c.activity_at, c.created_at, c.updated_at),
        (1_000, 1_000, 1_000)
    );
    assert!(!c.blocked);
    assert_eq!(c.blocked_by, None);
    assert_eq!(v.me.user_id, "alice");
    assert_eq!(v.unread_count, 0);
    assert_eq!(v.last_message, None);
    let members: Vec<(&str, &str)> = v
        .participants
        .iter()
        .map(|p| (p.user_id.as_str(), p.role.as_str()))
        .collect();
    assert_eq!(members, [("alice", "creator"), ("bob", "member")]);
    for p in &v.participants {
        assert_eq!(p.conversation_id, id);
        assert_eq!((p.last_read_seq, p.last_read_at), (0, None));
        assert!(!p.archived && !p.muted);
        assert_eq!(p.hidden_until_seq, None);
        assert_eq!(p.joined_at, 1_000);
    }
    assert_eq!(store.participants(&id).await.unwrap(), v.participants);
    assert_eq!(view(&store, "bob", &id).await.me.user_id, "bob");

    // Without a key nothing is deduplicated; another key is another conversation.
    let a = general(&store, "alice", &["bob"], 3_000).await;
    let b = general(&store, "alice", &["bob"], 3_000).await;
    let mut other_key = conversation("alice", &["bob"], "general", 4_000);
    other_key.dedupe_key = Some("general:alice:bob".to_owned());
    let c = create(&store, &other_key).await;
    assert_eq!(
        set(&[&id, &a, &b, &c]),
        list_ids(&store, "alice", &all())
            .await
            .into_iter()
            .collect()
    );
    assert_eq!(set(&[&id, &a, &b, &c]).len(), 4);
}

async fn concurrent_creates_with_one_dedupe_key_make_one_conversation(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let mut new = conversation("alice", &["bob"], "general", 1_000 + i);
            new.dedupe_key = Some("general:alice:bob".to_owned());
            tokio::spawn(async move {
                let outcome = store.create_conversation(&new).await.unwrap();
                (new.id, outcome)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let winners: Vec<_> = results
        .iter()
        .filter(|(_, (_, created, _))| *created)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one create wins: {results:?}");
    let (winner_id, (id, _, _)) = winners[0];
    assert_eq!(winner_id, id, "the winner answers its own id");
    assert!(
        results.iter().all(|(_, (other, _, _))| other == id),
        "every create answers the one id: {results:?}"
    );
    assert_eq!(list_ids(&store, "alice", &all()).await, [id.as_str()]);
    assert_eq!(list_ids(&store, "bob", &all()).await, [id.as_str()]);
    let users: Vec<String> = store
        .participants(id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.user_id)
        .collect();
    assert_eq!(users, ["alice", "bob"]);
}

async fn conversation_is_invisible_to_non_participants(store: Arc<dyn Store>) {
    let id = general(&store, "alice", &["bob"], 1_000).await;
    send(&store, &id, "bob", "hi", 2_000).await;
    assert!(store.conversation("carol", &id).await.unwrap().is_none());
    assert!(
        store
            .conversation("alice", "no-such-id")
            .await
            .unwrap()
            .is_none()
    );
    assert!(list_ids(&store, "carol", &all()).await.is_empty());
    assert!(search(&store, "carol", &["hi"]).await.is_empty());
    assert_eq!(store.unread_total("carol").await.unwrap(), 0);
    assert_eq!(store.stats("carol").await.unwrap(), StatsRecord::default());
    // The participants do see it.
    assert_eq!(view(&store, "alice", &id).await.unread_count, 1);
    assert_eq!(view(&store, "bob", &id).await.me.user_id, "bob");
}

// ---------------------------------------------------------------------------------------------
// Sending

async fn concurrent_sends_get_gap_free_seqs(store: Arc<dyn Store>) {
    let a = general(&store, "alice", &["bob"], 1_000).await;
    let b = general(&store, "alice", &["bob"], 1_000).await;
    // 50 sends into `a` and 10 into `b`, all at once, from two senders.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            let conversation_id = if i < 50 { &a } else { &b };
            let sender = if i % 2 == 0 { "alice" } else { "bob" };
            let new = message(conversation_id, sender, &format!("m{i}"), 2_000 + i);
            tokio::spawn(async move {
                match store.insert_message(&new).await.unwrap() {
                    InsertOutcome::Created(m) => m,
                    other => panic!("expected Created, got {other:?}"),
                }
            })
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await.unwrap());
    }
    let (mut in_a, mut in_b): (Vec<_>, Vec<_>) =
        sent.into_iter().partition(|m| m.conversation_id == a);
    in_a.sort_by_key(|m| m.seq);
    in_b.sort_by_key(|m| m.seq);
    assert_eq!(
        in_a.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    assert_eq!(
        in_b.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );

    // What is stored is what the inserts answered.
    let stored = store
        .list_messages(&a, 0, SeqRange::After(0), 100)
        .await
        .unwrap();
    assert_eq!(stored, in_a);
    assert_eq!(seqs(&store, &b, 0, SeqRange::After(0), 100).await.len(), 10);

    let newest = &in_a[49];
    let v = view(&store, "alice", &a).await;
    assert_eq!(v.conversation.last_seq, 50);
    assert_eq!(v.conversation.last_message_id.as_ref(), Some(&newest.id));
    assert_eq!(v.conversation.last_message_at, Some(newest.created_at));
    assert_eq!(v.conversation.activity_at, newest.created_at);
    assert_eq!(v.last_message.as_ref(), Some(newest));
    assert_eq!(view(&store, "alice", &b).await.conversation.last_seq, 10);

    // Each sender's read position is their newest message (never moved back by a slower
    // concurrent send), and the unread count is the other's messages after it.
    for (user, other) in [("alice", "bob"), ("bob", "alice")] {
        let own_newest = in_a
            .iter()
            .filter(|m| m.sender_id == user)
            .map(|m| m.seq)
            .max()
            .unwrap();
        let unread = in_a
            .iter()
            .filter(|m| m.sender_id == other && m.seq > own_newest)
            .count();
        let v = view(&store, user, &a).await;
        assert_eq!(v.me.last_read_seq, own_newest, "{user}");
        assert_eq!(v.unread_count, i64::try_from(unread).unwrap(), "{user}");
    }
}

async fn duplicate_client_message_id_returns_first_and_consumes_no_seq(store: Arc<dyn Store>) {
    let a = general(&store, "alice", &["bob"], 1_000).await;
    let b = general(&store, "alice", &["bob"], 1_000).await;
    let first = insert(
        &store,
        &with_client_id(message(&a, "alice", "first", 2_000), "c-1"),
    )
    .await;
    assert_eq!(first.seq, 1);
    assert_eq!(first.client_message_id.as_deref(), Some("c-1"));

    // A retry (new id, other content, later): the first message, nothing written.
    let retry = with_client_id(message(&a, "alice", "second", 3_000), "c-1");
    assert_eq!(
        store.insert_message(&retry).await.unwrap(),
        InsertOutcome::Duplicate(first.clone())
    );
    assert!(store.message(&retry.id).await.unwrap().is_none());
    let v = view(&store, "alice", &a).await;
    assert_eq!(v.conversation.last_seq, 1);
    assert_eq!(v.conversation.last_message_id.as_ref(), Some(&first.id));
    assert_eq!(v.conversation.activity_at, 2_000);

    // The next message takes the next seq: the duplicate consumed none.
    assert_eq!(send(&store, &a, "alice", "next", 4_000).await.seq, 2);
    assert_eq!(
        send(&store, &a, "alice", "no id either", 4_001).await.seq,
        3
    );
    // The key is per sender: bob may use the same client id.
    let bobs = insert(
        &store,
        &with_client_id(message(&a, "bob", "bob's", 5_000), "c-1"),
    )
    .await;
    assert_eq!(bobs.seq, 4);
    // ... and not per conversation: alice's "c-1" in another conversation is the first message.
    assert_eq!(
        store
            .insert_message(&with_client_id(message(&b, "alice", "x", 6_000), "c-1"))
            .await
            .unwrap(),
        InsertOutcome::Duplicate(first.clone())
    );
    assert_eq!(view(&store, "alice", &b).await.conversation.last_seq, 0);

    assert_eq!(
        store.message_by_client_id("alice", "c-1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.message_by_client_id("bob", "c-1").await.unwrap(),
        Some(bobs)
    );
    assert_eq!(
        store.message_by_client_id("carol", "c-1").await.unwrap(),
        None
    );
    assert_eq!(store.message(&first.id).await.unwrap(), Some(first));
    assert_eq!(
        seqs(&store, &a, 0, SeqRange::After(0), 100).await,
        [1, 2, 3, 4]
    );
}

async fn concurrent_duplicates_create_exactly_one(store: Arc<dyn Store>) {
    let a = general(&store, "alice", &["bob"], 1_000).await;
    send(&store, &a, "bob", "before", 1_500).await;
    // Several rounds, so that some duplicates get past the pre-check together and meet at the
    // unique key.
    for round in 0..5_i64 {
        let client_id = format!("c-{round}");
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let store = store.clone();
                let new = with_client_id(
                    message(&a, "alice", &format!("r{round} try {i}"), 2_000 + i),
                    &client_id,
                );
                tokio::spawn(async move { store.insert_message(&new).await.unwrap() })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let created: Vec<&MessageRecord> = outcomes
            .iter()
            .filter_map(|o| match o {
                InsertOutcome::Created(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1, "round {round}: {outcomes:?}");
        let winner = created[0];
        assert_eq!(
            winner.seq,
            round + 2,
            "round {round}: no seq consumed by duplicates"
        );
        for outcome in &outcomes {
            match outcome {
                InsertOutcome::Created(_) => {}
                InsertOutcome::Duplicate(m) => assert_eq!(m, winner, "round {round}"),
                InsertOutcome::Blocked => panic!("round {round}: not blocked"),
            }
        }
        assert_eq!(
            view(&store, "bob", &a).await.conversation.last_seq,
            round + 2
        );
    }
    assert_eq!(send(&store, &a, "bob", "after", 9_000).await.seq, 7);
    assert_eq!(
        seqs(&store, &a, 0, SeqRange::After(0), 100).await,
        (1..=7).collect::<Vec<_>>()
    );
}

async fn blocked_conversation_refuses_messages(store: Arc<dyn Store>) {
    let mut new = conversation("alice", &["bob"], "general", 1_000);
    new.title = Some("T".to_owned());
    let id = create(&store, &new).await;
    let first = insert(
        &store,
        &with_client_id(message(&id, "alice", "hi", 1_000), "c-1"),
    )
    .await;

    store
        .update_conversation(&id, None, Some((true, "bob")), Millis(2_000))
        .await
        .unwrap();
    let c = view(&store, "alice", &id).await.conversation;
    assert!(c.blocked);
    assert_eq!(c.blocked_by.as_deref(), Some("bob"));
    assert_eq!(c.title.as_deref(), Some("T"), "title kept");
    assert_eq!(c.updated_at, 2_000);

    let refused = message(&id, "bob", "let me in", 3_000);
    assert_eq!(
        store.insert_message(&refused).await.unwrap(),
        InsertOutcome::Blocked
    );
    assert!(store.message(&refused.id).await.unwrap().is_none());
    let c = view(&store, "alice", &id).await.conversation;
    assert_eq!(c.last_seq, 1);
    assert_eq!(c.last_message_id.as_ref(), Some(&first.id));
    assert_eq!(c.activity_at, 1_000);
    // A retry of a message stored before the block is still answered with it.
    assert_eq!(
        store
            .insert_message(&with_client_id(message(&id, "alice", "hi", 3_000), "c-1"))
            .await
            .unwrap(),
        InsertOutcome::Duplicate(first)
    );

    // Renaming leaves the block alone.
    store
        .update_conversation(&id, Some("Renamed"), None, Millis(4_000))
        .await
        .unwrap();
    let c = view(&store, "alice", &id).await.conversation;
    assert_eq!(c.title.as_deref(), Some("Renamed"));
    assert!(c.blocked);
    assert_eq!(c.blocked_by.as_deref(), Some("bob"));
    assert_eq!(c.updated_at, 4_000);

    store
        .update_conversation(&id, None, Some((false, "alice")), Millis(5_000))
        .await
        .unwrap();
    let c = view(&store, "alice", &id).await.conversation;
    assert!(!c.blocked);
    assert_eq!(c.blocked_by, None);
    assert_eq!(c.title.as_deref(), Some("Renamed"));
    assert_eq!(send(&store, &id, "bob", "back", 6_000).await.seq, 2);

    // Both at once.
    store
        .update_conversation(&id, Some("Both"), Some((true, "alice")), Millis(7_000))
        .await
        .unwrap();
    let c = view(&store, "bob", &id).await.conversation;
    assert_eq!(c.title.as_deref(), Some("Both"));
    assert!(c.blocked);
    assert_eq!(c.blocked_by.as_deref(), Some("alice"));
    assert_eq!(
        store
            .insert_message(&message(&id, "alice", "x", 8_000))
            .await
            .unwrap(),
        InsertOutcome::Blocked
    );
    // No such conversation: nothing to update, no error.
    store
        .update_conversation("no-such-id", Some("x"), Some((true, "a")), Millis(9_000))
        .await
        .unwrap();
}

async fn list_messages_pages_in_both_directions(store: Arc<dyn Store>) {
    let a = general(&store, "alice", &["bob"], 1_000).await;
    let other = general(&store, "alice", &["bob"], 1_000).await;
    for i in 0..10 {
        let sender = if i % 2 == 0 { "alice" } else { "bob" };
        send(&store, &a, sender, &format!("m{i}"), 2_000 + i).await;
        if i < 3 {
            send(&store, &other, sender, "elsewhere", 2_000 + i).await;
        }
    }
    let before = |b| SeqRange::Before(b);
    assert_eq!(seqs(&store, &a, 0, before(None), 3).await, [10, 9, 8]);
    assert_eq!(seqs(&store, &a, 0, before(Some(8)), 3).await, [7, 6, 5]);
    assert_eq!(seqs(&store, &a, 0, before(Some(2)), 10).await, [1]);
    assert!(seqs(&store, &a, 0, before(Some(1)), 10).await.is_empty());
    assert_eq!(
        seqs(&store, &a, 0, before(None), 100).await,
        (1..=10).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&store, &a, 0, SeqRange::After(0), 4).await,
        [1, 2, 3, 4]
    );
    assert_eq!(
        seqs(&store, &a, 0, SeqRange::After(7), 10).await,
        [8, 9, 10]
    );
    assert!(
        seqs(&store, &a, 0, SeqRange::After(10), 10)
            .await
            .is_empty()
    );
    assert!(seqs(&store, &a, 0, before(None), 0).await.is_empty());
    // Hidden messages (delete-for-me up to 5) are never returned.
    assert_eq!(
        seqs(&store, &a, 5, before(None), 100).await,
        [10, 9, 8, 7, 6]
    );
    assert_eq!(seqs(&store, &a, 5, before(Some(8)), 100).await, [7, 6]);
    assert!(seqs(&store, &a, 5, before(Some(6)), 100).await.is_empty());
    assert_eq!(
        seqs(&store, &a, 5, SeqRange::After(0), 2).await,
        [6, 7],
        "after a position below the hidden ones starts after them"
    );
    assert_eq!(seqs(&store, &a, 5, SeqRange::After(8), 100).await, [9, 10]);
    assert_eq!(seqs(&store, &other, 0, before(None), 100).await, [3, 2, 1]);
    let page = store
        .list_messages(&a, 0, SeqRange::After(0), 1)
        .await
        .unwrap();
    assert_eq!(page[0].content, "m0");
    assert_eq!(page[0].sender_id, "alice");
    assert_eq!(page[0].created_at, 2_000);
}

// ---------------------------------------------------------------------------------------------
// Read positions, delete-for-me

/// `(position, read time, unread, moved)` of one `mark_read` call.
async fn read(
    store: &Arc<dyn Store>,
    id: &str,
    user: &str,
    up_to: Option<i64>,
    at: i64,
) -> (i64, Option<i64>, i64, bool) {
    let r = store.mark_read(id, user, up_to, Millis(at)).await.unwrap();
    (r.last_read_seq, r.last_read_at, r.unread_count, r.moved)
}

async fn mark_read_moves_forward_only_and_caps_at_last_seq(store: Arc<dyn Store>) {
    let id = general(&store, "alice", &["bob"], 1_000).await;
    // Nothing to read yet: the position stays at 0 and no read time is invented.
    assert_eq!(
        read(&store, &id, "alice", None, 1_500).await,
        (0, None, 0, false)
    );
    for i in 0..5 {
        send(&store, &id, "bob", "m", 1_000 + i).await;
    }
    let v = view(&store, "alice", &id).await;
    assert_eq!(
        (v.me.last_read_seq, v.me.last_read_at, v.unread_count),
        (0, None, 5)
    );
    // Sending moved bob's own position to his newest message.
    assert_eq!(view(&store, "bob", &id).await.me.last_read_seq, 5);
    assert_eq!(view(&store, "bob", &id).await.unread_count, 0);

    assert_eq!(
        read(&store, &id, "alice", Some(3), 2_000).await,
        (3, Some(2_000), 2, true)
    );
    let v = view(&store, "alice", &id).await;
    assert_eq!(
        (v.me.last_read_seq, v.me.last_read_at, v.unread_count),
        (3, Some(2_000), 2)
    );

    // Never backwards, and a call that doesn't move the position keeps its read time.
    assert_eq!(
        read(&store, &id, "alice", Some(1), 3_000).await,
        (3, Some(2_000), 2, false)
    );
    assert_eq!(
        read(&store, &id, "alice", Some(0), 3_000).await,
        (3, Some(2_000), 2, false)
    );
    assert_eq!(
        read(&store, &id, "alice", Some(3), 3_000).await,
        (3, Some(2_000), 2, false)
    );
    let v = view(&store, "alice", &id).await;
    assert_eq!((v.me.last_read_seq, v.me.last_read_at), (3, Some(2_000)));

    // Capped at the last message.
    assert_eq!(
        read(&store, &id, "alice", Some(100), 4_000).await,
        (5, Some(4_000), 0, true)
    );
    assert_eq!(view(&store, "alice", &id).await.me.last_read_seq, 5);
    assert_eq!(
        read(&store, &id, "alice", Some(100), 4_500).await,
        (5, Some(4_000), 0, false)
    );

    // `None`: everything.
    send(&store, &id, "bob", "m6", 5_000).await;
    send(&store, &id, "bob", "m7", 5_001).await;
    assert_eq!(view(&store, "alice", &id).await.unread_count, 2);
    assert_eq!(
        read(&store, &id, "alice", None, 6_000).await,
        (7, Some(6_000), 0, true)
    );

    // Deleted messages don't count as unread.
    send(&store, &id, "bob", "m8", 7_000).await;
    let m9 = send(&store, &id, "bob", "m9", 7_001).await;
    send(&store, &id, "bob", "m10", 7_002).await;
    store.delete_message(&m9.id, Millis(7_500)).await.unwrap();
    assert_eq!(view(&store, "alice", &id).await.unread_count, 2);
    assert_eq!(store.unread_total("alice").await.unwrap(), 2);
    assert_eq!(
        read(&store, &id, "alice", Some(8), 8_000).await,
        (8, Some(8_000), 1, true)
    );

    // Only others' messages count: alice's own message moves her position and is never unread
    // for her, but is for bob.
    send(&store, &id, "alice", "mine", 9_000).await;
    let v = view(&store, "alice", &id).await;
    assert_eq!((v.me.last_read_seq, v.unread_count), (11, 0));
    let v = view(&store, "bob", &id).await;
    assert_eq!((v.me.last_read_seq, v.unread_count), (10, 1));
}

async fn hide_then_new_message_brings_conversation_back(store: Arc<dyn Store>) {
    let a = general(&store, "alice", &["bob"], 1_000).await;
    let b = general(&store, "alice", &["carol"], 1_500).await;
    for i in 0..3 {
        send(&store, &a, "bob", "old", 2_000 + i).await;
    }
    assert_eq!(
        list_ids(&store, "alice", &all()).await,
        [a.clone(), b.clone()]
    );

    store.hide(&a, "alice", Millis(0)).await.unwrap();
    assert_eq!(list_ids(&store, "alice", &all()).await, [b.as_str()]);
    assert_eq!(store.stats("alice").await.unwrap().total, 1);
    // Still reachable directly (alice is still a participant), with nothing to show.
    let v = view(&store, "alice", &a).await;
    assert_eq!(v.me.hidden_until_seq, Some(3));
    assert_eq!(v.me.hidden_seq(), 3);
    assert_eq!(v.me.last_read_seq, 3, "hidden messages are read");
    assert_eq!(v.unread_count, 0);
    assert_eq!(v.last_message, None);
    assert!(
        seqs(&store, &a, 3, SeqRange::Before(None), 50)
            .await
            .is_empty()
    );
    // Bob is not affected.
    let v = view(&store, "bob", &a).await;
    assert_eq!(v.me.hidden_until_seq, None);
    assert_eq!(v.last_message.map(|m| m.seq), Some(3));
    assert_eq!(list_ids(&store, "bob", &all()).await, [a.as_str()]);

    let newer = send(&store, &a, "bob", "new", 3_000).await;
    let views = store.list_conversations("alice", &all()).await.unwrap();
    assert_eq!(
        views.iter().map(|v| &v.conversation.id).collect::<Vec<_>>(),
        [&a, &b]
    );
    let v = &views[0];
    assert_eq!(v.unread_count, 1);
    assert_eq!(v.last_message.as_ref(), Some(&newer));
    assert_eq!(v.me.hidden_until_seq, Some(3));
    let visible = store
        .list_messages(&a, v.me.hidden_seq(), SeqRange::Before(None), 50)
        .await
        .unwrap();
    assert_eq!(visible, [newer]);
    assert_eq!(store.stats("alice").await.unwrap().total, 2);

    // Hiding again covers the new message too.
    store.hide(&a, "alice", Millis(0)).await.unwrap();
    let v = view(&store, "alice", &a).await;
    assert_eq!((v.me.hidden_until_seq, v.me.last_read_seq), (Some(4), 4));
    assert_eq!(list_ids(&store, "alice", &all()).await, [b]);
}

// ---------------------------------------------------------------------------------------------
// Inbox and search

async fn list_conversations_orders_pages_and_filters(store: Arc<dyn Store>) {
    let mut c = Vec::new();
    for (kind, property, now) in [
        ("general", None, 1_000),
        ("property_inquiry", Some("prop-1"), 2_000),
        ("support", None, 3_000),
        ("property_inquiry", Some("prop-2"), 4_000),
        ("general", None, 4_000),
    ] {
        let mut new = conversation("alice", &["bob"], kind, now);
        new.property_id = property.map(str::to_owned);
        c.push(create(&store, &new).await);
    }
    // Not alice's.
    general(&store, "dave", &["bob"], 9_000).await;
    // A message moves the oldest to the top.
    send(&store, &c[0], "bob", "bump", 5_000).await;

    // Same activity: the higher id first.
    let (tie_first, tie_second) = if c[4] > c[3] {
        (&c[4], &c[3])
    } else {
        (&c[3], &c[4])
    };
    let expected = vec![
        c[0].clone(),
        tie_first.clone(),
        tie_second.clone(),
        c[2].clone(),
        c[1].clone(),
    ];
    assert_eq!(list_ids(&store, "alice", &all()).await, expected);

    // Limit, and keyset pages that add up to the whole list.
    let first_two = ConversationQuery {
        limit: 2,
        ..ConversationQuery::default()
    };
    assert_eq!(list_ids(&store, "alice", &first_two).await, expected[..2]);
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let query = ConversationQuery {
            limit: 2,
            before: before.clone(),
            ..ConversationQuery::default()
        };
        let page = store.list_conversations("alice", &query).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.conversation.activity_at, last.conversation.id.clone()));
        paged.extend(page.into_iter().map(|v| v.conversation.id));
    }
    assert_eq!(paged, expected);
    let after_tie = ConversationQuery {
        before: Some((4_000, tie_first.clone())),
        ..all()
    };
    assert_eq!(list_ids(&store, "alice", &after_tie).await, expected[2..]);

    // Per-user flags.
    store
        .set_flags(&c[2], "alice", Some(true), None, Millis(0))
        .await
        .unwrap();
    let archived = |a| ConversationQuery {
        archived: a,
        ..all()
    };
    assert_eq!(
        list_ids(&store, "alice", &archived(Some(true))).await,
        [c[2].clone()]
    );
    let not_archived: Vec<String> = expected.iter().filter(|&id| *id != c[2]).cloned().collect();
    assert_eq!(
        list_ids(&store, "alice", &archived(Some(false))).await,
        not_archived
    );
    assert_eq!(list_ids(&store, "alice", &archived(None)).await, expected);
    assert!(
        list_ids(&store, "bob", &archived(Some(true)))
            .await
            .is_empty(),
        "flags are per user"
    );
    store
        .set_flags(&c[2], "alice", None, Some(true), Millis(0))
        .await
        .unwrap();
    let me = view(&store, "alice", &c[2]).await.me;
    assert!(me.archived && me.muted);
    store
        .set_flags(&c[2], "alice", Some(false), None, Millis(0))
        .await
        .unwrap();
    let me = view(&store, "alice", &c[2]).await.me;
    assert!(!me.archived && me.muted);
    let bob = view(&store, "bob", &c[2]).await.me;
    assert!(!bob.archived && !bob.muted);

    // Type and property filters.
    let kind = |k: &str| ConversationQuery {
        kind: Some(k.to_owned()),
        ..all()
    };
    assert_eq!(
        list_ids(&store, "alice", &kind("property_inquiry")).await,
        [c[3].clone(), c[1].clone()]
    );
    assert_eq!(
        list_ids(&store, "alice", &kind("support")).await,
        [c[2].clone()]
    );
    let property = ConversationQuery {
        property_id: Some("prop-1".to_owned()),
        ..all()
    };
    assert_eq!(list_ids(&store, "alice", &property).await, [c[1].clone()]);
    let property_and_kind = ConversationQuery {
        kind: Some("general".to_owned()),
        ..property
    };
    assert!(
        list_ids(&store, "alice", &property_and_kind)
            .await
            .is_empty()
    );

    // The views carry the viewer's state and every participant.
    let views = store.list_conversations("alice", &all()).await.unwrap();
    assert_eq!(views[0].unread_count, 1);
    assert_eq!(
        views[0].last_message.as_ref().map(|m| m.content.as_str()),
        Some("bump")
    );
    assert!(views.iter().all(|v| {
        v.me.user_id == "alice"
            && v.participants
                .iter()
                .map(|p| p.user_id.as_str())
                .collect::<Vec<_>>()
                == ["alice", "bob"]
    }));
}

async fn search_matches_title_metadata_participants_and_visible_text(store: Arc<dyn Store>) {
    let mut villa = conversation("alice", &["bob"], "property_inquiry", 1_000);
    villa.title = Some("Sunny Villa".to_owned());
    villa.property_id = Some("prop-123".to_owned());
    villa.metadata = r#"{"city":"Lisbon"}"#.to_owned();
    let villa = create(&store, &villa).await;
    let agent = general(&store, "alice", &["agent_zed"], 1_000).await;
    let text = general(&store, "alice", &["bob"], 1_000).await;
    send(&store, &text, "bob", "The quick brownfox jumps", 2_000).await;
    let hidden = general(&store, "alice", &["bob"], 1_000).await;
    send(&store, &hidden, "bob", "secretword", 2_000).await;
    store.hide(&hidden, "alice", Millis(0)).await.unwrap();
    send(&store, &hidden, "bob", "visible again", 3_000).await;
    let changed = general(&store, "alice", &["bob"], 1_000).await;
    let deleted = send(&store, &changed, "bob", "deletedword", 2_000).await;
    store
        .delete_message(&deleted.id, Millis(2_500))
        .await
        .unwrap();
    let edited = send(&store, &changed, "bob", "editme", 2_600).await;
    store
        .edit_message(&edited.id, "replaced", Millis(2_700))
        .await
        .unwrap()
        .unwrap();
    let mut not_alices = conversation("bob", &["carol"], "general", 1_000);
    not_alices.title = Some("Sunny Villa".to_owned());
    let not_alices = create(&store, &not_alices).await;

    // Title, property id, metadata: substring, any case.
    for terms in [
        &["villa"][..],
        &["VILLA"],
        &["sunny", "villa"],
        &["lisbon"],
        &["prop-123"],
        &["123"],
    ] {
        assert_eq!(
            search(&store, "alice", terms).await,
            set(&[&villa]),
            "{terms:?}"
        );
    }
    // Participant ids; `_` and `%` are literal, not wildcards.
    for terms in [&["zed"][..], &["AGENT_Z"], &["_"]] {
        assert_eq!(
            search(&store, "alice", terms).await,
            set(&[&agent]),
            "{terms:?}"
        );
    }
    for terms in [&["%"][..], &["\\"], &["nothing-like-this"]] {
        assert!(search(&store, "alice", terms).await.is_empty(), "{terms:?}");
    }
    // Message text: word prefixes, every term.
    for terms in [
        &["brown"][..],
        &["BROWNF"],
        &["quick", "jumps"],
        &["brownfox"],
        // Full-text syntax in the input is just text.
        &["\"quick"],
        &["quick&|!:*()'"],
    ] {
        assert_eq!(
            search(&store, "alice", terms).await,
            set(&[&text]),
            "{terms:?}"
        );
    }
    for terms in [
        &["rownfox"][..],
        &["quick", "villa"],
        &["'"],
        // (A lone `"` would match the metadata JSON, which is searched as text.)
        &["\"\""],
        &["&"],
        &[":*"],
    ] {
        assert!(search(&store, "alice", terms).await.is_empty(), "{terms:?}");
    }
    // Words joined by punctuation (addresses, file names, decimals) are found by each part and
    // as typed, the same on both backends.
    let tokens = general(&store, "alice", &["dora"], 1_000).await;
    send(
        &store,
        &tokens,
        "dora",
        "Mail dora.smith@example.org the lease-v2.pdf, rent 1250.50",
        2_000,
    )
    .await;
    for terms in [
        &["dora.smith@example.org"][..],
        &["smith"],
        &["example"],
        &["lease-v2.pdf"],
        &["lease"],
        &["pdf"],
        &["1250.50"],
        &["1250"],
    ] {
        assert_eq!(
            search(&store, "alice", terms).await,
            set(&[&tokens]),
            "{terms:?}"
        );
    }

    // Only text the user can see: not hidden (delete-for-me) nor deleted, and the current text.
    assert!(search(&store, "alice", &["secretword"]).await.is_empty());
    assert_eq!(
        search(&store, "bob", &["secretword"]).await,
        set(&[&hidden])
    );
    assert_eq!(search(&store, "alice", &["visible"]).await, set(&[&hidden]));
    assert!(search(&store, "alice", &["deletedword"]).await.is_empty());
    assert!(search(&store, "alice", &["editme"]).await.is_empty());
    assert_eq!(
        search(&store, "alice", &["replaced"]).await,
        set(&[&changed])
    );
    // Only the user's conversations.
    assert_eq!(
        search(&store, "bob", &["villa"]).await,
        set(&[&villa, &not_alices])
    );
    assert_eq!(
        search(&store, "carol", &["villa"]).await,
        set(&[&not_alices])
    );
    assert!(search(&store, "carol", &["quick"]).await.is_empty());
    // Search combines with the other filters.
    store
        .set_flags(&villa, "alice", Some(true), None, Millis(0))
        .await
        .unwrap();
    let archived_only = ConversationQuery {
        archived: Some(false),
        search: vec!["villa".to_owned()],
        ..all()
    };
    assert!(list_ids(&store, "alice", &archived_only).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Edits, deletes, counters

async fn edit_and_delete_messages(store: Arc<dyn Store>) {
    let id = general(&store, "alice", &["bob"], 1_000).await;
    let mut image = message(&id, "alice", "look", 1_000);
    image.kind = "image".to_owned();
    image.attachments = r#"[{"url":"https://example.com/a.png"}]"#.to_owned();
    let original = insert(&store, &image).await;
    assert_eq!(original.kind, "image");
    assert_eq!(original.attachments, image.attachments);
    assert_eq!((original.edited_at, original.deleted_at), (None, None));

    let mut reply = with_client_id(message(&id, "alice", "reply", 1_100), "c-9");
    reply.reply_to = Some(original.id.clone());
    let reply = insert(&store, &reply).await;
    assert_eq!(reply.reply_to.as_ref(), Some(&original.id));
    assert_eq!(store.message(&reply.id).await.unwrap(), Some(reply.clone()));
    assert_eq!(store.stats("alice").await.unwrap().messages_sent, 2);

    let edited = store
        .edit_message(&original.id, "look again", Millis(2_000))
        .await
        .unwrap()
        .map(|(m, _)| m)
        .expect("edited");
    assert_eq!(
        edited,
        MessageRecord {
            content: "look again".to_owned(),
            edited_at: Some(2_000),
            ..original.clone()
        }
    );
    assert_eq!(
        store.message(&original.id).await.unwrap(),
        Some(edited.clone())
    );

    let deleted = store
        .delete_message(&original.id, Millis(3_000))
        .await
        .unwrap()
        .map(|(m, _)| m)
        .expect("deleted");
    assert_eq!(
        deleted,
        MessageRecord {
            content: String::new(),
            attachments: "[]".to_owned(),
            deleted_at: Some(3_000),
            ..edited
        }
    );
    // Deleting again keeps the first deletion time; editing a deleted message does nothing.
    let again = store
        .delete_message(&original.id, Millis(4_000))
        .await
        .unwrap()
        .map(|(m, _)| m)
        .expect("still there");
    assert_eq!(again.deleted_at, Some(3_000));
    assert_eq!(
        store
            .edit_message(&original.id, "revived", Millis(5_000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.message(&original.id).await.unwrap(), Some(deleted));
    assert_eq!(
        store
            .edit_message("no-such-id", "x", Millis(5_000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_message("no-such-id", Millis(5_000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.stats("alice").await.unwrap().messages_sent, 1);

    // The last message of a conversation shows its current state.
    store
        .delete_message(&reply.id, Millis(6_000))
        .await
        .unwrap();
    let last = view(&store, "bob", &id)
        .await
        .last_message
        .expect("last message");
    assert_eq!(last.id, reply.id);
    assert_eq!((last.content.as_str(), last.deleted_at), ("", Some(6_000)));
    assert_eq!(
        view(&store, "bob", &id).await.unread_count,
        0,
        "deleted: not unread"
    );
}

async fn unread_total_sums_unread_over_conversations(store: Arc<dyn Store>) {
    let a = general(&store, "alice", &["bob"], 1_000).await;
    let b = general(&store, "alice", &["carol"], 1_000).await;
    let c = general(&store, "alice", &["bob"], 1_000).await;
    let d = general(&store, "bob", &["carol"], 1_000).await;
    for _ in 0..2 {
        send(&store, &a, "bob", "a", 2_000).await;
    }
    let mut in_b = Vec::new();
    for _ in 0..3 {
        in_b.push(send(&store, &b, "carol", "b", 2_000).await);
    }
    send(&store, &c, "bob", "c", 2_000).await;
    for _ in 0..4 {
        send(&store, &d, "bob", "d", 2_000).await;
    }
    assert_eq!(store.unread_total("alice").await.unwrap(), 6);
    assert_eq!(store.unread_total("carol").await.unwrap(), 4);
    assert_eq!(store.unread_total("bob").await.unwrap(), 0);

    store.hide(&c, "alice", Millis(0)).await.unwrap();
    assert_eq!(store.unread_total("alice").await.unwrap(), 5);
    store
        .delete_message(&in_b[0].id, Millis(3_000))
        .await
        .unwrap();
    assert_eq!(store.unread_total("alice").await.unwrap(), 4);
    store
        .mark_read(&a, "alice", None, Millis(3_000))
        .await
        .unwrap();
    assert_eq!(store.unread_total("alice").await.unwrap(), 2);
    send(&store, &c, "bob", "c again", 4_000).await;
    assert_eq!(store.unread_total("alice").await.unwrap(), 3);
    // Replying reads the conversation.
    send(&store, &b, "alice", "reply", 5_000).await;
    assert_eq!(store.unread_total("alice").await.unwrap(), 1);
    assert_eq!(store.unread_total("carol").await.unwrap(), 5);
}

async fn stats_count_visible_conversations(store: Arc<dyn Store>) {
    let a = general(&store, "alice", &["bob"], 1_000).await;
    let b = create(
        &store,
        &conversation("alice", &["bob"], "property_inquiry", 1_000),
    )
    .await;
    let c = create(&store, &conversation("alice", &["carol"], "support", 1_000)).await;
    let _d = general(&store, "alice", &["bob"], 1_000).await;
    let _not_alices = general(&store, "bob", &["carol"], 1_000).await;

    send(&store, &a, "bob", "1", 2_000).await;
    send(&store, &a, "bob", "2", 2_001).await;
    let mine = send(&store, &a, "alice", "3", 2_002).await;
    send(&store, &a, "bob", "4", 2_003).await;
    let mut in_b = Vec::new();
    for i in 0..3 {
        in_b.push(send(&store, &b, "bob", "b", 2_000 + i).await);
    }
    store
        .delete_message(&in_b[1].id, Millis(3_000))
        .await
        .unwrap();
    store
        .set_flags(&b, "alice", Some(true), None, Millis(0))
        .await
        .unwrap();
    send(&store, &c, "carol", "c", 2_000).await;
    send(&store, &c, "carol", "c", 2_001).await;
    store.hide(&c, "alice", Millis(0)).await.unwrap();

    let sorted = |mut s: StatsRecord| {
        s.by_type.sort();
        s
    };
    assert_eq!(
        sorted(store.stats("alice").await.unwrap()),
        StatsRecord {
            total: 3,
            archived: 1,
            unread_conversations: 2,
            unread_messages: 3,
            messages_sent: 1,
            messages_received: 5,
            by_type: vec![
                ("general".to_owned(), 2),
                ("property_inquiry".to_owned(), 1)
            ],
        }
    );

    // A new message brings the hidden conversation back (with only the new message).
    send(&store, &c, "carol", "c", 4_000).await;
    store.delete_message(&mine.id, Millis(4_000)).await.unwrap();
    assert_eq!(
        sorted(store.stats("alice").await.unwrap()),
        StatsRecord {
            total: 4,
            archived: 1,
            unread_conversations: 3,
            unread_messages: 4,
            messages_sent: 0,
            messages_received: 6,
            by_type: vec![
                ("general".to_owned(), 2),
                ("property_inquiry".to_owned(), 1),
                ("support".to_owned(), 1),
            ],
        }
    );
    let carol = sorted(store.stats("carol").await.unwrap());
    assert_eq!(
        (carol.total, carol.messages_sent, carol.messages_received),
        (2, 3, 0)
    );
}

// ---------------------------------------------------------------------------------------------
// The test databases themselves

async fn databases_are_isolated_and_reconnecting_keeps_data(db: &TestDb) {
    let store = connect(&db.url, 2).await.expect("connect");
    let id = general(&store, "alice", &["bob"], 1_000).await;
    send(&store, &id, "bob", "kept", 2_000).await;
    drop(store);

    // Migrating again is a no-op and the data is still there.
    let store = connect(&db.url, 2).await.expect("reconnect");
    assert_eq!(view(&store, "alice", &id).await.unread_count, 1);
    assert_eq!(send(&store, &id, "alice", "next", 3_000).await.seq, 2);

    // A sibling database sees none of it.
    let sibling = fresh_db(db.backend).await.expect("a second database");
    let other = connect(&sibling.url, 2).await.expect("connect sibling");
    assert!(list_ids(&other, "alice", &all()).await.is_empty());
    assert!(other.conversation("alice", &id).await.unwrap().is_none());
    general(&other, "alice", &["bob"], 1_000).await;
    assert_eq!(list_ids(&store, "alice", &all()).await, [id]);

    if db.backend == Backend::Postgres {
        // Everything, the migrations table included, lives in the test's own schema.
        let schema = db.schema().expect("a schema");
        let pool = sqlx::PgPool::connect(&db.url)
            .await
            .expect("raw connection");
        let current: String = sqlx::query_scalar("select current_schema()::text")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(current, schema);
        for table in [
            "_sqlx_migrations",
            "conversations",
            "participants",
            "messages",
        ] {
            let home: String = sqlx::query_scalar(
                "select n.nspname::text from pg_class c \
                 join pg_namespace n on n.oid = c.relnamespace where c.oid = $1::regclass",
            )
            .bind(table)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(home, schema, "{table}");
        }
        let applied: i64 =
            sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
                .fetch_one(&pool)
                .await
                .unwrap();
        let files = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migrations/postgres"
        ))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "sql")
        })
        .count();
        assert_eq!(
            applied,
            i64::try_from(files).unwrap(),
            "every migration applied"
        );
        pool.close().await;
        assert_ne!(sibling.schema(), db.schema());
    }
}

// ---------------------------------------------------------------------------------------------
// Group commit and stored counters

async fn a_batch_numbers_each_conversation_and_answers_each_message(store: Arc<dyn Store>) {
    let a = general(&store, "alice", &["bob"], 1_000).await;
    let b = general(&store, "alice", &["carol", "dave"], 1_000).await;
    let blocked = general(&store, "bob", &["carol"], 1_000).await;
    send(&store, &a, "bob", "history", 1_500).await;
    store
        .update_conversation(&blocked, None, Some((true, "bob")), Millis(1_600))
        .await
        .unwrap();
    let stored = insert(
        &store,
        &with_client_id(message(&b, "carol", "old", 1_700), "c-old"),
    )
    .await;

    let batch = vec![
        message(&a, "alice", "a1", 2_000),
        with_client_id(message(&b, "dave", "b1", 2_001), "c-1"),
        message(&a, "bob", "a2", 2_002),
        with_client_id(message(&b, "dave", "b1 again", 2_003), "c-1"),
        message(&blocked, "carol", "nope", 2_004),
        with_client_id(message(&b, "carol", "old again", 2_005), "c-old"),
        message(&b, "alice", "b2", 2_006),
    ];
    let inserted = store.insert_messages(&batch).await.unwrap();
    let seq = |i: usize| match &inserted.outcomes[i] {
        InsertOutcome::Created(m) => {
            assert_eq!(m.id, batch[i].id);
            m.seq
        }
        other => panic!("message {i}: expected Created, got {other:?}"),
    };
    // Each conversation numbers its own messages in batch order, after what it had.
    assert_eq!([seq(0), seq(2)], [2, 3]);
    assert_eq!([seq(1), seq(6)], [2, 3]);
    // A retry within the batch and one of a stored message take no seq.
    let first_b1 = match &inserted.outcomes[1] {
        InsertOutcome::Created(m) => m.clone(),
        _ => unreachable!(),
    };
    assert_eq!(inserted.outcomes[3], InsertOutcome::Duplicate(first_b1));
    assert_eq!(inserted.outcomes[5], InsertOutcome::Duplicate(stored));
    assert_eq!(inserted.outcomes[4], InsertOutcome::Blocked);
    assert_eq!(view(&store, "bob", &blocked).await.conversation.last_seq, 0);

    // The counts each conversation's participants get announced are those after the batch.
    let counts = inserted.unread_of(&a).expect("counts of a");
    let of = |user: &str| counts.iter().find(|c| c.user_id == user).unwrap().clone();
    // Alice read up to her a1 (seq 2), then bob's a2 came: 1 unread. Bob sent the last one.
    assert_eq!((of("alice").unread, of("bob").unread), (1, 0));
    // Alice's total over both conversations: that 1 in a, nothing in b (her b2 is b's newest).
    assert_eq!(of("alice").total, 1);
    let counts_b = inserted.unread_of(&b).expect("counts of b");
    let carol = counts_b.iter().find(|c| c.user_id == "carol").unwrap();
    // Carol sent "old" (seq 1); dave's b1 and alice's b2 came after.
    assert_eq!(carol.unread, 2);
    assert!(inserted.unread_of(&blocked).is_none());

    let view_a = view(&store, "alice", &a).await;
    assert_eq!(view_a.conversation.last_seq, 3);
    assert_eq!(
        view_a.conversation.last_message_id.as_deref(),
        Some(batch[2].id.as_str())
    );
    assert_eq!(view_a.unread_count, 1);
    assert_eq!(store.counter_drift().await.unwrap(), 0);
}

/// Concurrent batches over overlapping conversations, with reads, deletes, hides and archives
/// running beside them: no deadlock, no lost update, and every stored counter equal to what
/// the messages say, also on PostgreSQL where transactions really run at once.
async fn concurrent_batches_and_changes_keep_every_counter_exact(store: Arc<dyn Store>) {
    let users = ["u0", "u1", "u2", "u3", "u4", "u5"];
    let mut conversations = Vec::new();
    for (i, creator) in users.iter().enumerate() {
        let other = users[(i + 1) % users.len()];
        let third = users[(i + 2) % users.len()];
        conversations.push((
            general(&store, creator, &[other], 1_000).await,
            [*creator, other],
        ));
        conversations.push((
            create(&store, &conversation(creator, &[third], "support", 1_000)).await,
            [*creator, third],
        ));
    }
    let conversations = Arc::new(conversations);
    let tasks = (0..8).map(|worker| {
        let store = Arc::clone(&store);
        let conversations = Arc::clone(&conversations);
        tokio::spawn(async move {
            let mut sent: Vec<MessageRecord> = Vec::new();
            for round in 0..12usize {
                let now = 2_000 + i64::try_from(round).unwrap();
                // A batch over several conversations, in an order of its own.
                let batch: Vec<NewMessage> = (0..5)
                    .map(|k| {
                        let (id, members) =
                            &conversations[(worker * 3 + round * 5 + k) % conversations.len()];
                        message(
                            id,
                            members[(worker + k) % 2],
                            &format!("w{worker} r{round} {k}"),
                            now,
                        )
                    })
                    .collect();
                let inserted = store.insert_messages(&batch).await.unwrap();
                for outcome in inserted.outcomes {
                    if let InsertOutcome::Created(m) = outcome {
                        sent.push(m);
                    }
                }
                let (id, members) = &conversations[(worker + round) % conversations.len()];
                let reader = members[round % 2];
                let up_to = (round % 3 == 0).then_some(2);
                store
                    .mark_read(id, reader, up_to, Millis(now))
                    .await
                    .unwrap();
                match round % 4 {
                    0 => {
                        if let Some(m) = sent.pop() {
                            store.delete_message(&m.id, Millis(now)).await.unwrap();
                            // Deleting twice changes nothing more.
                            store.delete_message(&m.id, Millis(now)).await.unwrap();
                        }
                    }
                    1 => {
                        store
                            .hide(id, members[(round + 1) % 2], Millis(now))
                            .await
                            .unwrap();
                    }
                    2 => {
                        store
                            .set_flags(id, reader, Some(worker % 2 == 0), None, Millis(now))
                            .await
                            .unwrap();
                    }
                    _ => {}
                }
            }
        })
    });
    for task in join_all(tasks).await {
        task.unwrap();
    }
    assert_eq!(
        store.counter_drift().await.unwrap(),
        0,
        "stored counters drifted"
    );
    // And seqs stayed gap-free in every conversation.
    for (id, members) in conversations.iter() {
        let last = view(&store, members[0], id).await.conversation.last_seq;
        let all = store
            .list_messages(id, 0, SeqRange::After(0), 1_000)
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>()
        );
    }
}

/// The change feed's last rule, with writers on two "replicas" (two stores, two connection
/// pools) at once: a reader polling the landlord's feed must only ever see a gap-free prefix
/// (a change never becomes visible after a later one already shown), and in the end every
/// change is there once. Positions handed out before commit would show gaps here, as
/// transactions commit out of order.
async fn concurrent_writers_on_two_replicas_fill_a_feed_in_order(db: &TestDb) {
    // SQLite serves one process (the embedded mode): one store stands for both.
    let one = connect(&db.url, 4).await.expect("replica one");
    let two = if db.backend == Backend::Postgres {
        connect(&db.url, 4).await.expect("replica two")
    } else {
        one.clone()
    };
    let replicas = [one, two];
    let mut conversations = Vec::new();
    for t in 0..8 {
        let tenant = format!("tenant{t}");
        conversations.push(general(&replicas[0], "landlord", &[tenant.as_str()], 1_000).await);
    }
    let start = replicas[0].feed("landlord", 0, 1).await.unwrap().head;
    assert_eq!(start, 8, "one conversation_updated each");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = replicas[1].clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut since = 0;
            let mut polls = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let page = store.feed("landlord", since, 100).await.unwrap();
                for (i, e) in page.entries.iter().enumerate() {
                    assert_eq!(
                        e.pos,
                        since + 1 + i as i64,
                        "poll {polls}: a gap after {since}: {:?}",
                        page.entries.iter().map(|e| e.pos).collect::<Vec<_>>()
                    );
                }
                assert!(
                    page.head == since || !page.entries.is_empty(),
                    "poll {polls}: head {} visible, entry {} not",
                    page.head,
                    since + 1
                );
                since += page.entries.len() as i64;
                polls += 1;
                if finished && page.entries.is_empty() {
                    return (since, polls);
                }
            }
        })
    };
    let writers = (0..8).map(|w| {
        let store = replicas[w % 2].clone();
        let conversations = conversations.clone();
        tokio::spawn(async move {
            let mut now = 2_000;
            for round in 0..12usize {
                now += 1;
                // A batch over three conversations, from the tenants.
                let batch: Vec<NewMessage> = (0..3)
                    .map(|k| {
                        let c = (w + round + k) % conversations.len();
                        message(&conversations[c], &format!("tenant{c}"), "hi", now)
                    })
                    .collect();
                let inserted = store.insert_messages(&batch).await.unwrap();
                assert!(
                    inserted
                        .outcomes
                        .iter()
                        .all(|o| matches!(o, InsertOutcome::Created(_)))
                );
                // The landlord reads one of them.
                let c = (w + round) % conversations.len();
                store
                    .mark_read(&conversations[c], "landlord", None, Millis(now))
                    .await
                    .unwrap();
            }
        })
    });
    for writer in join_all(writers).await {
        writer.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let (seen, polls) = reader.await.unwrap();
    let head = replicas[0].feed("landlord", 0, 1).await.unwrap().head;
    // 8 writers x 12 rounds: 3 new_message each, and a messages_read when the read moved.
    assert!(head >= start + 8 * 12 * 3, "head {head}");
    assert_eq!(
        seen, head,
        "the reader saw every entry once ({polls} polls)"
    );
    let all = replicas[0].feed("landlord", 0, 10_000).await.unwrap();
    let positions: Vec<i64> = all.entries.iter().map(|e| e.pos).collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>());
}

/// A send with less than the writer's margin left is answered `Expired` without being written
/// (in a batch it would make every other send of the batch miss its deadline with it); one
/// with time to spare is written.
async fn the_writer_turns_away_a_send_about_to_time_out(store: Arc<dyn Store>) {
    use chat_shared::store::writer::BatchWriter;
    use tokio::time::{Duration, Instant};
    let id = general(&store, "u_a", &["u_b"], 1_000).await;
    let writer = BatchWriter::start(
        store.clone(),
        64,
        1,
        chat_shared::metrics::Metrics::new().messages_persisted,
    );
    let late = writer
        .insert(
            message(&id, "u_a", "too late", 2_000),
            Instant::now() + Duration::from_millis(30),
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::Expired)),
        "a send with 30 ms left: {late:?}"
    );
    let on_time = writer
        .insert(
            message(&id, "u_a", "on time", 3_000),
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .expect("a send with time left is written");
    assert!(matches!(on_time.outcome, InsertOutcome::Created(_)));
    let page = store
        .list_messages(&id, 0, SeqRange::After(0), 10)
        .await
        .unwrap();
    let contents: Vec<&str> = page.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["on time"]);
}
