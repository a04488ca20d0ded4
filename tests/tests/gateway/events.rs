//! Server-to-client events: who gets what, exactly once per socket, whether the change came
//! by socket or by REST.

use chat_tests::app::TestApp;
use serde_json::{Value, json};
use std::time::Duration;

both_backends! {
    messages_reach_every_socket_of_every_participant_once,
    rest_changes_are_pushed_to_sockets,
    reads_are_announced_with_exact_counts,
    conversation_updates_go_to_the_right_users,
}

/// Long enough for a duplicate to arrive if one were coming.
const SETTLE: Duration = Duration::from_millis(400);

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn messages_reach_every_socket_of_every_participant_once(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut alice = app.socket("u_alice").await;
    let mut bob_in_room = app.socket("u_bob").await;
    let mut bob_elsewhere = app.socket("u_bob").await;
    let mut carol = app.socket("u_carol").await;
    let ack = bob_in_room
        .call("join_conversation", json!({ "conversationId": conv }))
        .await;
    assert_eq!(ack["ok"], json!(true));
    assert_eq!(ack["conversation"]["id"], json!(conv));
    // Alice joined too: being in the room and in her user room still means one copy.
    alice
        .call("join_conversation", json!({ "conversationId": conv }))
        .await;

    let by_socket = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "by socket" }),
        )
        .await;
    assert_eq!(by_socket["ok"], json!(true), "{by_socket}");
    let by_rest = app.user("u_alice").say(&conv, "by rest").await;
    let expected = vec![
        by_socket["message"]["id"].as_str().unwrap().to_owned(),
        by_rest["id"].as_str().unwrap().to_owned(),
    ];
    let mut want = expected.clone();
    want.sort();
    for (who, socket) in [
        ("bob in the room", &mut bob_in_room),
        ("bob elsewhere", &mut bob_elsewhere),
        ("alice (sender)", &mut alice),
    ] {
        let mut got = ids(&socket.take_events("new_message", SETTLE * 2).await);
        got.sort();
        assert_eq!(got, want, "{who}: each message exactly once");
    }
    // Exactly once, counted from scratch on a fresh send.
    let third = app.user("u_alice").say(&conv, "third").await;
    for (who, socket) in [
        ("bob in the room", &mut bob_in_room),
        ("bob elsewhere", &mut bob_elsewhere),
    ] {
        let got = socket.take_events("new_message", SETTLE).await;
        assert_eq!(
            ids(&got),
            vec![third["id"].as_str().unwrap().to_owned()],
            "{who}"
        );
        let payload = &got[0];
        assert_eq!(payload["seq"], json!(3));
        assert_eq!(payload["senderId"], json!("u_alice"));
        assert_eq!(payload["recipientId"], json!("u_bob"));
        assert_eq!(payload["conversationId"], json!(conv));
    }
    // A stranger hears nothing.
    assert!(carol.take_events("new_message", SETTLE).await.is_empty());
}

async fn rest_changes_are_pushed_to_sockets(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut bob = app.socket("u_bob").await;
    let message = app.user("u_alice").say(&conv, "first draft").await;
    let id = message["id"].as_str().unwrap().to_owned();
    bob.expect_event("new_message", |m| m["id"] == json!(id))
        .await;

    app.user("u_alice")
        .edit_message(&id, json!({ "content": "final" }))
        .await
        .assert_status(200);
    let edited = bob
        .expect_event("message_edited", |m| m["id"] == json!(id))
        .await;
    assert_eq!(
        (edited["content"].clone(), edited["isEdited"].clone()),
        (json!("final"), json!(true))
    );

    app.user("u_alice")
        .delete_message(&id)
        .await
        .assert_status(204);
    let deleted = bob
        .expect_event("message_deleted", |m| m["id"] == json!(id))
        .await;
    assert_eq!(deleted["isDeleted"], json!(true));
    assert_eq!(deleted["content"], json!(""));
    assert_eq!(deleted["seq"], json!(1));
    // The deleted message no longer counts for bob.
    let counts = bob
        .expect_event("unread_count_updated", |u| u["unreadCount"] == json!(0))
        .await;
    assert_eq!(counts["totalUnread"], json!(0));
    // Deleting again announces nothing new.
    app.user("u_alice")
        .delete_message(&id)
        .await
        .assert_status(204);
    assert!(
        bob.take_events("message_deleted", Duration::from_millis(300))
            .await
            .is_empty()
    );
}

async fn reads_are_announced_with_exact_counts(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let other = app.user("u_carol").conversation_with("u_bob").await;
    app.user("u_carol").say(&other, "elsewhere").await;
    let mut alice = app.socket("u_alice").await;
    let mut bob = app.socket("u_bob").await;
    let mut bob_phone = app.socket("u_bob").await;
    for i in 1..=3 {
        app.user("u_alice").say(&conv, &format!("m{i}")).await;
        let update = bob
            .expect_event("unread_count_updated", |u| {
                u["conversationId"] == json!(conv) && u["unreadCount"] == json!(i)
            })
            .await;
        assert_eq!(update["totalUnread"], json!(i + 1), "{update}");
    }
    let ack = bob_phone
        .call(
            "mark_as_read",
            json!({ "conversationId": conv, "upToSeq": 2 }),
        )
        .await;
    assert_eq!(
        (
            ack["ok"].clone(),
            ack["lastReadSeq"].clone(),
            ack["unreadCount"].clone()
        ),
        (json!(true), json!(2), json!(1)),
        "{ack}"
    );
    for socket in [&mut alice, &mut bob, &mut bob_phone] {
        let read = socket
            .expect_event("messages_read", |r| r["conversationId"] == json!(conv))
            .await;
        assert_eq!(
            (read["userId"].clone(), read["lastReadSeq"].clone()),
            (json!("u_bob"), json!(2))
        );
        assert!(read["readAt"].is_string());
    }
    for socket in [&mut bob, &mut bob_phone] {
        socket
            .expect_event("unread_count_updated", |u| {
                u["unreadCount"] == json!(1) && u["totalUnread"] == json!(2)
            })
            .await;
    }
    // The reader's counts are theirs alone; a read that moves nothing announces nothing.
    assert!(
        alice
            .take_events("unread_count_updated", Duration::from_millis(200))
            .await
            .iter()
            .all(|u| u["unreadCount"] == json!(0))
    );
    bob.call(
        "mark_as_read",
        json!({ "conversationId": conv, "upToSeq": 1 }),
    )
    .await;
    assert!(
        alice
            .take_events("messages_read", Duration::from_millis(300))
            .await
            .is_empty()
    );
    // REST reads are announced the same way.
    app.user("u_bob")
        .mark_read(&conv, json!({}))
        .await
        .assert_status(200);
    alice
        .expect_event("messages_read", |r| r["lastReadSeq"] == json!(3))
        .await;
}

async fn conversation_updates_go_to_the_right_users(app: TestApp) {
    let mut alice = app.socket("u_alice").await;
    let mut bob = app.socket("u_bob").await;
    let mut carol = app.socket("u_carol").await;
    let created = app
        .user("u_alice")
        .create_conversation(
            json!({ "participantIds": ["u_bob"], "propertyId": "prop_1", "title": "Flat" }),
        )
        .await;
    let conv = created.assert_status(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for socket in [&mut alice, &mut bob] {
        let c = socket
            .expect_event("conversation_updated", |c| c["id"] == json!(conv))
            .await;
        assert_eq!(c["type"], json!("property_inquiry"));
    }
    // Archive: the user alone, with their own view.
    app.user("u_bob")
        .archive(&conv, json!({}))
        .await
        .assert_status(200);
    let mine = bob
        .expect_event("conversation_updated", |c| c["archived"] == json!(true))
        .await;
    assert_eq!(mine["status"], json!("archived"));
    assert!(
        alice
            .take_events("conversation_updated", Duration::from_millis(300))
            .await
            .is_empty()
    );
    // Rename: everyone, each with their own flags.
    app.user("u_alice")
        .update_conversation(&conv, json!({ "title": "Renamed" }))
        .await
        .assert_status(200);
    let a = alice
        .expect_event("conversation_updated", |c| c["title"] == json!("Renamed"))
        .await;
    let b = bob
        .expect_event("conversation_updated", |c| c["title"] == json!("Renamed"))
        .await;
    assert_eq!(
        (a["archived"].clone(), b["archived"].clone()),
        (json!(false), json!(true))
    );
    // A PATCH that changes nothing announces nothing.
    app.user("u_alice")
        .update_conversation(&conv, json!({ "title": "Renamed", "blocked": false }))
        .await
        .assert_status(200);
    assert!(
        alice
            .take_events("conversation_updated", Duration::from_millis(300))
            .await
            .is_empty()
    );
    assert!(
        carol
            .take_events("conversation_updated", Duration::from_millis(200))
            .await
            .is_empty()
    );
}

both_backends! {
    delete_for_me_updates_the_users_view_and_badge,
}

async fn delete_for_me_updates_the_users_view_and_badge(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let old = app.user("u_alice").say(&conv, "old").await;
    let mut alice = app.socket("u_alice").await;
    let mut bob = app.socket("u_bob").await;
    let _ = bob.take_events("unread_count_updated", SETTLE).await;
    app.user("u_bob")
        .delete_conversation(&conv)
        .await
        .assert_status(204);
    // Bob's own view and badge change.
    bob.expect_event("conversation_updated", |c| c["id"] == json!(conv))
        .await;
    bob.expect_event("unread_count_updated", |u| {
        u["conversationId"] == json!(conv)
            && u["unreadCount"] == json!(0)
            && u["totalUnread"] == json!(0)
    })
    .await;
    // An edit of a message bob hid still reaches every participant (the contract's
    // recipients); bob's client holds no such message and ignores it.
    let id = old["id"].as_str().unwrap();
    app.user("u_alice")
        .edit_message(id, json!({ "content": "old, edited" }))
        .await
        .assert_status(200);
    alice
        .expect_event("message_edited", |m| m["id"] == json!(id))
        .await;
    bob.expect_event("message_edited", |m| m["id"] == json!(id))
        .await;
    // A new message brings the conversation back to bob.
    let new = app.user("u_alice").say(&conv, "new").await;
    bob.expect_event("new_message", |m| m["id"] == new["id"])
        .await;
}

both_backends! {
    feed_events_carry_the_cursor_their_feed_gives,
}

/// Every event that goes into a feed reaches each socket with `cursor`: that user's place
/// in their own feed, the same cursor `GET /sync` gives the same change, so that a client can
/// resume from the last event it saw. Typing, presence and unread counts carry none.
async fn feed_events_carry_the_cursor_their_feed_gives(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let bob_start = bob.feed_end().await;
    let mut a = app.socket("u_alice").await;
    let mut b = app.socket("u_bob").await;
    b.call("join_conversation", json!({ "conversationId": id }))
        .await;
    a.call("typing_start", json!({ "conversationId": id }))
        .await;
    let typing = b.expect_event("user_typing_start", |_| true).await;
    assert!(typing.get("cursor").is_none(), "{typing}");
    let sent = a
        .call(
            "send_message",
            json!({ "conversationId": id, "content": "hi" }),
        )
        .await;
    let mid = sent["message"]["id"].clone();
    let to_bob = b.expect_event("new_message", |m| m["id"] == mid).await;
    let to_alice = a.expect_event("new_message", |m| m["id"] == mid).await;
    let unread = b.expect_event("unread_count_updated", |_| true).await;
    assert!(unread.get("cursor").is_none(), "{unread}");
    b.call("mark_as_read", json!({ "conversationId": id }))
        .await;
    let read = a
        .expect_event("messages_read", |r| r["userId"] == "u_bob")
        .await;

    let feed = bob
        .call(
            reqwest::Method::GET,
            &format!("/sync?since={bob_start}"),
            None,
        )
        .await
        .assert_status(200)
        .clone();
    let events = feed["events"].as_array().unwrap();
    let new_message = events
        .iter()
        .find(|e| e["event"] == "new_message")
        .expect("in bob's feed");
    assert_eq!(to_bob["cursor"], new_message["cursor"]);
    assert_eq!(new_message["data"]["cursor"], new_message["cursor"]);
    assert_eq!(new_message["data"]["id"], mid);
    // Alice's copy names her own feed.
    assert!(to_alice["cursor"].is_string());
    assert_ne!(to_alice["cursor"], to_bob["cursor"]);
    assert_eq!(
        read["cursor"],
        json!(alice.feed_end().await),
        "the read is the newest change in alice's feed"
    );
    // Resuming from the last cursor seen gives what came after it, and nothing before.
    let after = bob
        .call(
            reqwest::Method::GET,
            &format!("/sync?since={}", to_bob["cursor"].as_str().unwrap()),
            None,
        )
        .await
        .assert_status(200)
        .clone();
    let names: Vec<&str> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["messages_read"]);
}
