//! The socket side under bad input at volume: thousands of well-formed but odd packets
//! (random events, known and unknown, with random payloads), binary frames, and thousands of
//! joins of conversations that do not exist. Every acknowledgement asked for is answered,
//! with `ok` or one of the contract's codes; the socket stays; the server keeps serving; and
//! memory stays bounded.

use chat_tests::app::TestApp;
use chat_tests::db::Backend;
use serde_json::{Value, json};
use std::time::Duration;

const CODES: &[&str] = &[
    "bad_request",
    "not_found",
    "forbidden",
    "conflict",
    "payload_too_large",
    "rate_limited",
    "blocked",
    "edit_window_passed",
];

/// xorshift64*: deterministic, so a failure replays the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn string(&mut self, max: u64) -> String {
        let len = self.below(max + 1) as usize;
        let alphabet: Vec<char> = "ab 0\u{0}\u{7f}é漢🙂\"\\\n{}[]:,-".chars().collect();
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }

    fn value(&mut self, depth: u32, conversation: &str) -> Value {
        match self.below(if depth == 0 { 6 } else { 9 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(self.next() as i64),
            3 => json!((self.next() as f64) / 3.0),
            4 => {
                let max = if self.below(20) == 0 { 8_000 } else { 40 };
                json!(self.string(max))
            }
            5 => json!(conversation),
            6 => {
                let n = self.below(4);
                Value::Array(
                    (0..n)
                        .map(|_| self.value(depth - 1, conversation))
                        .collect(),
                )
            }
            _ => {
                let keys = [
                    "conversationId",
                    "content",
                    "type",
                    "replyTo",
                    "attachments",
                    "clientMessageId",
                    "upToSeq",
                    "x",
                ];
                let mut object = serde_json::Map::new();
                for _ in 0..self.below(5) {
                    let key = keys[self.below(keys.len() as u64) as usize];
                    object.insert(key.to_owned(), self.value(depth - 1, conversation));
                }
                Value::Object(object)
            }
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_odd_packets_are_answered_and_the_socket_stays() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("SQLite");
    let conv = app.user("u_alice").conversation_with("u_bob").await;
    let mut alice = app.socket("u_alice").await;
    let events = [
        "join_conversation",
        "leave_conversation",
        "send_message",
        "typing_start",
        "typing_stop",
        "mark_as_read",
        "no_such_event",
        "",
        "__proto__",
        "constructor",
        "send_message ",
        "SEND_MESSAGE",
    ];
    let long_name = "x".repeat(500);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let rss_before = rss_kib();
    let mut answered = std::collections::BTreeMap::<String, u64>::new();
    for i in 0..3_000u64 {
        let event = if i % 997 == 0 {
            long_name.as_str()
        } else {
            events[rng.below(events.len() as u64) as usize]
        };
        let n = rng.below(3);
        let args: Vec<Value> = (0..n).map(|_| rng.value(3, &conv)).collect();
        let ack = alice.call_args(event, &args).await;
        let key = if ack["ok"] == json!(true) {
            "ok".to_owned()
        } else {
            let code = ack["error"]["code"].as_str().unwrap_or("(none)").to_owned();
            assert!(
                CODES.contains(&code.as_str()) && ack["error"]["message"].is_string(),
                "packet {i}: {event} {args:?} answered {ack}"
            );
            code
        };
        *answered.entry(key).or_default() += 1;
    }
    // Thousands of joins of conversations that do not exist: each `not_found`, none kept.
    for i in 0..2_000 {
        let ack = alice
            .call(
                "join_conversation",
                json!({ "conversationId": format!("0193{i:08x}-0000-7000-8000-000000000000") }),
            )
            .await;
        assert_eq!(ack["error"]["code"], json!("not_found"), "{ack}");
    }
    let rss_after = rss_kib();
    eprintln!(
        "socket fuzz: 3,000 packets answered {answered:?}; 2,000 joins of nothing; RSS of the \
         test process (server included) {rss_before} -> {rss_after} KiB"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 64 * 1024,
        "memory grew by {} KiB",
        rss_after - rss_before
    );
    // The outcomes are on /metrics, unknown names under one label.
    let metrics = app.metrics().await;
    let unknown = metrics
        .lines()
        .find(|l| {
            l.starts_with(r#"chat_socket_events_total{event="unknown",outcome="bad_request"}"#)
        })
        .unwrap_or_else(|| panic!("unknown events not counted:\n{metrics}"));
    assert!(!unknown.ends_with(" 0"), "{unknown}");
    // And every refusal by its code.
    let refused = metrics
        .lines()
        .find(|l| {
            l.starts_with(r#"chat_rejected_requests_total{transport="socket",code="bad_request"}"#)
        })
        .unwrap_or_else(|| panic!("refusals not counted:\n{metrics}"));
    assert!(!refused.ends_with(" 0"), "{refused}");
    assert!(
        !metrics.contains("no_such_event"),
        "a client-chosen name became a label"
    );
    assert!(
        metrics.contains(
            r#"chat_socket_events_total{event="join_conversation",outcome="not_found"} "#
        ),
        "{metrics}"
    );

    // The socket still works, and so does everyone else's.
    let ack = alice
        .call("join_conversation", json!({ "conversationId": conv }))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let mut bob = app.socket("u_bob").await;
    let sent = alice
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "after the fuzz" }),
        )
        .await;
    assert_eq!(sent["ok"], json!(true), "{sent}");
    bob.expect_event("new_message", |m| m["content"] == "after the fuzz")
        .await;

    // A binary frame outside any binary event is a protocol error: at most that connection
    // closes; the server goes on.
    let mut carol = app.socket("u_carol").await;
    carol
        .send_binary(vec![0x04, 0xff, 0x00, 0x42])
        .await
        .unwrap();
    let _ = carol.pump(Duration::from_millis(500)).await;
    let again = bob
        .call(
            "send_message",
            json!({ "conversationId": conv, "content": "still serving" }),
        )
        .await;
    assert_eq!(again["ok"], json!(true), "{again}");
}
