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

const PHONE: &str = concat!(
    // +CC and 7 to 14 more digits (E.164 allows 15 in all), each after at most two separators:
    // +44 20 7946 0958, +1 (415) 555-0132, +33 1 42 68 53 00. `\B`: the `+` follows no word character,
    // so semver build metadata (`1.0.0+20130313144700`) is not a phone number.
    r"\B\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}\b",
    // The same with 00 for +, and a space after the country code (zero-padded ids, and hyphenated ones
    // such as UUIDs, are not phone numbers).
    r"|\b00[1-9][0-9]{0,2} (?:[ .()-]{0,2}[0-9]){6,12}\b",
    // North American: (415) 555-0132, 415-555-0132, 415.555.0132 (one kind of separator throughout).
    r"|\([2-9][0-9]{2}\) ?[0-9]{3}[-. ][0-9]{4}\b",
    r"|\b[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}\b",
    r"|\b[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}\b",
    // National numbers with a trunk 0 (then an area code, which never starts with 0), grouped as people
    // write them, 8 digits or more: 020 7946 0958, 06 1234 5678, 01 42 68 53 00, 044 668 18 00,
    // 07700 900123, 03-1234-5678, 01.42.68.53.00. A dotted or dashed date (01.02.2024) has too few groups,
    // or a middle group too short, to qualify; the dashed form takes a 2-3 digit first group so that the
    // 4-4-4 middle of a UUID never does.
    r"|\b0[1-9](?: [0-9]{2}){4}\b",
    r"|\b0[1-9][0-9]{0,3}(?: [0-9]{3,4}){2}\b",
    r"|\b0[1-9][0-9]{0,2} [0-9]{3}(?: [0-9]{2}){2}\b",
    r"|\b0[1-9][0-9]{0,3} [0-9]{6,8}\b",
    r"|\b0[1-9][0-9]?-[0-9]{3,4}-[0-9]{4}\b",
    r"|\b0[1-9][0-9]{0,3}(?:[-.][0-9]{2,4}){3,4}\b",
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
    r"\b(?:",
    issuer!(),
    "[0-9]{11,17}|",
    issuer!(),
    "[0-9]{2}(?: [0-9]{4}){3}(?: [0-9]{1,3})?|",
    issuer!(),
    "[0-9]{2}(?:-[0-9]{4}){3}(?:-[0-9]{1,3})?",
    r"|3[046-9][0-9]{2} [0-9]{6} [0-9]{4,5}",
    r"|3[046-9][0-9]{2}-[0-9]{6}-[0-9]{4,5})\b",
);

/// Country code, check digits, then groups of four (with or without a space) and a shorter last group.
/// Upper case only: `fy23 budget is large` would otherwise go to the checksum (and pass one time in 97).
const IBAN: &str = r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b";

const IPV4: &str = concat!(
    // The first octet leaves out 0 (0.0.0.0, "this network") and 127 (loopback): neither says anything
    // about anyone.
    r"\b(?:25[0-5]|2[0-4][0-9]|1[013-9][0-9]|12[0-689]|[1-9][0-9]?)(?:\.",
    octet!(),
    r"){3}\b",
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
        description: "IPv4 addresses (except 0.x and loopback 127.x)",
        pattern: IPV4,
        validator: None,
    },
    PackRule {
        id: "ipv6",
        description: "IPv6 addresses: full, or compressed with at least three groups",
        pattern: IPV6,
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
