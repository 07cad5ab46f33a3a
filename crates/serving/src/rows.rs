//! From a gold session to the rows of the two serving tables, with the
//! retention rule of DESIGN.md: an event older than one year before the
//! service clock is not served; any other row lives until one year after
//! its event (a TTL for the rest of its year). The row types themselves
//! are the serving store's (`sessionlake_cassandra::rows`).

use chrono::{DateTime, Months, Utc};
pub use sessionlake_cassandra::rows::{CompletedKey, CompletedRow, StaleRows, StartedKey, StartedRow};
use sessionlake_cassandra::schema::start_day_ms;
use sessionlake_lake::sessions::SessionImage;

/// Cassandra's largest TTL (20 years), in seconds.
pub const MAX_TTL_SECONDS: i64 = 630_720_000;

/// The retention window, fixed at one instant of the service clock.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    now: DateTime<Utc>,
    horizon_micros: i64,
}

impl Retention {
    /// The window ending at `now`: events from one year before it are kept.
    pub fn new(now: DateTime<Utc>) -> Self {
        let horizon = now.checked_sub_months(Months::new(12)).unwrap_or(DateTime::<Utc>::MIN_UTC);
        Self { now, horizon_micros: horizon.timestamp_micros() }
    }

    /// How long a row for an event at `event_micros` lives, in seconds:
    /// until one year after the event, at least one second, at most
    /// Cassandra's maximum. `None` when the event is older than the window.
    pub fn ttl_seconds(&self, event_micros: i64) -> Option<i32> {
        if event_micros < self.horizon_micros {
            return None;
        }
        let expiry = DateTime::from_timestamp_micros(event_micros)
            .and_then(|event| event.checked_add_months(Months::new(12)))
            .map_or(i64::MAX, |expiry| (expiry - self.now).num_seconds());
        Some(expiry.clamp(1, MAX_TTL_SECONDS) as i32)
    }
}

/// What one gold session becomes in the serving store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedRows {
    /// Its started row, when its start and country are known and recent.
    pub started: Option<StartedRow>,
    /// Its completed row, when its end is known and recent.
    pub completed: Option<CompletedRow>,
    /// Rows not written because their event is older than the window.
    pub expired: u64,
}

fn started_key(session: &SessionImage) -> Option<StartedKey> {
    let (start, country) = (session.start_micros?, session.country.as_ref()?);
    Some(StartedKey {
        country: country.clone(),
        start_day_ms: day_ms(start),
        ts_ms: millis(start),
        session_id: session.session_id.clone(),
    })
}

fn completed_key(session: &SessionImage) -> Option<CompletedKey> {
    Some(CompletedKey {
        player_id: session.player_id.clone(),
        ts_ms: millis(session.end_micros?),
        session_id: session.session_id.clone(),
    })
}

/// The keys that `earlier` images of a session may have been served under
/// and `newest` has not: a start that moved earlier, an end that moved later,
/// another country or player. Deleting a key never written is harmless.
pub fn stale_rows(newest: &SessionImage, earlier: &[SessionImage]) -> StaleRows {
    let (current_started, current_completed) = (started_key(newest), completed_key(newest));
    let mut stale = StaleRows::default();
    for image in earlier {
        if let Some(key) = started_key(image).filter(|key| Some(key) != current_started.as_ref())
            && !stale.started.contains(&key)
        {
            stale.started.push(key);
        }
        if let Some(key) = completed_key(image).filter(|key| Some(key) != current_completed.as_ref())
            && !stale.completed.contains(&key)
        {
            stale.completed.push(key);
        }
    }
    stale
}

/// Microseconds to Cassandra's milliseconds (rounding down, also before 1970).
pub fn millis(micros: i64) -> i64 {
    micros.div_euclid(1000)
}

/// The started partition (UTC day) an instant falls in, as milliseconds.
pub fn day_ms(micros: i64) -> i64 {
    start_day_ms(millis(micros))
}

/// The serving rows of one gold session.
pub fn rows_for(session: &SessionImage, retention: &Retention) -> ServedRows {
    let mut rows = ServedRows::default();
    if let (Some(start), Some(country)) = (session.start_micros, &session.country) {
        match retention.ttl_seconds(start) {
            Some(ttl) => {
                rows.started = Some(StartedRow {
                    country: country.clone(),
                    start_day_ms: day_ms(start),
                    ts_ms: millis(start),
                    session_id: session.session_id.clone(),
                    player_id: session.player_id.clone(),
                    end_ms: session.end_micros.map(millis),
                    ttl,
                })
            }
            None => rows.expired += 1,
        }
    }
    if let Some(end) = session.end_micros {
        match retention.ttl_seconds(end) {
            Some(ttl) => {
                rows.completed = Some(CompletedRow {
                    player_id: session.player_id.clone(),
                    ts_ms: millis(end),
                    session_id: session.session_id.clone(),
                    country: session.country.clone(),
                    start_ms: session.start_micros.map(millis),
                    ttl,
                })
            }
            None => rows.expired += 1,
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros()
    }

    fn clock() -> Retention {
        Retention::new(DateTime::parse_from_rfc3339("2016-11-07T00:00:00Z").unwrap().to_utc())
    }

    fn session(start: Option<&str>, end: Option<&str>, country: Option<&str>) -> SessionImage {
        SessionImage {
            session_id: "s".into(),
            player_id: "p".into(),
            country: country.map(str::to_string),
            start_micros: start.map(micros),
            end_micros: end.map(micros),
            version: 1,
        }
    }

    #[test]
    fn ttl_runs_to_one_year_after_the_event() {
        let retention = clock();
        assert_eq!(retention.ttl_seconds(micros("2016-11-06T00:00:00Z")), Some(365 * 86_400 - 86_400));
        assert_eq!(retention.ttl_seconds(micros("2015-11-07T00:00:00Z")), Some(1));
        assert_eq!(retention.ttl_seconds(micros("2015-11-06T23:59:59.999999Z")), None);
        // A future event lives a year after it, not after the clock.
        assert_eq!(retention.ttl_seconds(micros("2016-11-08T00:00:00Z")), Some(366 * 86_400));
        assert_eq!(retention.ttl_seconds(micros("9999-12-31T23:59:59Z")), Some(MAX_TTL_SECONDS as i32));
    }

    #[test]
    fn days_and_millis_round_down() {
        assert_eq!(day_ms(micros("2016-11-06T23:59:59.999999Z")), micros("2016-11-06T00:00:00Z") / 1000);
        assert_eq!(day_ms(micros("2016-11-07T00:00:00Z")), micros("2016-11-07T00:00:00Z") / 1000);
        assert_eq!(millis(-1), -1);
        assert_eq!(day_ms(-1), -86_400_000);
    }

    #[test]
    fn a_complete_recent_session_gives_both_rows() {
        let rows = rows_for(&session(Some("2016-11-01T10:30:00Z"), Some("2016-11-01T11:00:00Z"), Some("FI")), &clock());
        let started = rows.started.unwrap();
        assert_eq!((started.country.as_str(), started.start_day_ms), ("FI", micros("2016-11-01T00:00:00Z") / 1000));
        assert_eq!(started.end_ms, Some(micros("2016-11-01T11:00:00Z") / 1000));
        let completed = rows.completed.unwrap();
        assert_eq!(completed.country.as_deref(), Some("FI"));
        assert_eq!(completed.start_ms, Some(micros("2016-11-01T10:30:00Z") / 1000));
        assert_eq!(rows.expired, 0);
    }

    #[test]
    fn an_end_without_start_is_completed_with_unknown_country() {
        let rows = rows_for(&session(None, Some("2016-11-01T11:00:00Z"), None), &clock());
        assert!(rows.started.is_none());
        assert_eq!(rows.completed.unwrap().country, None);
    }

    #[test]
    fn a_moved_start_or_end_leaves_the_old_keys_stale() {
        let newest = session(Some("2016-11-01T09:00:00Z"), Some("2016-11-01T12:00:00Z"), Some("FI"));
        let before = [
            session(None, Some("2016-11-01T11:00:00Z"), None),
            session(Some("2016-11-01T10:30:00Z"), Some("2016-11-01T11:00:00Z"), Some("FI")),
            session(Some("2016-11-01T09:00:00Z"), Some("2016-11-01T11:00:00Z"), Some("FI")),
        ];
        let stale = stale_rows(&newest, &before);
        assert_eq!(stale.started.len(), 1, "only the 10:30 start: {stale:?}");
        assert_eq!(stale.started[0].ts_ms, micros("2016-11-01T10:30:00Z") / 1000);
        assert_eq!(stale.completed.len(), 1, "the 11:00 end, once: {stale:?}");
        assert_eq!(stale.completed[0].ts_ms, micros("2016-11-01T11:00:00Z") / 1000);
        assert_eq!(stale_rows(&newest, std::slice::from_ref(&newest)), StaleRows::default());
    }

    #[test]
    fn old_events_are_counted_not_written() {
        let rows = rows_for(&session(Some("2015-01-01T00:00:00Z"), Some("2015-11-08T00:00:00Z"), Some("IT")), &clock());
        assert!(rows.started.is_none());
        assert!(rows.completed.is_some());
        assert_eq!(rows.expired, 1);
    }
}
