//! The handshake and the acknowledgements: who may connect, and how every event answers.

use chat_tests::app::TestApp;
use chat_tests::sio::{Handshake, SioClient};
use serde_json::{Value, json};
use std::time::Duration;

both_backends! {
    only_valid_tokens_connect,
    tokens_come_from_auth_header_or_query,
    malformed_payloads_are_bad_requests_and_the_socket_stays,
    strangers_get_not_found_on_every_event,
    limits_and_blocks_are_acknowledged_as_errors ["--rate-limit-messages", "2"],
    packets_over_the_limit_close_only_that_connection,
}

async fn refused(app: &TestApp, auth: Option<Value>) -> String {
    match SioClient::handshake(&app.origin, auth, "", &[]).await {
        Handshake::Refused(message) => message,
        Handshake::Connected(c) => panic!("connected as {}", c.sid),
    }
}

async fn only_valid_tokens_connect(app: TestApp) {
    assert_eq!(refused(&app, None).await, "unauthorized");
    assert_eq!(refused(&app, Some(json!({}))).await, "unauthorized");
    assert_eq!(
        refused(&app, Some(json!({ "token": 42 }))).await,
        "unauthorized"
    );
    assert_eq!(
        refused(&app, Some(json!({ "token": "not-a-jwt" }))).await,
        "unauthorized"
    );
    let expired = app.token_with("u_alice", None, -3600);
    assert_eq!(
        refused(&app, Some(json!({ "token": expired }))).await,
        "unauthorized"
    );
    let mut alice = app.socket("u_alice").await;
    assert!(!alice.sid.is_empty());
    // Connected and usable.
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let ack = alice
        .call("join_conversation", json!({ "conversationId": conv }))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
}

async fn tokens_come_from_auth_header_or_query(app: TestApp) {
    let token = app.token("u_alice");
    let bearer = format!("Bearer {token}");
    let by_header =
        SioClient::handshake(&app.origin, None, "", &[("authorization", bearer.as_str())]).await;
    assert!(
        matches!(by_header, Handshake::Connected(_)),
        "{by_header:?}"
    );
    let by_query = SioClient::handshake(&app.origin, None, &format!("token={token}"), &[]).await;
    assert!(matches!(by_query, Handshake::Connected(_)), "{by_query:?}");
    let bad_query = SioClient::handshake(&app.origin, None, "token=nope", &[]).await;
    assert!(
        matches!(bad_query, Handshake::Refused(ref m) if m == "unauthorized"),
        "{bad_query:?}"
    );
    // The user is the token's: events for u_alice reach the header-authenticated socket.
    let Handshake::Connected(mut socket) = by_header else {
        unreachable!()
    };
    let conv = app.user("u_bob").conversation_with("u_alice").await;
    socket
        .expect_event("conversation_updated", |c| c["id"] == json!(conv))
        .await;
}

fn error_code(ack: &Value) -> &str {
    assert_eq!(ack["ok"], json!(false), "{ack}");
    assert!(ack["error"]["message"].is_string(), "{ack}");
    ack["error"]["code"].as_str().unwrap_or("")
}

async fn malformed_payloads_are_bad_requests_and_the_socket_stays(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut alice = app.socket("u_alice").await;
    for event in [
        "join_conversation",
        "leave_conversation",
        "send_message",
        "typing_start",
        "typing_stop",
        "mark_as_read",
    ] {
        for args in [
            vec![],
            vec![json!("text")],
            vec![json!(42)],
            vec![json!([conv])],
            vec![json!({})],
        ] {
            let ack = alice.call_args(event, &args).await;
            assert_eq!(error_code(&ack), "bad_request", "{event} {args:?}: {ack}");
        }
        let ack = alice.call(event, json!({ "conversationId": 7 })).await;
        let message = ack["error"]["message"].as_str().unwrap_or("");
        assert_eq!(error_code(&ack), "bad_request");
        assert!(message.contains("conversationId"), "{event}: {message}");
    }
    let ack = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "x", "attachments": "no" }),
        )
        .await;
    assert_eq!(error_code(&ack), "bad_request");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attachments"),
        "{ack}"
    );
    let ack = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "   " }),
        )
        .await;
    assert_eq!(error_code(&ack), "bad_request");
    let ack = alice
        .call(
            "mark_as_read",
            json!({ "conversationId": conv, "upToSeq": -1 }),
        )
        .await;
    assert_eq!(error_code(&ack), "bad_request");
    // After all of that, the socket still works.
    let ack = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "still here" }),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(ack["message"]["content"], json!("still here"));
    assert_eq!(ack["message"]["seq"], json!(1));
    // A frame that is not even a Socket.IO packet is a protocol error: that connection is
    // closed (as socket.io's own server does), and only that one.
    let mut bob = app.socket("u_bob").await;
    alice
        .send_raw(r#"42["send_message",{broken"#.to_owned())
        .await
        .unwrap();
    assert!(
        !alice.pump(Duration::from_secs(2)).await,
        "closed after a broken packet"
    );
    let ack = bob
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "unaffected" }),
        )
        .await;
    assert_eq!(ack["message"]["seq"], json!(2), "{ack}");
}

async fn strangers_get_not_found_on_every_event(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut mallory = app.socket("u_mallory").await;
    for conversation in [
        conv.as_str(),
        "no-such-conversation",
        "0193abcd-0000-7000-8000-000000000000",
    ] {
        for (event, payload) in [
            (
                "join_conversation",
                json!({ "conversationId": conversation }),
            ),
            (
                "leave_conversation",
                json!({ "conversationId": conversation }),
            ),
            (
                "send_message",
                json!({ "conversationId": conversation, "content": "hi" }),
            ),
            ("typing_start", json!({ "conversationId": conversation })),
            ("typing_stop", json!({ "conversationId": conversation })),
            ("mark_as_read", json!({ "conversationId": conversation })),
        ] {
            let ack = mallory.call(event, payload).await;
            assert_eq!(
                error_code(&ack),
                "not_found",
                "{event} {conversation}: {ack}"
            );
        }
    }
    // Nothing was written.
    let page = app.user("u_alice").list_messages(&conv, "").await;
    assert_eq!(page.assert_status(200)["items"], json!([]));
}

async fn limits_and_blocks_are_acknowledged_as_errors(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut alice = app.socket("u_alice").await;
    for i in 0..2 {
        let ack = alice
            .call(
                "send_message",
                json!({ "conversationId": conv, "content": format!("m{i}") }),
            )
            .await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
    }
    let ack = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "third" }),
        )
        .await;
    assert_eq!(error_code(&ack), "rate_limited");
    let wait = ack["error"]["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!(wait > 0 && wait <= 10_000, "{ack}");
    // REST and socket share the limit.
    app.user("u_alice")
        .send(&conv, json!({ "content": "by rest" }))
        .await
        .assert_problem(429, "rate_limited");
    // A retry of an acknowledged send costs nothing and answers the first message.
    let conv2 = app.user("u_bob").conversation_with("u_carol").await;
    let mut bob = app.socket("u_bob").await;
    let first = bob
        .call(
            "send_message",
            json!({ "conversationId": conv2, "content": "once", "clientMessageId": "c-1" }),
        )
        .await;
    let again = bob
        .call(
            "send_message",
            json!({ "conversationId": conv2, "content": "once", "clientMessageId": "c-1" }),
        )
        .await;
    assert_eq!(
        first["message"]["id"], again["message"]["id"],
        "{first} {again}"
    );
    assert_eq!(again["ok"], json!(true));
    // Blocked: nobody can send.
    app.user("u_bob")
        .update_conversation(&conv2, json!({ "blocked": true }))
        .await
        .assert_status(200);
    let ack = bob
        .call(
            "send_message",
            json!({ "conversationId": conv2, "content": "after block" }),
        )
        .await;
    assert_eq!(error_code(&ack), "blocked");
}

async fn packets_over_the_limit_close_only_that_connection(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut big = app.socket("u_alice").await;
    let mut other = app.socket("u_bob").await;
    let content = "x".repeat(70 * 1024);
    let frame = format!(
        "42{}",
        json!(["send_message", { "conversationId": conv, "content": content }])
    );
    let _ = big.send_raw(frame).await;
    assert!(
        !big.pump(Duration::from_secs(2)).await,
        "the oversized connection is closed"
    );
    // The server and every other connection carry on.
    let ack = other
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "fine" }),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(
        ack["message"]["seq"],
        json!(1),
        "nothing of the oversized packet was stored"
    );
    let mut again = app.socket("u_alice").await;
    let ack = again
        .call("join_conversation", json!({ "conversationId": conv }))
        .await;
    assert_eq!(ack["ok"], json!(true));
    // Content over the contract's 4000 characters but under the packet limit is an error ack.
    let ack = again
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "y".repeat(4001) }),
        )
        .await;
    assert_eq!(error_code(&ack), "bad_request");
}
