//! Scaled mode in process: replicas sharing one database and one Redis. Events cross
//! replicas through Redis, and survive a Redis restart (the gateway reconnects and
//! resubscribes by itself).

use chat_tests::app::TestApp;
use chat_tests::db::Backend;
use chat_tests::redis::{Prefix, PrivateRedis, shared, unique_prefix};
use chat_tests::sio::SioClient;
use serde_json::json;
use std::time::{Duration, Instant};

/// Two replicas on one database and one Redis, and the Redis prefix they use (its keys go
/// when it is dropped, after the replicas).
async fn replicas(backend: Backend, redis_url: &str) -> Option<(TestApp, TestApp, Prefix)> {
    let prefix = unique_prefix(redis_url);
    let flags = [
        "--redis-url",
        redis_url,
        "--redis-prefix",
        &prefix,
        "--presence-ttl-secs",
        "3",
    ];
    let first = TestApp::spawn_with(backend, &flags).await?;
    let second = first.replica(&flags).await;
    Some((first, second, prefix))
}

async fn wait_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = app
            .http
            .get(format!("{}/health/ready", app.origin))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not ready again in time",
            app.origin
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn events_cross_replicas(backend: Backend) {
    let Some(url) = shared() else { return };
    let Some((one, two, _prefix)) = replicas(backend, &url).await else {
        return;
    };
    wait_ready(&one).await;
    wait_ready(&two).await;
    let conv = one.user("u_alice").conversation_with("u_bob").await;
    let bob_start = one.user("u_bob").feed_end().await;
    let mut alice = one.socket("u_alice").await;
    let mut bob = two.socket("u_bob").await;
    let mut bob_here = one.socket("u_bob").await;
    // Presence crosses: alice (replica one) hears bob come online on replica two.
    alice
        .expect_event("user_status_change", |s| s["userId"] == json!("u_bob"))
        .await;
    bob.call("join_conversation", json!({ "conversationId": conv }))
        .await;
    // Typing crosses on the conversation's channel.
    alice
        .call("typing_start", json!({ "conversationId": conv }))
        .await;
    bob.expect_event("user_typing_start", |_| true).await;
    // A socket send on one, a REST send on the other: each of bob's sockets gets each once.
    let a = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "from one" }),
        )
        .await;
    let b = two.user("u_alice").say(&conv, "from two").await;
    let mut want = vec![
        a["message"]["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    ];
    want.sort();
    let mut cursors = Vec::new();
    for socket in [&mut bob, &mut bob_here] {
        let events = socket
            .take_events("new_message", Duration::from_millis(800))
            .await;
        let mut got: Vec<String> = events
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        assert_eq!(got, want);
        let mut mine: Vec<String> = events
            .iter()
            .map(|m| m["cursor"].as_str().expect("a cursor").to_owned())
            .collect();
        mine.sort();
        cursors.push(mine);
    }
    // The cursor crossed Redis with each event: both of bob's sockets, on two replicas, got
    // the same cursors, and they are the ones bob's feed gives for those messages.
    assert_eq!(cursors[0], cursors[1]);
    let feed = two
        .user("u_bob")
        .call(
            reqwest::Method::GET,
            &format!("/sync?since={bob_start}"),
            None,
        )
        .await
        .assert_status(200)
        .clone();
    let mut from_feed: Vec<String> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "new_message")
        .map(|e| e["cursor"].as_str().unwrap().to_owned())
        .collect();
    from_feed.sort();
    assert_eq!(from_feed, cursors[0]);
    // Reads cross too.
    bob.call("mark_as_read", json!({ "conversationId": conv }))
        .await;
    alice
        .expect_event("messages_read", |r| r["lastReadSeq"] == json!(2))
        .await;
    // Replica two emitted bob's messages to his socket there, each with its latency from the
    // making (on either replica); replica one's storage calls were timed.
    let sent = r#"chat_socket_events_sent_total{event="new_message"}"#;
    assert!(metric(&two, sent).await >= 2, "{sent} on replica two");
    assert!(metric(&two, "chat_bus_delivery_latency_seconds_count").await >= 2);
    let commits = r#"chat_db_query_duration_seconds_count{op="insert_messages"}"#;
    assert!(metric(&one, commits).await >= 1, "{commits} on replica one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_replicas_sqlite() {
    events_cross_replicas(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_replicas_postgres() {
    events_cross_replicas(Backend::Postgres).await;
}

/// One figure of a replica's `GET /metrics`.
async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app.metrics().await;
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A replica's Redis traffic grows with its own sockets' users, not with all traffic: with
/// disjoint users on two replicas, the messages of one replica's users bring the other not a
/// single event (and vice versa), and each is subscribed to its own users' channels only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_receive_only_their_own_users_traffic() {
    let Some(url) = shared() else { return };
    let Some((one, two, _prefix)) = replicas(Backend::Sqlite, &url).await else {
        return;
    };
    wait_ready(&one).await;
    wait_ready(&two).await;
    let ab = one.user("u_alice").conversation_with("u_bob").await;
    let cd = two.user("u_carol").conversation_with("u_dave").await;
    let mut alice = one.socket("u_alice").await;
    let mut bob = one.socket("u_bob").await;
    let mut carol = two.socket("u_carol").await;
    let mut dave = two.socket("u_dave").await;
    // Let the presence announcements of the connections pass before counting.
    alice
        .expect_event("user_status_change", |s| s["userId"] == json!("u_bob"))
        .await;
    carol
        .expect_event("user_status_change", |s| s["userId"] == json!("u_dave"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&one, "chat_bus_channels").await,
        2,
        "alice's and bob's"
    );
    assert_eq!(
        metric(&two, "chat_bus_channels").await,
        2,
        "carol's and dave's"
    );

    // Each pair talks, one pair at a time, and each replica's intake is counted.
    let mut intake = Vec::new();
    for (app, conv, from, to, other_app) in [
        (&one, &ab, &mut alice, &mut bob, &two),
        (&two, &cd, &mut carol, &mut dave, &one),
    ] {
        let here = metric(app, "chat_bus_received_total").await;
        let there = metric(other_app, "chat_bus_received_total").await;
        for i in 0..20 {
            let content = format!("message {i}");
            let ack = from
                .call(
                    "send_message",
                    json!({ "conversationId": conv, "content": content }),
                )
                .await;
            assert_eq!(ack["ok"], json!(true), "{ack}");
            to.expect_event("new_message", |m| m["content"] == json!(content))
                .await;
        }
        // Anything on its way to the other replica would be there by now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let here = metric(app, "chat_bus_received_total").await - here;
        let there = metric(other_app, "chat_bus_received_total").await - there;
        intake.push((here, there));
    }
    for (here, there) in intake {
        // new_message to both members, and the unread counts: at least two events a send.
        assert!(here >= 40, "the talking replica received {here} events");
        assert_eq!(there, 0, "the other replica received {there} events");
    }
}

/// The per-user limit holds across replicas: with a limit of 4 per window, two sends through
/// one replica's REST and two through the other's socket use it up, and the fifth is refused
/// on either (`429` + `Retry-After`, ack `rate_limited` + `retryAfterMs`). Another user is not
/// affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_limit_holds_across_replicas() {
    let Some(url) = shared() else { return };
    let prefix = unique_prefix(&url);
    let flags = [
        "--redis-url",
        &url,
        "--redis-prefix",
        &prefix,
        "--rate-limit-messages",
        "4",
        "--rate-limit-window-secs",
        "30",
    ];
    let Some(one) = TestApp::spawn_with(Backend::Sqlite, &flags).await else {
        return;
    };
    let two = one.replica(&flags).await;
    wait_ready(&one).await;
    wait_ready(&two).await;
    let conv = one.user("u_alice").conversation_with("u_bob").await;
    let mut alice_two = two.socket("u_alice").await;
    for i in 0..2 {
        one.user("u_alice")
            .send(
                &conv,
                json!({ "content": format!("rest {i}"), "clientMessageId": format!("r{i}") }),
            )
            .await
            .assert_status(201);
        let ack = alice_two
            .call(
                "send_message",
                json!({ "conversationId": conv, "content": format!("socket {i}") }),
            )
            .await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
    }
    // The budget is spent on both replicas together.
    let refused = one
        .user("u_alice")
        .send(&conv, json!({ "content": "fifth" }))
        .await;
    refused.assert_problem(429, "rate_limited");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    let ack = alice_two
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "fifth" }),
        )
        .await;
    assert_eq!(ack["ok"], json!(false), "{ack}");
    assert_eq!(ack["error"]["code"], json!("rate_limited"), "{ack}");
    let wait = ack["error"]["retryAfterMs"].as_u64().unwrap();
    assert!(wait > 0 && wait <= 30_000, "retryAfterMs {wait}");
    // Bob has his own budget.
    two.user("u_bob").say(&conv, "mine").await;
}

/// The transactional outbox. A change committed by a process that died before publishing it
/// (here: written through the store, behind the service's back) reaches the sockets anyway:
/// a relay publishes it from the outbox once it is overdue, with its cursor. And the normal
/// path leaves nothing behind: a change published at once is not published again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_relays_changes_whose_publisher_died_and_only_those() {
    use chat_shared::store::NewMessage;
    use chat_shared::time::Clock;
    let Some(url) = shared() else { return };
    let prefix = unique_prefix(&url);
    let flags = [
        "--redis-url",
        &url,
        "--redis-prefix",
        &prefix,
        "--outbox-relay-after-ms",
        "1000",
    ];
    let Some(one) = TestApp::spawn_with(Backend::Sqlite, &flags).await else {
        return;
    };
    let two = one.replica(&flags).await;
    wait_ready(&one).await;
    wait_ready(&two).await;
    let conv = one.user("u_alice").conversation_with("u_bob").await;
    let mut bob = two.socket("u_bob").await;

    // The normal path: published at once, its outbox row gone once Redis took it.
    let sent = one.user("u_alice").say(&conv, "normal").await;
    bob.expect_event("new_message", |m| m["id"] == sent["id"])
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while one.core.store.outbox_backlog().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "outbox rows left behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Overdue now, if anything were left: nothing may come twice.
    one.clock.advance(Duration::from_secs(10));
    two.clock.advance(Duration::from_secs(10));
    let again = bob
        .take_events("new_message", Duration::from_millis(2_500))
        .await;
    assert!(again.is_empty(), "published twice: {again:?}");

    // A change whose process "died" between its commit and its publish.
    let orphan = NewMessage {
        id: "0193aaaa-0000-7000-8000-000000000001".to_owned(),
        conversation_id: conv.clone(),
        sender_id: "u_alice".to_owned(),
        kind: "text".to_owned(),
        content: "committed, never published".to_owned(),
        reply_to: None,
        attachments: "[]".to_owned(),
        client_message_id: None,
        now: one.clock.now(),
    };
    let inserted = one.core.store.insert_messages(&[orphan]).await.unwrap();
    assert!(inserted.cursors[0].outbox.is_some(), "an outbox row");
    assert_eq!(one.core.store.outbox_backlog().await.unwrap(), 1);
    let started = Instant::now();
    one.clock.advance(Duration::from_secs(2));
    two.clock.advance(Duration::from_secs(2));
    let relayed = bob
        .expect_event("new_message", |m| {
            m["id"] == "0193aaaa-0000-7000-8000-000000000001"
        })
        .await;
    eprintln!("relayed after {:?}", started.elapsed());
    assert_eq!(relayed["content"], "committed, never published");
    let bobs = inserted.cursors[0].of("u_bob").unwrap();
    assert_eq!(
        relayed["cursor"],
        json!(chat_shared::store::feed::cursor("u_bob", bobs)),
        "with bob's cursor"
    );
    // With the counts as they are now (the normal message and this one).
    let unread = bob
        .expect_event("unread_count_updated", |u| {
            u["conversationId"] == json!(conv) && u["unreadCount"] == 2
        })
        .await;
    assert_eq!(unread["totalUnread"], 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while one.core.store.outbox_backlog().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "the relayed row stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once, even though both replicas run a relay.
    let more = bob
        .take_events("new_message", Duration::from_millis(2_500))
        .await;
    assert!(more.is_empty(), "relayed twice: {more:?}");
}

/// Redis killed and restarted under a stream of sends (a private `redis-server`): every send
/// is acknowledged (the database is the truth), the receiver on the other replica gets what
/// was published before and after, and its feed holds every message once; what it missed live
/// it recovers there. Figures printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_under_traffic_loses_nothing() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    let flags = ["--redis-url", url.as_str(), "--redis-prefix", "outage"];
    let Some(one) = TestApp::spawn_with(Backend::Sqlite, &flags).await else {
        return;
    };
    let two = one.replica(&flags).await;
    wait_ready(&one).await;
    wait_ready(&two).await;
    let conv = one.user("u_alice").conversation_with("u_bob").await;
    let start = one.user("u_bob").feed_end().await;
    let mut bob = two.socket("u_bob").await;
    let alice = one.user("u_alice");
    let mut sent = Vec::new();
    let mut during = Vec::new();
    let started = Instant::now();
    for i in 0..120 {
        if i == 30 {
            redis.kill();
        }
        if i == 90 {
            redis.restart();
        }
        let sending = Instant::now();
        let m = alice
            .send(
                &conv,
                json!({ "content": format!("m{i}"), "clientMessageId": format!("r{i}") }),
            )
            .await;
        if (30..90).contains(&i) {
            during.push(sending.elapsed());
        }
        assert_eq!(m.status.as_u16(), 201, "send {i}: {}", m.body);
        sent.push(m.body["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_ready(&two).await;
    let live: Vec<String> = bob
        .take_events("new_message", Duration::from_secs(3))
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: std::collections::HashSet<&String> = live.iter().collect();
    assert_eq!(unique.len(), live.len(), "a message delivered twice live");
    let feed = two
        .user("u_bob")
        .call(
            reqwest::Method::GET,
            &format!("/sync?since={start}&limit=500"),
            None,
        )
        .await
        .assert_status(200)
        .clone();
    let in_feed: Vec<String> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "new_message")
        .map(|e| e["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        in_feed, sent,
        "the feed holds every message, once, in order"
    );
    let recovered = sent.iter().filter(|id| !unique.contains(id)).count();
    during.sort();
    eprintln!(
        "sends while Redis was away: median {:?}, max {:?}",
        during[during.len() / 2],
        during[during.len() - 1]
    );
    eprintln!(
        "redis outage under traffic: sent {}, acknowledged {}, delivered live {}, recovered \
         through the feed {recovered}, lost 0, duplicated 0, in {:?}",
        sent.len(),
        sent.len(),
        live.len(),
        started.elapsed()
    );
    assert!(
        live.len() >= 60,
        "what was sent while Redis answered came live: {}",
        live.len()
    );
}

/// Kills Redis under two replicas and starts a fresh one on the same port: both replicas
/// report not ready meanwhile, then ready, and events cross again without any restart of
/// theirs (sockets connected before the outage included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_recovers_after_a_redis_restart() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let Some((one, two, _prefix)) = replicas(Backend::Sqlite, &redis.url()).await else {
        return;
    };
    wait_ready(&one).await;
    wait_ready(&two).await;
    let conv = one.user("u_alice").conversation_with("u_bob").await;
    let mut alice = one.socket("u_alice").await;
    let mut bob = two.socket("u_bob").await;
    let first = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "before" }),
        )
        .await;
    bob.expect_event("new_message", |m| m["id"] == first["message"]["id"])
        .await;

    redis.kill();
    let down = Instant::now();
    loop {
        let status = one
            .http
            .get(format!("{}/health/ready", two.origin))
            .send()
            .await
            .unwrap()
            .status();
        if status == 503 {
            break;
        }
        assert!(
            down.elapsed() < Duration::from_secs(15),
            "replica noticed the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sends still succeed while Redis is down: the database is the truth.
    let during = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "during" }),
        )
        .await;
    assert_eq!(during["ok"], json!(true), "{during}");

    redis.restart();
    wait_ready(&one).await;
    wait_ready(&two).await;
    for i in 0..3 {
        let content = format!("after {i}");
        alice
            .call(
                "send_message",
                json!({ "conversationId": conv, "content": content }),
            )
            .await;
        bob.expect_event("new_message", |m| m["content"] == json!(content))
            .await;
        two.user("u_bob").say(&conv, &format!("reply {i}")).await;
        alice
            .expect_event("new_message", |m| {
                m["content"] == json!(format!("reply {i}"))
            })
            .await;
    }
    // New sockets after the restart work as well.
    let mut late = SioClient::connect(&two.origin, &two.token("u_bob")).await;
    alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "last" }),
        )
        .await;
    late.expect_event("new_message", |m| m["content"] == json!("last"))
        .await;
}

/// The presence store's transitions, with the clock passed in: "online" and "offline"
/// strictly alternate, a refresh never brings back a socket that disconnected, and a dead
/// replica's users are taken offline by exactly one sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_transitions_alternate_and_expire() {
    use chat_gateway::presence::{Presence, RedisPresence};
    use chat_shared::time::Millis;
    let Some(url) = shared() else { return };
    let ttl = Duration::from_secs(3);
    let prefix = unique_prefix(&url);
    let presence = RedisPresence::connect(&url, &prefix, ttl).await.unwrap();
    let t = |ms: i64| Millis(1_000_000 + ms);
    let pair = |u: &str, s: &str| (u.to_owned(), s.to_owned());

    // Two sockets: one online, one offline.
    assert!(presence.connected("ann", "s1", t(0)).await.unwrap());
    assert!(!presence.connected("ann", "s2", t(10)).await.unwrap());
    assert!(!presence.disconnected("ann", "s1", t(20)).await.unwrap());
    // A refresh taken before s1's disconnect does not bring it back.
    let refreshed = presence
        .refresh(&[pair("ann", "s1"), pair("ann", "s2")], t(30))
        .await;
    assert_eq!(refreshed.missing, vec![pair("ann", "s1")]);
    assert_eq!(refreshed.errors, 0);
    assert!(
        presence.disconnected("ann", "s2", t(40)).await.unwrap(),
        "last socket: offline"
    );
    assert!(
        !presence.disconnected("ann", "s2", t(50)).await.unwrap(),
        "only once"
    );
    assert_eq!(presence.last_seen("ann").await.unwrap(), Some(t(40)));
    assert!(
        presence.connected("ann", "s3", t(60)).await.unwrap(),
        "online again"
    );
    let users = ["ann".to_owned(), "nobody".to_owned()];
    assert_eq!(
        presence.online(&users).await.unwrap(),
        vec!["ann".to_owned()]
    );

    // A replica dies with bob's socket: nothing refreshes it, and one sweep takes him offline.
    assert!(presence.connected("bob", "b1", t(0)).await.unwrap());
    assert!(
        presence.sweep(t(2_000)).await.unwrap().is_empty(),
        "not expired yet"
    );
    // ann's socket is refreshed meanwhile and stays.
    assert!(
        presence
            .refresh(&[pair("ann", "s3")], t(2_500))
            .await
            .missing
            .is_empty()
    );
    let gone = presence.sweep(t(3_100)).await.unwrap();
    assert_eq!(gone, vec!["bob".to_owned()]);
    assert!(
        presence
            .online(&["bob".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        presence.sweep(t(3_200)).await.unwrap().is_empty(),
        "exactly one sweep announces it"
    );
    assert!(
        !presence.disconnected("bob", "b1", t(3_300)).await.unwrap(),
        "no second offline"
    );
    assert_eq!(presence.last_seen("bob").await.unwrap(), Some(t(3_100)));
    // A refresh of the dead socket finds it missing; the caller decides whether it lives.
    assert_eq!(
        presence
            .refresh(&[pair("bob", "b1")], t(3_400))
            .await
            .missing,
        vec![pair("bob", "b1")]
    );
    // While a user has no live socket but has not been swept yet, a new socket is no new
    // "online": contacts were never told "offline".
    assert!(presence.connected("cid", "c1", t(0)).await.unwrap());
    assert!(!presence.connected("cid", "c2", t(5_000)).await.unwrap());
}
