//! The two vocabularies, embedded: OpenAI's public `.tiktoken` files, gzipped in `rust/core/data/`, inflated
//! and parsed into a [`RankTable`] on first use.
//!
//! A `.tiktoken` file has one token per line, `<base64 of the token's bytes> <rank>`, in rank order from 0.
//! The files are byte-for-byte those tiktoken downloads (a test checks tiktoken's SHA-256 of each), so the
//! ranks are tiktoken's. Only the rank table outlives a load; the inflated text is dropped at once.

use std::io::Read;

use flate2::read::GzDecoder;

use super::rank_table::RankTable;
use super::Encoding;

const O200K_BASE: &[u8] = include_bytes!("../../data/o200k_base.tiktoken.gz");
const CL100K_BASE: &[u8] = include_bytes!("../../data/cl100k_base.tiktoken.gz");

/// The gzipped `.tiktoken` file of `encoding`, as embedded in the binary.
fn embedded(encoding: Encoding) -> &'static [u8] {
    match encoding {
        Encoding::O200kBase => O200K_BASE,
        Encoding::Cl100kBase => CL100K_BASE,
    }
}

/// The rank table of `encoding`, or why its embedded file is unusable.
pub(super) fn load(encoding: Encoding) -> Result<RankTable, String> {
    parse(&inflate(embedded(encoding))?)
}

/// A gzip file's contents. flate2 checks the CRC-32 and length in the gzip trailer, so a damaged file is an
/// error, not a silently different vocabulary.
fn inflate(gz: &[u8]) -> Result<Vec<u8>, String> {
    // The trailer's last 4 bytes are the inflated length (mod 2^32): one allocation of the right size.
    // Capped, so a damaged trailer cannot ask for gigabytes; the cap is far above either file (3.6, 1.7 MB).
    let size = gz
        .last_chunk::<4>()
        .map_or(0, |&bytes| u32::from_le_bytes(bytes) as usize);
    let mut text = Vec::with_capacity(size.min(16 << 20));
    GzDecoder::new(gz)
        .read_to_end(&mut text)
        .map_err(|err| format!("embedded vocabulary is not valid gzip: {err}"))?;
    Ok(text)
}

/// Parses a `.tiktoken` file. Stricter than tiktoken's loader, which would accept a file with ranks out of
/// order, repeated tokens or missing single bytes: the counting code relies on none of those happening.
fn parse(text: &[u8]) -> Result<RankTable, String> {
    let lines = text
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty());
    let line_count = text.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let mut table = RankTable::with_capacity(line_count);
    let mut token = Vec::with_capacity(128);
    for (expected, line) in (0u32..).zip(lines) {
        let at_line =
            |problem: String| format!("vocabulary line {}: {problem}", u64::from(expected) + 1);
        let (encoded, rank) =
            split_line(line).ok_or_else(|| at_line("expected `<base64> <rank>`".to_owned()))?;
        if rank != expected {
            let problem =
                format!("rank {rank}, expected {expected} (ranks are line numbers from 0)");
            return Err(at_line(problem));
        }
        token.clear();
        if decode_base64(encoded, &mut token).is_none() {
            let problem = format!("invalid base64 {:?}", String::from_utf8_lossy(encoded));
            return Err(at_line(problem));
        }
        if !table.insert(&token, rank) {
            return Err(at_line(format!("token {token:?} is empty or repeated")));
        }
    }
    // Byte-level BPE: every byte is a token, so any text splits into tokens. Counting relies on that.
    if let Some(byte) = (0..=u8::MAX).find(|&byte| table.get(&[byte]).is_none()) {
        return Err(format!("byte {byte:#04x} is not a token of the vocabulary"));
    }
    Ok(table)
}

/// `<base64> <rank>` (a trailing `\r` tolerated) -> the base64 text and the rank.
fn split_line(line: &[u8]) -> Option<(&[u8], u32)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let space = line.iter().position(|&byte| byte == b' ')?;
    let (encoded, digits) = (line.get(..space)?, line.get(space + 1..)?);
    if digits.is_empty() {
        return None;
    }
    let mut rank = 0u32;
    for &byte in digits {
        let digit = byte.checked_sub(b'0').filter(|&digit| digit < 10)?;
        rank = rank.checked_mul(10)?.checked_add(u32::from(digit))?;
    }
    Some((encoded, rank))
}

/// Decodes standard base64 with padding (RFC 4648 §4), appending to `out`; `None` if `text` is not that.
fn decode_base64(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    let quads = text.len() / 4;
    for (index, quad) in text.chunks_exact(4).enumerate() {
        // `=` may only end the last quad, once or twice.
        let padding = if index + 1 == quads {
            quad.iter().rev().take_while(|&&byte| byte == b'=').count()
        } else {
            0
        };
        if padding > 2 {
            return None;
        }
        let mut word = 0u32;
        for &byte in quad.get(..4 - padding)? {
            let value = SEXTETS
                .get(usize::from(byte))
                .copied()
                .filter(|&value| value != INVALID)?;
            word = word << 6 | u32::from(value);
        }
        word <<= 6 * padding;
        out.extend_from_slice(word.to_be_bytes().get(1..4 - padding)?);
    }
    Some(())
}

/// Marks a byte outside the base64 alphabet in [`SEXTETS`].
const INVALID: u8 = u8::MAX;

/// Each byte's value as a base64 digit, or [`INVALID`].
const SEXTETS: [u8; 256] = {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [INVALID; 256];
    let mut value = 0;
    while value < ALPHABET.len() {
        table[ALPHABET[value] as usize] = value as u8;
        value += 1;
    }
    table
};

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::tokens::TokenCounter;

    /// tiktoken 0.14's `expected_hash` of each file (tiktoken_ext/openai_public.py): the embedded files are
    /// exactly the ones tiktoken loads, so the ranks are tiktoken's.
    #[test]
    fn embedded_files_are_the_ones_tiktoken_loads() {
        let expected = [
            (
                Encoding::O200kBase,
                "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
            ),
            (
                Encoding::Cl100kBase,
                "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
            ),
        ];
        for (encoding, sha256) in expected {
            let text = inflate(embedded(encoding)).unwrap();
            assert_eq!(format!("{:x}", Sha256::digest(&text)), sha256, "{encoding}");
        }
    }

    #[test]
    fn every_token_has_its_line_number_as_rank() {
        for (encoding, tokens) in [
            (Encoding::O200kBase, 199_998),
            (Encoding::Cl100kBase, 100_256),
        ] {
            let text = inflate(embedded(encoding)).unwrap();
            let table = &TokenCounter::get(encoding).unwrap().ranks;
            let mut seen = 0;
            for (rank, line) in (0..).zip(text.split(|&byte| byte == b'\n')) {
                let Some((encoded, _)) = split_line(line) else {
                    continue;
                };
                let mut token = Vec::new();
                decode_base64(encoded, &mut token).unwrap();
                assert_eq!(table.get(&token), Some(rank), "{encoding} {token:?}");
                seen += 1;
            }
            assert_eq!(seen, tokens, "{encoding}");
        }
    }

    #[test]
    fn known_tokens_have_tiktokens_ranks() {
        // tiktoken 0.14: encode_ordinary("hello world") and a multi-byte token.
        let cases: &[(Encoding, &str, u32)] = &[
            (Encoding::O200kBase, "hello", 24912),
            (Encoding::O200kBase, " world", 2375),
            (Encoding::Cl100kBase, "hello", 15339),
            (Encoding::Cl100kBase, " world", 1917),
            (Encoding::Cl100kBase, "!", 0),
            (Encoding::O200kBase, "!", 0),
        ];
        for &(encoding, token, rank) in cases {
            let table = &TokenCounter::get(encoding).unwrap().ranks;
            assert_eq!(
                table.get(token.as_bytes()),
                Some(rank),
                "{encoding} {token:?}"
            );
        }
    }

    #[test]
    fn base64_decodes_like_the_rfc() {
        // RFC 4648 §10's test vectors, plus bytes that use `+` and `/`.
        let cases: &[(&str, &[u8])] = &[
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg==", b"foob"),
            ("Zm9vYmE=", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
            ("+/8=", &[0xfb, 0xff]),
            ("AA==", &[0]),
        ];
        for &(text, bytes) in cases {
            let mut out = Vec::new();
            assert_eq!(decode_base64(text.as_bytes(), &mut out), Some(()), "{text}");
            assert_eq!(out, bytes, "{text}");
        }
        for bad in [
            "", "Zg", "Zg=", "Z===", "Zg==Zg==", "Zm9v!", "Zm-v", "Zm_v", "====", "Zm 9",
        ] {
            assert_eq!(
                decode_base64(bad.as_bytes(), &mut Vec::new()),
                None,
                "{bad:?}"
            );
        }
    }

    /// A vocabulary of the 256 single bytes in order, then `extra` lines.
    fn vocabulary(extra: &str) -> Vec<u8> {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = String::new();
        for byte in 0..=255u8 {
            let (high, low) = (usize::from(byte >> 2), usize::from(byte & 3) << 4);
            text.push(char::from(ALPHABET[high]));
            text.push(char::from(ALPHABET[low]));
            text.push_str(&format!("== {byte}\n"));
        }
        text.push_str(extra);
        text.into_bytes()
    }

    #[test]
    fn parses_a_well_formed_vocabulary() {
        let table = parse(&vocabulary("aGk= 256\r\naGVsbG8= 257\n\n")).unwrap();
        assert_eq!(table.get(b"\0"), Some(0));
        assert_eq!(table.get(b"A"), Some(65));
        assert_eq!(table.get(b"hi"), Some(256));
        assert_eq!(table.get(b"hello"), Some(257));
        assert_eq!(table.get(b"he"), None);
    }

    #[test]
    fn damaged_vocabularies_are_errors_that_say_where() {
        let cases: &[(&[u8], &str)] = &[
            (
                &vocabulary("aGk= 257\n"),
                "line 257: rank 257, expected 256",
            ),
            (
                &vocabulary("aGk=256\n"),
                "line 257: expected `<base64> <rank>`",
            ),
            (
                &vocabulary("aGk= +256\n"),
                "line 257: expected `<base64> <rank>`",
            ),
            (
                &vocabulary("aGk= 256 x\n"),
                "line 257: expected `<base64> <rank>`",
            ),
            (&vocabulary("aGk 256\n"), "line 257: invalid base64 \"aGk\""),
            (
                &vocabulary("QQ== 256\n"),
                "line 257: token [65] is empty or repeated",
            ),
            (b"AA== 0\n", "byte 0x01 is not a token"),
            (b"", "byte 0x00 is not a token"),
        ];
        for &(text, reason) in cases {
            let err = parse(text).err().unwrap();
            assert!(err.contains(reason), "{err:?} lacks {reason:?}");
        }
    }

    #[test]
    fn damaged_gzip_is_an_error() {
        let gz = embedded(Encoding::Cl100kBase);
        let mut flipped = gz.to_vec();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x55;
        let truncated = &gz[..gz.len() - 100];
        for bad in [b"not gzip".as_slice(), &flipped, truncated] {
            let err = inflate(bad).err().unwrap();
            assert!(
                err.starts_with("embedded vocabulary is not valid gzip"),
                "{err}"
            );
        }
    }
}
