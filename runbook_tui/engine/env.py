"""Values reach commands as environment variables; placeholders are filled in shell-quoted.

Nothing the operator types is ever pasted into a command line unquoted: `$VAR`s stay in the
command as written and the shell reads them from the environment; `<placeholder>`s are the one
exception (they are text in the command), so they are quoted for the exact spot they stand in.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

from runbook_tui.model import Runbook, Task


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
    """What the runbook adds for a task: its env, the variables, the secrets, the task's `env`."""
    env = dict(runbook.env)
    env.update(values)
    env.update(secrets)
    env.update(dict(task.options.env or ()))
    return env


def command_environment(injected: Mapping[str, str]) -> dict[str, str]:
    """A local command's environment: the operator's, with the runbook's values on top."""
    return {**os.environ, **injected}
