"""The `runbook-tui` command: thin click wrappers over the parsers, the engine and the app.

Heavy imports (Textual, the engine, the integrations) happen inside the commands that need
them, so `check`, `plan` and `--help` start fast and never load Textual.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from runbook_tui import __version__
from runbook_tui.audit.terminal import visible
from runbook_tui.model import Runbook, Task
from runbook_tui.parse import load_runbook, parse_text, read_text
from runbook_tui.parse.errors import RunbookError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Report a RunbookError as one `error: file:line:col: message` line and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RunbookError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper  # type: ignore[return-value]


def bundled_path(kind: str, name: str) -> Path:
    """A bundled runbook or theme, from the installed wheel or from a source checkout."""
    package = Path(__file__).resolve().parent
    for base in (package / "_bundled" / kind, package.parent / kind):
        if (base / name).exists():
            return base / name
    raise click.ClickException(f"the bundled {kind[:-1]} {name!r} is missing from this installation")


class _Main(click.Group):
    """`runbook-tui PATH` opens a runbook; the first word is a subcommand only when it names one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-")), None)
        wants_help = any(a in ("--help", "-h", "--version") for a in args) and first is None
        if not wants_help and (first is None or first not in self.commands):
            args = ["open", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runbook-tui")
def main() -> None:
    """Open a runbook (Markdown or YAML) and walk through it step by step.

    With no subcommand, `runbook-tui [RUNBOOK]` opens the TUI (the bundled demo runbook when
    no file is given). Exit codes: 0 success, 1 a step failed or the run was aborted, 2 bad input.
    """


@main.command("open")
@click.argument("runbook", required=False, type=click.Path(dir_okay=True))
@click.option("--mode", type=click.Choice(["paranoid", "step", "auto", "noop"]), default="paranoid",
              show_default=True, help="How much to confirm.")
@click.option("--var", "variables", multiple=True, metavar="K=V", help="Give a variable a value.")
@click.option("--transcript", type=click.Path(dir_okay=False), help="Where to write the audit transcript.")
@click.option("--theme", help="Theme name.")
@user_errors
def open_command(runbook: str | None, mode: str, variables: tuple[str, ...], transcript: str | None,
                 theme: str | None) -> None:
    """Open RUNBOOK in the terminal app."""
    path = Path(runbook) if runbook else bundled_path("runbooks", "demo.md")
    book = load_runbook(path)
    from runbook_tui.tui.app import make_app

    values = parse_vars(variables)
    _run_apps(lambda: make_app(book, mode=mode, variables=values, transcript=transcript, theme=theme), mode, theme)


def _run_apps(make: Callable[[], Any], mode: str, theme: str | None) -> NoReturn:
    """Run the app built by `make`; then, if the operator switched to a related runbook, its own
    run in the transcript announced, and so on. Exits with the last run's code."""
    from runbook_tui.engine.run import RunProblem
    from runbook_tui.tui.app import make_app

    while True:
        try:
            app = make()
        except RunProblem as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        assert app.current_run is not None
        try:
            code = app.run()
        finally:
            if not app.current_run.session.ended:  # the app stopped without ending the run (a crash): say so
                code = app.current_run.abort("the app stopped unexpectedly")
            app.current_run.close()
        click.echo(f"transcript: {app.current_run.transcript_path}", err=True)
        if app.current_run.signature is not None:
            click.echo(app.current_run.signature.reason, err=True)
        if app.next_run is None:
            sys.exit(code or EXIT_OK)
        book, next_transcript = app.next_run
        make = functools.partial(make_app, book, mode=mode, variables={}, transcript=str(next_transcript), theme=theme)


def parse_task_timeout(text: str) -> float | None:
    """`--task-timeout`: a duration like 90s, 30m or 1h; 0 means no default timeout."""
    from runbook_tui.parse.annotations import AnnotationError, parse_duration

    if text.strip() in ("0", "none", "never"):
        return None
    try:
        return parse_duration(text, "--task-timeout")
    except AnnotationError as exc:
        raise click.BadParameter(str(exc), param_hint="--task-timeout") from None


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    """`K=V` options into a mapping; a malformed one is bad input."""
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise click.BadParameter(f"expected NAME=value, got {pair!r}", param_hint="--var")
        values[name] = value
    return values


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the parsed model as JSON, one object per file.")
def check(paths: tuple[str, ...], as_json: bool) -> None:
    """Parse and lint runbooks: exit 0 when every file parses and passes, 2 when one does not."""
    from runbook_tui.engine.trust import is_trusted
    from runbook_tui.parse.lint import lint

    failed = False
    documents = []
    for path in paths:
        try:
            text = read_text(path)
            book = parse_text(text, path)
        except RunbookError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
            continue
        warnings = lint(book, text) + _target_errors(book)
        refused = [w for w in warnings if w.severity == "error"]
        failed = failed or bool(refused)
        for warning in warnings:
            click.echo(visible(str(warning)), err=True)
        if as_json:
            document = book.as_dict()
            document["trusted"] = is_trusted(book)
            document["warnings"] = [{"line": w.line, "column": w.column, "code": w.code, "message": w.message}
                                    for w in warnings]
            documents.append(document)
        else:
            counts = _counts(book)
            trusted = "trusted" if is_trusted(book) else "not trusted"
            verdict = f"refused: {len(refused)} error{'s' * (len(refused) != 1)}" if refused else "ok"
            click.echo(visible(f"{path}: {verdict}: {counts}, {len(warnings)} warning{'s' * (len(warnings) != 1)}, "
                               f"{trusted}"))
    if as_json:
        click.echo(json.dumps(documents[0] if len(paths) == 1 and documents else documents, indent=2))
    sys.exit(EXIT_BAD_INPUT if failed else EXIT_OK)


def _counts(book: Runbook) -> str:
    steps = sum(1 for _ in book.steps())
    commands = sum(1 for _ in book.commands())
    manual = sum(1 for t in book.tasks() if t.kind == "manual")
    return f"{len(book.sections)} sections, {steps} steps, {commands} commands, {manual} manual checks"


@main.command("trust")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--list", "listing", is_flag=True,
              help="List the trusted runbooks: path, SHA-256, when, by whom, and the local scripts they run.")
@click.option("--revoke", is_flag=True, help="Stop trusting these runbooks (the files need not exist any more).")
@user_errors
def trust_command(paths: tuple[str, ...], listing: bool, revoke: bool) -> None:
    """Trust these runbooks as they are now, with the local scripts they run, to run in auto mode or with --yes."""
    from runbook_tui.engine.ownfiles import UnsafeFileError
    from runbook_tui.engine.trust import TrustStoreError

    if listing == bool(paths) or (listing and revoke):
        raise click.UsageError("give the runbooks to trust (or --revoke), or --list alone")
    try:
        if listing:
            _list_trusted()
        elif revoke:
            _revoke_trust(paths)
        else:
            _trust(paths)
    except (UnsafeFileError, TrustStoreError, OSError) as exc:
        click.echo(f"error: {visible(str(exc))}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def _trust(paths: tuple[str, ...]) -> None:
    from runbook_tui.engine.trust import trust, trust_file

    for path in paths:
        book = load_runbook(path)
        entry = trust(book)
        click.echo(f"trusted {visible(path)} (sha256 {book.sha256[:12]}) in {trust_file()}")
        for script, digest in (entry.scripts or {}).items():
            pinned = f"sha256 {digest[:12]}" if digest else "missing now: trust it again once it exists"
            click.echo(f"  with {visible(script)} ({pinned})")


def _revoke_trust(paths: tuple[str, ...]) -> None:
    from runbook_tui.engine.trust import revoke

    missing = [path for path in paths if not revoke(path)]
    for path in paths:
        click.echo(f"{visible(path)}: {'was not trusted' if path in missing else 'no longer trusted'}",
                   err=path in missing)
    if missing:
        sys.exit(EXIT_BAD_INPUT)


def _list_trusted() -> None:
    from runbook_tui.engine.trust import trust_file, trusted_entries

    entries = trusted_entries()
    if not entries:
        click.echo(f"no runbook is trusted ({trust_file()})")
    for path, entry in sorted(entries.items()):
        click.echo(f"{visible(path)}\n  sha256 {entry.sha256}  trusted {visible(entry.when or '?')} "
                   f"by {visible(entry.by or '?')}")
        for script, digest in (entry.scripts or {}).items():
            click.echo(f"  with {visible(script)}  sha256 {digest or '(missing when trusted)'}")


@main.command()
@click.argument("path", type=click.Path())
@user_errors
def plan(path: str) -> None:
    """Show the numbered steps and exactly what would run."""
    click.echo(render_plan(load_runbook(path)), nl=False)


def render_plan(book: Runbook) -> str:
    """A person-readable plan: steps in order, each command verbatim, what must be supplied.

    Runbook text is shown with its control, invisible and look-alike characters escaped.
    """
    lines = [book.title, "=" * len(book.title)]
    for key, value in book.metadata:
        lines.append(f"{key.replace('_', ' ').capitalize()}: {value}")
    lines.append(f"Runbook: {book.path} (sha256 {book.sha256[:12]})")
    if book.required_variables or book.placeholders:
        lines.append("To be supplied before running: "
                     + ", ".join([f"${v}" for v in book.required_variables] + list(book.placeholders)))
    if book.secrets:
        lines.append("Secrets: " + ", ".join(f"{s.name} ({s.ref})" for s in book.secrets))
    for section in book.sections:
        if not section.procedural:
            continue
        lines += ["", f"{section.id}. {section.title}"]
        for step in section.steps:
            suffix = "  (optional)" if step.optional else ""
            lines.append(f"  {step.id} {step.title}{suffix}")
            for task in step.tasks:
                lines.extend(_plan_task(book, task))
    return visible("\n".join(lines) + "\n")


def _target_errors(book: Runbook) -> list[Any]:
    """`hosts=` names that no group or host of the runbook (or its inventory) answers to."""
    from runbook_tui.parse.lint import Warning

    if not any(task.options.hosts for task in book.tasks()):
        return []
    from runbook_tui.integrations.inventory import check_targets

    try:
        problems = check_targets(book)
    except RunbookError as exc:  # the inventory file itself is broken
        problems = [exc]
    return [Warning(p.path, p.line, p.column, "unknown-target", p.message, severity="error") for p in problems]


def _batches(book: Runbook, task: Task) -> list[str]:
    """How a `hosts=` task would run: one line per batch."""
    from runbook_tui.batches import describe_batches, plan_batches
    from runbook_tui.integrations.inventory import UnknownTarget, runbook_inventory

    try:
        hosts = [host.name for host in runbook_inventory(book).resolve(task.options.hosts or ())]
    except (UnknownTarget, RunbookError) as exc:
        return [f"          (hosts: {exc})"]
    return [f"        {line}" for line in describe_batches(plan_batches(hosts, task.options.serial))]


def _plan_task(book: Runbook, task: Task) -> list[str]:
    from runbook_tui.engine.policy import task_risk

    if task.command is None:
        return [f"      [ ] {task.id}  {task.text}"]
    flags = ", ".join(f"{k}={v}" for k, v in task.options.as_dict().items() if k != "risk")
    head = f"      $ {task.id}" + (f"  [{flags}]" if flags else "")
    risk = task_risk(book, task)
    if risk.level == "high":
        head += "  HIGH RISK (typed confirmation): " + "; ".join(risk.reasons)
    body = [f"          {line}" for line in task.command.splitlines()]
    # a client it starts: what the operator types into it, by hand, at its prompt
    typed = [f"          {task.client}> {line}" for line in task.client_input]
    return [head, *body, *typed, *(_batches(book, task) if task.options.hosts else [])]


@main.command()
@click.argument("path", type=click.Path())
@click.option("--to", "target", type=click.Choice(["yaml", "md"]), required=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@user_errors
def convert(path: str, target: str, output: str | None) -> None:
    """Convert a runbook between Markdown and YAML without losing a step, task or command."""
    from runbook_tui.parse.emit import to_markdown, to_yaml

    book = load_runbook(path)
    text = to_yaml(book) if target == "yaml" else to_markdown(book)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("path", type=click.Path())
@click.option("--mode", type=click.Choice(["paranoid", "step", "auto", "noop"]), default="paranoid",
              show_default=True, help="paranoid: confirm every command; step: each step; auto: only risk=high; "
                                      "noop: show what would run, run nothing.")
@click.option("--yes", is_flag=True, help="Answer yes to ordinary confirmations and manual checks (no terminal).")
@click.option("--confirm-high-risk", is_flag=True, help="Also confirm risk=high commands (never implied by --yes).")
@click.option("--var", "variables", multiple=True, metavar="K=V", help="Give a variable or placeholder a value.")
@click.option("--transcript", "transcript_path", type=click.Path(dir_okay=False), help="Write the transcript here.")
@click.option("--task-timeout", default="1h", show_default=True, metavar="DURATION",
              help="Stop a task that has no timeout of its own after this long (0: never). Recorded.")
@click.option("--accept-new-host-keys", is_flag=True,
              help="SSH: trust a host's key the first time it is seen (recorded); a changed key still fails.")
@click.option("--group-output", is_flag=True,
              help="Hosts: print each host's output as one block when it ends, instead of line by line.")
@user_errors
def run(path: str, mode: str, yes: bool, confirm_high_risk: bool, variables: tuple[str, ...],
        transcript_path: str | None, task_timeout: str, accept_new_host_keys: bool, group_output: bool) -> None:
    """Run a runbook headless, with plain output (for scripts and CI)."""
    from runbook_tui.headless import run_headless

    book = load_runbook(path)
    sys.exit(run_headless(book, mode=mode, values=parse_vars(variables), yes=yes,
                          confirm_high_risk=confirm_high_risk, transcript_path=transcript_path,
                          task_timeout=parse_task_timeout(task_timeout),
                          host_keys="accept-new" if accept_new_host_keys else "strict", group_output=group_output))


@main.command()
@click.argument("transcript", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Answer yes to ordinary confirmations and manual checks (no terminal).")
@click.option("--confirm-high-risk", is_flag=True, help="Also confirm risk=high commands.")
@click.option("--interrupted", type=click.Choice(["ask", "rerun", "skip", "done"]), default="ask", show_default=True,
              help="What to do with the task that was running when the run stopped.")
@click.option("--mode", type=click.Choice(["paranoid", "step", "auto", "noop"]), default="paranoid",
              show_default=True, help="Decided now, never taken from the transcript.")
@click.option("--var", "variables", multiple=True, metavar="K=V",
              help="Give a variable or placeholder a value (values are never taken from the transcript).")
@click.option("--task-timeout", default="1h", show_default=True, metavar="DURATION",
              help="Stop a task that has no timeout of its own after this long (0: never). Recorded.")
@click.option("--headless", is_flag=True, help="Plain output even on a terminal (the default without one, or "
                                               "with --yes).")
@click.option("--accept-new-host-keys", is_flag=True,
              help="SSH: trust a host's key the first time it is seen (recorded); a changed key still fails.")
@click.option("--group-output", is_flag=True,
              help="Hosts: print each host's output as one block when it ends, instead of line by line "
                   "(plain output).")
@user_errors
def resume(transcript: str, yes: bool, confirm_high_risk: bool, interrupted: str, mode: str,
           variables: tuple[str, ...], task_timeout: str, headless: bool, accept_new_host_keys: bool,
           group_output: bool) -> None:
    """Continue an interrupted run, appending to its transcript: in the terminal app on a
    terminal, with what already ran marked; plain output otherwise."""
    host_keys = "accept-new" if accept_new_host_keys else "strict"
    if not (headless or yes or group_output) and sys.stdin.isatty() and sys.stdout.isatty():
        from runbook_tui.tui.app import make_resume_app

        values = parse_vars(variables)
        _run_apps(lambda: make_resume_app(transcript, mode=mode, variables=values, theme=None,
                                          task_timeout=parse_task_timeout(task_timeout), interrupted=interrupted,
                                          host_keys=host_keys),
                  mode, None)
    from runbook_tui.headless import resume_headless

    sys.exit(resume_headless(transcript, mode=mode, yes=yes, confirm_high_risk=confirm_high_risk,
                             interrupted=interrupted, values=parse_vars(variables),
                             task_timeout=parse_task_timeout(task_timeout), group_output=group_output,
                             host_keys=host_keys))


@main.command()
@click.argument("transcript", type=click.Path(exists=True, dir_okay=False))
@click.option("--theme", help="Theme name.")
@user_errors
def watch(transcript: str, theme: str | None) -> None:
    """Follow a run in progress from another terminal, read-only (for a second responder)."""
    from runbook_tui.tui.app import make_watch_app

    sys.exit(make_watch_app(transcript, theme).run() or EXIT_OK)


@main.group("transcript")
def transcript_group() -> None:
    """Verify, export or attach an audit transcript."""


@transcript_group.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--allowed-signers", type=click.Path(exists=True, dir_okay=False),
              help="Check PATH.sig against this OpenSSH allowed_signers file and name the signer.")
@click.option("--checkpoints", "checkpoint_log", type=click.Path(exists=True, dir_okay=False),
              help="Check the chain against the checkpoints in this syslog collector's log file.")
def transcript_verify(path: str, allowed_signers: str | None, checkpoint_log: str | None) -> None:
    """Say what the transcript proves: exit 0 when every check asked for holds, 1 naming what failed.

    The chain alone shows the file is self-consistent, not that it is the one the run wrote:
    add --allowed-signers (a signature) or --checkpoints (a collector's log) for that.
    """
    from runbook_tui.audit.transcript import guarantee, verify

    result = verify(path)
    if not result.ok:
        click.echo(f"{path}:{result.first_bad_line}: chain broken: {result.reason}", err=True)
        sys.exit(EXIT_FAILED)
    torn = "; last line torn (a crash cut it short)" if result.torn_tail else ""
    seal = "sealed" if result.sealed else "NOT sealed (no run.finished or run.aborted at the end)"
    click.echo(f"{path}: ok: {result.events} events, chain intact, {seal}, last hash {result.last_hash}{torn}")
    failed = signed = checkpointed = False
    if allowed_signers:
        from runbook_tui.audit.signing import verify_signature

        check = verify_signature(path, allowed_signers)
        click.echo(f"signature: {check.reason}")
        signed, failed = check.ok, failed or not check.ok
    if checkpoint_log:
        from runbook_tui.audit.checkpoints import verify_checkpoints

        anchors = verify_checkpoints(path, checkpoint_log)
        click.echo(f"checkpoints: {anchors.reason}")
        for gap in anchors.gaps:
            click.echo(f"checkpoints: gap recorded at {gap}")
        checkpointed, failed = anchors.complete, failed or not anchors.complete
    click.echo(guarantee(signed, checkpointed))
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@transcript_group.command("sign")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", type=click.Path(dir_okay=False), help="Sign with this key file (default: config.yaml signing).")
@click.option("--agent", is_flag=True, help="The private key is in ssh-agent (with --key: its public key).")
@user_errors
def transcript_sign(path: str, key: str | None, agent: bool) -> None:
    """Sign a finished transcript with an SSH key (writes PATH.sig, checkable with ssh-keygen -Y verify)."""
    from runbook_tui.audit.signing import sign_transcript
    from runbook_tui.config import SigningSettings, load_config

    settings = SigningSettings(key=Path(key).expanduser() if key else None, agent=agent) if key or agent else \
        load_config().signing
    if settings is None:
        click.echo("error: no signing key: pass --key PATH or --agent, or set `signing:` in config.yaml", err=True)
        sys.exit(EXIT_BAD_INPUT)
    result = sign_transcript(path, settings, interactive=True)
    if not result.signed:
        click.echo(f"error: {path}: {result.reason}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"{result.signature}: {result.reason}")


@transcript_group.command("export")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["md", "json", "cast"]), default="md", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
def transcript_export(path: str, fmt: str, output: str | None) -> None:
    """Export a transcript for release notes (md), tools (json) or replay (cast)."""
    from runbook_tui.audit.export import export, write_exclusive
    from runbook_tui.audit.transcript import TranscriptError

    try:
        text = export(path, fmt)  # type: ignore[arg-type]
    except TranscriptError as exc:
        click.echo(f"error: {exc} (run `runbook-tui transcript verify {path}`)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if output:
        try:
            write_exclusive(output, text)
        except FileExistsError:
            click.echo(f"error: {output} already exists; an export never overwrites a file: "
                       "choose another name with -o", err=True)
            sys.exit(EXIT_BAD_INPUT)
        click.echo(f"wrote {os.path.abspath(output)}", err=True)
    else:
        click.echo(text, nl=False)


@transcript_group.command("attach")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--git-note", is_flag=True, help="Store the Markdown export as a git note (refs/notes/runbook-tui).")
@click.option("--commit", metavar="REV", help="Default: the HEAD recorded when the run started.")
@click.option("--repo", type=click.Path(file_okay=False), help="Default: the repository recorded in the transcript.")
def transcript_attach(path: str, git_note: bool, commit: str | None, repo: str | None) -> None:
    """Attach the Markdown export of a run to the release commit."""
    from runbook_tui.integrations.git import NOTES_REF, GitError, attach_transcript

    if not git_note:
        raise click.UsageError("say where to attach it: --git-note")
    try:
        where, sha = attach_transcript(path, commit, repo=repo)
    except GitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"attached to {sha[:12]} in {where} ({NOTES_REF}); share it: git push origin {NOTES_REF}")


@main.group("secrets")
def secrets_group() -> None:
    """Check or store the secrets a runbook needs (OS keyring)."""


@secrets_group.command("check")
@click.argument("path", type=click.Path())
@user_errors
def secrets_check(path: str) -> None:
    """Say which of a runbook's secrets are stored (never their values); exit 1 if any is missing."""
    from runbook_tui.integrations.secrets import SecretError, check_secrets

    try:
        results = check_secrets(load_runbook(path))
    except SecretError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    for secret, stored in results:
        click.echo(f"{secret.name}  {secret.ref}  {'stored' if stored else 'MISSING'}")
    sys.exit(EXIT_OK if all(stored for _, stored in results) else EXIT_FAILED)


@secrets_group.command("set")
@click.argument("target", metavar="SERVICE/USERNAME")
def secrets_set(target: str) -> None:
    """Store a secret in the OS keyring (asked without echo; read from stdin when piped)."""
    from runbook_tui.integrations.secrets import SecretError, store_secret

    if sys.stdin.isatty():
        value = click.prompt(f"Value for {target}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().rstrip("\n")
    try:
        ref = store_secret(target, value)
    except SecretError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"stored {ref}")


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Where the transcripts are.")
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
def runs(directory: str | None, limit: int) -> None:
    """List past runs, newest first: time, runbook, operator, result, transcript."""
    from runbook_tui.engine.history import list_runs

    entries = list_runs(Path(directory) if directory else None)[:limit]
    if not entries:
        click.echo("no runs yet")
        return
    click.echo(f"{'STARTED':<27}  {'RESULT':<17}  {'OPERATOR':<24}  {'RUNBOOK':<30}  TRANSCRIPT")
    for entry in entries:
        # a transcript is anyone's file: its title and operator are shown, never interpreted
        click.echo(visible(f"{entry.started:<27}  {entry.result:<17}  {entry.operator:<24}  {entry.title:<30}  "
                           f"{entry.path}"))
