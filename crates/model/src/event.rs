//! A valid event, in a compact form (ids as 128-bit numbers, time as
//! microseconds) so that a micro-batch of millions fits in little memory.

use crate::ids::{format_player_id, format_session_id};
use crate::time::day_of_micros;

/// The two kinds of event that describe a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// The player started a session.
    Start,
    /// The player ended a session.
    End,
}

impl EventKind {
    /// The word used in the file and the tables.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::End => "end",
        }
    }
}

/// One validated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// Start or end.
    pub kind: EventKind,
    /// Event time, microseconds since the epoch, UTC.
    pub ts_micros: i64,
    /// The session's UUID as a number.
    pub session_id: u128,
    /// The player's id as a number.
    pub player_id: u128,
    /// Two ASCII uppercase letters; present on starts only.
    pub country: Option<[u8; 2]>,
}

impl Event {
    /// Day number (days since 1970-01-01) of the event, its EVENT_DATE.
    pub fn event_day(&self) -> i32 {
        day_of_micros(self.ts_micros)
    }

    /// `<event>-<session_id>`: the identity under which duplicates collapse.
    pub fn unique_id_row(&self) -> String {
        format!("{}-{}", self.kind.as_str(), self.session_id_text())
    }

    /// Canonical session id text.
    pub fn session_id_text(&self) -> String {
        format_session_id(self.session_id)
    }

    /// Canonical player id text.
    pub fn player_id_text(&self) -> String {
        format_player_id(self.player_id)
    }

    /// Country as text, when known.
    pub fn country_text(&self) -> Option<&str> {
        self.country.as_ref().map(|code| std::str::from_utf8(code).expect("ascii country"))
    }
}
