"""Command output made safe to print on the operator's own terminal.

A command's output is data, not instructions to our terminal: OSC (title, clipboard via OSC 52,
hyperlinks), DCS/APC/PM strings, cursor movement and screen clearing are dropped. Colors and
text styles (SGR, `ESC [ ... m`) survive; so do newline, carriage return, tab and backspace.
The filter streams: an escape sequence cut in two by a chunk boundary is held back until its end.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# One alternation over everything that may follow ESC; ordering matters (strings before CSI).
_SEQUENCE = re.compile(
    r"\x1b(?:"
    r"(?P<string>[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\))"  # OSC / DCS / SOS / PM / APC strings
    r"|\[(?P<params>[0-?]*)(?P<inter>[ -/]*)(?P<final>[@-~])"  # CSI
    r"|[ -/]*[0-~]"  # two-byte escapes (charset selection, keypad modes...)
    r")"
    r"|[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]"  # C0 controls but BS, TAB, LF, CR, ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x9c\x1b]*(?:\x07|\x9c|\x1b\\)"  # 8-bit DCS/SOS/OSC/PM/APC
    r"|[\x80-\x9f]"  # other C1 controls
    r"|\x1b"  # a lone ESC that starts nothing we know
)
_INCOMPLETE = re.compile(
    r"(?:\x1b(?:[\]P_^X][^\x07\x1b]*(?:\x1b)?|\[[0-?]*[ -/]*|[ -/]*)?"
    r"|\x9b[0-?]*[ -/]*|[\x90\x98\x9d\x9e\x9f][^\x07\x9c\x1b]*\x1b?)\Z"
)
# Any character that starts something `_SEQUENCE` removes; text without one passes unchanged.
_SPECIAL = re.compile(r"[\x00-\x07\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_HELD = 4096  # an unterminated sequence longer than this is dropped, not held forever


def _keep(match: re.Match[str]) -> str:
    if match.group("final") == "m" and not match.group("inter"):
        return match.group(0)
    return ""


_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_SGR = re.compile(r"\x1b\[[0-?]*m")
_STARTS = ("\x1b", "\x9b", "\x90", "\x98", "\x9d", "\x9e", "\x9f", "\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX")


def _incomplete_start(text: str) -> int | None:
    """Where an escape sequence cut off by the end of the chunk starts (only the last ones can)."""
    for start in sorted({p for p in (text.rfind(s) for s in _STARTS) if p >= 0}):
        if _INCOMPLETE.match(text, start):
            return start
    return None


def safe_text(text: str, *, colors: bool = True) -> str:
    """Whole text with every sequence but SGR (or all of them, `colors=False`) removed.

    Fast paths first: text that is plain once its CSI sequences are set aside needs no full scan.
    """
    if colors:
        if _SPECIAL.search(_SGR.sub("", text)) is None:
            return text
    else:
        stripped = _CSI.sub("", text)
        if _SPECIAL.search(stripped) is None:
            return stripped
    return _SEQUENCE.sub(_keep if colors else "", text)


class TerminalFilter:
    """Streaming form of `safe_text` for output that arrives in chunks."""

    def __init__(self, *, colors: bool = True) -> None:
        self.colors = colors
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        self._held = ""
        if _SPECIAL.search(text) is None:  # plain text: nothing to drop or hold back
            return text
        start = _incomplete_start(text)
        if start is not None and len(text) - start <= MAX_HELD:
            self._held = text[start:]
            text = text[:start]
        return safe_text(text, colors=self.colors)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return safe_text(held, colors=self.colors)


# Written after a command's output and before any text of ours (a prompt, a status line), so
# nothing the command printed changes how our text looks. Each part is harmless when the state is
# already normal; terminals ignore the parts they do not know.
TERMINAL_RESET = "".join((
    "\x1b7\x1b[?1049l",  # leave the alternate screen; xterm also restores the cursor, saved just before
    "\x1b[?2026l",  # end a synchronized update, which would keep our text from being drawn
    # Margins back to the whole screen (left/right too), inside save/restore so the cursor stays put.
    # That also disarms origin mode: with whole-screen margins, positions relative to them are
    # absolute. Resetting origin mode itself (CSI ?6l) would home the cursor on every prompt (xterm,
    # tmux), and the restore (ESC 8) would set it back anyway.
    "\x1b7\x1b[?69l\x1b[r\x1b8",
    "\x1b[0m",  # SGR 0: no conceal (8), reverse, blink, colors or underline carried into our text
    "\x1b(B\x0f",  # G0 is ASCII again and shifted in: letters are not drawn as line-drawing glyphs
    "\x1b]8;;\x1b\\",  # close an OSC 8 hyperlink, so our text is not a link to the command's URL
    "\x1b]104\x1b\\\x1b]110\x1b\\\x1b]111\x1b\\",  # palette and default colors reset: fg == bg hides text
    "\x1b[?25h",  # cursor visible
    "\x1b[?7h",  # autowrap on: with it off, the end of a long command line would not be shown
    "\x1b[4l",  # replace mode: in insert mode our text would push the command's text along, not overwrite it
    "\x1b[?2004l",  # bracketed paste off: a paste into our prompt arrives as typed
    "\x1b[?1l\x1b>",  # cursor keys and keypad send their normal codes to our prompt
    "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1004l\x1b[?1006l",  # no mouse or focus reports typed into it
))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Characters that show as nothing, as a space, or that reorder the text around them: the operator
# would read something other than what runs. Found by Unicode category (Cf: format, the bidi
# controls U+202A-202E, U+2066-2069, U+200E/F, U+061C, zero widths U+200B-200D, U+2060, U+FEFF,
# tag characters; Zl/Zp: line and paragraph separators; Zs: spaces other than the ASCII one,
# which the shell does not split on) plus letters that render blank (Hangul fillers, U+2800).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_HIDDEN_CATEGORIES = frozenset({"Cf", "Zl", "Zp", "Zs", "Co"})
_WORD = re.compile(r"[^\W\d_]+")


def _hidden(char: str) -> bool:
    return char != " " and (unicodedata.category(char) in _HIDDEN_CATEGORIES or char in _BLANK_LETTERS)


def _script(char: str) -> str:
    """The script a letter belongs to, near enough: the first word of its Unicode name
    (LATIN, CYRILLIC, GREEK, FULLWIDTH...)."""
    return unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]


def _mixed_words(text: str) -> Iterator[re.Match[str]]:
    """Words that mix Latin letters with another script: `kubеctl` with a Cyrillic `е`.

    (Words in one script, accented Latin, or Japanese mixing kana and kanji are not flagged.)
    """
    for match in _WORD.finditer(text):
        word = match.group()
        if not word.isascii() and len(scripts := {_script(c) for c in word}) > 1 and "LATIN" in scripts:
            yield match


def _escaped(char: str) -> str:
    return f"<U+{ord(char):04X}>"


def visible(text: str) -> str:
    """Runbook text (a command, a title) as printable characters that read as what runs.

    Control characters become `\\x1b`; invisible, bidi and unusual space characters become
    `<U+202E>`; in a word that mixes scripts (a look-alike of an ASCII word), every non-ASCII
    letter becomes `<U+0435>`. What the operator is asked to confirm must be exactly what is shown;
    a command hiding an erase-line and a carriage return, or a right-to-left override, could
    otherwise display one thing and run another.
    """
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if text.isascii():
        return text
    mixed = {index for match in _mixed_words(text) for index in range(match.start(), match.end())}
    return "".join(_escaped(c) if _hidden(c) or (i in mixed and not c.isascii()) else c
                   for i, c in enumerate(text))


def suspicious_characters(text: str) -> list[tuple[int, str]]:
    """(offset, why) for each invisible or reordering character and each mixed-script word, for `check`."""
    if text.isascii():
        return []
    found = [(i, f"holds {_escaped(c)} ({unicodedata.name(c, 'unnamed')}), which a terminal shows as "
                 "nothing, as a space or by reordering the text around it")
             for i, c in enumerate(text) if _hidden(c)]
    for match in _mixed_words(text):
        scripts = ", ".join(sorted({_script(c) for c in match.group()}))
        found.append((match.start(), f"has a word mixing scripts ({scripts}): {visible(match.group())} "
                                     "looks like another word but is not"))
    return sorted(found)


# ---- styles a viewer may show ------------------------------------------------------------------
# SGR attributes that can hide text or flash it: blink (5, 6) and conceal (8). A log viewer
# shows every character the command printed, steadily; everything else SGR can say is kept.
_UNSAFE_SGR = frozenset({5, 6, 8})
# SGR codes that take arguments in `;` form: 38/48/58 then 5;N (palette) or 2;R;G;B (true color).
_EXTENDED_SGR = frozenset({38, 48, 58})
_SGR_PARAMS = re.compile(r"\x1b\[([0-9;:]*)m")


def _safe_params(match: re.Match[str]) -> str:
    params = match.group(1)
    if not params:  # `ESC[m` is a reset
        return match.group(0)
    codes = params.split(";")
    kept: list[str] = []
    index = 0
    while index < len(codes):
        code = int(codes[index].split(":", 1)[0] or 0)  # `38:2::R:G:B`, `4:3`: one code with its arguments
        if code in _EXTENDED_SGR and ":" not in codes[index] and index + 1 < len(codes):
            width = 3 if codes[index + 1] == "5" else 5 if codes[index + 1] == "2" else 1
            kept.extend(codes[index : index + width])
            index += width
            continue
        if code not in _UNSAFE_SGR:
            kept.append(codes[index])
        index += 1
    return f"\x1b[{';'.join(kept)}m" if kept else ""


def steady_styles(text: str) -> str:
    """Text from `safe_text` (SGR only) without blink and conceal, for a viewer to render.

    An SGR that only asked for those is dropped whole (not turned into `ESC[m`, a reset).
    """
    if "\x1b" not in text:
        return text
    return _SGR_PARAMS.sub(_safe_params, text)


def without_styles(text: str) -> str:
    """Text from `safe_text` as plain characters: what a search matches and a copy holds."""
    return _SGR.sub("", text) if "\x1b" in text else text


def overwritten(line: str) -> str:
    """What a terminal shows for one line with carriage returns: the text after the last one
    (a progress bar's last state), a trailing `\\r` (from a PTY's `\\r\\n`) ignored."""
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1] if "\r" in line else line
