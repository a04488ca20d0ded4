//! Every client-reachable error over REST: `bad_request` with a `detail` naming the field,
//! `not_found` for anything the caller may not see (whatever the id's shape), unknown routes,
//! and `payload_too_large`.

use crate::common::*;
use chat_tests::app::{TestApp, TestResponse, UserClient};
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    bodies_that_are_not_json_objects_are_bad_requests,
    wrong_types_and_missing_fields_name_the_field,
    query_values_out_of_range_name_the_parameter,
    create_values_out_of_range_name_the_field,
    send_values_out_of_range_name_the_field,
    nul_characters_are_bad_requests_not_server_errors,
    non_participants_get_not_found_on_every_route,
    unknown_ids_of_any_shape_are_not_found,
    unknown_routes_and_methods_are_problems,
    bodies_over_64_kib_are_payload_too_large,
);

/// Asserts `400 bad_request` whose `detail` names `field`.
#[track_caller]
fn assert_bad(res: &TestResponse, field: &str, what: &str) {
    assert_eq!(res.status.as_u16(), 400, "{what}: {:?}", res.body);
    let detail = res.assert_problem(400, "bad_request");
    assert!(
        detail.contains(field),
        "{what}: detail should name `{field}`: {detail}"
    );
}

/// A conversation between alice and bob with one message from alice: `(conversation, message)`.
async fn setup(app: &TestApp) -> (String, String) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let m = alice.say(&id, "hello").await;
    (id, str_of(&m["id"]))
}

/// Every endpoint with a JSON body, as `(method, path)`.
fn body_routes(c: &str, m: &str) -> Vec<(Method, String)> {
    vec![
        (Method::POST, "/conversations".to_owned()),
        (Method::PATCH, format!("/conversations/{c}")),
        (Method::POST, format!("/conversations/{c}/messages")),
        (Method::PUT, format!("/conversations/{c}/read")),
        (Method::PUT, format!("/conversations/{c}/archive")),
        (Method::PUT, format!("/conversations/{c}/mute")),
        (Method::PUT, format!("/messages/{m}")),
    ]
}

async fn bodies_that_are_not_json_objects_are_bad_requests(app: TestApp) {
    let (c, m) = setup(&app).await;
    let alice = app.user("u_alice");
    for (method, path) in body_routes(&c, &m) {
        for raw in [
            "[]",
            "[{\"content\": \"x\"}]",
            "\"a string\"",
            "42",
            "true",
            "null",
            "{",
            "{\"content\": }",
            "not json at all",
            "{\"content\": \"x\"} trailing",
        ] {
            let res = alice
                .call_raw(method.clone(), &path, raw.as_bytes().to_vec())
                .await;
            assert_bad(&res, "body", &format!("{method} {path} with {raw}"));
        }
    }
    // Nothing changed.
    let conv = conversation(&alice, &c).await;
    assert_eq!(conv["lastSeq"], 1);
    assert_eq!(conv["archived"], false);
    assert_eq!(conv["muted"], false);
    assert_eq!(conv["title"], Value::Null);
}

async fn wrong_types_and_missing_fields_name_the_field(app: TestApp) {
    let (c, m) = setup(&app).await;
    let alice = app.user("u_alice");
    let cases: Vec<(Method, String, Value, &str)> = vec![
        // POST /conversations
        (
            Method::POST,
            "/conversations".into(),
            json!({}),
            "participantIds",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": "u_bob" }),
            "participantIds",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": null }),
            "participantIds",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob", 7] }),
            "participantIds[1]",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob"], "type": "group" }),
            "type",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob"], "type": 1 }),
            "type",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob"], "propertyId": 42 }),
            "propertyId",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob"], "title": ["t"] }),
            "title",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob"], "metadata": "x" }),
            "metadata",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob"], "metadata": [1] }),
            "metadata",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob"], "initialMessage": 5 }),
            "initialMessage",
        ),
        (
            Method::POST,
            "/conversations".into(),
            json!({ "participantIds": ["u_bob"], "initialMessage": { "content": "x" } }),
            "initialMessage",
        ),
        // POST /conversations/:id/messages
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({}),
            "content",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": 5 }),
            "content",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": null }),
            "content",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": "x", "type": "video" }),
            "type",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": "x", "replyTo": 12 }),
            "replyTo",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": "x", "attachments": "a.png" }),
            "attachments",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": "x", "attachments": [{ "type": "image" }] }),
            "attachments[0]",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": "x", "attachments": [{ "type": "video", "url": "https://a.b/c", "filename": "f", "size": 1 }] }),
            "attachments[0].type",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": "x", "attachments": [{ "type": "image", "url": "https://a.b/c", "filename": "f", "size": "big" }] }),
            "attachments[0].size",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": "x", "attachments": [{ "type": "image", "url": "https://a.b/c", "filename": "f", "size": -1 }] }),
            "attachments[0].size",
        ),
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": "x", "clientMessageId": 5 }),
            "clientMessageId",
        ),
        // PUT read / archive / mute
        (
            Method::PUT,
            format!("/conversations/{c}/read"),
            json!({ "upToSeq": "3" }),
            "upToSeq",
        ),
        (
            Method::PUT,
            format!("/conversations/{c}/read"),
            json!({ "upToSeq": 1.5 }),
            "upToSeq",
        ),
        (
            Method::PUT,
            format!("/conversations/{c}/read"),
            json!({ "upToSeq": -1 }),
            "upToSeq",
        ),
        (
            Method::PUT,
            format!("/conversations/{c}/archive"),
            json!({ "archived": "yes" }),
            "archived",
        ),
        (
            Method::PUT,
            format!("/conversations/{c}/archive"),
            json!({ "archived": 1 }),
            "archived",
        ),
        (
            Method::PUT,
            format!("/conversations/{c}/mute"),
            json!({ "muted": "true" }),
            "muted",
        ),
        // PATCH /conversations/:id
        (
            Method::PATCH,
            format!("/conversations/{c}"),
            json!({ "title": 5 }),
            "title",
        ),
        (
            Method::PATCH,
            format!("/conversations/{c}"),
            json!({ "title": "   " }),
            "title",
        ),
        (
            Method::PATCH,
            format!("/conversations/{c}"),
            json!({ "title": "t".repeat(201) }),
            "title",
        ),
        (
            Method::PATCH,
            format!("/conversations/{c}"),
            json!({ "blocked": "no" }),
            "blocked",
        ),
        // PUT /messages/:id
        (Method::PUT, format!("/messages/{m}"), json!({}), "content"),
        (
            Method::PUT,
            format!("/messages/{m}"),
            json!({ "content": 5 }),
            "content",
        ),
        (
            Method::PUT,
            format!("/messages/{m}"),
            json!({ "content": "" }),
            "content",
        ),
        (
            Method::PUT,
            format!("/messages/{m}"),
            json!({ "content": "x".repeat(4001) }),
            "content",
        ),
    ];
    for (method, path, body, field) in cases {
        let res = alice.call(method.clone(), &path, Some(body.clone())).await;
        assert_bad(&res, field, &format!("{method} {path} {body}"));
    }
    // An empty body is `{}`: the required field is named.
    let res = alice
        .call_raw(Method::POST, "/conversations", Vec::new())
        .await;
    assert_bad(&res, "participantIds", "empty create body");
    let res = alice
        .call_raw(Method::PUT, &format!("/messages/{m}"), b"  ".to_vec())
        .await;
    assert_bad(&res, "content", "empty edit body");
    // Nothing changed.
    let conv = conversation(&alice, &c).await;
    assert_eq!(conv["lastSeq"], 1);
    assert_eq!(conv["title"], Value::Null);
    assert_eq!(conv["status"], "active");
    let msg = &first_item(&alice.list_messages(&c, "").await);
    assert_eq!(msg["content"], "hello");
    assert_eq!(
        ids(&ok(&alice.list_conversations("").await)),
        vec![c.clone()],
        "no conversation was created by a bad request"
    );
}

async fn query_values_out_of_range_name_the_parameter(app: TestApp) {
    let (c, _) = setup(&app).await;
    let alice = app.user("u_alice");
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=1.5", "limit"),
        ("?limit=", "limit"),
        ("?status=deleted", "status"),
        ("?status=ACTIVE", "status"),
        ("?type=group", "type"),
        ("?propertyId=has%20space", "propertyId"),
        ("?propertyId=", "propertyId"),
        ("?cursor=garbage", "cursor"),
        ("?cursor=abc.def", "cursor"),
        ("?cursor=12.", "cursor"),
    ] {
        let res = alice.list_conversations(query).await;
        assert_bad(&res, field, &format!("GET /conversations{query}"));
    }
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=abc", "limit"),
        ("?before=2&after=0", "before"),
        ("?before=2&after=0", "after"),
        ("?before=0", "before"),
        ("?before=-3", "before"),
        ("?before=x", "before"),
        ("?after=-1", "after"),
        ("?after=1e3", "after"),
    ] {
        let res = alice.list_messages(&c, query).await;
        assert_bad(&res, field, &format!("GET messages{query}"));
    }
    for (query, field) in [
        (String::new(), "q"),
        ("?q=".to_owned(), "q"),
        ("?q=%20%20%20".to_owned(), "q"),
        (format!("?q={}", "a".repeat(201)), "q"),
        ("?q=hello&limit=0".to_owned(), "limit"),
        ("?q=hello&limit=101".to_owned(), "limit"),
        ("?q=hello&cursor=nope".to_owned(), "cursor"),
    ] {
        let res = alice.search(&query).await;
        assert_bad(&res, field, &format!("GET search{query}"));
    }
    // The edges of the ranges are fine.
    for query in [
        "?limit=1",
        "?limit=100",
        "?status=active",
        "?status=archived",
    ] {
        alice.list_conversations(query).await.assert_status(200);
    }
    for query in [
        "?limit=1",
        "?limit=100",
        "?before=1",
        "?after=0",
        "?after=99",
    ] {
        alice.list_messages(&c, query).await.assert_status(200);
    }
    alice
        .search(&format!("?q={}", "a".repeat(200)))
        .await
        .assert_status(200);
    // Unknown query parameters are ignored.
    alice
        .list_conversations("?limit=5&sort=asc")
        .await
        .assert_status(200);
}

async fn create_values_out_of_range_name_the_field(app: TestApp) {
    let alice = app.user("u_alice");
    let many = |n: usize| -> Vec<String> { (0..n).map(|i| format!("u_member{i}")).collect() };
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "participantIds": [] }), "participantIds"),
        (json!({ "participantIds": ["u_alice"] }), "participantIds"),
        (
            json!({ "participantIds": ["has space"] }),
            "participantIds[0]",
        ),
        (
            json!({ "participantIds": ["u_bob", ""] }),
            "participantIds[1]",
        ),
        (
            json!({ "participantIds": ["x".repeat(65)] }),
            "participantIds[0]",
        ),
        (json!({ "participantIds": ["ü"] }), "participantIds[0]"),
        (json!({ "participantIds": ["a/b"] }), "participantIds[0]"),
        // 50 others and the caller: 51 > 50.
        (json!({ "participantIds": many(50) }), "participantIds"),
        (
            json!({ "participantIds": ["u_bob"], "type": "property_inquiry" }),
            "propertyId",
        ),
        (
            json!({ "participantIds": ["u_bob"], "type": "property_inquiry", "propertyId": null }),
            "propertyId",
        ),
        (
            json!({ "participantIds": ["u_bob"], "propertyId": "" }),
            "propertyId",
        ),
        (
            json!({ "participantIds": ["u_bob"], "propertyId": "prop 42" }),
            "propertyId",
        ),
        (
            json!({ "participantIds": ["u_bob"], "propertyId": "p".repeat(65) }),
            "propertyId",
        ),
        (json!({ "participantIds": ["u_bob"], "title": "" }), "title"),
        (
            json!({ "participantIds": ["u_bob"], "title": "t".repeat(201) }),
            "title",
        ),
        (
            json!({ "participantIds": ["u_bob"], "metadata": { "blob": "x".repeat(9000) } }),
            "metadata",
        ),
        (
            json!({ "participantIds": ["u_bob"], "initialMessage": "   " }),
            "initialMessage",
        ),
        (
            json!({ "participantIds": ["u_bob"], "initialMessage": "x".repeat(4001) }),
            "initialMessage",
        ),
    ];
    for (body, field) in cases {
        let res = alice.create_conversation(body.clone()).await;
        assert_bad(&res, field, &format!("create {body}"));
    }
    assert!(
        items(&ok(&alice.list_conversations("").await)).is_empty(),
        "no bad request created anything"
    );
    // The edges are fine: 49 others and the caller make 50; ids of 64 characters; a 200
    // character title; a platform id of every allowed character.
    let c = alice
        .create_conversation(json!({ "participantIds": many(49) }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(c["participants"].as_array().unwrap().len(), 50);
    let long_id = "x".repeat(64);
    let c = alice
        .create_conversation(json!({
            "participantIds": [long_id, "a@b.c:d-e_F9"],
            "propertyId": "p".repeat(64),
            "title": "t".repeat(200),
        }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(c["title"], "t".repeat(200));
    assert!(
        c["participants"]
            .as_array()
            .unwrap()
            .contains(&json!("a@b.c:d-e_F9"))
    );
}

async fn send_values_out_of_range_name_the_field(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let other = alice.conversation_with("u_carol").await;
    let elsewhere = alice.say(&other, "elsewhere").await;
    let image = |url: &str| json!({ "type": "image", "url": url, "filename": "a.png", "size": 10 });
    let eleven: Vec<Value> = (0..11)
        .map(|i| image(&format!("https://cdn.example.com/{i}.png")))
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "content": "" }), "content"),
        (json!({ "content": " \n\t " }), "content"),
        (json!({ "content": "x".repeat(4001) }), "content"),
        (
            json!({ "content": "x", "attachments": eleven }),
            "attachments",
        ),
        (
            json!({ "content": "x", "attachments": [image("http://cdn.example.com/a.png")] }),
            "attachments[0].url",
        ),
        (
            json!({ "content": "x", "attachments": [image("https://ok.example/a"), image("ftp://x/y")] }),
            "attachments[1].url",
        ),
        (
            json!({ "content": "x", "attachments": [image("javascript:alert(1)")] }),
            "attachments[0].url",
        ),
        (
            json!({ "content": "x", "attachments": [image("https://")] }),
            "attachments[0].url",
        ),
        (
            json!({ "content": "x", "attachments": [image(&format!("https://a.example/{}", "x".repeat(2048)))] }),
            "attachments[0].url",
        ),
        (
            json!({ "content": "x", "attachments": [{ "type": "file", "url": "https://a.example/f", "filename": " ", "size": 1 }] }),
            "attachments[0].filename",
        ),
        (
            json!({ "content": "x", "attachments": [{ "type": "file", "url": "https://a.example/f", "filename": "f".repeat(256), "size": 1 }] }),
            "attachments[0].filename",
        ),
        (
            json!({ "content": "x", "attachments": [{ "type": "file", "url": "https://a.example/f", "filename": "f", "size": 1, "mimeType": "" }] }),
            "attachments[0].mimeType",
        ),
        (json!({ "content": "x", "type": "system" }), "type"),
        (
            json!({ "content": "x", "replyTo": elsewhere["id"] }),
            "replyTo",
        ),
        (
            json!({ "content": "x", "replyTo": "no-such-message" }),
            "replyTo",
        ),
        (
            json!({ "content": "x", "clientMessageId": "" }),
            "clientMessageId",
        ),
        (
            json!({ "content": "x", "clientMessageId": "c".repeat(129) }),
            "clientMessageId",
        ),
        (
            json!({ "content": "x", "clientMessageId": "line\nbreak" }),
            "clientMessageId",
        ),
    ];
    for (body, field) in cases {
        let res = alice.send(&id, body.clone()).await;
        let what = format!("send {}", truncate(&body.to_string()));
        assert_bad(&res, field, &what);
    }
    assert_eq!(
        conversation(&alice, &id).await["lastSeq"],
        0,
        "nothing stored"
    );
    // The edges: 128-character clientMessageId, a 2048-character https URL.
    let url = format!("https://a.example/{}", "x".repeat(2048 - 18));
    assert_eq!(url.len(), 2048);
    alice
        .send(
            &id,
            json!({ "content": "x", "clientMessageId": "c".repeat(128), "attachments": [image(&url)] }),
        )
        .await
        .assert_status(201);
}

fn truncate(s: &str) -> String {
    s.chars().take(160).collect()
}

async fn nul_characters_are_bad_requests_not_server_errors(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let m = str_of(&alice.say(&id, "fine").await["id"]);
    // Text no client can mean: refused, naming the field, on either backend.
    assert_bad(
        &alice.send(&id, json!({ "content": "a\u{0}b" })).await,
        "content",
        "NUL in content",
    );
    assert_bad(
        &alice
            .edit_message(&m, json!({ "content": "a\u{0}b" }))
            .await,
        "content",
        "NUL in edit",
    );
    assert_bad(
        &alice
            .update_conversation(&id, json!({ "title": "a\u{0}b" }))
            .await,
        "title",
        "NUL in title",
    );
    assert_bad(
        &alice
            .create_conversation(json!({ "participantIds": ["u_bob"], "title": "x\u{0}" }))
            .await,
        "title",
        "NUL in a new title",
    );
    assert_bad(
        &alice
            .create_conversation(
                json!({ "participantIds": ["u_dan"], "initialMessage": "hi\u{0}" }),
            )
            .await,
        "initialMessage",
        "NUL in initialMessage",
    );
    // Inside JSON values that are stored as JSON (metadata, attachments) a NUL is only an
    // escape: whatever the answer, it is not a server error.
    let file = json!({ "type": "file", "url": "https://a.example/f\u{0}", "filename": "f\u{0}", "size": 1 });
    for res in [
        alice
            .create_conversation(
                json!({ "participantIds": ["u_erin"], "metadata": { "k\u{0}": "v\u{0}" } }),
            )
            .await,
        alice
            .send(&id, json!({ "content": "x", "attachments": [file] }))
            .await,
    ] {
        assert!(res.status.as_u16() < 500, "{:?}", res.body);
    }
    // Query values: refused, naming the parameter.
    assert_bad(
        &alice.list_conversations("?propertyId=p%00").await,
        "propertyId",
        "NUL in the propertyId filter",
    );
    assert_bad(
        &alice.list_conversations("?cursor=1.a%00").await,
        "cursor",
        "NUL in a cursor",
    );
    // An id with NUL names nothing.
    assert_bad(
        &alice
            .send(&id, json!({ "content": "x", "replyTo": "a\u{0}" }))
            .await,
        "replyTo",
        "NUL in replyTo",
    );
    assert_bad(&alice.search("?q=fi%00ne").await, "q", "NUL in a search");
    let page = ok(&alice.list_messages(&id, "?after=0").await);
    assert!(
        items(&page)
            .iter()
            .all(|m| !m["content"].as_str().unwrap().contains('\0')),
        "{page}"
    );
}

/// Asserts every route answers `404 not_found` to `who` for these ids.
async fn assert_all_not_found(who: &UserClient<'_>, c: &str, m: &str) {
    for (label, res) in every_route(who, c, m).await {
        assert_eq!(res.status.as_u16(), 404, "{label}: {:?}", res.body);
        res.assert_problem(404, "not_found");
    }
}

async fn non_participants_get_not_found_on_every_route(app: TestApp) {
    let alice = app.user("u_alice");
    let bob = app.user("u_bob");
    let (c, m) = setup(&app).await;
    bob.say(&c, "hi alice").await;
    let before_alice = conversation(&alice, &c).await;
    let before_bob = conversation(&bob, &c).await;
    let history = ok(&alice.list_messages(&c, "?after=0").await);

    let eve = app.user("u_eve");
    assert_all_not_found(&eve, &c, &m).await;
    // Staff roles do not open other people's conversations either.
    assert_all_not_found(&staff(&app, "u_support", "support"), &c, &m).await;
    assert_all_not_found(&staff(&app, "u_admin", "admin"), &c, &m).await;
    // A real conversation id and a real message id, but of different things: still nothing.
    let eves = eve.conversation_with("u_frank").await;
    let eves_message = str_of(&eve.say(&eves, "mine").await["id"]);
    assert_all_not_found(&eve, &c, &m).await;
    // Alice cannot touch eve's message through her own conversation either.
    alice
        .edit_message(&eves_message, json!({ "content": "x" }))
        .await
        .assert_problem(404, "not_found");
    alice
        .send(&c, json!({ "content": "x", "replyTo": eves_message }))
        .await
        .assert_problem(400, "bad_request");

    // Nothing leaked and nothing changed.
    assert_eq!(
        ids(&ok(&eve.list_conversations("").await)),
        vec![eves.clone()]
    );
    for q in ["?q=hello", "?q=u_alice", "?q=u_bob"] {
        assert!(
            items(&ok(&eve.search(q).await)).is_empty(),
            "eve searched {q}"
        );
    }
    let stats = ok(&eve.stats().await);
    assert_eq!(stats["totalConversations"], 1);
    assert_eq!(stats["messagesReceived"], 0);
    assert_eq!(conversation(&alice, &c).await, before_alice);
    assert_eq!(conversation(&bob, &c).await, before_bob);
    assert_eq!(ok(&alice.list_messages(&c, "?after=0").await), history);
}

async fn unknown_ids_of_any_shape_are_not_found(app: TestApp) {
    let alice = app.user("u_alice");
    let (c, m) = setup(&app).await;
    let shapes = [
        "0193a5c2-7b1e-7c3d-8e4f-0123456789ab".to_owned(),
        uuid_like(),
        "nope".to_owned(),
        "0".to_owned(),
        "-1".to_owned(),
        "507f1f77bcf86cd799439011".to_owned(),
        "x".repeat(600),
        "%C3%A9t%C3%A9%F0%9F%8F%A0".to_owned(),
        "with%20space".to_owned(),
        "a%2Fb".to_owned(),
        "%27%3B%20drop%20table%20messages%3B%20--".to_owned(),
        "%25".to_owned(),
        "%00".to_owned(),
        "%FF%FE".to_owned(),
        "%C3".to_owned(),
        "null".to_owned(),
    ];
    for shape in &shapes {
        assert_all_not_found(&alice, shape, shape).await;
    }
    // A message id is not a conversation id, and the other way round.
    assert_all_not_found(&alice, &m, &c).await;
    // The real ones still work.
    conversation(&alice, &c).await;
}

fn uuid_like() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn unknown_routes_and_methods_are_problems(app: TestApp) {
    let alice = app.user("u_alice");
    let (c, m) = setup(&app).await;
    for (method, path) in [
        (Method::GET, "/nope".to_owned()),
        (Method::GET, "/messages".to_owned()),
        (Method::GET, format!("/conversations/{c}/messages/{m}")),
        (Method::GET, format!("/conversations/{c}/participants")),
        (Method::POST, "/v2/conversations".to_owned()),
        (Method::GET, format!("{}/api/v1/chat/nope", app.origin)),
    ] {
        let res = alice.call(method.clone(), &path, None).await;
        res.assert_problem(404, "not_found");
    }
    // Without a token too: an unknown route is not a secret.
    app.raw(None)
        .call(Method::GET, "/nope", None)
        .await
        .assert_problem(404, "not_found");
    // A known route with another method: 405, still a problem document.
    for (method, path) in [
        (Method::PATCH, format!("/messages/{m}")),
        (Method::GET, format!("/messages/{m}")),
        (Method::DELETE, "/stats".to_owned()),
        (Method::PUT, "/conversations".to_owned()),
        (Method::POST, format!("/conversations/{c}/read")),
    ] {
        let res = alice.call(method.clone(), &path, Some(json!({}))).await;
        assert_eq!(res.status.as_u16(), 405, "{method} {path}: {:?}", res.body);
        res.assert_problem(405, "bad_request");
    }
}

async fn bodies_over_64_kib_are_payload_too_large(app: TestApp) {
    let alice = app.user("u_alice");
    let (c, m) = setup(&app).await;
    let big = "x".repeat(70 * 1024);
    for (method, path, body) in [
        (
            Method::POST,
            format!("/conversations/{c}/messages"),
            json!({ "content": big }),
        ),
        (
            Method::POST,
            "/conversations".to_owned(),
            json!({ "participantIds": ["u_bob"], "metadata": { "blob": big } }),
        ),
        (
            Method::PATCH,
            format!("/conversations/{c}"),
            json!({ "title": big }),
        ),
        (
            Method::PUT,
            format!("/messages/{m}"),
            json!({ "content": big }),
        ),
        (
            Method::PUT,
            format!("/conversations/{c}/read"),
            json!({ "padding": big }),
        ),
    ] {
        let res = alice.call(method.clone(), &path, Some(body)).await;
        assert_eq!(res.status.as_u16(), 413, "{method} {path}: {:?}", res.body);
        let detail = res.assert_problem(413, "payload_too_large");
        assert!(detail.contains("body"), "{detail}");
    }
    // Not JSON, but big: the size is what is wrong.
    let res = alice
        .call_raw(
            Method::POST,
            &format!("/conversations/{c}/messages"),
            vec![b'x'; 65 * 1024 + 1],
        )
        .await;
    res.assert_problem(413, "payload_too_large");
    // Under the limit, a long content is a field error, not a size error.
    let res = alice
        .send(&c, json!({ "content": "x".repeat(60 * 1024) }))
        .await;
    assert_bad(&res, "content", "60 KiB content");
    // Unknown fields count towards the size but are otherwise ignored.
    alice
        .send(
            &c,
            json!({ "content": "ok", "padding": "x".repeat(32 * 1024) }),
        )
        .await
        .assert_status(201);
    assert_eq!(conversation(&alice, &c).await["lastSeq"], 2);
}
