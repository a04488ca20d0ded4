//! Conversations: create-or-get, get, the inbox (order, filters, cursor pages), rename, block,
//! archive, mute and delete-for-me.

use crate::common::*;
use chat_shared::time::Clock;
use chat_tests::app::TestApp;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

both_backends!(
    create_answers_201_with_the_contract_shape,
    title_defaults_to_the_property_title_and_type_to_general,
    initial_message_is_sent_on_create_and_on_get,
    property_inquiries_and_pairs_are_not_duplicated,
    groups_support_and_other_properties_are_new_conversations,
    inbox_is_most_recent_activity_first_in_cursor_pages,
    inbox_pages_are_exact_when_activity_ties,
    inbox_filters_by_status_type_and_property,
    archive_and_unarchive_are_the_callers_own,
    mute_and_unmute_are_the_callers_own,
    patch_renames_for_everyone,
    block_stops_every_sender_and_only_the_blocker_unblocks,
    support_staff_may_unblock,
    initial_message_to_a_blocked_conversation_is_refused,
    delete_for_me_hides_until_a_newer_message,
    delete_for_me_is_idempotent_and_empty_conversations_stay_hidden,
);

async fn create_answers_201_with_the_contract_shape(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let metadata = json!({
        "propertyTitle": "2BR on Elm St",
        "propertyAddress": "12 Elm St",
        "inquiryType": "viewing"
    });
    let res = alice
        .create_conversation(json!({
            "participantIds": ["u_bob"],
            "type": "property_inquiry",
            "propertyId": "prop_42",
            "title": "  Viewing on Saturday  ",
            "metadata": metadata,
            "someFutureField": { "ignored": true }
        }))
        .await;
    let c = res.assert_status(201).clone();
    assert_conversation_shape(&c);
    assert_eq!(c["type"], "property_inquiry");
    assert_eq!(c["status"], "active");
    assert_eq!(c["participants"], json!(["u_alice", "u_bob"]));
    assert_eq!(c["createdBy"], "u_alice");
    assert_eq!(c["propertyId"], "prop_42");
    assert_eq!(c["title"], "Viewing on Saturday", "title is trimmed");
    assert_eq!(c["metadata"], metadata);
    assert_eq!(c["lastMessage"], Value::Null);
    assert_eq!(c["lastMessageAt"], Value::Null);
    assert_eq!(c["lastSeq"], 0);
    assert_eq!(c["unreadCount"], 0);
    assert_eq!(c["archived"], false);
    assert_eq!(c["muted"], false);
    // Times come from the service's clock, as RFC 3339 with milliseconds.
    let now = app.clock.now().to_rfc3339();
    assert_eq!(c["createdAt"], now.as_str());
    assert_eq!(c["updatedAt"], now.as_str());

    // The other participant sees the same conversation; GET answers it to both.
    let id = str_of(&c["id"]);
    let seen_by_bob = conversation(&bob, &id).await;
    assert_conversation_shape(&seen_by_bob);
    assert_eq!(seen_by_bob, c, "nothing differs before anyone acts");
    assert_eq!(conversation(&alice, &id).await, c);

    // A participant id naming the caller is not a second participant.
    let res = bob
        .create_conversation(json!({ "participantIds": ["u_bob", "u_carol", "u_carol"] }))
        .await;
    let c = res.assert_status(201);
    assert_eq!(c["participants"], json!(["u_bob", "u_carol"]));
    assert_eq!(c["type"], "general");
    assert_eq!(c["propertyId"], Value::Null);
    assert_eq!(c["title"], Value::Null);
    assert_eq!(c["metadata"], json!({}));
}

async fn title_defaults_to_the_property_title_and_type_to_general(app: TestApp) {
    let alice = app.user("u_alice");
    // propertyId without type: a property inquiry, titled after metadata.propertyTitle.
    let c = alice
        .create_conversation(json!({
            "participantIds": ["u_landlord"],
            "propertyId": "507f1f77bcf86cd799439011",
            "metadata": { "propertyTitle": "Loft by the river", "propertyAddress": "1 Quay" }
        }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(c["type"], "property_inquiry");
    assert_eq!(c["title"], "Loft by the river");
    assert_eq!(c["propertyId"], "507f1f77bcf86cd799439011");
    // No property: general.
    let c = alice
        .create_conversation(json!({ "participantIds": ["u_friend"] }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(c["type"], "general");
    // Explicit support type.
    let c = alice
        .create_conversation(json!({ "participantIds": ["u_agent"], "type": "support" }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(c["type"], "support");
}

async fn initial_message_is_sent_on_create_and_on_get(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let body = json!({
        "participantIds": ["u_bob"],
        "propertyId": "prop_1",
        "initialMessage": "  Is it still available?  "
    });
    let c = alice
        .create_conversation(body.clone())
        .await
        .assert_status(201)
        .clone();
    assert_conversation_shape(&c);
    assert_eq!(c["lastSeq"], 1);
    assert_eq!(c["lastMessage"]["content"], "Is it still available?");
    assert_eq!(c["lastMessage"]["senderId"], "u_alice");
    assert_eq!(c["lastMessage"]["seq"], 1);
    assert_eq!(c["lastMessage"]["type"], "text");
    assert_eq!(c["unreadCount"], 0, "your own message is not unread");
    let id = str_of(&c["id"]);
    assert_eq!(unread(&bob, &id).await, 1);

    // The form submitted again: the same conversation, and the question is not dropped.
    let again = alice
        .create_conversation(json!({
            "participantIds": ["u_bob"],
            "propertyId": "prop_1",
            "initialMessage": "Hello again"
        }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["lastSeq"], 2);
    assert_eq!(again["lastMessage"]["content"], "Hello again");
    assert_eq!(unread(&bob, &id).await, 2);
    let page = ok(&bob.list_messages(&id, "?after=0").await);
    assert_eq!(seqs(&page), vec![1, 2]);
}

async fn property_inquiries_and_pairs_are_not_duplicated(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    // Property inquiry: same participants and property, whoever asks and in whatever order.
    let first = alice
        .create_conversation(json!({ "participantIds": ["u_bob"], "propertyId": "prop_7" }))
        .await
        .assert_status(201)
        .clone();
    let id = str_of(&first["id"]);
    for (who, body) in [
        (
            &alice,
            json!({ "participantIds": ["u_bob"], "propertyId": "prop_7", "type": "property_inquiry" }),
        ),
        (
            &bob,
            json!({ "participantIds": ["u_alice"], "propertyId": "prop_7" }),
        ),
        (
            &alice,
            json!({ "participantIds": ["u_bob", "u_alice"], "propertyId": "prop_7" }),
        ),
    ] {
        let res = who.create_conversation(body).await;
        let c = res.assert_status(200);
        assert_eq!(c["id"], id.as_str());
        assert_eq!(c["createdBy"], "u_alice", "the existing one, unchanged");
        assert_conversation_shape(c);
    }
    // General two-person: same pair regardless of order or who asks.
    let pair = alice.conversation_with("u_bob").await;
    assert_ne!(pair, id, "a general chat is not the property inquiry");
    let res = bob
        .create_conversation(json!({ "participantIds": ["u_alice"] }))
        .await;
    assert_eq!(res.assert_status(200)["id"], pair.as_str());
    let res = alice
        .create_conversation(json!({ "participantIds": ["u_bob"], "type": "general" }))
        .await;
    assert_eq!(res.assert_status(200)["id"], pair.as_str());
    // Nothing was duplicated in either inbox.
    for who in [&alice, &bob] {
        let page = ok(&who.list_conversations("").await);
        let mut got = ids(&page);
        got.sort();
        let mut want = vec![id.clone(), pair.clone()];
        want.sort();
        assert_eq!(got, want, "inbox of {}", who.id);
    }
}

async fn groups_support_and_other_properties_are_new_conversations(app: TestApp) {
    let alice = app.user("u_alice");
    let mut seen = HashSet::new();
    let bodies = [
        json!({ "participantIds": ["u_bob", "u_carol"] }),
        json!({ "participantIds": ["u_carol", "u_bob"] }),
        json!({ "participantIds": ["u_agent"], "type": "support" }),
        json!({ "participantIds": ["u_agent"], "type": "support" }),
        json!({ "participantIds": ["u_bob"], "propertyId": "prop_1" }),
        json!({ "participantIds": ["u_bob"], "propertyId": "prop_2" }),
        json!({ "participantIds": ["u_bob", "u_carol"], "propertyId": "prop_1" }),
        json!({ "participantIds": ["u_carol"], "propertyId": "prop_1" }),
    ];
    for body in bodies {
        let res = alice.create_conversation(body.clone()).await;
        let c = res.assert_status(201);
        assert!(seen.insert(str_of(&c["id"])), "{body} made a new one");
    }
    // A group inquiry is deduplicated on its full participant set.
    let res = alice
        .create_conversation(
            json!({ "participantIds": ["u_carol", "u_bob"], "propertyId": "prop_1" }),
        )
        .await;
    assert!(seen.contains(&str_of(&res.assert_status(200)["id"])));
}

/// Creates a general conversation between `owner` and `other` at the current clock time.
async fn make(app: &TestApp, owner: &str, other: &str) -> String {
    app.user(owner).conversation_with(other).await
}

/// Walks every page of `GET /conversations{query}` (the query must already hold `limit`).
async fn walk_inbox(app: &TestApp, user: &str, query: &str) -> (Vec<String>, Vec<usize>) {
    let who = app.user(user);
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => query.to_owned(),
            Some(c) => format!("{query}&cursor={}", urlencode(c)),
        };
        let page = ok(&who.list_conversations(&q).await);
        for c in items(&page) {
            assert_conversation_shape(c);
        }
        sizes.push(items(&page).len());
        all.extend(ids(&page));
        match next_cursor(&page) {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(sizes.len() < 50, "pagination does not end");
    }
    (all, sizes)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn inbox_is_most_recent_activity_first_in_cursor_pages(app: TestApp) {
    let alice = app.user("u_alice");
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(make(&app, "u_alice", &format!("u_peer{i}")).await);
        app.clock.advance(Duration::from_secs(1));
    }
    // Newest first.
    let expected: Vec<String> = created.iter().rev().cloned().collect();
    let (all, sizes) = walk_inbox(&app, "u_alice", "?limit=3").await;
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(all, expected);
    // One page of everything says the same, and there is nothing after it.
    let page = ok(&alice.list_conversations("?limit=100").await);
    assert_eq!(ids(&page), expected);
    assert_eq!(next_cursor(&page), None);
    // The default limit is 20: all 7 fit.
    let page = ok(&alice.list_conversations("").await);
    assert_eq!(ids(&page).len(), 7);
    assert_eq!(next_cursor(&page), None);

    // A message moves the oldest conversation to the top; the others keep their order.
    let oldest = created[0].clone();
    app.user("u_peer0").say(&oldest, "bump").await;
    let mut expected: Vec<String> = created[1..].iter().rev().cloned().collect();
    expected.insert(0, oldest.clone());
    let (all, sizes) = walk_inbox(&app, "u_alice", "?limit=3").await;
    assert_eq!(all, expected);
    assert_eq!(sizes, vec![3, 3, 1]);
    let top = &first_item(&alice.list_conversations("?limit=1").await);
    assert_eq!(top["id"], oldest.as_str());
    assert_eq!(top["lastMessage"]["content"], "bump");
    assert_eq!(top["unreadCount"], 1);

    // Exactly a page-full: no cursor to an empty page.
    let page = ok(&app.user("u_peer3").list_conversations("?limit=1").await);
    assert_eq!(ids(&page).len(), 1);
    assert_eq!(next_cursor(&page), None);
}

async fn inbox_pages_are_exact_when_activity_ties(app: TestApp) {
    // All created in the same millisecond: the cursor must still neither skip nor repeat.
    let mut created = HashSet::new();
    for i in 0..7 {
        created.insert(make(&app, "u_alice", &format!("u_tie{i}")).await);
    }
    let (all, sizes) = walk_inbox(&app, "u_alice", "?limit=2").await;
    assert_eq!(sizes, vec![2, 2, 2, 1]);
    let unique: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(unique.len(), 7, "no repeats: {all:?}");
    assert_eq!(unique, created);
    let one_page = ids(&ok(&app
        .user("u_alice")
        .list_conversations("?limit=100")
        .await));
    assert_eq!(all, one_page, "pages follow the same order as one big page");
}

async fn inbox_filters_by_status_type_and_property(app: TestApp) {
    let alice = app.user("u_alice");
    let general = alice.conversation_with("u_bob").await;
    let inquiry = str_of(
        &alice
            .create_conversation(json!({ "participantIds": ["u_bob"], "propertyId": "prop_9" }))
            .await
            .assert_status(201)["id"],
    );
    let other_inquiry = str_of(
        &alice
            .create_conversation(json!({ "participantIds": ["u_bob"], "propertyId": "prop_10" }))
            .await
            .assert_status(201)["id"],
    );
    let support = str_of(
        &alice
            .create_conversation(json!({ "participantIds": ["u_agent"], "type": "support" }))
            .await
            .assert_status(201)["id"],
    );
    alice
        .archive(&other_inquiry, json!({ "archived": true }))
        .await
        .assert_status(200);

    let set = |page: &Value| ids(page).into_iter().collect::<HashSet<_>>();
    let of = |v: &[&String]| v.iter().map(|s| (*s).clone()).collect::<HashSet<_>>();

    let all = ok(&alice.list_conversations("").await);
    assert_eq!(
        set(&all),
        of(&[&general, &inquiry, &other_inquiry, &support])
    );
    let active = ok(&alice.list_conversations("?status=active").await);
    assert_eq!(set(&active), of(&[&general, &inquiry, &support]));
    for c in items(&active) {
        assert_eq!(c["archived"], false);
    }
    let archived = ok(&alice.list_conversations("?status=archived").await);
    assert_eq!(set(&archived), of(&[&other_inquiry]));
    assert_eq!(items(&archived)[0]["status"], "archived");
    let inquiries = ok(&alice.list_conversations("?type=property_inquiry").await);
    assert_eq!(set(&inquiries), of(&[&inquiry, &other_inquiry]));
    let supports = ok(&alice.list_conversations("?type=support").await);
    assert_eq!(set(&supports), of(&[&support]));
    let generals = ok(&alice.list_conversations("?type=general").await);
    assert_eq!(set(&generals), of(&[&general]));
    let by_property = ok(&alice.list_conversations("?propertyId=prop_9").await);
    assert_eq!(set(&by_property), of(&[&inquiry]));
    let combined = ok(&alice
        .list_conversations("?status=active&type=property_inquiry&propertyId=prop_10")
        .await);
    assert!(items(&combined).is_empty(), "prop_10 is archived");
    let none = ok(&alice.list_conversations("?propertyId=prop_unknown").await);
    assert!(items(&none).is_empty());
    assert_eq!(next_cursor(&none), None);
    // Bob archived nothing: his status filter sees both inquiries as active.
    let bobs = ok(&app
        .user("u_bob")
        .list_conversations("?status=active&type=property_inquiry")
        .await);
    assert_eq!(set(&bobs), of(&[&inquiry, &other_inquiry]));
    // Someone else sees none of these.
    let eve = ok(&app.user("u_eve").list_conversations("").await);
    assert!(items(&eve).is_empty());
}

async fn archive_and_unarchive_are_the_callers_own(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    // No body: archive is the default.
    let res = alice
        .call(
            reqwest::Method::PUT,
            &format!("/conversations/{id}/archive"),
            None,
        )
        .await;
    let c = res.assert_status(200).clone();
    assert_conversation_shape(&c);
    assert_eq!(c["archived"], true);
    assert_eq!(c["status"], "archived");
    assert_eq!(c["muted"], false, "archiving is not muting");
    let c = conversation(&bob, &id).await;
    assert_eq!(c["archived"], false, "bob's flag is his own");
    assert_eq!(c["status"], "active");
    // `{}` also archives; archiving twice is harmless.
    let c = alice
        .archive(&id, json!({}))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["archived"], true);
    let page = ok(&alice.list_conversations("?status=archived").await);
    assert_eq!(ids(&page), vec![id.clone()]);
    let page = ok(&alice.list_conversations("?status=active").await);
    assert!(items(&page).is_empty());
    // Unarchive.
    let c = alice
        .archive(&id, json!({ "archived": false }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["archived"], false);
    assert_eq!(c["status"], "active");
    let page = ok(&alice.list_conversations("?status=active").await);
    assert_eq!(ids(&page), vec![id.clone()]);
    assert!(items(&ok(&alice.list_conversations("?status=archived").await)).is_empty());
}

async fn mute_and_unmute_are_the_callers_own(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let c = alice.mute(&id, json!({})).await.assert_status(200).clone();
    assert_conversation_shape(&c);
    assert_eq!(c["muted"], true);
    assert_eq!(c["status"], "active", "muting is not archiving");
    assert_eq!(c["archived"], false);
    assert_eq!(conversation(&alice, &id).await["muted"], true);
    assert_eq!(conversation(&bob, &id).await["muted"], false);
    let c = alice
        .mute(&id, json!({ "muted": false }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["muted"], false);
    let c = bob
        .mute(&id, json!({ "muted": true }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["muted"], true);
    assert_eq!(conversation(&alice, &id).await["muted"], false);
}

async fn patch_renames_for_everyone(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let created_at = conversation(&alice, &id).await["createdAt"].clone();
    app.clock.advance(Duration::from_secs(5));
    let c = bob
        .update_conversation(&id, json!({ "title": "  Moving day  " }))
        .await
        .assert_status(200)
        .clone();
    assert_conversation_shape(&c);
    assert_eq!(c["title"], "Moving day");
    assert_eq!(c["createdAt"], created_at);
    assert_eq!(c["updatedAt"], app.clock.now().to_rfc3339().as_str());
    assert_eq!(conversation(&alice, &id).await["title"], "Moving day");
    // An empty PATCH changes nothing.
    let c = alice
        .update_conversation(&id, json!({}))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["title"], "Moving day");
    assert_eq!(c["status"], "active");
}

async fn block_stops_every_sender_and_only_the_blocker_unblocks(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    alice.say(&id, "hi").await;
    let c = bob
        .update_conversation(&id, json!({ "blocked": true }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["status"], "blocked");
    assert_eq!(conversation(&alice, &id).await["status"], "blocked");
    for who in [&alice, &bob] {
        who.send(&id, json!({ "content": "anyone there?" }))
            .await
            .assert_problem(403, "blocked");
    }
    // Blocked with a (new) clientMessageId too.
    alice
        .send(
            &id,
            json!({ "content": "x", "clientMessageId": "c-blocked" }),
        )
        .await
        .assert_problem(403, "blocked");
    // The other participant may not unblock.
    let detail = alice
        .update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_problem(403, "forbidden");
    assert!(detail.contains("blocked"), "{detail}");
    assert_eq!(conversation(&alice, &id).await["status"], "blocked");
    // Archived + blocked still shows blocked.
    alice.archive(&id, json!({})).await.assert_status(200);
    assert_eq!(conversation(&alice, &id).await["status"], "blocked");
    alice
        .archive(&id, json!({ "archived": false }))
        .await
        .assert_status(200);
    // Reading and history still work.
    assert_eq!(seqs(&ok(&bob.list_messages(&id, "").await)), vec![1]);
    bob.mark_read(&id, json!({})).await.assert_status(200);
    // The blocker unblocks; sending resumes, and no seq was spent while blocked.
    let c = bob
        .update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["status"], "active");
    let m = alice.say(&id, "back again").await;
    assert_eq!(m["seq"], 2);
    // Blocking again by alice: now only alice may unblock.
    alice
        .update_conversation(&id, json!({ "blocked": true }))
        .await
        .assert_status(200);
    bob.update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_problem(403, "forbidden");
    // Bob cannot take the block over by blocking it again and then lift it himself.
    let c = bob
        .update_conversation(&id, json!({ "blocked": true }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["status"], "blocked");
    bob.update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_problem(403, "forbidden");
    bob.send(&id, json!({ "content": "let me through" }))
        .await
        .assert_problem(403, "blocked");
    alice
        .update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_status(200);
    assert_eq!(bob.say(&id, "thanks").await["seq"], 3);
}

async fn support_staff_may_unblock(app: TestApp) {
    let alice = app.user("u_alice");
    let id = str_of(
        &alice
            .create_conversation(
                json!({ "participantIds": ["u_agent", "u_bob"], "type": "support" }),
            )
            .await
            .assert_status(201)["id"],
    );
    alice
        .update_conversation(&id, json!({ "blocked": true }))
        .await
        .assert_status(200);
    app.user("u_bob")
        .update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_problem(403, "forbidden");
    // The same participant with a support role may.
    let agent = staff(&app, "u_agent", "support");
    let c = agent
        .update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(c["status"], "active");
    alice
        .update_conversation(&id, json!({ "blocked": true }))
        .await
        .assert_status(200);
    let admin = staff(&app, "u_agent", "admin");
    admin
        .update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_status(200);
    // Staff who are not participants still see nothing.
    staff(&app, "u_other_agent", "admin")
        .update_conversation(&id, json!({ "blocked": false }))
        .await
        .assert_problem(404, "not_found");
}

async fn initial_message_to_a_blocked_conversation_is_refused(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    bob.update_conversation(&id, json!({ "blocked": true }))
        .await
        .assert_status(200);
    // The question cannot be delivered: say so rather than answer as if it had been.
    alice
        .create_conversation(json!({ "participantIds": ["u_bob"], "initialMessage": "hello?" }))
        .await
        .assert_problem(403, "blocked");
    let c = conversation(&alice, &id).await;
    assert_eq!(c["lastSeq"], 0);
}

async fn delete_for_me_hides_until_a_newer_message(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let id = alice.conversation_with("u_bob").await;
    let m1 = alice.say(&id, "secret plans").await;
    alice.say(&id, "more plans").await;
    let bobs_own = bob.say(&id, "reply from bob").await;
    alice.say(&id, "unread by bob").await;
    assert_eq!(unread(&bob, &id).await, 1);

    let res = bob.delete_conversation(&id).await;
    assert_eq!(res.status.as_u16(), 204);
    assert_eq!(res.body, Value::Null, "204 has no body");
    // Gone from bob's inbox only.
    assert!(items(&ok(&bob.list_conversations("").await)).is_empty());
    assert_eq!(
        ids(&ok(&alice.list_conversations("").await)),
        vec![id.clone()]
    );
    // Still a participant: GET answers, with nothing unread and no history.
    let c = conversation(&bob, &id).await;
    assert_eq!(c["unreadCount"], 0);
    assert_eq!(c["lastMessage"], Value::Null);
    let page = ok(&bob.list_messages(&id, "").await);
    assert!(items(&page).is_empty(), "{page}");
    assert!(items(&ok(&bob.list_messages(&id, "?after=0").await)).is_empty());
    // Alice still has everything.
    assert_eq!(
        seqs(&ok(&alice.list_messages(&id, "").await)),
        vec![4, 3, 2, 1]
    );
    // Bob's own hidden message is out of his reach now.
    bob.edit_message(&str_of(&bobs_own["id"]), json!({ "content": "x" }))
        .await
        .assert_problem(404, "not_found");
    bob.send(&id, json!({ "content": "re", "replyTo": m1["id"] }))
        .await
        .assert_problem(400, "bad_request");

    // A newer message brings it back, with only the newer messages.
    alice.say(&id, "are you there?").await;
    let page = ok(&bob.list_conversations("").await);
    assert_eq!(ids(&page), vec![id.clone()]);
    let c = &items(&page)[0];
    assert_eq!(c["unreadCount"], 1);
    assert_eq!(c["lastMessage"]["content"], "are you there?");
    assert_eq!(c["lastSeq"], 5);
    let page = ok(&bob.list_messages(&id, "").await);
    assert_eq!(seqs(&page), vec![5]);
    assert_eq!(next_cursor(&page), None);
    assert_eq!(
        seqs(&ok(&bob.list_messages(&id, "?after=0").await)),
        vec![5]
    );
    assert_eq!(
        seqs(&ok(&bob.list_messages(&id, "?before=5").await)),
        Vec::<i64>::new()
    );
    let m6 = bob.say(&id, "yes").await;
    assert_eq!(m6["seq"], 6);
    assert_eq!(
        seqs(&ok(&bob.list_messages(&id, "?after=0").await)),
        vec![5, 6]
    );
    assert_eq!(unread(&bob, &id).await, 0);
    assert_eq!(unread(&alice, &id).await, 1);
}

async fn delete_for_me_is_idempotent_and_empty_conversations_stay_hidden(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    // An empty conversation: hidden too.
    assert_eq!(alice.delete_conversation(&id).await.status.as_u16(), 204);
    assert_eq!(alice.delete_conversation(&id).await.status.as_u16(), 204);
    assert!(items(&ok(&alice.list_conversations("").await)).is_empty());
    assert_eq!(
        ids(&ok(&app.user("u_bob").list_conversations("").await)),
        vec![id.clone()]
    );
    // Create-or-get hands it back to the caller (it is the same pair); a message brings it
    // into the inbox.
    let res = alice
        .create_conversation(json!({ "participantIds": ["u_bob"] }))
        .await;
    assert_eq!(res.assert_status(200)["id"], id.as_str());
    app.user("u_bob").say(&id, "hello").await;
    assert_eq!(
        ids(&ok(&alice.list_conversations("").await)),
        vec![id.clone()]
    );
    assert_eq!(unread(&alice, &id).await, 1);
}
