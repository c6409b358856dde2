"""Where runbook text could run more than the operator sees: placeholders the shell would
evaluate, environment that loads code, a shell that is not a shell, characters that hide.

A `<placeholder>` is filled in as text (engine/env.py quotes it for its spot). That is safe only
where the shell reads the text once, as data: unquoted, inside '…' or inside "…". Anywhere the
text is read a second time as code (a heredoc body, `$( … )`, backticks, `bash -c '…'`,
`ssh host '…'`, `eval`, a `#` comment a newline would end) no quoting of ours holds, so `check`
refuses it and the engine will not fill it in; the runbook passes the value as `$NAME` instead.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import yaml

from runbook_tui.model import Runbook, Task
from runbook_tui.parse.lint import Warning
from runbook_tui.parse.shellwords import placeholder_label

# Why a value at a spot would be run as code, and how to write the runbook instead.
# `{name}` is the environment variable the placeholder becomes.
EVALUATED = {
    "heredoc": ("in a heredoc body", "the shell expands the body (and a newline in the value could end the "
                "heredoc early); write ${name} in an unquoted heredoc"),
    "substitution": ("inside $( … )", 'write "${name}" there'),
    "backticks": ("inside backticks", 'write $(… "${name}" …) instead of backticks'),
    "parameter": ("inside ${ … }", "write ${{VAR:-${name}}}"),
    "arithmetic": ("in an arithmetic expression", "the shell evaluates it as code; write ${name} and check it is a "
                   "number first"),
    "variable-name": ("where the shell expects a variable name", "a name with a subscript (a[$(…)]) is evaluated "
                      "as code; keep the variable name fixed and write \"${name}\" as its value"),
    "dangerous-assignment": ("in an assignment to a variable that decides what runs (PATH, PS4, LD_PRELOAD...)",
                             "do not let an operator's value set it; if it must vary, check \"${name}\" "
                             "against a fixed list first"),
    "redirect": ("as the target of >&", "bash expands that word a second time; write &> \"${name}\""),
    "ansi-c": ("inside $'…'", "backslash escapes in the value would be interpreted; write \"${name}\""),
    "comment": ("in a # comment", "a newline in the value would end the comment and run the rest; "
                "leave the placeholder out of the comment"),
    "eval": ("in the arguments of eval", "eval runs its arguments as code; do without eval and write \"${name}\""),
    "trap": ("in a trap action", "the action runs as code; write \"${name}\" inside it"),
    "shell-string": ("in a script string that another shell runs", "the inner shell parses the value as code; "
                     "write \"${name}\" inside the string (the environment reaches the inner shell), or pass it "
                     "as an argument: bash -c '… \"$1\" …' _ \"${name}\""),
    "ssh": ("in a command ssh sends to the remote shell", "the remote shell parses it as code; write "
            "\"$(printf %q \"${name}\")\" so it is quoted for the remote shell"),
    "interpreter": ("in code an interpreter runs (-c/-e)", "pass it as data: read it from the environment inside "
                    "the program (os.environ[\"{name}\"], $ENV{{{name}}}, process.env.{name})"),
    "piped-to-shell": ("in text piped into a shell", "that shell runs it as code; do not build scripts from "
                       "values, write \"${name}\" in the script"),
}
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish"})
# Interpreters whose option introduces program text: python -c, perl -e/-E, ruby -e, node -e/-p, php -r.
INTERPRETER_CODE_OPTIONS = {"python": "c", "perl": "eE", "ruby": "e", "node": "ep", "php": "r"}
# ssh options that take an argument (OpenSSH 9); the first other word is the destination.
SSH_ARG_OPTIONS = frozenset("BbcDEeFIiJLlmOoPpQRSWw")
# [[ x -eq y ]] evaluates both sides as arithmetic, and arithmetic runs a[$(…)] subscripts.
ARITHMETIC_OPERATORS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
DECLARATIONS = frozenset({"declare", "typeset", "local", "export", "readonly"})
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\+?=")
_SUBSCRIPT_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[.*\])\+?=", re.DOTALL)
_EMPTY_SUBSTITUTION = re.compile(r"[$<>]\(\s*\)|``")
_COMMAND_END = frozenset({";", "&", "&&", "||", "|", "|&", ";;", "(", ")", "\n"})


@dataclass(frozen=True)
class Spot:
    """How the shell reads the text at one place of a command."""

    quote: str = ""  # "", "'" or '"': the quotes the place is inside
    evaluated: str | None = None  # a key of EVALUATED when a value here would run as code


@dataclass
class _Word:
    start: int
    end: int
    raw: str
    redirect: str | None = None  # the operator when this word is a redirection's target

    @property
    def value(self) -> str:
        """The word after quote removal, near enough to recognise a program or an option (empty
        substitutions expand to nothing: `$()eval` is `eval`)."""
        raw = _EMPTY_SUBSTITUTION.sub("", self.raw)
        try:
            parts = shlex.split(raw)
        except ValueError:
            return raw
        return parts[0] if len(parts) == 1 else raw


class _Scan:
    """One pass over a script: the quoting and evaluation of every character, and the simple
    commands (their words with positions) that the command rules then look at."""

    def __init__(self, text: str, tokens: tuple[str, ...] = ()) -> None:
        self.text = text
        self.tokens = tokens  # placeholders: opaque word text, not `<` and `>` redirections
        self.quote = [""] * len(text)
        self.evaluated: list[str | None] = [None] * len(text)
        self.escaped: set[int] = set()  # characters a backslash makes literal
        self.commands: list[list[_Word]] = [[]]
        self.piped: list[bool] = [False]  # whether each command's output goes into the next one
        self._heredocs: list[tuple[str, bool]] = []
        self._run()
        self._apply_command_rules()

    # ---- marking ---------------------------------------------------------------------
    def _mark(self, start: int, end: int, reason: str) -> None:
        for index in range(start, min(end, len(self.text))):
            if self.evaluated[index] is None:
                self.evaluated[index] = reason

    def _end_command(self, piped: bool = False) -> None:
        self.piped[-1] = piped
        if self.commands[-1]:
            self.commands.append([])
            self.piped.append(False)

    # ---- nested constructs: where they end ----------------------------------------------
    def _skip_single(self, index: int) -> int:
        end = self.text.find("'", index)
        return len(self.text) if end < 0 else end + 1

    def _skip_double(self, index: int) -> int:
        """Past the closing quote of a "…" that opened before `index`; marks what is nested in it."""
        text = self.text
        while index < len(text):
            char = text[index]
            self.quote[index] = '"'
            if char == "\\":
                self.escaped.add(index + 1)
                index += 2
            elif char == '"':
                return index + 1
            elif char in "$`" and (nested := self._nested(index)) is not None:
                index = nested
            else:
                index += 1
        return index

    def _nested(self, index: int) -> int | None:
        """End of a `$(…)` (or `<(…)`, `>(…)`), `$((…))`, `$[…]`, `${…}`, `$'…'` or backtick string
        at `index` (marked as evaluated), or None when nothing nested starts there."""
        text = self.text
        if text.startswith("$((", index):
            end, reason = self._balanced(index + 3, 2), "arithmetic"
        elif text.startswith(("$(", "<(", ">("), index) and (text[index] == "$" or self.quote[index] == ""):
            end, reason = self._balanced(index + 2, 1), "substitution"
        elif text.startswith("$[", index):  # the old spelling of $(( ))
            end, reason = self._balanced(index + 2, 1, "[]"), "arithmetic"
        elif text.startswith("${", index):
            end, reason = self._balanced(index + 2, 1, "{}"), "parameter"
        elif text.startswith("$'", index) and self.quote[index] == "":
            end, reason = self._until(index + 2, "'"), "ansi-c"
        elif text[index] == "`":
            end, reason = self._until(index + 1, "`"), "backticks"
        else:
            return None
        self._mark(index, end, reason)
        return end

    def _balanced(self, index: int, depth: int, pair: str = "()") -> int:
        """Past the closer that closes `depth` open `pair`s (parentheses; brackets, braces for `$[…]`, `${…}`),
        skipping quoted and nested text."""
        text = self.text
        while index < len(text):
            char = text[index]
            if char == "\\":
                index += 2
                continue
            if char == "'":
                index = self._skip_single(index + 1)
                continue
            if char == '"':
                index = self._skip_quoted_inside(index + 1)
                continue
            if char == "`":
                index = self._until(index + 1, "`")
                continue
            if char == pair[0]:
                depth += 1
            elif char == pair[1]:
                depth -= 1
                if depth == 0:
                    return index + 1
            index += 1
        return len(text)

    def _skip_quoted_inside(self, index: int) -> int:
        """Past a "…" inside an evaluated construct (already marked whole, so only its end matters)."""
        text = self.text
        while index < len(text):
            if text[index] == "\\":
                index += 2
            elif text[index] == '"':
                return index + 1
            elif text.startswith("$(", index):
                index = self._balanced(index + 2, 1)
            else:
                index += 1
        return len(text)

    def _until(self, index: int, closer: str) -> int:
        """Past the first `closer` a backslash does not escape (the end of `$'…'` or of backticks)."""
        while index < len(self.text):
            if self.text[index] == "\\":
                index += 2
            elif self.text[index] == closer:
                return index + 1
            else:
                index += 1
        return len(self.text)

    # ---- the top level ---------------------------------------------------------------
    def _run(self) -> None:
        text = self.text
        index = 0
        word_start: int | None = None
        redirect: str | None = None
        compound = 0  # open `name=(` array assignments: their parentheses end no command

        def close_word(end: int) -> None:
            nonlocal word_start, redirect
            if word_start is not None:
                self.commands[-1].append(_Word(word_start, end, text[word_start:end], redirect))
                if redirect in ("<<", "<<-"):
                    self._heredocs.append((_Word(0, 0, text[word_start:end]).value, redirect == "<<-"))
                word_start, redirect = None, None

        while index < len(text):
            char = text[index]
            if word_start is None and (char in " \t" or text.startswith("\\\n", index)):
                index += 1 if char != "\\" else 2  # blanks and line continuations between words
                continue
            if char == "\n":
                close_word(index)
                self._end_command()
                index = self._heredoc_bodies(index + 1)
                continue
            if word_start is None and char == "#":
                end = text.find("\n", index)
                end = len(text) if end < 0 else end
                self._mark(index, end, "comment")
                index = end
                continue
            if word_start is None and not self.commands[-1] and text.startswith("((", index):
                end = self._balanced(index + 2, 2)
                self._mark(index, end, "arithmetic")
                index = end
                continue
            token = next((t for t in self.tokens if text.startswith(t, index)), None)
            if token is not None:
                word_start = index if word_start is None else word_start
                index += len(token)
                continue
            operator = _operator_at(text, index)
            if operator == "(" and word_start is not None and text[index - 1] == "=":
                compound += 1
                index += 1
                continue
            if operator == ")" and compound:
                compound -= 1
                index += 1
                continue
            if operator:
                if operator[0] in "<>" and word_start is not None and text[word_start:index].isdigit():
                    word_start = None  # `2>&1`: the 2 is the redirection's file descriptor, not a word
                close_word(index)
                if operator in _COMMAND_END:
                    self._end_command(piped=operator in ("|", "|&"))
                else:
                    redirect = operator
                index += len(operator)
                continue
            if char in " \t":
                close_word(index)
                index += 1
                continue
            if word_start is None:
                word_start = index
            if char == "\\":
                self.escaped.add(index + 1)
                index += 2
            elif char == "'":
                end = self._skip_single(index + 1)
                for spot in range(index + 1, end - 1):
                    self.quote[spot] = "'"
                index = end
            elif char == '"':
                index = self._skip_double(index + 1)
            elif (nested := self._nested(index)) is not None:
                index = nested
            else:
                index += 1
        close_word(len(text))

    def _heredoc_bodies(self, index: int) -> int:
        """Past the bodies of the heredocs opened on the line that just ended (marked evaluated)."""
        while self._heredocs:
            delimiter, strip_tabs = self._heredocs.pop(0)
            start = index
            while index < len(self.text):
                end = self.text.find("\n", index)
                end = len(self.text) if end < 0 else end
                line = self.text[index:end]
                index = end + 1
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    self._mark(start, index - len(line) - 1, "heredoc")
                    break
            else:
                self._mark(start, len(self.text), "heredoc")
        return index

    # ---- what commands do with their words --------------------------------------------
    def _apply_command_rules(self) -> None:
        for position, words in enumerate(self.commands):
            args = [w for w in words if w.redirect is None]
            for word, reason in _code_words(args):
                self._mark(word.start, word.end, reason)
            for word in words:
                if word.redirect == ">&":  # bash expands the target of `>&` (and `1>&`) a second time
                    self._mark(word.start, word.end, "redirect")
            if _reads_script_from_stdin(args):
                for word in words:
                    if word.redirect == "<<<":
                        self._mark(word.start, word.end, "piped-to-shell")
                back = position - 1
                while back >= 0 and self.piped[back]:
                    for word in self.commands[back]:
                        self._mark(word.start, word.end, "piped-to-shell")
                    back -= 1


def _operator_at(text: str, index: int) -> str | None:
    for operator in ("<<<", "<<-", "&&", "||", ";;", "|&", "<<", ">>", "<&", ">&", "<>", ">|"):
        if text.startswith(operator, index):
            return operator
    char = text[index]
    if char in "<>" and text.startswith("(", index + 1):
        return None  # process substitution: part of a word, like $( )
    return char if char in ";&|()<>" else None


def _program(word: _Word) -> str:
    name = os.path.basename(word.value)
    return "python" if re.fullmatch(r"python[0-9.]*", name) else name


def _code_words(args: list[_Word]) -> Iterator[tuple[_Word, str]]:
    """The words (or parts of words) of one simple command that something will parse as code, and why."""
    first = _first_program_index(args)
    head = _program(args[first]) if first < len(args) else ""
    heads = {first}  # where the program word may be: `$EMPTY eval …` runs eval
    while max(heads) < len(args) and _computed(args[max(heads)]):
        heads.add(max(heads) + 1)
    for index, word in enumerate(args):
        program = _program(word)
        rest = args[index + 1 :]
        if word.value in ARITHMETIC_OPERATORS:
            yield from ((w, "arithmetic") for w in args[max(0, index - 1) : index] + rest[:1])
        if match := _SUBSCRIPT_ASSIGNMENT.match(word.raw):  # a[i]=v: the subscript is arithmetic
            yield _Word(word.start + match.start(1), word.start + match.end(1), match.group(1)), "arithmetic"
        if (match := _ASSIGNMENT.match(word.raw)) and environment_hazard(match.group(1)):
            yield word, "dangerous-assignment"  # PS4=<v>; set -x runs $(…) in the value
        if head in ("printf", "test", "[", "[[") and word.value == "-v" and rest:
            yield rest[0], "variable-name"
        if index in heads:
            yield from _builtin_code_words(program, rest)
        if program == "eval" and index in heads:
            yield from ((w, "eval") for w in rest)
        elif program == "trap" and rest:
            yield rest[0], "trap"
        elif program in SHELLS:
            yield from _shell_script(rest)
        elif program in ("su", "runuser"):  # options may follow the user name: `su - postgres -c …`
            yield from ((w, "shell-string") for before, w in zip(rest, rest[1:])
                        if before.value in ("-c", "--command", "--session-command"))
            yield from ((w, "shell-string") for w in rest if w.value.startswith("--command="))
        elif program in INTERPRETER_CODE_OPTIONS:
            yield from _option_argument(rest, INTERPRETER_CODE_OPTIONS[program], "interpreter")
        elif program == "ssh":
            yield from ((w, "ssh") for w in _ssh_remote_command(rest))
        elif program == "watch" and index in heads:
            yield from ((w, "shell-string") for w in rest if not w.value.startswith("-"))
        elif program == "sudo" and any(re.fullmatch(r"-[A-Za-z]*[si][A-Za-z]*", w.value) for w in rest[:1]):
            yield from ((w, "shell-string") for w in rest[1:])


def _builtin_code_words(program: str, rest: list[_Word]) -> Iterator[tuple[_Word, str]]:
    """Builtins that evaluate their operands as arithmetic or use them as variable names."""
    options = "".join(w.value[1:] for w in rest if w.value.startswith("-"))
    if program == "let" or (program in DECLARATIONS and "i" in options):
        yield from ((w, "arithmetic") for w in rest if not w.value.startswith("-"))
    elif program in ("unset", "read") or (program in DECLARATIONS and "n" in options):
        yield from ((w, "variable-name") for w in _operands(rest, "pdtnNui" if program == "read" else ""))


def _operands(words: list[_Word], takes_argument: str) -> Iterator[_Word]:
    """Words that are not options nor an option's argument (the options in `takes_argument`)."""
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word.value.startswith("-") and len(word.value) > 1:
            skip = word.value[-1] in takes_argument
        else:
            yield word


# Words before the program that only change how it runs (reserved words, `command`, `builtin`).
_PREFIX_WORDS = frozenset({"!", "{", "if", "then", "elif", "else", "do", "while", "until", "time", "-p",
                           "coproc", "command", "builtin"})


def _computed(word: _Word) -> bool:
    """A word the shell computes (it may expand to a program name, or to nothing at all)."""
    return any(mark in word.raw for mark in ("$", "`", "<(", ">("))


def _first_program_index(args: list[_Word]) -> int:
    """Where the program word is: after `NAME=value` assignments and prefix words."""
    index = 0
    while index < len(args) and (_ASSIGNMENT.match(args[index].raw) or args[index].value in _PREFIX_WORDS):
        index += 1
    return index


def _option_argument(words: list[_Word], letters: str, reason: str) -> Iterator[tuple[_Word, str]]:
    """The program text an interpreter takes right after `-c`/`-e` (also combined, `-Ic`)."""
    for index, word in enumerate(words):
        if re.fullmatch(rf"-[A-Za-z]*[{letters}][A-Za-z]*", word.value):
            if index + 1 < len(words):
                yield words[index + 1], reason
            return
        if not word.value.startswith("-") or word.value == "--":
            return


def _shell_script(words: list[_Word]) -> Iterator[tuple[_Word, str]]:
    """The script of `sh [options] -c [options] SCRIPT [name [args]]`: the first operand once `-c`
    (alone or combined, `-lc`, `-ec`) is among the options; `-o`/`-O` take an argument."""
    index, script_mode = 0, False
    while index < len(words):
        value = words[index].value
        if value == "--":
            index += 1
            break
        if not value.startswith(("-", "+")) or value in ("-", "+"):
            break
        script_mode = script_mode or (value[0] == "-" and "c" in value[1:] and not value.startswith("--"))
        index += 2 if value in ("-o", "+o", "-O", "+O") else 1
    if script_mode and index < len(words):
        yield words[index], "shell-string"


def _ssh_remote_command(words: list[_Word]) -> list[_Word]:
    """What follows the destination of `ssh [options] destination [command…]`."""
    index = 0
    while index < len(words):
        value = words[index].value
        if value == "--":
            index += 1
            break
        if not value.startswith("-"):
            break
        if value[-1] in SSH_ARG_OPTIONS and len(value) == 2:
            index += 1
        index += 1
    return words[index + 1 :]


def _reads_script_from_stdin(args: list[_Word]) -> bool:
    """Whether a shell in this command may run what arrives on its standard input (a pipe, a
    here-string): a shell without a script, `source /dev/stdin`, or a `-c` script that starts
    one. Any shell word counts (refusing a harmless `| sh -c 'grep x'` costs less than a guess),
    and so does a program name the shell computes (`$RUNNER`, `` `which sh` ``): it may be one."""
    first = _first_program_index(args)
    if first < len(args) and _computed(args[first]):
        return True
    return any(_program(w) in SHELLS or w.value in ("source", ".") for w in args)


def placeholder_spots(script: str, tokens: Iterable[str]) -> list[tuple[int, str, Spot]]:
    """(offset, token, spot) for every occurrence of each placeholder token, in script order.

    A token whose `<` a backslash escapes is literal text, not a placeholder.
    """
    ordered = sorted((t for t in set(tokens) if t in script), key=len, reverse=True)
    if not ordered:
        return []
    scan = _Scan(script, tuple(ordered))
    found: list[tuple[int, str, Spot]] = []
    index = 0
    while index < len(script):
        token = next((t for t in ordered if script.startswith(t, index)), None)
        if token is None or index in scan.escaped:
            index += 1
            continue
        found.append((index, token, Spot(scan.quote[index], scan.evaluated[index])))
        index += len(token)
    return found


def variable_name(token: str) -> str:
    """The environment variable a placeholder becomes: `<pod name>` -> `POD_NAME`."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", placeholder_label(token)).strip("_").upper() or "VALUE"
    return f"_{name}" if name[0].isdigit() else name


def evaluated_message(token: str, reason: str) -> str:
    """Why a placeholder at an evaluated spot is refused, and how to write it instead."""
    where, how = EVALUATED[reason]
    name = variable_name(token)
    return (f"placeholder {token} stands {where}, where the shell would run its value as code; "
            f"pass it as an environment variable instead: {how.format(name=name)} "
            f"(the operator is asked for ${name}, or pass --var {name}=…)")


# ---- environment that runs code ------------------------------------------------------------
# Each name (or NAME* prefix) here makes a command run, load or reach something the prompt does
# not show: the operator approves `kubectl get pods`, and this decides what that actually does.
DANGEROUS_ENVIRONMENT = (
    ("PATH", "decides which program every bare command name runs"),
    ("BASH_ENV", "bash runs this file before every non-interactive command"),
    ("ENV", "sh, dash and bash in POSIX mode run this file when they start interactively"),
    ("ZDOTDIR", "zsh runs .zshenv from this directory before every command"),
    ("BASH_FUNC_*", "defines shell functions that replace commands (exported functions)"),
    ("BASH_LOADABLES_PATH", "where `enable -f` loads shared objects into bash from"),
    ("SHELLOPTS", "turns on shell options at start (xtrace runs PS4, errexit changes control flow)"),
    ("BASHOPTS", "turns on shopt options at start (extdebug, expand_aliases)"),
    ("PS0", "expanded, command substitutions included, by an interactive bash"),
    ("PS1", "expanded, command substitutions included, by an interactive shell"),
    ("PS2", "expanded, command substitutions included, by an interactive shell"),
    ("PS4", "expanded, command substitutions included, before every traced command (set -x)"),
    ("PROMPT_COMMAND", "an interactive bash runs it before every prompt"),
    ("IFS", "changes how every unquoted expansion is split into words"),
    ("CDPATH", "makes `cd NAME` enter a directory other than ./NAME"),
    ("LD_*", "the dynamic loader loads (LD_PRELOAD, LD_AUDIT) or prefers (LD_LIBRARY_PATH) these libraries "
             "in every program"),
    ("DYLD_*", "the macOS loader loads these libraries into every program"),
    ("GCONV_PATH", "glibc loads character-set converters (shared objects) from here"),
    ("HOSTALIASES", "makes host names resolve to other hosts than the command names"),
    ("PYTHON*", "Python imports code from here (PYTHONPATH, PYTHONSTARTUP, PYTHONHOME) or changes how it runs"),
    ("PERL5LIB", "Perl loads modules from here first"),
    ("PERLLIB", "Perl loads modules from here first"),
    ("PERL5OPT", "Perl adds these options (-M loads a module) to every run"),
    ("RUBYOPT", "Ruby adds these options (-r loads a file) to every run"),
    ("RUBYLIB", "Ruby loads libraries from here first"),
    ("NODE_OPTIONS", "Node adds these options (--require loads a file) to every run"),
    ("NODE_PATH", "Node resolves modules from here"),
    ("JAVA_TOOL_OPTIONS", "every JVM adds these options (-javaagent loads code)"),
    ("_JAVA_OPTIONS", "every JVM adds these options (-javaagent loads code)"),
    ("JDK_JAVA_OPTIONS", "the java launcher adds these options (-javaagent loads code)"),
    ("OPENSSL_CONF", "OpenSSL reads this configuration, which can load engines (shared objects)"),
    ("GIT_SSH", "git runs this program to reach a remote"),
    ("GIT_SSH_COMMAND", "git runs this command to reach a remote"),
    ("GIT_PROXY_COMMAND", "git runs this command to reach a remote"),
    ("GIT_ASKPASS", "git runs this program to ask for credentials"),
    ("GIT_EXEC_PATH", "git runs its subcommands from here"),
    ("GIT_EXTERNAL_DIFF", "git runs this program for every diff"),
    ("GIT_EDITOR", "git runs this program as the editor"),
    ("GIT_PAGER", "git runs this program as the pager"),
    ("GIT_TEMPLATE_DIR", "git copies hooks (programs it runs later) from here"),
    ("GIT_DIR", "points git at another repository, with its own hooks and configuration"),
    ("GIT_CONFIG*", "sets any git configuration (core.fsmonitor, core.sshCommand, aliases run programs)"),
    ("SSH_ASKPASS", "ssh runs this program to ask for a passphrase"),
    ("SUDO_ASKPASS", "sudo runs this program to ask for a password"),
    ("EDITOR", "programs (kubectl edit, crontab -e, git) run it as the editor"),
    ("VISUAL", "programs run it as the editor"),
    ("SUDO_EDITOR", "sudoedit runs it as the editor"),
    ("PAGER", "programs (journalctl, systemctl, git, man) run it as the pager"),
    ("SYSTEMD_PAGER", "systemctl and journalctl run it as the pager"),
    ("MANPAGER", "man runs it as the pager"),
    ("LESSOPEN", "less runs this command on every file it shows"),
    ("LESSCLOSE", "less runs this command after every file it shows"),
    ("HOME", "programs read their configuration from here (~/.gitconfig, ~/.ssh/config can run commands)"),
    ("XDG_CONFIG_HOME", "programs read their configuration from here (git config can run commands)"),
    ("KUBECONFIG", "kubectl reads credentials from here, and a kubeconfig `exec` entry runs a program"),
    ("SHELL", "programs that start a shell (sudo -s, script, editors) start this one"),
)
# Shells that run exactly the text they are given; any other `shell:` sees and may change each command.
STANDARD_SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh", "mksh"})
SYSTEM_BIN_DIRS = ("/bin", "/usr/bin", "/usr/local/bin")


def environment_hazard(name: str) -> str | None:
    """Why setting environment variable `name` for a command would run what the prompt does not
    show, or None when it is harmless data."""
    for pattern, why in DANGEROUS_ENVIRONMENT:
        if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
            return why
    return None


def shell_hazard(shell: str | None) -> str | None:
    """Why a runbook's `shell:` could run more than its commands, or None for a standard shell."""
    if shell is None:
        return None
    directory, name = os.path.split(shell)
    if name in STANDARD_SHELLS and directory in ("", *SYSTEM_BIN_DIRS):
        return None
    return (f"every command runs through {shell!r}, which is not a standard shell from the system's "
            "directories: it sees, and may change, each command before it runs")


# ---- lint ----------------------------------------------------------------------------------
def evaluated_placeholders(task: Task) -> list[tuple[int, str]]:
    """(offset in the command, why and how to fix it) for each of the task's placeholders that
    stands where the shell would run its value as code. The engine can refuse a runbook with any
    of these when it opens it, before the operator is asked for a value that cannot be used."""
    return [(at, evaluated_message(token, spot.evaluated))
            for at, token, spot in placeholder_spots(task.command or "", task.placeholders)
            if spot.evaluated is not None]


def hazards(runbook: Runbook, text: str | None) -> list[Warning]:
    """`check`'s findings for this module: placeholders that will not be filled in, dangerous environment and
    shell, and characters in commands that a terminal would not show as they are."""
    from runbook_tui.audit.terminal import suspicious_characters

    lines = text.split("\n") if text is not None else []
    found: list[Warning] = []
    for task in runbook.commands():
        command = task.command or ""
        for at, message in evaluated_placeholders(task):
            line, column = _command_position(lines, task, at)
            # A warning, not a refusal: the runbook still opens and its other commands run; this
            # one is refused when its turn comes (the operator can edit it to write the value in).
            found.append(Warning(runbook.path, line, column, "placeholder-evaluated",
                                 f"task {task.id} will not run as written: {message}"))
        for at, why in suspicious_characters(command):
            line, column = _command_position(lines, task, at)
            found.append(Warning(runbook.path, line, column, "hidden-characters", f"task {task.id} {why}"))
        for name, _ in task.options.env or ():
            if (why := environment_hazard(name)) is not None:
                line, column = _word_position(lines, task.line - 1, name, before=2)
                found.append(Warning(runbook.path, line, column, "dangerous-environment",
                                     f"task {task.id} sets {name}, which {why}; each run asks for a typed "
                                     "confirmation"))
    keys = _settings_keys(runbook, text)
    declared = [("env", name) for name, _ in runbook.env]
    declared += [("variables", v.name) for v in runbook.variables] + [("secrets", s.name) for s in runbook.secrets]
    lines_of = {("variables", v.name): v.line for v in runbook.variables}
    lines_of.update({("secrets", s.name): s.line for s in runbook.secrets})
    for group, name in declared:
        if (why := environment_hazard(name)) is None:
            continue
        line, column = keys.get((group, name)) or _word_position(lines, lines_of.get((group, name), 1), name)
        found.append(Warning(runbook.path, line, column, "dangerous-environment",
                             f"{group} sets {name} for every command, which {why}; each command asks for a "
                             "typed confirmation"))
    if (why := shell_hazard(runbook.shell)) is not None:
        line, column = keys.get(("shell", "")) or (1, 1)
        found.append(Warning(runbook.path, line, column, "dangerous-shell",
                             f"{why}; each command asks for a typed confirmation"))
    return found


def _command_position(lines: list[str], task: Task, offset: int) -> tuple[int, int]:
    """File line and column of a character of a task's command (commands may be indented, or
    follow a `$ ` prompt, so the command's line is looked up in the source near the task's line)."""
    command = task.command or ""
    row = command.count("\n", 0, offset)
    column = offset - (command.rfind("\n", 0, offset) + 1)
    text_line = command.split("\n")[row]
    guess = task.line - 1 + row
    for index in (guess, *range(max(0, guess - 3), min(len(lines), guess + 50))):
        if 0 <= index < len(lines) and text_line.strip() and (found := lines[index].find(text_line)) >= 0:
            return index + 1, found + column + 1
    return guess + 1, column + 1


def _word_position(lines: list[str], line: int, word: str, before: int = 0) -> tuple[int, int]:
    """Where `word` first appears on `line` (1-based) or up to `before` lines above it."""
    pattern = re.compile(rf"(?<![\w]){re.escape(word)}(?![\w])")
    for index in range(line - 1, max(-1, line - 2 - before), -1):
        if 0 <= index < len(lines) and (match := pattern.search(lines[index])):
            return index + 1, match.start() + 1
    return max(line, 1), 1


def _settings_keys(runbook: Runbook, text: str | None) -> dict[tuple[str, str], tuple[int, int]]:
    """Positions of `env:`, `variables:` and `secrets:` names and of `shell:` in the settings YAML."""
    if text is None:
        return {}
    offset = 0
    if runbook.format == "markdown":
        from runbook_tui.parse.markdown import split_front_matter

        front, first_line, _ = split_front_matter(text, runbook.path)
        if front is None:
            return {}
        text, offset = front, first_line - 1
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    from runbook_tui.parse.settings import normalise_key

    found: dict[tuple[str, str], tuple[int, int]] = {}
    for key, value in root.value:
        group = normalise_key(str(key.value))
        if group == "shell":
            found[("shell", "")] = (value.start_mark.line + 1 + offset, value.start_mark.column + 1)
        elif group in ("env", "variables", "secrets") and isinstance(value, yaml.MappingNode):
            for name, _ in value.value:
                found[(group, str(name.value))] = (name.start_mark.line + 1 + offset, name.start_mark.column + 1)
    return found
