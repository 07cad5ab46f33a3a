//! The generator's plan: every line of the file, decided up front (with all
//! of its randomness), in file order. The ground truth is computed from the
//! plan, and the writer only formats it.

use std::collections::HashSet;

use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sessionlake_model::{EventKind, RejectReason};

use crate::GeneratorConfig;
use crate::countries::{COUNTRIES, country_bytes};
use crate::format::{EXTRA_VARIANTS, ORDER_CHOICES};
use crate::junk;

pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// Sessions per player at most (the top players have exactly this many).
const MAX_SESSIONS_PER_PLAYER: u64 = 50;
/// Percentage of sessions that never end, even without anomalies.
const NEVER_ENDING_PERCENT: u32 = 2;

/// Microseconds since the epoch of midnight UTC of a date.
pub(crate) fn utc_micros(year: i32, month: u32, day: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, day)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_micros()
}

/// A player: id and their one country.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Player {
    pub id: u128,
    pub country: [u8; 2],
}

/// A valid event line, with its formatting choices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValidLine {
    pub kind: EventKind,
    pub ts: i64,
    pub session: u128,
    /// Index into [`Plan::players`].
    pub player: u32,
    /// Key order selector.
    pub order: u16,
    /// 0: no extra field; otherwise the extra field variant.
    pub extra: u8,
    /// An exact repeat of an earlier line.
    pub duplicate: bool,
}

/// How a conflicting repeat moves its original's ts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conflict {
    /// By a few minutes, on the same UTC date.
    SameDate,
    /// By about a day, onto another UTC date.
    OtherDate,
}

/// A line that must be rejected.
#[derive(Debug, Clone)]
pub(crate) struct JunkLine {
    pub reason: RejectReason,
    /// The line without its `\n`.
    pub bytes: Vec<u8>,
}

/// One line of the file.
#[derive(Debug, Clone)]
pub(crate) enum Line {
    Valid(ValidLine),
    Junk(Box<JunkLine>),
}

/// A line and where it goes in the file.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// File position key (a time, microseconds): lines are sorted by it.
    pub pos: i64,
    pub line: Line,
}

/// The whole file, decided.
#[derive(Debug)]
pub(crate) struct Plan {
    pub players: Vec<Player>,
    /// In file order.
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    id: u128,
    player: u32,
    start_ts: i64,
    end_ts: i64,
    start_pos: i64,
    end_pos: i64,
    has_start: bool,
    has_end: bool,
}

/// The anomalies that shape valid lines (rather than adding junk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Structural {
    Duplicate,
    OrphanEnd,
    OrphanStart,
    EndBeforeStartInFile,
    LateEnd,
    EndTsBeforeStart,
    Old2015,
    /// The same kind of event of the same session again, at another ts
    /// (a distinct event: raw keeps it, gold folds it in).
    ConflictingRepeat(Conflict),
}

const STRUCTURAL: [Structural; 9] = [
    Structural::Duplicate,
    Structural::OrphanEnd,
    Structural::OrphanStart,
    Structural::EndBeforeStartInFile,
    Structural::LateEnd,
    Structural::EndTsBeforeStart,
    Structural::Old2015,
    Structural::ConflictingRepeat(Conflict::SameDate),
    Structural::ConflictingRepeat(Conflict::OtherDate),
];

struct Ids {
    used: HashSet<u128>,
}

impl Ids {
    fn session(&mut self, rng: &mut ChaCha8Rng) -> u128 {
        loop {
            let mut value: u128 = rng.random();
            value = (value & !(0xf << 76)) | (0x4 << 76); // version 4
            value = (value & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
            if self.used.insert(value) {
                return value;
            }
        }
    }

    fn player(&mut self, rng: &mut ChaCha8Rng) -> u128 {
        loop {
            let value: u128 = rng.random();
            if self.used.insert(value) {
                return value;
            }
        }
    }
}

/// A session length: 30 s × 2^k × [1, 2), k in 0..9 (30 s to ~4.3 h).
fn duration(rng: &mut ChaCha8Rng) -> i64 {
    let base = (30 * MICROS_PER_SECOND) << rng.random_range(0..9u32);
    base + rng.random_range(0..base)
}

fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for index in (1..items.len()).rev() {
        let other = rng.random_range(0..=index);
        items.swap(index, other);
    }
}

/// Another ts for a conflicting repeat of an event at `ts`: moved by 1 to 30
/// minutes (either way) within its UTC date, or by a day (± up to an hour)
/// onto another date.
fn conflicting_ts(rng: &mut ChaCha8Rng, ts: i64, conflict: Conflict) -> i64 {
    let sign = if rng.random_bool(0.5) { 1 } else { -1 };
    match conflict {
        Conflict::SameDate => {
            let shift = rng.random_range(60 * MICROS_PER_SECOND..30 * 60 * MICROS_PER_SECOND);
            let day = ts.div_euclid(MICROS_PER_DAY);
            let moved = ts + sign * shift;
            if moved.div_euclid(MICROS_PER_DAY) == day { moved } else { ts - sign * shift }
        }
        Conflict::OtherDate => {
            let moved = ts + sign * (MICROS_PER_DAY + rng.random_range(-MICROS_PER_HOUR..MICROS_PER_HOUR));
            if moved.div_euclid(MICROS_PER_DAY) != ts.div_euclid(MICROS_PER_DAY) {
                moved
            } else {
                moved + sign * MICROS_PER_HOUR
            }
        }
    }
}

/// Decides every line of the file.
pub(crate) fn build(config: &GeneratorConfig) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let start_min = utc_micros(2016, 11, 1);
    let start_max = utc_micros(2016, 12, 8);
    let anomalies = config.anomaly_rate > 0.0;
    let mut ids =
        Ids { used: HashSet::with_capacity(config.sessions as usize * 2 / 45 + config.sessions as usize + 16) };

    // Players and their sessions.
    let mut players = Vec::new();
    let mut sessions: Vec<Session> = Vec::with_capacity(config.sessions as usize);
    let mut remaining = config.sessions;
    while remaining > 0 {
        let count = if rng.random_range(0..10u32) < 7 {
            MAX_SESSIONS_PER_PLAYER
        } else {
            rng.random_range(40..MAX_SESSIONS_PER_PLAYER)
        }
        .min(remaining);
        remaining -= count;
        let player = Player { id: ids.player(&mut rng), country: country_bytes(rng.random_range(0..COUNTRIES.len())) };
        let player_index = u32::try_from(players.len()).expect("players fit u32");
        players.push(player);
        for _ in 0..count {
            let id = ids.session(&mut rng);
            let start_ts = rng.random_range(start_min..start_max);
            let end_ts = start_ts + duration(&mut rng);
            let has_end = rng.random_range(0..100u32) >= NEVER_ENDING_PERCENT;
            sessions.push(Session {
                id,
                player: player_index,
                start_ts,
                end_ts,
                start_pos: start_ts,
                end_pos: end_ts,
                has_start: true,
                has_end,
            });
        }
    }
    let base_lines: u64 = sessions.iter().map(|s| 1 + u64::from(s.has_end)).sum();

    // The anomaly budget: half junk lines, half structural anomalies, and at
    // least one of every kind.
    let all_junk = junk::all_kinds();
    let (junk_count, structural_count) = if anomalies {
        let target = (config.anomaly_rate * base_lines as f64).round() as u64;
        let junk_target = target / 2;
        (junk_target.max(all_junk.len() as u64), (target - junk_target).max(STRUCTURAL.len() as u64))
    } else {
        (0, 0)
    };

    // Structural anomalies: one of each, then uniformly at random.
    let mut structural: Vec<Structural> = Vec::new();
    for index in 0..structural_count {
        structural.push(if (index as usize) < STRUCTURAL.len() {
            STRUCTURAL[index as usize]
        } else {
            STRUCTURAL[rng.random_range(0..STRUCTURAL.len())]
        });
    }
    let mut candidates: Vec<usize> = (0..sessions.len()).filter(|&i| sessions[i].has_end).collect();
    if anomalies {
        shuffle(&mut rng, &mut candidates);
    }
    let mut duplicates = 0u64;
    let mut conflicts: Vec<Conflict> = Vec::new();
    for kind in structural {
        if kind == Structural::Duplicate {
            duplicates += 1;
            continue;
        }
        if let Structural::ConflictingRepeat(conflict) = kind {
            conflicts.push(conflict);
            continue;
        }
        let Some(index) = candidates.pop() else {
            continue;
        };
        let session = &mut sessions[index];
        let length = session.end_ts - session.start_ts;
        match kind {
            Structural::Duplicate | Structural::ConflictingRepeat(_) => unreachable!("handled above"),
            Structural::OrphanEnd => session.has_start = false,
            Structural::OrphanStart => session.has_end = false,
            Structural::EndBeforeStartInFile => {
                session.end_pos = session.start_pos - rng.random_range(60 * MICROS_PER_SECOND..2 * MICROS_PER_HOUR);
            }
            Structural::LateEnd => {
                session.end_pos = session.start_ts + MICROS_PER_DAY + rng.random_range(0..2 * MICROS_PER_DAY);
            }
            Structural::EndTsBeforeStart => {
                session.end_ts = session.start_ts - rng.random_range(MICROS_PER_SECOND..MICROS_PER_HOUR);
                session.end_pos = session.start_pos + length;
            }
            Structural::Old2015 => {
                // Stale events arriving among the current ones.
                session.start_ts = rng.random_range(utc_micros(2015, 1, 1)..utc_micros(2015, 11, 6));
                session.end_ts = session.start_ts + length;
            }
        }
    }

    // Valid lines.
    let extra_per_million: u32 = if anomalies { ((config.anomaly_rate * 100_000.0).round() as u32).max(1) } else { 0 };
    let mut records: Vec<Record> =
        Vec::with_capacity(base_lines as usize + junk_count as usize + duplicates as usize + conflicts.len());
    let valid_line = |rng: &mut ChaCha8Rng, kind: EventKind, ts: i64, session: &Session| ValidLine {
        kind,
        ts,
        session: session.id,
        player: session.player,
        order: rng.random_range(0..ORDER_CHOICES),
        extra: if anomalies && rng.random_range(0..1_000_000u32) < extra_per_million {
            1 + rng.random_range(0..EXTRA_VARIANTS)
        } else {
            0
        },
        duplicate: false,
    };
    for session in &sessions {
        if session.has_start {
            let line = valid_line(&mut rng, EventKind::Start, session.start_ts, session);
            records.push(Record { pos: session.start_pos, line: Line::Valid(line) });
        }
        if session.has_end {
            let line = valid_line(&mut rng, EventKind::End, session.end_ts, session);
            records.push(Record { pos: session.end_pos, line: Line::Valid(line) });
        }
    }
    let originals = records.len();
    if anomalies && originals > 0 && !records.iter().any(|r| matches!(&r.line, Line::Valid(v) if v.extra > 0)) {
        let index = rng.random_range(0..originals);
        if let Line::Valid(line) = &mut records[index].line {
            line.extra = 1 + rng.random_range(0..EXTRA_VARIANTS);
        }
    }

    // Exact duplicates, later in the file (sometimes much later).
    if originals > 0 {
        for _ in 0..duplicates {
            let index = rng.random_range(0..originals);
            let original = &records[index];
            let Line::Valid(mut line) = original.line else { unreachable!("originals are valid lines") };
            line.duplicate = true;
            let delay = if rng.random_bool(0.5) {
                rng.random_range(1..600 * MICROS_PER_SECOND)
            } else {
                rng.random_range(MICROS_PER_HOUR..5 * MICROS_PER_DAY)
            };
            records.push(Record { pos: original.pos + delay, line: Line::Valid(line) });
        }
    }

    // Conflicting repeats: an original's kind and session at another ts,
    // anywhere from hours before to days after the original in the file.
    if originals > 0 {
        for conflict in conflicts {
            let index = rng.random_range(0..originals);
            let original = &records[index];
            let Line::Valid(mut line) = original.line else { unreachable!("originals are valid lines") };
            line.ts = conflicting_ts(&mut rng, line.ts, conflict);
            line.order = rng.random_range(0..ORDER_CHOICES);
            let pos = original.pos + rng.random_range(-2 * MICROS_PER_HOUR..3 * MICROS_PER_DAY);
            records.push(Record { pos, line: Line::Valid(line) });
        }
    }

    // Junk lines: one of every kind, then a uniformly chosen reason and a
    // uniformly chosen kind for it.
    let by_reason = junk::kinds_by_reason();
    for index in 0..junk_count {
        let kind = if (index as usize) < all_junk.len() {
            all_junk[index as usize]
        } else {
            let kinds = &by_reason[rng.random_range(0..by_reason.len())].1;
            kinds[rng.random_range(0..kinds.len())]
        };
        let pos = rng.random_range(start_min..start_max + MICROS_PER_DAY);
        let seed = junk::Seed {
            ts: pos,
            session: ids.session(&mut rng),
            player: rng.random(),
            country: country_bytes(rng.random_range(0..COUNTRIES.len())),
        };
        let bytes = junk::make(kind, &mut rng, &seed);
        debug_assert_eq!(
            sessionlake_model::parse_line(&bytes).err().map(|rejection| rejection.reason),
            Some(kind.reason()),
            "{kind:?}: {}",
            String::from_utf8_lossy(&bytes)
        );
        records.push(Record { pos, line: Line::Junk(Box::new(JunkLine { reason: kind.reason(), bytes })) });
    }

    // File order: by position, ties in creation order (stable sort), so a
    // duplicate always follows its original.
    records.sort_by_key(|record| record.pos);
    Plan { players, records }
}
