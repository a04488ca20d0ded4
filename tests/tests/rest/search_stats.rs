//! `GET /conversations/search` and `GET /stats`.

use crate::common::*;
use chat_tests::app::TestApp;
use serde_json::json;
use std::collections::HashSet;

both_backends!(
    search_matches_title_property_participants_and_text,
    search_pages_with_a_cursor,
    stats_count_a_known_scenario,
);

async fn found(app: &TestApp, user: &str, q: &str) -> HashSet<String> {
    let page = ok(&app.user(user).search(&format!("?q={q}")).await);
    for c in items(&page) {
        assert_conversation_shape(c);
    }
    ids(&page).into_iter().collect()
}

fn set(ids: &[&String]) -> HashSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

async fn search_matches_title_property_participants_and_text(app: TestApp) {
    let alice = app.user("u_alice");
    let titled = alice.conversation_with("u_bob").await;
    alice
        .update_conversation(&titled, json!({ "title": "Sunny loft downtown" }))
        .await
        .assert_status(200);
    let property = str_of(
        &alice
            .create_conversation(json!({
                "participantIds": ["u_carol"],
                "propertyId": "prop_elm_12",
                "metadata": { "propertyTitle": "2BR flat", "propertyAddress": "12 Elm Street" }
            }))
            .await
            .assert_status(201)["id"],
    );
    let zed = alice.conversation_with("u_zed").await;
    let texted = alice.conversation_with("u_dan").await;
    app.user("u_dan")
        .say(&texted, "The apartment is available from June")
        .await;
    // Someone else's conversation that would match everything.
    let eve = app.user("u_eve");
    let foreign = eve.conversation_with("u_frank").await;
    eve.update_conversation(&foreign, json!({ "title": "Sunny loft 12 Elm Street" }))
        .await
        .assert_status(200);
    eve.say(&foreign, "available apartment u_zed prop_elm_12")
        .await;

    // Title (substring, any case, every word must match).
    assert_eq!(found(&app, "u_alice", "sunny").await, set(&[&titled]));
    assert_eq!(
        found(&app, "u_alice", "SUNNY%20Loft").await,
        set(&[&titled])
    );
    assert_eq!(found(&app, "u_alice", "loft").await, set(&[&titled]));
    assert!(found(&app, "u_alice", "sunny%20elm").await.is_empty());
    // Property id, metadata and the title taken from it.
    assert_eq!(found(&app, "u_alice", "elm").await, set(&[&property]));
    assert_eq!(
        found(&app, "u_alice", "12%20Elm%20street").await,
        set(&[&property])
    );
    assert_eq!(
        found(&app, "u_alice", "prop_elm_12").await,
        set(&[&property])
    );
    assert_eq!(found(&app, "u_alice", "2BR").await, set(&[&property]));
    // Participant ids.
    assert_eq!(found(&app, "u_alice", "u_zed").await, set(&[&zed]));
    assert_eq!(found(&app, "u_alice", "zed").await, set(&[&zed]));
    assert_eq!(
        found(&app, "u_alice", "u_alice").await,
        set(&[&titled, &property, &zed, &texted])
    );
    // Message text, by word prefix.
    assert_eq!(found(&app, "u_alice", "apartment").await, set(&[&texted]));
    assert_eq!(found(&app, "u_alice", "avail").await, set(&[&texted]));
    assert_eq!(found(&app, "u_alice", "JUNE").await, set(&[&texted]));
    assert_eq!(
        found(&app, "u_alice", "available%20june").await,
        set(&[&texted])
    );
    assert!(found(&app, "u_alice", "nothing-like-this").await.is_empty());
    // Characters that mean something to SQL or full-text syntax are just characters.
    for q in [
        "%25", "_", "%22", "%27", "*", "a%26b", "%3A*", "!", "(", "%5C",
    ] {
        let res = alice.search(&format!("?q={q}")).await;
        res.assert_status(200);
        assert!(
            !ids(&res.body).contains(&foreign),
            "q={q} leaked another user's conversation"
        );
    }
    assert!(found(&app, "u_alice", "%25%25%25").await.is_empty());
    // Eve sees only hers, for the same words.
    for q in ["sunny", "elm", "avail", "u_zed", "u_alice"] {
        let got = found(&app, "u_eve", q).await;
        assert!(
            got.is_subset(&set(&[&foreign])),
            "eve searched {q}: {got:?}"
        );
    }
    assert_eq!(found(&app, "u_eve", "sunny").await, set(&[&foreign]));

    // What delete-for-me hid is not found; what came after is.
    let gina = app.user("u_gina");
    let hidden = alice.conversation_with("u_gina").await;
    gina.say(&hidden, "secret combination").await;
    alice
        .update_conversation(&hidden, json!({ "title": "Hidden gem" }))
        .await
        .assert_status(200);
    assert_eq!(found(&app, "u_alice", "secret").await, set(&[&hidden]));
    alice.delete_conversation(&hidden).await.assert_status(204);
    assert!(found(&app, "u_alice", "secret").await.is_empty());
    assert!(found(&app, "u_alice", "gem").await.is_empty());
    assert_eq!(found(&app, "u_gina", "secret").await, set(&[&hidden]));
    gina.say(&hidden, "public news").await;
    assert_eq!(found(&app, "u_alice", "gem").await, set(&[&hidden]));
    assert_eq!(found(&app, "u_alice", "news").await, set(&[&hidden]));
    assert!(found(&app, "u_alice", "secret").await.is_empty());
}

async fn search_pages_with_a_cursor(app: TestApp) {
    let alice = app.user("u_alice");
    let mut all = HashSet::new();
    for i in 0..5 {
        let id = alice.conversation_with(&format!("u_match{i}")).await;
        all.insert(id);
    }
    alice.conversation_with("u_other").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let q = match &cursor {
            None => "?q=match&limit=2".to_owned(),
            Some(c) => format!("?q=match&limit=2&cursor={c}"),
        };
        let page = ok(&alice.search(&q).await);
        sizes.push(items(&page).len());
        seen.extend(ids(&page));
        match next_cursor(&page) {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(sizes.len() < 10);
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen.len(), 5, "no repeats: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), all);
    // Same order as the inbox: most recent activity first.
    let inbox: Vec<String> = ids(&ok(&alice.list_conversations("?limit=100").await))
        .into_iter()
        .filter(|id| all.contains(id))
        .collect();
    assert_eq!(seen, inbox);
}

async fn stats_count_a_known_scenario(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    assert_eq!(
        ok(&app.user("u_new").unread().await),
        json!({ "totalUnread": 0 })
    );
    // A newcomer: zeros, every type present.
    let zero = ok(&app.user("u_new").stats().await);
    assert_eq!(
        zero,
        json!({
            "totalConversations": 0, "activeConversations": 0, "archivedConversations": 0,
            "unreadConversations": 0, "unreadMessages": 0, "messagesSent": 0,
            "messagesReceived": 0, "propertyInquiries": 0,
            "byType": { "property_inquiry": 0, "general": 0, "support": 0 }
        })
    );

    // 1: general with bob: alice 2, then bob 3 (3 unread for alice).
    let general = alice.conversation_with("u_bob").await;
    let a1 = alice.say(&general, "a1").await;
    alice.say(&general, "a2").await;
    bob.say(&general, "b1").await;
    bob.say(&general, "b2").await;
    let b3 = bob.say(&general, "b3").await;
    // 2: property inquiry from carol, archived by alice (1 unread).
    let carol = app.user("u_carol");
    let inquiry = str_of(
        &carol
            .create_conversation(json!({
                "participantIds": ["u_alice"], "propertyId": "prop_1", "initialMessage": "c1"
            }))
            .await
            .assert_status(201)["id"],
    );
    alice.archive(&inquiry, json!({})).await.assert_status(200);
    // 3: support, empty.
    alice
        .create_conversation(json!({ "participantIds": ["u_dave"], "type": "support" }))
        .await
        .assert_status(201);
    // 4: general with erin, read.
    let erin_chat = alice.conversation_with("u_erin").await;
    app.user("u_erin").say(&erin_chat, "e1").await;
    alice
        .mark_read(&erin_chat, json!({}))
        .await
        .assert_status(200);

    let stats = ok(&alice.stats().await);
    assert_eq!(
        stats,
        json!({
            "totalConversations": 4, "activeConversations": 3, "archivedConversations": 1,
            "unreadConversations": 2, "unreadMessages": 4, "messagesSent": 2,
            "messagesReceived": 5, "propertyInquiries": 1,
            "byType": { "property_inquiry": 1, "general": 2, "support": 1 }
        })
    );

    // Deleted messages count nowhere; a hidden conversation and its history neither.
    bob.delete_message(&str_of(&b3["id"]))
        .await
        .assert_status(204);
    alice
        .delete_message(&str_of(&a1["id"]))
        .await
        .assert_status(204);
    alice
        .delete_conversation(&erin_chat)
        .await
        .assert_status(204);
    let stats = ok(&alice.stats().await);
    assert_eq!(
        stats,
        json!({
            "totalConversations": 3, "activeConversations": 2, "archivedConversations": 1,
            "unreadConversations": 2, "unreadMessages": 3, "messagesSent": 1,
            "messagesReceived": 3, "propertyInquiries": 1,
            "byType": { "property_inquiry": 1, "general": 1, "support": 1 }
        })
    );
    // Reading and unarchiving show up at once.
    alice
        .mark_read(&general, json!({}))
        .await
        .assert_status(200);
    alice
        .archive(&inquiry, json!({ "archived": false }))
        .await
        .assert_status(200);
    let stats = ok(&alice.stats().await);
    assert_eq!(stats["unreadConversations"], 1);
    assert_eq!(stats["unreadMessages"], 1);
    // The badge endpoint says the same.
    assert_eq!(ok(&alice.unread().await), json!({ "totalUnread": 1 }));
    assert_eq!(stats["archivedConversations"], 0);
    assert_eq!(stats["activeConversations"], 3);

    // Bob's own view of the same events.
    let stats = ok(&bob.stats().await);
    assert_eq!(
        stats,
        json!({
            "totalConversations": 1, "activeConversations": 1, "archivedConversations": 0,
            "unreadConversations": 0, "unreadMessages": 0, "messagesSent": 2,
            "messagesReceived": 1, "propertyInquiries": 0,
            "byType": { "property_inquiry": 0, "general": 1, "support": 0 }
        })
    );
    // Carol: one inquiry, one message sent, nothing received.
    let stats = ok(&carol.stats().await);
    assert_eq!(stats["totalConversations"], 1);
    assert_eq!(stats["propertyInquiries"], 1);
    assert_eq!(stats["messagesSent"], 1);
    assert_eq!(stats["messagesReceived"], 0);
}
