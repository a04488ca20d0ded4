//! Redis for the scaled-mode tests: the shared server (`TEST_REDIS_URL`, default the local
//! one) with a unique key prefix per test, or a private `redis-server` on its own port for
//! tests that stop and restart it (never the shared one).
//!
//! Without Redis these tests print why and return, unless `REQUIRE_REDIS=1` (CI), which makes
//! a missing Redis a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn required() -> bool {
    std::env::var("REQUIRE_REDIS").as_deref() == Ok("1")
}

fn skip(reason: &str) {
    assert!(!required(), "REQUIRE_REDIS=1 but {reason}");
    crate::say(&format!("SKIP redis leg: {reason}"));
}

/// Whether a Redis at `host:port` answers PING.
pub fn answers(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &match addr.parse() {
            Ok(a) => a,
            Err(_) => return false,
        },
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The shared Redis URL, or `None` (reason printed) when it does not answer.
pub fn shared() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    if answers(&addr) {
        Some(url)
    } else {
        skip(&format!("no Redis answers at {url} (set TEST_REDIS_URL)"));
        None
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A key and channel prefix no other test uses, on the Redis at `url`; its keys (presence,
/// last-seen times that would live for 90 days) are deleted when it is dropped.
pub struct Prefix {
    pub name: String,
    url: String,
}

impl std::ops::Deref for Prefix {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

pub fn unique_prefix(url: &str) -> Prefix {
    Prefix {
        name: format!(
            "t{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
        url: url.to_owned(),
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.name))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A private `redis-server` on a free port; killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// `None` (reason printed) when `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut this = Self { port, child: None };
        if !this.spawn() {
            skip("redis-server is not installed");
            return None;
        }
        Some(this)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if answers(&format!("127.0.0.1:{}", self.port)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server (as a crash would: no shutdown), keeping the port.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "redis-server restarts");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
