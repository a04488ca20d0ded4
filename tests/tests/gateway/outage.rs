//! The database goes away under a running app (a private PostgreSQL cluster, stopped and
//! started again): every request and socket event answers `unavailable` within the contract's
//! 2 s instead of hanging, readiness turns false, nothing answered `unavailable` was stored,
//! and everything comes back by itself when the database does.

use chat_tests::app::TestApp;
use chat_tests::db::Backend;
use chat_tests::pg::PrivatePostgres;
use serde_json::json;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_unavailable_within_2_s_and_heals_by_itself() {
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let app = TestApp::spawn_at(&pg.url(), Backend::Postgres, &[]).await;
    let alice = app.user("u_alice");
    let conv = alice.conversation_with("u_bob").await;
    let mut socket = app.socket("u_alice").await;
    alice.say(&conv, "before the outage").await;
    let ready = || async {
        app.http
            .get(format!("{}/health/ready", app.origin))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);

    eprintln!("stopping PostgreSQL on port {}", pg.port);
    pg.stop();

    // A REST send, a REST read and a socket send: each answers `unavailable` in time.
    let started = Instant::now();
    let send = alice
        .send(
            &conv,
            json!({ "content": "during", "clientMessageId": "outage-rest" }),
        )
        .await;
    let rest_send = started.elapsed();
    send.assert_problem(503, "unavailable");
    let started = Instant::now();
    alice
        .list_conversations("")
        .await
        .assert_problem(503, "unavailable");
    let rest_read = started.elapsed();
    let started = Instant::now();
    let ack = socket
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "during", "clientMessageId": "outage-socket" }),
        )
        .await;
    let socket_send = started.elapsed();
    assert_eq!(ack["ok"], json!(false), "{ack}");
    assert_eq!(ack["error"]["code"], json!("unavailable"), "{ack}");
    assert_eq!(ready().await, 503, "not ready while the database is away");
    eprintln!(
        "during the outage: REST send {rest_send:?}, REST read {rest_read:?}, socket send {socket_send:?}"
    );
    for (what, took) in [
        ("REST send", rest_send),
        ("REST read", rest_read),
        ("socket send", socket_send),
    ] {
        assert!(took < BOUND, "{what} answered after {took:?}");
    }

    // Back: no restart of the app, and what was answered `unavailable` was not stored.
    pg.start_again();
    let back = Instant::now();
    loop {
        if ready().await == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(15), "not ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("ready again {:?} after PostgreSQL started", back.elapsed());
    let retried = alice
        .send(
            &conv,
            json!({ "content": "during", "clientMessageId": "outage-rest" }),
        )
        .await;
    assert_eq!(
        retried.status.as_u16(),
        201,
        "the retry is new: nothing was stored during the outage: {}",
        retried.body
    );
    let ack = socket
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "during", "clientMessageId": "outage-socket" }),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(ack["duplicate"], json!(false), "{ack}");
    let page = alice
        .list_messages(&conv, "?after=0")
        .await
        .assert_status(200)
        .clone();
    let seqs: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3], "gap-free after the outage");
}
