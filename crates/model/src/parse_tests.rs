use super::*;

const START: &str = r#"{"event":"start","ts":"2016-12-02T12:48:05.520022","session_id":"4a0c43c9-c43a-42ff-ba55-67563dfa35d4","player_id":"0a2d12a1a7e145de8bae44c0c6e06629","country":"FI"}"#;
const END: &str = r#"{"event":"end","ts":"2016-12-02T12:49:05.520022","session_id":"4a0c43c9-c43a-42ff-ba55-67563dfa35d4","player_id":"0a2d12a1a7e145de8bae44c0c6e06629"}"#;

fn reason(line: &str) -> RejectReason {
    parse_line(line.as_bytes()).expect_err(line).reason
}

#[test]
fn parses_the_documented_examples() {
    let start = parse_line(START.as_bytes()).unwrap();
    assert_eq!(start.kind, EventKind::Start);
    assert_eq!(start.country_text(), Some("FI"));
    assert_eq!(
        start.unique_id_row(),
        "start-4a0c43c9-c43a-42ff-ba55-67563dfa35d4-2016-12-02T12:48:05.520022-0a2d12a1a7e145de8bae44c0c6e06629-FI"
    );
    assert_eq!(start.player_id_text(), "0a2d12a1a7e145de8bae44c0c6e06629");
    let end = parse_line(END.as_bytes()).unwrap();
    assert_eq!(end.kind, EventKind::End);
    assert_eq!(end.country, None);
    assert_eq!(end.ts_micros - start.ts_micros, 60_000_000);
    assert_eq!(
        end.unique_id_row(),
        "end-4a0c43c9-c43a-42ff-ba55-67563dfa35d4-2016-12-02T12:49:05.520022-0a2d12a1a7e145de8bae44c0c6e06629"
    );
}

#[test]
fn key_order_and_extra_fields_do_not_matter() {
    let line = r#"{"country":"FI","extra":[1,{"a":null}],"player_id":"0a2d12a1a7e145de8bae44c0c6e06629","session_id":"4a0c43c9-c43a-42ff-ba55-67563dfa35d4","ts":"2016-12-02T12:48:05.520022","event":"start"}"#;
    assert_eq!(parse_line(line.as_bytes()).unwrap(), parse_line(START.as_bytes()).unwrap());
}

#[test]
fn country_on_an_end_is_ignored() {
    let line = END.replace(r#""event":"end""#, r#""event":"end","country":"??""#);
    assert_eq!(parse_line(line.as_bytes()).unwrap().country, None);
}

#[test]
fn country_of_any_type_on_an_end_is_ignored() {
    for country in ["358", "{}", r#"["FI"]"#, "true"] {
        let line = END.replace(r#""event":"end""#, &format!(r#""event":"end","country":{country}"#));
        assert_eq!(parse_line(line.as_bytes()).unwrap(), parse_line(END.as_bytes()).unwrap(), "{line}");
    }
    let repeated = END.replace(r#""event":"end""#, r#""event":"end","country":1,"country":2"#);
    assert_eq!(reason(&repeated), RejectReason::InvalidJson);
}

#[test]
fn escaped_strings_still_parse() {
    let line = START.replace(r#""FI""#, r#""\u0046I""#);
    assert_eq!(parse_line(line.as_bytes()).unwrap().country_text(), Some("FI"));
}

#[test]
fn each_bad_input_has_its_reason() {
    assert_eq!(reason(""), RejectReason::EmptyLine);
    assert_eq!(reason("   "), RejectReason::EmptyLine);
    assert_eq!(parse_line(b"{\"event\":\"st\xffart\"}").unwrap_err().reason, RejectReason::InvalidUtf8);
    assert_eq!(reason("{\"event\":"), RejectReason::InvalidJson);
    assert_eq!(reason("not json"), RejectReason::InvalidJson);
    assert_eq!(reason("[1,2]"), RejectReason::NotAnObject);
    assert_eq!(reason("\"start\""), RejectReason::NotAnObject);
    assert_eq!(reason(&START.replace(r#""ts":"2016-12-02T12:48:05.520022","#, "")), RejectReason::MissingField);
    assert_eq!(reason(&START.replace(r#""2016-12-02T12:48:05.520022""#, "null")), RejectReason::MissingField);
    assert_eq!(reason(&START.replace(r#""2016-12-02T12:48:05.520022""#, "1480682885")), RejectReason::WrongType);
    assert_eq!(reason(&START.replace(r#""FI""#, "{}")), RejectReason::WrongType);
    assert_eq!(reason(&START.replace(r#""start""#, r#""pause""#)), RejectReason::UnknownEvent);
    assert_eq!(reason(&START.replace("2016-12-02T12", "2016-12-32T12")), RejectReason::InvalidTs);
    assert_eq!(reason(&START.replace("4a0c43c9-", "4a0c43c9")), RejectReason::InvalidSessionId);
    assert_eq!(reason(&START.replace("0a2d12a1a7e1", "0a2d12a1-7e1")), RejectReason::InvalidPlayerId);
    assert_eq!(reason(&START.replace(r#""FI""#, r#""fi""#)), RejectReason::InvalidCountry);
    assert_eq!(reason(&START.replace(r#","country":"FI""#, "")), RejectReason::MissingField);
    let long = format!("{}{}", START, " ".repeat(MAX_LINE_BYTES));
    assert_eq!(reason(&long), RejectReason::LineTooLong);
}

#[test]
fn first_bad_field_in_check_order_wins() {
    let line = START.replace(r#""start""#, r#""pause""#).replace("2016-12-02T12", "x");
    assert_eq!(reason(&line), RejectReason::UnknownEvent);
}

#[test]
fn a_repeated_key_is_invalid_json() {
    let line = START.replace(r#""event":"start""#, r#""event":"start","event":"start""#);
    assert_eq!(reason(&line), RejectReason::InvalidJson);
}

#[test]
fn messages_quote_values_briefly() {
    let line = START.replace(r#""FI""#, &format!("\"{}\"", "é".repeat(100)));
    let rejection = parse_line(line.as_bytes()).unwrap_err();
    assert!(rejection.message.chars().count() < 140, "{}", rejection.message);
}

#[test]
fn an_array_in_field_order_is_not_an_event() {
    let line = r#"["start","2016-12-02T12:48:05.520022","4a0c43c9-c43a-42ff-ba55-67563dfa35d4","0a2d12a1a7e145de8bae44c0c6e06629","FI"]"#;
    assert_eq!(reason(line), RejectReason::NotAnObject);
    assert_eq!(reason("[null,null,null,null,null]"), RejectReason::NotAnObject);
}
