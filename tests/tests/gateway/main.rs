//! Gateway suite: the Socket.IO events of `shared/CONTRACT.md` at the protocol level, against
//! the embedded server (REST and Socket.IO on one port), on both storage backends. The
//! official JavaScript client is exercised by `tests/e2e`; scaled mode across replicas there
//! and in `redis.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
extern crate chat_tests;

mod events;
mod fuzz;
mod handshake;
mod limits;
mod outage;
mod presence;
mod redis;
mod typing;
