//! Messages: send (shape, types, attachments, replies, idempotency), history pages in both
//! directions, edit and delete with their permissions and window.

use crate::common::*;
use chat_shared::time::Clock;
use chat_tests::app::TestApp;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

both_backends!(
    send_answers_201_with_the_contract_shape,
    recipient_is_set_only_in_two_person_conversations,
    seq_is_per_conversation,
    content_is_trimmed_and_counted_in_characters,
    attachments_and_message_types,
    replies_point_into_the_same_conversation,
    same_client_message_id_from_the_same_sender_is_one_message,
    client_message_id_reused_in_another_conversation_is_a_conflict,
    history_pages_newest_first_with_before,
    catch_up_pages_oldest_first_with_after,
    default_page_is_the_newest_fifty,
    edit_own_message,
    delete_own_message_keeps_its_place,
    only_the_sender_may_edit_or_delete,
    edit_and_delete_close_after_24_hours,
);

async fn send_answers_201_with_the_contract_shape(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    app.clock.advance(Duration::from_millis(1234));
    let res = alice
        .send(
            &id,
            json!({ "content": "Sure, 5pm?", "clientMessageId": "c-123", "unknownField": 1 }),
        )
        .await;
    let m = res.assert_status(201).clone();
    assert_message_shape(&m);
    assert_eq!(m["conversationId"], id.as_str());
    assert_eq!(m["seq"], 1);
    assert_eq!(m["senderId"], "u_alice");
    assert_eq!(m["recipientId"], "u_bob");
    assert_eq!(m["type"], "text");
    assert_eq!(m["content"], "Sure, 5pm?");
    assert_eq!(m["status"], "sent");
    assert_eq!(m["readBy"], json!([]));
    assert_eq!(m["replyTo"], Value::Null);
    assert_eq!(m["attachments"], json!([]));
    assert_eq!(m["clientMessageId"], "c-123");
    assert_eq!(m["isEdited"], false);
    assert_eq!(m["editedAt"], Value::Null);
    assert_eq!(m["isDeleted"], false);
    assert_eq!(m["deletedAt"], Value::Null);
    let now = app.clock.now().to_rfc3339();
    assert_eq!(m["createdAt"], now.as_str());

    // The conversation moved: last message, lastSeq, lastMessageAt and updatedAt.
    let c = conversation(&bob, &id).await;
    assert_conversation_shape(&c);
    assert_eq!(c["lastSeq"], 1);
    assert_eq!(c["lastMessageAt"], now.as_str());
    assert_eq!(c["lastMessage"]["id"], m["id"]);
    assert_eq!(c["lastMessage"]["seq"], 1);
    assert_eq!(c["lastMessage"]["senderId"], "u_alice");
    assert_eq!(c["lastMessage"]["type"], "text");
    assert_eq!(c["lastMessage"]["content"], "Sure, 5pm?");
    assert_eq!(c["lastMessage"]["createdAt"], now.as_str());
    assert_eq!(c["unreadCount"], 1);

    // The history holds the same message, the same for both participants.
    let page = ok(&bob.list_messages(&id, "").await);
    assert_eq!(items(&page), &vec![m.clone()]);
    assert_eq!(page["nextCursor"], Value::Null);
    assert_eq!(ok(&alice.list_messages(&id, "").await), page);
    // The reply goes the other way.
    let reply = bob.say(&id, "ok").await;
    assert_eq!(reply["recipientId"], "u_alice");
    assert_eq!(reply["clientMessageId"], Value::Null);
    assert_eq!(reply["seq"], 2);
}

async fn recipient_is_set_only_in_two_person_conversations(app: TestApp) {
    let alice = app.user("u_alice");
    let group = str_of(
        &alice
            .create_conversation(json!({ "participantIds": ["u_bob", "u_carol"] }))
            .await
            .assert_status(201)["id"],
    );
    let m = alice.say(&group, "hi all").await;
    assert_message_shape(&m);
    assert_eq!(m["recipientId"], Value::Null);
    let listed = &first_item(&app.user("u_carol").list_messages(&group, "").await);
    assert_eq!(listed["recipientId"], Value::Null);
    let pair = alice.conversation_with("u_bob").await;
    assert_eq!(alice.say(&pair, "hi bob").await["recipientId"], "u_bob");
}

async fn seq_is_per_conversation(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let a = alice.conversation_with("u_bob").await;
    let b = alice.conversation_with("u_carol").await;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for i in 0..4 {
        got_a.push(
            alice.say(&a, &format!("a{i}")).await["seq"]
                .as_i64()
                .unwrap(),
        );
        got_b.push(
            alice.say(&b, &format!("b{i}")).await["seq"]
                .as_i64()
                .unwrap(),
        );
        got_a.push(
            bob.say(&a, &format!("a-bob{i}")).await["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(got_a, (1..=8).collect::<Vec<_>>());
    assert_eq!(got_b, (1..=4).collect::<Vec<_>>());
    assert_eq!(conversation(&alice, &a).await["lastSeq"], 8);
    assert_eq!(conversation(&alice, &b).await["lastSeq"], 4);
}

async fn content_is_trimmed_and_counted_in_characters(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let m = alice.say(&id, "  \n hello there \t ").await;
    assert_eq!(m["content"], "hello there");
    // 4000 characters of two bytes each: within the limit (characters, not bytes).
    let long = "é".repeat(4000);
    let m = alice.say(&id, &long).await;
    assert_eq!(m["content"], long.as_str());
    // Surrounding whitespace does not count.
    let padded = format!("   {}   ", "x".repeat(4000));
    assert_eq!(alice.say(&id, &padded).await["content"], "x".repeat(4000));
    let emoji = "🏠 ünïcødé 中文";
    assert_eq!(alice.say(&id, emoji).await["content"], emoji);
    let detail = alice
        .send(&id, json!({ "content": "é".repeat(4001) }))
        .await
        .assert_problem(400, "bad_request");
    assert!(detail.contains("content"), "{detail}");
    assert_eq!(
        conversation(&alice, &id).await["lastSeq"],
        4,
        "nothing stored"
    );
}

fn attachment(kind: &str, n: usize) -> Value {
    json!({
        "type": kind,
        "url": format!("https://cdn.example.com/files/{n}.bin"),
        "filename": format!("file-{n}.bin"),
        "size": 1000 + n,
    })
}

async fn attachments_and_message_types(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    // An image with no caption.
    let photo = json!({
        "type": "image", "url": "https://cdn.example.com/p/1.jpg",
        "filename": "kitchen.jpg", "size": 123456, "mimeType": "image/jpeg"
    });
    let m = alice
        .send(
            &id,
            json!({ "type": "image", "content": "", "attachments": [photo] }),
        )
        .await
        .assert_status(201)
        .clone();
    assert_message_shape(&m);
    assert_eq!(m["type"], "image");
    assert_eq!(m["content"], "");
    assert_eq!(m["attachments"], json!([photo]));
    // A file with a caption, without mimeType (optional: absent or null on the way back).
    let file = attachment("file", 1);
    let m = alice
        .send(
            &id,
            json!({ "type": "file", "content": "the lease", "attachments": [file] }),
        )
        .await
        .assert_status(201)
        .clone();
    let back = &m["attachments"][0];
    assert_eq!(back["type"], "file");
    assert_eq!(back["url"], file["url"]);
    assert_eq!(back["filename"], file["filename"]);
    assert_eq!(back["size"], file["size"]);
    assert!(back["mimeType"].is_null(), "{back}");
    // Ten attachments are allowed.
    let ten: Vec<Value> = (0..10).map(|n| attachment("image", n)).collect();
    let m = alice
        .send(&id, json!({ "type": "image", "attachments": ten }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(m["attachments"].as_array().unwrap().len(), 10);
    // A property share is an ordinary message type.
    let m = bob
        .send(
            &id,
            json!({ "type": "property_share", "content": "https://rent.example/p/42" }),
        )
        .await
        .assert_status(201)
        .clone();
    assert_eq!(m["type"], "property_share");
    // A text message with an attachment keeps it.
    let m = bob
        .send(
            &id,
            json!({ "content": "see", "attachments": [attachment("file", 2)] }),
        )
        .await
        .assert_status(201)
        .clone();
    assert_eq!(m["type"], "text");
    assert_eq!(m["attachments"].as_array().unwrap().len(), 1);
    // Empty content is only for image/file messages that carry attachments.
    for body in [
        json!({ "type": "image", "content": "" }),
        json!({ "type": "image", "content": "  ", "attachments": [] }),
        json!({ "content": "", "attachments": [attachment("image", 3)] }),
        json!({ "type": "property_share", "content": " ", "attachments": [attachment("file", 3)] }),
    ] {
        let detail = alice
            .send(&id, body.clone())
            .await
            .assert_problem(400, "bad_request");
        assert!(detail.contains("content"), "{body}: {detail}");
    }
    // The history returns the attachments as stored.
    let page = ok(&bob.list_messages(&id, "?after=0").await);
    assert_eq!(items(&page)[0]["attachments"], json!([photo]));
    assert_eq!(seqs(&page), vec![1, 2, 3, 4, 5]);
}

async fn replies_point_into_the_same_conversation(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let question = alice.say(&id, "5pm?").await;
    let answer = bob
        .send(&id, json!({ "content": "yes", "replyTo": question["id"] }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(answer["replyTo"], question["id"]);
    let listed = &first_item(&alice.list_messages(&id, "").await);
    assert_eq!(listed["replyTo"], question["id"]);
    // A message of another conversation, or one that does not exist, is not a valid target.
    let other = alice.conversation_with("u_carol").await;
    let elsewhere = alice.say(&other, "elsewhere").await;
    for target in [elsewhere["id"].clone(), json!("no-such-message")] {
        let detail = bob
            .send(&id, json!({ "content": "re", "replyTo": target }))
            .await
            .assert_problem(400, "bad_request");
        assert!(detail.contains("replyTo"), "{detail}");
    }
    // Replying to a deleted message is still a reply into this conversation.
    alice
        .delete_message(&str_of(&question["id"]))
        .await
        .assert_status(204);
    bob.send(
        &id,
        json!({ "content": "re-re", "replyTo": question["id"] }),
    )
    .await
    .assert_status(201);
}

async fn same_client_message_id_from_the_same_sender_is_one_message(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let first = alice
        .send(
            &id,
            json!({ "content": "only once", "clientMessageId": "c-1" }),
        )
        .await
        .assert_status(201)
        .clone();
    // A retry, even with other content, answers 200 with the first message.
    for content in ["only once", "changed my mind"] {
        let again = alice
            .send(&id, json!({ "content": content, "clientMessageId": "c-1" }))
            .await
            .assert_status(200)
            .clone();
        assert_eq!(again, first);
    }
    let c = conversation(&alice, &id).await;
    assert_eq!(c["lastSeq"], 1, "no new seq");
    assert_eq!(unread(&bob, &id).await, 1);
    // The next new message takes seq 2: the retries spent nothing.
    assert_eq!(alice.say(&id, "next").await["seq"], 2);
    // The same clientMessageId from a different sender is a different message.
    let bobs = bob
        .send(&id, json!({ "content": "mine", "clientMessageId": "c-1" }))
        .await
        .assert_status(201)
        .clone();
    assert_ne!(bobs["id"], first["id"]);
    assert_eq!(bobs["seq"], 3);
    assert_eq!(bobs["senderId"], "u_bob");
    // And bob's retry finds bob's.
    let bobs_again = bob
        .send(&id, json!({ "content": "mine", "clientMessageId": "c-1" }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(bobs_again["id"], bobs["id"]);
    let page = ok(&alice.list_messages(&id, "?after=0").await);
    assert_eq!(seqs(&page), vec![1, 2, 3]);
    // A retry after the first was read reflects its current state (read by bob).
    bob.mark_read(&id, json!({})).await.assert_status(200);
    let again = alice
        .send(
            &id,
            json!({ "content": "only once", "clientMessageId": "c-1" }),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["status"], "read");
    // Three messages were written, whatever the retries: `/metrics` counts those.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.origin))
        .send()
        .await
        .unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines().any(|l| l == "chat_messages_persisted_total 3"),
        "{text}"
    );
    // Answers are counted by declared route (not by id), method and status.
    let created = r#"chat_http_requests_total{method="POST",route="/api/v1/chat/conversations/{id}/messages",status="201"} 3"#;
    let retried = r#"chat_http_requests_total{method="POST",route="/api/v1/chat/conversations/{id}/messages",status="200"} 4"#;
    for line in [created, retried] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(!text.contains(&id), "an id in the labels: {text}");
    // Refusals by code: a send to a conversation that does not exist.
    alice
        .send(
            "0193b1d2-0000-7000-8000-000000000000",
            json!({ "content": "x" }),
        )
        .await
        .assert_status(404);
    let text = app.metrics().await;
    let refused = r#"chat_rejected_requests_total{transport="rest",code="not_found"} 1"#;
    assert!(text.lines().any(|l| l == refused), "{refused} in\n{text}");
}

async fn client_message_id_reused_in_another_conversation_is_a_conflict(app: TestApp) {
    let alice = app.user("u_alice");
    let a = alice.conversation_with("u_bob").await;
    let b = alice.conversation_with("u_carol").await;
    alice
        .send(&a, json!({ "content": "x", "clientMessageId": "c-shared" }))
        .await
        .assert_status(201);
    let detail = alice
        .send(&b, json!({ "content": "x", "clientMessageId": "c-shared" }))
        .await
        .assert_problem(409, "conflict");
    assert!(detail.contains("clientMessageId"), "{detail}");
    assert_eq!(conversation(&alice, &b).await["lastSeq"], 0);
    // Another sender may use it anywhere.
    app.user("u_carol")
        .send(&b, json!({ "content": "x", "clientMessageId": "c-shared" }))
        .await
        .assert_status(201);
}

/// Sends `n` messages alternating between alice and bob; returns their ids by seq (index 0 is
/// seq 1).
async fn fill(app: &TestApp, id: &str, n: usize) -> Vec<String> {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let mut out = Vec::new();
    for i in 1..=n {
        let who = if i % 3 == 0 { &bob } else { &alice };
        let m = who.say(id, &format!("message {i}")).await;
        assert_eq!(m["seq"], i);
        out.push(str_of(&m["id"]));
    }
    out
}

async fn history_pages_newest_first_with_before(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let sent = fill(&app, &id, 25).await;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let q = match &before {
            None => "?limit=10".to_owned(),
            Some(b) => format!("?limit=10&before={b}"),
        };
        let page = ok(&alice.list_messages(&id, &q).await);
        for m in items(&page) {
            assert_message_shape(m);
        }
        let s = seqs(&page);
        pages.push(s.clone());
        seen.extend(s);
        match next_cursor(&page) {
            Some(cursor) => {
                // The cursor is the seq of the oldest message of the page.
                assert_eq!(cursor.parse::<i64>().unwrap(), *seen.last().unwrap());
                before = Some(cursor);
            }
            None => break,
        }
    }
    assert_eq!(
        pages,
        vec![
            (16..=25).rev().collect::<Vec<i64>>(),
            (6..=15).rev().collect(),
            (1..=5).rev().collect(),
        ]
    );
    assert_eq!(
        seen,
        (1..=25).rev().collect::<Vec<i64>>(),
        "nothing missing or repeated"
    );
    // Ids match what was sent, in order.
    let page = ok(&alice.list_messages(&id, "?limit=100").await);
    let mut listed = ids(&page);
    listed.reverse();
    assert_eq!(listed, sent);
    // `before` past the end, and an exact page-full with nothing after it.
    assert_eq!(
        seqs(&ok(&alice.list_messages(&id, "?before=1000&limit=2").await)),
        vec![25, 24]
    );
    let page = ok(&alice.list_messages(&id, "?before=6&limit=5").await);
    assert_eq!(seqs(&page), vec![5, 4, 3, 2, 1]);
    assert_eq!(next_cursor(&page), None);
    let page = ok(&alice.list_messages(&id, "?before=1").await);
    assert!(items(&page).is_empty());
    assert_eq!(next_cursor(&page), None);
}

async fn catch_up_pages_oldest_first_with_after(app: TestApp) {
    let bob = app.user("u_bob");
    let id = app.user("u_alice").conversation_with("u_bob").await;
    fill(&app, &id, 23).await;
    // Catch up from a known seq.
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut after = "7".to_owned();
    loop {
        let page = ok(&bob
            .list_messages(&id, &format!("?after={after}&limit=6"))
            .await);
        let s = seqs(&page);
        pages.push(s.clone());
        seen.extend(s);
        match next_cursor(&page) {
            Some(cursor) => {
                assert_eq!(cursor.parse::<i64>().unwrap(), *seen.last().unwrap());
                after = cursor;
            }
            None => break,
        }
    }
    assert_eq!(
        pages,
        vec![
            (8..=13).collect::<Vec<i64>>(),
            (14..=19).collect(),
            (20..=23).collect(),
        ]
    );
    // The whole history, oldest first, from after=0.
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = ok(&bob
            .list_messages(&id, &format!("?after={after}&limit=5"))
            .await);
        all.extend(seqs(&page));
        match next_cursor(&page) {
            Some(c) => after = c.parse().unwrap(),
            None => break,
        }
    }
    assert_eq!(all, (1..=23).collect::<Vec<i64>>());
    // Up to date: an empty page.
    let page = ok(&bob.list_messages(&id, "?after=23").await);
    assert!(items(&page).is_empty());
    assert_eq!(next_cursor(&page), None);
    // New messages show up in the next catch-up.
    app.user("u_alice").say(&id, "new").await;
    assert_eq!(
        seqs(&ok(&bob.list_messages(&id, "?after=23").await)),
        vec![24]
    );
    // Exactly a page-full at the end: no cursor.
    let page = ok(&bob.list_messages(&id, "?after=20&limit=4").await);
    assert_eq!(seqs(&page), vec![21, 22, 23, 24]);
    assert_eq!(next_cursor(&page), None);
}

async fn default_page_is_the_newest_fifty(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    for i in 1..=55 {
        alice.say(&id, &format!("m{i}")).await;
    }
    let page = ok(&alice.list_messages(&id, "").await);
    assert_eq!(seqs(&page), (6..=55).rev().collect::<Vec<i64>>());
    assert_eq!(next_cursor(&page).as_deref(), Some("6"));
    let page = ok(&alice.list_messages(&id, "?before=6").await);
    assert_eq!(seqs(&page), (1..=5).rev().collect::<Vec<i64>>());
    assert_eq!(next_cursor(&page), None);
    let page = ok(&alice.list_messages(&id, "?after=0").await);
    assert_eq!(seqs(&page), (1..=50).collect::<Vec<i64>>());
    assert_eq!(next_cursor(&page).as_deref(), Some("50"));
    let page = ok(&alice.list_messages(&id, "?limit=100").await);
    assert_eq!(seqs(&page).len(), 55);
    assert_eq!(next_cursor(&page), None);
}

async fn edit_own_message(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let m = alice
        .send(
            &id,
            json!({ "content": "see you at 5", "clientMessageId": "c-9" }),
        )
        .await
        .assert_status(201)
        .clone();
    app.clock.advance(Duration::from_secs(60));
    let edited = alice
        .edit_message(&str_of(&m["id"]), json!({ "content": "  see you at 6  " }))
        .await
        .assert_status(200)
        .clone();
    assert_message_shape(&edited);
    assert_eq!(edited["content"], "see you at 6");
    assert_eq!(edited["isEdited"], true);
    assert_eq!(edited["editedAt"], app.clock.now().to_rfc3339().as_str());
    for same in [
        "id",
        "seq",
        "createdAt",
        "senderId",
        "clientMessageId",
        "conversationId",
    ] {
        assert_eq!(edited[same], m[same], "{same} is kept");
    }
    let listed = &first_item(&bob.list_messages(&id, "").await);
    assert_eq!(listed, &edited);
    let c = conversation(&bob, &id).await;
    assert_eq!(c["lastMessage"]["content"], "see you at 6");
    assert_eq!(c["lastSeq"], 1, "an edit is not a new message");
    // Editing again is fine; editing to nothing is not.
    let again = alice
        .edit_message(&str_of(&m["id"]), json!({ "content": "at 7" }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(again["content"], "at 7");
    let detail = alice
        .edit_message(&str_of(&m["id"]), json!({ "content": "   " }))
        .await
        .assert_problem(400, "bad_request");
    assert!(detail.contains("content"), "{detail}");
    // An image keeps its attachments and may lose its caption.
    let image = alice
        .send(
            &id,
            json!({ "type": "image", "content": "caption", "attachments": [attachment("image", 1)] }),
        )
        .await
        .assert_status(201)
        .clone();
    let edited = alice
        .edit_message(&str_of(&image["id"]), json!({ "content": "" }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(edited["content"], "");
    assert_eq!(edited["attachments"], image["attachments"]);
}

async fn delete_own_message_keeps_its_place(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    alice.say(&id, "first").await;
    let m = alice
        .send(
            &id,
            json!({ "type": "image", "content": "oops", "attachments": [attachment("image", 1)] }),
        )
        .await
        .assert_status(201)
        .clone();
    let mid = str_of(&m["id"]);
    assert_eq!(unread(&bob, &id).await, 2);
    app.clock.advance(Duration::from_secs(30));
    let res = alice.delete_message(&mid).await;
    assert_eq!(res.status.as_u16(), 204, "{:?}", res.body);
    assert_eq!(res.body, Value::Null);
    let page = ok(&bob.list_messages(&id, "").await);
    let deleted = &items(&page)[0];
    assert_message_shape(deleted);
    assert_eq!(deleted["id"], m["id"]);
    assert_eq!(deleted["seq"], 2);
    assert_eq!(deleted["createdAt"], m["createdAt"]);
    assert_eq!(deleted["isDeleted"], true);
    assert_eq!(deleted["deletedAt"], app.clock.now().to_rfc3339().as_str());
    assert_eq!(deleted["content"], "");
    assert_eq!(deleted["attachments"], json!([]));
    assert_eq!(seqs(&page), vec![2, 1], "the seq is not reused or dropped");
    // The inbox shows the deleted last message as deleted; it no longer counts as unread.
    let c = conversation(&bob, &id).await;
    assert_eq!(c["lastMessage"]["id"], m["id"]);
    assert_eq!(c["lastMessage"]["content"], "");
    assert_eq!(c["lastMessage"]["isDeleted"], true);
    assert_eq!(c["unreadCount"], 1);
    // Deleting again is harmless and keeps the first deletion time; editing is a conflict.
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(alice.delete_message(&mid).await.status.as_u16(), 204);
    let again = &first_item(&bob.list_messages(&id, "").await);
    assert_eq!(again["deletedAt"], deleted["deletedAt"]);
    let detail = alice
        .edit_message(&mid, json!({ "content": "undo" }))
        .await
        .assert_problem(409, "conflict");
    assert!(detail.contains("deleted"), "{detail}");
    // The next message still takes the next seq.
    assert_eq!(alice.say(&id, "third").await["seq"], 3);
}

async fn only_the_sender_may_edit_or_delete(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = str_of(
        &alice
            .create_conversation(json!({ "participantIds": ["u_bob", "u_carol"] }))
            .await
            .assert_status(201)["id"],
    );
    let m = alice.say(&id, "mine").await;
    let mid = str_of(&m["id"]);
    for who in [&bob, &app.user("u_carol")] {
        who.edit_message(&mid, json!({ "content": "hijacked" }))
            .await
            .assert_problem(403, "forbidden");
        who.delete_message(&mid)
            .await
            .assert_problem(403, "forbidden");
    }
    // Staff roles do not make someone else's message theirs.
    staff(&app, "u_bob", "admin")
        .edit_message(&mid, json!({ "content": "hijacked" }))
        .await
        .assert_problem(403, "forbidden");
    let listed = &first_item(&alice.list_messages(&id, "").await);
    assert_eq!(listed["content"], "mine");
    assert_eq!(listed["isEdited"], false);
    assert_eq!(listed["isDeleted"], false);
}

async fn edit_and_delete_close_after_24_hours(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let early = str_of(&alice.say(&id, "early").await["id"]);
    let also_early = str_of(&alice.say(&id, "also early").await["id"]);
    // Just inside the window: both still work.
    app.clock
        .advance(Duration::from_secs(24 * 3600) - Duration::from_secs(1));
    alice
        .edit_message(&early, json!({ "content": "edited in time" }))
        .await
        .assert_status(200);
    let late = str_of(&alice.say(&id, "late").await["id"]);
    // Two seconds later (24 h + 1 s after sending): closed, with its own code.
    app.clock.advance(Duration::from_secs(2));
    for res in [
        alice
            .edit_message(&early, json!({ "content": "too late" }))
            .await,
        alice.delete_message(&early).await,
        alice.delete_message(&also_early).await,
    ] {
        res.assert_problem(403, "edit_window_passed");
    }
    // The later message is still inside its own window.
    alice
        .edit_message(&late, json!({ "content": "late edit" }))
        .await
        .assert_status(200);
    alice.delete_message(&late).await.assert_status(204);
    let page = ok(&alice.list_messages(&id, "?after=0").await);
    let contents: Vec<&str> = items(&page)
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["edited in time", "also early", ""]);
    // Not-yours still answers forbidden (the sender check comes first).
    app.user("u_bob")
        .edit_message(&early, json!({ "content": "x" }))
        .await
        .assert_problem(403, "forbidden");
    let unique: HashSet<String> = ids(&page).into_iter().collect();
    assert_eq!(unique.len(), 3);
}
