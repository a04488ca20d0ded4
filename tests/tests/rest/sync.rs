//! The change feed of contract v1.1: `GET /sync` (and the cursors on socket events, in the
//! gateway suite). Every change a user's sockets are sent, except typing, presence and unread
//! counts, comes back from their feed, in order, exactly once, with the payload a socket gets.

use crate::common::*;
use chat_tests::app::{TestApp, UserClient};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

both_backends!(
    without_since_the_feed_starts_at_its_end,
    every_kind_of_change_comes_back_in_order_once,
    pages_follow_next_cursor_without_gaps_or_repeats,
    each_user_has_their_own_feed,
    bad_cursors_and_limits_are_400,
    a_pruned_cursor_is_410_sync_expired ["--feed-retention-hours", "24"],
);

async fn sync(user: &UserClient<'_>, query: &str) -> Value {
    user.call(Method::GET, &format!("/sync{query}"), None)
        .await
        .assert_status(200)
        .clone()
}

/// Every event after `since`, following `nextCursor` while `hasMore`.
async fn sync_all(user: &UserClient<'_>, since: &str) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    let mut cursor = since.to_owned();
    loop {
        let page = sync(user, &format!("?since={cursor}&limit=3")).await;
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        cursor = page["nextCursor"].as_str().unwrap().to_owned();
        if page["hasMore"] == json!(false) {
            return (events, cursor);
        }
    }
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

async fn without_since_the_feed_starts_at_its_end(app: TestApp) {
    let alice = app.user("u_alice");
    let start = sync(&alice, "").await;
    assert_eq!(start["events"], json!([]));
    assert_eq!(start["hasMore"], json!(false));
    let empty_end = start["nextCursor"].as_str().unwrap().to_owned();
    // Nothing after the end yet.
    let page = sync(&alice, &format!("?since={empty_end}")).await;
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["nextCursor"], json!(empty_end));
    let id = alice.conversation_with("u_bob").await;
    alice.say(&id, "hello").await;
    let end = sync(&alice, "").await["nextCursor"].clone();
    assert_ne!(end, json!(empty_end), "the end moved");
    // A client that starts at the end gets only what comes later.
    let later = alice.say(&id, "later").await;
    let page = sync(&alice, &format!("?since={}", end.as_str().unwrap())).await;
    assert_eq!(names(page["events"].as_array().unwrap()), ["new_message"]);
    assert_eq!(page["events"][0]["data"]["id"], later["id"]);
}

async fn every_kind_of_change_comes_back_in_order_once(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let start = bob.feed_end().await;
    let alice_start = alice.feed_end().await;
    let id = alice.conversation_with("u_bob").await;
    let first = alice.say(&id, "is it free?").await;
    let second = alice.say(&id, "and the garden?").await;
    app.clock.advance(Duration::from_secs(1));
    alice
        .edit_message(
            first["id"].as_str().unwrap(),
            json!({ "content": "is it free now?" }),
        )
        .await
        .assert_status(200);
    alice
        .delete_message(second["id"].as_str().unwrap())
        .await
        .assert_status(204);
    // Deleting again announces nothing, and adds nothing to the feed.
    alice.delete_message(second["id"].as_str().unwrap()).await;
    bob.mark_read(&id, json!({})).await.assert_status(200);
    // A read that moves nothing is not a change.
    bob.mark_read(&id, json!({})).await.assert_status(200);
    alice
        .update_conversation(&id, json!({ "title": "Elm Street" }))
        .await
        .assert_status(200);
    // A rename to the same title changes nothing.
    alice
        .update_conversation(&id, json!({ "title": "Elm Street" }))
        .await
        .assert_status(200);
    // Bob's own archive is in his feed; alice's mute is not.
    bob.archive(&id, json!({ "archived": true }))
        .await
        .assert_status(200);
    alice
        .mute(&id, json!({ "muted": true }))
        .await
        .assert_status(200);

    let (events, _) = sync_all(&bob, &start).await;
    assert_eq!(
        names(&events),
        [
            "conversation_updated",
            "new_message",
            "new_message",
            "message_edited",
            "message_deleted",
            "messages_read",
            "conversation_updated",
            "conversation_updated",
        ]
    );
    for e in &events {
        assert_eq!(
            e["data"]["cursor"], e["cursor"],
            "the payload carries its cursor"
        );
    }
    let data: Vec<&Value> = events.iter().map(|e| &e["data"]).collect();
    assert_conversation_shape(data[0]);
    assert_eq!(data[0]["id"], json!(id));
    for m in &data[1..5] {
        assert_message_shape(m);
    }
    assert_eq!(data[1]["id"], first["id"]);
    assert_eq!(data[2]["id"], second["id"]);
    // Messages are as they are now: idempotent for a client applying them in order.
    assert_eq!(data[3]["id"], first["id"]);
    assert_eq!(data[3]["content"], "is it free now?");
    assert_eq!(data[3]["isEdited"], true);
    assert_eq!(data[4]["id"], second["id"]);
    assert_eq!(data[4]["isDeleted"], true);
    assert_eq!(data[5]["conversationId"], json!(id));
    assert_eq!(data[5]["userId"], "u_bob");
    assert_eq!(data[5]["lastReadSeq"], 2);
    assert_time(&data[5]["readAt"], "readAt");
    assert_eq!(data[6]["title"], "Elm Street");
    assert_eq!(data[7]["archived"], true, "bob's own view");
    assert_eq!(data[7]["muted"], false);

    // Alice's feed: the shared changes, then her own mute; not bob's archive.
    let (hers, _) = sync_all(&alice, &alice_start).await;
    assert_eq!(names(&hers), names(&events));
    assert_eq!(hers[7]["data"]["muted"], true);
    assert_eq!(hers[7]["data"]["archived"], false);
    let cursors = |es: &[Value]| -> Vec<String> {
        es.iter()
            .map(|e| e["cursor"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_ne!(cursors(&hers), cursors(&events), "cursors name one feed");
}

async fn pages_follow_next_cursor_without_gaps_or_repeats(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let start = bob.feed_end().await;
    let id = alice.conversation_with("u_bob").await;
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(alice.say(&id, &format!("m{i}")).await["id"].clone());
    }
    let first = sync(&bob, &format!("?since={start}&limit=4")).await;
    assert_eq!(first["events"].as_array().unwrap().len(), 4);
    assert_eq!(first["hasMore"], true);
    assert_eq!(
        first["nextCursor"], first["events"][3]["cursor"],
        "the next page starts after the last event"
    );
    let (events, end) = sync_all(&bob, &start).await;
    assert_eq!(names(&events)[0], "conversation_updated");
    let ids: Vec<&Value> = events[1..].iter().map(|e| &e["data"]["id"]).collect();
    assert_eq!(ids, sent.iter().collect::<Vec<_>>(), "in order, each once");
    let cursors: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["cursor"].as_str().unwrap())
        .collect();
    assert_eq!(cursors.len(), events.len(), "distinct cursors");
    // From the end: nothing, and the same end.
    let after = sync(&bob, &format!("?since={end}")).await;
    assert_eq!(after["events"], json!([]));
    assert_eq!(after["nextCursor"], json!(end));
    // Asking again from the start gives the same events: reading does not consume.
    let (again, _) = sync_all(&bob, &start).await;
    assert_eq!(again, events);
}

async fn each_user_has_their_own_feed(app: TestApp) {
    let alice = app.user("u_alice");
    let carol = app.user("u_carol");
    let carol_start = carol.feed_end().await;
    let id = alice.conversation_with("u_bob").await;
    alice.say(&id, "not for carol").await;
    let page = sync(&carol, &format!("?since={carol_start}")).await;
    assert_eq!(page["events"], json!([]), "a stranger's feed gets nothing");
    // A cursor of alice's feed is refused in carol's.
    let alices = alice.feed_end().await;
    carol
        .call(Method::GET, &format!("/sync?since={alices}"), None)
        .await
        .assert_problem(400, "bad_request");
}

async fn bad_cursors_and_limits_are_400(app: TestApp) {
    let alice = app.user("u_alice");
    let end = alice.feed_end().await;
    let (pos, tag) = end.split_once('.').unwrap();
    let future = format!("{}.{tag}", pos.parse::<i64>().unwrap() + 5);
    for query in [
        "?since=nonsense".to_owned(),
        "?since=".to_owned(),
        format!("?since={future}"),
        format!("?since=-1.{tag}"),
        format!("?since={end}&limit=0"),
        format!("?since={end}&limit=501"),
        format!("?since={end}&limit=ten"),
    ] {
        let detail = alice
            .call(Method::GET, &format!("/sync{query}"), None)
            .await
            .assert_problem(400, "bad_request");
        assert!(
            detail.contains("since") || detail.contains("limit"),
            "{query}: {detail}"
        );
    }
    app.raw(None)
        .call(Method::GET, "/sync", None)
        .await
        .assert_problem(401, "unauthorized");
}

async fn a_pruned_cursor_is_410_sync_expired(app: TestApp) {
    let alice = app.user("u_alice");
    let start = alice.feed_end().await;
    let id = alice.conversation_with("u_bob").await;
    alice.say(&id, "old").await;
    let middle = alice.feed_end().await;
    // A day and a bit later the old entries go; a new one stays.
    app.clock.advance(Duration::from_secs(25 * 3600));
    let recent = alice.say(&id, "recent").await;
    let pruned = app.core.service.prune_feed().await.unwrap();
    assert_eq!(pruned, 4, "the create and the first message, in both feeds");
    alice
        .call(Method::GET, &format!("/sync?since={start}"), None)
        .await
        .assert_problem(410, "sync_expired");
    // From after the pruned part, the feed goes on.
    let page = sync(&alice, &format!("?since={middle}")).await;
    assert_eq!(names(page["events"].as_array().unwrap()), ["new_message"]);
    assert_eq!(page["events"][0]["data"]["id"], recent["id"]);
    // The recipe after a 410: start again from the end.
    let fresh = sync(&alice, "").await;
    assert_eq!(fresh["nextCursor"], page["nextCursor"]);
}
