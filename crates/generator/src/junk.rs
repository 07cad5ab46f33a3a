//! Lines that a pipeline must reject, each with exactly one thing wrong so
//! that the rejection reason is known in advance.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sessionlake_model::RejectReason;

use crate::format::{push_hex32, push_session_id, push_ts};

/// A required field of an event line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Event,
    Ts,
    SessionId,
    PlayerId,
    /// Only meaningful on a start.
    Country,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Event => "event",
            Field::Ts => "ts",
            Field::SessionId => "session_id",
            Field::PlayerId => "player_id",
            Field::Country => "country",
        }
    }
}

/// One way of making a bad line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JunkKind {
    TruncatedObject,
    PlainText,
    RepeatedKey,
    JsonArray,
    JsonString,
    JsonNumber,
    BadUtf8,
    Empty,
    Blank,
    Missing(Field),
    Null(Field),
    WrongNumber(Field),
    WrongObject(Field),
    WrongBool(Field),
    UnknownEvent,
    TsImpossible,
    TsWord,
    SessionNoDashes,
    SessionBadHex,
    SessionShort,
    PlayerShort,
    PlayerNonHex,
    PlayerDashes,
    CountryLower,
    CountryThree,
    CountryDigits,
}

const FIELDS: [Field; 5] = [Field::Event, Field::Ts, Field::SessionId, Field::PlayerId, Field::Country];

/// Every kind of bad line (each appears at least once when anomalies are on).
pub(crate) fn all_kinds() -> Vec<JunkKind> {
    let mut kinds = vec![
        JunkKind::TruncatedObject,
        JunkKind::PlainText,
        JunkKind::RepeatedKey,
        JunkKind::JsonArray,
        JunkKind::JsonString,
        JunkKind::JsonNumber,
        JunkKind::BadUtf8,
        JunkKind::Empty,
        JunkKind::Blank,
    ];
    for field in FIELDS {
        kinds.extend([
            JunkKind::Missing(field),
            JunkKind::Null(field),
            JunkKind::WrongNumber(field),
            JunkKind::WrongObject(field),
            JunkKind::WrongBool(field),
        ]);
    }
    kinds.extend([
        JunkKind::UnknownEvent,
        JunkKind::TsImpossible,
        JunkKind::TsWord,
        JunkKind::SessionNoDashes,
        JunkKind::SessionBadHex,
        JunkKind::SessionShort,
        JunkKind::PlayerShort,
        JunkKind::PlayerNonHex,
        JunkKind::PlayerDashes,
        JunkKind::CountryLower,
        JunkKind::CountryThree,
        JunkKind::CountryDigits,
    ]);
    kinds
}

/// The kinds grouped by the reason they produce, in a fixed order.
pub(crate) fn kinds_by_reason() -> Vec<(RejectReason, Vec<JunkKind>)> {
    let mut groups: Vec<(RejectReason, Vec<JunkKind>)> = Vec::new();
    for kind in all_kinds() {
        let reason = kind.reason();
        match groups.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, kinds)) => kinds.push(kind),
            None => groups.push((reason, vec![kind])),
        }
    }
    groups
}

impl JunkKind {
    /// The reason `parse_line` gives for a line of this kind.
    pub(crate) fn reason(self) -> RejectReason {
        match self {
            JunkKind::TruncatedObject | JunkKind::PlainText | JunkKind::RepeatedKey => RejectReason::InvalidJson,
            JunkKind::JsonArray | JunkKind::JsonString | JunkKind::JsonNumber => RejectReason::NotAnObject,
            JunkKind::BadUtf8 => RejectReason::InvalidUtf8,
            JunkKind::Empty | JunkKind::Blank => RejectReason::EmptyLine,
            JunkKind::Missing(_) | JunkKind::Null(_) => RejectReason::MissingField,
            JunkKind::WrongNumber(_) | JunkKind::WrongObject(_) | JunkKind::WrongBool(_) => RejectReason::WrongType,
            JunkKind::UnknownEvent => RejectReason::UnknownEvent,
            JunkKind::TsImpossible | JunkKind::TsWord => RejectReason::InvalidTs,
            JunkKind::SessionNoDashes | JunkKind::SessionBadHex | JunkKind::SessionShort => {
                RejectReason::InvalidSessionId
            }
            JunkKind::PlayerShort | JunkKind::PlayerNonHex | JunkKind::PlayerDashes => RejectReason::InvalidPlayerId,
            JunkKind::CountryLower | JunkKind::CountryThree | JunkKind::CountryDigits => RejectReason::InvalidCountry,
        }
    }

    fn needs_start(self) -> bool {
        matches!(
            self,
            JunkKind::Missing(Field::Country)
                | JunkKind::Null(Field::Country)
                | JunkKind::WrongNumber(Field::Country)
                | JunkKind::WrongObject(Field::Country)
                | JunkKind::WrongBool(Field::Country)
                | JunkKind::CountryLower
                | JunkKind::CountryThree
                | JunkKind::CountryDigits
        )
    }
}

/// What an otherwise good line would have carried.
pub(crate) struct Seed {
    pub ts: i64,
    pub session: u128,
    pub player: u128,
    pub country: [u8; 2],
}

type Pairs = Vec<(&'static str, Vec<u8>)>;

fn quoted(text: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(text.len() + 2);
    value.push(b'"');
    value.extend_from_slice(text);
    value.push(b'"');
    value
}

fn template(seed: &Seed, start: bool) -> Pairs {
    let mut ts = Vec::new();
    push_ts(&mut ts, seed.ts);
    let mut session = Vec::new();
    push_session_id(&mut session, seed.session);
    let mut player = Vec::new();
    push_hex32(&mut player, seed.player);
    let mut pairs: Pairs = vec![
        ("event", quoted(if start { b"start" } else { b"end" })),
        ("ts", quoted(&ts)),
        ("session_id", quoted(&session)),
        ("player_id", quoted(&player)),
    ];
    if start {
        pairs.push(("country", quoted(&seed.country)));
    }
    pairs
}

fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for index in (1..items.len()).rev() {
        let other = rng.random_range(0..=index);
        items.swap(index, other);
    }
}

fn write_pairs(pairs: &Pairs) -> Vec<u8> {
    let mut line = vec![b'{'];
    for (position, (key, value)) in pairs.iter().enumerate() {
        if position > 0 {
            line.push(b',');
        }
        line.push(b'"');
        line.extend_from_slice(key.as_bytes());
        line.extend_from_slice(b"\":");
        line.extend_from_slice(value);
    }
    line.push(b'}');
    line
}

fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

fn set(pairs: &mut Pairs, key: &str, value: Vec<u8>) {
    if let Some(pair) = pairs.iter_mut().find(|(k, _)| *k == key) {
        pair.1 = value;
    }
}

fn value_text(pairs: &Pairs, key: &str) -> Vec<u8> {
    let value = &pairs.iter().find(|(k, _)| *k == key).expect("field in template").1;
    value[1..value.len() - 1].to_vec()
}

/// Builds one bad line (without its `\n`).
pub(crate) fn make(kind: JunkKind, rng: &mut ChaCha8Rng, seed: &Seed) -> Vec<u8> {
    let start = kind.needs_start() || rng.random_bool(0.5);
    let mut pairs = template(seed, start);
    shuffle(rng, &mut pairs);
    let mut session_text = Vec::new();
    push_session_id(&mut session_text, seed.session);
    let mut player_text = Vec::new();
    push_hex32(&mut player_text, seed.player);
    match kind {
        JunkKind::TruncatedObject => {
            let mut line = write_pairs(&pairs);
            let cut = rng.random_range(1..line.len() - 1);
            line.truncate(cut);
            return line;
        }
        JunkKind::PlainText => {
            let mut ts = Vec::new();
            push_ts(&mut ts, seed.ts);
            let ts = String::from_utf8(ts).expect("ascii");
            let session = String::from_utf8(session_text).expect("ascii");
            let player = String::from_utf8(player_text).expect("ascii");
            let line = match rng.random_range(0..4) {
                0 => format!("{ts} INFO session {session} started for player {player}"),
                1 => format!("--- log rotated at {ts} ---"),
                2 => "<html><body><h1>502 Bad Gateway</h1></body></html>".to_string(),
                _ => "connection reset by peer".to_string(),
            };
            return line.into_bytes();
        }
        JunkKind::RepeatedKey => {
            let index = rng.random_range(0..pairs.len());
            let copy = pairs[index].clone();
            let at = rng.random_range(0..=pairs.len());
            pairs.insert(at, copy);
        }
        JunkKind::JsonArray => {
            let line = match rng.random_range(0..3) {
                0 => "[]".to_string(),
                1 => "[1,2,3]".to_string(),
                _ => format!("[{}]", String::from_utf8(write_pairs(&pairs)).expect("ascii")),
            };
            return line.into_bytes();
        }
        JunkKind::JsonString => {
            return match rng.random_range(0..2) {
                0 => b"\"start\"".to_vec(),
                _ => serde_json::to_vec(&String::from_utf8(write_pairs(&pairs)).expect("ascii")).expect("string"),
            };
        }
        JunkKind::JsonNumber => {
            return pick(rng, &["42", "1480682885.520022", "-7", "0"]).as_bytes().to_vec();
        }
        JunkKind::BadUtf8 => {
            let mut line = write_pairs(&pairs);
            let bad: &[u8] = match rng.random_range(0..4) {
                0 => &[0xff],
                1 => &[0xc3, 0x28],
                2 => &[0xed, 0xa0, 0x80],
                _ => &[0x80],
            };
            // Inside the last string value, just before its closing quote.
            let at = line.len() - 2;
            line.splice(at..at, bad.iter().copied());
            return line;
        }
        JunkKind::Empty => return Vec::new(),
        JunkKind::Blank => return pick(rng, &["   ", "\t", " \t "]).as_bytes().to_vec(),
        JunkKind::Missing(field) => pairs.retain(|(key, _)| *key != field.key()),
        JunkKind::Null(field) => set(&mut pairs, field.key(), b"null".to_vec()),
        JunkKind::WrongNumber(field) => {
            set(&mut pairs, field.key(), pick(rng, &["1480682885", "42", "-1.5"]).as_bytes().to_vec());
        }
        JunkKind::WrongObject(field) => {
            set(&mut pairs, field.key(), pick(rng, &["{}", r#"{"value":"x"}"#, "[]"]).as_bytes().to_vec());
        }
        JunkKind::WrongBool(field) => set(&mut pairs, field.key(), pick(rng, &["true", "false"]).as_bytes().to_vec()),
        JunkKind::UnknownEvent => {
            set(&mut pairs, "event", quoted(pick(rng, &["pause", "resume", "heartbeat", "Start", "END"]).as_bytes()));
        }
        JunkKind::TsImpossible => {
            set(&mut pairs, "ts", quoted(pick(rng, &["2016-13-45T99:00:00", "2016-02-30T12:00:00.000000"]).as_bytes()));
        }
        JunkKind::TsWord => {
            set(&mut pairs, "ts", quoted(pick(rng, &["yesterday", "now", "2016-12-02 12:48:05", ""]).as_bytes()));
        }
        JunkKind::SessionNoDashes => {
            let mut text = session_text.clone();
            text.retain(|&b| b != b'-');
            set(&mut pairs, "session_id", quoted(&text));
        }
        JunkKind::SessionBadHex => {
            let mut text = session_text.clone();
            let positions: Vec<usize> = (0..text.len()).filter(|&i| text[i] != b'-').collect();
            let at = positions[rng.random_range(0..positions.len())];
            text[at] = pick(rng, &["g", "z", "x", "q"]).as_bytes()[0];
            set(&mut pairs, "session_id", quoted(&text));
        }
        JunkKind::SessionShort => {
            let mut text = session_text.clone();
            text.truncate(36 - rng.random_range(1..=8));
            set(&mut pairs, "session_id", quoted(&text));
        }
        JunkKind::PlayerShort => {
            let mut text = player_text.clone();
            text.truncate(32 - rng.random_range(1..=8));
            set(&mut pairs, "player_id", quoted(&text));
        }
        JunkKind::PlayerNonHex => {
            let mut text = player_text.clone();
            let at = rng.random_range(0..text.len());
            text[at] = pick(rng, &["g", "z", "x", "q"]).as_bytes()[0];
            set(&mut pairs, "player_id", quoted(&text));
        }
        JunkKind::PlayerDashes => {
            let mut text = Vec::new();
            push_session_id(&mut text, seed.player);
            set(&mut pairs, "player_id", quoted(&text));
        }
        JunkKind::CountryLower => {
            let text = value_text(&pairs, "country").to_ascii_lowercase();
            set(&mut pairs, "country", quoted(&text));
        }
        JunkKind::CountryThree => {
            set(&mut pairs, "country", quoted(pick(rng, &["FIN", "USA", "DEU", "ITA"]).as_bytes()));
        }
        JunkKind::CountryDigits => set(&mut pairs, "country", quoted(pick(rng, &["12", "00", "99"]).as_bytes())),
    }
    write_pairs(&pairs)
}
