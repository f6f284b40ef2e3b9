//! Which Anthropic Messages stream events are a plain text delta and nothing else.
//!
//! The Python parser (`providers/anthropic.py` `StreamParser.feed`) is the authority on every event; this only
//! recognises `content_block_delta` events whose delta is a `text_delta`, which the parser (without a forced
//! answer tool, when the caller relays at all) turns into `Chunk(text=...)` without touching its state.
//! Everything else, including whatever does not deserialize into that shape, is [`Delta::Parser`].

use serde::Deserialize;

use super::Delta;

#[derive(Deserialize)]
struct StreamEvent<'a> {
    #[serde(borrow, rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    delta: TextDelta<'a>,
}

#[derive(Deserialize)]
struct TextDelta<'a> {
    #[serde(borrow, rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// Reads one event's data.
pub fn classify<'a>(data: &'a str) -> Delta<'a> {
    let Ok(event) = serde_json::from_str::<StreamEvent<'a>>(data) else {
        return Delta::Parser;
    };
    if event.kind != "content_block_delta" || event.delta.kind != "text_delta" {
        return Delta::Parser;
    }
    if event.delta.text.is_empty() {
        Delta::Nothing
    } else {
        Delta::Text(event.delta.text)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn text_deltas() {
        let event = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \"x\""}}"#;
        assert_eq!(classify(event), Delta::Text(Cow::Borrowed("Hi \"x\"")));
        let empty =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#;
        assert_eq!(classify(empty), Delta::Nothing);
    }

    #[test]
    fn everything_else_goes_to_the_parser() {
        for event in [
            r#"{"type":"ping"}"#,
            r#"{"type":"message_stop"}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":5}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta"}}"#,
            r#"{"type":"content_block_delta","delta":"x"}"#,
            r#"{"type":"content_block_delta","type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}"#,
            r#"{"type":"error","error":{"type":"overloaded_error"}}"#,
            "[1]",
            "not json",
        ] {
            assert_eq!(classify(event), Delta::Parser, "{event}");
        }
    }
}
