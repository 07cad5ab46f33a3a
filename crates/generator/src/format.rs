//! Writing lines in the file's exact text format, without serde, fast.

use chrono::{DateTime, Datelike, Timelike};
use sessionlake_model::EventKind;

use crate::plan::{Player, ValidLine};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Factorials up to 6!, for decoding a key-order number.
const FACTORIAL: [usize; 7] = [1, 1, 2, 6, 24, 120, 720];

/// Number of distinct key orders a line's `order` number selects among
/// (any order is reduced modulo the line's own `n!`).
pub(crate) const ORDER_CHOICES: u16 = 720;

/// Extra, unknown fields that a valid line may carry (index 1..=len).
const EXTRA_FIELDS: [&str; 4] = [
    r#""client_version":"1.4.2""#,
    r#""platform":"android""#,
    r#""seq":12345"#,
    r#""meta":{"ab_group":"b","tags":[1,null,true]}"#,
];

/// How many extra-field variants exist.
pub(crate) const EXTRA_VARIANTS: u8 = EXTRA_FIELDS.len() as u8;

/// Appends 32 lowercase hex digits of `value`.
pub(crate) fn push_hex32(buf: &mut Vec<u8>, value: u128) {
    for index in (0..32).rev() {
        buf.push(HEX[((value >> (index * 4)) & 0xf) as usize]);
    }
}

/// Appends the canonical session id text (8-4-4-4-12, lowercase).
pub(crate) fn push_session_id(buf: &mut Vec<u8>, value: u128) {
    for index in (0..32).rev() {
        if matches!(index, 23 | 19 | 15 | 11) {
            buf.push(b'-');
        }
        buf.push(HEX[((value >> (index * 4)) & 0xf) as usize]);
    }
}

fn push_digits(buf: &mut Vec<u8>, value: u32, width: u32) {
    for position in (0..width).rev() {
        buf.push(b'0' + ((value / 10u32.pow(position)) % 10) as u8);
    }
}

/// Appends `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC, no offset).
pub(crate) fn push_ts(buf: &mut Vec<u8>, micros: i64) {
    let datetime = DateTime::from_timestamp_micros(micros).expect("ts in range").naive_utc();
    push_digits(buf, datetime.year() as u32, 4);
    buf.push(b'-');
    push_digits(buf, datetime.month(), 2);
    buf.push(b'-');
    push_digits(buf, datetime.day(), 2);
    buf.push(b'T');
    push_digits(buf, datetime.hour(), 2);
    buf.push(b':');
    push_digits(buf, datetime.minute(), 2);
    buf.push(b':');
    push_digits(buf, datetime.second(), 2);
    buf.push(b'.');
    push_digits(buf, micros.rem_euclid(1_000_000) as u32, 6);
}

/// The `n` field slots of a line in the order selected by `order`.
pub(crate) fn key_order(n: usize, order: u16) -> ([usize; 6], usize) {
    let mut available = [0usize, 1, 2, 3, 4, 5];
    let mut remaining = n;
    let mut code = usize::from(order) % FACTORIAL[n];
    let mut out = [0usize; 6];
    for slot in out.iter_mut().take(n) {
        let factor = FACTORIAL[remaining - 1];
        let pick = code / factor;
        code %= factor;
        *slot = available[pick];
        available.copy_within(pick + 1..remaining, pick);
        remaining -= 1;
    }
    (out, n)
}

/// Appends one valid event line (with its `\n`).
pub(crate) fn push_valid_line(buf: &mut Vec<u8>, line: &ValidLine, players: &[Player]) {
    let player = &players[line.player as usize];
    // Slots: 0 event, 1 ts, 2 session_id, 3 player_id, then country (starts
    // only) and the extra field (when any), in that order of slot numbers.
    let mut slots: [u8; 6] = [0, 1, 2, 3, 0, 0];
    let mut n = 4;
    if line.kind == EventKind::Start {
        slots[n] = 4;
        n += 1;
    }
    if line.extra > 0 {
        slots[n] = 5;
        n += 1;
    }
    let (order, n) = key_order(n, line.order);
    buf.push(b'{');
    for (position, &slot) in order.iter().take(n).enumerate() {
        if position > 0 {
            buf.push(b',');
        }
        match slots[slot] {
            0 => {
                buf.extend_from_slice(b"\"event\":\"");
                buf.extend_from_slice(line.kind.as_str().as_bytes());
                buf.push(b'"');
            }
            1 => {
                buf.extend_from_slice(b"\"ts\":\"");
                push_ts(buf, line.ts);
                buf.push(b'"');
            }
            2 => {
                buf.extend_from_slice(b"\"session_id\":\"");
                push_session_id(buf, line.session);
                buf.push(b'"');
            }
            3 => {
                buf.extend_from_slice(b"\"player_id\":\"");
                push_hex32(buf, player.id);
                buf.push(b'"');
            }
            4 => {
                buf.extend_from_slice(b"\"country\":\"");
                buf.extend_from_slice(&player.country);
                buf.push(b'"');
            }
            _ => buf.extend_from_slice(EXTRA_FIELDS[usize::from(line.extra - 1) % EXTRA_FIELDS.len()].as_bytes()),
        }
    }
    buf.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionlake_model::ids::{format_player_id, format_session_id};
    use sessionlake_model::time::format_ts_micros;

    #[test]
    fn writers_match_the_model_formatters() {
        let session = 0x4a0c43c9_c43a_42ff_ba55_67563dfa35d4u128;
        let mut buf = Vec::new();
        push_session_id(&mut buf, session);
        assert_eq!(String::from_utf8(buf).unwrap(), format_session_id(session));
        let mut buf = Vec::new();
        push_hex32(&mut buf, 0xabc);
        assert_eq!(String::from_utf8(buf).unwrap(), format_player_id(0xabc));
        for micros in [1_480_682_885_520_022i64, 1_480_682_885_000_000, 1_420_070_400_000_001] {
            let mut buf = Vec::new();
            push_ts(&mut buf, micros);
            assert_eq!(String::from_utf8(buf).unwrap(), format_ts_micros(micros));
        }
    }

    #[test]
    fn key_orders_are_permutations_and_all_reachable() {
        let mut seen = std::collections::BTreeSet::new();
        for order in 0..ORDER_CHOICES {
            let (slots, n) = key_order(5, order);
            let mut sorted = slots[..n].to_vec();
            seen.insert(sorted.clone());
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        }
        assert_eq!(seen.len(), 120);
    }
}
