"""Which local files a runbook's commands execute: part of what the operator trusts.

A trusted runbook that runs `./deploy.sh` is only as trusted as `deploy.sh`; so the scripts its
commands run by path (`./deploy.sh`, `/opt/app/x.sh`), hand to an interpreter (`bash scripts/x.sh`,
`python tools/y.py`) or source (`source ./env.sh`, `. ./env.sh`) are pinned by SHA-256 with it,
and so are a `shell:` given as a path and a `BASH_ENV` / `ENV` file. Paths resolve the way the
engine runs the command: from the task's cwd, following a literal `cd` inside the command.

This reads shell text without running it, so it is a floor, not a proof: a path the shell only
computes at run time (`$SCRIPT`, a glob, a placeholder) cannot be pinned and is left out.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import stat
from collections.abc import Iterator

from runbook_tui.model import Runbook, Task

# Installed by the system's package manager, not by whoever wrote the runbook: pinning them would
# only break trust at the next upgrade, and whoever can change them is root already.
SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/", "/dev/", "/proc/")
# Environment variables naming a file the shell runs before the command (bash, sh).
STARTUP_FILE_VARIABLES = ("BASH_ENV", "ENV")

# Characters that end a simple command or start a redirection; the tokenizer returns runs of them.
_PUNCTUATION = ";&|()<>\n`"
# Words a simple command may start with that are shell grammar, not a program (`$` is what the
# tokenizer leaves of a `$(` before its parenthesis).
_KEYWORDS = frozenset({"!", "{", "}", "if", "then", "elif", "else", "do", "while", "until", "time", "$"})
# Programs that run the rest of their words as a command, with their options that take a value.
_WRAPPERS: dict[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-C", "-D", "-p", "-r", "-t", "-U", "-T"}),
    "env": frozenset({"-u", "-C", "-S"}),
    "exec": frozenset({"-a"}),
    "nice": frozenset({"-n"}),
    "timeout": frozenset({"-s", "-k", "--signal", "--kill-after"}),
    "nohup": frozenset(), "command": frozenset(), "builtin": frozenset(),
}
# Interpreters run the file named by their first operand. Per family: the option letters after
# which they run no file (inline code, a module, standard input) and the options taking a value.
_SHELL = ("cs", frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"}))
_PYTHON = ("cm", frozenset({"-W", "-X"}))
_OTHER = ("eEpr", frozenset({"--require"}))
_INTERPRETERS = {
    **dict.fromkeys(("sh", "bash", "dash", "zsh", "ksh", "mksh", "source", "."), _SHELL),
    **dict.fromkeys(("python", "python2", "python3", "pypy", "pypy3"), _PYTHON),
    **dict.fromkeys(("perl", "ruby", "node", "php"), _OTHER),
}
_VERSIONED_PYTHON = re.compile(r"python\d(?:\.\d+)?\Z")
_COMPUTED = re.compile(r"[$`*?\[{]")  # a word the shell expands at run time: its file is unknown here


def command_cwd(runbook: Runbook, task: Task) -> str:
    """Where the engine runs `task` (the session runs it there: trust and execution cannot drift apart)."""
    return os.path.abspath(task.options.cwd or runbook.cwd or os.getcwd())


def local_scripts(runbook: Runbook) -> dict[str, str | None]:
    """Every local file the runbook's commands execute, by absolute path: its SHA-256, or None when absent."""
    found: dict[str, str | None] = {}
    for task in runbook.commands():
        if task.options.container:  # runs inside the container, not here
            continue
        for path in task_scripts(runbook, task):
            if path not in found:
                found[path] = file_sha256(path)
    return found


def task_scripts(runbook: Runbook, task: Task) -> Iterator[str]:
    """The local files one command task executes (absolute paths, system files left out)."""
    cwd = command_cwd(runbook, task)
    env = {**dict(runbook.env), **dict(task.options.env or ())}
    named = [env.get(name, "") for name in STARTUP_FILE_VARIABLES]
    if runbook.shell and "/" in runbook.shell:  # a program by path, run from the task's cwd
        named.append(runbook.shell)
    for word in named:
        if word:
            yield from _local(word, cwd)
    command = task.command or ""
    for token in task.placeholders:  # filled in at run time: whatever it names is unknown here
        command = command.replace(token, "$PLACEHOLDER")
    yield from command_scripts(command, cwd)


def command_scripts(command: str, cwd: str | None) -> Iterator[str]:
    """The local files a shell script executes, reading each simple command in order.

    A `cd` moves the rest of the script, except inside parentheses (a subshell, `$( )`).
    """
    outer: list[str | None] = []
    for item in _simple_commands(command):
        if item == "(":
            outer.append(cwd)
        elif item == ")":
            cwd = outer.pop() if outer else cwd
        elif item[0] in ("cd", "pushd"):
            cwd = _changed_directory(list(item[1:]), cwd)
        else:
            yield from _executed(list(item), cwd)


def file_sha256(path: str) -> str | None:
    """The SHA-256 of a plain file; None when there is none (missing, a directory, unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not hang us
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return hashlib.file_digest(file, "sha256").hexdigest()


def _simple_commands(command: str) -> Iterator[list[str] | str]:
    """Each simple command's words (quotes removed, redirections dropped), and `(` / `)` where a subshell
    opens and closes.

    The whole script is read as the shell reads it; when its quotes do not balance (an apostrophe
    in a here-document, say), line by line instead, so one odd line hides nothing after it.
    """
    text = command.replace("\\\n", "")
    try:
        yield from _tokenized(text)
    except ValueError:
        for line in text.splitlines():
            try:
                yield from _tokenized(line)
            except ValueError:
                continue


def _tokenized(text: str) -> list[list[str] | str]:
    lexer = shlex.shlex(_without_comments(text), posix=True, punctuation_chars=_PUNCTUATION)
    lexer.whitespace, lexer.commenters, lexer.whitespace_split = " \t\r", "", True
    commands: list[list[str] | str] = []
    words: list[str] = []
    redirect = False
    for token in lexer:
        if token and all(c in _PUNCTUATION for c in token):
            redirect = "<" in token or ">" in token
            if not redirect and words:
                commands.append(words)
                words = []
            commands += [c for c in token if c in "()"]
        elif redirect:
            redirect = False
        elif words or token not in _KEYWORDS:
            words.append(token)
    return commands + [words] if words else commands


def _without_comments(text: str) -> str:
    """`text` without its `#` comments: a `#` that starts an unquoted word, to the end of its line."""
    out: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quote != "'":
            out.append(text[index:index + 2])
            index += 2
            continue
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (not out or out[-1][-1] in " \t\n;&|()"):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _executed(words: list[str], cwd: str | None) -> Iterator[str]:
    """The local file a simple command executes by path, if any (in `bash -c CODE`, those CODE runs)."""
    words = _after_wrappers(words)
    if not words:
        return
    name = os.path.basename(words[0])
    family = _INTERPRETERS.get(name, _PYTHON if _VERSIONED_PYTHON.match(name) else None)
    if family is None:
        if "/" in words[0]:
            yield from _local(words[0], cwd)
        return
    found = _operand(words[1:], *family)
    if found is None:
        return
    inline, operand = found
    if not inline:
        yield from _local(operand, cwd)
    elif family is _SHELL:
        yield from command_scripts(operand, cwd)


def _after_wrappers(words: list[str]) -> list[str]:
    """The words from the program that really runs: past `VAR=x`, `sudo -u x`, `env`, `timeout 5`..."""
    index = 0
    while index < len(words):
        word = words[index]
        if "=" in word and word.split("=", 1)[0].isidentifier():
            index += 1
            continue
        options = _WRAPPERS.get(os.path.basename(word))
        if options is None:
            break
        index += 1
        while index < len(words) and words[index].startswith("-"):
            index += 2 if words[index] in options else 1
        if word == "timeout":
            index += 1  # the duration
    return words[index:]


def _operand(args: list[str], inline_letters: str, with_value: frozenset[str]) -> tuple[bool, str] | None:
    """An interpreter's first operand, and whether it is inline code (or a module) rather than a file."""
    index, inline = 0, False
    while index < len(args):
        arg = args[index]
        if arg == "-":  # the script comes on standard input
            return None
        if arg == "--" or not arg.startswith(("-", "+")):
            rest = args[index + 1:] if arg == "--" else args[index:]
            return (inline, rest[0]) if rest else None
        if arg in ("--eval", "--print", "--command") or (
                not arg.startswith("--") and any(letter in arg[1:] for letter in inline_letters)):
            inline = True
        index += 2 if arg in with_value else 1
    return None


def _changed_directory(args: list[str], cwd: str | None) -> str | None:
    """The directory after `cd ARGS`; None when the shell decides it at run time."""
    operands = [a for a in args if a == "-" or not a.startswith("-")]
    target = operands[0] if operands else "~"
    if target == "-" or _COMPUTED.search(target):  # `cd -`: wherever the shell was before
        return None
    target = os.path.expanduser(target)
    if os.path.isabs(target):
        return os.path.normpath(target)
    return os.path.normpath(os.path.join(cwd, target)) if cwd is not None else None


def _local(word: str, cwd: str | None) -> Iterator[str]:
    """`word` as an absolute path when it names a file of the runbook's (not a system one)."""
    if _COMPUTED.search(word):
        return
    word = os.path.expanduser(word)
    if not os.path.isabs(word):
        if cwd is None:
            return
        word = os.path.join(cwd, word)
    path = os.path.normpath(word)
    if not path.startswith(SYSTEM_PREFIXES):
        yield path
