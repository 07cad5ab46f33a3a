//! Why a line was rejected: a short stable code plus a human message.
//! Bad data is not an error; it is one of these values, stored in the
//! rejected table.

use std::fmt;

/// The stable reason codes. The codes are part of the rejected table's
/// contract: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The line is empty (or only whitespace).
    EmptyLine,
    /// The line is longer than [`crate::MAX_LINE_BYTES`].
    LineTooLong,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line is not valid JSON.
    InvalidJson,
    /// The line is JSON but not an object.
    NotAnObject,
    /// A required field is absent or null.
    MissingField,
    /// A required field has another JSON type than string.
    WrongType,
    /// `event` is neither `start` nor `end`.
    UnknownEvent,
    /// `ts` does not parse as an ISO-8601 date-time.
    InvalidTs,
    /// `session_id` is not a UUID with dashes.
    InvalidSessionId,
    /// `player_id` is not 32 hex characters.
    InvalidPlayerId,
    /// `country` is not two uppercase ASCII letters.
    InvalidCountry,
}

impl RejectReason {
    /// Every reason, in a fixed order (for reports and ground truth).
    pub const ALL: [RejectReason; 12] = [
        RejectReason::EmptyLine,
        RejectReason::LineTooLong,
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::UnknownEvent,
        RejectReason::InvalidTs,
        RejectReason::InvalidSessionId,
        RejectReason::InvalidPlayerId,
        RejectReason::InvalidCountry,
    ];

    /// The stable code stored in the `reason` column.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::EmptyLine => "empty_line",
            RejectReason::LineTooLong => "line_too_long",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::UnknownEvent => "unknown_event",
            RejectReason::InvalidTs => "invalid_ts",
            RejectReason::InvalidSessionId => "invalid_session_id",
            RejectReason::InvalidPlayerId => "invalid_player_id",
            RejectReason::InvalidCountry => "invalid_country",
        }
    }

    /// The reason with this code, if any.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejected line's reason and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The stable code.
    pub reason: RejectReason,
    /// Human detail, e.g. "field `ts` is missing".
    pub message: String,
}

impl Rejection {
    /// A rejection with its message.
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.message)
    }
}
