"""Values reach commands as environment variables; placeholders are filled in shell-quoted.

Nothing the operator types is ever pasted into a command line unquoted: `$VAR`s stay in the
command as written and the shell reads them from the environment; `<placeholder>`s are the one
exception (they are text in the command), so they are quoted for the exact spot they stand in.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping

from runbook_tui.model import Runbook, Task

# `$NAME` or `${NAME}` (also `${NAME:-default}`) in an env value: the names it reads.
_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def fill_placeholders(command: str, values: Mapping[str, str]) -> str:
    """The command with each `<placeholder>` token replaced, quoted for its context.

    Unquoted: `shlex.quote`. Inside '...': the value with `'` closed, escaped and reopened.
    Inside "...": `\\`, `"`, `$` and backquote escaped. So no value can break out of its spot.
    """
    out: list[str] = []
    quote: str | None = None
    index = 0
    tokens = sorted(values, key=len, reverse=True)
    while index < len(command):
        token = next((t for t in tokens if command.startswith(t, index)), None)
        if token is not None:
            out.append(_quoted(values[token], quote))
            index += len(token)
            continue
        char = command[index]
        if char == "\\" and quote != "'" and index + 1 < len(command):
            out.append(command[index : index + 2])
            index += 2
            continue
        if char in "'\"" and quote in (None, char):
            quote = None if quote == char else char
        out.append(char)
        index += 1
    return "".join(out)


def _quoted(value: str, quote: str | None) -> str:
    if quote == "'":
        return value.replace("'", "'\\''")
    if quote == '"':
        return "".join("\\" + c if c in '\\"$`' else c for c in value)
    return shlex.quote(value)


def injected_environment(runbook: Runbook, values: Mapping[str, str], secrets: Mapping[str, str],
                         task: Task) -> dict[str, str]:
    """What the runbook adds for a task: its env, the variables, the secrets it uses, the task's `env`.

    A secret reaches only a task that names it: as `$NAME` in its command or in an `env` value,
    or in its `secrets=` annotation. Every other command runs without it, so a compromised or
    chatty tool in one step cannot read the database password meant for another.
    """
    env = dict(runbook.env)
    env.update(values)
    env.update({name: value for name, value in secrets.items() if name in secrets_used(runbook, task)})
    env.update(dict(task.options.env or ()))
    return env


def secrets_used(runbook: Runbook, task: Task) -> frozenset[str]:
    """Names of the runbook's secrets this task may see."""
    named = set(task.variables) | set(task.options.secrets or ())
    for _, value in (*runbook.env, *(task.options.env or ())):
        named.update(_REFERENCE.findall(value))
    return frozenset(named & {secret.name for secret in runbook.secrets})


def command_environment(injected: Mapping[str, str]) -> dict[str, str]:
    """A local command's environment: the operator's, with the runbook's values on top."""
    return {**os.environ, **injected}


def environment_hazards(runbook: Runbook, values: Mapping[str, str], task: Task) -> list[str]:
    """Why the environment this task would get can run code that its command does not show."""
    names = {key for key, _ in runbook.env} | set(values) | {key for key, _ in task.options.env or ()}
    reasons = [f"it sets {name}, which {why}" for name, why in dangerous_environment(sorted(names))]
    if runbook.shell not in (None, "bash", "sh"):
        reasons.append(f"it runs under the runbook's own shell {runbook.shell!r}")
    return reasons


# HAZARDS-MERGE: provisional; the hazards branch brings the full list and its reasons.
_DANGEROUS_NAMES = ("PATH", "BASH_ENV", "ENV", "PROMPT_COMMAND", "IFS", "SHELLOPTS", "BASHOPTS", "PS4")


def dangerous_environment(names: list[str]) -> list[tuple[str, str]]:
    """(name, why) for each name that changes which code a shell runs."""
    return [(name, "changes which code the shell runs") for name in names
            if name in _DANGEROUS_NAMES or name.startswith(("LD_", "PYTHON"))]
