"""National identifiers with valid checksums, drawn from a `random.Random`: test data for the rule pack's
national-ID detectors (rust/core/src/rules/national_ids.rs), written again here from the published algorithms
so that a mistake in the Rust checksum does not hide itself.

Used by the hypothesis strategies in tests/personal_data.py and by benches/bench_privacy.py. Faker has some of
these, but not all: no Steuer-ID, no My Number; its UK NINOs use the never-issued prefix ZZ and suffix T on
purpose, and its Aadhaar numbers carry no Verhoeff check digit.
"""

from __future__ import annotations

import random
from collections.abc import Callable

DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _digits(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(10) for _ in range(n)]


def _join(digits: list[int]) -> str:
    return "".join(map(str, digits))


def us_ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def uk_nino(rng: random.Random) -> str:
    first = rng.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    if first + second in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
        first, second = "A", "B"
    pairs = [f"{rng.randrange(100):02d}" for _ in range(3)]
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{first}{second} {' '.join(pairs)} {suffix}"
    return f"{first}{second}{''.join(pairs)}{suffix}"


def fr_nir(rng: random.Random) -> str:
    body = f"{rng.choice('12')}{rng.randrange(100):02d}{rng.randrange(1, 13):02d}{rng.randrange(1, 96):02d}"
    body += f"{rng.randrange(1, 1000):03d}{rng.randrange(1, 1000):03d}"
    key = 97 - int(body) % 97
    return f"{body}{key:02d}"


def de_tax_id(rng: random.Random) -> str:
    while True:
        # Ten digits, not starting with 0, one of them twice and the others at most once.
        pool = rng.sample(range(10), 9)
        doubled = rng.choice(pool)
        digits = [*pool, doubled]
        rng.shuffle(digits)
        if digits[0] != 0:
            break
    product = 10
    for d in digits:
        total = (d + product) % 10 or 10
        product = total * 2 % 11
    check = (11 - product) % 10
    return _join([*digits, check])


def de_pension_number(rng: random.Random) -> str:
    area = f"{rng.randrange(2, 90):02d}"
    birth = f"{rng.randrange(1, 29):02d}{rng.randrange(1, 13):02d}{rng.randrange(100):02d}"
    letter = rng.choice("ABCDEFGHIJKLMNOPRSTUVWZ")
    serial = f"{rng.randrange(100):02d}"
    values = [int(c) for c in area + birth + f"{ord(letter) - 64:02d}" + serial]
    weights = [2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1]
    check = sum(sum(divmod(v * w, 10)) for v, w in zip(values, weights, strict=True)) % 10
    return f"{area}{birth}{letter}{serial}{check}"


def es_dni(rng: random.Random) -> str:
    number = rng.randrange(10**8)
    return f"{number:08d}{DNI_LETTERS[number % 23]}"


def es_nie(rng: random.Random) -> str:
    lead = rng.randrange(3)
    number = rng.randrange(10**7)
    return f"{'XYZ'[lead]}{number:07d}{DNI_LETTERS[(lead * 10**7 + number) % 23]}"


_CF_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]


def it_fiscal_code_check(body: str) -> str:
    total = 0
    for i, c in enumerate(body):
        value = int(c) if c.isdigit() else ord(c) - 65
        total += _CF_ODD[value] if i % 2 == 0 else value
    return chr(65 + total % 26)


def it_fiscal_code(rng: random.Random) -> str:
    letters = "".join(rng.choice("BCDFGHLMNPRSTVZ") for _ in range(6))
    day = rng.randrange(1, 29) + rng.choice([0, 40])
    body = f"{letters}{rng.randrange(100):02d}{rng.choice('ABCDEHLMPRST')}{day:02d}"
    body += f"{rng.choice('ABCDEFGHILM')}{rng.randrange(1, 1000):03d}"
    return body + it_fiscal_code_check(body)


def nl_bsn(rng: random.Random) -> str:
    while True:
        digits = _digits(rng, 8)
        total = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True))
        check = total % 11
        if check < 10 and total != 0:
            return _join([*digits, check])


def _cpf_check(digits: list[int]) -> int:
    total = sum(d * w for d, w in zip(digits, range(len(digits) + 1, 1, -1), strict=True))
    return total * 10 % 11 % 10


def br_cpf(rng: random.Random) -> str:
    digits = _digits(rng, 9)
    digits.append(_cpf_check(digits))
    digits.append(_cpf_check(digits))
    s = _join(digits)
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{s[9:]}" if rng.random() < 0.7 else s


def _cnpj_check(digits: list[int]) -> int:
    weights = [2, 3, 4, 5, 6, 7, 8, 9] * 2
    total = sum(d * w for d, w in zip(reversed(digits), weights, strict=False))
    return 0 if total % 11 < 2 else 11 - total % 11


def br_cnpj(rng: random.Random) -> str:
    digits = [*_digits(rng, 8), 0, 0, 0, 1]
    digits.append(_cnpj_check(digits))
    digits.append(_cnpj_check(digits))
    s = _join(digits)
    return f"{s[:2]}.{s[2:5]}.{s[5:8]}/{s[8:12]}-{s[12:]}"


_VERHOEFF_D = [
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
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]
_VERHOEFF_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def verhoeff_check(digits: list[int]) -> int:
    c = 0
    for i, d in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[(i + 1) % 8][d]]
    return _VERHOEFF_INV[c]


def in_aadhaar(rng: random.Random) -> str:
    digits = [rng.randrange(2, 10), *_digits(rng, 10)]
    s = _join([*digits, verhoeff_check(digits)])
    return f"{s[:4]} {s[4:8]} {s[8:]}"


def in_pan(rng: random.Random) -> str:
    letters = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3))
    return (
        f"{letters}{rng.choice('PCHFATBLJG')}{rng.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ')}{rng.randrange(10000):04d}"
        + (rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    )


def jp_my_number(rng: random.Random) -> str:
    digits = _digits(rng, 11)
    total = sum(d * (n + 1 if n <= 6 else n - 5) for n, d in enumerate(reversed(digits), start=1))
    check = 0 if total % 11 <= 1 else 11 - total % 11
    s = _join([*digits, check])
    return f"{s[:4]} {s[4:8]} {s[8:]}" if rng.random() < 0.5 else f"{s[:4]}-{s[4:8]}-{s[8:]}"


# (pack rule id, generator)
GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "us_ssn": us_ssn,
    "uk_nino": uk_nino,
    "fr_nir": fr_nir,
    "de_tax_id": de_tax_id,
    "de_pension_number": de_pension_number,
    "es_dni": es_dni,
    "es_nie": es_nie,
    "it_fiscal_code": it_fiscal_code,
    "nl_bsn": nl_bsn,
    "br_cpf": br_cpf,
    "br_cnpj": br_cnpj,
    "in_aadhaar": in_aadhaar,
    "in_pan": in_pan,
    "jp_my_number": jp_my_number,
}
