//! REST black-box suite: every endpoint, rule and error code of `shared/CONTRACT.md` (plus the
//! documented additions), over real HTTP, on both storage backends.
//!
//! Each test body is written once as `async fn name(app: TestApp)`; [`both_backends!`] turns it
//! into `<module>::name::sqlite` and `<module>::name::postgres` (the PostgreSQL leg returns
//! early, with the reason printed by the harness, when `TEST_DATABASE_URL` is unset).

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Generates, for every `name` (optionally with extra server flags: `name ["--flag", "v"]`),
/// a module `name` holding the tests `sqlite` and `postgres`, each booting a fresh `TestApp`
/// on its backend and running `name(app)` from the enclosing module.
macro_rules! both_backends {
    ($($name:ident $([$($flag:expr),* $(,)?])?),* $(,)?) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let flags: &[&str] = &[$($($flag),*)?];
                    let app = ::chat_tests::app::TestApp::spawn_with(
                        ::chat_tests::db::Backend::Sqlite,
                        flags,
                    )
                    .await
                    .expect("the SQLite backend always runs");
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let flags: &[&str] = &[$($($flag),*)?];
                    let Some(app) = ::chat_tests::app::TestApp::spawn_with(
                        ::chat_tests::db::Backend::Postgres,
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

mod auth;
mod common;
mod concurrency;
mod conversations;
mod errors;
mod limits;
mod messages;
mod reads;
mod search_stats;
