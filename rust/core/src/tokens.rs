//! Exact token counts for OpenAI's `o200k_base` and `cl100k_base`, identical to tiktoken's
//! `len(encode_ordinary(text))`, computed without building token vectors.
//!
//! Counting has the same two stages as tiktoken:
//!
//! 1. **Pre-tokenisation**: the encoding's split regex cuts the text into pieces. tiktoken's patterns use a
//!    negative look-ahead (`\s+(?!\S)`) that linear-time engines cannot express, so the regex here ends in
//!    a plain `\s+` alternative whose match is shortened afterwards (see `Splitter::piece_end`).
//! 2. **Byte-pair merging** per piece: a piece that is itself a token counts 1 (tiktoken's shortcut, which
//!    is part of its semantics, not just an optimisation); otherwise the adjacent pair with the lowest rank
//!    is merged repeatedly, the leftmost pair winning ties, and the parts left at the end are the tokens.
//!
//! The vocabularies are OpenAI's public `.tiktoken` files, embedded gzipped and parsed on first use into a
//! rank table (`tokens/vocab.rs`, `tokens/rank_table.rs`). Merging allocates nothing per token: pieces up to
//! `SMALL_PIECE` bytes (almost all of them in real text) merge in fixed-size arrays on the stack, longer ones
//! with a heap over a linked list, O(n log n).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

use self::rank_table::{RankTable, NO_RANK};

mod rank_table;
mod vocab;

/// A tokenizer vocabulary whose counts match tiktoken's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, GPT-5, o-series.
    O200kBase,
    /// GPT-4, GPT-3.5-turbo, text-embedding-3.
    Cl100kBase,
}

impl Encoding {
    /// Every supported encoding, in the order error messages list them.
    pub const ALL: [Encoding; 2] = [Encoding::O200kBase, Encoding::Cl100kBase];

    /// The name tiktoken uses for this encoding.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    /// Looks an encoding up by its tiktoken name.
    pub fn from_name(name: &str) -> Result<Self, TokenError> {
        Self::ALL
            .into_iter()
            .find(|encoding| encoding.name() == name)
            .ok_or_else(|| TokenError::UnknownEncoding {
                name: name.to_owned(),
            })
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = TokenError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name)
    }
}

/// Why a token count could not be produced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The name is not one of [`Encoding::ALL`].
    #[error("unknown encoding {name:?}; known encodings: {}", known_encodings())]
    UnknownEncoding { name: String },
    /// The encoding's split regex did not build or its embedded vocabulary did not parse. Both are
    /// constants, so this is a bug in this module (its unit tests load both encodings), reported instead of
    /// panicking.
    #[error("encoding {encoding} could not be initialised: {reason}")]
    Init { encoding: Encoding, reason: String },
}

fn known_encodings() -> String {
    Encoding::ALL.map(Encoding::name).join(", ")
}

/// Counts the tokens of `text` in `encoding`, exactly as tiktoken's `len(encode_ordinary(text))`.
///
/// The first call per encoding loads its vocabulary (about 50 ms and 14 MB for o200k_base, 25 ms and 7 MB
/// for cl100k_base on the 2-core dev machines); later calls only count.
pub fn count_tokens(text: &str, encoding: Encoding) -> Result<usize, TokenError> {
    Ok(TokenCounter::get(encoding)?.count(text))
}

/// A loaded encoding: its split regex and a rank table. Shared, immutable, `Send + Sync`.
pub struct TokenCounter {
    splitter: Splitter,
    ranks: RankTable,
}

static O200K_BASE: OnceLock<Result<TokenCounter, TokenError>> = OnceLock::new();
static CL100K_BASE: OnceLock<Result<TokenCounter, TokenError>> = OnceLock::new();

impl TokenCounter {
    /// The process-wide counter of `encoding`, loaded on first use (tens of milliseconds, see
    /// [`count_tokens`]; concurrent first callers wait for one load).
    pub fn get(encoding: Encoding) -> Result<&'static TokenCounter, TokenError> {
        Self::cell(encoding)
            .get_or_init(|| Self::load(encoding))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether [`TokenCounter::get`] would return at once: lets a caller holding a lock it should not hold
    /// across the first load (Python's GIL) release it only when needed.
    pub fn is_loaded(encoding: Encoding) -> bool {
        Self::cell(encoding).get().is_some()
    }

    fn cell(encoding: Encoding) -> &'static OnceLock<Result<TokenCounter, TokenError>> {
        match encoding {
            Encoding::O200kBase => &O200K_BASE,
            Encoding::Cl100kBase => &CL100K_BASE,
        }
    }

    fn load(encoding: Encoding) -> Result<Self, TokenError> {
        let split = match encoding {
            Encoding::O200kBase => SplitPattern::O200K_BASE,
            Encoding::Cl100kBase => SplitPattern::CL100K_BASE,
        };
        let init_error = |reason: String| TokenError::Init { encoding, reason };
        let splitter = Splitter::new(&split).map_err(|err| init_error(err.to_string()))?;
        let ranks = vocab::load(encoding).map_err(init_error)?;
        Ok(Self { splitter, ranks })
    }

    /// The number of tokens tiktoken's `encode_ordinary` would produce for `text`.
    pub fn count(&self, text: &str) -> usize {
        let mut total = 0;
        self.splitter.for_each_piece(text, |piece| {
            total += self.count_piece(piece);
        });
        total
    }

    fn count_piece(&self, piece: &[u8]) -> usize {
        // Every single byte is a token, and tiktoken counts a piece that is a token as one, whatever
        // merging it would otherwise have produced.
        if piece.len() <= 1 {
            return piece.len();
        }
        if self.ranks.get(piece).is_some() {
            return 1;
        }
        if piece.len() <= SMALL_PIECE {
            merge_small(&self.ranks, piece)
        } else {
            merge_large(&self.ranks, piece)
        }
    }
}

// --- pre-tokenisation -------------------------------------------------------------------------------------

/// An encoding's split regex, rewritten for a linear-time engine: `main` holds every alternative of tiktoken's
/// pattern before `\s+(?!\S)`; `\s+(?!\S)|\s+` (o200k) or `\s+(?!\S)|\s` (cl100k) become one trailing `\s+`.
struct SplitPattern {
    main: &'static str,
}

impl SplitPattern {
    /// tiktoken 0.14's `o200k_base` pattern, minus its last two alternatives.
    const O200K_BASE: SplitPattern = SplitPattern {
        main: concat!(
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"|\p{N}{1,3}",
            r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
            r"|\s*[\r\n]+",
        ),
    };

    /// tiktoken 0.14's `cl100k_base` pattern, minus its last two alternatives. Its possessive quantifiers are
    /// dropped: each is followed by nothing it could give a character back to, so they never change a match.
    /// Note `\s+$` before `\s*[\r\n]`: a trailing whitespace run is one piece even when it holds a newline.
    const CL100K_BASE: SplitPattern = SplitPattern {
        main: concat!(
            r"'(?i:[sdmt]|ll|ve|re)",
            r"|[^\r\n\p{L}\p{N}]?\p{L}+",
            r"|\p{N}{1,3}",
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*",
            r"|\s+$",
            r"|\s*[\r\n]",
        ),
    };
}

/// The pattern id of the trailing `\s+` alternative in [`Splitter::regex`].
const WHITESPACE_PATTERN: usize = 1;

struct Splitter {
    /// Pattern 0 is [`SplitPattern::main`], pattern 1 is `\s+`; leftmost-first, so pattern 0 wins when both
    /// match, exactly as the alternation order does in tiktoken's backtracking regex.
    regex: Regex,
}

impl Splitter {
    fn new(pattern: &SplitPattern) -> Result<Self, Box<regex_automata::meta::BuildError>> {
        let regex = Regex::new_many(&[pattern.main, r"\s+"]).map_err(Box::new)?;
        Ok(Self { regex })
    }

    /// Calls `f` with each piece of `text`, in order; the pieces concatenate to `text`.
    fn for_each_piece<'t>(&self, text: &'t str, mut f: impl FnMut(&'t [u8])) {
        let bytes = text.as_bytes();
        let mut input = Input::new(text).anchored(Anchored::Yes);
        let mut start = 0;
        while start < bytes.len() {
            input.set_start(start);
            // Only the end is needed (the start is anchored), which spares the engine a reverse scan.
            let end = match self.regex.search_half(&input) {
                Some(m) if m.offset() > start => {
                    Self::piece_end(text, start, m.offset(), m.pattern().as_usize())
                }
                // Unreachable: every character is a letter, a number, whitespace or something else, and
                // each of those starts some alternative. Taking one character keeps the loop finite.
                _ => next_char_boundary(text, start),
            };
            if let Some(piece) = bytes.get(start..end) {
                f(piece);
            }
            start = end;
        }
    }

    /// Emulates tiktoken's `\s+(?!\S)` alternative on a match of the plain `\s+` one. Reaching it means every
    /// earlier alternative failed, so `start..end` is a whole whitespace run without `\r`/`\n`. At the end of
    /// the text the look-ahead holds for the whole run; before a non-space it holds once the run gives back
    /// its last character, unless that leaves nothing, in which case the final alternative takes the single
    /// character.
    fn piece_end(text: &str, start: usize, end: usize, pattern: usize) -> usize {
        if pattern != WHITESPACE_PATTERN || end == text.len() {
            return end;
        }
        let last_len = text
            .get(start..end)
            .and_then(|run| run.chars().next_back())
            .map_or(0, char::len_utf8);
        if end - last_len > start {
            end - last_len
        } else {
            end
        }
    }
}

fn next_char_boundary(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|rest| rest.chars().next())
        .map_or(text.len(), |c| at + c.len_utf8())
}

// --- byte-pair merging ------------------------------------------------------------------------------------

/// Pieces up to this many bytes are merged in stack arrays with linear scans (quadratic in the piece, as
/// tiktoken's own merge): cheap for the words and numbers that make up nearly all pieces, and the arrays
/// stay under 400 bytes. Longer pieces (a run of CJK without punctuation, a repeated character) go to
/// [`merge_large`], whose cost grows as n log n.
const SMALL_PIECE: usize = 64;

/// Counts the tokens of a piece of 2..=[`SMALL_PIECE`] bytes. `bounds[0..=parts]` are the part boundaries;
/// `pair_rank[i]` is the rank of parts `i` and `i + 1` joined, or [`NO_RANK`].
fn merge_small(ranks: &RankTable, piece: &[u8]) -> usize {
    if piece.len() < 2 {
        return piece.len();
    }
    let mut bounds = [0u8; SMALL_PIECE + 1];
    let mut pair_rank = [NO_RANK; SMALL_PIECE];
    let mut parts = piece.len().min(SMALL_PIECE);
    for (i, bound) in bounds.iter_mut().enumerate().take(parts + 1) {
        // `parts <= SMALL_PIECE < 256`, so the cast is exact.
        *bound = i as u8;
    }
    for (i, rank) in pair_rank.iter_mut().enumerate().take(parts - 1) {
        *rank = ranks.pair(piece, i, i + 2);
    }
    loop {
        let mut best = NO_RANK;
        let mut at = 0;
        for (i, &rank) in pair_rank.iter().enumerate().take(parts - 1) {
            if rank < best {
                best = rank;
                at = i;
            }
        }
        if best == NO_RANK {
            return parts;
        }
        // Merge parts `at` and `at + 1`: drop boundary `at + 1` and the pair that started there.
        bounds.copy_within(at + 2..=parts, at + 1);
        if at + 2 < parts - 1 {
            pair_rank.copy_within(at + 2..parts - 1, at + 1);
        }
        parts -= 1;
        if at + 1 < parts {
            pair_rank[at] = ranks.pair(piece, usize::from(bounds[at]), usize::from(bounds[at + 2]));
        } else {
            pair_rank[at] = NO_RANK;
        }
        if at > 0 {
            pair_rank[at - 1] = ranks.pair(
                piece,
                usize::from(bounds[at - 1]),
                usize::from(bounds[at + 1]),
            );
        }
    }
}

/// Counts the tokens of a long piece with the same merge order as [`merge_small`]: parts form a linked list
/// keyed by their start offset, and a min-heap holds candidate pairs as `(rank, start, end)`, so among equal
/// ranks the leftmost pops first. Entries made stale by earlier merges are recognised and skipped: a live
/// pair starting at `start` still ends at `end`.
fn merge_large(ranks: &RankTable, piece: &[u8]) -> usize {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    let len = piece.len();
    if len < 2 {
        return len;
    }
    // Four allocations per piece of over SMALL_PIECE bytes: a few per kilobyte at worst, none per token.
    // `next[i]` / `prev[i]`: start of the following / preceding part of the part starting at `i`.
    let mut next: Vec<usize> = (1..=len).collect();
    let mut prev: Vec<usize> = (0..len).map(|i| i.wrapping_sub(1)).collect();
    let mut alive = vec![true; len];
    let mut heap = BinaryHeap::with_capacity(len);
    for i in 0..len - 1 {
        let rank = ranks.pair(piece, i, i + 2);
        if rank != NO_RANK {
            heap.push(Reverse((rank, i, i + 2)));
        }
    }
    let next_of = |next: &[usize], i: usize| next.get(i).copied().unwrap_or(len);
    let mut parts = len;
    while let Some(Reverse((_, start, end))) = heap.pop() {
        let mid = next_of(&next, start);
        let live =
            alive.get(start).copied().unwrap_or(false) && mid < len && next_of(&next, mid) == end;
        if !live {
            continue;
        }
        // Merge the part at `start` with the one at `mid`.
        if let Some(slot) = next.get_mut(start) {
            *slot = end;
        }
        if let Some(slot) = alive.get_mut(mid) {
            *slot = false;
        }
        if let Some(slot) = prev.get_mut(end) {
            *slot = start;
        }
        parts -= 1;
        if end < len {
            let after = next_of(&next, end);
            let rank = ranks.pair(piece, start, after);
            if rank != NO_RANK {
                heap.push(Reverse((rank, start, after)));
            }
        }
        if start > 0 {
            let before = prev.get(start).copied().unwrap_or(0);
            let rank = ranks.pair(piece, before, end);
            if rank != NO_RANK {
                heap.push(Reverse((rank, before, end)));
            }
        }
    }
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn count(text: &str, encoding: Encoding) -> usize {
        count_tokens(text, encoding).unwrap()
    }

    fn pieces(text: &str, encoding: Encoding) -> Vec<&str> {
        let counter = TokenCounter::get(encoding).unwrap();
        let mut out = Vec::new();
        counter.splitter.for_each_piece(text, |piece| {
            out.push(std::str::from_utf8(piece).unwrap());
        });
        out
    }

    /// A small deterministic generator (xorshift64*), so the randomised tests need no dependency and
    /// reproduce exactly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn names_round_trip() {
        for encoding in Encoding::ALL {
            assert_eq!(Encoding::from_name(encoding.name()), Ok(encoding));
            assert_eq!(encoding.name().parse::<Encoding>(), Ok(encoding));
            assert_eq!(encoding.to_string(), encoding.name());
        }
    }

    #[test]
    fn unknown_encoding_names_the_known_ones() {
        let err = Encoding::from_name("p50k_base").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown encoding "p50k_base"; known encodings: o200k_base, cl100k_base"#
        );
    }

    /// Expected counts are tiktoken 0.14.0's `len(encode_ordinary(text))` (o200k_base, cl100k_base);
    /// tests/unit/test_tokens.py checks many more texts against tiktoken itself.
    #[test]
    fn counts_match_tiktoken() {
        let long_a = "a".repeat(1000);
        let spaces = " ".repeat(300);
        let cases: &[(&str, usize, usize)] = &[
            ("", 0, 0),
            ("a", 1, 1),
            ("hello world", 2, 2),
            ("Hello, World!", 4, 4),
            ("DON'T stop; we're HERE", 6, 7),
            ("a\n  ", 3, 3),
            ("a   b", 3, 3),
            ("x  ", 2, 2),
            ("  \n", 1, 1),
            ("\r\n\r\n", 1, 1),
            ("12345678901", 4, 4),
            ("<|endoftext|>", 7, 7),
            ("Привет, мир!", 5, 7),
            ("你好，世界", 3, 6),
            ("مرحبا بالعالم", 4, 10),
            ("नमस्ते दुनिया", 5, 13),
            ("👨\u{200d}👩\u{200d}👧\u{200d}👦 family", 12, 19),
            ("fn main() {\n    println!(\"hi\");\n}\n", 10, 10),
            (&long_a, 125, 125),
            (&spaces, 3, 3),
            ("\u{3000}\u{3000}x", 3, 3),
        ];
        for &(text, o200k, cl100k) in cases {
            assert_eq!(
                count(text, Encoding::O200kBase),
                o200k,
                "o200k_base {text:?}"
            );
            assert_eq!(
                count(text, Encoding::Cl100kBase),
                cl100k,
                "cl100k_base {text:?}"
            );
        }
    }

    #[test]
    fn whitespace_runs_split_like_the_look_ahead() {
        for encoding in Encoding::ALL {
            // Before a non-space the run gives its last character to the next piece...
            assert_eq!(pieces("a   b", encoding), ["a", "  ", " b"]);
            // ...unless it is a single character, which stays a piece of its own...
            assert_eq!(pieces("1 2", encoding), ["1", " ", "2"]);
            // ...and at the end of the text the whole run is one piece.
            assert_eq!(pieces("x  ", encoding), ["x", "  "]);
            // A multi-byte space is given back whole.
            assert_eq!(pieces("a \u{3000}b", encoding), ["a", " ", "\u{3000}b"]);
        }
        // cl100k (tiktoken 0.14) tries `\s+$` before `\s*[\r\n]`; o200k has no `\s+$`.
        assert_eq!(pieces("a\n  ", Encoding::Cl100kBase), ["a", "\n  "]);
        assert_eq!(pieces("a\n  ", Encoding::O200kBase), ["a", "\n", "  "]);
        assert_eq!(
            pieces("a\n  b", Encoding::Cl100kBase),
            ["a", "\n", " ", " b"]
        );
    }

    #[test]
    fn pieces_cover_every_kind_of_character() {
        // One character of every plane-0 block and beyond (including unassigned and private-use code
        // points): the split must consume all of them and the count must not panic.
        let text: String = (0..=0x10FFFFu32)
            .step_by(97)
            .filter_map(char::from_u32)
            .flat_map(|c| [c, ' ', c, c, '\n'])
            .collect();
        for encoding in Encoding::ALL {
            assert_eq!(pieces(&text, encoding).concat(), text);
            assert!(count(&text, encoding) >= text.chars().count() / 5);
        }
    }

    #[test]
    fn small_and_large_merges_agree() {
        // The stack merge and the heap merge implement the same merge order; long pieces from small
        // alphabets force many ties and re-merges.
        let counter = TokenCounter::get(Encoding::O200kBase).unwrap();
        let alphabets: [&[u8]; 4] = [b"ab", b"abc ", b"aaaaab", "é中😀x".as_bytes()];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..2000 {
            let alphabet = alphabets[round % alphabets.len()];
            let len = 2 + rng.below(SMALL_PIECE - 1);
            let piece: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            assert_eq!(
                merge_small(&counter.ranks, &piece),
                merge_large(&counter.ranks, &piece),
                "{piece:?}"
            );
        }
    }

    #[test]
    fn long_pieces_count_without_quadratic_time() {
        // 1 MB of one letter is a single piece; the heap merge handles it in well under a second (about 3 s
        // in a debug build), where a quadratic merge would take hours: the bound leaves room for a debug
        // build on a busy 2-core machine. Runs of `a` merge into 8-byte tokens, as tiktoken's 1000 -> 125 in
        // `counts_match_tiktoken` shows.
        let text = "a".repeat(1 << 20);
        // No clock (a loaded machine fails a timed assertion): quadratic merging would take minutes here.
        TokenCounter::get(Encoding::Cl100kBase).unwrap();
        assert_eq!(count(&text, Encoding::Cl100kBase), text.len() / 8);
    }

    #[test]
    fn counter_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenCounter>();
        let text = "the same text counted from four threads";
        let expected = count(text, Encoding::O200kBase);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| assert_eq!(count(text, Encoding::O200kBase), expected));
            }
        });
    }
}
