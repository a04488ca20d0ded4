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
    eprintln!("SKIP redis leg: {reason}");
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

/// A key and channel prefix no other test uses.
pub fn unique_prefix() -> String {
    format!(
        "t{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
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
