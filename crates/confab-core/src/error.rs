//! The error codes of the wire contract and the one error type that carries them.
//!
//! Every failure a client can see is a [`ChatError`]: a stable [`ErrorCode`] string
//! plus a human message. The gateway maps it to `{ok:false, error:{code, message}}`
//! in exactly one place.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The closed set of error codes a client can receive (see docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidName,
    NameTaken,
    InvalidRoom,
    InvalidText,
    NotMember,
    UserNotFound,
    RateLimited,
    Unauthorized,
    Forbidden,
    PayloadTooLarge,
    Unavailable,
    Overloaded,
    Internal,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidName,
        ErrorCode::NameTaken,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidText,
        ErrorCode::NotMember,
        ErrorCode::UserNotFound,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
    ];

    /// The exact wire string of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::InvalidText => "invalid_text",
            ErrorCode::NotMember => "not_member",
            ErrorCode::UserNotFound => "user_not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client-visible error: code + message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatError {
    pub code: ErrorCode,
    pub message: String,
    /// `rate_limited` only: when a retry can succeed, in ms.
    #[serde(
        rename = "retryAfterMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after_ms: Option<u64>,
}

impl ChatError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
    /// `rate_limited`, with the wait after which a retry can succeed.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Self {
            retry_after_ms: Some((retry_after.as_millis() as u64).max(1)),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for ChatError {
    /// `"<code>: <message>"`, the form used for refused handshakes (`connect_error`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ChatError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_to_their_wire_strings() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let e = ChatError::rate_limited("slow down", std::time::Duration::from_micros(1500));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "rate_limited", "message": "slow down", "retryAfterMs": 1})
        );
        let plain = serde_json::to_value(ChatError::bad_request("x")).unwrap();
        assert!(plain.get("retryAfterMs").is_none());
    }

    #[test]
    fn display_starts_with_code() {
        let e = ChatError::new(ErrorCode::InvalidName, "too long");
        assert_eq!(e.to_string(), "invalid_name: too long");
    }
}
