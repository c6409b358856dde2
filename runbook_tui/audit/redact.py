"""Streaming redaction of secret values, so they never reach a transcript, a pane or an export.

Each secret is matched in the forms a command is likely to print it in: as is, shell-quoted,
URL-encoded, base64 (standard and URL-safe, with and without padding) and JSON-escaped. Limits:
a secret printed in another encoding, inside a larger base64 blob (e.g. `user:password` in a
Basic auth header), or interleaved with escape sequences is not recognised. A very short secret
(a few characters) is still redacted everywhere it appears, which may hide unrelated text; the
empty string is ignored.

Output arrives in chunks that may cut a secret in two, so `feed` holds back the end of a chunk
while it could still be the start of a secret, and `flush` releases it when the command ends.
Together they produce exactly what `redact` would on the whole stream.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import threading
import urllib.parse


def variants(value: str) -> set[str]:
    """The forms of `value` a Redactor looks for (tests use it to look for leaks)."""
    raw = value.encode()
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return (
        {value, shlex.quote(value), _backslashed(value), urllib.parse.quote(value, safe=""),
         urllib.parse.quote_plus(value)}
        | encoded
        | {form.rstrip("=") for form in encoded}
        | {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    ) - {""}


def _backslashed(value: str) -> str:
    """The value as bash's `printf %q` and `${var@Q}`-less scripts escape it: a backslash per metacharacter."""
    return re.sub(r"([^\w./:=@%+~-])", r"\\\1", value)


class Redactor:
    """Replaces registered secrets with `[REDACTED:NAME]`, in whole strings or in streams.

    `add` may be called from any thread; each stream must be fed from one thread at a time.
    Register secrets before their output starts: text already returned cannot be recalled.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Variant -> secret name, and the alternation of all variants, swapped together by add().
        self._state: tuple[dict[str, str], re.Pattern[str] | None] = ({}, None)
        self._pending: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        """Register a secret (and its variants); an empty value is ignored."""
        if not value:
            return
        with self._lock:
            names = dict(self._state[0])
            for variant in variants(value):
                names.setdefault(variant, name)
            longest_first = sorted(names, key=len, reverse=True)
            self._state = (names, re.compile("|".join(map(re.escape, longest_first))))

    @property
    def max_len(self) -> int:
        """Length of the longest registered variant (0 with none)."""
        return max(map(len, self._state[0]), default=0)

    def redact(self, text: str) -> str:
        """`text` with every registered variant replaced (longest match first)."""
        names, pattern = self._state
        if pattern is None:
            return text
        return pattern.sub(lambda match: f"[REDACTED:{names[match.group()]}]", text)

    def feed(self, stream_id: str, text: str) -> str:
        """The part of `stream_id` so far that is safe to emit; the rest waits for more text."""
        names, pattern = self._state
        text = self._pending.pop(stream_id, "") + text
        if pattern is None:
            return text
        out: list[str] = []
        pos = 0
        hold = _hold_start(names, text, 0)
        present = any(variant in text for variant in names)
        while present and (match := pattern.search(text, pos)) is not None and match.start() < hold:
            out.append(text[pos : match.start()])
            out.append(f"[REDACTED:{names[match.group()]}]")
            pos = match.end()
            if pos > hold:  # the match ran into what looked like a partial secret
                hold = _hold_start(names, text, pos)
        out.append(text[pos:hold])
        if hold < len(text):
            self._pending[stream_id] = text[hold:]
        return "".join(out)

    def flush(self, stream_id: str) -> str:
        """What `feed` still holds for `stream_id`, redacted; call when the stream ends."""
        return self.redact(self._pending.pop(stream_id, ""))


def _hold_start(variants: dict[str, str], text: str, pos: int) -> int:
    """Earliest index >= pos from which the end of `text` is a proper prefix of a variant.

    Holding back less would let a secret that starts there leak its first characters
    once the rest of it arrives in the next chunk.
    """
    hold = len(text)
    for variant in variants:
        first = variant[0]
        start = max(pos, len(text) - len(variant) + 1)
        while (start := text.find(first, start, hold)) != -1:
            if variant.startswith(text[start:]):
                hold = start
                break
            start += 1
    return hold
