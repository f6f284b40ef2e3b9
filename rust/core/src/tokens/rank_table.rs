//! Token bytes -> rank, the one lookup byte-pair merging makes per candidate pair.

/// Marks "this pair is not a token": larger than every rank, so the minimum search skips it naturally.
pub(super) const NO_RANK: u32 = u32::MAX;

/// An open-addressing hash table (linear probing, at most half full) whose slots hold a token's first 8
/// bytes inline, so the common lookup (a key of at most 8 bytes) reads one slot and never the vocabulary
/// itself. Two-byte keys (most first-round pairs) skip hashing: they live only in a direct 64 Ki-entry array.
pub(super) struct RankTable {
    slots: Vec<Slot>,
    mask: usize,
    /// Slots in use: kept to at most half of them, so a probe always reaches an empty slot.
    occupied: usize,
    two_bytes: Vec<u32>,
    /// Bytes 8.. of tokens longer than 8 bytes, concatenated; see [`Slot::tail`].
    tails: Vec<u8>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The token's first 8 bytes, little-endian, zero-padded (see [`head_word`]).
    head: u64,
    /// `rank + 1` (0 marks an empty slot).
    rank1: u32,
    /// The token's length in bytes.
    len: u32,
    /// Offset of the token's bytes 8.. in [`RankTable::tails`].
    tail: u32,
}

impl RankTable {
    /// An empty table with room for `tokens` tokens (two-byte ones do not count against it).
    pub(super) fn with_capacity(tokens: usize) -> Self {
        let capacity = tokens.saturating_mul(2).next_power_of_two().max(16);
        Self {
            slots: vec![Slot::default(); capacity],
            mask: capacity - 1,
            occupied: 0,
            two_bytes: vec![NO_RANK; 1 << 16],
            tails: Vec::new(),
        }
    }

    /// Adds `token` with `rank`. Returns `false`, changing nothing, if `token` is empty, is already in the
    /// table, or the table is full (half its slots in use).
    pub(super) fn insert(&mut self, token: &[u8], rank: u32) -> bool {
        if rank == NO_RANK {
            return false;
        }
        if let &[a, b] = token {
            return match self.two_bytes.get_mut(two_byte_index(a, b)) {
                Some(slot) if *slot == NO_RANK => {
                    *slot = rank;
                    true
                }
                _ => false,
            };
        }
        if token.is_empty() || (self.occupied + 1) * 2 > self.slots.len() {
            return false;
        }
        let (Ok(len), Ok(tail)) = (u32::try_from(token.len()), u32::try_from(self.tails.len()))
        else {
            return false;
        };
        let (head, rest) = token.split_at(token.len().min(8));
        let head = head_word(head);
        let mut at = hash_key(head, token) as usize & self.mask;
        for _ in 0..self.slots.len() {
            let Some(&slot) = self.slots.get(at) else {
                return false;
            };
            if slot.rank1 != 0 {
                if self.holds(&slot, head, token) {
                    return false;
                }
            } else if let Some(free) = self.slots.get_mut(at) {
                *free = Slot {
                    head,
                    rank1: rank + 1,
                    len,
                    tail,
                };
                self.tails.extend_from_slice(rest);
                self.occupied += 1;
                return true;
            }
            at = (at + 1) & self.mask;
        }
        false
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<u32> {
        if let &[a, b] = key {
            return self
                .two_bytes
                .get(two_byte_index(a, b))
                .copied()
                .filter(|&rank| rank != NO_RANK);
        }
        let head = head_word(key.get(..8).unwrap_or(key));
        let mut at = hash_key(head, key) as usize & self.mask;
        loop {
            let slot = self.slots.get(at)?;
            if slot.rank1 == 0 {
                return None;
            }
            if self.holds(slot, head, key) {
                return Some(slot.rank1 - 1);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// The rank of `piece[start..end]`, or [`NO_RANK`].
    pub(super) fn pair(&self, piece: &[u8], start: usize, end: usize) -> u32 {
        piece
            .get(start..end)
            .and_then(|key| self.get(key))
            .unwrap_or(NO_RANK)
    }

    /// Whether the occupied `slot` holds `key`, whose first 8 bytes are `head`.
    fn holds(&self, slot: &Slot, head: u64, key: &[u8]) -> bool {
        slot.head == head
            && slot.len as usize == key.len()
            && self.tail(slot) == key.get(8..).unwrap_or(&[])
    }

    fn tail(&self, slot: &Slot) -> &[u8] {
        let start = slot.tail as usize;
        let len = (slot.len as usize).saturating_sub(8);
        self.tails.get(start..start + len).unwrap_or(&[])
    }
}

fn two_byte_index(a: u8, b: u8) -> usize {
    usize::from(a) << 8 | usize::from(b)
}

/// Up to 8 bytes as a little-endian word, zero-padded; with the length compared separately this identifies
/// a key of at most 8 bytes exactly.
fn head_word(head: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    for (to, &from) in word.iter_mut().zip(head) {
        *to = from;
    }
    u64::from_le_bytes(word)
}

/// Hashes a key from its head word, its length and (for keys over 8 bytes) its next 8 bytes: tokens longer
/// than 16 bytes are rare enough that hashing a 16-byte prefix spreads them well.
fn hash_key(head: u64, key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let second = key
        .get(8..)
        .map_or(0, |rest| head_word(rest.get(..8).unwrap_or(rest)));
    let mut h = (head ^ (key.len() as u64).rotate_left(56)).wrapping_mul(K);
    h = (h.rotate_left(29) ^ second).wrapping_mul(K);
    // murmur3's finaliser: the index uses the low bits, which plain multiplication mixes poorly.
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^ (h >> 33)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_and_nothing_else() {
        // Keys of every length class: 1 byte, 2 bytes (direct array), up to 8 (head only), 9..16 and
        // longer (tail compared), including keys that share a head and differ only after byte 8.
        let tokens: [&[u8]; 8] = [
            b"a",
            b"ab",
            b"abc",
            b"abcdefgh",
            b"abcdefghi",
            b"abcdefghj",
            b"abcdefghijklmnopqrstuvwxyz",
            b"\0\0",
        ];
        let mut table = RankTable::with_capacity(tokens.len());
        for (rank, token) in (0..).zip(tokens) {
            assert!(table.insert(token, rank), "{token:?}");
        }
        for (rank, token) in (0..).zip(tokens) {
            assert_eq!(table.get(token), Some(rank), "{token:?}");
        }
        let absent: [&[u8]; 6] = [b"", b"b", b"ba", b"abcd", b"abcdefghk", b"\0"];
        for key in absent {
            assert_eq!(table.get(key), None, "{key:?}");
        }
        assert_eq!(table.pair(b"xabx", 1, 3), 1);
        assert_eq!(table.pair(b"xabx", 0, 2), NO_RANK);
        assert_eq!(table.pair(b"ab", 1, 3), NO_RANK);
    }

    #[test]
    fn refuses_repeated_and_empty_tokens() {
        let mut table = RankTable::with_capacity(4);
        assert!(table.insert(b"ab", 0));
        assert!(table.insert(b"abcdefghijk", 1));
        assert!(!table.insert(b"ab", 2));
        assert!(!table.insert(b"abcdefghijk", 3));
        assert!(!table.insert(b"", 4));
        assert_eq!(table.get(b"ab"), Some(0));
        assert_eq!(table.get(b"abcdefghijk"), Some(1));
        assert_eq!(table.get(b""), None);
    }

    #[test]
    fn a_full_table_refuses_more_and_still_answers_misses() {
        let mut table = RankTable::with_capacity(1);
        let inserted = (0..100u32)
            .filter(|&rank| table.insert(format!("token{rank}").as_bytes(), rank))
            .count();
        assert_eq!(inserted, table.slots.len() / 2);
        assert_eq!(table.get(b"token0"), Some(0));
        // A miss ends at an empty slot, which a half-full table always has.
        assert_eq!(table.get(b"token99"), None);
    }
}
