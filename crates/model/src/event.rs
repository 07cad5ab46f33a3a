//! A valid event, in a compact form (ids as 128-bit numbers, time as
//! microseconds) so that a micro-batch of millions fits in little memory.

use crate::ids::{format_player_id, format_session_id, push_player_id, push_session_id};
use crate::time::{day_of_micros, push_ts_micros};

/// Bytes of the longest [`Event::unique_id_row`]: `start`, a session id,
/// a timestamp, a player id and a country, with their four dashes.
pub const UNIQUE_ID_ROW_CAPACITY: usize = 5 + 36 + 26 + 32 + 2 + 4;

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

/// One validated event. Two events are the same event (an exact repeat, a
/// duplicate) when every field is equal; any difference — another ts, player
/// or country for the same kind and session — makes a distinct event.
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

    /// The event's identity in the raw table, every field in canonical text:
    /// `<event>-<session_id>-<ts>-<player_id>` and, on a start, `-<country>`
    /// (e.g. `start-4a0c43c9-…-2016-12-02T12:48:05.520022-0a2d12a1…-FI`).
    /// Equal for exact repeats only, so the raw table holds one row per
    /// distinct event whatever order or batches the repeats arrive in.
    pub fn unique_id_row(&self) -> String {
        let mut id = String::with_capacity(UNIQUE_ID_ROW_CAPACITY);
        self.push_unique_id_row(&mut id);
        id
    }

    /// Appends [`Event::unique_id_row`] to `out`, without allocating.
    pub fn push_unique_id_row(&self, out: &mut String) {
        out.push_str(self.kind.as_str());
        out.push('-');
        push_session_id(out, self.session_id);
        out.push('-');
        push_ts_micros(out, self.ts_micros);
        out.push('-');
        push_player_id(out, self.player_id);
        if let Some(country) = self.country_text() {
            out.push('-');
            out.push_str(country);
        }
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
