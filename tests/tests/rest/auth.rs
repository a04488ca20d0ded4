//! Authentication: every REST call needs a valid HS256 token; anything else is `401
//! unauthorized` with `WWW-Authenticate: Bearer`.

use crate::common::*;
use chat_shared::auth::now_secs;
use chat_tests::app::{SECRET, TestApp, TestResponse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    missing_or_malformed_authorization_is_unauthorized,
    forged_expired_and_foreign_tokens_are_unauthorized,
    valid_tokens_name_the_caller,
    issuer_and_audience_are_checked_when_configured [
        "--jwt-issuer", "https://platform.example",
        "--jwt-audience", "chat"
    ],
);

/// Signs `claims` with `alg` and `secret`.
fn sign(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn exp_in(secs: i64) -> u64 {
    now_secs().saturating_add_signed(secs)
}

#[track_caller]
fn assert_unauthorized(res: &TestResponse, what: &str) {
    assert_eq!(res.status.as_u16(), 401, "{what}: {:?}", res.body);
    res.assert_problem(401, "unauthorized");
    let challenge = res
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate is {challenge:?}"
    );
}

/// A request with this exact `Authorization` header value (or none).
async fn with_header(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> TestResponse {
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let res = req.send().await.expect("reaches the server");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body");
    TestResponse {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Every endpoint, as `token` (or without one), must answer 401.
async fn assert_every_endpoint_unauthorized(app: &TestApp, token: Option<String>, what: &str) {
    let (c, m) = (
        "0193a5c2-7b1e-7c3d-8e4f-0123456789ab",
        "0193a5c2-7b1e-7c3d-8e4f-0123456789ac",
    );
    let who = app.raw(token);
    let mut all = every_route(&who, c, m).await;
    all.push((
        "GET /conversations".into(),
        who.list_conversations("").await,
    ));
    all.push((
        "POST /conversations".into(),
        who.create_conversation(json!({ "participantIds": ["u_bob"] }))
            .await,
    ));
    all.push(("GET /conversations/search".into(), who.search("?q=x").await));
    all.push(("GET /stats".into(), who.stats().await));
    for (label, res) in all {
        assert_unauthorized(&res, &format!("{what}: {label}"));
    }
}

async fn missing_or_malformed_authorization_is_unauthorized(app: TestApp) {
    // The existence of a real conversation changes nothing.
    let id = app.user("u_alice").conversation_with("u_bob").await;
    assert_every_endpoint_unauthorized(&app, None, "no token").await;
    for garbage in ["garbage", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9", "Bearer"] {
        assert_every_endpoint_unauthorized(&app, Some(garbage.into()), garbage).await;
    }
    let valid = app.token("u_alice");
    let path = format!("/conversations/{id}");
    for header in [
        format!("Basic {valid}"),
        format!("Token {valid}"),
        valid.clone(),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
        format!("Bearer {valid}x"),
        format!("Bearer {}", &valid[..valid.len() - 2]),
    ] {
        let res = with_header(&app, Method::GET, &path, Some(&header)).await;
        assert_unauthorized(&res, &header);
    }
    // The same token, properly presented, works.
    with_header(&app, Method::GET, &path, Some(&format!("Bearer {valid}")))
        .await
        .assert_status(200);
}

async fn forged_expired_and_foreign_tokens_are_unauthorized(app: TestApp) {
    let alice = app.user("u_alice");
    let id = alice.conversation_with("u_bob").await;
    let claims = |sub: &str| json!({ "sub": sub, "exp": exp_in(3600) });

    // Signed with another secret.
    let foreign = sign(
        Algorithm::HS256,
        "another-secret-0123456789abcdef",
        &claims("u_alice"),
    );
    // A valid token whose payload was swapped for someone else's (signature no longer fits).
    let valid = app.token("u_alice");
    let parts: Vec<&str> = valid.split('.').collect();
    let payload = b64url(claims("u_bob").to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    // `alg: none`, unsigned, in the spellings an attacker would try.
    let unsigned: Vec<String> = ["none", "None", "NONE", "nOnE"]
        .iter()
        .map(|alg| {
            let header = b64url(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes());
            let body = b64url(claims("u_alice").to_string().as_bytes());
            format!("{header}.{body}.")
        })
        .collect();
    // Another HMAC algorithm, even with the right secret.
    let hs384 = sign(Algorithm::HS384, SECRET, &claims("u_alice"));
    let hs512 = sign(Algorithm::HS512, SECRET, &claims("u_alice"));
    // A header that claims RS256 over an HS256 signature (algorithm confusion).
    let rs_header = b64url(
        json!({ "alg": "RS256", "typ": "JWT" })
            .to_string()
            .as_bytes(),
    );
    let confused = format!("{rs_header}.{}.{}", parts[1], parts[2]);
    // Expired beyond the leeway, and expired long ago.
    let expired = app.token_with("u_alice", None, -120);
    let ancient = sign(
        Algorithm::HS256,
        SECRET,
        &json!({ "sub": "u_alice", "exp": 1_000_000 }),
    );
    // Required claims missing or unusable.
    let no_exp = sign(Algorithm::HS256, SECRET, &json!({ "sub": "u_alice" }));
    let no_sub = sign(Algorithm::HS256, SECRET, &json!({ "exp": exp_in(3600) }));
    let bad_sub = sign(Algorithm::HS256, SECRET, &claims("has space"));
    let empty_sub = sign(Algorithm::HS256, SECRET, &claims(""));
    let string_exp = sign(
        Algorithm::HS256,
        SECRET,
        &json!({ "sub": "u_alice", "exp": "tomorrow" }),
    );
    let bad_role = sign(
        Algorithm::HS256,
        SECRET,
        &json!({ "sub": "u_alice", "exp": exp_in(3600), "role": "root" }),
    );

    let mut cases: Vec<(&str, String)> = vec![
        ("foreign secret", foreign),
        ("tampered payload", tampered),
        ("HS384", hs384),
        ("HS512", hs512),
        ("RS256 header", confused),
        ("expired", expired),
        ("ancient", ancient),
        ("no exp", no_exp),
        ("no sub", no_sub),
        ("bad sub", bad_sub),
        ("empty sub", empty_sub),
        ("string exp", string_exp),
        ("unknown role", bad_role),
    ];
    for token in unsigned {
        cases.push(("alg none", token));
    }
    for (what, token) in &cases {
        let who = app.raw(Some(token.clone()));
        assert_unauthorized(&who.get_conversation(&id).await, what);
        assert_unauthorized(&who.send(&id, json!({ "content": "x" })).await, what);
        assert_unauthorized(&who.stats().await, what);
    }
    // One forged kind on every endpoint.
    assert_every_endpoint_unauthorized(&app, Some(cases[0].1.clone()), "foreign secret").await;
    assert_every_endpoint_unauthorized(&app, Some(cases[13].1.clone()), "alg none").await;
    // None of them sent anything.
    assert_eq!(conversation(&alice, &id).await["lastSeq"], 0);
}

async fn valid_tokens_name_the_caller(app: TestApp) {
    // Claims beyond the contract's (`name`, `role`, an `aud` meant for someone else, `iat`)
    // are accepted; the caller is `sub`.
    let token = sign(
        Algorithm::HS256,
        SECRET,
        &json!({
            "sub": "507f1f77bcf86cd799439011",
            "exp": exp_in(600),
            "iat": now_secs(),
            "name": "Alice Landlord",
            "role": "user",
            "aud": "some-other-service",
            "iss": "whoever",
            "email": "alice@example.com"
        }),
    );
    let who = app.raw(Some(token));
    let c = who
        .create_conversation(json!({ "participantIds": ["u_bob"] }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(c["createdBy"], "507f1f77bcf86cd799439011");
    let m = who
        .send(&str_of(&c["id"]), json!({ "content": "hi" }))
        .await
        .assert_status(201)
        .clone();
    assert_eq!(m["senderId"], "507f1f77bcf86cd799439011");
    // Every role the contract names is accepted.
    for role in ["user", "support", "admin"] {
        staff(&app, "u_carol", role)
            .stats()
            .await
            .assert_status(200);
    }
    // The response carries a request id to quote.
    let res = app.user("u_alice").stats().await;
    assert!(res.headers.contains_key("x-request-id"));
}

async fn issuer_and_audience_are_checked_when_configured(app: TestApp) {
    let good = json!({
        "sub": "u_alice", "exp": exp_in(600),
        "iss": "https://platform.example", "aud": "chat"
    });
    let token = sign(Algorithm::HS256, SECRET, &good);
    app.raw(Some(token)).stats().await.assert_status(200);
    for (what, claims) in [
        (
            "wrong iss",
            json!({ "sub": "u_alice", "exp": exp_in(600), "iss": "https://evil.example", "aud": "chat" }),
        ),
        (
            "wrong aud",
            json!({ "sub": "u_alice", "exp": exp_in(600), "iss": "https://platform.example", "aud": "billing" }),
        ),
        (
            "no iss",
            json!({ "sub": "u_alice", "exp": exp_in(600), "aud": "chat" }),
        ),
        (
            "no aud",
            json!({ "sub": "u_alice", "exp": exp_in(600), "iss": "https://platform.example" }),
        ),
    ] {
        let token = sign(Algorithm::HS256, SECRET, &claims);
        assert_unauthorized(&app.raw(Some(token)).stats().await, what);
    }
    // The harness's tokens carry neither: rejected here.
    assert_unauthorized(&app.user("u_alice").stats().await, "harness token");
}

/// The test fixtures: an ES256 key pair made for these tests only, and another private key.
const ES256_PRIVATE: &str = include_str!("../../fixtures/es256-test-private.pem");
const ES256_PUBLIC: &str = include_str!("../../fixtures/es256-test-public.pem");
const ES256_OTHER_PRIVATE: &str = include_str!("../../fixtures/es256-other-private.pem");

fn es256(private_pem: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        claims,
        &EncodingKey::from_ec_pem(private_pem.as_bytes()).expect("EC key"),
    )
    .expect("sign")
}

/// With a public key alone (the platform signs with ES256), algorithms are pinned to the key
/// type: the key's own algorithm verifies; an HS256 token made with the public key as its
/// HMAC secret (the classic algorithm confusion), `alg: none`, and a token signed by another
/// key are all refused. `nbf` is honoured with the leeway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_key_pins_its_algorithm_and_refuses_confusion() {
    let app = TestApp::spawn_with(
        chat_tests::db::Backend::Sqlite,
        &[
            "--jwt-public-key",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/es256-test-public.pem"
            ),
            "--jwt-leeway-secs",
            "30",
        ],
    )
    .await
    .expect("SQLite always runs");
    let claims = |extra: Value| {
        let mut c = json!({ "sub": "u_alice", "exp": exp_in(600) });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let good = es256(ES256_PRIVATE, &claims(json!({})));
    let res = with_header(
        &app,
        Method::GET,
        "/unread",
        Some(&format!("Bearer {good}")),
    )
    .await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);

    let confused = sign(Algorithm::HS256, ES256_PUBLIC, &claims(json!({})));
    let header = b64url(
        json!({ "alg": "none", "typ": "JWT" })
            .to_string()
            .as_bytes(),
    );
    let payload = b64url(claims(json!({})).to_string().as_bytes());
    let unsigned = format!("{header}.{payload}.");
    let foreign = es256(ES256_OTHER_PRIVATE, &claims(json!({})));
    let not_yet = es256(ES256_PRIVATE, &claims(json!({ "nbf": exp_in(300) })));
    for (what, token) in [
        ("HS256 with the public key as secret", confused),
        ("alg none", unsigned),
        ("signed by another key", foreign),
        ("nbf in 5 minutes", not_yet),
    ] {
        let res = with_header(
            &app,
            Method::GET,
            "/unread",
            Some(&format!("Bearer {token}")),
        )
        .await;
        assert_unauthorized(&res, what);
    }
    // Within the leeway, `nbf` a few seconds ahead (a clock a little fast) passes.
    let almost = es256(ES256_PRIVATE, &claims(json!({ "nbf": exp_in(10) })));
    let res = with_header(
        &app,
        Method::GET,
        "/unread",
        Some(&format!("Bearer {almost}")),
    )
    .await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
}

/// Every answer carries the security headers, whatever its status; CORS answers only the
/// configured origins (`CLIENT_URL`), a preflight from another origin gets no
/// `Access-Control-Allow-Origin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_every_answer_and_cors_only_for_configured_origins() {
    let app = TestApp::spawn_with(
        chat_tests::db::Backend::Sqlite,
        &["--client-url", "https://app.example,https://admin.example"],
    )
    .await
    .expect("SQLite always runs");
    let token = app.token("u_alice");
    for (what, path, auth) in [
        ("200", "/unread", Some(format!("Bearer {token}"))),
        ("401", "/unread", None),
        ("404", "/nowhere", Some(format!("Bearer {token}"))),
    ] {
        let res = with_header(&app, Method::GET, path, auth.as_deref()).await;
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ] {
            assert_eq!(
                res.headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{what}: {name}"
            );
        }
    }
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, format!("{}/unread", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://admin.example").await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://admin.example")
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{:?}",
        refused.headers()
    );
}
