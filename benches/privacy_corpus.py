"""The multi-locale personal-data corpus of bench_privacy.py, made with Faker (run in the bench-only venv).

    benches/.venv-privacy/bin/python benches/privacy_corpus.py OUT.json [PER_TYPE] [SEED]

Writes a JSON list of `{"locale", "type", "text", "value"}`; `type` is one of TYPES, or "clean" for the
sentences without personal data. Each personal-data sentence carries one value of one type, inside a sentence
in the locale's language; half of the templates name what the value is (as people do: "my SSN is …"), half
do not. Dates of birth always come with a birth word: without one, a date is no date of birth.

Values come from Faker where it has realistic ones, and from tests/national_ids.py where it has none (UK NINO:
Faker's use the never-issued prefix ZZ and suffix T on purpose; Steuer-ID, My Number; Aadhaar: Faker's have no
Verhoeff check digit). The clean sentences include hard negatives: version strings, netmasks, order numbers,
ISBNs, prices, dates without a birth word, UUIDs, times.
"""

# ruff: noqa: RUF001 (the sentences are in ten languages: full-width colons and dashes are their punctuation)
from __future__ import annotations

import json
import random
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from faker import Faker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import national_ids

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "ja_JP", "hi_IN"]
TYPES = [
    "email",
    "iban",
    "ipv4",
    "credit_card",
    "phone",
    "national_id",
    "person_name",
    "street_address",
    "date_of_birth",
]

# Per locale: (neutral templates, labelled templates by type), {} is the value, {label} the type's name.
NEUTRAL = {
    "en": [
        "Please update the record: {}.",
        "Can you summarise the notes about {} before Monday?",
        "Forward this to {} and keep it short.",
        "The form says {} — is that right?",
    ],
    "de": [
        "Bitte aktualisiere den Eintrag: {}.",
        "Kannst du die Notizen zu {} bis Montag zusammenfassen?",
        "Leite das an {} weiter.",
        "Im Formular steht {} – stimmt das?",
    ],
    "fr": [
        "Merci de mettre à jour la fiche : {}.",
        "Peux-tu résumer les notes sur {} avant lundi ?",
        "Transfère ceci à {} rapidement.",
        "Le formulaire indique {}, est-ce correct ?",
    ],
    "es": [
        "Actualiza el registro: {}.",
        "¿Puedes resumir las notas sobre {} antes del lunes?",
        "Reenvía esto a {} por favor.",
        "El formulario dice {}, ¿es correcto?",
    ],
    "it": [
        "Aggiorna la scheda: {}.",
        "Puoi riassumere le note su {} entro lunedì?",
        "Inoltra questo a {} per favore.",
        "Il modulo riporta {}, è corretto?",
    ],
    "nl": [
        "Werk het dossier bij: {}.",
        "Kun je de notities over {} voor maandag samenvatten?",
        "Stuur dit door naar {} alsjeblieft.",
        "Op het formulier staat {}, klopt dat?",
    ],
    "pt": [
        "Atualize o cadastro: {}.",
        "Pode resumir as notas sobre {} antes de segunda?",
        "Encaminhe isto para {} por favor.",
        "O formulário diz {}, está certo?",
    ],
    "ja": [
        "記録を更新してください：{}。",
        "月曜日までに{}についてのメモを要約してください。",
        "これを{}に転送してください。",
        "フォームには{}と書いてありますが、正しいですか？",
    ],
    "hi": [
        "कृपया रिकॉर्ड अपडेट करें: {}।",
        "क्या आप सोमवार से पहले {} के बारे में नोट्स का सारांश दे सकते हैं?",
        "इसे {} को भेज दें।",
        "फ़ॉर्म में {} लिखा है, क्या यह सही है?",
    ],
}
LABELLED = {
    "en": "My {label} is {}, please keep it on file.",
    "de": "Meine {label} ist {}, bitte speichern.",
    "fr": "Mon {label} est {}, merci de le noter.",
    "es": "Mi {label} es {}, guárdalo por favor.",
    "it": "Il mio {label} è {}, salvalo per favore.",
    "nl": "Mijn {label} is {}, sla het op.",
    "pt": "Meu {label} é {}, guarde por favor.",
    "ja": "私の{label}は{}です。保存してください。",
    "hi": "मेरा {label} {} है, कृपया सहेज लें।",
}
LABELS = {  # type -> language -> label
    "email": {
        "en": "email",
        "de": "E-Mail",
        "fr": "e-mail",
        "es": "correo",
        "it": "email",
        "nl": "e-mail",
        "pt": "e-mail",
        "ja": "メールアドレス",
        "hi": "ईमेल",
    },
    "iban": {
        "en": "IBAN",
        "de": "IBAN",
        "fr": "IBAN",
        "es": "IBAN",
        "it": "IBAN",
        "nl": "IBAN",
        "pt": "IBAN",
        "ja": "IBAN",
        "hi": "IBAN",
    },
    "ipv4": {
        "en": "IP address",
        "de": "IP-Adresse",
        "fr": "adresse IP",
        "es": "dirección IP",
        "it": "indirizzo IP",
        "nl": "IP-adres",
        "pt": "endereço IP",
        "ja": "IPアドレス",
        "hi": "आईपी पता",
    },
    "credit_card": {
        "en": "card number",
        "de": "Kartennummer",
        "fr": "numéro de carte",
        "es": "número de tarjeta",
        "it": "numero di carta",
        "nl": "kaartnummer",
        "pt": "número do cartão",
        "ja": "カード番号",
        "hi": "कार्ड नंबर",
    },
    "phone": {
        "en": "phone number",
        "de": "Telefonnummer",
        "fr": "téléphone",
        "es": "teléfono",
        "it": "telefono",
        "nl": "telefoonnummer",
        "pt": "telefone",
        "ja": "電話番号",
        "hi": "फ़ोन नंबर",
    },
    "person_name": {
        "en": "name",
        "de": "Name",
        "fr": "nom",
        "es": "nombre",
        "it": "nome",
        "nl": "naam",
        "pt": "nome",
        "ja": "名前",
        "hi": "नाम",
    },
    "street_address": {
        "en": "address",
        "de": "Adresse",
        "fr": "adresse",
        "es": "dirección",
        "it": "indirizzo",
        "nl": "adres",
        "pt": "endereço",
        "ja": "住所",
        "hi": "पता",
    },
}
NATIONAL_ID_LABELS = {
    "en_US": "SSN",
    "en_GB": "National Insurance number",
    "de_DE": "Steuer-ID",
    "fr_FR": "numéro de sécurité sociale",
    "es_ES": "DNI",
    "it_IT": "codice fiscale",
    "nl_NL": "BSN",
    "pt_BR": "CPF",
    "ja_JP": "マイナンバー",
    "hi_IN": "आधार नंबर (Aadhaar)",
}
BIRTH = {
    "en": ["{name} was born on {}.", "Date of birth: {}", "DOB {} — please verify."],
    "de": ["{name} wurde am {} geboren.", "Geburtsdatum: {}", "geb. {}, bitte prüfen."],
    "fr": ["{name} est né le {}.", "Date de naissance : {}", "Née le {}, à vérifier."],
    "es": ["{name} nació el {}.", "Fecha de nacimiento: {}", "Nacido el {}, por favor verifica."],
    "it": ["{name} è nato il {}.", "Data di nascita: {}", "Nata il {}, da verificare."],
    "nl": ["{name} is geboren op {}.", "Geboortedatum: {}", "Geboren {}, graag controleren."],
    "pt": ["{name} nasceu em {}.", "Data de nascimento: {}", "Nascido em {}, verifique por favor."],
    "ja": ["{name}は{}生まれです。", "生年月日：{}", "生年月日は{}です。"],
    "hi": ["{name} का जन्म {} को हुआ था।", "जन्म तिथि: {}", "जन्म तिथि {} है, कृपया जाँचें।"],
}
DATE_FORMATS = {
    "en_US": ["%m/%d/%Y", "%B %d, %Y", "%Y-%m-%d"],
    "en_GB": ["%d/%m/%Y", "%d %B %Y"],
    "de_DE": ["%d.%m.%Y"],
    "fr_FR": ["%d/%m/%Y"],
    "es_ES": ["%d/%m/%Y"],
    "it_IT": ["%d/%m/%Y"],
    "nl_NL": ["%d-%m-%Y"],
    "pt_BR": ["%d/%m/%Y"],
    "ja_JP": ["%Y年%m月%d日", "%Y/%m/%d"],
    "hi_IN": ["%d/%m/%Y"],
}


def national_id(locale: str, fake: Faker, rng: random.Random) -> str:
    match locale:
        case "en_US":
            return str(fake.ssn())
        case "en_GB":
            return national_ids.uk_nino(rng)
        case "de_DE":
            return national_ids.de_tax_id(rng) if rng.random() < 0.5 else str(fake.rvnr())
        case "fr_FR":
            return str(fake.ssn())
        case "es_ES":
            return str(fake.nif() if rng.random() < 0.5 else fake.nie())
        case "it_IT":
            return str(fake.ssn())
        case "nl_NL":
            return str(fake.ssn())
        case "pt_BR":
            return str(fake.cpf())
        case "ja_JP":
            return national_ids.jp_my_number(rng)
        case _:  # hi_IN
            return national_ids.in_aadhaar(rng) if rng.random() < 0.5 else str(Faker("en_IN").pan())


def value(kind: str, locale: str, fake: Faker, rng: random.Random) -> str:
    generators: dict[str, Callable[[], str]] = {
        "email": lambda: str(fake.email()),
        "iban": lambda: str(fake.iban()),
        "ipv4": lambda: str(fake.ipv4()),
        "credit_card": lambda: str(fake.credit_card_number()),
        "phone": lambda: str(fake.phone_number()),
        "national_id": lambda: national_id(locale, fake, rng),
        "person_name": lambda: str(fake.name()),
        "street_address": lambda: str(fake.address()).replace("\n", ", "),
        "date_of_birth": lambda: fake.date_of_birth(minimum_age=18, maximum_age=90).strftime(
            rng.choice(DATE_FORMATS[locale])
        ),
    }
    return generators[kind]()


def sentence(kind: str, locale: str, found: str, fake: Faker, rng: random.Random) -> str:
    lang = locale[:2]
    if kind == "date_of_birth":
        return rng.choice(BIRTH[lang]).format(found, name=fake.first_name())
    if rng.random() < 0.5:
        return rng.choice(NEUTRAL[lang]).format(found)
    label = NATIONAL_ID_LABELS[locale] if kind == "national_id" else LABELS[kind][lang]
    return LABELLED[lang].format(found, label=label)


CLEAN = [
    "Upgrade the agent to version {v4} before Friday.",
    "We pinned v{v4} in the lockfile.",
    "Build {v4} fixed the crash on start-up.",
    "Set the netmask to 255.255.255.0 and restart.",
    "Subnet mask 255.255.{mask}.0 is what the router expects.",
    "Order {order} shipped yesterday.",
    "Invoice {order} is due on {date}.",
    "Ticket #{order} was closed.",
    "ISBN {isbn13} is out of print.",
    "See ISBN {isbn10} for the first edition.",
    "The total was {price} EUR including VAT.",
    "Meeting moved to {date} at {time}.",
    "Release {semver} is scheduled for {date}.",
    "Request id {uuid} took {small} ms.",
    "Room {small}, floor {tiny}; the code changed on {date}.",
    "Python {semver} and Node {semver} are installed.",
    "The report covers Q{tiny} {year}.",
    "Our office in {city} opens at {time}.",
    "The deadline is {date}, not {date2}.",
    "{sentence}",
    "{sentence}",
    "{sentence}",
]


def clean_sentence(fake: Faker, rng: random.Random) -> str:
    v4 = ".".join(str(rng.randrange(0, 20)) for _ in range(4))
    return rng.choice(CLEAN).format(
        v4=v4,
        mask=rng.choice([128, 192, 224, 240, 248, 252, 254]),
        order=rng.randrange(10**5, 10**12),
        date=fake.date(),
        date2=fake.date_this_decade().strftime("%d/%m/%Y"),
        isbn13=fake.isbn13(),
        isbn10=fake.isbn10(),
        price=f"{rng.randrange(1, 10**5):,}.{rng.randrange(100):02d}",
        time=fake.time("%H:%M"),
        semver=f"{rng.randrange(10)}.{rng.randrange(20)}.{rng.randrange(30)}",
        uuid=uuid.UUID(int=rng.getrandbits(128)),
        small=rng.randrange(1000),
        tiny=rng.randrange(1, 5),
        year=rng.randrange(2000, 2030),
        city=fake.city(),
        sentence=fake.sentence(nb_words=10),
    )


def corpus(per_type: int, clean_per_locale: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(seed)
        for kind in TYPES:
            for _ in range(per_type):
                found = value(kind, locale, fake, rng)
                text = sentence(kind, locale, found, fake, rng)
                out.append({"locale": locale, "type": kind, "text": text, "value": found})
        for _ in range(clean_per_locale):
            out.append({"locale": locale, "type": "clean", "text": clean_sentence(fake, rng), "value": ""})
    return out


def main() -> None:
    out = Path(sys.argv[1])
    per_type = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 14
    out.write_text(json.dumps(corpus(per_type, 60, seed), ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
