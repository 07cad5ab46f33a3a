//! Parsing one line of the input file into an [`Event`] or a [`Rejection`].
//!
//! Good lines take a fast path (serde into borrowed fields). A line that
//! fails it is parsed again as a generic JSON value only to name precisely
//! what is wrong, so the cost of precision is paid by bad lines alone.
//!
//! Fields are checked in a fixed order — `event`, `ts`, `session_id`,
//! `player_id`, then `country` on starts — and the first problem found is
//! the line's reason.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::event::{Event, EventKind};
use crate::ids::{parse_player_id, parse_session_id};
use crate::reject::{RejectReason, Rejection};
use crate::time::parse_ts_micros;

/// Longest line accepted; longer ones are rejected as `line_too_long`.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    player_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    country: Option<Cow<'a, str>>,
}

/// The fast path's shape for an `end`, whose `country` is ignored and so may
/// hold any JSON value. Only whether a line deserializes into it matters: it
/// still fails on a repeated key.
#[derive(Deserialize)]
#[allow(dead_code)]
struct WireEnd {
    event: IgnoredAny,
    ts: IgnoredAny,
    session_id: IgnoredAny,
    player_id: IgnoredAny,
    country: Option<IgnoredAny>,
}

/// A field's text, or why it has none.
type FieldResult<'a> = Result<&'a str, Rejection>;

/// Parses one line (without its line terminator).
pub fn parse_line(line: &[u8]) -> Result<Event, Rejection> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Rejection::new(
            RejectReason::LineTooLong,
            format!("line has {} bytes, more than the limit of {MAX_LINE_BYTES}", line.len()),
        ));
    }
    let text = std::str::from_utf8(line)
        .map_err(|error| Rejection::new(RejectReason::InvalidUtf8, format!("line is not valid UTF-8: {error}")))?;
    if text.trim().is_empty() {
        return Err(Rejection::new(RejectReason::EmptyLine, "line is empty"));
    }
    // serde would also read a struct from a JSON array: only objects may take
    // the fast path.
    let is_object = text.trim_start().starts_with('{');
    match serde_json::from_str::<WireEvent<'_>>(text) {
        Ok(wire) if is_object => validate(
            field_of(wire.event.as_deref(), "event"),
            field_of(wire.ts.as_deref(), "ts"),
            field_of(wire.session_id.as_deref(), "session_id"),
            field_of(wire.player_id.as_deref(), "player_id"),
            field_of(wire.country.as_deref(), "country"),
        ),
        _ => parse_slow(text),
    }
}

fn field_of<'a>(value: Option<&'a str>, name: &str) -> FieldResult<'a> {
    value.ok_or_else(|| Rejection::new(RejectReason::MissingField, format!("field `{name}` is missing or null")))
}

/// The precise path: classify why the fast path failed.
fn parse_slow(text: &str) -> Result<Event, Rejection> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| Rejection::new(RejectReason::InvalidJson, format!("line is not valid JSON: {error}")))?;
    let Value::Object(object) = &value else {
        return Err(Rejection::new(
            RejectReason::NotAnObject,
            format!("line is JSON {} but not an object", json_kind(&value)),
        ));
    };
    let field = |name: &str| -> FieldResult<'_> {
        match object.get(name) {
            None | Some(Value::Null) => field_of(None, name),
            Some(Value::String(text)) => Ok(text.as_str()),
            Some(other) => Err(Rejection::new(
                RejectReason::WrongType,
                format!("field `{name}` is a JSON {}, expected a string", json_kind(other)),
            )),
        }
    };
    let event = validate(field("event"), field("ts"), field("session_id"), field("player_id"), field("country"))?;
    // The fast path reads `country` as a string even on an end, which
    // ignores it: an end whose only fault was a non-string country (e.g.
    // `"country":358`) is a good event, not invalid JSON.
    if event.kind == EventKind::End && serde_json::from_str::<WireEnd>(text).is_ok() {
        return Ok(event);
    }
    // Everything checks out field by field, so the fast path failed for a
    // reason of the document as a whole (e.g. a key given twice).
    Err(Rejection::new(
        RejectReason::InvalidJson,
        format!("line is not a well-formed event object (e.g. a repeated key); would have been {event:?}"),
    ))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn validate(
    event: FieldResult<'_>,
    ts: FieldResult<'_>,
    session_id: FieldResult<'_>,
    player_id: FieldResult<'_>,
    country: FieldResult<'_>,
) -> Result<Event, Rejection> {
    let kind = match event? {
        "start" => EventKind::Start,
        "end" => EventKind::End,
        other => {
            return Err(Rejection::new(
                RejectReason::UnknownEvent,
                format!("event `{}` is neither `start` nor `end`", shorten(other)),
            ));
        }
    };
    let ts = ts?;
    let ts_micros = parse_ts_micros(ts).ok_or_else(|| {
        Rejection::new(RejectReason::InvalidTs, format!("ts `{}` is not an ISO-8601 date-time", shorten(ts)))
    })?;
    let session_text = session_id?;
    let session_id = parse_session_id(session_text).ok_or_else(|| {
        Rejection::new(
            RejectReason::InvalidSessionId,
            format!("session_id `{}` is not a UUID with dashes", shorten(session_text)),
        )
    })?;
    let player_text = player_id?;
    let player_id = parse_player_id(player_text).ok_or_else(|| {
        Rejection::new(
            RejectReason::InvalidPlayerId,
            format!("player_id `{}` is not 32 hex characters", shorten(player_text)),
        )
    })?;
    // Only a start carries the country; one on an end is ignored.
    let country = match kind {
        EventKind::End => None,
        EventKind::Start => Some(parse_country(country?)?),
    };
    Ok(Event { kind, ts_micros, session_id, player_id, country })
}

fn parse_country(text: &str) -> Result<[u8; 2], Rejection> {
    match text.as_bytes() {
        &[first, second] if first.is_ascii_uppercase() && second.is_ascii_uppercase() => Ok([first, second]),
        _ => Err(Rejection::new(
            RejectReason::InvalidCountry,
            format!("country `{}` is not two uppercase letters (ISO 3166-1 alpha-2)", shorten(text)),
        )),
    }
}

/// Values quoted in messages are cut so that a hostile line cannot blow up
/// the message column.
fn shorten(text: &str) -> Cow<'_, str> {
    const LIMIT: usize = 64;
    if text.len() <= LIMIT {
        return Cow::Borrowed(text);
    }
    let cut = (0..=LIMIT).rev().find(|&index| text.is_char_boundary(index)).unwrap_or(0);
    Cow::Owned(format!("{}…", &text[..cut]))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
