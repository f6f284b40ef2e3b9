//! The WHATWG event-stream format, the subset providers use: lines end in LF, CRLF or CR; `data` lines of
//! one event are joined with "\n"; `event` names it ("message" when absent); comments and other fields
//! (`id`, `retry`, unknown ones) are ignored; an event without data is not dispatched. A CR at the end of a
//! piece may be the first half of a CRLF, so it waits for the next piece. Invalid UTF-8 is replaced.

use std::collections::VecDeque;

/// A line longer than this (no terminator yet) is not an event stream a provider would send.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
}

/// A line of the stream grew past [`MAX_LINE_BYTES`] without ending.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an event-stream line over {MAX_LINE_BYTES} bytes")]
pub struct LineTooLong;

/// Accumulates an event's fields until its blank line; keeps the decoded events in order until taken.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
    event: String,
    data: Vec<String>,
    ready: VecDeque<Event>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next piece of the body; the events its complete lines finish join [`Decoder::ready`].
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), LineTooLong> {
        self.pending.extend_from_slice(piece);
        let buf = std::mem::take(&mut self.pending);
        // A CR as the very last byte may be half of a CRLF: leave it for the next piece.
        let end = if buf.last() == Some(&b'\r') {
            buf.len() - 1
        } else {
            buf.len()
        };
        let mut start = 0;
        let mut i = 0;
        while i < end {
            match buf[i] {
                b'\n' => {
                    self.line(&buf[start..i]);
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    self.line(&buf[start..i]);
                    i += if buf.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                    start = i;
                }
                _ => i += 1,
            }
        }
        let rest = &buf[start.min(buf.len())..];
        if rest.len() > MAX_LINE_BYTES {
            self.pending = Vec::new();
            return Err(LineTooLong);
        }
        self.pending = rest.to_vec();
        Ok(())
    }

    /// Takes one line without its terminator.
    pub fn feed_line(&mut self, line: &str) {
        if line.is_empty() {
            self.flush();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "data" => self.data.push(value.to_owned()),
            "event" => value.clone_into(&mut self.event),
            _ => {}
        }
    }

    /// Completes the pending event (a blank line, or the end of the stream).
    pub fn flush(&mut self) {
        if self.data.is_empty() {
            self.event.clear();
            return;
        }
        let event = if self.event.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.event)
        };
        let data = self.data.join("\n");
        self.data.clear();
        self.ready.push_back(Event { event, data });
    }

    /// The decoded events not taken yet, oldest first.
    pub fn ready(&mut self) -> &mut VecDeque<Event> {
        &mut self.ready
    }

    fn line(&mut self, raw: &[u8]) {
        let line = String::from_utf8_lossy(raw);
        self.feed_line(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(pieces: &[&[u8]]) -> Vec<(String, String)> {
        let mut decoder = Decoder::new();
        for piece in pieces {
            decoder.feed(piece).ok();
        }
        decoder
            .ready()
            .drain(..)
            .map(|e| (e.event, e.data))
            .collect()
    }

    fn msg(data: &str) -> (String, String) {
        ("message".to_owned(), data.to_owned())
    }

    #[test]
    fn line_ends_and_pieces() {
        assert_eq!(decode(&[b"data: x\r\n\r\n"]), vec![msg("x")]);
        assert_eq!(decode(&[b"data: x\r\r", b"d"]), vec![msg("x")]);
        assert_eq!(decode(&[b"data: x\r", b"\n\r\n"]), vec![msg("x")]);
        assert_eq!(decode(&[b"data: x\r", b"\r", b"\n"]), vec![msg("x")]);
        assert_eq!(decode(&[b"da", b"ta: x", b"\n", b"\n"]), vec![msg("x")]);
        assert_eq!(
            decode(&[b"data: caf\xc3", b"\xa9\n\n"]),
            vec![msg("caf\u{e9}")]
        );
        assert_eq!(decode(&[b"data: a\ndata: b\n\n"]), vec![msg("a\nb")]);
        assert_eq!(decode(&[b"event: a\n\ndata: x\n\n"]), vec![msg("x")]);
        assert_eq!(
            decode(&[b"event: ping\ndata: {}\n\n"]),
            vec![("ping".to_owned(), "{}".to_owned())]
        );
    }

    #[test]
    fn long_line_fails() {
        let mut decoder = Decoder::new();
        let big = vec![b'a'; MAX_LINE_BYTES + 1];
        assert_eq!(decoder.feed(&big), Err(LineTooLong));
    }
}
