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
from runbook_tui.parse.hazards import environment_hazard, evaluated_message, placeholder_spots, shell_hazard

# `$NAME` or `${NAME}` (also `${NAME:-default}`) in an env value: the names it reads.
_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


class UnsafePlaceholder(ValueError):
    """A placeholder stands where the shell would run its value as code; nothing was filled in.

    `check` warns about such a task already; this is the same rule at run time (a runbook that
    was never checked, or a command edited at the prompt), so the message says how to fix it.
    """


def fill_placeholders(command: str, values: Mapping[str, str]) -> str:
    """The command with each `<placeholder>` token replaced, quoted for its context.

    Unquoted: `shlex.quote`. Inside '...': the value with `'` closed, escaped and reopened.
    Inside "...": `\\`, `"`, `$` and backquote escaped. So no value can break out of its spot.
    Anywhere the shell reads the text again as code (parse/hazards.py) it raises UnsafePlaceholder.
    """
    out: list[str] = []
    done = 0
    for at, token, spot in placeholder_spots(command, values):
        if spot.evaluated is not None:
            raise UnsafePlaceholder(evaluated_message(token, spot.evaluated))
        out += [command[done:at], _quoted(values[token], spot.quote)]
        done = at + len(token)
    return "".join(out) + command[done:]


# A newline in a value is written as ANSI-C `$'\n'` (closing and reopening the quotes around it), so
# no line of the filled command starts inside a value: after a syntax error bash can resume parsing
# at the next line (`x=(;` does), and that line would then be the value's text, read as code.
_NEWLINE = {"": "'$'\\n''", "'": "'$'\\n''", '"': "\"$'\\n'\""}


def _quoted(value: str, quote: str) -> str:
    if quote == "'":
        text = value.replace("'", "'\\''")
    elif quote == '"':
        text = "".join("\\" + c if c in '\\"$`' else c for c in value)
    else:
        text = shlex.quote(value)
    return text.replace("\n", _NEWLINE[quote])


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


def environment_hazards(runbook: Runbook, values: Mapping[str, str], task: Task,
                        sources: Mapping[str, str] | None = None) -> list[str]:
    """Why the environment (and shell) this task would get can run code its command does not show.

    Every name the task's environment gets is looked at: the runbook's `env`, `values` (the run's
    variables: the runbook's defaults and what was given; `sources` may say where each came from,
    `{"PATH": "--var"}`), the secrets this task uses and the task's own `env`. The reasons go
    into the task's risk, so the operator types the confirmation having been shown why.
    """
    given = sources or {}
    defaults = {v.name: v.default for v in runbook.variables if v.default is not None}
    origins = {name: "the runbook's env" for name, _ in runbook.env}
    for name, value in values.items():
        default = "the runbook's variables" if defaults.get(name) == value else "a value given for this run"
        origins[name] = given.get(name, default)
    origins.update({name: "the runbook's secrets" for name in secrets_used(runbook, task)})
    origins.update({name: "the task's env" for name, _ in task.options.env or ()})
    reasons = [f"it sets {name} (from {origin}), which {why}" for name, origin in sorted(origins.items())
               if (why := environment_hazard(name)) is not None]
    if (why := shell_hazard(runbook.shell)) is not None:
        reasons.append(f"the runbook's shell: {why}")
    return reasons
