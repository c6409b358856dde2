"""What a code block is: commands (with their prompts and output), variables, client input or reference.

Every block gets a kind and a reason, so nothing a runbook holds disappears silently:
- prompted lines (`$ `, `user@host:~$ `, `[root@host ~]# `, `/ $ `, `PS C:\\> `, `> `, a `# ` root
  prompt before a program) are commands, the lines after each are its expected output;
- lines typed into a client (`psql=# `, `mysql> `, `127.0.0.1:6379> `, `mongo> `, `(gdb) `) are
  client input, attached to the command in the block that starts the client;
- a shell block, an untagged fence or an indented block without prompts is one script when its
  content reads as commands, a variable declaration when it only sets variables, and reference
  (JSON, YAML, SQL, PromQL, config, output, flag lists) otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from runbook_tui.model import BlockKind
from runbook_tui.parse.shellwords import (
    KNOWN_PROGRAMS,
    assignments,
    command_words,
    is_shell_grammar,
    looks_like_command,
    runs_command,
)

SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "zsh", "ksh"})
CONSOLE_LANGUAGES = frozenset({"console", "shell-session", "shellsession", "terminal"})
# Fences whose language names an interactive client: their lines are typed into it.
CLIENT_LANGUAGES = {"mongo": "mongo", "mongosh": "mongosh", "psql": "psql", "redis": "redis-cli", "gdb": "gdb"}
_SCRIPT_LANGUAGES = SHELL_LANGUAGES | CONSOLE_LANGUAGES | {""}
# What a reference block's language says it holds, in the words `check --json` uses for content.
_LANGUAGE_READS_AS = {
    "json": "JSON", "jsonc": "JSON", "yaml": "YAML", "yml": "YAML", "sql": "SQL", "promql": "a query (PromQL)",
    "hcl": "HCL", "terraform": "HCL", "tf": "HCL", "ini": "config", "toml": "config", "conf": "config",
    "text": "text or output", "txt": "text or output", "log": "log output", "output": "output",
}

# Shell prompts, strongest first. A word prefix sits right against its sign (`worker$`, `mon-a#`);
# a path prefix may have a space (`/ $`, `~ $`, `/prometheus $`).
_DOLLAR = re.compile(r"\$\s+(?P<cmd>\S.*)")
_POWERSHELL = re.compile(r"PS(?:\s+[^>\s][^>]*)?>\s*(?P<cmd>\S.*)")
_PREFIXED = re.compile(
    r"(?:\[[^\]\n]+\]|[\w.-]+@[\w.-]+(?::[^\s$#]*)?|[\w.-]+:[~/][^\s$#]*|[\w.-]+|[~/][^\s$#]*\s?)"
    r"(?P<sign>[$#%])\s+(?P<cmd>\S.*)"
)
_ZSH_TILDE = re.compile(r"(?:➜\s+)?~\s+(?P<cmd>\S.*)")
_ROOT = re.compile(r"#\s+(?P<cmd>\S.*)")
_GREATER = re.compile(r">\s*(?P<cmd>\S.*)")
# Client prompts: (pattern, client). The input is what follows the prompt, possibly nothing.
_CLIENT_PROMPTS = (
    (re.compile(r"[\w-]+=[#>]\s?(?P<input>.*)"), "psql"),
    (re.compile(r"(?:mysql|MariaDB \[[^\]]*\])>\s?(?P<input>.*)"), "mysql"),
    (re.compile(r"(?:redis(?:-cli)?|(?:\d{1,3}\.){3}\d{1,3}:\d+(?:\[\d+\])?)>\s?(?P<input>.*)"), "redis-cli"),
    (re.compile(r"(?:mongo|mongos|[\w-]+:(?:PRIMARY|SECONDARY))>\s?(?P<input>.*)"), "mongo"),
    (re.compile(r"\(gdb\)\s?(?P<input>.*)"), "gdb"),
    (re.compile(r"irb\([^)]*\):\d+:\d+>\s?(?P<input>.*)"), "irb"),
    (re.compile(r"sqlite>\s?(?P<input>.*)"), "sqlite3"),
)
# The prompt each client's input is written with (by `convert`), read back as that client.
CLIENT_PROMPTS = {"psql": "psql=# ", "mysql": "mysql> ", "redis-cli": "redis> ", "mongo": "mongo> ", "gdb": "(gdb) ",
                  "irb": "irb(main):001:0> ", "sqlite3": "sqlite> "}
# Commands that open a root shell: the `# ` lines after them are typed into it.
_ROOT_SHELL = re.compile(r"(?:sudo\s+(?:su|-i|-s|bash)|su)(?:\s+-|\s+root)?\s*\Z")
_ASSIGNS = re.compile(r"(?:export\s+)?[A-Za-z_]\w*=")  # a line that sets a variable (maybe running a command)
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_]\w*)\1")
_POWERSHELL_SHAPE = re.compile(r"(?:[A-Z][a-z]+-[A-Z]\w*|\$\w+(?:\.\w+)*\s*=)")
_SQL = re.compile(r"(?:select|insert|update|delete|create|drop|alter|show|explain|with|begin|grant)\b.*;?\s*\Z",
                  re.IGNORECASE | re.DOTALL)
_CONFIG_LINE = re.compile(r"\[[\w .\"-]+\]\Z|[\w.-]+\s*=\s*\S|[\w.-]+\s+[\w.-]+\s*\{?\Z")
_TIMESTAMPED = re.compile(r"(?:[IWEF]\d{4}\s|\d{4}[-/]\d\d[-/]\d\d|\w{3}\s+\d+\s+\d\d:\d\d)")
_LISTING = re.compile(r"(?:[d-][rwx-]{9}\s|total\s+\d+\Z)")


@dataclass
class Piece:
    """One command (with what it prints) or one run of client input found in a block."""

    kind: str  # "command" or "client-input"
    line: int
    text: str = ""
    output: list[str] = field(default_factory=list)
    client: str | None = None
    client_input: list[str] = field(default_factory=list)

    @property
    def expected_output(self) -> str | None:
        return "\n".join(self.output).strip("\n") or None


@dataclass
class Reading:
    """A block's kind, the reason shown by `check --json`, and what it yields."""

    kind: BlockKind
    reason: str
    pieces: list[Piece] = field(default_factory=list)
    assignments: list[tuple[str, str, int]] = field(default_factory=list)  # (name, value, line)
    repairs: list[int] = field(default_factory=list)  # lines where a missing `\` was supplied
    prompted: bool = False  # its commands were behind prompts (a console transcript), not a script


def normalise_language(info: str) -> tuple[str, str]:
    """(language, attribute text) from a fence's info string: `!bash {name=x}` → ("bash", "{name=x}")."""
    info = info.strip()
    if info.startswith("{"):
        return "", info
    language, _, attrs = info.partition(" ")
    return language.lower().lstrip("!").strip("{}"), attrs.strip()


def read_block(language: str, content: str, first_line: int, known: frozenset[str] = KNOWN_PROGRAMS) -> Reading:
    """Classify a block's content; `first_line` is the file line of its first content line."""
    if not content.strip():
        return Reading("reference", "reference: empty")
    if language in CLIENT_LANGUAGES:
        lines = [ln.strip() for ln in content.split("\n") if ln.strip() and not ln.strip().startswith("//")]
        piece = Piece("client-input", first_line, client=CLIENT_LANGUAGES[language], client_input=lines)
        return Reading("client-input", f"client-input: a {language} block, typed into {piece.client}", [piece])
    if language not in _SCRIPT_LANGUAGES:
        return Reading("reference", f"reference: {_LANGUAGE_READS_AS.get(language, f'a {language} block')}")
    lines = content.split("\n")
    prompted = _prompted(lines, first_line, language, known)
    if prompted is not None:
        return prompted
    return _script(language, lines, first_line, known)


# ---- prompted blocks -------------------------------------------------------------------------
def _client_prompt(line: str) -> tuple[str, str] | None:
    for pattern, client in _CLIENT_PROMPTS:
        match = pattern.fullmatch(line)
        if match:
            return client, match.group("input").strip()
    return None


def _strong_prompt(line: str, known: frozenset[str]) -> str | None:
    """The command after an unmistakable shell prompt on this line, else None."""
    for pattern in (_DOLLAR, _POWERSHELL):
        if match := pattern.fullmatch(line):
            return match.group("cmd")
    match = _PREFIXED.fullmatch(line)
    if match and line[0] not in "#$" and looks_like_command(match.group("cmd"), known=known):
        return match.group("cmd")
    match = _ZSH_TILDE.fullmatch(line)
    if match and _is_strict(match.group("cmd"), known):
        return match.group("cmd")
    return None


def _prompted(lines: list[str], first_line: int, language: str, known: frozenset[str]) -> Reading | None:
    """Commands, client input and output of a block with prompts; None when it has none."""
    stripped = [ln.strip() for ln in lines]
    dollar = any(_DOLLAR.fullmatch(s) for s in stripped)
    greater = not dollar and any(
        (m := _GREATER.fullmatch(s)) and (_is_strict(m.group("cmd"), known) or _POWERSHELL_SHAPE.match(m.group("cmd")))
        for s in stripped
    )
    console_root = language in CONSOLE_LANGUAGES and not dollar
    pieces: list[Piece] = []
    variables: list[tuple[str, str, int]] = []
    root_shell = False
    seen = False  # a prompt, of a shell or a client
    index = 0
    while index < len(lines):
        text = stripped[index]
        command = _strong_prompt(text, known)
        if command is None and (root_shell or console_root) and (m := _ROOT.fullmatch(text)):
            candidate = m.group("cmd")
            if _is_strict(candidate, known) or (root_shell and looks_like_command(candidate, known=known)):
                command = candidate
        if command is None and greater and (m := _GREATER.fullmatch(text)):
            command = m.group("cmd")
        if command is not None:
            seen = True
            start = index
            parts = [command]
            index = _continue(lines, index, parts)
            joined = "\n".join(parts)
            pairs = assignments(joined)
            if pairs is not None and not runs_command(joined):
                variables.extend((name, value, first_line + start) for name, value in pairs)
            else:
                pieces.append(Piece("command", first_line + start, joined))
                # a root shell lasts until its `exit`
                root_shell = (root_shell or bool(_ROOT_SHELL.match(command.strip()))) and command.strip() != "exit"
            index += 1
            continue
        client = _client_prompt(text)
        if client is not None:
            seen = True
            name, typed = client
            owner = pieces[-1] if pieces else None
            if owner is None or (owner.kind == "client-input" and owner.client != name):
                owner = Piece("client-input", first_line + index, client=name)
                pieces.append(owner)
            if typed:
                owner.client = owner.client or name
                owner.client_input.append(typed)
            index += 1
            continue
        if pieces:
            pieces[-1].output.append(lines[index])
        elif (pairs := assignments(text)) is not None and not runs_command(text):
            variables.extend((name, value, first_line + index) for name, value in pairs)
        index += 1
    if not seen:
        return None
    if not pieces:
        if variables:
            return Reading("variables", "variables: prompted assignments", assignments=variables, prompted=True)
        return None
    kind: BlockKind = "command" if any(p.kind == "command" for p in pieces) else "client-input"
    what = "prompted commands" if kind == "command" else f"typed at a {pieces[0].client} prompt"
    return Reading(kind, f"{kind}: {what}", pieces, variables, prompted=True)


def _continue(lines: list[str], index: int, parts: list[str]) -> int:
    """Join `\\` continuations, `|`/`&&` lines and heredoc bodies to the command in `parts`; the last index used."""
    heredoc = _HEREDOC.search(parts[0])
    while index + 1 < len(lines):
        following = lines[index + 1].strip()
        if heredoc:
            index += 1
            parts.append(lines[index])
            if following == heredoc.group(2):
                heredoc = None
            continue
        if parts[-1].rstrip().endswith("\\") or following.startswith(("|", "&&", "||")) and following:
            index += 1
            parts.append(lines[index].rstrip())
            heredoc = _HEREDOC.search(lines[index])
            continue
        break
    return index


# ---- blocks without prompts ------------------------------------------------------------------
def _outside_heredocs(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(index, stripped text) of each line that is not in a heredoc's body (its data, or its end)."""
    heredoc = None
    for index, line in enumerate(lines):
        text = line.strip()
        if heredoc is not None:
            if text == heredoc:
                heredoc = None
            continue
        yield index, text
        if match := _HEREDOC.search(text):
            heredoc = match.group(2)


def _code_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(index, text) of the lines that start a command line: not blank, a comment, a continuation or heredoc data."""
    out = []
    continued = False
    for index, text in _outside_heredocs(lines):
        was_continued, continued = continued, text.endswith("\\")
        if text and not text.startswith("#") and not was_continued:
            out.append((index, text))
    return out


def _is_strict(line: str, known: frozenset[str]) -> bool:
    """A line that is a command beyond doubt: a known program, a path, shell grammar, or flags."""
    if not looks_like_command(line, known=known):
        return False
    if is_shell_grammar(line):
        return True
    program, args = command_words(line)
    if program in known or program.startswith(("/", "./", "../", "~/")) or not program:
        return True
    return any(arg.startswith("-") for arg in args)


def _reference_reason(text: str) -> str:
    first = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    if first[:1] in "{[" and not first.startswith("[["):
        return "reference: JSON" if first[:1] == "{" or '"' in text else "reference: config"
    if first.startswith('"') and '":' in first:
        return "reference: JSON"
    if re.match(r"[\w.-]+:(\s|$)", first) or first.startswith("- ") or first.startswith("apiVersion"):
        return "reference: YAML"
    if first.startswith("-"):
        return "reference: a list of flags"
    if _SQL.match(first):
        return "reference: SQL"
    if _TIMESTAMPED.match(first) or re.search(r"\b(?:error|warning|fatal|fata|panic)\b", first, re.IGNORECASE):
        return "reference: log output"
    if _LISTING.match(first):
        return "reference: a file listing"
    if re.search(r"\b\w+\s*(?:by\s*)?\(", first) and re.search(r"[{\[]", text):
        return "reference: a query (PromQL)"
    if _CONFIG_LINE.match(first):
        return "reference: config"
    return "reference: not a command (output or text)"


def _script(language: str, lines: list[str], first_line: int, known: frozenset[str]) -> Reading:
    content = "\n".join(lines).strip("\n")
    lead = len(lines) - len("\n".join(lines).lstrip("\n").split("\n"))
    first_line += lead
    lines = content.split("\n")
    if lines[0].startswith("#!"):
        return Reading("reference", "reference: a script file to save (it starts with #!)")
    pairs = assignments(content)
    if pairs is not None and not runs_command(content):
        return Reading("variables", "variables: only NAME=value lines",
                       assignments=[(name, value, first_line) for name, value in pairs])
    code = _code_lines(lines)
    if not code:
        return Reading("reference", "reference: only comments")
    commands = [(i, t) for i, t in code if not _ASSIGNS.match(t)]
    head = commands[0][1] if commands else code[0][1]
    shell = language in SHELL_LANGUAGES
    if not commands and runs_command(content):
        reason = "command: assignments that run commands"
    elif shell and looks_like_command(head, known=known):
        reason = "command: shell block"
    elif not shell and (_is_strict(head, known) or (
            looks_like_command(head, known=known) and any(_is_strict(t, known) for _, t in commands[1:]))):
        reason = "command: reads as commands" + (" (untagged)" if not language else f" ({language}, no prompt)")
    else:
        return Reading("reference", _reference_reason(content))
    if pairs is None and commands and code[0][1] != head:
        reason = "command: variables, then commands"
    text, output, repairs = _split_output(lines, known, split=not shell)
    piece = Piece("command", first_line, text, output.split("\n") if output else [])
    return Reading("command", reason, [piece], repairs=[first_line + r for r in repairs])


def _split_output(lines: list[str], known: frozenset[str], *, split: bool) -> tuple[str, str, list[int]]:
    """The script, any output shown after it (untagged blocks only), and lines where a `\\` was supplied.

    A line that starts with a flag right after a `\\` continuation ended is the same command
    (the author dropped one `\\`): the `\\` is supplied, so the command runs as written to mean.
    """
    lines = list(lines)
    repairs: list[int] = []
    continued = False
    for index, text in _outside_heredocs(lines):
        if (text.startswith("-") and index >= 2 and not continued and lines[index - 2].rstrip().endswith("\\")
                and not lines[index - 1].rstrip().endswith("\\") and lines[index - 1].strip()):
            lines[index - 1] = lines[index - 1].rstrip() + " \\"
            repairs.append(index - 1)
            continued = True
        if (split and not continued and text and not text.startswith(("#", "|", "&&", "||"))
                and index > 0 and not looks_like_command(text, known=known) and not _ASSIGNS.match(text)
                and not _closes(text)):
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:]).strip("\n"), repairs
        continued = text.endswith("\\")
    return "\n".join(lines).strip("\n"), "", repairs


def _closes(text: str) -> bool:
    """Shell grammar that ends a compound command or continues one (`done`, `fi`, `}`, `)`, `;;`)."""
    return bool(re.match(r"(?:done|fi|esac|then|do|else|elif|\}|\)|;;|EOF)\b", text)) or text[:1] in "})"
