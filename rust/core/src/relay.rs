//! A streamed answer's hot path: server-sent events in, plain text deltas straight out.
//!
//! - [`sse`]: the event-stream decoder (bytes as they arrive in, `(event, data)` pairs out).
//! - [`openai`] and [`anthropic`]: which events of each wire are a plain text delta and nothing else (the
//!   common case), and which need the provider's full parser (tool calls, usage, finish, errors, the end).
//! - [`encode`]: a text delta as the client's message: the protobuf `CompleteChunk{text}`, or an SSE event
//!   built from a template the caller made once per stream.
//!
//! Nothing here decides what an event means beyond "plain text, nothing else": anything in doubt goes to the
//! Python parser, which stays the authority.

/// What an event is to the relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Delta<'a> {
    /// Plain text for the client, and nothing else.
    Text(Cow<'a, str>),
    /// Nothing for the client and nothing the parser would keep (e.g. an empty role-only delta).
    Nothing,
    /// The parser must read this one.
    Parser,
}

/// The wire format of a provider's stream events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions (and every compatible server).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

impl Wire {
    /// The wire named `name` ("openai", "anthropic").
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }

    /// Its name, as [`Wire::named`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    /// What one event's data is to the relay.
    pub fn classify(self, data: &str) -> Delta<'_> {
        match self {
            Self::OpenAi => openai::classify(data),
            Self::Anthropic => anthropic::classify(data),
        }
    }
}

use std::borrow::Cow;

pub mod anthropic;
pub mod encode;
pub mod openai;
pub mod sse;
