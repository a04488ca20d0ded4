//! Concurrency: gap-free `seq` under concurrent sends, exact unread counts with concurrent
//! reads, race-free create-or-get and idempotent sends.

use crate::common::*;
use chat_tests::app::{TestApp, UserClient};
use futures::future::join_all;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

both_backends!(
    fifty_concurrent_sends_get_seq_1_to_50,
    concurrent_reads_never_move_backwards_and_counts_stay_exact,
    concurrent_identical_creates_make_one_conversation,
    concurrent_retries_of_one_client_message_id_make_one_message,
    concurrent_sends_to_many_conversations_keep_each_sequence,
);

/// The caller's current read position and unread count, without moving it.
async fn position(who: &UserClient<'_>, id: &str) -> (i64, i64) {
    let r = ok(&who.mark_read(id, json!({ "upToSeq": 0 })).await);
    (
        r["lastReadSeq"].as_i64().unwrap(),
        r["unreadCount"].as_i64().unwrap(),
    )
}

/// Every message of the conversation, oldest first.
async fn history(who: &UserClient<'_>, id: &str) -> Vec<Value> {
    let page = ok(&who.list_messages(id, "?after=0&limit=100").await);
    assert_eq!(next_cursor(&page), None);
    items(&page).clone()
}

/// Checks that each user's unread count is exactly the other's messages above their read
/// position, through `PUT /read`, `GET /conversations/:id`, the inbox and `/stats`, and that
/// `status` agrees with the positions.
async fn assert_counts_exact(app: &TestApp, id: &str, users: &[&str]) {
    let messages = history(&app.user(users[0]), id).await;
    let mut positions = HashMap::new();
    for user in users {
        let who = app.user(user);
        let (pos, unread_now) = position(&who, id).await;
        let expected = messages
            .iter()
            .filter(|m| m["senderId"] != *user && m["seq"].as_i64().unwrap() > pos)
            .count() as i64;
        assert_eq!(unread_now, expected, "{user} at {pos}");
        assert_eq!(unread(&who, id).await, expected, "{user}: GET");
        let inbox = ok(&who.list_conversations("").await);
        assert_eq!(items(&inbox)[0]["unreadCount"], expected, "{user}: inbox");
        let stats = ok(&who.stats().await);
        assert_eq!(stats["unreadMessages"], expected, "{user}: stats");
        positions.insert(user.to_string(), pos);
    }
    for m in &messages {
        let seq = m["seq"].as_i64().unwrap();
        let all_read = users
            .iter()
            .filter(|u| m["senderId"] != **u)
            .all(|u| positions[*u] >= seq);
        assert_eq!(
            m["status"],
            if all_read { "read" } else { "sent" },
            "message {seq}: {m}"
        );
    }
}

async fn fifty_concurrent_sends_get_seq_1_to_50(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let sends = (0..50).map(|i| {
        let (who, id) = (if i % 2 == 0 { &alice } else { &bob }, id.clone());
        async move {
            let res = who
                .send(
                    &id,
                    json!({ "content": format!("msg {i}"), "clientMessageId": format!("k{i}") }),
                )
                .await;
            (i, res.assert_status(201).clone())
        }
    });
    let results = join_all(sends).await;
    let mut seqs_got: Vec<i64> = results
        .iter()
        .map(|(_, m)| m["seq"].as_i64().unwrap())
        .collect();
    seqs_got.sort_unstable();
    assert_eq!(seqs_got, (1..=50).collect::<Vec<_>>(), "no gap, no repeat");
    let unique_ids: HashSet<&str> = results
        .iter()
        .map(|(_, m)| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(unique_ids.len(), 50);

    // The stored history agrees with the acknowledgements, message by message.
    let stored = history(&alice, &id).await;
    assert_eq!(
        stored
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    let by_seq: HashMap<i64, &Value> = stored
        .iter()
        .map(|m| (m["seq"].as_i64().unwrap(), m))
        .collect();
    for (i, ack) in &results {
        let m = by_seq[&ack["seq"].as_i64().unwrap()];
        assert_eq!(m["id"], ack["id"]);
        assert_eq!(m["content"], format!("msg {i}").as_str());
        assert_eq!(m["senderId"], if i % 2 == 0 { "u_alice" } else { "u_bob" });
    }
    let c = conversation(&alice, &id).await;
    assert_eq!(c["lastSeq"], 50);
    assert_eq!(c["lastMessage"]["seq"], 50);
    assert_eq!(c["lastMessage"]["id"], by_seq[&50]["id"]);

    // Each user's unread count: the other's messages after their own last one.
    for (user, other) in [("u_alice", "u_bob"), ("u_bob", "u_alice")] {
        let own_last = stored
            .iter()
            .filter(|m| m["senderId"] == user)
            .map(|m| m["seq"].as_i64().unwrap())
            .max()
            .unwrap();
        let expected = stored
            .iter()
            .filter(|m| m["senderId"] == other && m["seq"].as_i64().unwrap() > own_last)
            .count() as i64;
        assert_eq!(unread(&app.user(user), &id).await, expected, "{user}");
    }
    assert_counts_exact(&app, &id, &["u_alice", "u_bob"]).await;
    // Retries after the storm still find the first message.
    let again = alice
        .send(&id, json!({ "content": "msg 0", "clientMessageId": "k0" }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(again["id"], results[0].1["id"]);
}

async fn concurrent_reads_never_move_backwards_and_counts_stay_exact(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    // Some history first, so that reads have something to move over.
    for i in 0..10 {
        alice.say(&id, &format!("before {i}")).await;
    }
    enum Op {
        Send(usize),
        Read(usize),
    }
    let ops: Vec<Op> = (0..60)
        .map(|i| if i % 3 == 2 { Op::Read(i) } else { Op::Send(i) })
        .collect();
    let futures = ops.iter().map(|op| {
        let id = id.clone();
        let (alice, bob) = (&alice, &bob);
        async move {
            match op {
                Op::Send(i) => {
                    let who = if i % 2 == 0 { alice } else { bob };
                    let m = who.say(&id, &format!("during {i}")).await;
                    (false, *i, m["seq"].as_i64().unwrap())
                }
                Op::Read(i) => {
                    // Bob reads everything, or up to an arbitrary lower seq: both concurrent.
                    let who = if i % 2 == 0 { alice } else { bob };
                    let body = if i % 4 == 1 {
                        json!({ "upToSeq": 3 })
                    } else {
                        json!({})
                    };
                    let r = ok(&who.mark_read(&id, body).await);
                    (true, *i, r["lastReadSeq"].as_i64().unwrap())
                }
            }
        }
    });
    let results = join_all(futures).await;
    let mut sent: Vec<i64> = results
        .iter()
        .filter(|(read, _, _)| !read)
        .map(|(_, _, s)| *s)
        .collect();
    sent.sort_unstable();
    assert_eq!(sent, (11..=50).collect::<Vec<_>>());
    // Every read answered a position at least as far as before the storm (10 for bob, who had
    // read nothing; alice's own sends had moved her to 10).
    for (read, i, pos) in &results {
        if *read {
            assert!(*pos >= 3 && *pos <= 50, "read {i} answered {pos}");
        }
    }
    // The final positions are at least every position a read answered.
    let (alice_pos, _) = position(&alice, &id).await;
    let (bob_pos, _) = position(&bob, &id).await;
    for (read, i, pos) in &results {
        if *read {
            let final_pos = if i % 2 == 0 { alice_pos } else { bob_pos };
            assert!(final_pos >= *pos, "read {i}: {pos} then {final_pos}");
        }
    }
    assert_counts_exact(&app, &id, &["u_alice", "u_bob"]).await;
    // Sequential checks: backwards is ignored, forward to the end reads everything.
    let r = ok(&bob.mark_read(&id, json!({ "upToSeq": 1 })).await);
    assert_eq!(r["lastReadSeq"], bob_pos);
    let r = ok(&bob.mark_read(&id, json!({})).await);
    assert_eq!(r["lastReadSeq"], 50);
    assert_eq!(r["unreadCount"], 0);
    assert_counts_exact(&app, &id, &["u_alice", "u_bob"]).await;
}

async fn concurrent_identical_creates_make_one_conversation(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let body = json!({
        "participantIds": ["u_bob"],
        "type": "property_inquiry",
        "propertyId": "prop_race",
        "metadata": { "propertyTitle": "Race St" }
    });
    // 20 identical requests at once: one creates, 19 get it.
    let results = join_all((0..20).map(|_| alice.create_conversation(body.clone()))).await;
    let created = results.iter().filter(|r| r.status.as_u16() == 201).count();
    let existing = results.iter().filter(|r| r.status.as_u16() == 200).count();
    assert_eq!((created, existing), (1, 19), "{results:?}");
    let ids: HashSet<String> = results.iter().map(|r| str_of(&r.body["id"])).collect();
    assert_eq!(ids.len(), 1, "one conversation: {ids:?}");
    let id = ids.into_iter().next().unwrap();
    for r in &results {
        assert_conversation_shape(&r.body);
        assert_eq!(r.body["title"], "Race St");
    }
    for who in [&alice, &bob] {
        let page = ok(&who.list_conversations("").await);
        assert_eq!(super::common::ids(&page), vec![id.clone()]);
        assert_eq!(items(&page)[0]["participants"], json!(["u_alice", "u_bob"]));
    }
    // The same race from both sides, for another property: each names the other.
    let results = join_all((0..20).map(|i| {
        let (who, other) = if i % 2 == 0 {
            (&alice, "u_bob")
        } else {
            (&bob, "u_alice")
        };
        who.create_conversation(json!({ "participantIds": [other], "propertyId": "prop_race_2" }))
    }))
    .await;
    assert_eq!(
        results.iter().filter(|r| r.status.as_u16() == 201).count(),
        1,
        "{results:?}"
    );
    let ids: HashSet<String> = results
        .iter()
        .map(|r| {
            assert!(matches!(r.status.as_u16(), 200 | 201), "{:?}", r.body);
            str_of(&r.body["id"])
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(!ids.contains(&id), "another property, another conversation");
    // Two-person general chats race the same way, in either order.
    let results = join_all((0..20).map(|i| {
        let (who, other) = if i % 2 == 0 {
            (&alice, "u_bob")
        } else {
            (&bob, "u_alice")
        };
        async move {
            who.create_conversation(json!({ "participantIds": [other] }))
                .await
        }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|r| r.status.as_u16() == 201).count(),
        1
    );
    let ids: HashSet<String> = results.iter().map(|r| str_of(&r.body["id"])).collect();
    assert_eq!(ids.len(), 1);
    assert!(!ids.contains(&id));
    // Groups are never deduplicated, concurrently or not.
    let results = join_all(
        (0..5)
            .map(|_| alice.create_conversation(json!({ "participantIds": ["u_bob", "u_carol"] }))),
    )
    .await;
    let ids: HashSet<String> = results
        .iter()
        .map(|r| str_of(&r.assert_status(201)["id"]))
        .collect();
    assert_eq!(ids.len(), 5);
}

async fn concurrent_retries_of_one_client_message_id_make_one_message(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let results = join_all((0..12).map(|_| {
        alice.send(
            &id,
            json!({ "content": "exactly once", "clientMessageId": "c-race" }),
        )
    }))
    .await;
    let created = results.iter().filter(|r| r.status.as_u16() == 201).count();
    let repeated = results.iter().filter(|r| r.status.as_u16() == 200).count();
    assert_eq!((created, repeated), (1, 11), "{results:?}");
    let ids: HashSet<String> = results.iter().map(|r| str_of(&r.body["id"])).collect();
    assert_eq!(ids.len(), 1);
    for r in &results {
        assert_eq!(r.body["seq"], 1);
    }
    assert_eq!(conversation(&alice, &id).await["lastSeq"], 1);
    // The next message follows without a gap.
    assert_eq!(alice.say(&id, "next").await["seq"], 2);
    assert_eq!(
        seqs(&ok(&alice.list_messages(&id, "?after=0").await)),
        vec![1, 2]
    );
}

async fn concurrent_sends_to_many_conversations_keep_each_sequence(app: TestApp) {
    let alice = app.user("u_alice");
    let mut conversations = Vec::new();
    for i in 0..4 {
        conversations.push(alice.conversation_with(&format!("u_peer{i}")).await);
    }
    let peers: Vec<UserClient<'_>> = (0..4).map(|i| app.user(&format!("u_peer{i}"))).collect();
    let results = join_all((0..48).map(|i| {
        let c = i % 4;
        let id = conversations[c].clone();
        let who = if i % 3 == 0 { &alice } else { &peers[c] };
        async move {
            (
                c,
                who.say(&id, &format!("n{i}")).await["seq"]
                    .as_i64()
                    .unwrap(),
            )
        }
    }))
    .await;
    for (c, id) in conversations.iter().enumerate() {
        let mut got: Vec<i64> = results
            .iter()
            .filter(|(k, _)| *k == c)
            .map(|(_, s)| *s)
            .collect();
        got.sort_unstable();
        assert_eq!(got, (1..=12).collect::<Vec<_>>(), "conversation {c}");
        assert_eq!(seqs(&ok(&alice.list_messages(id, "?after=0").await)), got);
    }
    let stats = ok(&alice.stats().await);
    assert_eq!(stats["messagesSent"], 16);
    assert_eq!(stats["messagesReceived"], 32);
}
