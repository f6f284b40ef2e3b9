//! Each checksum, valid and invalid, table by table. Valid values are published examples or drawn by
//! tests/national_ids.py (the algorithms written again in Python); each invalid one changes one character.

use super::*;

fn check(cases: &[(&str, bool)], f: fn(&str) -> bool, what: &str) {
    for &(text, ok) in cases {
        assert_eq!(f(text), ok, "{what}: {text:?}");
    }
}

#[test]
fn us_ssn_table() {
    let cases = [
        ("078-05-1120", true),
        ("110-79-8637", true),
        ("SSN 253354191", true),
        ("000-12-3456", false),
        ("666-12-3456", false),
        ("900-12-3456", false),
        ("123-00-4567", false),
        ("123-45-0000", false),
        ("123-45-678", false),
    ];
    check(&cases, us_ssn, "us_ssn");
}

#[test]
fn uk_nino_table() {
    let cases = [
        ("AB 12 34 56 C", true),
        ("SM598750D", true),
        ("EL 28 40 45 C", true),
        ("ZZ 91 41 77 T", false), // Faker's: ZZ is never issued, nor is suffix T
        ("ZZ123456A", false),
        ("GB123456A", false),
        ("DA123456A", false),
        ("AO123456A", false),
        ("AB123456E", false),
    ];
    check(&cases, uk_nino, "uk_nino");
}

#[test]
fn fr_nir_table() {
    let cases = [
        ("2 84 12 76 451 089 93", true),
        ("284127645108993", true),
        ("115104402908644", true),
        ("294068816096652", true), // Faker fr_FR
        ("284127645108994", false),
        ("584127645108993", false),
    ];
    check(&cases, fr_nir, "fr_nir");
    // Corsica: 2A counts as 19, 2B as 18.
    let corsica = 1_850_219_015_001u64;
    let key = 97 - corsica % 97;
    assert!(fr_nir(&format!("185022A015001{key:02}")));
    let corsica_b = 1_850_218_015_001u64;
    let key_b = 97 - corsica_b % 97;
    assert!(fr_nir(&format!("185022B015001{key_b:02}")));
    assert!(!fr_nir(&format!("185022B015001{key:02}")));
}

#[test]
fn de_tax_id_table() {
    let cases = [
        ("86095742719", true),
        ("47036892816", true),
        ("65 929 970 489", true),
        ("66523917040", true),
        ("86095742718", false), // check digit
        ("06095742719", false), // leading zero
        ("12345678903", false), // no digit repeated
        ("11111111116", false), // one digit ten times
    ];
    check(&cases, de_tax_id, "de_tax_id");
}

#[test]
fn de_pension_number_table() {
    let cases = [
        ("15 070649 C 103", true),
        ("15070649C103", true),
        ("58170605Y076", true), // Faker de_DE
        ("74120833L387", true),
        ("15070649C104", false),
        ("15070649D103", false),
        ("15321349C103", false), // month 13
        ("15000649C103", false), // day 0
    ];
    check(&cases, de_pension_number, "de_pension_number");
}

#[test]
fn es_dni_table() {
    let cases = [
        ("12345678Z", true),
        ("12345678-Z", true),
        ("12.345.678-Z", true),
        ("X1234567L", true),
        ("Z8500478M", true),
        ("12345678A", false),
        ("X1234567M", false),
        ("A1234567L", false),
    ];
    check(&cases, es_dni, "es_dni");
}

#[test]
fn it_fiscal_code_table() {
    let cases = [
        ("RSSMRA85T10A562S", true),
        ("RSSMRA61C54F205M", true),
        ("rssmra61c54f205m", true),
        ("CBDTFB64E48C255S", true),
        ("FFRVRL03M65M209P", true),  // Faker it_IT
        ("RSSMRA61C54F205X", false), // the example: the check letter would be M
        ("RSSMRA85T10A562T", false),
    ];
    check(&cases, it_fiscal_code, "it_fiscal_code");
}

#[test]
fn nl_bsn_table() {
    let cases = [
        ("111222333", true),
        ("123456782", true),
        ("1234.56.782", true),
        ("BSN: 23477283", true), // 023477283 with the leading zero left out
        ("123456789", false),
        ("000000000", false),
        ("12345678", false),
    ];
    check(&cases, nl_bsn, "nl_bsn");
}

#[test]
fn br_cpf_and_cnpj_tables() {
    let cpf = [
        ("529.982.247-25", true),
        ("52998224725", true),
        ("677.979.049-44", true), // Faker pt_BR
        ("529.982.247-24", false),
        ("111.111.111-11", false), // valid checksum, never issued
        ("5299822472", false),
    ];
    check(&cpf, br_cpf, "br_cpf");
    let cnpj = [
        ("11.222.333/0001-81", true),
        ("29.717.161/0001-82", true), // Faker pt_BR
        ("11222333000181", true),
        ("11.222.333/0001-82", false),
        ("00.000.000/0000-00", false),
    ];
    check(&cnpj, br_cnpj, "br_cnpj");
}

#[test]
fn in_aadhaar_table() {
    let cases = [
        ("2341 2341 2346", true),
        ("5498 0830 5116", true),
        ("Aadhaar: 549808305116", true),
        ("2341 2341 2345", false),
        ("1341 2341 2346", false), // never starts with 0 or 1
        ("2341 2341 234", false),
    ];
    check(&cases, in_aadhaar, "in_aadhaar");
}

#[test]
fn jp_my_number_table() {
    let cases = [
        ("123456789018", true),
        ("1234 5678 9018", true),
        ("3178-0039-4671", true),
        ("123456789017", false),
        ("12345678901", false),
    ];
    check(&cases, jp_my_number, "jp_my_number");
}

#[test]
fn standalone_rejects_a_group_of_a_longer_number() {
    let text = "card 4111 1111 1111 1112, id 2341 2341 2346.";
    let inner = text.find("4111").unwrap_or(0);
    assert!(!standalone(text, inner, inner + 14));
    let second = text.find("1111 1111 1112").unwrap_or(0);
    assert!(!standalone(text, second, second + 14));
    let id = text.find("2341").unwrap_or(0);
    assert!(standalone(text, id, id + 14));
    let other = "room 42 123-45-6789 7";
    let ssn = other.find("123").unwrap_or(0);
    assert!(standalone(other, ssn, ssn + 11));
}
