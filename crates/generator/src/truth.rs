//! The ground truth of a generated file: what a correct pipeline must end
//! up with, computed from the generator's plan (not by parsing its output).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sessionlake_model::time::{date_of_day, day_of_micros};
use sessionlake_model::{Event, EventKind, RejectReason};

use crate::plan::{Line, Plan, utc_micros};

/// Exact figures a correct pipeline reproduces from a generated file.
///
/// Invariant: `raw_rows + rejected_rows + duplicate_lines == lines`.
///
/// Gold's rule, which the session figures follow: a session's start is its
/// earliest start and its end its latest end (conflicting repeats of an
/// event at other times are distinct events, kept in raw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    /// Lines in the file (each `\n`-terminated record, empty lines included).
    pub lines: u64,
    /// Distinct valid events (distinct by every field: UNIQUE_ID_ROW).
    pub raw_rows: u64,
    /// Valid lines that exactly repeat an earlier valid line.
    pub duplicate_lines: u64,
    /// Distinct valid events that repeat another one's kind and session at
    /// another ts (counted in `raw_rows`).
    pub conflicting_repeats: u64,
    /// Lines that must be rejected.
    pub rejected_rows: u64,
    /// Rejected lines per reason code (non-zero reasons only).
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Distinct session ids among valid events.
    pub sessions: u64,
    /// Sessions with a valid start.
    pub started_sessions: u64,
    /// Sessions with a valid end.
    pub completed_sessions: u64,
    /// Completed sessions whose start is known, per country of the start.
    pub completed_by_country: BTreeMap<String, u64>,
    /// Completed sessions per player (player from the end event), sorted by
    /// count descending then player id ascending, first 10.
    pub completed_by_player_top10: Vec<(String, u64)>,
    /// The country with the most sessions started (valid start) in 2016;
    /// ties go to the alphabetically smallest.
    pub top_start_country_2016: Option<String>,
    /// Distinct valid events per UTC date (`YYYY-MM-DD`) of their ts.
    pub raw_rows_by_date: BTreeMap<String, u64>,
    /// Sessions per UTC date of their start ts (of their end ts when they
    /// have no valid start).
    pub sessions_by_event_date: BTreeMap<String, u64>,
    /// Sessions whose start (or end, when no start) is before
    /// 2015-11-07T00:00:00Z, one year before the demo clock.
    pub sessions_before_2016_11_07_minus_1y: u64,
    /// Rows `serve` writes to `api_start_session_by_hour` with the service
    /// clock at 2016-11-07T00:00:00Z: sessions with a valid start at or
    /// after 2015-11-07T00:00:00Z (older events are outside retention).
    pub served_started_rows: u64,
    /// Rows `serve` writes to `api_completed_sessions` with the same clock:
    /// sessions with a valid end at or after 2015-11-07T00:00:00Z.
    pub served_completed_rows: u64,
}

impl Truth {
    /// The truth as pretty-printed JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("the truth serializes")
    }
}

#[derive(Default)]
struct SessionFacts {
    start: Option<Event>,
    end: Option<Event>,
}

fn dated(by_day: BTreeMap<i32, u64>) -> BTreeMap<String, u64> {
    by_day.into_iter().map(|(day, count)| (date_of_day(day).to_string(), count)).collect()
}

fn country_text(code: [u8; 2]) -> String {
    String::from_utf8(code.to_vec()).expect("ascii country")
}

/// Computes the truth of a plan.
pub(crate) fn compute(plan: &Plan) -> Truth {
    let mut rejected: BTreeMap<RejectReason, u64> = BTreeMap::new();
    let mut duplicate_lines = 0u64;
    let mut raw_rows = 0u64;
    let mut raw_by_day: BTreeMap<i32, u64> = BTreeMap::new();
    let mut facts: HashMap<u128, SessionFacts> = HashMap::new();
    let mut distinct: HashSet<Event> = HashSet::new();
    let mut conflicting_repeats = 0u64;
    for record in &plan.records {
        let line = match &record.line {
            Line::Junk(junk) => {
                *rejected.entry(junk.reason).or_default() += 1;
                continue;
            }
            Line::Valid(line) => line,
        };
        let player = plan.players[line.player as usize];
        let event = Event {
            kind: line.kind,
            ts_micros: line.ts,
            session_id: line.session,
            player_id: player.id,
            country: (line.kind == EventKind::Start).then_some(player.country),
        };
        if !distinct.insert(event) {
            duplicate_lines += 1;
            continue;
        }
        raw_rows += 1;
        *raw_by_day.entry(day_of_micros(line.ts)).or_default() += 1;
        let entry = facts.entry(line.session).or_default();
        let (slot, replaces) = match line.kind {
            EventKind::Start => {
                let earlier = entry.start.is_none_or(|known| event.ts_micros < known.ts_micros);
                (&mut entry.start, earlier)
            }
            EventKind::End => {
                let later = entry.end.is_none_or(|known| event.ts_micros > known.ts_micros);
                (&mut entry.end, later)
            }
        };
        conflicting_repeats += u64::from(slot.is_some());
        if replaces {
            *slot = Some(event);
        }
    }

    let cutoff = utc_micros(2015, 11, 7);
    let year_2016 = utc_micros(2016, 1, 1)..utc_micros(2017, 1, 1);
    let mut started_sessions = 0u64;
    let mut completed_sessions = 0u64;
    let mut completed_by_country: BTreeMap<[u8; 2], u64> = BTreeMap::new();
    let mut completed_by_player: HashMap<u128, u64> = HashMap::new();
    let mut starts_2016: BTreeMap<[u8; 2], u64> = BTreeMap::new();
    let mut sessions_by_day: BTreeMap<i32, u64> = BTreeMap::new();
    let mut old_sessions = 0u64;
    let mut served_started_rows = 0u64;
    let mut served_completed_rows = 0u64;
    for session in facts.values() {
        if let Some(start) = &session.start {
            started_sessions += 1;
            served_started_rows += u64::from(start.ts_micros >= cutoff);
            if year_2016.contains(&start.ts_micros) {
                *starts_2016.entry(start.country.expect("starts carry a country")).or_default() += 1;
            }
        }
        if let Some(end) = &session.end {
            completed_sessions += 1;
            served_completed_rows += u64::from(end.ts_micros >= cutoff);
            *completed_by_player.entry(end.player_id).or_default() += 1;
            if let Some(start) = &session.start {
                *completed_by_country.entry(start.country.expect("starts carry a country")).or_default() += 1;
            }
        }
        let anchor = session.start.or(session.end).expect("a session has an event");
        *sessions_by_day.entry(anchor.event_day()).or_default() += 1;
        if anchor.ts_micros < cutoff {
            old_sessions += 1;
        }
    }
    let mut players: Vec<(u128, u64)> = completed_by_player.into_iter().collect();
    players.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // Ties on count: the smallest player id first (fixed-width hex sorts like the number).
    let top_start_country_2016 = starts_2016
        .iter()
        .fold(None::<([u8; 2], u64)>, |best, (&country, &count)| match best {
            Some((_, best_count)) if best_count >= count => best,
            _ => Some((country, count)),
        })
        .map(|(country, _)| country_text(country));

    let rejected_rows: u64 = rejected.values().sum();
    let truth = Truth {
        lines: plan.records.len() as u64,
        raw_rows,
        duplicate_lines,
        conflicting_repeats,
        rejected_rows,
        rejected_by_reason: rejected.into_iter().map(|(reason, count)| (reason.code().to_string(), count)).collect(),
        sessions: facts.len() as u64,
        started_sessions,
        completed_sessions,
        completed_by_country: completed_by_country.into_iter().map(|(c, n)| (country_text(c), n)).collect(),
        completed_by_player_top10: players
            .into_iter()
            .take(10)
            .map(|(player, count)| (sessionlake_model::ids::format_player_id(player), count))
            .collect(),
        top_start_country_2016,
        raw_rows_by_date: dated(raw_by_day),
        sessions_by_event_date: dated(sessions_by_day),
        sessions_before_2016_11_07_minus_1y: old_sessions,
        served_started_rows,
        served_completed_rows,
    };
    debug_assert_eq!(truth.raw_rows + truth.rejected_rows + truth.duplicate_lines, truth.lines);
    truth
}
