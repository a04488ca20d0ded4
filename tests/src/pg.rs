//! A private PostgreSQL cluster for fault injection (stopping the database under a running
//! app), created with Debian's `pg_createcluster` on a free port and dropped afterwards. The
//! machine's shared server is never touched. Without `pg_createcluster` the test prints why and
//! returns, unless `REQUIRE_POSTGRES=1` (CI), which fails it.

use std::process::Command;
use std::time::{Duration, Instant};

/// PostgreSQL's major version of the shared server (`/etc/postgresql/<version>`).
fn version() -> Option<String> {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions.pop()
}

pub struct PrivatePostgres {
    version: String,
    name: String,
    pub port: u16,
}

impl PrivatePostgres {
    /// Creates and starts a cluster; `None` (reason printed) where that cannot be done.
    pub fn start() -> Option<Self> {
        let required = std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1");
        let skip = |why: &str| {
            assert!(!required, "REQUIRE_POSTGRES=1 but {why}");
            crate::say(&format!("SKIP private PostgreSQL: {why}"));
        };
        let Some(version) = version() else {
            skip("no /etc/postgresql/<version> (Debian's postgresql-common)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let name = format!("chatfault{}x{port}", std::process::id());
        let created = Command::new("pg_createcluster")
            .args(["--start", &version, &name, "-p", &port.to_string()])
            .args(["--", "--auth-local=trust", "--auth-host=trust"])
            .output();
        match created {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                skip(&format!(
                    "pg_createcluster failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                return None;
            }
            Err(e) => {
                skip(&format!("pg_createcluster cannot run: {e}"));
                return None;
            }
        }
        let this = Self {
            version,
            name,
            port,
        };
        this.wait_answering();
        Some(this)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn ctl(&self, action: &str) {
        let mut cmd = Command::new("pg_ctlcluster");
        cmd.args([&self.version, &self.name, action]);
        if action == "stop" {
            cmd.args(["-m", "fast"]);
        }
        let out = cmd.output().expect("pg_ctlcluster runs");
        assert!(
            out.status.success(),
            "pg_ctlcluster {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (fast: open sessions are ended), keeping its data and port.
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Starts it again and waits until it accepts connections.
    pub fn start_again(&self) {
        self.ctl("start");
        self.wait_answering();
    }

    fn wait_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", &self.version, &self.name])
            .output();
    }
}
