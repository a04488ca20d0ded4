//! Configurable limits: the message rate limit (`429 rate_limited` with `Retry-After`), the
//! edit window, and the sizes.

use crate::common::*;
use chat_tests::app::TestApp;
use serde_json::json;
use std::time::Duration;

both_backends!(
    the_fourth_message_in_the_window_is_rate_limited ["--rate-limit-messages", "3"],
    initial_messages_count_against_the_rate_limit ["--rate-limit-messages", "2"],
    the_edit_window_is_configurable ["--edit-window-secs", "60"],
    sizes_are_configurable [
        "--max-message-chars", "10",
        "--max-participants", "3",
        "--max-body-bytes", "2048"
    ],
);

async fn the_fourth_message_in_the_window_is_rate_limited(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    for i in 1..=3 {
        alice
            .send(
                &id,
                json!({ "content": format!("m{i}"), "clientMessageId": format!("c-{i}") }),
            )
            .await
            .assert_status(201);
    }
    let res = alice.send(&id, json!({ "content": "m4" })).await;
    assert_eq!(res.status.as_u16(), 429, "{:?}", res.body);
    res.assert_problem(429, "rate_limited");
    let retry_after: u64 = res
        .headers
        .get("retry-after")
        .expect("429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    // 3 per 10 s: one comes back about every 3.3 s.
    assert!(
        (1..=10).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    // Over the limit again: still limited, and nothing was stored.
    alice
        .send(&id, json!({ "content": "m5", "clientMessageId": "c-5" }))
        .await
        .assert_problem(429, "rate_limited");
    assert_eq!(conversation(&bob, &id).await["lastSeq"], 3);
    // A retry of an acknowledged send is answered, not limited.
    let retry = alice
        .send(&id, json!({ "content": "m2", "clientMessageId": "c-2" }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(retry["seq"], 2);
    // Other users have their own budget, in this conversation and elsewhere.
    for i in 1..=3 {
        assert_eq!(bob.say(&id, &format!("b{i}")).await["seq"], 3 + i);
    }
    bob.send(&id, json!({ "content": "b4" }))
        .await
        .assert_problem(429, "rate_limited");
    let carol = app.user("u_carol");
    let other = carol.conversation_with("u_dan").await;
    carol.say(&other, "unaffected").await;
    // Reads, lists and other calls are not limited.
    for _ in 0..5 {
        alice.list_messages(&id, "").await.assert_status(200);
        alice.mark_read(&id, json!({})).await.assert_status(200);
    }
    // Validation comes first: a bad message is a 400, not a 429.
    alice
        .send(&id, json!({ "content": "" }))
        .await
        .assert_problem(400, "bad_request");
    assert_eq!(conversation(&alice, &id).await["lastSeq"], 6);
}

async fn initial_messages_count_against_the_rate_limit(app: TestApp) {
    let alice = app.user("u_alice");
    let c1 = alice
        .create_conversation(json!({ "participantIds": ["u_bob"], "initialMessage": "one" }))
        .await
        .assert_status(201)
        .clone();
    alice.say(&str_of(&c1["id"]), "two").await;
    alice
        .create_conversation(json!({ "participantIds": ["u_carol"], "initialMessage": "three" }))
        .await
        .assert_problem(429, "rate_limited");
    // Without an initial message, creating is not a send.
    alice
        .create_conversation(json!({ "participantIds": ["u_dan"] }))
        .await
        .assert_status(201);
}

async fn the_edit_window_is_configurable(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let a = str_of(&alice.say(&id, "a").await["id"]);
    let b = str_of(&alice.say(&id, "b").await["id"]);
    app.clock.advance(Duration::from_secs(59));
    alice
        .edit_message(&a, json!({ "content": "a2" }))
        .await
        .assert_status(200);
    app.clock.advance(Duration::from_secs(2));
    let detail = alice
        .edit_message(&a, json!({ "content": "a3" }))
        .await
        .assert_problem(403, "edit_window_passed");
    assert!(detail.contains("60"), "the detail says how long: {detail}");
    alice
        .delete_message(&b)
        .await
        .assert_problem(403, "edit_window_passed");
    // A fresh message has a fresh window.
    let c = str_of(&alice.say(&id, "c").await["id"]);
    app.clock.advance(Duration::from_secs(60));
    alice.delete_message(&c).await.assert_status(204);
}

async fn sizes_are_configurable(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    alice.say(&id, "0123456789").await;
    let detail = alice
        .send(&id, json!({ "content": "0123456789A" }))
        .await
        .assert_problem(400, "bad_request");
    assert!(
        detail.contains("content") && detail.contains("10"),
        "{detail}"
    );
    alice
        .create_conversation(json!({ "participantIds": ["u_bob", "u_carol"] }))
        .await
        .assert_status(201);
    let detail = alice
        .create_conversation(json!({ "participantIds": ["u_bob", "u_carol", "u_dan"] }))
        .await
        .assert_problem(400, "bad_request");
    assert!(detail.contains("participantIds"), "{detail}");
    alice
        .send(&id, json!({ "content": "x", "padding": "p".repeat(3000) }))
        .await
        .assert_problem(413, "payload_too_large");
}
