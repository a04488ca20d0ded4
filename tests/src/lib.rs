//! Black-box test harness: the real servers on port 0 over real HTTP, on a fresh database of
//! either backend per test.

// Test helpers fail by panicking: that is how a broken invariant reaches the test runner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod db;
