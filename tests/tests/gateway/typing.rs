//! Typing: to the conversation's room, never to the typer's own sockets; ends by itself.

use chat_tests::app::TestApp;
use serde_json::json;
use std::time::Duration;

both_backends! {
    typing_reaches_the_room_but_not_the_typer ["--typing-timeout-ms", "60000"],
    typing_ends_by_itself_and_at_disconnect ["--typing-timeout-ms", "700"],
}

async fn typing_reaches_the_room_but_not_the_typer(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut alice = app.socket("u_alice").await;
    let mut alice_tablet = app.socket("u_alice").await;
    let mut bob = app.socket("u_bob").await;
    let mut bob_not_joined = app.socket("u_bob").await;
    for s in [&mut alice_tablet, &mut bob] {
        s.call("join_conversation", json!({ "conversationId": conv }))
            .await;
    }
    let ack = alice
        .call("typing_start", json!({ "conversationId": conv }))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let start = bob.expect_event("user_typing_start", |_| true).await;
    assert_eq!(
        start,
        json!({ "conversationId": conv, "userId": "u_alice" })
    );
    // Repeated starts while typing are one start.
    alice
        .call("typing_start", json!({ "conversationId": conv }))
        .await;
    alice
        .call("typing_stop", json!({ "conversationId": conv }))
        .await;
    let stop = bob.expect_event("user_typing_stop", |_| true).await;
    assert_eq!(stop, json!({ "conversationId": conv, "userId": "u_alice" }));
    assert!(
        bob.take_events("user_typing_start", Duration::from_millis(300))
            .await
            .is_empty()
    );
    // Not to the typer's own sockets (even in the room), not to sockets outside the room.
    for s in [&mut alice_tablet, &mut bob_not_joined] {
        assert!(
            s.take_events("user_typing_start", Duration::from_millis(100))
                .await
                .is_empty()
        );
        assert!(
            s.take_events("user_typing_stop", Duration::from_millis(100))
                .await
                .is_empty()
        );
    }
    // After leaving the room, nothing more.
    bob.call("leave_conversation", json!({ "conversationId": conv }))
        .await;
    alice
        .call("typing_start", json!({ "conversationId": conv }))
        .await;
    assert!(
        bob.take_events("user_typing_start", Duration::from_millis(400))
            .await
            .is_empty()
    );
}

async fn typing_ends_by_itself_and_at_disconnect(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut alice = app.socket("u_alice").await;
    let mut bob = app.socket("u_bob").await;
    bob.call("join_conversation", json!({ "conversationId": conv }))
        .await;
    let started = tokio::time::Instant::now();
    alice
        .call("typing_start", json!({ "conversationId": conv }))
        .await;
    bob.expect_event("user_typing_start", |_| true).await;
    bob.expect_event("user_typing_stop", |s| s["userId"] == json!("u_alice"))
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "not before the timeout"
    );
    // A repeated start pushes the end back: typing for 1.1 s with starts every 400 ms stays
    // one typing, which ends a timeout after the last start.
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        alice
            .call("typing_start", json!({ "conversationId": conv }))
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    bob.expect_event("user_typing_start", |_| true).await;
    bob.expect_event("user_typing_stop", |_| true).await;
    assert!(
        started.elapsed() >= Duration::from_millis(800 + 600),
        "ended {:?} after the first start",
        started.elapsed()
    );
    assert!(
        bob.take_events("user_typing_start", Duration::from_millis(100))
            .await
            .is_empty(),
        "one start for the whole run"
    );
    // The typer's disconnect ends it at once.
    alice
        .call("typing_start", json!({ "conversationId": conv }))
        .await;
    bob.expect_event("user_typing_start", |_| true).await;
    let closed = tokio::time::Instant::now();
    alice.close().await;
    bob.expect_event("user_typing_stop", |_| true).await;
    assert!(
        closed.elapsed() < Duration::from_millis(600),
        "ended by the disconnect, not the timer"
    );
}
