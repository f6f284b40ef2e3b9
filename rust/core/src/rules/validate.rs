//! Checks a regex match must also pass to count: checksums that tell a card number or an IBAN from any
//! other run of digits.

/// A check a regex match must also pass to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Validator {
    /// Payment card numbers: 12 to 19 digits, optionally separated by spaces or dashes, Luhn checksum.
    Luhn,
    /// International bank account numbers: country code, check digits, 11 to 30 alphanumerics (spaces
    /// allowed), ISO 7064 mod-97 checksum.
    Iban,
}

impl Validator {
    /// Every validator, in the order error messages list them.
    pub const ALL: [Validator; 2] = [Validator::Luhn, Validator::Iban];

    /// The name config files use.
    pub fn name(self) -> &'static str {
        match self {
            Validator::Luhn => "luhn",
            Validator::Iban => "iban",
        }
    }

    /// Looks a validator up by name; the error message lists the known ones.
    pub fn from_name(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == name)
            .ok_or_else(|| {
                let known = Self::ALL.map(Validator::name).join(", ");
                format!("unknown validator {name:?}; known validators: {known}")
            })
    }

    /// Whether `text` (a regex match) passes the check.
    pub fn check(self, text: &str) -> bool {
        match self {
            Validator::Luhn => luhn_ok(text),
            Validator::Iban => iban_ok(text),
        }
    }
}

/// Luhn checksum over the digits of a card number written with optional spaces or dashes.
fn luhn_ok(text: &str) -> bool {
    let mut sum = 0u32;
    let mut digits = 0usize;
    for c in text.chars().rev() {
        let digit = match c {
            ' ' | '-' => continue,
            _ => match c.to_digit(10) {
                // `to_digit` alone would accept nothing else, but be explicit that only ASCII digits count.
                Some(d) if c.is_ascii_digit() => d,
                _ => return false,
            },
        };
        // Every second digit from the right is doubled; a two-digit result contributes its digit sum.
        let value = if digits % 2 == 1 {
            let doubled = digit * 2;
            if doubled > 9 {
                doubled - 9
            } else {
                doubled
            }
        } else {
            digit
        };
        sum += value;
        digits += 1;
    }
    (12..=19).contains(&digits) && sum.is_multiple_of(10)
}

/// ISO 13616 IBAN check: two letters, two check digits, 11 to 30 alphanumerics; spaces are ignored and
/// letters may be lower case. Moving the first four characters to the end and reading letters as 10..35
/// must give a number that is 1 mod 97, computed digit by digit so it never overflows.
fn iban_ok(text: &str) -> bool {
    let chars: Vec<char> = text
        .chars()
        .filter(|&c| c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&chars.len()) || !chars.iter().all(char::is_ascii_alphanumeric) {
        return false;
    }
    let (head, rest) = chars.split_at(4);
    let country_ok = head.iter().take(2).all(char::is_ascii_uppercase);
    let check_digits_ok = head.iter().skip(2).all(char::is_ascii_digit);
    if !country_ok || !check_digits_ok {
        return false;
    }
    let mut remainder = 0u32;
    for &c in rest.iter().chain(head) {
        remainder = match c.to_digit(36) {
            Some(value) if value < 10 => (remainder * 10 + value) % 97,
            Some(value) => (remainder * 100 + value) % 97,
            None => return false,
        };
    }
    remainder == 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn luhn_table() {
        let cases = [
            ("4111111111111111", true),
            ("4111-1111-1111-1111", true),
            ("4111 1111 1111 1112", false),
            ("378282246310005", true),
            ("6011111111111117", true),
            ("79927398713", false), // valid checksum, but 11 digits is too short for a card
            ("4111.1111.1111.1111", false),
            ("４１１１111111111111", false), // full-width digits are not card digits
            ("", false),
        ];
        for (text, ok) in cases {
            assert_eq!(Validator::Luhn.check(text), ok, "{text:?}");
        }
    }

    #[test]
    fn iban_table() {
        let cases = [
            ("GB82WEST12345698765432", true),
            ("gb82 west 1234 5698 7654 32", true),
            ("FR1420041010050500013M02606", true),
            ("NL91ABNA0417164300", true),
            ("NL91ABNA0417164301", false),
            ("GB82WEST1234569876543!", false),
            ("1282WEST12345698765432", false),
            ("GBX2WEST12345698765432", false),
            ("GB82", false),
        ];
        for (text, ok) in cases {
            assert_eq!(Validator::Iban.check(text), ok, "{text:?}");
        }
    }

    #[test]
    fn unknown_validator_lists_the_known_ones() {
        assert_eq!(Validator::from_name("iban"), Ok(Validator::Iban));
        assert_eq!(
            Validator::from_name("ssn").unwrap_err(),
            r#"unknown validator "ssn"; known validators: luhn, iban"#
        );
    }
}
