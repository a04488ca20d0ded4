//! Per-socket and per-user limits of the gateway, each configurable: conversations joined
//! per socket, typing events per socket, sockets per user.

use chat_tests::app::TestApp;
use chat_tests::db::Backend;
use chat_tests::sio::{Handshake, SioClient};
use serde_json::json;

async fn app(flags: &[&str]) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, flags)
        .await
        .expect("SQLite always runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_joins_at_most_max_joins_per_socket_conversations() {
    let app = app(&["--max-joins-per-socket", "2"]).await;
    let alice = app.user("u_alice");
    let convs = [
        alice.conversation_with("u_bob").await,
        alice.conversation_with("u_carol").await,
        alice.conversation_with("u_dave").await,
    ];
    let mut socket = app.socket("u_alice").await;
    for id in &convs[..2] {
        let ack = socket
            .call("join_conversation", json!({ "conversationId": id }))
            .await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
    }
    // Joining one already joined costs nothing.
    let again = socket
        .call("join_conversation", json!({ "conversationId": convs[0] }))
        .await;
    assert_eq!(again["ok"], json!(true), "{again}");
    let third = socket
        .call("join_conversation", json!({ "conversationId": convs[2] }))
        .await;
    assert_eq!(third["ok"], json!(false), "{third}");
    assert_eq!(third["error"]["code"], json!("bad_request"));
    assert!(
        third["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_JOINS_PER_SOCKET")
    );
    // Leaving one makes room; another socket has its own count.
    socket
        .call("leave_conversation", json!({ "conversationId": convs[1] }))
        .await;
    let now = socket
        .call("join_conversation", json!({ "conversationId": convs[2] }))
        .await;
    assert_eq!(now["ok"], json!(true), "{now}");
    let mut other = app.socket("u_alice").await;
    let ack = other
        .call("join_conversation", json!({ "conversationId": convs[1] }))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_events_per_socket_are_limited_with_a_retry_time() {
    let app = app(&["--typing-events-per-10s", "3"]).await;
    let id = app.user("u_alice").conversation_with("u_bob").await;
    let mut alice = app.socket("u_alice").await;
    let mut bob = app.socket("u_bob").await;
    bob.call("join_conversation", json!({ "conversationId": id }))
        .await;
    for event in ["typing_start", "typing_stop", "typing_start"] {
        let ack = alice.call(event, json!({ "conversationId": id })).await;
        assert_eq!(ack["ok"], json!(true), "{event}: {ack}");
    }
    let limited = alice
        .call("typing_stop", json!({ "conversationId": id }))
        .await;
    assert_eq!(limited["ok"], json!(false), "{limited}");
    assert_eq!(limited["error"]["code"], json!("rate_limited"));
    let wait = limited["error"]["retryAfterMs"]
        .as_u64()
        .expect("retryAfterMs");
    assert!(wait > 0 && wait <= 10_000, "{wait}");
    // Refused means not announced: bob saw two starts and one stop, nothing more.
    let stops = bob
        .take_events("user_typing_stop", std::time::Duration::from_millis(300))
        .await;
    assert_eq!(stops.len(), 1, "{stops:?}");
    // The budget is the socket's: another socket of the same user types freely.
    let mut second = app.socket("u_alice").await;
    let ack = second
        .call("typing_start", json!({ "conversationId": id }))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_max_sockets_per_user_sockets() {
    let app = app(&["--max-sockets-per-user", "2"]).await;
    let token = app.token("u_alice");
    let first = app.socket("u_alice").await;
    let _second = app.socket("u_alice").await;
    match SioClient::handshake(&app.origin, Some(json!({ "token": token })), "", &[]).await {
        Handshake::Refused(message) => assert_eq!(message, "rate_limited"),
        Handshake::Connected(_) => panic!("a third socket connected"),
    }
    // Other users are not affected.
    app.socket("u_bob").await;
    // Once one closes, there is room again.
    first.close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match SioClient::handshake(&app.origin, Some(json!({ "token": token })), "", &[]).await {
            Handshake::Connected(_) => break,
            Handshake::Refused(m) => {
                assert_eq!(m, "rate_limited");
                assert!(
                    std::time::Instant::now() < deadline,
                    "no room after a close"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Sockets per client address: the peer's address, or the first address of a configured
/// header set by a trusted proxy. Off by default (`MAX_SOCKETS_PER_IP=0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_holds_at_most_max_sockets_per_ip_sockets() {
    // The peer's address: every test client is 127.0.0.1.
    let direct = app(&["--max-sockets-per-ip", "2"]).await;
    let _a = direct.socket("u_alice").await;
    let b = direct.socket("u_bob").await;
    let token = direct.token("u_carol");
    match SioClient::handshake(&direct.origin, Some(json!({ "token": token })), "", &[]).await {
        Handshake::Refused(message) => assert_eq!(message, "rate_limited"),
        Handshake::Connected(_) => panic!("a third socket from 127.0.0.1 connected"),
    }
    b.close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while let Handshake::Refused(_) =
        SioClient::handshake(&direct.origin, Some(json!({ "token": token })), "", &[]).await
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no room after a close"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Behind a proxy: the header's first address counts, not the proxy's.
    let proxied = app(&[
        "--max-sockets-per-ip",
        "1",
        "--client-ip-header",
        "x-forwarded-for",
    ])
    .await;
    let connect = |user: &str, from: &'static str| {
        let token = proxied.token(user);
        let origin = proxied.origin.clone();
        async move {
            SioClient::handshake(
                &origin,
                Some(json!({ "token": token })),
                "",
                &[("x-forwarded-for", from)],
            )
            .await
        }
    };
    // Held open for the rest of the test (a dropped client closes its socket).
    let first = connect("u_alice", "203.0.113.7, 10.0.0.1").await;
    assert!(matches!(first, Handshake::Connected(_)));
    let other = connect("u_bob", "198.51.100.2").await;
    assert!(matches!(other, Handshake::Connected(_)));
    match connect("u_carol", "203.0.113.7").await {
        Handshake::Refused(message) => assert_eq!(message, "rate_limited"),
        Handshake::Connected(_) => panic!("a second socket from 203.0.113.7 connected"),
    }
}
