//! Checks a regex match must also pass to count: checksums that tell a card number, an IBAN or a national
//! identifier from any other run of digits, and the context that tells an IPv4 address from a version
//! string or a netmask.

use super::{ipv4, national_ids};

/// A check a regex match must also pass to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Validator {
    /// Payment card numbers: 12 to 19 digits, optionally separated by spaces or dashes, Luhn checksum.
    Luhn,
    /// International bank account numbers: country code, check digits, 11 to 30 alphanumerics (spaces
    /// allowed), ISO 7064 mod-97 checksum.
    Iban,
    /// US Social Security numbers: area, group and serial as the SSA issues them (no check digit).
    UsSsn,
    /// UK National Insurance numbers: the prefixes HMRC issues, six digits, suffix A-D.
    UkNino,
    /// French NIR (sécurité sociale): 13 characters and the mod-97 key.
    FrNir,
    /// German tax identification number (Steuer-ID): digit distribution and ISO 7064 MOD 11,10 check.
    DeTaxId,
    /// German pension insurance number (Rentenversicherungsnummer): date of birth and weighted check.
    DePensionNumber,
    /// Spanish DNI and NIE: the check letter (number mod 23).
    EsDni,
    /// Italian codice fiscale: the check character.
    ItFiscalCode,
    /// Dutch BSN: the 11-test.
    NlBsn,
    /// Brazilian CPF: two mod-11 check digits.
    BrCpf,
    /// Brazilian CNPJ: two mod-11 check digits.
    BrCnpj,
    /// Indian Aadhaar: Verhoeff check digit.
    InAadhaar,
    /// Japanese My Number: the weighted mod-11 check digit.
    JpMyNumber,
    /// IPv4 addresses outside the private, shared and link-local ranges, and not a version string or a
    /// netmask by their context.
    Ipv4Public,
    /// IPv4 addresses in the private (10/8, 172.16/12, 192.168/16), shared (100.64/10) and link-local
    /// (169.254/16) ranges, with the same context checks.
    Ipv4Private,
}

impl Validator {
    /// Every validator, in the order error messages list them.
    pub const ALL: [Validator; 16] = [
        Validator::Luhn,
        Validator::Iban,
        Validator::UsSsn,
        Validator::UkNino,
        Validator::FrNir,
        Validator::DeTaxId,
        Validator::DePensionNumber,
        Validator::EsDni,
        Validator::ItFiscalCode,
        Validator::NlBsn,
        Validator::BrCpf,
        Validator::BrCnpj,
        Validator::InAadhaar,
        Validator::JpMyNumber,
        Validator::Ipv4Public,
        Validator::Ipv4Private,
    ];

    /// The name config files use.
    pub fn name(self) -> &'static str {
        match self {
            Validator::Luhn => "luhn",
            Validator::Iban => "iban",
            Validator::UsSsn => "us_ssn",
            Validator::UkNino => "uk_nino",
            Validator::FrNir => "fr_nir",
            Validator::DeTaxId => "de_tax_id",
            Validator::DePensionNumber => "de_pension_number",
            Validator::EsDni => "es_dni",
            Validator::ItFiscalCode => "it_fiscal_code",
            Validator::NlBsn => "nl_bsn",
            Validator::BrCpf => "br_cpf",
            Validator::BrCnpj => "br_cnpj",
            Validator::InAadhaar => "in_aadhaar",
            Validator::JpMyNumber => "jp_my_number",
            Validator::Ipv4Public => "ipv4_public",
            Validator::Ipv4Private => "ipv4_private",
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

    /// Whether `text` (a regex match, seen without its context) passes the check.
    pub fn check(self, text: &str) -> bool {
        self.check_in(text, 0, text.len())
    }

    /// Whether the match `start..end` of `haystack` passes the check. The national-identifier and IPv4
    /// validators also look at a few characters around the match (so a scan stays linear): a national
    /// identifier must not be one group of a longer grouped number (`4111 1111 1111` inside a card
    /// number), an IPv4 address not a version number or a netmask.
    pub fn check_in(self, haystack: &str, start: usize, end: usize) -> bool {
        let Some(text) = haystack.get(start..end) else {
            return false;
        };
        match self {
            // 12 digits in fours may be three groups of a longer number (`1234 5678 9012 3456 7890`).
            Validator::Luhn => {
                luhn_ok(text)
                    && (digit_count(text) > 12 || national_ids::standalone(haystack, start, end))
            }
            Validator::Iban => iban_ok(text),
            _ if !national_ids::standalone(haystack, start, end) => false,
            Validator::UsSsn => national_ids::us_ssn(text),
            Validator::UkNino => national_ids::uk_nino(text),
            Validator::FrNir => national_ids::fr_nir(text),
            Validator::DeTaxId => national_ids::de_tax_id(text),
            Validator::DePensionNumber => national_ids::de_pension_number(text),
            Validator::EsDni => national_ids::es_dni(text),
            Validator::ItFiscalCode => national_ids::it_fiscal_code(text),
            Validator::NlBsn => national_ids::nl_bsn(text),
            Validator::BrCpf => national_ids::br_cpf(text),
            Validator::BrCnpj => national_ids::br_cnpj(text),
            Validator::InAadhaar => national_ids::in_aadhaar(text),
            Validator::JpMyNumber => national_ids::jp_my_number(text),
            Validator::Ipv4Public | Validator::Ipv4Private => {
                let private = self == Validator::Ipv4Private;
                ipv4::is_address(haystack, start, end) && ipv4::is_private(text) == Some(private)
            }
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

fn digit_count(text: &str) -> usize {
    text.bytes().filter(u8::is_ascii_digit).count()
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
            concat!(
                r#"unknown validator "ssn"; known validators: luhn, iban, us_ssn, uk_nino, fr_nir, "#,
                "de_tax_id, de_pension_number, es_dni, it_fiscal_code, nl_bsn, br_cpf, br_cnpj, in_aadhaar, ",
                "jp_my_number, ipv4_public, ipv4_private"
            )
        );
    }
}
