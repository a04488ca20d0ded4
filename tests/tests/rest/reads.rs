//! Read state: `PUT /read`, unread counts, and `readBy`/`status` derived from read positions.

use crate::common::*;
use chat_shared::time::Clock;
use chat_tests::app::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

both_backends!(
    read_moves_forward_only,
    read_body_may_be_omitted,
    unread_counts_only_count_what_others_sent,
    status_and_read_by_follow_read_positions,
    group_messages_are_read_when_everyone_read_them,
);

async fn read_moves_forward_only(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    // Nothing to read yet.
    let r = ok(&bob.mark_read(&id, json!({})).await);
    assert_eq!(r["lastReadSeq"], 0);
    assert_eq!(r["unreadCount"], 0);
    for i in 1..=5 {
        alice.say(&id, &format!("m{i}")).await;
    }
    assert_eq!(unread(&bob, &id).await, 5);
    app.clock.advance(Duration::from_secs(10));
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": 2 })).await);
    assert_eq!(
        r,
        json!({
            "conversationId": id.as_str(),
            "lastReadSeq": 2,
            "readAt": app.clock.now().to_rfc3339(),
            "unreadCount": 3
        })
    );
    assert_time(&r["readAt"], "readAt");
    assert_eq!(unread(&bob, &id).await, 3);
    // Backwards is ignored.
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": 1 })).await);
    assert_eq!(r["lastReadSeq"], 2);
    assert_eq!(r["unreadCount"], 3);
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": 0 })).await);
    assert_eq!(r["lastReadSeq"], 2);
    // Forward again.
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": 4 })).await);
    assert_eq!(r["lastReadSeq"], 4);
    assert_eq!(r["unreadCount"], 1);
    // Past the end reads everything, and no further.
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": 1000 })).await);
    assert_eq!(r["lastReadSeq"], 5);
    assert_eq!(r["unreadCount"], 0);
    alice.say(&id, "m6").await;
    assert_eq!(
        unread(&bob, &id).await,
        1,
        "the position did not jump to 1000"
    );
    // Without upToSeq: everything.
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": null })).await);
    assert_eq!(r["lastReadSeq"], 6);
    assert_eq!(r["unreadCount"], 0);
    // Alice never had anything unread: her own messages moved her position.
    let r = ok(&alice.mark_read(&id, json!({ "upToSeq": 1 })).await);
    assert_eq!(r["lastReadSeq"], 6);
    assert_eq!(r["unreadCount"], 0);
}

async fn read_body_may_be_omitted(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    alice.say(&id, "one").await;
    alice.say(&id, "two").await;
    // No body at all.
    let r = ok(&bob
        .call(Method::PUT, &format!("/conversations/{id}/read"), None)
        .await);
    assert_eq!(r["lastReadSeq"], 2);
    assert_eq!(r["unreadCount"], 0);
    alice.say(&id, "three").await;
    // An empty body sent as JSON content.
    let r = ok(&bob
        .call_raw(
            Method::PUT,
            &format!("/conversations/{id}/read"),
            Vec::new(),
        )
        .await);
    assert_eq!(r["lastReadSeq"], 3);
}

async fn unread_counts_only_count_what_others_sent(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    alice.say(&id, "a1").await;
    alice.say(&id, "a2").await;
    let b3 = bob.say(&id, "b3").await;
    // Sending moves the sender's own position to their message.
    assert_eq!(
        unread(&bob, &id).await,
        0,
        "bob's send read what came before"
    );
    assert_eq!(unread(&alice, &id).await, 1);
    let a4 = alice.say(&id, "a4").await;
    alice.say(&id, "a5").await;
    assert_eq!(unread(&alice, &id).await, 0);
    assert_eq!(unread(&bob, &id).await, 2);
    // Deleted messages are not unread.
    alice
        .delete_message(&str_of(&a4["id"]))
        .await
        .assert_status(204);
    assert_eq!(unread(&bob, &id).await, 1);
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": 3 })).await);
    assert_eq!(r["unreadCount"], 1);
    // The inbox says the same as GET.
    let page = ok(&bob.list_conversations("").await);
    assert_eq!(items(&page)[0]["unreadCount"], 1);
    // Bob's own message, deleted, changes nothing for bob.
    bob.delete_message(&str_of(&b3["id"]))
        .await
        .assert_status(204);
    assert_eq!(unread(&bob, &id).await, 1);
    assert_eq!(unread(&alice, &id).await, 0);
}

async fn status_and_read_by_follow_read_positions(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let m1 = alice.say(&id, "one").await;
    alice.say(&id, "two").await;
    assert_eq!(m1["status"], "sent");
    assert_eq!(m1["readBy"], json!([]));
    app.clock.advance(Duration::from_secs(7));
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": 1 })).await);
    let read_at = r["readAt"].clone();
    let page = ok(&alice.list_messages(&id, "?after=0").await);
    let (first, second) = (&items(&page)[0], &items(&page)[1]);
    assert_eq!(first["status"], "read");
    assert_eq!(
        first["readBy"],
        json!([{ "userId": "u_bob", "readAt": read_at }])
    );
    assert_eq!(second["status"], "sent");
    assert_eq!(second["readBy"], json!([]));
    // Bob's reply: his read position covers everything before it.
    let b3 = bob.say(&id, "three").await;
    assert_eq!(b3["status"], "sent", "alice has not read bob's reply");
    let page = ok(&bob.list_messages(&id, "?after=0").await);
    let statuses: Vec<&Value> = items(&page).iter().map(|m| &m["status"]).collect();
    assert_eq!(statuses, vec!["read", "read", "sent"]);
    // The sender never appears in readBy of their own message.
    for m in items(&page) {
        for r in m["readBy"].as_array().unwrap() {
            assert_ne!(r["userId"], m["senderId"], "{m}");
        }
    }
    alice.mark_read(&id, json!({})).await.assert_status(200);
    let page = ok(&bob.list_messages(&id, "").await);
    assert_eq!(items(&page)[0]["status"], "read");
    assert_eq!(items(&page)[0]["readBy"][0]["userId"], "u_alice");
}

async fn group_messages_are_read_when_everyone_read_them(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let carol = app.user("u_carol");
    let id = str_of(
        &alice
            .create_conversation(json!({ "participantIds": ["u_bob", "u_carol"] }))
            .await
            .assert_status(201)["id"],
    );
    alice.say(&id, "team").await;
    bob.mark_read(&id, json!({})).await.assert_status(200);
    let m = &first_item(&alice.list_messages(&id, "").await);
    assert_eq!(m["status"], "sent", "carol has not read it");
    let readers: Vec<&Value> = m["readBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["userId"])
        .collect();
    assert_eq!(readers, vec!["u_bob"]);
    assert_eq!(unread(&carol, &id).await, 1);
    assert_eq!(unread(&bob, &id).await, 0);
    carol.mark_read(&id, json!({})).await.assert_status(200);
    let m = &first_item(&alice.list_messages(&id, "").await);
    assert_eq!(m["status"], "read");
    let mut readers: Vec<String> = m["readBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(&r["userId"]))
        .collect();
    readers.sort();
    assert_eq!(readers, vec!["u_bob", "u_carol"]);
}
