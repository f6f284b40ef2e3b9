//! The default pack's patterns: what each kind of personal data or secret looks like, as regex text built
//! from shared fragments (`macro_rules!` below, so that the whole pattern is one `&'static str`). The rule
//! table that names them, with ids, validators and descriptions, is `pack.rs`.

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
pub(super) const EMAIL: &str = r"\b\w[\w.%+-]*@(?:\w(?:[\w-]*\w)?\.)+[^\W\d_]{2,}\b";

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

pub(super) const PHONE: &str = concat!(
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
pub(super) const PHONE_LABELLED: &str = concat!(
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

pub(super) const PAYMENT_CARD: &str = concat!(
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
pub(super) const IBAN: &str = concat!(
    b!(),
    r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?",
    b!(),
);

/// A dotted quad; the validators leave out version strings and netmasks by their context, and sort the
/// address into the public or the private rule.
pub(super) const IPV4: &str = concat!(
    // The first octet leaves out 0 (0.0.0.0, "this network") and 127 (loopback): neither says anything
    // about anyone.
    b!(),
    r"(?:25[0-5]|2[0-4][0-9]|1[013-9][0-9]|12[0-689]|[1-9][0-9]?)(?:\.",
    octet!(),
    r"){3}",
    b!(),
);

pub(super) const IPV6: &str = concat!(
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

pub(super) const US_SSN: &str = concat!(
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
pub(super) const UK_NINO: &str = concat!(
    b!(),
    r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]",
    b!(),
);

/// Sex (1, 2; 3, 4, 7, 8 for special cases), year, month, département (2A, 2B for Corsica), commune,
/// order, key: `2 84 12 76 451 089 46`, `284127645108946`.
pub(super) const FR_NIR: &str = concat!(
    b!(),
    r"[1-478] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}",
    b!(),
);

/// 11 digits, together or as `12 345 678 901`.
pub(super) const DE_TAX_ID: &str = concat!(b!(), r"[1-9][0-9](?: ?[0-9]{3}){3}", b!(),);

/// Area, date of birth, initial, serial and check digit: `65 170839 J 003`, `65170839J003`.
pub(super) const DE_PENSION_NUMBER: &str =
    concat!(b!(), r"[0-9]{2} ?[0-9]{6} ?[A-Z] ?[0-9]{3}", b!(),);

/// 8 digits and the check letter: `12345678Z`, `12345678-Z`, `12.345.678-Z`.
pub(super) const ES_DNI: &str = concat!(
    b!(),
    r"(?:[0-9]{8}|[0-9]{2}\.[0-9]{3}\.[0-9]{3})[ -]?[A-Z]",
    b!(),
);

/// X, Y or Z, 7 digits and the check letter: `X1234567L`, `X-1234567-L`.
pub(super) const ES_NIE: &str = concat!(b!(), r"[XYZ]-?[0-9]{7}[ -]?[A-Z]", b!());

/// Surname and name letters, year, month letter, day (plus 40 for women), town code, check letter; digits
/// may be replaced by letters (omocodia). Upper or lower case.
pub(super) const IT_FISCAL_CODE: &str = concat!(
    b!(),
    r"(?i:[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z])",
    b!(),
);

/// `1234.56.782`, and 8 or 9 digits after a label: nine digits alone pass the 11-test one time in eleven,
/// too often for order numbers.
pub(super) const NL_BSN: &str = concat!(
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
pub(super) const BR_CPF: &str = concat!(
    b!(),
    r"[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}",
    b!(),
    "|",
    labelled!(r"\bcpf", "[0-9]{11}"),
);

/// `12.345.678/0001-95`, or 14 digits together after a label.
pub(super) const BR_CNPJ: &str = concat!(
    b!(),
    r"[0-9]{2}\.[0-9]{3}\.[0-9]{3}/[0-9]{4}-[0-9]{2}",
    b!(),
    "|",
    labelled!(r"\bcnpj", "[0-9]{14}"),
);

/// `2345 6789 0123` (the way the card prints it) or with dashes, and 12 digits together after a label.
pub(super) const IN_AADHAAR: &str = concat!(
    b!(),
    r"[2-9][0-9]{3}[ -][0-9]{4}[ -][0-9]{4}",
    b!(),
    "|",
    labelled!(r"aadhaar|aadhar|\buid\b|आधार", "[2-9][0-9]{11}"),
);

/// Five letters (the fourth says who holds it: P a person, C a company, …), four digits, a letter.
pub(super) const IN_PAN: &str = concat!(b!(), r"[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z]", b!(),);

/// `1234 5678 9012` or with dashes, and 12 digits together after a label.
pub(super) const JP_MY_NUMBER: &str = concat!(
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
pub(super) const PASSPORT: &str = concat!(
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
pub(super) const DATE_OF_BIRTH: &str = concat!(
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
pub(super) const STREET_ADDRESS: &str = concat!(
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
