"""Placeholder values are data, never code (issue 11, point 5).

Where the shell reads a placeholder once as data (unquoted, '…', "…") the value is quoted for its
spot and arrives byte-exact; where it would be read again as code (heredoc body, `$( … )`,
backticks, nested shell strings, eval, comments...) `fill_placeholders` refuses and `check`
refuses the runbook. The property tests run the filled command under a real bash.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.engine.env import UnsafePlaceholder, fill_placeholders
from runbook_tui.parse.hazards import placeholder_spots

P = "<p>"
# (command, why the shell would run the value as code)
EVALUATED = {
    "heredoc body": ("cat <<EOF\nname: <p>\nEOF", "heredoc"),
    "quoted heredoc body": ("cat <<'EOF'\nname: <p>\nEOF", "heredoc"),
    "indented heredoc body": ("cat <<-EOF\n\tname: <p>\n\tEOF", "heredoc"),
    "command substitution": ("echo $(kubectl get pod <p>)", "substitution"),
    "substitution in double quotes": ('echo "pod: $(kubectl get pod <p>)"', "substitution"),
    "substitution in single quotes inside it": ("echo \"$(echo '<p>')\"", "substitution"),
    "process substitution": ("diff <(kubectl get pod <p>) old.txt", "substitution"),
    "eval behind an empty process substitution": ("<()eval echo <p>", "eval"),
    "backticks": ("echo `kubectl get pod <p>`", "backticks"),
    "arithmetic": ("echo $(( <p> + 1 ))", "arithmetic"),
    "arithmetic command": ("(( count = <p> ))", "arithmetic"),
    "old arithmetic": ("echo $[<p> + 1]", "arithmetic"),
    "parameter default": ('echo "${NS:-<p>}"', "parameter"),
    "ansi-c string": ("echo $'<p>'", "ansi-c"),
    "comment": ("echo hi  # for <p>", "comment"),
    "comment line": ("# restart <p>\nsystemctl restart web", "comment"),
    "bash -c": ("bash -c 'echo <p>'", "shell-string"),
    "sh -c double quotes": ('sh -c "echo <p>"', "shell-string"),
    "bash -lc": ("bash -lc 'echo <p>'", "shell-string"),
    "sh -c with options after it": ("sh -c -e 'rm <p>'", "shell-string"),
    "eval behind an empty expansion": ("$NOTHING eval echo <p>", "eval"),
    "bash -o pipefail -c": ("bash -o pipefail -c 'echo <p> | wc'", "shell-string"),
    "kubectl exec sh -c": ("kubectl exec -n prod web-0 -- sh -c 'ls <p>'", "shell-string"),
    "docker exec sh -c": ('docker exec web sh -c "ls <p>"', "shell-string"),
    "sudo bash -c": ("sudo -u postgres bash -c 'psql <p>'", "shell-string"),
    "su -c": ("su - postgres -c 'psql <p>'", "shell-string"),
    "su --command=": ("su postgres --command='psql <p>'", "shell-string"),
    "sudo -s": ("sudo -s 'ls <p>'", "shell-string"),
    "watch": ("watch 'kubectl get pod <p>'", "shell-string"),
    "ssh remote command": ("ssh -p 2222 db1 'ls <p>'", "ssh"),
    "ssh unquoted remote command": ("ssh db1 ls <p>", "ssh"),
    "eval": ("eval echo <p>", "eval"),
    "trap": ("trap 'rm -f <p>' EXIT", "trap"),
    "python -c": ("python3 -c 'print(\"<p>\")'", "interpreter"),
    "perl -e": ("perl -e 'print \"<p>\"'", "interpreter"),
    "piped into sh": ("echo rm <p> | sh", "piped-to-shell"),
    "piped into sudo bash over a line end": ("echo rm <p> |\n  sudo bash", "piped-to-shell"),
    "here-string to bash": ("bash <<< 'rm <p>'", "piped-to-shell"),
    "coproc eval": ("coproc eval echo <p>", "eval"),
    "eval after an array assignment": ("eval a=(x) <p>", "eval"),
    "if eval": ("if eval test <p>; then echo y; fi", "eval"),
    "bare >& target": ("kubectl logs web >&<p>", "redirect"),
    "1>& target": ("kubectl logs web 1>&'<p>'", "redirect"),
    "source /dev/stdin": ("source /dev/stdin <<< 'rm <p>'", "piped-to-shell"),
    "here-string to a computed program": ("$RUNNER <<< 'rm <p>'", "piped-to-shell"),
    "array subscript": ("a['<p>']=1", "arithmetic"),
    "integer declaration": ("declare -i n=<p>", "arithmetic"),
    "[[ -eq ]]": ('[[ "<p>" -eq 3 ]]', "arithmetic"),
    "let": ("let n=<p>+1", "arithmetic"),
    "read into a name": ("read -r <p> <<< x", "variable-name"),
    "printf -v": ("printf -v '<p>' %s x", "variable-name"),
    "test -v": ("test -v <p>", "variable-name"),
    "unset": ("unset '<p>'", "variable-name"),
    "PS4 assignment": ("PS4='<p>'; set -x; true", "dangerous-assignment"),
    "PATH prefix": ("PATH=<p> make", "dangerous-assignment"),
}
# (command, the quotes the value is inside) where a quoted value is plain data
DATA = {
    "unquoted": ("kubectl get pod <p>", ""),
    "single quotes": ("echo '<p>'", "'"),
    "double quotes": ('echo "<p>"', '"'),
    "after the heredoc": ("cat <<EOF\nx\nEOF\necho <p>", ""),
    "ssh destination": ("ssh <p> uptime", ""),
    "shell script argument": ("bash -c 'echo \"$1\"' _ <p>", ""),
    "redirect target": ("kubectl get pod web > <p>", ""),
    "for list": ("for ns in <p>; do echo $ns; done", ""),
    "hash inside a word": ("echo a#<p>", ""),
    "read prompt": ("read -r -p '<p>: ' answer", "'"),
    "array value": ("a[0]=<p>", ""),
    "array assignment in double quotes": ('a=(x "<p>")', '"'),
    "ordinary assignment": ("export REGION=<p>", ""),
}


@pytest.mark.parametrize("case", list(EVALUATED))
def test_a_placeholder_where_the_shell_evaluates_it_is_refused(case: str) -> None:
    command, reason = EVALUATED[case]
    assert [spot.evaluated for _, _, spot in placeholder_spots(command, [P])] == [reason]
    with pytest.raises(UnsafePlaceholder) as caught:
        fill_placeholders(command, {P: "x; touch /tmp/never"})
    assert "<p>" in str(caught.value) and "$P" in str(caught.value)  # says how to write it instead


@pytest.mark.parametrize("case", list(DATA))
def test_a_placeholder_read_once_as_data_is_quoted_for_its_spot(case: str) -> None:
    command, quote = DATA[case]
    assert [(spot.quote, spot.evaluated) for _, _, spot in placeholder_spots(command, [P])] == [(quote, None)]
    assert "touch" in fill_placeholders(command, {P: "x; touch /tmp/never"})


def test_an_escaped_placeholder_is_text() -> None:
    assert fill_placeholders("echo \\<p>", {P: "'; touch /tmp/never; '"}) == "echo \\<p>"


# Values built to break out of every kind of quoting, plus arbitrary text (no NUL: argv cannot hold it).
_HOSTILE = st.sampled_from(["'", '"', "\\", "$(touch CANARY)", "`touch CANARY`", "${IFS}", "\n", ";", "&", "|",
                            "touch CANARY", "$'\\x41'", "#", " ", "\t", "*", "~", "!", "<", ">", "{a,b}", "EOF",
                            "'\\''", '\\"', "\r", "é", "\u202e"])
VALUES = st.lists(st.one_of(_HOSTILE, st.text(st.characters(blacklist_categories=("Cs",),
                                                            blacklist_characters="\x00"), max_size=5)),
                  max_size=8).map("".join)
# Every data spot, each printed as one NUL-terminated argument: (template, what it must print).
SPOTS = [
    ("<p>", "{v}"), ("'<p>'", "{v}"), ('"<p>"', "{v}"), ("pre<p>post", "pre{v}post"),
    ("'a'<p>\"b\"", "a{v}b"), ('"x <p> y"', "x {v} y"), ("'x <p> y'", "x {v} y"),
    ("--name=<p>", "--name={v}"), ("{pod-name}", "{w}"), ('"{pod-name}-<p>"', "{w}-{v}"),
]


def _bash() -> list[str]:
    """bash, run as `nobody` when the tests run as root: these scripts are generated, and one
    that redirects into `/bin/sh` must not be able to overwrite it (a fuzz run here once did)."""
    path = shutil.which("bash")
    if path is None:
        pytest.skip("bash is not installed")
    if os.geteuid() != 0:
        return [path]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv to drop privileges for generated scripts")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", path]


def _run(script: str, work: str) -> subprocess.CompletedProcess[bytes]:
    """Run a generated script in `work` (writable by the unprivileged user), stdin closed."""
    os.chmod(work, 0o777)
    return subprocess.run([*_bash(), "-c", script], cwd=work, capture_output=True, timeout=10,
                          stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "HOME": work})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES, other=VALUES)
def test_hostile_values_in_every_data_spot_arrive_byte_exact_and_run_nothing(value: str, other: str) -> None:
    command = "printf '%s\\0' " + " ".join(template for template, _ in SPOTS)
    filled = fill_placeholders(command, {"<p>": value, "{pod-name}": other})
    with tempfile.TemporaryDirectory() as work:
        done = _run(filled, work)
        assert not (Path(work) / "CANARY").exists(), filled
    assert done.returncode == 0, (filled, done.stderr)
    expected = [shown.format(v=value, w=other) for _, shown in SPOTS]
    assert done.stdout.split(b"\0")[:-1] == [e.encode("utf-8", "surrogateescape") for e in expected]


@settings(max_examples=200, deadline=None)
@given(value=VALUES, case=st.sampled_from(sorted(EVALUATED)))
def test_no_value_is_ever_filled_into_an_evaluated_spot(value: str, case: str) -> None:
    with pytest.raises(UnsafePlaceholder):
        fill_placeholders(EVALUATED[case][0], {P: value})


# (template, a value, the command today's main made of them by quoting for the apparent context)
MAIN_SPLICED = {
    "heredoc body": ("cat <<EOF\n<p>\nEOF", "$(touch CANARY)", "cat <<EOF\n'$(touch CANARY)'\nEOF"),
    "command substitution": ('echo "$(echo <p>)"', "x; touch CANARY", 'echo "$(echo x; touch CANARY)"'),
    "bash -c": ("bash -c 'echo <p>'", "x; touch CANARY", "bash -c 'echo x; touch CANARY'"),
    "comment": ("echo hi # <p>", "x\ntouch CANARY #", "echo hi # 'x\ntouch CANARY #'"),
}


@pytest.mark.parametrize("case", list(MAIN_SPLICED))
def test_the_spliced_command_main_made_runs_the_value_and_now_nothing_is_made(case: str, tmp_path: Path) -> None:
    template, value, spliced = MAIN_SPLICED[case]
    _run(spliced, str(tmp_path))
    assert (tmp_path / "CANARY").exists()  # the attack is real
    with pytest.raises(UnsafePlaceholder):
        fill_placeholders(template, {P: value})


# Random shell text around the placeholder: whatever the template, either the value is refused or
# bash, running the filled command, never runs any part of it.
_FRAGMENTS = ["echo ", "printf '%s' ", "'", '"', "$(", ")", "`", " ", ";", "\n", "#", "bash -c ", "sh -c ",
              "cat <<EOF\n", "cat <<'EOF'\n", "\nEOF\n", "eval ", " | ", "sh", "${X:-", "}", "\\", "(", "$((",
              "x=", "<<< ", "bash ", "-c", " _ ", "{a,b}", "$'", "&& ", "( ", " )", "<p>", "<p>", "<p>",
              "a[", "]=1", "declare -i n=", "[[ ", " -eq 1 ]]", "let ", "read -r ", "printf -v ", "test -v ",
              "unset ", "x=(", "case ", " in ", ";;", "esac", "for i in ", "do ", "done", "<(", "2>&1 ",
              "<<-EOF\n", "\tEOF\n", "trap ", "$", "${#", "PS4=", "set -x;", "[ ", " ]", "(( ", " ))", "exec ",
              "f() { ", " }", "source /dev/stdin <<< ", "declare -n r=", "export ", "select v in "]
_CANARIES = ["$(touch C1)", "`touch C2`", "'; touch C3; '", '"; touch C4; "', "\ntouch C5\n", "x;touch C6 #",
             ")|touch C7;(", "'\ntouch C8\n'", "EOF\ntouch C9\nEOF", "}; touch C10; {", "$((`touch C11`))"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=12), canary=st.sampled_from(_CANARIES))
def test_whatever_surrounds_a_placeholder_its_value_never_runs(parts: list[str], canary: str) -> None:
    template = "".join(parts)
    if P not in template:
        template += P
    try:
        filled = fill_placeholders(template, {P: canary})
    except UnsafePlaceholder:
        return
    with tempfile.TemporaryDirectory() as work:
        try:
            _run(filled, work)
        except subprocess.TimeoutExpired:
            pass
        assert not [p.name for p in Path(work).iterdir() if p.name.startswith("C")], (template, filled)


@settings(max_examples=300, deadline=None)
@given(script=st.text(st.sampled_from(list("<p>'\"$()`{}[]\\#;|&\n \tEOFabc=-!")), max_size=60))
def test_the_scanner_takes_any_text(script: str) -> None:
    """Lint runs this on every command of every runbook: it must never raise."""
    for at, token, spot in placeholder_spots(script, [P]):
        assert script.startswith(token, at) and spot.quote in ("", "'", '"')


def test_evaluated_placeholders_lists_each_refusal_of_a_task_for_the_engine() -> None:
    from runbook_tui.model import Task
    from runbook_tui.parse.hazards import evaluated_placeholders

    task = Task("1.1.1", "command", "t", 3, command="kubectl get <pod>\nbash -c 'kill <pid>'",
                placeholders=("<pod>", "<pid>"))
    assert [(at, message.split(",")[0]) for at, message in evaluated_placeholders(task)] == [
        (32, "placeholder <pid> stands in a script string that another shell runs")]
