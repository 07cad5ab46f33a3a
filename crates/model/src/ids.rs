//! Session and player identifiers: strict parsing into 128-bit values and the
//! canonical lowercase text form that the tables store.

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Parses a UUID written 8-4-4-4-12 with dashes (either letter case).
pub fn parse_session_id(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if matches!(index, 8 | 13 | 18 | 23) {
            if byte != b'-' {
                return None;
            }
            continue;
        }
        value = (value << 4) | u128::from(hex_value(byte)?);
    }
    Some(value)
}

/// Parses a player id: exactly 32 hex characters (either letter case).
pub fn parse_player_id(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    bytes.iter().try_fold(0u128, |value, &byte| Some((value << 4) | u128::from(hex_value(byte)?)))
}

/// Canonical session id text: lowercase UUID with dashes.
pub fn format_session_id(value: u128) -> String {
    let mut text = String::with_capacity(36);
    push_session_id(&mut text, value);
    text
}

/// Canonical player id text: 32 lowercase hex characters.
pub fn format_player_id(value: u128) -> String {
    let mut text = String::with_capacity(32);
    push_player_id(&mut text, value);
    text
}

/// Appends [`format_session_id`]'s text to `out`, without allocating: the
/// raw stage writes two ids per event.
pub fn push_session_id(out: &mut String, value: u128) {
    for nibble in 0..32 {
        if matches!(nibble, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(hex_digit(value, nibble));
    }
}

/// Appends [`format_player_id`]'s text to `out`, without allocating.
pub fn push_player_id(out: &mut String, value: u128) {
    for nibble in 0..32 {
        out.push(hex_digit(value, nibble));
    }
}

/// The `nibble`-th hex digit of `value` from the most significant (0..32).
fn hex_digit(value: u128, nibble: u32) -> char {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    char::from(DIGITS[((value >> (124 - 4 * nibble)) & 0xf) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_format_as_lowercase_hex_of_fixed_width() {
        let mut value: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for _ in 0..10_000 {
            let hex = format!("{value:032x}");
            let dashed = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
            assert_eq!(format_player_id(value), hex);
            assert_eq!(format_session_id(value), dashed);
            assert_eq!(parse_session_id(&dashed), Some(value));
            value = value.wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15).wrapping_add(0x9e37);
        }
        assert_eq!(format_player_id(0), "0".repeat(32));
        assert_eq!(format_session_id(u128::MAX), "ffffffff-ffff-ffff-ffff-ffffffffffff");
    }

    #[test]
    fn session_id_round_trips_and_lowercases() {
        let text = "4A0C43C9-c43a-42ff-ba55-67563dfa35d4";
        let value = parse_session_id(text).unwrap();
        assert_eq!(format_session_id(value), text.to_lowercase());
    }

    #[test]
    fn session_id_rejects_bad_shapes() {
        for bad in [
            "",
            "4a0c43c9c43a42ffba5567563dfa35d4",
            "4a0c43c9-c43a-42ff-ba55-67563dfa35dz",
            "4a0c43c9-c43a-42ff-ba5567563dfa35d4-",
        ] {
            assert_eq!(parse_session_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn player_id_round_trips() {
        let text = "0a2d12a1a7e145de8bae44c0c6e06629";
        assert_eq!(format_player_id(parse_player_id(text).unwrap()), text);
        assert_eq!(parse_player_id("0a2d12a1a7e145de8bae44c0c6e0662"), None);
        assert_eq!(parse_player_id("0a2d12a1-7e145de8bae44c0c6e06629"), None);
    }
}
