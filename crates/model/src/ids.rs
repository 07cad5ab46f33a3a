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
    let hex = format!("{value:032x}");
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Canonical player id text: 32 lowercase hex characters.
pub fn format_player_id(value: u128) -> String {
    format!("{value:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
