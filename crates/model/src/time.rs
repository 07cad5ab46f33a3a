//! Event timestamps: the file's ISO-8601 format, as microseconds since the
//! Unix epoch (UTC), and the day number that Delta stores for a `date`.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]`, read as UTC, or the same with a
/// `Z` or `±HH:MM` offset, converted to UTC. Fractions beyond microseconds
/// are truncated. The UTC instant must fall in the years the format can
/// write (0000 to 9999). Returns microseconds since the epoch.
pub fn parse_ts_micros(text: &str) -> Option<i64> {
    // The common case (no offset) is checked by hand: it is ~10x faster than
    // chrono's format-string parser and stricter about the shape.
    let bytes = text.as_bytes();
    if bytes.len() < 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes[range].iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
    };
    let date = NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    let mut rest = &bytes[19..];
    let mut micros: u32 = 0;
    if let [b'.', tail @ ..] = rest {
        let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for (position, digit) in tail[..digits.min(6)].iter().enumerate() {
            micros += u32::from(digit - b'0') * 10u32.pow(5 - position as u32);
        }
        rest = &tail[digits..];
    }
    let local = date.and_hms_micro_opt(number(11..13)?, number(14..16)?, number(17..19)?, micros)?;
    let utc = match rest {
        [] => local.and_utc(),
        [b'Z'] | [b'z'] => local.and_utc(),
        _ => {
            // An explicit offset: let chrono validate and apply it. An offset
            // can carry the instant out of the four-digit years (e.g.
            // `9999-12-31T23:30:00-01:00` is year 10000 in UTC): such a ts
            // cannot be written back in the file's format, and its EVENT_DATE
            // partition (`+10000-01-01`) broke every later `sessions` run
            // (delta-rs could not find the change-data file it wrote), so it
            // does not parse.
            let utc = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
            if !(0..=9999).contains(&utc.year()) {
                return None;
            }
            utc
        }
    };
    Some(utc.timestamp_micros())
}

/// The UTC day (days since 1970-01-01) of a timestamp in microseconds.
pub fn day_of_micros(micros: i64) -> i32 {
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// The calendar date of a day number.
pub fn date_of_day(day: i32) -> NaiveDate {
    DateTime::from_timestamp(i64::from(day) * 86_400, 0).expect("day in range").date_naive()
}

/// The day number of a calendar date (the inverse of [`date_of_day`]).
pub fn day_of_date(date: NaiveDate) -> i32 {
    (date - DateTime::UNIX_EPOCH.date_naive()).num_days() as i32
}

/// Formats microseconds as the file's format (`2016-12-02T12:48:05.520022`).
pub fn format_ts_micros(micros: i64) -> String {
    let mut text = String::with_capacity(26);
    push_ts_micros(&mut text, micros);
    text
}

/// Appends [`format_ts_micros`]'s text to `out`, with the digits written
/// directly rather than through a strftime pattern parsed per call (the raw
/// stage formats one per event).
pub fn push_ts_micros(out: &mut String, micros: i64) {
    let datetime: NaiveDateTime = DateTime::from_timestamp_micros(micros).expect("ts in range").naive_utc();
    if !(0..=9999).contains(&datetime.year()) {
        // Outside what the file format writes (parsing refuses it); chrono
        // signs such years.
        out.push_str(&datetime.format("%Y-%m-%dT%H:%M:%S%.6f").to_string());
        return;
    }
    let fields = [
        (datetime.year() as u32, 4, '-'),
        (datetime.month(), 2, '-'),
        (datetime.day(), 2, 'T'),
        (datetime.hour(), 2, ':'),
        (datetime.minute(), 2, ':'),
        (datetime.second(), 2, '.'),
    ];
    for (value, width, separator) in fields {
        push_digits(out, value, width);
        out.push(separator);
    }
    push_digits(out, micros.rem_euclid(1_000_000) as u32, 6);
}

/// Appends `value`'s last `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_file_format() {
        let micros = parse_ts_micros("2016-12-02T12:48:05.520022").unwrap();
        assert_eq!(format_ts_micros(micros), "2016-12-02T12:48:05.520022");
        assert_eq!(date_of_day(day_of_micros(micros)).to_string(), "2016-12-02");
    }

    #[test]
    fn formats_as_chrono_does_across_the_years_the_format_writes() {
        let chrono = |micros: i64| {
            DateTime::from_timestamp_micros(micros).unwrap().naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
        };
        let first = parse_ts_micros("0000-01-01T00:00:00").unwrap();
        let last = parse_ts_micros("9999-12-31T23:59:59.999999").unwrap();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..100_000u64 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let micros = match step {
                0 => first,
                1 => last,
                2 => 0,
                3 => -1,
                _ => first + (state % (last - first + 1) as u64) as i64,
            };
            assert_eq!(format_ts_micros(micros), chrono(micros), "{micros}");
        }
        assert_eq!(format_ts_micros(-1), "1969-12-31T23:59:59.999999");
    }

    #[test]
    fn fraction_is_optional_and_truncated_to_micros() {
        assert_eq!(parse_ts_micros("2016-12-02T12:48:05"), Some(1_480_682_885_000_000));
        assert_eq!(parse_ts_micros("2016-12-02T12:48:05.5"), Some(1_480_682_885_500_000));
        assert_eq!(parse_ts_micros("2016-12-02T12:48:05.123456789"), Some(1_480_682_885_123_456));
    }

    #[test]
    fn offsets_convert_to_utc() {
        assert_eq!(parse_ts_micros("2016-12-02T12:48:05Z"), parse_ts_micros("2016-12-02T12:48:05"));
        assert_eq!(parse_ts_micros("2016-12-02T14:48:05+02:00"), parse_ts_micros("2016-12-02T12:48:05"));
    }

    #[test]
    fn rejects_what_does_not_parse() {
        for bad in [
            "",
            "yesterday",
            "2016-13-02T12:48:05",
            "2016-02-30T12:48:05",
            "2016-12-02 12:48:05",
            "2016-12-02T25:00:00",
            "2016-12-02T12:48:05.",
            "2016-12-02T12:48:05+0200x",
            "9999-12-31T23:30:00-01:00",
            "0000-01-01T00:30:00+01:00",
        ] {
            assert_eq!(parse_ts_micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_before_epoch_round_down() {
        assert_eq!(day_of_micros(-1), -1);
        assert_eq!(day_of_micros(0), 0);
    }
}
