"""Redaction: a secret never survives, whole or in pieces, in any of the forms a command prints."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import urllib.parse
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_tui.audit.redact import Redactor, variants

SECRET = "hunter2 p@ss/wörd+'x'=\"y\"\\?&~~"
ENCODINGS = {
    "raw": SECRET,
    "shell-quoted": shlex.quote(SECRET),
    "printf %q": subprocess.run(["bash", "-c", 'printf %q "$S"'], capture_output=True, text=True, check=True,
                                env={**os.environ, "S": SECRET, "LC_ALL": "C.UTF-8"}).stdout,
    "url-encoded": urllib.parse.quote(SECRET, safe=""),
    "form-encoded": urllib.parse.quote_plus(SECRET),
    "base64": base64.b64encode(SECRET.encode()).decode(),
    "base64 unpadded": base64.b64encode(SECRET.encode()).decode().rstrip("="),
    "base64 url-safe": base64.urlsafe_b64encode(SECRET.encode()).decode(),
    "base64 url-safe unpadded": base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    "json": json.dumps(SECRET, ensure_ascii=False)[1:-1],
    "json ascii-only": json.dumps(SECRET, ensure_ascii=True)[1:-1],
}


def redactor(*secrets: tuple[str, str]) -> Redactor:
    r = Redactor()
    for name, value in secrets or (("DB_PASSWORD", SECRET),):
        r.add(name, value)
    return r


def stream(r: Redactor, chunks: list[str], stream_id: str = "task") -> str:
    return "".join(r.feed(stream_id, chunk) for chunk in chunks) + r.flush(stream_id)


def leaks(text: str) -> list[str]:
    """The forms of SECRET still readable in `text`."""
    return [name for name, form in ENCODINGS.items() if form in text]


def test_every_form_is_replaced_by_the_secret_name() -> None:
    r = redactor()
    for form in ENCODINGS.values():
        assert r.redact(f"<{form}>") == "<[REDACTED:DB_PASSWORD]>"


def test_the_encodings_are_really_different_and_all_registered() -> None:
    """Otherwise the split tests below would prove less than they claim."""
    assert len(set(ENCODINGS.values())) == len(ENCODINGS)
    assert variants(SECRET) == set(ENCODINGS.values())


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_split_in_two_at_every_point(encoding: str) -> None:
    text = f"connecting with {ENCODINGS[encoding]} now\r\n"
    r = redactor()
    for cut in range(len(text) + 1):
        out = stream(r, [text[:cut], text[cut:]])
        assert out == "connecting with [REDACTED:DB_PASSWORD] now\r\n", cut


@pytest.mark.parametrize("encoding", ["raw", "shell-quoted", "url-encoded", "base64"])
def test_split_in_three_at_every_pair_of_points(encoding: str) -> None:
    form = ENCODINGS[encoding]
    text = f"a{form}b"
    r = redactor()
    for first, second in combinations(range(len(text) + 1), 2):
        out = stream(r, [text[:first], text[first:second], text[second:]])
        assert out == "a[REDACTED:DB_PASSWORD]b", (first, second)


def test_one_character_at_a_time() -> None:
    text = "x" + SECRET + SECRET + "y" + ENCODINGS["base64"]
    out = stream(redactor(), list(text))
    assert out == "x[REDACTED:DB_PASSWORD][REDACTED:DB_PASSWORD]y[REDACTED:DB_PASSWORD]"


def test_hold_back_starts_at_the_earliest_possible_secret() -> None:
    """Holding only the shortest matching suffix ("b") would emit the "a" of "abcd"."""
    r = redactor(("A", "abcd"), ("B", "bzzz"))
    assert r.feed("s", "xxab") == "xx"
    assert r.feed("s", "cd") == "[REDACTED:A]"
    assert r.flush("s") == ""


def test_longest_variant_wins() -> None:
    r = redactor(("SHORT", "token"), ("LONG", "token-extended"))
    assert r.redact("token-extended token") == "[REDACTED:LONG] [REDACTED:SHORT]"
    assert stream(r, ["token-ext", "ended token"]) == "[REDACTED:LONG] [REDACTED:SHORT]"


def test_streams_are_independent() -> None:
    r = redactor()
    half = len(SECRET) // 2
    out_a = r.feed("a", SECRET[:half])
    out_b = r.feed("b", "unrelated " + SECRET[half:])
    out_a += r.feed("a", SECRET[half:]) + r.flush("a")
    out_b += r.flush("b")
    assert out_a == "[REDACTED:DB_PASSWORD]"
    assert out_b == "unrelated " + SECRET[half:]


def test_regex_metacharacters_are_literal() -> None:
    r = redactor(("PAT", "a.b*c(d)"))
    assert r.redact("axb*c(d) a.b*c(d)") == "axb*c(d) [REDACTED:PAT]"


def test_empty_values_are_ignored_and_short_ones_still_redacted() -> None:
    r = redactor(("EMPTY", ""), ("PIN", "42"))
    assert r.redact("answer 42") == "answer [REDACTED:PIN]"
    assert "EMPTY" not in r.redact("")


def test_without_secrets_everything_passes_through_at_once() -> None:
    r = Redactor()
    assert r.max_len == 0
    assert r.feed("s", "abc") == "abc" and r.flush("s") == ""


def test_megabytes_are_redacted_correctly() -> None:
    filler = "lorem ipsum dolor sit amet, " * 40_000
    text = filler + SECRET + filler + ENCODINGS["base64"] + filler
    r = redactor()
    assert r.redact(text) == filler + "[REDACTED:DB_PASSWORD]" + filler + "[REDACTED:DB_PASSWORD]" + filler
    chunks = [text[i : i + 4093] for i in range(0, len(text), 4093)]
    assert stream(r, chunks) == r.redact(text)


def expected_hold(text: str) -> int:
    """Brute force: length of the longest suffix that is a proper prefix of some variant."""
    forms = variants(SECRET)
    return max(
        (n for n in range(1, len(text) + 1) for v in forms if len(v) > n and v.startswith(text[-n:])),
        default=0,
    )


# Text made of the secret's own characters, so prefixes and near-misses are common.
pieces = st.lists(
    st.one_of(st.sampled_from(list(ENCODINGS.values())), st.text(alphabet=SECRET + "\r\n", max_size=12)),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(parts=pieces, cuts=st.lists(st.integers(0, 400), max_size=6))
def test_streaming_equals_whole_and_never_leaks(parts: list[str], cuts: list[int]) -> None:
    text = "".join(parts)
    points = sorted({min(cut, len(text)) for cut in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]
    r = redactor()
    out = stream(r, chunks)
    assert out == r.redact(text)
    assert leaks(out) == []


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=SECRET + "abc\n", max_size=80), cuts=st.lists(st.integers(0, 80), max_size=6))
def test_clean_text_passes_unchanged_and_holds_back_only_what_could_be_a_secret(
    text: str, cuts: list[int]
) -> None:
    r = redactor()
    if r.redact(text) != text:
        return  # not clean: covered by the test above
    points = sorted({min(cut, len(text)) for cut in cuts} | {len(text)})
    emitted, fed = "", 0
    for point in points:
        emitted += r.feed("s", text[fed:point])
        fed = point
        held = fed - len(emitted)
        assert text[:fed].startswith(emitted)
        assert held == expected_hold(text[:fed])
        assert held <= r.max_len - 1
    assert emitted + r.flush("s") == text


def test_only_whole_variants_are_redacted_not_their_prefixes() -> None:
    """`abW` is `YWJX` in base64 (no padding to strip): `YWJQ` is someone else's text and stays.
    (Pins the padding strip to `=`: stripping more would add a prefix as a variant.)"""
    redactor = Redactor()
    redactor.add("S", "abW")
    assert base64.b64encode(b"abW").decode() == "YWJX"
    assert redactor.redact("YWJX and YWJQ") == "[REDACTED:S] and YWJQ"
