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

mod patterns;

use patterns::{
    BR_CNPJ, BR_CPF, DATE_OF_BIRTH, DE_PENSION_NUMBER, DE_TAX_ID, EMAIL, ES_DNI, ES_NIE, FR_NIR,
    IBAN, IN_AADHAAR, IN_PAN, IPV4, IPV6, IT_FISCAL_CODE, JP_MY_NUMBER, NL_BSN, PASSPORT,
    PAYMENT_CARD, PHONE, PHONE_LABELLED, STREET_ADDRESS, UK_NINO, US_SSN,
};

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
