//! Presence: online with the first socket, offline with the last, to contacts only.

use chat_tests::app::TestApp;
use serde_json::json;
use std::time::Duration;

both_backends! {
    status_changes_reach_contacts_only,
}

async fn status_changes_reach_contacts_only(app: TestApp) {
    app.user("u_alice").conversation_with("u_bob").await;
    let mut alice = app.socket("u_alice").await;
    let mut stranger = app.socket("u_stranger").await;

    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let ack = alice
        .call("join_conversation", json!({ "conversationId": conv }))
        .await;
    assert_eq!(ack["online"], json!([]), "nobody else is online: {ack}");

    let bob = app.socket("u_bob").await;
    let online = alice.expect_event("user_status_change", |_| true).await;
    // Joining tells who is online now.
    let ack = alice
        .call("join_conversation", json!({ "conversationId": conv }))
        .await;
    assert_eq!(ack["online"], json!(["u_bob"]), "{ack}");
    assert_eq!(
        (online["userId"].clone(), online["status"].clone()),
        (json!("u_bob"), json!("online"))
    );
    assert!(online["lastSeen"].is_null(), "never seen before: {online}");

    // A second socket is not a second "online"; closing one of two is not "offline".
    let bob_phone = app.socket("u_bob").await;
    bob.close().await;
    assert!(
        alice
            .take_events("user_status_change", Duration::from_millis(400))
            .await
            .is_empty()
    );

    bob_phone.close().await;
    let offline = alice.expect_event("user_status_change", |_| true).await;
    assert_eq!(offline["status"], json!("offline"));
    let last_seen = offline["lastSeen"].as_str().expect("lastSeen").to_owned();
    let ack = alice
        .call("join_conversation", json!({ "conversationId": conv }))
        .await;
    assert_eq!(ack["online"], json!([]), "bob left: {ack}");

    let _bob = app.socket("u_bob").await;
    let again = alice.expect_event("user_status_change", |_| true).await;
    assert_eq!(
        (again["status"].clone(), again["lastSeen"].clone()),
        (json!("online"), json!(last_seen))
    );

    assert!(
        stranger
            .take_events("user_status_change", Duration::from_millis(200))
            .await
            .is_empty()
    );
}
