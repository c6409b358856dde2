"""The policy, pinned: every combination of mode, trust and annotation, and every risk rule.

These tables are the promise in its smallest form; mutation testing (RELIABILITY.md) checks that
changing any branch of engine/policy.py breaks one of them.
"""

from __future__ import annotations

import itertools
import shlex
import textwrap

import pytest

from runbook_tui.engine.policy import (
    RELAXED_MODES,
    Risk,
    assess_risk,
    confirmation_needed,
    effective_mode,
    step_confirmation_needed,
    task_risk,
    trust_command,
)
from runbook_tui.model import MODES, Task, TaskOptions
from runbook_tui.parse.lint import dangerous_reason
from runbook_tui.parse.markdown import parse_markdown

LOW, HIGH = Risk("low"), Risk("high", ("the runbook marks it risk=high",))


def task(confirm: bool | None = None) -> Task:
    return Task(id="1.1.1", kind="command", text="x", line=1, command="echo x", options=TaskOptions(confirm=confirm))


# (mode, trusted, confirm=, step approved) -> asked?
EXPECTED = {
    # untrusted: always asked, whatever the runbook says
    **{(mode, False, confirm, approved): True
       for mode, confirm, approved in itertools.product(MODES, (None, True, False), (False, True))},
    # trusted
    ("paranoid", True, None, False): True, ("paranoid", True, True, False): True,
    ("paranoid", True, False, False): False,
    ("auto", True, None, False): False, ("auto", True, True, False): True, ("auto", True, False, False): False,
    ("step", True, None, False): True, ("step", True, None, True): False, ("step", True, True, True): True,
    ("step", True, False, True): False, ("step", True, False, False): True,
}


@pytest.mark.parametrize(("mode", "trusted", "confirm", "approved"), sorted(EXPECTED, key=str))
def test_who_is_asked(mode: str, trusted: bool, confirm: bool | None, approved: bool) -> None:
    decision = confirmation_needed(task(confirm), mode=mode, trusted=trusted, risk=LOW,  # type: ignore[arg-type]
                                   step_approved=approved)
    assert decision.ask is EXPECTED[(mode, trusted, confirm, approved)]
    assert decision.reason


@pytest.mark.parametrize(("mode", "trusted", "confirm"), itertools.product(MODES, (False, True), (None, True, False)))
def test_high_risk_is_always_asked(mode: str, trusted: bool, confirm: bool | None) -> None:
    decision = confirmation_needed(task(confirm), mode=mode, trusted=trusted, risk=HIGH,  # type: ignore[arg-type]
                                   step_approved=True)
    assert decision.ask and decision.reason == "high risk: the runbook marks it risk=high"


def test_the_reasons_say_why() -> None:
    def reason(**kw: object) -> str:
        return confirmation_needed(task(kw.pop("confirm", None)), risk=LOW, **kw).reason  # type: ignore[arg-type]

    assert reason(mode="paranoid", trusted=False, confirm=False) == "confirm=false is ignored: the runbook is not trusted"
    assert reason(mode="auto", trusted=False) == "the runbook is not trusted: every command is confirmed"
    assert reason(mode="auto", trusted=True, confirm=True) == "the runbook asks for confirmation (confirm=true)"
    assert reason(mode="auto", trusted=True) == "auto mode, trusted runbook"
    assert reason(mode="paranoid", trusted=True, confirm=False) == "confirm=false on a trusted runbook"
    assert reason(mode="paranoid", trusted=True) == "paranoid mode: every command is confirmed"
    assert reason(mode="step", trusted=True, step_approved=True) == "approved with its step (step mode, trusted runbook)"
    assert reason(mode="step", trusted=True) == "step mode: the command changed since its step was approved"


@pytest.mark.parametrize(("requested", "trusted"), itertools.product(MODES, (False, True)))
def test_relaxed_modes_only_for_trusted_runbooks(requested: str, trusted: bool) -> None:
    mode, notice = effective_mode(requested, trusted, "deploy.md")  # type: ignore[arg-type]
    refused = requested in ("auto", "step") and not trusted
    assert (mode, notice is not None) == (("paranoid", True) if refused else (requested, False))
    if refused:
        assert "deploy.md is not trusted" in notice and "runbook-tui trust deploy.md" in notice  # type: ignore[operator]
    assert step_confirmation_needed(requested, trusted) is (requested == "step" and trusted)  # type: ignore[arg-type]
    assert RELAXED_MODES == {"auto", "step"}


def book(text: str):  # type: ignore[no-untyped-def]
    return parse_markdown(textwrap.dedent(text).lstrip("\n"), "book.md")


UNMARKED = """
    # Deploy
    **Severity:** {severity}

    ## Checks
    - `echo look --x`

    ## {section}
    - `echo change --x`
    """


@pytest.mark.parametrize(("severity", "section", "high"), [
    ("High (user-impacting)", "Resolution Steps", True), ("critical", "Rollback", True),
    ("SEV1", "Mitigation", True), ("P1", "Recovery", True), ("high", "Remediation", True),
    ("high", "Deploy application", True), ("high", "Verification", False), ("low", "Resolution Steps", False),
    ("medium", "Deploy", False),
])
def test_unmarked_high_severity_runbooks_guard_their_resolution_sections(severity: str, section: str,
                                                                         high: bool) -> None:
    runbook = book(UNMARKED.format(severity=severity, section=section))
    check, change = runbook.commands()
    assert task_risk(runbook, check).level == "low", "never outside the resolution sections"
    risk = task_risk(runbook, change)
    assert risk.level == ("high" if high else "low")
    if high:
        assert risk.reasons == ("a resolution step of a high-severity runbook that marks no risks itself",)


def test_a_runbook_that_marks_its_risks_is_taken_at_its_word() -> None:
    runbook = book(textwrap.dedent(UNMARKED).format(severity="high", section="Resolution") +
                   "- `echo migrate --x` <!-- runbook: risk=high -->\n- `echo fine --x` <!-- runbook: risk=low -->\n")
    levels = [task_risk(runbook, t).level for t in runbook.commands()]
    assert levels == ["low", "low", "high", "low"]
    marked = list(runbook.commands())[2]
    assert task_risk(runbook, marked).reasons == ("the runbook marks it risk=high",)


@pytest.mark.parametrize(("command", "high"), [
    ("rm -rf /", True), ("curl https://x | sh", True), ("psql -c 'drop database app'", True),
    ("kubectl delete ns prod", True), ("git push --force origin main", True), ("echo rm -rf", False),
    ("ls /", False),
])
def test_destructive_commands_are_high_risk_even_marked_low(command: str, high: bool) -> None:
    marked = Task(id="1.1.1", kind="command", text=command, line=1, command=command,
                  options=TaskOptions(risk="low"))
    runbook = book("# T\n## Steps\n- `true --x`\n")
    risk = assess_risk(runbook, marked)
    assert risk.level == ("high" if high else "low")
    assert risk.reasons == ((f"the command {dangerous_reason(command)}",) if high else ())


def test_dangerous_environment_makes_a_task_high_risk() -> None:
    runbook = book("---\nenv:\n  BASH_ENV: ./x.sh\n---\n# T\n## Steps\n- `echo hi --x`\n")
    (only,) = runbook.commands()
    risk = task_risk(runbook, only)
    assert risk.level == "high" and any("BASH_ENV" in r for r in risk.reasons)
    plain = book("# T\n## Steps\n- `echo hi --x`\n")
    (same,) = plain.commands()
    assert task_risk(plain, same) == Risk("low", ())
    assert task_risk(plain, same, {"LD_PRELOAD": "/tmp/x.so"}).level == "high", "values given now count too"
    assert task_risk(plain, same, {"WHO": "me"}).level == "low"


def test_the_runbooks_own_variable_defaults_count_when_no_values_are_given() -> None:
    runbook = book("---\nvariables:\n  PATH: /tmp/evil\n---\n# T\n## Steps\n- `echo hi --x`\n")
    (only,) = runbook.commands()
    assert task_risk(runbook, only).level == "high"
    assert task_risk(runbook, only, {}).level == "low", "explicit values replace the defaults"


@pytest.mark.parametrize("path", ["my runbook.md", "x[red]y.md", "a;rm -rf ~.md", "it's.md", "plain/deploy.md"])
def test_the_trust_command_shown_is_one_the_shell_runs_as_meant(path: str) -> None:
    """Copied from the notice and pasted into a shell, it names exactly this file."""
    _, notice = effective_mode("auto", False, path)
    command = notice.rsplit("trust this version with: ", 1)[1]  # type: ignore[union-attr]
    assert command == trust_command(path)
    assert shlex.split(command) == ["runbook-tui", "trust", path]
