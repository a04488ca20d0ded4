//! RFC 9457 problem documents: how every REST error leaves the service (defined in
//! `chat_shared::http`, which the gateway's port shares).

pub use chat_shared::http::{ApiError, ApiResult, Problem};
