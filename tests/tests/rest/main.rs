//! REST black-box suite: every endpoint, rule and error code of `shared/CONTRACT.md` (plus the
//! documented additions), over real HTTP, on both storage backends.
//!
//! Each test body is written once as `async fn name(app: TestApp)`; [`both_backends!`] turns it
//! into `<module>::name::sqlite` and `<module>::name::postgres` (the PostgreSQL leg returns
//! early, with the reason printed by the harness, when `TEST_DATABASE_URL` is unset).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
extern crate chat_tests;

mod auth;
mod common;
mod concurrency;
mod conversations;
mod demo;
mod drain;
mod errors;
mod limits;
mod messages;
mod reads;
mod search_stats;
mod sync;
