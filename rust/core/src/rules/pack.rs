//! The default rule pack: personal data and secrets that must not leave the device unless a config says so.
//!
//! Every rule has a stable id: configs name it to replace the rule (a config rule with the same id) or to
//! leave it out. Every pattern is written for precision first, in the regex crate's syntax (so matching is
//! linear in the text): digits are `[0-9]` (never Unicode `\d`), number formats follow their real grouping,
//! and checksums (Luhn, ISO 7064 mod-97) decide what a pattern alone cannot. What each rule deliberately
//! does not match is pinned down, with what it does, in `pack_tests.rs`.
//!
//! Known limits, accepted for precision elsewhere: a four-part version string made of numbers up to 255
//! (`1.2.3.4`) reads as an IPv4 address; an image name like `icon@2x.png` reads as an e-mail address; a
//! 13 to 19 digit number with an issuer's prefix that happens to pass the Luhn check reads as a card number
//! (as one in ten such numbers do: an order number is safe when it starts otherwise or fails the check); the
//! digit groups inside an IBAN may read as a phone number as well (`DE89 3704 0044 0532 0130 00`).

use super::{Pattern, Rule, Validator};

/// One rule of the default pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackRule {
    /// Stable: configs name it to replace or disable the rule.
    pub id: &'static str,
    /// What it matches, in a few words, for documentation and `check-config`.
    pub description: &'static str,
    pub pattern: &'static str,
    pub validator: Option<Validator>,
}

impl PackRule {
    /// The rule to compile.
    pub fn rule(&self) -> Rule {
        Rule {
            id: self.id.to_owned(),
            pattern: Pattern::Regex(self.pattern.to_owned()),
            case_insensitive: false,
            validator: self.validator,
        }
    }
}

/// The default pack's rules, each of them [`PackRule::rule`].
pub fn default_rules() -> Vec<Rule> {
    DEFAULT_PACK.iter().map(PackRule::rule).collect()
}

/// One group of an IPv6 address.
macro_rules! hextet {
    () => {
        "[0-9A-Fa-f]{1,4}"
    };
}

/// An IPv4 octet, 0 to 255 without leading zeros.
macro_rules! octet {
    () => {
        "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    };
}

/// Local part, `@`, domain labels (letters, digits, inner hyphens), a top-level domain of letters. Letters
/// are any script's: internationalised addresses (`zoë.müller@exämple.de`) are addresses too.
const EMAIL: &str = r"\b\w[\w.%+-]*@(?:\w(?:[\w-]*\w)?\.)+[^\W\d_]{2,}\b";

/// A word boundary by ASCII word characters only: a non-ASCII letter (Han, kana, Devanagari, an accented
/// letter) next to a number does not hide it. With Unicode `\b`, `147.65.255.182を使って` held no address,
/// because `を` is a word character. Also cheaper: the lazy DFA evaluates ASCII boundaries on any text.
macro_rules! b {
    () => {
        r"(?-u:\b)"
    };
}

/// Where a `+` starts a number: after no ASCII word character (so not `1.0.0+20130313144700`).
macro_rules! nb {
    () => {
        r"(?-u:\B)"
    };
}

/// An optional phone extension: `x123`, ` ext. 4567`.
macro_rules! extension {
    () => {
        r"(?:(?: ?x| ?ext\.? ?)[0-9]{1,5})?"
    };
}

/// Words that say the number after them is a phone number, in the ten locales' languages.
macro_rules! phone_words {
    () => {
        concat!(
            r"(?i:phone|telephone|tel\.?|mobile|cell|call|fax|whatsapp|sms|text me at",
            r"|telefon|handy|mobil|rufnummer|téléphone|portable|teléfono|móvil|movil|telefono|cellulare",
            r"|telefoon|mobiel|telefone|celular|電話|携帯|फ़ोन|फोन|मोबाइल)",
        )
    };
}

const PHONE: &str = concat!(
    // +CC and 7 to 14 more digits (E.164 allows 15 in all), each after at most two separators:
    // +44 20 7946 0958, +1 (415) 555-0132, +33 (0)1 42 68 53 00, +49 (0) 5102 734646.
    nb!(),
    r"\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}",
    extension!(),
    b!(),
    // The same with 00 for +, and a space after the country code (zero-padded ids, and hyphenated ones
    // such as UUIDs, are not phone numbers); 001- before a North American number.
    "|",
    b!(),
    r"00[1-9][0-9]{0,2} (?:[ .()-]{0,2}[0-9]){6,12}",
    b!(),
    "|",
    b!(),
    r"001-[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}",
    extension!(),
    b!(),
    // North American: (415) 555-0132, (415)555-0132, 415-555-0132, 415.555.0132 (one kind of separator
    // throughout), with an optional extension.
    r"|\([2-9][0-9]{2}\) ?[0-9]{3}[-. ][0-9]{4}",
    extension!(),
    b!(),
    "|",
    b!(),
    r"[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}",
    extension!(),
    b!(),
    "|",
    b!(),
    r"[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}",
    extension!(),
    b!(),
    // National numbers with a trunk 0 (then an area code, which never starts with 0), grouped as people
    // write them, 8 digits or more: 020 7946 0958, 06 1234 5678, 01 42 68 53 00, 044 668 18 00,
    // 07700 900123, 03-1234-5678, 01.42.68.53.00, 079-66697251, (0114) 496 0907, (0251)-027346. A dotted
    // or dashed date (01.02.2024) has too few groups, or a middle group too short, to qualify; the dashed
    // form takes a 2-3 digit first group so that the 4-4-4 middle of a UUID never does.
    "|",
    b!(),
    r"0[1-9](?: [0-9]{2}){4}",
    b!(),
    "|",
    b!(),
    r"0[1-9][0-9]{0,3}(?: [0-9]{3,4}){2}",
    b!(),
    "|",
    b!(),
    r"0[1-9][0-9]{0,2} [0-9]{3}(?: [0-9]{2}){2}",
    b!(),
    "|",
    b!(),
    r"0[1-9][0-9]{0,3} [0-9]{5,8}",
    b!(),
    "|",
    b!(),
    r"0[1-9][0-9]?-[0-9]{3,4}-[0-9]{4}",
    b!(),
    "|",
    b!(),
    r"0[1-9][0-9]{1,3}-[0-9]{6,8}",
    b!(),
    "|",
    b!(),
    r"0[1-9][0-9]{0,3}(?:[-.][0-9]{2,4}){3,4}",
    b!(),
    r"|\(0[1-9][0-9]{0,4}\) ?-?[0-9]{2,4}(?: ?[0-9]{2,4}){1,2}",
    b!(),
    // All the digits together after a trunk 0 and an area code: 0142685300, 01134960123, 0521833786
    // (9 to 11 digits; zero-padded ids start with 00).
    "|",
    b!(),
    r"0[1-9][0-9]{7,9}",
    b!(),
    // Japanese and Brazilian numbers without the trunk 0: 62-3286-0129; 86 6232-8601, (11) 98765-4321.
    "|",
    b!(),
    r"[0-9]{2}-[0-9]{4}-[0-9]{4}",
    b!(),
    "|",
    b!(),
    r"[1-9][0-9] 9?[0-9]{4}-[0-9]{4}",
    b!(),
    r"|\([1-9][0-9]\) ?9?[0-9]{4}-?[0-9]{4}",
    b!(),
);

/// Any other run of 8 to 15 digits (with separators) right after a word that says it is a phone number:
/// `phone: 4155550132`, `Handy 01701234567`, `電話番号は09012345678`.
const PHONE_LABELLED: &str = concat!(
    phone_words!(),
    r"[^0-9\n]{0,20}\+?[0-9](?:[ .()-]{0,2}[0-9]){7,14}",
    b!(),
);

/// The first two digits of a card number: Mastercard 22-27, Amex 34/37, JCB 35, Diners 30/36/38/39,
/// Visa 4, Mastercard and Maestro 5, Discover, UnionPay and Maestro 6. Numbers starting with 19, 20 or 21
/// (timestamps, dates written as digits) are left out this way.
macro_rules! issuer {
    () => {
        "(?:2[2-7]|3[045-9]|[456][0-9])"
    };
}

const PAYMENT_CARD: &str = concat!(
    // 13 to 19 digits together, in fours (16 to 19), or as 4-6-5 / 4-6-4 (Amex, Diners). Luhn decides.
    b!(),
    r"(?:",
    issuer!(),
    "[0-9]{11,17}|",
    issuer!(),
    "[0-9]{2}(?: [0-9]{4}){3}(?: [0-9]{1,3})?|",
    issuer!(),
    "[0-9]{2}(?:-[0-9]{4}){3}(?:-[0-9]{1,3})?",
    r"|3[046-9][0-9]{2} [0-9]{6} [0-9]{4,5}",
    r"|3[046-9][0-9]{2}-[0-9]{6}-[0-9]{4,5}",
    // 12-digit Maestro (50, 56-69) and 15-digit JCB (1800, 2131), together or in fours.
    r"|(?:50|5[6-9]|6[0-9])[0-9]{2}(?:[ -]?[0-9]{4}){2}",
    r"|(?:1800|2131)(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{3}",
    r")",
    b!(),
);

/// Country code, check digits, then groups of four (with or without a space) and a shorter last group.
/// Upper case only: `fy23 budget is large` would otherwise go to the checksum (and pass one time in 97).
const IBAN: &str = concat!(
    b!(),
    r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?",
    b!(),
);

/// A dotted quad; the validators leave out version strings and netmasks by their context, and sort the
/// address into the public or the private rule.
const IPV4: &str = concat!(
    // The first octet leaves out 0 (0.0.0.0, "this network") and 127 (loopback): neither says anything
    // about anyone.
    b!(),
    r"(?:25[0-5]|2[0-4][0-9]|1[013-9][0-9]|12[0-689]|[1-9][0-9]?)(?:\.",
    octet!(),
    r"){3}",
    b!(),
);

const IPV6: &str = concat!(
    // All eight groups, or `::` with at least three groups around it: 2001:db8::8a2e:370:7334,
    // fe80::1ff:fe23:4567:890a, 2001:db8:1::. Shorter compressed forms (::1, fe80::1) say little, and
    // `a::b` is far more often a path in C++ or Rust code.
    r"\b(?:",
    hextet!(),
    "(?::",
    hextet!(),
    "){7}|",
    hextet!(),
    "(?::",
    hextet!(),
    "){1,5}::",
    hextet!(),
    "(?::",
    hextet!(),
    "){0,5}|",
    hextet!(),
    "::",
    hextet!(),
    "(?::",
    hextet!(),
    r"){1,5})\b|\b",
    hextet!(),
    "(?::",
    hextet!(),
    "){2,6}::|::",
    hextet!(),
    "(?::",
    hextet!(),
    r"){2,6}\b",
);

/// A label, then up to 20 characters that are no digit, then the number: `SSN: 123456789`, `BSN is
/// 123456782`. The validators read the identifier from the end of the match, so the label is left out of
/// the checksum.
macro_rules! labelled {
    ($words:expr, $number:expr) => {
        concat!("(?i:", $words, r")[^0-9\n]{0,20}", $number, b!())
    };
}

const US_SSN: &str = concat!(
    // 123-45-6789 and 123 45 6789; nine digits together only after a label.
    b!(),
    r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
    b!(),
    "|",
    b!(),
    r"[0-9]{3} [0-9]{2} [0-9]{4}",
    b!(),
    "|",
    labelled!(r"\bssn|social security", "[0-9]{9}"),
);

/// Two prefix letters, six digits in pairs or together, suffix A-D; the validator leaves out the prefixes
/// HMRC never issues.
const UK_NINO: &str = concat!(
    b!(),
    r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]",
    b!(),
);

/// Sex (1, 2; 3, 4, 7, 8 for special cases), year, month, département (2A, 2B for Corsica), commune,
/// order, key: `2 84 12 76 451 089 46`, `284127645108946`.
const FR_NIR: &str = concat!(
    b!(),
    r"[1-478] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}",
    b!(),
);

/// 11 digits, together or as `12 345 678 901`.
const DE_TAX_ID: &str = concat!(b!(), r"[1-9][0-9](?: ?[0-9]{3}){3}", b!(),);

/// Area, date of birth, initial, serial and check digit: `65 170839 J 003`, `65170839J003`.
const DE_PENSION_NUMBER: &str = concat!(b!(), r"[0-9]{2} ?[0-9]{6} ?[A-Z] ?[0-9]{3}", b!(),);

/// 8 digits and the check letter: `12345678Z`, `12345678-Z`, `12.345.678-Z`.
const ES_DNI: &str = concat!(
    b!(),
    r"(?:[0-9]{8}|[0-9]{2}\.[0-9]{3}\.[0-9]{3})[ -]?[A-Z]",
    b!(),
);

/// X, Y or Z, 7 digits and the check letter: `X1234567L`, `X-1234567-L`.
const ES_NIE: &str = concat!(b!(), r"[XYZ]-?[0-9]{7}[ -]?[A-Z]", b!());

/// Surname and name letters, year, month letter, day (plus 40 for women), town code, check letter; digits
/// may be replaced by letters (omocodia). Upper or lower case.
const IT_FISCAL_CODE: &str = concat!(
    b!(),
    r"(?i:[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z])",
    b!(),
);

/// `1234.56.782`, and 8 or 9 digits after a label: nine digits alone pass the 11-test one time in eleven,
/// too often for order numbers.
const NL_BSN: &str = concat!(
    b!(),
    r"[0-9]{4}\.[0-9]{2}\.[0-9]{3}",
    b!(),
    "|",
    labelled!(
        r"\bbsn|burgerservicenummer|sofinummer|sofi-nummer|citizen service number",
        "[0-9]{8,9}"
    ),
);

/// `123.456.789-09`, or 11 digits together after a label (two check digits: one in a hundred numbers
/// passes, too often for order numbers).
const BR_CPF: &str = concat!(
    b!(),
    r"[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}",
    b!(),
    "|",
    labelled!(r"\bcpf", "[0-9]{11}"),
);

/// `12.345.678/0001-95`, or 14 digits together after a label.
const BR_CNPJ: &str = concat!(
    b!(),
    r"[0-9]{2}\.[0-9]{3}\.[0-9]{3}/[0-9]{4}-[0-9]{2}",
    b!(),
    "|",
    labelled!(r"\bcnpj", "[0-9]{14}"),
);

/// `2345 6789 0123` (the way the card prints it) or with dashes, and 12 digits together after a label.
const IN_AADHAAR: &str = concat!(
    b!(),
    r"[2-9][0-9]{3}[ -][0-9]{4}[ -][0-9]{4}",
    b!(),
    "|",
    labelled!(r"aadhaar|aadhar|\buid\b|आधार", "[2-9][0-9]{11}"),
);

/// Five letters (the fourth says who holds it: P a person, C a company, …), four digits, a letter.
const IN_PAN: &str = concat!(b!(), r"[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z]", b!(),);

/// `1234 5678 9012` or with dashes, and 12 digits together after a label.
const JP_MY_NUMBER: &str = concat!(
    b!(),
    r"[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}",
    b!(),
    "|",
    labelled!(
        r"my ?number|individual number|マイナンバー|個人番号",
        "[0-9]{12}"
    ),
);

/// A passport number after the word passport in one of the ten locales' languages: letters and digits,
/// 6 to 9 of them with at least one digit (formats differ too much between countries for a pattern alone).
const PASSPORT: &str = concat!(
    r"(?i:passport|reisepass|passeport|pasaporte|passaporto|paspoort|passaporte|旅券|パスポート|पासपोर्ट)",
    r"[^0-9\n]{0,25}?",
    b!(),
    r"(?:[A-Z]{1,2}[0-9]{6,8}|[0-9]{8,9}|[A-Z][0-9]{2}[A-Z0-9]{5,6})",
    b!(),
);

/// Words that say a date is someone's birth date, in the ten locales' languages (prefixes: `birth` for
/// birthday and birthdate, `geburt` for Geburtsdatum).
macro_rules! birth_words {
    () => {
        concat!(
            r"(?i:born|birth|\bd\.?o\.?b\b|geboren|geburt|\bgeb\.|geboorte|\bnée?\b|naissance",
            r"|nacid[oa]|nació|nacimiento|\bnat[oa]\b|nacque|nascit|nascid[oa]|nasceu|nascimento",
            r"|生年月日|生まれ|誕生日|जन्म)",
        )
    };
}

/// A date with a four-digit year or a two-digit one (the numeric ones end at an ASCII word boundary): 14/03/1961, 03-14-61, 14.03.1961, 1961-03-14,
/// 14 March 1961, March 14, 1961, 14. März 1961, 14 de marzo de 1961, 1961年3月14日.
macro_rules! date {
    () => {
        concat!(
            r"(?:[0-3]?[0-9][./ -][0-3]?[0-9][./ -](?:19|20)?[0-9]{2}",
            r"|(?:19|20)[0-9]{2}[./-][01]?[0-9][./-][0-3]?[0-9]",
            r"|[0-3]?[0-9](?:st|nd|rd|th|er|º|\.)?(?: of| de)? \p{L}{3,10}\.?,?(?: de)? (?:19|20)[0-9]{2}",
            r"|\p{L}{3,10}\.? [0-3]?[0-9](?:st|nd|rd|th)?,? (?:19|20)[0-9]{2})",
            b!(),
            r"|(?:19|20)[0-9]{2}年[01]?[0-9]月[0-3]?[0-9]日",
        )
    };
}

/// A date right after a birth word (up to 30 characters apart, no digit between), or right before one
/// (`am 11.01.1970 geboren`, `1974/07/24生まれ`, `1961年3月14日生まれ`).
const DATE_OF_BIRTH: &str = concat!(
    birth_words!(),
    r"[^0-9\n]{0,30}(?:",
    date!(),
    r")|",
    b!(),
    r"(?:[0-3]?[0-9][./-][0-3]?[0-9][./-](?:19|20)?[0-9]{2}|(?:19|20)[0-9]{2}[./-][01]?[0-9][./-][0-3]?[0-9])",
    r"(?: ?(?i:geboren|born)\b|生まれ|生)",
    r"|(?:19|20)[0-9]{2}年[01]?[0-9]月[0-3]?[0-9]日 ?(?:生まれ|生)",
);

/// US state and territory codes (and the military AA, AE, AP) before a ZIP code.
macro_rules! us_states {
    () => {
        concat!(
            "(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV",
            "|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR|GU|VI|AS|MP|AA|AE|AP)",
        )
    };
}

/// A street name as people write it: a capital letter, then letters, spaces, dots, apostrophes and
/// hyphens (no digit, no comma). Unbounded rather than counted: a counted repetition of a class this large
/// multiplies the lazy DFA's states on text full of near misses until it gives up (680 ms instead of 1 ms
/// on 300 KB of `12 rue`), and the name ends at the first digit or comma anyway.
macro_rules! street_name {
    () => {
        r"\p{Lu}[\p{L} .'-]*?"
    };
}

/// Postal addresses in the forms the ten locales write them, each of which needs more than one part to
/// match (a street word and a house number, a city and a postcode), so that a street word or a number alone
/// is not an address. Names without such a structure (`the house near the station`) are not found.
const STREET_ADDRESS: &str = concat!(
    // US: city, state, ZIP (`North Christopher, MT 09657`) and military addresses (`FPO AE 12345`).
    b!(),
    r"\p{Lu}\p{Ll}+(?:[ -]\p{Lu}\p{Ll}+)*, ",
    us_states!(),
    r" [0-9]{5}(?:-[0-9]{4})?",
    b!(),
    r"|\b(?:APO|FPO|DPO) A[AEP] [0-9]{5}",
    b!(),
    // UK postcodes, with the space: `SW1A 1AA`, `S6 3DX` (the inward letters never include CIKMOV).
    "|",
    b!(),
    r"[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}",
    b!(),
    // German and Dutch street names are one word ending in the street type, then the house number:
    // `Hauptstraße 5`, `Klaus-Lindner-Platz 59`, `Albertine-Stiffel-Weg 6-8`, `Hannahbaan 8`.
    // `-Ring` and `-Markt` only after a hyphen: `Spring 2019` and `Supermarkt 3` are no addresses.
    r"|\p{L}{2,}(?:-?(?i:straße|strasse|str\.|weg|allee|platz|gasse|damm|ufer|chaussee|straat|laan|baan",
    r"|boulevard|plein|gracht|dijk|singel|kade|steeg|hof)|-(?i:ring|markt)) [0-9]{1,4}(?:[a-z]|[-/][0-9]{1,4})?",
    b!(),
    // French: house number, then the street type: `20, rue de Poulain`, `12 bis avenue Foch`.
    "|",
    b!(),
    r"[0-9]{1,4}(?: ?(?:bis|ter))?,? (?i:rue|avenue|boulevard|bd|chemin|allée|impasse|quai)",
    b!(),
    // French without a house number, then the postcode and the town: `rue de Fontaine, 38605 Blanchet`.
    "|",
    b!(),
    r"(?i:rue|avenue|boulevard|chemin|allée|impasse|quai) [\p{L} .'-]+?, [0-9]{5} \p{Lu}",
    // Spanish: street type, name, number: `Calle de Camilo Burgos 19`, `Paseo Leticia Barros 409`.
    "|",
    b!(),
    r"(?i:calle|avenida|avda\.|paseo|plaza|camino|ronda|travesía|carretera|glorieta|pasaje|pasadizo|callejón",
    r"|alameda|cañada|urbanización|rambla|acceso|bajada|vial) (?:de |del |de la )?",
    street_name!(),
    r",? (?:n[º°]\.? ?)?[0-9]{1,4}",
    b!(),
    // Italian: street type, name, number, then a comma, a postcode or a flat (`via Python 3` is no
    // address): `Via Garibaldi 12, Milano`, `Piazza Anita, 34, 37135`, `Piazza Severino, 535 Appartamento
    // 91, 12027`.
    "|",
    b!(),
    r"(?i:via|viale|piazza|piazzale|corso|largo|vicolo|contrada|borgo|strada|rotonda|incrocio|canale",
    r"|vico) ",
    street_name!(),
    r",? [0-9]{1,4}(?:,| [0-9]{5}| \p{L}+ [0-9]{1,4},)",
    // Portuguese: street type, name, comma, number: `Rua das Flores, 123`; and a Brazilian CEP before a
    // city and state: `01310-100 São Paulo / SP`.
    "|",
    b!(),
    r"(?i:rua|avenida|av\.|travessa|alameda|praça|rodovia|estrada|largo|viela|quadra|trecho|ladeira",
    r"|vereda|conjunto|chácara|fazenda|setor|núcleo|residencial|loteamento) (?:de |do |da |dos |das )?",
    street_name!(),
    r", (?:n[º°]\.? ?)?[0-9]{1,5}",
    b!(),
    "|",
    b!(),
    r"[0-9]{5}-?[0-9]{3} \p{Lu}[^\n,0-9/]+?(?: ?/ ?| - )[A-Z]{2}",
    b!(),
    // Japanese: a prefecture then a city or ward (`群馬県渋谷区`), or a chōme (`5丁目27番18号`).
    r"|\p{Han}{1,4}[都道府県]\p{Han}+?[市区町村郡]|[0-9]{1,3}丁目",
    // Indian: a place name in Devanagari, then the six-digit PIN code (`देवास-449786`).
    r"|\p{Devanagari}{2,}[ -]{1,3}[1-9][0-9]{5}",
    b!(),
);

/// The default pack, in the order matches are reported.
pub const DEFAULT_PACK: &[PackRule] = &[
    PackRule {
        id: "email",
        description: "e-mail addresses (ann.lee+news@example.co.uk, zoë@exämple.de)",
        pattern: EMAIL,
        validator: None,
    },
    PackRule {
        id: "phone",
        description:
            "phone numbers: +CC international (or 00CC), North American, and national numbers \
                      with a trunk 0 as they are usually grouped",
        pattern: PHONE,
        validator: None,
    },
    PackRule {
        id: "phone_labelled",
        description: "8 to 15 digits after a word that says they are a phone number (phone, tel, \
                      Handy, portable, 電話, …), in any grouping",
        pattern: PHONE_LABELLED,
        validator: None,
    },
    PackRule {
        id: "payment_card",
        description: "payment card numbers: 13-19 digits, plain or grouped with spaces or dashes, \
                      Luhn checksum",
        pattern: PAYMENT_CARD,
        validator: Some(Validator::Luhn),
    },
    PackRule {
        id: "iban",
        description: "IBANs, plain or in groups of four, mod-97 checksum",
        pattern: IBAN,
        validator: Some(Validator::Iban),
    },
    PackRule {
        id: "ipv4",
        description:
            "public IPv4 addresses (not 0.x, loopback, a netmask, or a version number by its \
                      context such as `version 1.2.3.4`)",
        pattern: IPV4,
        validator: Some(Validator::Ipv4Public),
    },
    PackRule {
        id: "ipv4_private",
        description: "private, shared and link-local IPv4 addresses (10/8, 172.16/12, 192.168/16, \
                      100.64/10, 169.254/16); disable it to let them through",
        pattern: IPV4,
        validator: Some(Validator::Ipv4Private),
    },
    PackRule {
        id: "ipv6",
        description: "IPv6 addresses: full, or compressed with at least three groups",
        pattern: IPV6,
        validator: None,
    },
    PackRule {
        id: "us_ssn",
        description:
            "US Social Security numbers: 123-45-6789, 123 45 6789, or 9 digits after `SSN`; \
                      area, group and serial as issued",
        pattern: US_SSN,
        validator: Some(Validator::UsSsn),
    },
    PackRule {
        id: "uk_nino",
        description: "UK National Insurance numbers: AB 12 34 56 C, issued prefixes only",
        pattern: UK_NINO,
        validator: Some(Validator::UkNino),
    },
    PackRule {
        id: "fr_nir",
        description: "French social security numbers (NIR), 15 characters with the mod-97 key",
        pattern: FR_NIR,
        validator: Some(Validator::FrNir),
    },
    PackRule {
        id: "de_tax_id",
        description:
            "German tax identification numbers (Steuer-ID), 11 digits, MOD 11,10 check digit",
        pattern: DE_TAX_ID,
        validator: Some(Validator::DeTaxId),
    },
    PackRule {
        id: "de_pension_number",
        description: "German pension insurance numbers (Rentenversicherungsnummer), check digit",
        pattern: DE_PENSION_NUMBER,
        validator: Some(Validator::DePensionNumber),
    },
    PackRule {
        id: "es_dni",
        description: "Spanish DNI: 8 digits and the check letter",
        pattern: ES_DNI,
        validator: Some(Validator::EsDni),
    },
    PackRule {
        id: "es_nie",
        description: "Spanish foreigner numbers (NIE): X, Y or Z, 7 digits and the check letter",
        pattern: ES_NIE,
        validator: Some(Validator::EsDni),
    },
    PackRule {
        id: "it_fiscal_code",
        description: "Italian codice fiscale, 16 characters with the check character",
        pattern: IT_FISCAL_CODE,
        validator: Some(Validator::ItFiscalCode),
    },
    PackRule {
        id: "nl_bsn",
        description:
            "Dutch citizen service numbers (BSN): 1234.56.782, or 8-9 digits after `BSN`; \
                      11-test",
        pattern: NL_BSN,
        validator: Some(Validator::NlBsn),
    },
    PackRule {
        id: "br_cpf",
        description: "Brazilian CPF: 123.456.789-09, or 11 digits after `CPF`; two check digits",
        pattern: BR_CPF,
        validator: Some(Validator::BrCpf),
    },
    PackRule {
        id: "br_cnpj",
        description:
            "Brazilian CNPJ: 12.345.678/0001-95, or 14 digits after `CNPJ`; two check digits",
        pattern: BR_CNPJ,
        validator: Some(Validator::BrCnpj),
    },
    PackRule {
        id: "in_aadhaar",
        description:
            "Indian Aadhaar numbers: 2345 6789 0123, or 12 digits after `Aadhaar`; Verhoeff \
                      check digit",
        pattern: IN_AADHAAR,
        validator: Some(Validator::InAadhaar),
    },
    PackRule {
        id: "in_pan",
        description: "Indian PAN: five letters (the fourth a holder type), four digits, a letter",
        pattern: IN_PAN,
        validator: None,
    },
    PackRule {
        id: "jp_my_number",
        description:
            "Japanese My Number: 1234 5678 9012, or 12 digits after `マイナンバー`; check digit",
        pattern: JP_MY_NUMBER,
        validator: Some(Validator::JpMyNumber),
    },
    PackRule {
        id: "passport",
        description: "passport numbers after the word passport (10 languages)",
        pattern: PASSPORT,
        validator: None,
    },
    PackRule {
        id: "date_of_birth",
        description:
            "dates after a birth word in 10 languages (born, DOB, geboren, né le, nacido, \
                      nato, nascido, 生年月日, जन्म …)",
        pattern: DATE_OF_BIRTH,
        validator: None,
    },
    PackRule {
        id: "street_address",
        description: "postal addresses with more than one part: street type and house number (Hauptstraße \
                      5, 20 rue de Poulain, Calle Mayor 19, Via Garibaldi 12, Rua das Flores, 123), US \
                      city, state and ZIP, UK postcodes, Brazilian CEP with city, Japanese prefecture and \
                      city or chōme, Indian PIN after a place name",
        pattern: STREET_ADDRESS,
        validator: None,
    },
    PackRule {
        id: "openai_key",
        description:
            "OpenAI-style secret keys: sk-proj-…, sk-svcacct-…, sk-admin-…, sk-<20+ alphanumerics>",
        pattern: r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{20,})",
        validator: None,
    },
    PackRule {
        id: "anthropic_key",
        description: "Anthropic API keys: sk-ant-…",
        pattern: r"\bsk-ant-[A-Za-z0-9_-]{20,}",
        validator: None,
    },
    PackRule {
        id: "aws_access_key",
        description: "AWS access key ids: AKIA… and ASIA… (temporary)",
        pattern: r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
        validator: None,
    },
    PackRule {
        id: "github_token",
        description: "GitHub tokens: ghp_, gho_, ghu_, ghs_, ghr_ and github_pat_",
        pattern: r"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}",
        validator: None,
    },
    PackRule {
        id: "slack_token",
        description:
            "Slack tokens (xoxb-, xoxp-, xoxa-, xoxe-, xoxr-, xoxs-) and incoming-webhook URLs",
        pattern: r"\bxox[abeprs]-[0-9]+-[0-9A-Za-z-]{8,}|https://hooks\.slack\.com/services/[A-Za-z0-9_/-]{20,}",
        validator: None,
    },
    PackRule {
        id: "google_api_key",
        description: "Google API keys: AIza…",
        pattern: r"\bAIza[0-9A-Za-z_-]{35}",
        validator: None,
    },
    PackRule {
        id: "stripe_key",
        description: "Stripe secret and restricted keys: sk_live_, sk_test_, rk_live_, rk_test_",
        pattern: r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}",
        validator: None,
    },
    PackRule {
        id: "jwt",
        description: "JSON Web Tokens (bearer tokens): eyJ….eyJ….<signature>",
        pattern: r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        validator: None,
    },
    PackRule {
        id: "private_key",
        description:
            "private-key blocks: -----BEGIN [RSA|EC|OPENSSH|ENCRYPTED|PGP …] PRIVATE KEY-----",
        pattern: r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----",
        validator: None,
    },
    PackRule {
        id: "url_credentials",
        description:
            "URLs with a password in them: scheme://user:password@host, scheme://:password@host",
        pattern: r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s/?#@:]*:[^\s/?#@]+@[^\s/?#]+",
        validator: None,
    },
];

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
