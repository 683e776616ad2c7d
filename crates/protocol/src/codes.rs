//! The closed set of protocol error codes.

use serde::{Deserialize, Serialize};

/// An error code, as documented in `docs/protocol.md`. Adding one is a protocol change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, a wrong type, a missing field.
    BadRequest,
    /// `type` is not a client frame type.
    UnknownType,
    /// A frame above `max_frame_bytes`.
    FrameTooLarge,
    /// `data` above `max_message_bytes`.
    MessageTooLarge,
    /// Missing, malformed or wrongly signed token, or a request before authentication.
    Unauthorized,
    /// The token's `exp` has passed.
    TokenExpired,
    /// The token does not allow this operation on this channel.
    Forbidden,
    /// The channel name is not valid.
    InvalidChannel,
    /// `since` is not a cursor.
    InvalidCursor,
    /// A second subscribe to the same channel on one connection.
    AlreadySubscribed,
    /// Unsubscribe of a channel the connection is not subscribed to.
    NotSubscribed,
    /// Too many subscriptions on one connection.
    TooManySubscriptions,
    /// Too many requests.
    RateLimited,
    /// The connection's send queue overflowed.
    Lagged,
    /// The bus (or presence storage) cannot be reached.
    Unavailable,
    /// The node is draining.
    ShuttingDown,
    /// A bug.
    Internal,
}

impl ErrorCode {
    /// Every code, in the documented order.
    pub const ALL: [ErrorCode; 17] = [
        Self::BadRequest,
        Self::UnknownType,
        Self::FrameTooLarge,
        Self::MessageTooLarge,
        Self::Unauthorized,
        Self::TokenExpired,
        Self::Forbidden,
        Self::InvalidChannel,
        Self::InvalidCursor,
        Self::AlreadySubscribed,
        Self::NotSubscribed,
        Self::TooManySubscriptions,
        Self::RateLimited,
        Self::Lagged,
        Self::Unavailable,
        Self::ShuttingDown,
        Self::Internal,
    ];

    /// The code with this wire name, if it is one of the closed set.
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownType => "unknown_type",
            Self::FrameTooLarge => "frame_too_large",
            Self::MessageTooLarge => "message_too_large",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::Forbidden => "forbidden",
            Self::InvalidChannel => "invalid_channel",
            Self::InvalidCursor => "invalid_cursor",
            Self::AlreadySubscribed => "already_subscribed",
            Self::NotSubscribed => "not_subscribed",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::RateLimited => "rate_limited",
            Self::Lagged => "lagged",
            Self::Unavailable => "unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Internal => "internal",
        }
    }

    /// The WebSocket close code when this error ends the connection (most do not; `rate_limited`
    /// and `forbidden` do only when refusing the connection itself), `None` when it never does.
    pub fn close_code(self) -> Option<u16> {
        match self {
            Self::FrameTooLarge => Some(1009),
            Self::Unauthorized => Some(4001),
            Self::TokenExpired => Some(4002),
            Self::Lagged => Some(4008),
            Self::ShuttingDown => Some(1001),
            Self::RateLimited => Some(4029),
            Self::Forbidden => Some(1008),
            _ => None,
        }
    }

    /// The HTTP status for this error on the HTTP API.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::UnknownType | Self::InvalidChannel | Self::InvalidCursor => 400,
            Self::Unauthorized | Self::TokenExpired => 401,
            Self::Forbidden => 403,
            Self::AlreadySubscribed | Self::NotSubscribed => 409,
            Self::FrameTooLarge | Self::MessageTooLarge => 413,
            Self::TooManySubscriptions | Self::RateLimited => 429,
            Self::Lagged | Self::Internal => 500,
            Self::Unavailable | Self::ShuttingDown => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
