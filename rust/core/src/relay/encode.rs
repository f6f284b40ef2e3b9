//! A text delta as the client's message.

/// `tiergate.v1.CompleteChunk{text}`: field 1, length-delimited (the only field a text delta sets).
pub fn complete_chunk(text: &str, out: &mut Vec<u8>) {
    out.clear();
    out.push(0x0A);
    let mut len = text.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(text.as_bytes());
}

/// `prefix`, `text` as a JSON string, `suffix`: an SSE event whose template the caller built once per stream
/// (everything of the event but the text).
pub fn templated(prefix: &[u8], text: &str, suffix: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(prefix);
    json_string(text, out);
    out.extend_from_slice(suffix);
}

/// `text` as a JSON string literal: `"` and `\` escaped, control characters as `\n`, `\t`... or `\u00XX`;
/// everything else as its UTF-8 bytes (what orjson writes).
pub fn json_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0F)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_text_field() {
        let mut out = Vec::new();
        complete_chunk("Hi", &mut out);
        assert_eq!(out, b"\x0a\x02Hi");
        let long = "x".repeat(300);
        complete_chunk(&long, &mut out);
        assert_eq!(&out[..3], b"\x0a\xac\x02");
        assert_eq!(out.len(), 303);
    }

    #[test]
    fn json_strings() {
        let mut out = Vec::new();
        json_string("a\"b\\c\n\u{1}\u{e9}", &mut out);
        assert_eq!(
            String::from_utf8(out).ok().as_deref(),
            Some(r#""a\"b\\c\n\u0001é""#)
        );
    }

    #[test]
    fn template() {
        let mut out = Vec::new();
        templated(b"data: {\"c\":", "x", b"}\n\n", &mut out);
        assert_eq!(out, b"data: {\"c\":\"x\"}\n\n");
    }
}
