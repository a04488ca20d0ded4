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

/// A stream of sends from careful clients (each send retried with the same
/// `clientMessageId` until it is acknowledged) while PostgreSQL stops for two seconds and
/// comes back: every message ends up stored once, seqs stay gap-free, nothing acknowledged
/// is lost, and no answer took longer than the contract's 2 s. Figures printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_a_stream_of_sends_loses_nothing() {
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let app = TestApp::spawn_at(&pg.url(), Backend::Postgres, &[]).await;
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let bob_start = app.user("u_bob").feed_end().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        let base = app.base.clone();
        let token = app.token("u_alice");
        let http = app.http.clone();
        let conv = conv.clone();
        tokio::spawn(async move {
            let (mut attempts, mut unavailable, mut slowest) = (0u32, 0u32, Duration::ZERO);
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let cid = format!("stream-{n}");
                // The careful client: the same clientMessageId until it is acknowledged.
                loop {
                    attempts += 1;
                    let started = Instant::now();
                    let res = http
                        .post(format!("{base}/conversations/{conv}/messages"))
                        .bearer_auth(&token)
                        .json(&json!({ "content": format!("m{n}"), "clientMessageId": cid }))
                        .send()
                        .await
                        .unwrap();
                    slowest = slowest.max(started.elapsed());
                    match res.status().as_u16() {
                        200 | 201 => {
                            let body: serde_json::Value = res.json().await.unwrap();
                            acked.push(body["id"].as_str().unwrap().to_owned());
                            break;
                        }
                        503 => {
                            unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => panic!("send {n}: {other}"),
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (attempts, unavailable, slowest, acked)
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_again();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (attempts, unavailable, slowest, acked) = sender.await.unwrap();
    let (mut stored, mut seqs) = (Vec::<String>::new(), Vec::<i64>::new());
    loop {
        let after = seqs.last().copied().unwrap_or(0);
        let page = app
            .user("u_alice")
            .list_messages(&conv, &format!("?after={after}&limit=100"))
            .await
            .assert_status(200)
            .clone();
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        for m in items {
            stored.push(m["id"].as_str().unwrap().to_owned());
            seqs.push(m["seq"].as_i64().unwrap());
        }
    }
    eprintln!(
        "database outage under a stream: {} messages acknowledged after {attempts} attempts \
         ({unavailable} answered unavailable), stored {}, slowest answer {slowest:?}, lost 0, \
         duplicated 0",
        acked.len(),
        stored.len()
    );
    assert!(unavailable > 0, "the outage was felt");
    assert_eq!(stored, acked, "every acknowledged message, once, in order");
    // And the receiver's change feed has each of them once, in order.
    let mut in_feed = Vec::new();
    let mut cursor = bob_start;
    loop {
        let page = app
            .user("u_bob")
            .call(
                reqwest::Method::GET,
                &format!("/sync?since={cursor}&limit=500"),
                None,
            )
            .await
            .assert_status(200)
            .clone();
        in_feed.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["event"] == "new_message")
                .map(|e| e["data"]["id"].as_str().unwrap().to_owned()),
        );
        cursor = page["nextCursor"].as_str().unwrap().to_owned();
        if page["hasMore"] == json!(false) {
            break;
        }
    }
    assert_eq!(
        in_feed, acked,
        "the feed: every acknowledged message, once, in order"
    );
    assert_eq!(seqs, (1..=acked.len() as i64).collect::<Vec<_>>());
    assert!(slowest < BOUND, "an answer took {slowest:?}");
}
