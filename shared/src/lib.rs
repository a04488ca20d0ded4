//! The library both binaries stand on: wire types, configuration, JWT auth, the domain
//! service with every rule of the chat, and storage.

pub mod app;
pub mod auth;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod redis_bus;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod trace;
#[cfg(feature = "ts")]
pub mod ts;
pub mod wire;
