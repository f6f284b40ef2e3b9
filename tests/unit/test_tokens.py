"""count_tokens (rust/core/src/tokens.rs through rust/py/src/tokens.rs): exact parity with tiktoken 0.14."""

# The corpus is deliberately multilingual: look-alike characters are the point, not typos.
# ruff: noqa: RUF001

from __future__ import annotations

import threading

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiergate._native import ENCODINGS, count_tokens

# (case id, text). Each is checked against tiktoken's len(encode_ordinary(text)) in both encodings.
CORPUS: list[tuple[str, str]] = [
    ("empty", ""),
    ("one letter", "a"),
    ("english", "The quick brown fox jumps over the lazy dog. It wasn't the fox's fault, was it?"),
    ("french", "Où est la bibliothèque ? L'élève a déjà mangé une crème brûlée à Noël."),
    ("german", "Die Straße ist naß; Größe, Übermaß und Äußerungen — „Zitat“."),
    ("vietnamese", "Tiếng Việt có dấu: Hà Nội, Thành phố Hồ Chí Minh, người Việt."),
    ("turkish dotted i", "İstanbul'da ıslak bir gün; DİYARBAKIR ve ılık rüzgâr."),
    ("russian", "Съешь же ещё этих мягких французских булок, да выпей чаю. ПРИВЕТ, мир!"),
    ("greek", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΑΒΓΔ αβγδ."),
    ("chinese", "我能吞下玻璃而不伤身体。你好，世界！这是一个测试。"),
    ("japanese", "いろはにほへと ちりぬるを。カタカナとひらがなと漢字、ｈａｌｆ－ｗｉｄｔｈ ｶﾀｶﾅ。"),
    ("korean", "다람쥐 헌 쳇바퀴에 타고파. 안녕하세요, 세계!"),
    ("arabic", "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت — مرحبا بالعالم ١٢٣٤٥"),
    ("hebrew", "דג סקרן שט בים מאוכזב ולפתע מצא חברה."),
    ("devanagari", "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।"),
    ("thai", "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน"),
    ("combining marks (NFD)", "Cafe\u0301 re\u0301sume\u0301 n\u0303 a\u0308\u0301"),
    (
        "python code",
        'def f(x: int) -> dict[str, int]:\n    """Doc."""\n    return {"k": x ** 2}  # n\n\n\nf(3)\n',
    ),
    ("rust code", 'fn main() {\n\tlet v: Vec<u8> = vec![1, 2, 3];\n\tprintln!("{:?}", v);\n}\r\n'),
    ("json", '{"id": 12345, "tags": ["a", "b"], "nested": {"ok": true, "n": null}, "f": -1.5e-10}'),
    ("html", '<div class="x"><a href="https://example.com/path?q=1&r=2">link</a></div>\n'),
    ("emoji", "I ❤️ 🦀 and 🐍! 👍🏽 👋🏿 🇩🇪🇯🇵 ☕"),
    ("zwj sequences", "👨\u200d👩\u200d👧\u200d👦 👩🏽\u200d💻 🏳️\u200d🌈 🧑\u200d🤝\u200d🧑"),
    ("spaces", "a" + " " * 37 + "b" + " " * 5),
    ("tabs and spaces", "\t\t  \t x \t\ty\t"),
    ("whitespace only", " \t \n \r\n  \u3000 \u00a0 "),
    ("trailing newline run", "end\n\n\n   "),
    ("mixed line endings", "line one\r\nline two\nline three\r\n\r\n  indented\rold mac\n\r\n"),
    ("unicode spaces", "a\u2003b\u2009c\u00a0d\u202fe\u3000f\u200bg"),
    ("endoftext as text", "<|endoftext|> and <|endofprompt|> are ordinary text here <|fim_prefix|>"),
    ("digit runs", "1 12 123 1234 12345 123456789012345678901234567890 3.14159 1,000,000 ١٢٣"),
    ("contractions in caps", "DON'T WON'T I'M YOU'RE WE'LL THEY'VE HE'D IT'S she'S We'Re"),
    ("contractions", "don't won't I'm you're we'll they've he'd it's 'tis ’twas"),
    ("apostrophe edge cases", "'s 's's ' 'x '' '''s O'Neil rock'n'roll"),
    ("punctuation", "!!! ??? ... --- /// \\\\ ||| *** @@@ ### $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}"),
    ("slashes after punctuation", "a/b //c ./d ?/\n/ end/"),
    ("url", "see https://user:pw@example.com:8080/a/b-c_d.e?x=1&y=%20#frag for details"),
    ("long word", "pneumonoultramicroscopicsilicovolcanoconiosis" * 3),
    ("private use and unassigned", "\ue000\uf8ff\U000f0000 \u0378\u0380 \U0010fffd"),
    ("control characters", "a\x00b\x01c\x1bd\x7fe\x85f"),
]

# 100 KB of one repeated character: one piece of 100,000 bytes, the worst case for byte-pair merging.
LONG_REPEAT = "a" * 100_000


def tiktoken_count(encoding: tiktoken.Encoding, text: str) -> int:
    return len(encoding.encode_ordinary(text))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("text", [text for _, text in CORPUS], ids=[case for case, _ in CORPUS])
def test_corpus_matches_tiktoken(
    tiktoken_encodings: dict[str, tiktoken.Encoding], encoding: str, text: str
) -> None:
    assert count_tokens(text, encoding) == tiktoken_count(tiktoken_encodings[encoding], text)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_long_repeated_character_matches_tiktoken(
    tiktoken_encodings: dict[str, tiktoken.Encoding], encoding: str
) -> None:
    assert count_tokens(LONG_REPEAT, encoding) == tiktoken_count(tiktoken_encodings[encoding], LONG_REPEAT)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_whole_corpus_as_one_text_matches_tiktoken(
    tiktoken_encodings: dict[str, tiktoken.Encoding], encoding: str
) -> None:
    # Long enough (> 1 KB) that the count runs with the GIL released.
    text = "\n".join(text for _, text in CORPUS) * 3
    assert len(text.encode()) > 4096
    assert count_tokens(text, encoding) == tiktoken_count(tiktoken_encodings[encoding], text)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "text",
    ["\ud800", "a\udfffb", "\ud83d\ude00", "x\ud83d\ude00\ud800y"],
    ids=["lone high surrogate", "lone low surrogate", "surrogate pair", "pair and lone"],
)
def test_surrogates_are_counted_as_tiktoken_counts_them(
    tiktoken_encodings: dict[str, tiktoken.Encoding], encoding: str, text: str
) -> None:
    # Such a str has no UTF-8 form; tiktoken repairs it through UTF-16 and counts the result.
    assert count_tokens(text, encoding) == tiktoken_count(tiktoken_encodings[encoding], text)


def test_encodings_and_default() -> None:
    assert ENCODINGS == ("o200k_base", "cl100k_base")
    text = "Привет, мир!"  # 5 tokens in o200k_base, 7 in cl100k_base
    assert count_tokens(text) == count_tokens(text, "o200k_base") != count_tokens(text, "cl100k_base")


@pytest.mark.parametrize("name", ["p50k_base", "O200K_BASE", "", "gpt-4o"])
def test_unknown_encoding_is_a_value_error_naming_the_known_ones(name: str) -> None:
    with pytest.raises(ValueError, match="unknown encoding") as caught:
        count_tokens("hello", name)
    for known in ENCODINGS:
        assert known in str(caught.value)


def test_non_str_text_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        count_tokens(b"bytes are not text")  # type: ignore[arg-type]


def test_counts_agree_across_threads() -> None:
    # Large texts are counted with the GIL released; concurrent counts must not disturb each other.
    texts = [text * 200 for _, text in CORPUS[2:10]]
    expected = [count_tokens(text) for text in texts]
    results: dict[int, list[int]] = {}

    def work(worker: int) -> None:
        results[worker] = [count_tokens(text) for text in texts]

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {worker: expected for worker in range(4)}


# Fragments that hit the split pattern's edge cases; hypothesis strings them together with arbitrary text.
FRAGMENTS = st.sampled_from(
    [" ", "  ", "\t", "\n", "\r\n", "\r", "\u3000", "\u00a0", "'", "'s", "'S", "'ll", "'LL", "’", "a", "A",
     "Ab", "aB", "é", "É", "ß", "Ж", "ж", "中", "か", "한", "ا", "क", "ि", "\u0301", "1", "12", "123", "١",
     "Ⅻ", "!", "?", "/", "//", ".", "-", "_", "😀", "👍🏽", "\u200d", "\ufe0f", "<|endoftext|>"]
)  # fmt: skip
MIXED_TEXT = st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=40).map("".join)


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=300), MIXED_TEXT))
def test_any_text_matches_tiktoken(
    tiktoken_encodings: dict[str, tiktoken.Encoding], encoding: str, text: str
) -> None:
    assert count_tokens(text, encoding) == tiktoken_count(tiktoken_encodings[encoding], text)
