//! End-to-end suite: the official npm `socket.io-client` against the real binaries, driven by
//! `node --test` (`tests/e2e/`), in two legs:
//!
//! - `e2e_embedded`: one `chat` process (REST + Socket.IO on one port, SQLite, in-process bus);
//! - `e2e_scaled`: one `chat-api` and two `chat-gateway` processes on PostgreSQL and Redis.
//!   Skipped (with a `SKIP e2e scaled leg: …` line) when `TEST_DATABASE_URL` is unset or Redis
//!   (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) does not answer; with
//!   `REQUIRE_POSTGRES=1` (CI) either of those fails instead.
//!
//! Before node runs, the binaries are rebuilt (`$CARGO build -p chat-server -p chat-api
//! -p chat-gateway`, into the target directory this test binary lives in), and `npm ci` runs
//! if `tests/e2e/node_modules` is missing. The JavaScript harness starts and stops the server
//! processes; their logs go to a temporary directory whose tails are printed on failure.
//! A leg that ran and passed prints `e2e leg <leg>: passed` (CI greps for it).
//!
//! Without Node.js both legs print `SKIP e2e <leg> leg: …` (and fail with `REQUIRE_E2E=1`).
//! Environment: `SKIP_E2E=1` skips both legs; `E2E_BIN_DIR` uses prebuilt binaries from that
//! directory instead of building; `E2E_TIMEOUT_SECS` (default 300) bounds one node run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_tests::db::{Backend, TestDb, fresh_db};
use chat_tests::say;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The legs run one after the other: both start servers and time typing on a 2-core machine,
/// and their node output stays readable.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn e2e_embedded() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if skipped("embedded") {
        return;
    }
    let db = block_on(fresh_db(Backend::Sqlite)).expect("a SQLite database");
    run_leg("embedded", &db, &[]);
}

#[test]
fn e2e_scaled() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if skipped("scaled") {
        return;
    }
    let required = std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1");
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    if let Err(why) = redis_ping(&redis_url) {
        assert!(
            !required,
            "REQUIRE_POSTGRES=1 but Redis at {redis_url} does not answer PING ({why}): \
             the e2e scaled leg must run (set TEST_REDIS_URL)"
        );
        say(&format!(
            "SKIP e2e scaled leg: Redis at {redis_url} does not answer PING ({why})"
        ));
        return;
    }
    // Prints its own SKIP line when TEST_DATABASE_URL is unset, and panics when it is
    // required (REQUIRE_POSTGRES=1) or unreachable.
    let Some(db) = block_on(fresh_db(Backend::Postgres)) else {
        say("SKIP e2e scaled leg: TEST_DATABASE_URL is not set");
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("e2e_{}_{nanos}", std::process::id());
    run_leg(
        "scaled",
        &db,
        &[("E2E_REDIS_URL", redis_url), ("E2E_REDIS_PREFIX", prefix)],
    );
}

/// Runs `node --test` on the suite for `leg`, with the servers' database `db` (kept alive until
/// node exits), and fails the test if node fails.
fn run_leg(leg: &str, db: &TestDb, extra_env: &[(&str, String)]) {
    let bins = binaries();
    let e2e = e2e_dir();
    node_modules(&e2e);
    let logs = tempfile::Builder::new()
        .prefix(&format!("chat-e2e-{leg}-"))
        .tempdir()
        .expect("a log directory");
    let timeout = Duration::from_secs(
        std::env::var("E2E_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );

    say(&format!(
        "e2e leg {leg}: running node --test (binaries in {}, server logs in {})",
        bins.display(),
        logs.path().display()
    ));
    let started = Instant::now();
    let mut command = Command::new("node");
    command
        .args([
            "--test",
            "--test-reporter=spec",
            "--test-timeout=120000",
            "chat.test.js",
        ])
        .current_dir(&e2e)
        .env("LEG", leg)
        .env("E2E_BIN_DIR", &bins)
        .env("E2E_LOG_DIR", logs.path())
        .env("E2E_DATABASE_URL", &db.url)
        .stdin(Stdio::null());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let status = wait_with_timeout(&mut command, timeout, "node --test");
    let elapsed = started.elapsed();

    match status {
        Ok(status) if status.success() => {
            say(&format!(
                "e2e leg {leg}: passed ({:.1} s)",
                elapsed.as_secs_f64()
            ));
        }
        failure => {
            let why = match failure {
                Ok(status) => format!("node exited with {status}"),
                Err(e) => e,
            };
            print_log_tails(logs.path());
            let kept = logs.keep();
            panic!(
                "e2e leg {leg} failed after {:.1} s: {why}; server logs kept in {}",
                elapsed.as_secs_f64(),
                kept.display()
            );
        }
    }
}

/// `SKIP_E2E=1`, or no Node.js on this machine: prints why and skips (with `REQUIRE_E2E=1`,
/// as in CI, a missing Node.js fails instead).
fn skipped(leg: &str) -> bool {
    if std::env::var("SKIP_E2E").as_deref() == Ok("1") {
        say(&format!("SKIP e2e {leg} leg: SKIP_E2E=1"));
        return true;
    }
    let has_node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_node {
        assert!(
            std::env::var("REQUIRE_E2E").as_deref() != Ok("1"),
            "REQUIRE_E2E=1 but node cannot be run: the e2e suite needs Node.js 20 or newer"
        );
        say(&format!(
            "SKIP e2e {leg} leg: node is not installed (the suite needs Node.js 20 or newer)"
        ));
        return true;
    }
    false
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn e2e_dir() -> PathBuf {
    workspace_root().join("tests").join("e2e")
}

/// The directory with fresh `chat`, `chat-api` and `chat-gateway`: `E2E_BIN_DIR` as is, or the
/// profile directory of this test binary (`…/<target>/<profile>/deps/e2e-HASH`) after
/// `cargo build` of the three packages into it. Built once per test process.
fn binaries() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_binaries)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build_binaries() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("E2E_BIN_DIR") {
        let dir = PathBuf::from(dir);
        check_binaries(&dir)?;
        return Ok(dir);
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in <target>/<profile>/deps", exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent", profile_dir.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no profile name", profile_dir.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command
        .args([
            "build",
            "-p",
            "chat-server",
            "-p",
            "chat-api",
            "-p",
            "chat-gateway",
        ])
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null());
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    say(&format!(
        "e2e: building the binaries ({cargo} build -p chat-server -p chat-api -p chat-gateway, \
         target dir {}, profile {profile})",
        target_dir.display()
    ));
    // The outer `cargo test` holds no build lock while tests run, so this cannot deadlock;
    // the timeout is a guard all the same (a cold build on 2 cores takes minutes).
    let status = wait_with_timeout(&mut command, Duration::from_secs(1800), "cargo build")?;
    if !status.success() {
        return Err(format!(
            "cargo build of the e2e binaries failed ({status}); see its output above"
        ));
    }
    check_binaries(profile_dir)?;
    Ok(profile_dir.to_path_buf())
}

fn check_binaries(dir: &Path) -> Result<(), String> {
    for name in ["chat", "chat-api", "chat-gateway"] {
        let file = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        if !file.is_file() {
            return Err(format!(
                "{} does not exist: build it (cargo build -p chat-server -p chat-api \
                 -p chat-gateway) or point E2E_BIN_DIR at the binaries",
                file.display()
            ));
        }
    }
    Ok(())
}

/// `npm ci` when `node_modules` lacks socket.io-client; node must be there (20 or newer).
fn node_modules(e2e: &Path) {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "node is required for the e2e suite (Node.js 20 or newer) but cannot be run: \
                 {e}. Install it, or set SKIP_E2E=1 to skip the e2e legs"
            )
        });
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "the e2e suite needs Node.js 20 or newer, found {version:?}"
    );

    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if e2e
            .join("node_modules")
            .join("socket.io-client")
            .join("package.json")
            .is_file()
        {
            return;
        }
        say(&format!(
            "e2e: installing the node dependencies (npm ci in {})",
            e2e.display()
        ));
        let mut command = Command::new("npm");
        command
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(e2e)
            .stdin(Stdio::null());
        match wait_with_timeout(&mut command, Duration::from_secs(600), "npm ci") {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("npm ci in {} failed ({status})", e2e.display()),
            Err(e) => panic!("npm ci in {} failed: {e}", e2e.display()),
        }
    });
}

/// Runs `command` with inherited output (it streams), killing it after `timeout`.
fn wait_with_timeout(
    command: &mut Command,
    timeout: Duration,
    what: &str,
) -> Result<ExitStatus, String> {
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                // The JS harness notices that its runner is gone and stops the servers.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} did not finish within {timeout:?} and was killed"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
}

/// The last lines of every server log, for a failed leg.
fn print_log_tails(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        say(&format!(
            "---- last {} lines of {} ----\n{}",
            tail.len(),
            log.display(),
            tail.join("\n")
        ));
    }
}

/// Whether the Redis at `url` answers `PING` (by hand over TCP: `redis` is not a dependency of
/// this package). `rediss://` is only checked for a TCP connection.
fn redis_ping(url: &str) -> Result<(), String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("redis://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("rediss://") {
        (true, rest)
    } else {
        return Err(format!("{url} is not a redis:// URL"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    let hostport = if hostport.is_empty() {
        "127.0.0.1:6379".to_owned()
    } else if hostport.ends_with(']') || !hostport.contains(':') {
        format!("{hostport}:6379")
    } else {
        hostport.to_owned()
    };
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport} resolves to nothing"))?;
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    if tls {
        return Ok(());
    }
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut command = |args: &[&str]| -> Result<String, String> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        (&mut reader)
            .take(1024)
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        Ok(line.trim_end().to_owned())
    };
    if let Some(userinfo) = userinfo {
        let answer = match userinfo.split_once(':') {
            Some(("", password)) => command(&["AUTH", password])?,
            Some((user, password)) => command(&["AUTH", user, password])?,
            None => command(&["AUTH", userinfo])?,
        };
        if answer != "+OK" {
            return Err(format!("AUTH answered {answer:?}"));
        }
    }
    let answer = command(&["PING"])?;
    if answer == "+PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {answer:?}"))
    }
}

/// A setting that cannot work stops each binary at start with a message that names it, and
/// no backtrace even with `RUST_BACKTRACE=1`; a secret never appears in what is printed.
#[test]
fn invalid_settings_stop_the_binaries_with_a_message_naming_them() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = binaries();
    let secret = "a-secret-that-must-not-be-printed";
    let run = |bin: &str, args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(dir.join(bin));
        command
            .args(args)
            .env_clear()
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().expect("the binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (bin, args, env, names) in [
        (
            "chat-api",
            vec!["--request-timeout-ms", "5"],
            vec![("JWT_SECRET", secret)],
            "REQUEST_TIMEOUT_MS",
        ),
        (
            "chat-gateway",
            vec!["--database-url", "mysql://nope"],
            vec![("JWT_SECRET", secret)],
            "DATABASE_URL",
        ),
        ("chat-gateway", vec![], vec![], "JWT_SECRET"),
        (
            "chat",
            vec!["--max-sockets-per-user", "0"],
            vec![("JWT_SECRET", secret)],
            "MAX_SOCKETS_PER_USER",
        ),
    ] {
        let (code, stderr) = run(bin, &args, &env);
        assert_eq!(code, Some(1), "{bin} {args:?}: {stderr}");
        assert!(stderr.contains(names), "{bin} {args:?}: {stderr}");
        assert!(!stderr.contains("backtrace"), "{bin} {args:?}: {stderr}");
        assert!(
            !stderr.contains(secret),
            "{bin} {args:?} printed the secret: {stderr}"
        );
    }
}
