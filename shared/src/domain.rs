//! Parsed domain values. Each is built once, from untrusted input, through `parse`; code that
//! holds one can trust it. A failure names the field so clients know what to fix.

use crate::error::ChatError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A user id from the rental platform: 1 to 64 characters of `[A-Za-z0-9_.:@-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

/// Checks the platform's id shape (user and property ids share it).
fn is_platform_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'))
}

impl UserId {
    pub fn parse(s: &str, field: &str) -> Result<Self, ChatError> {
        if is_platform_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ChatError::bad_request(format!(
                "{field}: a user id is 1 to 64 characters of A-Z a-z 0-9 _ . : @ -"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A property id from the rental platform, same shape as a user id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PropertyId(String);

impl PropertyId {
    pub fn parse(s: &str) -> Result<Self, ChatError> {
        if is_platform_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ChatError::bad_request(
                "propertyId: 1 to 64 characters of A-Z a-z 0-9 _ . : @ -",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Role claim of the JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    User,
    Support,
    Admin,
}

impl Role {
    pub fn is_staff(self) -> bool {
        matches!(self, Self::Support | Self::Admin)
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: UserId,
    pub name: Option<String>,
    pub role: Role,
}

/// Message text after trimming, checked against the configured limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    /// `allow_empty` is for image and file messages that carry attachments.
    pub fn parse(raw: &str, max_chars: usize, allow_empty: bool) -> Result<Self, ChatError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 && !allow_empty {
            return Err(ChatError::bad_request(format!(
                "content: must be 1 to {max_chars} characters after trimming"
            )));
        }
        if chars > max_chars {
            return Err(ChatError::bad_request(format!(
                "content: {chars} characters, the limit is {max_chars}"
            )));
        }
        // No client means a NUL, and PostgreSQL text cannot store one.
        if trimmed.contains('\0') {
            return Err(ChatError::bad_request(
                "content: must not contain NUL characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A `clientMessageId`: 1 to 128 printable characters chosen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    pub fn parse(s: &str) -> Result<Self, ChatError> {
        if (1..=128).contains(&s.len()) && !s.chars().any(char::is_control) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ChatError::bad_request(
                "clientMessageId: 1 to 128 characters, no control characters",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_of_the_platform_parse() {
        for ok in [
            "u_alice",
            "507f1f77bcf86cd799439011",
            "42",
            "a@b.c:d-e",
            &"x".repeat(64),
        ] {
            assert!(UserId::parse(ok, "sub").is_ok(), "{ok}");
        }
        for bad in ["", "with space", "ünïcode", &"x".repeat(65), "a/b"] {
            let err = UserId::parse(bad, "participantIds[0]").expect_err(bad);
            assert!(
                err.detail.starts_with("participantIds[0]"),
                "{}",
                err.detail
            );
        }
    }

    #[test]
    fn message_body_is_trimmed_and_counted_in_characters() {
        assert_eq!(
            MessageBody::parse("  hi  ", 4, false).map(MessageBody::into_string),
            Ok("hi".into())
        );
        assert!(MessageBody::parse("   ", 4, false).is_err());
        assert!(MessageBody::parse("   ", 4, true).is_ok());
        assert!(MessageBody::parse("ééééé", 4, false).is_err());
        assert!(MessageBody::parse("éééé", 4, false).is_ok());
    }
}
