//! Which OpenAI Chat Completions stream events are a plain text delta and nothing else.
//!
//! The Python parser (`providers/openai.py` `StreamParser.feed`) is the authority on every event; this only
//! recognises the common one it would turn into `Chunk(text=...)` without touching its state — an object
//! whose `error` and `usage` are absent or null, whose `choices[0]` has no `finish_reason` and whose delta
//! has only `content` (no refusal, no tool calls) — and the ones it would ignore. Anything else, including
//! whatever does not deserialize into that shape, is [`Delta::Parser`]: hand it to the parser.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Delta;

/// The stream's last event.
pub const DONE: &str = "[DONE]";

#[derive(Deserialize)]
struct StreamEvent<'a> {
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    choices: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    delta: Option<TextDelta<'a>>,
}

#[derive(Deserialize)]
struct TextDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
}

/// Reads one event's data. `Option<&RawValue>` is None for an absent field and for `null` alike.
pub fn classify<'a>(data: &'a str) -> Delta<'a> {
    if data == DONE {
        return Delta::Parser;
    }
    let Ok(event) = serde_json::from_str::<StreamEvent<'a>>(data) else {
        return Delta::Parser;
    };
    if event.error.is_some() || event.usage.is_some() {
        return Delta::Parser;
    }
    let Some(first) = event
        .choices
        .as_ref()
        .and_then(|choices| choices.first().copied())
    else {
        return Delta::Parser; // no choices: rare (a usage-only event has usage), let the parser see it
    };
    let Ok(choice) = serde_json::from_str::<Choice<'a>>(first.get()) else {
        return Delta::Parser;
    };
    if choice.finish_reason.is_some() {
        return Delta::Parser;
    }
    let Some(delta) = choice.delta else {
        return Delta::Nothing;
    };
    if delta.refusal.as_deref().is_some_and(|r| !r.is_empty()) {
        return Delta::Parser;
    }
    if delta
        .tool_calls
        .is_some_and(|calls| calls.get().trim() != "[]")
    {
        return Delta::Parser;
    }
    match delta.content {
        Some(text) if !text.is_empty() => Delta::Text(text),
        _ => Delta::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Delta<'static> {
        Delta::Text(Cow::Owned(s.to_owned()))
    }

    #[test]
    fn plain_text_deltas() {
        let event = r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null,"logprobs":null}],"usage":null}"#;
        assert_eq!(classify(event), text("Hi"));
        assert_eq!(
            classify(r#"{"choices":[{"delta":{"content":"a\"b\u00e9\n"}}]}"#),
            text("a\"b\u{e9}\n")
        );
        assert_eq!(
            classify(r#"{"choices":[{"delta":{"content":"x","tool_calls":[]}}]}"#),
            text("x")
        );
        assert_eq!(
            classify(r#"{"choices":[{"delta":{"content":"x","refusal":null}}]}"#),
            text("x")
        );
    }

    #[test]
    fn nothing_for_the_client() {
        assert_eq!(
            classify(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#),
            Delta::Nothing
        );
        assert_eq!(
            classify(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            Delta::Nothing
        );
        assert_eq!(classify(r#"{"choices":[{"index":0}]}"#), Delta::Nothing);
    }

    #[test]
    fn everything_else_goes_to_the_parser() {
        for event in [
            "[DONE]",
            "not json",
            "[1]",
            r#"{"error":{"message":"boom"}}"#,
            r#"{"error":false,"choices":[{"delta":{"content":"x"}}]}"#,
            r#"{"usage":{"prompt_tokens":1},"choices":[]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":"x"}"#,
            r#"{"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"delta":{"refusal":"no"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
            r#"{"choices":[{"delta":{"content":5}}]}"#,
            r#"{"choices":[{"delta":"x"}]}"#,
            r#"{"choices":[{"delta":{"content":"x","content":"y"}}]}"#,
        ] {
            assert_eq!(classify(event), Delta::Parser, "{event}");
        }
    }
}
