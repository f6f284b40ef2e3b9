//! The default pack, table by table: what each rule finds, and what no rule may find.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;
use crate::rules::RuleSet;

fn pack() -> RuleSet {
    RuleSet::new(default_rules()).unwrap()
}

/// The matches of one pack rule in `text`, as text.
fn found<'t>(set: &RuleSet, id: &str, text: &'t str) -> Vec<&'t str> {
    set.scan(text)
        .into_iter()
        .filter(|m| set.ids()[m.rule] == id)
        .map(|m| &text[m.start..m.end])
        .collect()
}

#[test]
fn ids_are_stable() {
    // Configs name these ids (to replace or disable a rule): renaming one breaks them.
    let ids: Vec<&str> = DEFAULT_PACK.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "email",
            "phone",
            "phone_labelled",
            "payment_card",
            "iban",
            "ipv4",
            "ipv4_private",
            "ipv6",
            "us_ssn",
            "uk_nino",
            "fr_nir",
            "de_tax_id",
            "de_pension_number",
            "es_dni",
            "es_nie",
            "it_fiscal_code",
            "nl_bsn",
            "br_cpf",
            "br_cnpj",
            "in_aadhaar",
            "in_pan",
            "jp_my_number",
            "passport",
            "date_of_birth",
            "street_address",
            "openai_key",
            "anthropic_key",
            "aws_access_key",
            "github_token",
            "slack_token",
            "google_api_key",
            "stripe_key",
            "jwt",
            "private_key",
            "url_credentials",
        ]
    );
    assert_eq!(pack().ids(), ids);
    assert!(DEFAULT_PACK.iter().all(|r| !r.description.is_empty()));
}

#[test]
fn every_rule_finds_what_it_is_for() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("email", "write to ann.lee+news@example.co.uk today", &["ann.lee+news@example.co.uk"]),
        ("email", "Mail: JOHN_DOE@Mail.Example.COM.", &["JOHN_DOE@Mail.Example.COM"]),
        ("email", "à zoë.müller@exämple.de, 😀", &["zoë.müller@exämple.de"]),
        ("email", "<a.b@sub-domain.example.org>, c@d.io", &["a.b@sub-domain.example.org", "c@d.io"]),
        ("phone", "call +44 20 7946 0958 now", &["+44 20 7946 0958"]),
        ("phone", "US: +1 (415) 555-0132.", &["+1 (415) 555-0132"]),
        ("phone", "Paris +33 1 42 68 53 00", &["+33 1 42 68 53 00"]),
        ("phone", "whatsapp +4915123456789", &["+4915123456789"]),
        ("phone", "tel:+81-3-1234-5678", &["+81-3-1234-5678"]),
        ("phone", "or 0044 20 7946 0958", &["0044 20 7946 0958"]),
        ("phone", "(415) 555-0132 or 415-555-0132 or 415.555.0132", &["(415) 555-0132", "415-555-0132", "415.555.0132"]),
        ("phone", "London 020 7946 0958", &["020 7946 0958"]),
        ("phone", "Paris 01 42 68 53 00 / 01.42.68.53.00", &["01 42 68 53 00", "01.42.68.53.00"]),
        ("phone", "mobile 07700 900123", &["07700 900123"]),
        ("phone", "Tokyo 03-1234-5678", &["03-1234-5678"]),
        ("phone", "Berlin 030 1234567", &["030 1234567"]),
        ("phone", "Zürich 044 668 18 00, Roma 06 1234 5678", &["044 668 18 00", "06 1234 5678"]),
        ("phone", "(710)827-3464x686 or 883-237-8876 ext. 232", &["(710)827-3464x686", "883-237-8876 ext. 232"]),
        ("phone", "+1-912-490-4047x96669, 001-335-504-9258", &["+1-912-490-4047x96669", "001-335-504-9258"]),
        ("phone", "+44(0)131 4960979, (0114) 4960907, (01632) 960 788", &["+44(0)131 4960979", "(0114) 4960907", "(01632) 960 788"]),
        ("phone", "Büro 06958 96935, +49 (0) 5102 734646", &["06958 96935", "+49 (0) 5102 734646"]),
        ("phone", "Ufficio 0521833786 o 097525899", &["0521833786", "097525899"]),
        ("phone", "bel 068-6958969 of (0251)-027346", &["068-6958969", "(0251)-027346"]),
        ("phone", "ligue 86 6232-8601 ou (11) 98765-4321", &["86 6232-8601", "(11) 98765-4321"]),
        ("phone", "電話080-9825-9791まで、または62-3286-0129", &["080-9825-9791", "62-3286-0129"]),
        ("phone", "कॉल करें 079-66697251", &["079-66697251"]),
        ("phone_labelled", "phone: 4155550132, Handy 01701234567", &["phone: 4155550132", "Handy 01701234567"]),
        ("phone_labelled", "携帯番号は09012345678です", &["携帯番号は09012345678"]),
        ("payment_card", "card 4111 1111 1111 1111 exp 12/27", &["4111 1111 1111 1111"]),
        ("payment_card", "4111-1111-1111-1111", &["4111-1111-1111-1111"]),
        ("payment_card", "pan=4111111111111111;", &["4111111111111111"]),
        ("payment_card", "paid 2024 4111 1111 1111 1111 in full", &["4111 1111 1111 1111"]),
        ("payment_card", "mc 5555 5555 5555 4444", &["5555 5555 5555 4444"]),
        ("payment_card", "mc 2223003122003222", &["2223003122003222"]),
        ("payment_card", "amex 378282246310005 / 3782 822463 10005", &["378282246310005", "3782 822463 10005"]),
        ("payment_card", "diners 30569309025904 / 3056 930902 5904", &["30569309025904", "3056 930902 5904"]),
        ("payment_card", "discover 6011111111111117, jcb 3530111333300000", &["6011111111111117", "3530111333300000"]),
        ("payment_card", "visa-13 4222222222222", &["4222222222222"]),
        ("payment_card", "unionpay 6221 2600 0000 0000 001", &["6221 2600 0000 0000 001"]),
        ("payment_card", "maestro 501849110140 / 6759 6498 2648", &["501849110140", "6759 6498 2648"]),
        ("payment_card", "jcb 180059276819487", &["180059276819487"]),
        ("payment_card", "visa-19 4771422804726812487", &["4771422804726812487"]),
        ("payment_card", "カード4111111111111111で支払い", &["4111111111111111"]),
        ("iban", "IBAN GB82 WEST 1234 5698 7654 32.", &["GB82 WEST 1234 5698 7654 32"]),
        ("iban", "BE68 5390 0754 7034 2024", &["BE68 5390 0754 7034"]),
        ("iban", "DE89370400440532013000 and DE89 3704 0044 0532 0130 00", &["DE89370400440532013000", "DE89 3704 0044 0532 0130 00"]),
        ("iban", "FR14 2004 1010 0505 0001 3M02 606", &["FR14 2004 1010 0505 0001 3M02 606"]),
        ("iban", "to NL91ABNA0417164300, ref BE68 5390 0754 7034", &["NL91ABNA0417164300", "BE68 5390 0754 7034"]),
        ("ipv4_private", "from 10.0.0.1 and 192.168.1.254", &["10.0.0.1", "192.168.1.254"]),
        ("ipv4_private", "172.16.0.9, 172.32.0.9, 100.64.1.1, 169.254.0.1", &["172.16.0.9", "100.64.1.1", "169.254.0.1"]),
        ("ipv4", "from 10.0.0.1 and 172.32.0.9", &["172.32.0.9"]),
        ("ipv4", "dns 8.8.8.8, mask 255.255.255.0, broadcast 255.255.255.255", &["8.8.8.8"]),
        ("ipv4", "upstream=203.0.113.7:8080", &["203.0.113.7"]),
        ("ipv4", "147.65.255.182を使って接続", &["147.65.255.182"]),
        ("ipv4", "server 8.8.4.4 (version 1.2.3.4), agent 9.9.9.9", &["8.8.4.4", "9.9.9.9"]),
        ("ipv6", "at 2001:0db8:85a3:0000:0000:8a2e:0370:7334", &["2001:0db8:85a3:0000:0000:8a2e:0370:7334"]),
        ("ipv6", "2001:db8::8a2e:370:7334", &["2001:db8::8a2e:370:7334"]),
        ("ipv6", "link fe80::1ff:fe23:4567:890a%eth0", &["fe80::1ff:fe23:4567:890a"]),
        ("ipv6", "[2001:db8::1]:443", &["2001:db8::1"]),
        ("ipv6", "prefix 2001:db8:1:: routed", &["2001:db8:1::"]),
        ("ipv6", "mapped ::ffff:c000:280", &["::ffff:c000:280"]),
        ("us_ssn", "SSN 110-79-8637, ssn: 253354191, 299 94 1190", &["110-79-8637", "ssn: 253354191", "299 94 1190"]),
        ("uk_nino", "NI number AB 12 34 56 C or SM598750D", &["AB 12 34 56 C", "SM598750D"]),
        ("fr_nir", "NIR 2 84 12 76 451 089 93 / 115104402908644", &["2 84 12 76 451 089 93", "115104402908644"]),
        ("de_tax_id", "Steuer-ID 86095742719, IdNr. 65 929 970 489", &["86095742719", "65 929 970 489"]),
        ("de_pension_number", "RV-Nummer 15 070649 C 103 bzw. 58170605Y076", &["15 070649 C 103", "58170605Y076"]),
        ("es_dni", "DNI 12345678Z y 12.345.678-Z", &["12345678Z", "12.345.678-Z"]),
        ("es_nie", "NIE X1234567L", &["X1234567L"]),
        ("it_fiscal_code", "CF RSSMRA61C54F205M, cf rssmra85t10a562s", &["RSSMRA61C54F205M", "rssmra85t10a562s"]),
        ("nl_bsn", "BSN: 111222333, burgerservicenummer 1234.56.782", &["BSN: 111222333", "1234.56.782"]),
        ("br_cpf", "529.982.247-25 ou CPF 52998224725", &["529.982.247-25", "CPF 52998224725"]),
        ("br_cnpj", "CNPJ 11.222.333/0001-81", &["11.222.333/0001-81"]),
        ("in_aadhaar", "Aadhaar 2341 2341 2346, aadhaar no. 549808305116", &["2341 2341 2346", "aadhaar no. 549808305116"]),
        ("in_pan", "PAN ABCPE1234F", &["ABCPE1234F"]),
        ("jp_my_number", "マイナンバー：1234 5678 9018、個人番号123456789018です", &["1234 5678 9018", "個人番号123456789018"]),
        ("passport", "passport number: P36625851; Reisepass-Nr. C01X00T47", &["passport number: P36625851", "Reisepass-Nr. C01X00T47"]),
        ("passport", "パスポート番号はTK1234567です", &["パスポート番号はTK1234567"]),
        ("date_of_birth", "Maria Rossi, born 14/03/1961, via Garibaldi 12", &["born 14/03/1961"]),
        ("date_of_birth", "DOB: 1961-03-14. Date of birth 03-14-61", &["DOB: 1961-03-14", "birth 03-14-61"]),
        ("date_of_birth", "geboren am 14. März 1961; Geburtsdatum: 14.03.1961", &["geboren am 14. März 1961", "Geburtsdatum: 14.03.1961"]),
        ("date_of_birth", "née le 14 mars 1961, nacido el 14 de marzo de 1961", &["née le 14 mars 1961", "nacido el 14 de marzo de 1961"]),
        ("date_of_birth", "nata il 14/03/1961; data de nascimento: 14/03/1961", &["nata il 14/03/1961", "nascimento: 14/03/1961"]),
        ("date_of_birth", "born on March 14, 1961", &["born on March 14, 1961"]),
        ("date_of_birth", "生年月日：1961年3月14日、1985年7月2日生まれ", &["生年月日：1961年3月14日", "1985年7月2日生まれ"]),
        ("date_of_birth", "जन्म तिथि: 14/03/1961", &["जन्म तिथि: 14/03/1961"]),
        ("date_of_birth", "Ursula wurde am 11.01.1970 geboren, 美加子は1974/07/24生まれ", &["11.01.1970 geboren", "1974/07/24生まれ"]),
        ("date_of_birth", "Adela nació el 22/07/1994; Bruna nasceu em 29/05/2001", &["nació el 22/07/1994", "nasceu em 29/05/2001"]),
        ("street_address", "4323 Autumn Pine Suite 574, North Williamburgh, WV 45334", &["North Williamburgh, WV 45334"]),
        ("street_address", "ship to PSC 1234, Box 5678, APO AE 09876", &["APO AE 09876"]),
        ("street_address", "Springfield, IL 62704 and Winston-Salem, NC 27101", &["Springfield, IL 62704", "Winston-Salem, NC 27101"]),
        ("street_address", "Flat 23, Beverley Hills, Gardinermouth, PL1 8SG; London SW1A 1AA", &["PL1 8SG", "SW1A 1AA"]),
        ("street_address", "Hauptstraße 5, Klaus-Lindner-Platz 59 und Albertine-Stiffel-Weg 6-8", &["Hauptstraße 5", "Lindner-Platz 59", "Stiffel-Weg 6-8"]),
        ("street_address", "Hannahbaan 8, 9590NC Colmschate; Keizersgracht 123a", &["Hannahbaan 8", "Keizersgracht 123a"]),
        ("street_address", "Karla-Sorgatz-Ring 6/9 en Estherboulevard 250", &["Sorgatz-Ring 6/9", "Estherboulevard 250"]),
        ("street_address", "boulevard Éric Lamy, 67320 Coste", &["boulevard Éric Lamy, 67320 C"]),
        ("street_address", "Piazza Severino, 535 Appartamento 91, 12027 Pradleves", &["Piazza Severino, 535 Appartamento 91,"]),
        ("street_address", "20, rue de Poulain, 74159 BenoitVille; 12 bis avenue Foch", &["20, rue", "12 bis avenue"]),
        ("street_address", "Calle de Camilo Burgos 19, Alicante; Paseo Leticia Barros 409", &["Calle de Camilo Burgos 19", "Paseo Leticia Barros 409"]),
        ("street_address", "abita in via Garibaldi 12, Milano; Piazza Anita, 34, 37135 Verona", &["via Garibaldi 12,", "Piazza Anita, 34,"]),
        ("street_address", "Rua das Flores, 123, Centro, 01310-100 São Paulo / SP", &["Rua das Flores, 123", "01310-100 São Paulo / SP"]),
        ("street_address", "住所は群馬県渋谷区中三依5丁目27番18号です", &["群馬県渋谷区", "5丁目"]),
        ("street_address", "पता: 43/23 नेहा बनर्जी, हैदराबाद-749118", &["हैदराबाद-749118"]),
        ("openai_key", "OPENAI_API_KEY=sk-proj-abcDEF123_-ghiJKL456mnoPQR789", &["sk-proj-abcDEF123_-ghiJKL456mnoPQR789"]),
        ("openai_key", "key sk-T3BlbkFJabcdefghijklmnopqrstuvwxyz0123456789AB", &["sk-T3BlbkFJabcdefghijklmnopqrstuvwxyz0123456789AB"]),
        ("anthropic_key", "x-api-key: sk-ant-api03-AbC_dEf-123456789012345678901234", &["sk-ant-api03-AbC_dEf-123456789012345678901234"]),
        ("aws_access_key", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE", &["AKIAIOSFODNN7EXAMPLE"]),
        ("aws_access_key", "ASIAY34FZKBOKMUTVV7A", &["ASIAY34FZKBOKMUTVV7A"]),
        ("github_token", "token ghp_0123456789abcdefghijABCDEFGHIJ012345", &["ghp_0123456789abcdefghijABCDEFGHIJ012345"]),
        ("github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", &["github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"]),
        ("slack_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", &["xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"]),
        ("slack_token", "POST https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", &["https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"]),
        ("google_api_key", "key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe&q=1", &["AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"]),
        ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc and rk_test_51Habcdefghijklmnop", &["sk_live_4eC39HqLyjWDarjtT1zdp7dc", "rk_test_51Habcdefghijklmnop"]),
        (
            "jwt",
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            &["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
        ),
        ("jwt", "unsigned eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjMifQ.", &["eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjMifQ."]),
        ("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE", &["-----BEGIN RSA PRIVATE KEY-----"]),
        ("private_key", "-----BEGIN PRIVATE KEY-----", &["-----BEGIN PRIVATE KEY-----"]),
        ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----", &["-----BEGIN OPENSSH PRIVATE KEY-----"]),
        ("private_key", "-----BEGIN ENCRYPTED PRIVATE KEY-----", &["-----BEGIN ENCRYPTED PRIVATE KEY-----"]),
        ("private_key", "-----BEGIN EC PRIVATE KEY-----", &["-----BEGIN EC PRIVATE KEY-----"]),
        ("private_key", "-----BEGIN PGP PRIVATE KEY BLOCK-----", &["-----BEGIN PGP PRIVATE KEY BLOCK-----"]),
        ("url_credentials", "db=postgres://admin:s3cr3t@db.internal:5432/app", &["postgres://admin:s3cr3t@db.internal:5432"]),
        ("url_credentials", "redis://:hunter2@cache:6379 and https://bob:pw@example.com/x", &["redis://:hunter2@cache:6379", "https://bob:pw@example.com"]),
    ];
    let set = pack();
    for &(id, text, expected) in cases {
        assert_eq!(found(&set, id, text), expected, "{id} in {text:?}");
    }
}

#[test]
fn ordinary_text_matches_no_rule() {
    let cases: &[(&str, &str)] = &[
        ("prose", "The quick brown fox jumps over the lazy dog. Meet me at 10:30 in room 4B."),
        ("small numbers", "extension 4021, PIN 123456, room 12345, 1 2 3 4 5 6 7 8, score 3-2"),
        ("order numbers failing Luhn", "Order 4000123456789010 and 4111 1111 1111 1112 were refunded"),
        ("long ids that are no card", "Order #1234567890123, tracking 1Z999AA10123456784, population 8000000000"),
        ("ISBNs", "ISBN 978-3-16-148410-0, ISBN 9783161484100, ISBN 0-306-40615-2"),
        ("ISO timestamps", "2024-11-22T08:14:03Z, 2024-11-22 08:14:03.123+01:00, 20241122"),
        ("epoch timestamps", "ts=1700000000 ts_ms=1700000000123 ns=1700000000123456789"),
        ("digit timestamps", "Luhn-valid ones: 20240115093005, 2024011509300005, 19991231235952"),
        ("dates", "11/22/2024, 22.11.2024 08:14, 01.02.2024 10:30, 01-02-2024, Mon, 22 Nov 2024 08:14:03 GMT"),
        ("dates then small numbers", "2049-11-03 42 42, on 05 10 15 and 03 42 42 42"),
        ("dates without a birth word", "due 14/03/1961, shipped 2024-03-14, 14 March 2024, 2024年3月14日"),
        ("version strings", "version 1.2.3.4, v10.0.0.1, Version: 2.4.1.0, build 192.168.0.12, 1.2.3.4.5"),
        ("netmasks", "mask 255.255.255.0, netmask 255.255.240.0 and 255.0.0.0"),
        ("grouped numbers", "serial 4111 1111 1111 1112, 1234 5678 9012 3456 7890"),
        ("ids failing their checksum", "12345678A, X1234567M, RSSMRA85T10A562T, 86095742718, 529.982.247-24, \
                                       2341 2341 2345, 123-00-4567, ZZ 91 41 77 T, 1234.56.789"),
        ("11 digits without a label", "ref 52998224725, 11222333000181"),
        ("street words without an address", "install via Homebrew 4 or via HTTP 2; Notepad 2, Spring 2019, \
                                              3 places left, 2 route tables, Plaza Hotel, in 2024 US Sales, Thanks, OK 2"),
        ("places without an address", "Meet me in Milano or Paris, Berlin 2024, Tokyo 3 days, 東京都内, 京都"),
        ("passport without a number", "passport photo, renew your passport in 2024"),
        ("semver", "v1.2.3, 2.10.0, 1.0.0-alpha.1+001, 1.0.0+20130313144700, Python 3.11.7"),
        ("four-part build numbers", "Chrome 120.0.6099.109, Windows 10.0.19041.1"),
        ("UUIDs", "550e8400-e29b-41d4-a716-446655440000 and 123e4567-e89b-12d3-a456-426614174000"),
        ("decimal UUIDs", "00000000-0000-0000-0000-000000000000, 12345678-0123-4567-8901-234567890123, \
                           00000000-0010-0000-0000-000000000000"),
        ("prices", "$1,299.99, € 49,90, 1.234.567,89 EUR, 4999 USD, total: 12345, up +12.5% since 2019"),
        ("hashes", "commit 2d9be8a1f0c3e4b5a6978877665544332211ffee, sha256 e3b0c44298fc1c149afbf4c8996fb924"),
        ("code paths", "std::vector<int>, a::b::c, Foo::Bar::baz(), Dead::Beef"),
        ("handles and package pins", "@username, @types/node, lodash@4.17.21, react@latest, user@localhost"),
        ("loopback and short IPv6", "localhost 127.0.0.1:8080, bind 0.0.0.0, ::1, fe80::1"),
        ("MAC and clock times", "mac 00:1a:2b:3c:4d:5e at 12:30:45 and 08:00"),
        ("public keys", "-----BEGIN PUBLIC KEY-----\n-----BEGIN CERTIFICATE-----\na private key is secret"),
        ("key-like words", "sk-learn, task-1234, xoxo-gossip-girl-fan-club, AKIA short, ghp_short, eyJ only"),
        ("upper-case codes", "SKU12 ABCD EFGH IJKL, ISO8601, AB12CDEFGHIJ1234"),
        ("plain URLs", "https://example.com/path?q=1#frag, http://[::1]:8080/, ftp://files.example.org/a:b"),
        ("non-ASCII digits", "٤١١١١١١١١١١١١١١١ and ４１１１１１１１１１１１１１１１"),
    ];
    let set = pack();
    for &(what, text) in cases {
        let hits: Vec<(&str, &str)> = set
            .scan(text)
            .into_iter()
            .map(|m| (set.ids()[m.rule].as_str(), &text[m.start..m.end]))
            .collect();
        assert!(hits.is_empty(), "{what}: {hits:?}");
        assert!(set.matched(text).is_empty(), "{what}");
    }
}

#[test]
fn matched_agrees_with_scan_on_mixed_text() {
    let text = "Hi, I'm ann@example.com (+44 20 7946 0958). Card 4111 1111 1111 1111, order 4000123456789010, \
                server 10.1.2.3, v1.2.3, key AKIAIOSFODNN7EXAMPLE. Grüße, Zoë 👋";
    let set = pack();
    let from_scan: Vec<usize> = {
        let mut rules: Vec<usize> = set.scan(text).into_iter().map(|m| m.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        rules
    };
    assert_eq!(set.matched(text), from_scan);
    let ids: Vec<&str> = from_scan.iter().map(|&i| set.ids()[i].as_str()).collect();
    assert_eq!(
        ids,
        [
            "email",
            "phone",
            "payment_card",
            "ipv4_private",
            "aws_access_key"
        ]
    );
}

#[test]
fn matching_stays_linear_on_adversarial_text() {
    // Long runs of what the patterns are made of: digits with separators, hex groups with colons, local
    // parts without a domain, key prefixes without a key. Linear time keeps each of these far below 1 s;
    // quadratic time would take minutes. About 100 KB each: a debug build on 2 busy cores scans the 35-rule
    // pack at well under 1 MB/s.
    let texts = [
        "4 ".repeat(25_000),
        "1-".repeat(25_000),
        "+1 ".repeat(25_000),
        "ab:".repeat(25_000),
        "a.".repeat(25_000) + "@",
        "a@".repeat(25_000),
        "GB82 ".repeat(25_000),
        "sk-".repeat(25_000),
        "-----BEGIN ".repeat(12_500),
        // Labels the national-ID, phone, passport and birth-date rules look for, without what follows.
        "born 1/".repeat(12_500),
        "passport A".repeat(12_500),
        "phone 1 ".repeat(12_500),
        "BSN 1234 ".repeat(12_500),
        "2024年3月".repeat(12_500),
        // What the street-address forms start with, without the rest.
        "Via Ab ".repeat(12_500),
        "Rua Ab, ".repeat(12_500),
        "12 rue".repeat(12_500),
        "群馬県".repeat(12_500),
        // A dotted quad at every other position, each rejected by the IPv4 validators (a fifth part): the
        // slowest of these (about 0.6 µs per byte in a release build, 20 times that in a debug build), so a
        // shorter one.
        "1.2.3.4.".repeat(5_000),
    ];
    // No clock here: a timed assertion fails on a loaded machine, and speed is the benchmarks' job
    // (`benches/bench_rules.py`). A quadratic pattern would still show: this test would take minutes.
    let set = pack();
    for text in &texts {
        let ids = set.matched(text);
        for found in set.scan(text) {
            assert!(
                ids.contains(&found.rule),
                "{:?}…",
                &text[..20.min(text.len())]
            );
            assert!(found.end <= text.len() && found.start <= found.end);
        }
    }
}
