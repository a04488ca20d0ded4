//! Black-box test harness: the real servers on port 0 over real HTTP, on a fresh database of
//! either backend per test.

// Test helpers fail by panicking: that is how a broken invariant reaches the test runner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod db;
pub mod pg;
pub mod sio;

/// A line on stdout that the test harness does not capture: skipped legs say so in the output
/// of a plain `cargo test`, where CI (and a reader) can see them.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Generates, for every `name` (optionally with extra server flags: `name ["--flag", "v"]`),
/// a module `name` holding the tests `sqlite` and `postgres`, each booting a fresh `TestApp`
/// on its backend and running `name(app)` from the enclosing module. The PostgreSQL leg
/// returns early, with the reason printed, when `TEST_DATABASE_URL` is unset.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident $([$($flag:expr),* $(,)?])?),* $(,)?) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let flags: &[&str] = &[$($($flag),*)?];
                    let app = $crate::app::TestApp::spawn_with(
                        $crate::db::Backend::Sqlite,
                        flags,
                    )
                    .await
                    .expect("the SQLite backend always runs");
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let flags: &[&str] = &[$($($flag),*)?];
                    let Some(app) = $crate::app::TestApp::spawn_with(
                        $crate::db::Backend::Postgres,
                        flags,
                    )
                    .await
                    else {
                        return;
                    };
                    super::$name(app).await;
                }
            }
        )*
    };
}
pub mod redis;
