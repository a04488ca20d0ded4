//! The one list of error codes clients see, and the domain error that carries them.
//!
//! REST turns a [`ChatError`] into an RFC 9457 problem document, the gateway into a
//! `{ ok: false, error: { code, message } }` acknowledgement: both say the same thing
//! because both start here. Internal causes are logged where they happen, never sent.

use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Error codes of the client contract (`../shared/CONTRACT.md`, "REST API").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    EditWindowPassed,
    Blocked,
    Unavailable,
    /// A change feed cursor older than the feed keeps (`410`).
    SyncExpired,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::EditWindowPassed => "edit_window_passed",
            Self::Blocked => "blocked",
            Self::Unavailable => "unavailable",
            Self::SyncExpired => "sync_expired",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status REST answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::EditWindowPassed | Self::Blocked => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::SyncExpired => 410,
            Self::Internal => 500,
        }
    }

    /// Short human title used as the problem document's `title`.
    pub fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad request",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
            Self::Conflict => "Conflict",
            Self::PayloadTooLarge => "Payload too large",
            Self::RateLimited => "Too many requests",
            Self::EditWindowPassed => "Edit window passed",
            Self::Blocked => "Conversation blocked",
            Self::Unavailable => "Service unavailable",
            Self::SyncExpired => "Sync cursor expired",
            Self::Internal => "Internal error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of a domain operation, as a client may see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ChatError {
    pub code: ErrorCode,
    /// Human-readable explanation; for `bad_request` it names the field at fault.
    pub detail: String,
    /// Set for `rate_limited`: how long until a retry can succeed.
    pub retry_after: Option<Duration>,
}

impl ChatError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            detail: format!("too many messages; retry in {} ms", retry_after.as_millis()),
            retry_after: Some(retry_after),
        }
    }

    /// An internal failure. The cause is logged here; the client only learns that it failed.
    pub fn internal(cause: &dyn fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

/// Storage failures become `unavailable` when the database cannot be reached (the client may
/// retry) and `internal` otherwise.
impl From<crate::store::StoreError> for ChatError {
    fn from(err: crate::store::StoreError) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = %err, "database unavailable");
            Self::new(ErrorCode::Unavailable, "database unavailable, retry later")
        } else {
            Self::internal(&err)
        }
    }
}

pub type ChatResult<T> = Result<T, ChatError>;
