//! The service clock: real UTC time unless fixed by configuration.

use chrono::{DateTime, Utc};

/// Where "now" comes from. The reference demo fixes it to
/// 2016-11-07T00:00:00Z so that the 2016 data counts as recent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    /// The real clock.
    pub fn real() -> Self {
        Self { fixed: None }
    }

    /// A clock stopped at `instant`.
    pub fn fixed(instant: DateTime<Utc>) -> Self {
        Self { fixed: Some(instant) }
    }

    /// A fixed clock when `instant` is given, the real one otherwise.
    pub fn from_option(instant: Option<DateTime<Utc>>) -> Self {
        Self { fixed: instant }
    }

    /// The current instant of this clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }

    /// Whether the clock is fixed.
    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }
}
