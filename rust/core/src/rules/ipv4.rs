//! What tells an IPv4 address from the other dotted quads in text: version and build numbers (`version
//! 1.2.3.4`, `v10.0.19041.1`, `1.2.3.4.5`), netmasks (`255.255.255.0`), and which range an address is in.

/// Words that, right before a dotted quad (spaces, `:` or `=` between), make it a version number.
const VERSION_WORDS: &[&str] = &[
    "version",
    "versions",
    "ver",
    "build",
    "release",
    "firmware",
    "fw",
    "rev",
    "revision",
    "versión",
    "versione",
    "versão",
    "versie",
    "バージョン",
];

/// How far back the context is read: the longest version word and a few separators.
const CONTEXT_BYTES: usize = 24;

/// Whether the dotted quad at `start..end` of `text` reads as an address: not part of a longer dotted
/// number, not right after `v` or a version word, and not a netmask.
pub(super) fn is_address(text: &str, start: usize, end: usize) -> bool {
    let (Some(before), Some(found), Some(after)) =
        (text.get(..start), text.get(start..end), text.get(end..))
    else {
        return false;
    };
    // 1.2.3.4.5 or 1.2.3.4.5: a fifth part, on either side.
    let mut after_chars = after.chars();
    if after_chars.next() == Some('.') && after_chars.next().is_some_and(|c| c.is_ascii_digit()) {
        return false;
    }
    let mut before_chars = before.chars().rev();
    let last = before_chars.next();
    if last == Some('.') && before_chars.next().is_some_and(|c| c.is_ascii_digit()) {
        return false;
    }
    // v1.2.3.4, V10.0.0.1
    if matches!(last, Some('v' | 'V')) {
        let prior = before.chars().rev().nth(1);
        if !prior.is_some_and(|c| c.is_ascii_alphanumeric()) {
            return false;
        }
    }
    if after_version_word(before) {
        return false;
    }
    !is_netmask(found)
}

/// Whether `before` ends with a version word, then optional spaces, `:` or `=`.
fn after_version_word(before: &str) -> bool {
    let from = before.len().saturating_sub(CONTEXT_BYTES);
    let from = (from..before.len())
        .find(|&i| before.is_char_boundary(i))
        .unwrap_or(before.len());
    let Some(window) = before.get(from..) else {
        return false;
    };
    let trimmed = window.trim_end_matches([' ', ':', '=', '\t']);
    if trimmed.len() == window.len() && !window.is_empty() {
        // Glued to a word (`ver1.2.3.4` aside, that is `abc1.2.3.4`): not a labelled version.
        return false;
    }
    let lower = trimmed.to_lowercase();
    VERSION_WORDS.iter().any(|word| {
        lower.ends_with(word) && {
            let head = &lower[..lower.len() - word.len()];
            !head.chars().next_back().is_some_and(char::is_alphanumeric)
        }
    })
}

/// The four octets of a dotted quad the IPv4 pattern matched.
fn octets(quad: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = quad.split('.');
    for slot in &mut out {
        *slot = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A netmask: ones then zeros, starting with 255 (255.255.255.0, 255.255.240.0, 255.0.0.0).
fn is_netmask(quad: &str) -> bool {
    let Some(o) = octets(quad) else {
        return false;
    };
    let bits = u32::from_be_bytes(o);
    o[0] == 255 && bits.leading_ones() + bits.trailing_zeros() == 32
}

/// Whether the address is in a private, shared (carrier-grade NAT) or link-local range; `None` if the
/// text is not a dotted quad.
pub(super) fn is_private(quad: &str) -> Option<bool> {
    let [a, b, ..] = octets(quad)?;
    Some(matches!(
        (a, b),
        (10, _) | (172, 16..=31) | (192, 168) | (169, 254) | (100, 64..=127)
    ))
}
