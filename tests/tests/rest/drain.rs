//! A REST server stopping (SIGTERM to `chat-api`) finishes the requests in flight: a send
//! whose body is still arriving when the stop comes is answered `201` and stored, and the
//! server stops afterwards; new connections are refused once it has stopped.

use chat_tests::app::TestApp;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_backends!(a_stopping_server_finishes_requests_in_flight);

async fn a_stopping_server_finishes_requests_in_flight(app: TestApp) {
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let body = json!({ "content": "sent while the server stops", "clientMessageId": "drain-1" })
        .to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let authority = app.origin.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head = format!(
        "POST /api/v1/chat/conversations/{conv}/messages HTTP/1.1\r\nHost: {authority}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        app.token("u_alice"),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(first).await.unwrap();
    tcp.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The stop comes while the body is half sent.
    let stopping = tokio::spawn({
        let app_stop = std::sync::Arc::new(app);
        let app = app_stop.clone();
        async move {
            app.shut_down().await.unwrap();
            app_stop
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "stopped with a request in flight");
    tcp.write_all(rest).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the request in flight was answered: {answer}"
    );
    let app = tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("stopped once the request was answered")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(&authority).await.is_err(),
        "no new connections after the stop"
    );
    // It was stored.
    let stored = app
        .core
        .store
        .message_by_client_id("u_alice", "drain-1")
        .await
        .unwrap();
    assert!(stored.is_some(), "the message answered 201 is stored");
}
