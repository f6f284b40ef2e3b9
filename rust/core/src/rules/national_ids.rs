//! Checksums of national identifiers: what tells a tax number, a social security number or an identity
//! card number from any other run of digits and letters.
//!
//! Each function takes the text a rule matched, which may carry a label before the number (`BSN:
//! 123456782`) and separators inside it (`123.456.789-09`, `AB 12 34 56 C`): the identifier is read from
//! its characters after the label, separators skipped. Only ASCII digits and letters count.
//!
//! References: the issuing authorities' published algorithms (SSA for the US SSN, HMRC for the NINO, INSEE
//! for the NIR, the BZSt for the Steuer-ID, the DRV for the Rentenversicherungsnummer, the Ministerio del
//! Interior for DNI/NIE, the Agenzia delle Entrate for the codice fiscale, the Dutch 11-test, the Receita
//! Federal for CPF/CNPJ, UIDAI's Verhoeff check for Aadhaar, and the Japanese Cabinet Office ordinance for
//! the My Number check digit).

/// Whether the match `start..end` of `text` stands alone: not continued, on either side, by another
/// group of digits after a separator it uses itself (`1234 5678 9012` inside `1234 5678 9012 3456`). A
/// number written without separators, or one next to a number separated otherwise (`room 42
/// 123-45-6789`), stands alone.
pub(super) fn standalone(text: &str, start: usize, end: usize) -> bool {
    let (Some(before), Some(found), Some(after)) =
        (text.get(..start), text.get(start..end), text.get(end..))
    else {
        return false;
    };
    let is_separator = |c: char| matches!(c, ' ' | '-' | '.' | '/') && found.contains(c);
    let continues = |chars: &mut dyn Iterator<Item = char>| {
        chars.next().is_some_and(is_separator) && chars.next().is_some_and(|c| c.is_ascii_digit())
    };
    !continues(&mut after.chars()) && !continues(&mut before.chars().rev())
}

/// The ASCII digits of `text`, as numbers; `None` if there are more than `max` (the match is then not
/// the identifier).
fn digits(text: &str, max: usize) -> Option<Vec<u32>> {
    let found: Vec<u32> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    (found.len() <= max).then_some(found)
}

/// The identifier at the end of `text`: its last `len` ASCII alphanumerics, upper-cased (a label before
/// it is left out), or `None` when there are fewer.
fn tail_alnum(text: &str, len: usize) -> Option<Vec<u8>> {
    let mut found: Vec<u8> = text
        .bytes()
        .rev()
        .filter(u8::is_ascii_alphanumeric)
        .take(len)
        .map(|b| b.to_ascii_uppercase())
        .collect();
    found.reverse();
    (found.len() == len).then_some(found)
}

/// US Social Security number: area 001-899 except 666, group 01-99, serial 0001-9999 (SSA rules; there is
/// no check digit).
pub(super) fn us_ssn(text: &str) -> bool {
    let Some(d) = digits(text, 9) else {
        return false;
    };
    if d.len() != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// UK National Insurance number: two prefix letters (neither D, F, I, Q, U, V; the second not O; not BG,
/// GB, KN, NK, NT, TN, ZZ), six digits, suffix A to D.
pub(super) fn uk_nino(text: &str) -> bool {
    let Some(id) = tail_alnum(text, 9) else {
        return false;
    };
    let (first, second) = (id[0], id[1]);
    let letter_ok = |c: u8| c.is_ascii_uppercase() && !b"DFIQUV".contains(&c);
    let prefix_ok = letter_ok(first)
        && letter_ok(second)
        && second != b'O'
        && !matches!(
            &id[..2],
            b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ"
        );
    prefix_ok && id[2..8].iter().all(u8::is_ascii_digit) && (b'A'..=b'D').contains(&id[8])
}

/// French NIR (numéro de sécurité sociale): 13 characters and a two-digit key, 97 minus the number mod 97.
/// Corsican départements 2A and 2B count as 19 and 18 for the key.
pub(super) fn fr_nir(text: &str) -> bool {
    let Some(id) = tail_alnum(text, 15) else {
        return false;
    };
    let (number, key) = id.split_at(13);
    if !matches!(number[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8') {
        return false;
    }
    let mut value: u64 = 0;
    for (i, &c) in number.iter().enumerate() {
        let digit = match c {
            b'0'..=b'9' => u64::from(c - b'0'),
            // 2A / 2B: the department's letter, replaced so that the number is all digits.
            b'A' | b'B' if i == 6 && number[5] == b'2' => 0,
            _ => return false,
        };
        value = value * 10 + digit;
    }
    let corsica = match number[6] {
        b'A' => 1_000_000,
        b'B' => 2_000_000,
        _ => 0,
    };
    let value = value - corsica;
    let Some(key) = parse_digits(key) else {
        return false;
    };
    97 - value % 97 == u64::from(key)
}

/// German Steuerliche Identifikationsnummer: 11 digits, not starting with 0; among the first ten, one
/// digit appears twice or three times and every other at most once; ISO 7064 MOD 11,10 check digit.
pub(super) fn de_tax_id(text: &str) -> bool {
    let Some(d) = digits(text, 11) else {
        return false;
    };
    if d.len() != 11 || d[0] == 0 {
        return false;
    }
    let mut counts = [0u8; 10];
    for &digit in &d[..10] {
        counts[digit as usize] += 1;
    }
    let repeated: Vec<u8> = counts.iter().copied().filter(|&n| n > 1).collect();
    if repeated.len() != 1 || repeated[0] > 3 {
        return false;
    }
    d[10] == iso7064_mod_11_10(&d[..10])
}

/// ISO 7064 MOD 11,10 check digit over `digits`.
fn iso7064_mod_11_10(digits: &[u32]) -> u32 {
    let mut product = 10;
    for &digit in digits {
        let mut sum = (digit + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    (11 - product) % 10
}

/// German Rentenversicherungsnummer (pension insurance number): area (2 digits), date of birth DDMMYY,
/// the surname's initial, serial (2 digits), check digit. The letter counts as its two-digit position in
/// the alphabet; weights 2,1,2,5,7,1,2,1,2,1,2,1, each product's digit sum added up, mod 10.
pub(super) fn de_pension_number(text: &str) -> bool {
    let Some(id) = tail_alnum(text, 12) else {
        return false;
    };
    let letter = id[8];
    if !letter.is_ascii_uppercase() {
        return false;
    }
    let (Some(head), Some(tail)) = (parse_each(&id[..8]), parse_each(&id[9..])) else {
        return false;
    };
    let day = head[2] * 10 + head[3];
    let month = head[4] * 10 + head[5];
    // Day + 50 marks a follow-up number for the same birth date.
    let day_ok = (1..=31).contains(&(day % 50)) && day < 82;
    if !day_ok || !(1..=12).contains(&month) {
        return false;
    }
    let position = u32::from(letter - b'A') + 1;
    let mut values = head;
    values.extend([position / 10, position % 10]);
    values.extend(&tail[..2]);
    const WEIGHTS: [u32; 12] = [2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1];
    let sum: u32 = values
        .iter()
        .zip(WEIGHTS)
        .map(|(v, w)| {
            let product = v * w;
            product / 10 + product % 10
        })
        .sum();
    sum % 10 == tail[2]
}

const DNI_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// Spanish DNI (8 digits and a letter) or NIE (X, Y or Z, 7 digits and a letter): the letter is
/// `TRWAGMYFPDXBNJZSQVHLCKE` indexed by the number mod 23, with X, Y, Z read as 0, 1, 2.
pub(super) fn es_dni(text: &str) -> bool {
    let Some(id) = tail_alnum(text, 9) else {
        return false;
    };
    let lead = match id[0] {
        b'X' => 0,
        b'Y' => 1,
        b'Z' => 2,
        c if c.is_ascii_digit() => u32::from(c - b'0'),
        _ => return false,
    };
    let Some(rest) = parse_digits(&id[1..8]) else {
        return false;
    };
    let number = lead * 10_000_000 + rest;
    DNI_LETTERS.get((number % 23) as usize) == Some(&id[8])
}

/// Italian codice fiscale: 15 characters and a check letter. Characters in odd positions (1st, 3rd, …)
/// count by a table, those in even positions by their value (digits 0-9, letters 0-25); the sum mod 26 is
/// the letter. Digits replaced by letters for homocody (LMNPQRSTUV) take the same values as letters.
pub(super) fn it_fiscal_code(text: &str) -> bool {
    let Some(id) = tail_alnum(text, 16) else {
        return false;
    };
    // Values of 0-9 then A-Z in odd positions.
    const ODD: [u32; 36] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, // 0-9
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23, // A-Z
    ];
    let mut sum = 0;
    for (i, &c) in id[..15].iter().enumerate() {
        let (index, even_value) = match c {
            b'0'..=b'9' => (usize::from(c - b'0'), u32::from(c - b'0')),
            b'A'..=b'Z' => (usize::from(c - b'A') + 10, u32::from(c - b'A')),
            _ => return false,
        };
        sum += if i % 2 == 0 { ODD[index] } else { even_value };
    }
    id[15] == b'A' + (sum % 26) as u8
}

/// Dutch BSN (burgerservicenummer): 9 digits (8 with a leading zero left out), the 11-test: 9×d1 + 8×d2 +
/// … + 2×d8 − d9 is a multiple of 11, and not zero.
pub(super) fn nl_bsn(text: &str) -> bool {
    let Some(mut d) = digits(text, 9) else {
        return false;
    };
    if d.len() == 8 {
        d.insert(0, 0);
    }
    if d.len() != 9 {
        return false;
    }
    let weighted: i64 = d[..8]
        .iter()
        .zip((2..=9).rev())
        .map(|(&digit, weight)| i64::from(digit) * weight)
        .sum();
    let total = weighted - i64::from(d[8]);
    total != 0 && total % 11 == 0
}

/// Brazilian CPF: 9 digits and two check digits, each mod 11 over decreasing weights; numbers of one
/// repeated digit are not issued.
pub(super) fn br_cpf(text: &str) -> bool {
    let Some(d) = digits(text, 11) else {
        return false;
    };
    if d.len() != 11 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let check = |n: usize| {
        let sum: u32 = d[..n]
            .iter()
            .zip((2..=n as u32 + 1).rev())
            .map(|(&x, w)| x * w)
            .sum();
        let rest = sum * 10 % 11;
        if rest == 10 {
            0
        } else {
            rest
        }
    };
    check(9) == d[9] && check(10) == d[10]
}

/// Brazilian CNPJ (company registry, also sole traders): 12 digits and two mod-11 check digits with
/// weights cycling 2..9 from the right.
pub(super) fn br_cnpj(text: &str) -> bool {
    let Some(d) = digits(text, 14) else {
        return false;
    };
    if d.len() != 14 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let check = |n: usize| {
        let sum: u32 = d[..n]
            .iter()
            .rev()
            .zip((2..=9).cycle())
            .map(|(&x, w)| x * w)
            .sum();
        let rest = sum % 11;
        if rest < 2 {
            0
        } else {
            11 - rest
        }
    };
    check(12) == d[12] && check(13) == d[13]
}

/// Indian Aadhaar: 12 digits, not starting with 0 or 1, Verhoeff check digit.
pub(super) fn in_aadhaar(text: &str) -> bool {
    let Some(d) = digits(text, 12) else {
        return false;
    };
    d.len() == 12 && d[0] >= 2 && verhoeff_ok(&d)
}

/// Verhoeff's dihedral-group check over all digits, the check digit last.
fn verhoeff_ok(digits: &[u32]) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0u8;
    for (i, &digit) in digits.iter().rev().enumerate() {
        let p = P[i % 8][(digit % 10) as usize];
        c = D[c as usize][p as usize];
    }
    c == 0
}

/// Japanese My Number (individual number): 11 digits and a check digit: the digits from the right,
/// weighted 2-7 then 2-6, summed mod 11; a remainder of 0 or 1 gives 0, else 11 minus it.
pub(super) fn jp_my_number(text: &str) -> bool {
    let Some(d) = digits(text, 12) else {
        return false;
    };
    if d.len() != 12 {
        return false;
    }
    let sum: u32 = d[..11]
        .iter()
        .rev()
        .enumerate()
        .map(|(n, &x)| {
            let n = n as u32 + 1;
            x * if n <= 6 { n + 1 } else { n - 5 }
        })
        .sum();
    let rest = sum % 11;
    let check = if rest <= 1 { 0 } else { 11 - rest };
    check == d[11]
}

/// The number that ASCII digits `bytes` spell, or `None` if one is no digit.
fn parse_digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit()
            .then(|| n.saturating_mul(10).saturating_add(u32::from(c - b'0')))
    })
}

/// Each of the ASCII digits `bytes` as a number, or `None` if one is no digit.
fn parse_each(bytes: &[u8]) -> Option<Vec<u32>> {
    bytes
        .iter()
        .map(|&c| c.is_ascii_digit().then(|| u32::from(c - b'0')))
        .collect()
}

#[cfg(test)]
#[path = "national_ids_tests.rs"]
mod tests;
