"""Hypothesis strategies for personal data and secrets as people write them, and ordinary text around them.

Every value is one the default rule pack (rust/core/src/rules/pack.rs) is meant to catch, with real checksums
where there are any (Luhn for card numbers, mod-97 for IBANs, tests/national_ids.py for national IDs).
`secrets()` draws `(rule id, value)` pairs; `prose()` draws ordinary sentences that no pack rule may match;
`lookalikes()` draws things that resemble personal data but are not (dates, times, versions, UUIDs, prices,
order numbers that fail the Luhn check).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import string

from hypothesis import strategies as st

from tests import national_ids

WORDS = (
    "the a an and or but please thanks could you would we our my your team customer order invoice meeting "
    "tomorrow today next week summary draft reply write short polite note about project update status review "
    "Hello Dear Regards Thanks Monday Friday London Paris report account details below above attached "
    "3 42 2024 10:30 v1.2 Q3 item items number numbers is are was were be have has it this that for to of"
).split()
PUNCTUATION = ("", ",", ".", ":", ";", "!", "?")

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"


def _chars(alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=size, max_size=size)


def _digits(size: int) -> st.SearchStrategy[str]:
    return _chars(string.digits, size)


@st.composite
def prose(draw: st.DrawFn, min_words: int = 1, max_words: int = 12) -> str:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=min_words, max_size=max_words))
    marks = draw(st.lists(st.sampled_from(PUNCTUATION), min_size=len(words), max_size=len(words)))
    return " ".join(w + m for w, m in zip(words, marks, strict=True))


# -- personal data --------------------------------------------------------------------------------------


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.from_regex(r"[a-z][a-z0-9]{0,8}(?:[._+-][a-z0-9]{1,8})?", fullmatch=True))
    labels = draw(st.lists(st.from_regex(r"[a-z][a-z0-9]{0,9}", fullmatch=True), min_size=1, max_size=2))
    tld = draw(st.sampled_from(["com", "org", "io", "co.uk", "de", "fr", "net", "dev"]))
    email = f"{local}@{'.'.join(labels)}.{tld}"
    return email.upper() if draw(st.booleans()) and draw(st.booleans()) else email


@st.composite
def phones(draw: st.DrawFn) -> str:
    style = draw(st.sampled_from(["international", "north_american", "uk", "french", "mobile_uk"]))
    if style == "international":
        # Country code, then a national number of 9 to 11 digits as it is usually grouped.
        cc = draw(st.sampled_from(["1", "33", "44", "49", "81", "91", "353"]))
        groups = draw(
            st.sampled_from([(2, 4, 4), (3, 3, 4), (1, 2, 2, 2, 2), (3, 4, 4), (4, 3, 3), (2, 3, 4)])
        )
        sep = draw(st.sampled_from([" ", "-", ".", ""]))
        national = sep.join(draw(_digits(n)) for n in groups)
        return f"+{cc}{sep or ' '}{national}"
    if style == "north_american":
        area = draw(st.integers(200, 999))
        exchange, line = draw(_digits(3)), draw(_digits(4))
        form = draw(st.sampled_from(["({a}) {e}-{l}", "{a}-{e}-{l}", "{a}.{e}.{l}"]))
        return form.format(a=area, e=exchange, l=line)
    if style == "uk":
        return f"0{draw(st.integers(10, 99))} {draw(_digits(4))} {draw(_digits(4))}"
    if style == "french":
        pairs = draw(st.lists(_digits(2), min_size=4, max_size=4))
        sep = draw(st.sampled_from([" ", "."]))
        return f"0{draw(st.integers(1, 9))}{sep}{sep.join(pairs)}"
    return f"07{draw(_digits(3))} {draw(_digits(6))}"


def luhn_complete(prefix: str) -> str:
    """`prefix` plus the check digit that makes the whole pass the Luhn check."""
    total = 0
    for i, c in enumerate(reversed(prefix)):
        digit = int(c)
        if i % 2 == 0:  # doubled: these are every second digit counted from the check digit
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return prefix + str((10 - total % 10) % 10)


# (issuer prefix, lengths): Visa, Mastercard (both ranges), Amex, Discover, JCB, Diners, UnionPay.
CARD_ISSUERS = (
    ("4", (13, 16, 19)),
    ("51", (16,)),
    ("55", (16,)),
    ("2221", (16,)),
    ("34", (15,)),
    ("37", (15,)),
    ("6011", (16,)),
    ("35", (16,)),
    ("36", (14,)),
    ("62", (16, 19)),
)


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    prefix, lengths = draw(st.sampled_from(CARD_ISSUERS))
    length = draw(st.sampled_from(lengths))
    number = luhn_complete(prefix + draw(_digits(length - len(prefix) - 1)))
    style = draw(st.sampled_from(["plain", "spaces", "dashes"]))
    if style == "plain" or length == 13:
        return number
    sep = " " if style == "spaces" else "-"
    if length in (14, 15):  # Diners 4-6-4, Amex 4-6-5
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, length, 4))


# Country and BBAN length of some IBAN countries.
IBAN_COUNTRIES = (
    ("DE", 18),
    ("GB", 18),
    ("FR", 23),
    ("NL", 14),
    ("BE", 12),
    ("ES", 20),
    ("IT", 23),
    ("CH", 17),
)


def iban_complete(country: str, bban: str) -> str:
    """The IBAN with the check digits that make its mod-97 checksum 1."""
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{country}{98 - number % 97:02d}{bban}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country, size = draw(st.sampled_from(IBAN_COUNTRIES))
    if country in ("GB", "NL"):  # a four-letter bank code, then digits
        bban = draw(_chars(string.ascii_uppercase, 4)) + draw(_digits(size - 4))
    else:
        bban = draw(_digits(size))
    iban = iban_complete(country, bban)
    if draw(st.booleans()):
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


PRIVATE_V4 = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
]


@st.composite
def ipv4s(draw: st.DrawFn) -> tuple[str, str]:
    """(pack rule id, address): `ipv4` for public addresses, `ipv4_private` for the private ranges."""
    first = draw(st.integers(1, 255).filter(lambda n: n != 127))
    rest = draw(st.lists(st.integers(0, 255), min_size=3, max_size=3))
    address = ".".join(str(n) for n in (first, *rest))
    if first == 255:  # 255.x.x.x may be a netmask, which is not personal data
        address = "8" + address[3:]
    private = any(ipaddress.ip_address(address) in net for net in PRIVATE_V4)
    return ("ipv4_private" if private else "ipv4", address)


@st.composite
def national_id_values(draw: st.DrawFn) -> tuple[str, str]:
    """(pack rule id, value): a national identifier with a valid checksum (tests/national_ids.py)."""
    rule_id = draw(st.sampled_from(sorted(national_ids.GENERATORS)))
    rng = draw(st.randoms(use_true_random=False))
    return rule_id, national_ids.GENERATORS[rule_id](rng)


@st.composite
def ipv6s(draw: st.DrawFn) -> str:
    hextet = st.text(HEX, min_size=1, max_size=4)
    if draw(st.booleans()):
        return ":".join(draw(st.lists(hextet, min_size=8, max_size=8)))
    left = draw(st.lists(hextet, min_size=1, max_size=3))
    right = draw(st.lists(hextet, min_size=3 - len(left) if len(left) < 3 else 1, max_size=3))
    return f"{':'.join(left)}::{':'.join(right)}"


BIRTH_LABELS = (
    "born",
    "born on",
    "DOB:",
    "date of birth",
    "Geburtsdatum:",
    "geboren am",
    "née le",
    "nacido el",
    "data di nascita:",
    "data de nascimento:",
    "geboortedatum",
    "生年月日\uff1a",  # with a full-width colon, as Japanese text has it
    "जन्म तिथि:",
)
DATE_FORMATS = ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d", "%d %B %Y", "%B %d, %Y", "%Y年%m月%d日")


@st.composite
def birth_dates(draw: st.DrawFn) -> str:
    """A date of birth as people write it: a birth word, then the date."""
    day = draw(st.dates(min_value=dt.date(1920, 1, 1), max_value=dt.date(2010, 12, 31)))
    return f"{draw(st.sampled_from(BIRTH_LABELS))} {day.strftime(draw(st.sampled_from(DATE_FORMATS)))}"


@st.composite
def passports(draw: st.DrawFn) -> str:
    label = draw(
        st.sampled_from(["passport", "passport number:", "Reisepass-Nr.", "passeport n°", "パスポート番号"])
    )
    number = draw(
        st.one_of(_digits(9), st.tuples(_chars(string.ascii_uppercase, 1), _digits(8)).map("".join))
    )
    return f"{label} {number}"


STREET_NAMES = ("Garibaldi", "Mayor", "Rossi", "Lindner", "Fontaine", "Oak Tree")


@st.composite
def street_addresses(draw: st.DrawFn) -> str:
    """A postal address in one of the forms the rule pack knows (street type and house number, postcode)."""
    n = draw(st.integers(1, 999))
    name = draw(st.sampled_from(STREET_NAMES)).split()[0]
    forms = [
        f"{n} rue {name}",
        f"{name}straße {n}",
        f"{name}-Platz {n}",
        f"{name}laan {n}",
        f"Via {name} {n}, Milano",
        f"Calle {name} {n}",
        f"Rua {name}, {n}",
        f"Springfield, IL {draw(_digits(5))}",
        f"London SW1A {draw(st.integers(0, 9))}AA",
        "東京都千代田区",
        f"{draw(st.integers(1, 30))}丁目",
    ]
    return draw(st.sampled_from(forms))


# -- secrets --------------------------------------------------------------------------------------------


def _b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@st.composite
def jwts(draw: st.DrawFn) -> str:
    header = _b64url({"alg": draw(st.sampled_from(["HS256", "RS256", "ES256"])), "typ": "JWT"})
    payload = _b64url(
        {"sub": draw(_chars(ALNUM, 12)), "iat": draw(st.integers(1_600_000_000, 1_900_000_000))}
    )
    return f"{header}.{payload}.{draw(_chars(URLSAFE, 43))}"


@st.composite
def private_key_blocks(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA "]))
    lines = draw(st.lists(_chars(ALNUM + "+/", 64), min_size=1, max_size=3))
    body = "\n".join(lines)
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def api_keys() -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.tuples(st.just("openai_key"), _chars(URLSAFE, 48).map(lambda s: f"sk-proj-{s}")),
        st.tuples(st.just("openai_key"), _chars(ALNUM, 48).map(lambda s: f"sk-{s}")),
        st.tuples(st.just("anthropic_key"), _chars(URLSAFE, 80).map(lambda s: f"sk-ant-api03-{s}")),
        st.tuples(st.just("aws_access_key"), _chars(UPPER_ALNUM, 16).map(lambda s: f"AKIA{s}")),
        st.tuples(st.just("github_token"), _chars(ALNUM, 36).map(lambda s: f"ghp_{s}")),
        st.tuples(
            st.just("slack_token"),
            st.tuples(_digits(12), _digits(13), _chars(ALNUM, 24)).map(lambda t: "xoxb-" + "-".join(t)),
        ),
        st.tuples(st.just("google_api_key"), _chars(URLSAFE, 35).map(lambda s: f"AIza{s}")),
        st.tuples(st.just("stripe_key"), _chars(ALNUM, 24).map(lambda s: f"sk_live_{s}")),
        st.tuples(st.just("jwt"), jwts()),
        st.tuples(
            st.just("url_credentials"),
            st.tuples(_chars(string.ascii_lowercase, 6), _chars(ALNUM, 12)).map(
                lambda t: f"postgres://{t[0]}:{t[1]}@db.internal:5432/app"
            ),
        ),
    )


def secrets() -> st.SearchStrategy[tuple[str, str]]:
    """(pack rule id, value): personal data and secrets, each in a form the default pack must catch."""
    return st.one_of(
        st.tuples(st.just("email"), emails()),
        st.tuples(st.just("phone"), phones()),
        st.tuples(st.just("payment_card"), card_numbers()),
        st.tuples(st.just("iban"), ibans()),
        ipv4s(),
        national_id_values(),
        st.tuples(st.just("date_of_birth"), birth_dates()),
        st.tuples(st.just("passport"), passports()),
        st.tuples(st.just("street_address"), street_addresses()),
        st.tuples(st.just("ipv6"), ipv6s()),
        api_keys(),
        st.tuples(st.just("private_key"), private_key_blocks()),
    )


# -- lookalikes -----------------------------------------------------------------------------------------


@st.composite
def order_numbers(draw: st.DrawFn) -> str:
    """13 to 19 digits that start like a card number but fail the Luhn check."""
    prefix, lengths = draw(st.sampled_from(CARD_ISSUERS))
    valid = luhn_complete(prefix + draw(_digits(draw(st.sampled_from(lengths)) - len(prefix) - 1)))
    wrong = (int(valid[-1]) + draw(st.integers(1, 9))) % 10
    return valid[:-1] + str(wrong)


def lookalikes() -> st.SearchStrategy[str]:
    """Things that look like personal data to a careless pattern, and are not."""
    year, month, day = st.integers(1900, 2099), st.integers(1, 12), st.integers(1, 28)
    hour, minute = st.integers(0, 23), st.integers(0, 59)
    small = st.integers(0, 99)
    return st.one_of(
        st.builds(lambda y, m, d: f"{y}-{m:02d}-{d:02d}", year, month, day),
        st.builds(lambda y, m, d: f"{d:02d}.{m:02d}.{y}", year, month, day),
        st.builds(lambda y, m, d: f"{m}/{d}/{y}", year, month, day),
        st.builds(
            lambda y, m, d, h, mi: f"{y}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:00Z", year, month, day, hour, minute
        ),
        st.builds(
            lambda y, m, d, h, mi: f"{d:02d}.{m:02d}.{y} {h:02d}:{mi:02d}", year, month, day, hour, minute
        ),
        st.builds(lambda h, mi, s: f"{h:02d}:{mi:02d}:{s:02d}", hour, minute, minute),
        st.builds(lambda a, b, c: f"v{a}.{b}.{c}", small, small, small),
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", small, small, small),
        st.builds(lambda a, b, c, n: f"{a}.{b}.{c}+build.{n}", small, small, small, st.integers(0, 10**6)),
        st.builds(  # build metadata as a timestamp, Luhn-valid or not
            lambda a, y, m, d, h, mi: f"{a}.0.0+{y}{m:02d}{d:02d}{h:02d}{mi:02d}00",
            small,
            year,
            month,
            day,
            hour,
            minute,
        ),
        st.uuids().map(str),
        st.builds(lambda n, c: f"${n:,}.{c:02d}", st.integers(0, 10**7), small),
        st.integers(0, 999_999).map(str),
        st.integers(1_000_000_000, 1_999_999_999_999).map(str),  # epoch seconds and milliseconds
        order_numbers(),
    )
