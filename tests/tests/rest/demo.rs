//! The embedded server's demo page (`server/src/demo.rs`): served at `/` with its assets and
//! its Content-Security-Policy beside every other route; and `POST /demo/token` exists only
//! with the generated development secret, never with a configured secret or public key.
//! (The page itself is driven in a real browser by `tests/browser/run`.)

use chat_tests::app::TestApp;
use chat_tests::db::Backend;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.origin))
        .send()
        .await
        .expect("request reaches the server")
}

async fn post_token(app: &TestApp, body: serde_json::Value) -> reqwest::Response {
    app.http
        .post(format!("{}/demo/token", app.origin))
        .json(&body)
        .send()
        .await
        .expect("request reaches the server")
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The page, its script and style, and the vendored socket.io-client: each with its content
/// type, cache policy and `ETag` (a matching `If-None-Match` answers `304`); the page with a
/// policy that allows no inline script. The other routes answer as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_beside_every_other_route() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("SQLite");

    let page = get(&app, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let csp = header(&page, "content-security-policy").to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = page.text().await.expect("body");
    assert!(html.contains(r#"src="/demo/socket.io.min.js""#), "{html}");
    assert!(html.contains(r#"src="/demo/demo.js""#), "{html}");
    assert!(
        html.contains(r#"data-mint-tokens="false""#),
        "a configured secret: the page offers no token form"
    );
    assert!(!html.contains("<script>"), "no inline script under the CSP");

    for (path, content_type, cache, starts) in [
        (
            "/demo/socket.io.min.js",
            "text/javascript; charset=utf-8",
            "public, max-age=86400",
            "/*!\n * Socket.IO v4.8.",
        ),
        (
            "/demo/demo.js",
            "text/javascript; charset=utf-8",
            "no-cache",
            "//",
        ),
        (
            "/demo/demo.css",
            "text/css; charset=utf-8",
            "no-cache",
            "/*",
        ),
    ] {
        let res = get(&app, path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, "content-type"), content_type, "{path}");
        assert_eq!(header(&res, "cache-control"), cache, "{path}");
        let etag = header(&res, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 2, "{path}: {etag}");
        let body = res.text().await.expect("body");
        assert!(body.starts_with(starts), "{path} starts with {starts:?}");

        let again = app
            .http
            .get(format!("{}{path}", app.origin))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("request");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&again, "etag"), etag, "{path}");
    }

    // Nothing else moved: health, the API (its own 401 and 404 problems), its docs, metrics
    // and Socket.IO's handshake.
    assert_eq!(get(&app, "/health/live").await.status(), StatusCode::OK);
    assert_eq!(get(&app, "/health/ready").await.status(), StatusCode::OK);
    app.request(Method::GET, "/conversations", None, None)
        .await
        .assert_problem(401, "unauthorized");
    app.request(Method::GET, "/nope", None, None)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        get(&app, "/api/v1/chat/openapi.json").await.status(),
        StatusCode::OK
    );
    assert_eq!(get(&app, "/metrics").await.status(), StatusCode::OK);
    let handshake = get(&app, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(handshake.status(), StatusCode::OK);
    assert!(handshake.text().await.expect("body").starts_with("0{"));
    assert_eq!(
        get(&app, "/demo/nope.js").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// A configured secret, or a public key alone: tokens come from the platform, and the server
/// signs none on request. The route does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_configured_key_there_is_no_token_endpoint() {
    let public_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/es256-test-public.pem"
    );
    for flags in [&[][..], &["--jwt-public-key", public_key][..]] {
        let app = TestApp::spawn_with(Backend::Sqlite, flags)
            .await
            .expect("SQLite");
        let res = post_token(&app, json!({ "userId": "u_alice" })).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "flags {flags:?}");
        let body = res.text().await.expect("body");
        assert!(!body.contains("eyJ"), "no token in {body:?}");
        let res = app
            .http
            .get(format!("{}/demo/token", app.origin))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "flags {flags:?}");
        let html = get(&app, "/").await.text().await.expect("page");
        assert!(
            html.contains(r#"data-mint-tokens="false""#),
            "flags {flags:?}"
        );
    }
}

/// With the generated development secret (a fresh clone, nothing configured) the page may ask
/// for a token of any user id: one that this server accepts, over REST and Socket.IO alike.
/// A user id the contract does not allow is `400 bad_request` naming `userId`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_generated_secret_the_page_gets_working_tokens() {
    let app = TestApp::spawn_with_generated_secret().await;
    let html = get(&app, "/").await.text().await.expect("page");
    assert!(html.contains(r#"data-mint-tokens="true""#));

    let res = post_token(&app, json!({ "userId": "alice" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "cache-control"), "no-store");
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["userId"], "alice");
    assert_eq!(body["expiresInSecs"], 86_400);
    let token = body["token"].as_str().expect("a token").to_owned();

    let mine = app
        .raw(Some(token.clone()))
        .create_conversation(json!({ "participantIds": ["bob"] }))
        .await;
    let conversation = mine.assert_status(201);
    assert_eq!(conversation["createdBy"], "alice");
    let mut socket = chat_tests::sio::SioClient::connect(&app.origin, &token).await;
    let ack = socket
        .call(
            "send_message",
            json!({ "conversationId": conversation["id"], "content": "hi" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    for bad in [
        json!({ "userId": "" }),
        json!({ "userId": "no spaces allowed" }),
        json!({ "userId": "x".repeat(65) }),
    ] {
        let res = post_token(&app, bad.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        let problem: serde_json::Value = res.json().await.expect("problem");
        assert_eq!(problem["code"], "bad_request", "{bad}");
        assert!(
            problem["detail"].as_str().unwrap_or("").contains("userId"),
            "{problem}"
        );
    }
    let res = app
        .http
        .post(format!("{}/demo/token", app.origin))
        .header("content-type", "application/json")
        .body("[1]")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
