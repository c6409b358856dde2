"""A short fuzzing run inside the test suite: the targets of fuzz/fuzz_parsers.py, driven by hypothesis.

The long, coverage-guided runs use atheris (`fuzz/run.sh`, see RELIABILITY.md); atheris is not a
test dependency, so here hypothesis builds structured Markdown, YAML and transcripts, seeded
from the bundled runbooks and the real-world corpus, and hands their bytes to the same `check_*`
functions. The contracts are stated in fuzz/fuzz_parsers.py: a parser returns a Runbook or raises
RunbookError; `verify` never raises; `read_events` yields dicts or raises TranscriptError.

Bugs the fuzzing found are pinned below with a minimal input each (strict xfails while open; all
are fixed now, the last one, a forged self-hashed line, with issue 14).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_tui.audit.transcript import read_events, verify
from tests.paths import CORPUS, REPO, RUNBOOKS

FUZZ = REPO / "fuzz"
SEEDS = FUZZ / "corpus"


def _load_harness():
    spec = importlib.util.spec_from_file_location("fuzz_parsers", FUZZ / "fuzz_parsers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


def test_the_cross_checks_can_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The harness's assertions are live: a reader or parser breaking its contract is caught."""
    monkeypatch.setattr(harness, "read_events", lambda path: iter([1]))
    with pytest.raises(AssertionError, match="yielded a int"):
        harness.check_transcript((SEEDS / "transcript" / "run.jsonl").read_bytes(), tmp_path / "t.jsonl")
    from runbook_tui.model import Runbook, Section, Step, Task

    broken = Runbook("t", "fuzz.md", "markdown", "0", sections=(
        Section("1", "S", 1, steps=(Step("1.1", "s", 1, tasks=(Task("1.1.1", "command", "x", 1),)),)),))
    monkeypatch.setattr(harness, "parse_markdown", lambda text, path: broken)
    with pytest.raises(AssertionError):
        harness.check_markdown(b"# t\n")


# ---- the seed corpus replays clean ------------------------------------------------------------------

@pytest.mark.parametrize("target", ["markdown", "yaml", "transcript"])
def test_seed_corpus_replays_through_the_harness(target: str) -> None:
    files = sorted((SEEDS / target).iterdir())
    assert files, f"no seeds in {SEEDS / target}"
    for path in files:
        harness.TARGETS[target](path.read_bytes())


def test_seed_corpus_is_small_and_comes_from_the_runbooks_and_the_corpus() -> None:
    total = sum(p.stat().st_size for p in SEEDS.rglob("*") if p.is_file())
    assert total < 200_000
    names = {p.name for p in (SEEDS / "markdown").iterdir()}
    assert {p.name for p in RUNBOOKS.glob("*.md")} <= names
    assert any(name.startswith(("openshift-", "prometheus-operator-")) for name in names)


# ---- Markdown ----------------------------------------------------------------------------------------

def _corpus_lines() -> list[str]:
    lines: set[str] = set()
    for path in [*RUNBOOKS.glob("*.md"), *CORPUS.rglob("*.md")]:
        lines.update(line for line in path.read_text(encoding="utf-8").splitlines() if 0 < len(line) < 120)
    return sorted(lines)


CORPUS_LINES = _corpus_lines()
WORDS = st.sampled_from(["kubectl", "oc", "-n", "prod", "get", "pods", "$POD", "${NS:-x}", "<pod-name>",
                         "{cluster-id}", "`", "|", "&&", ";", "\\", "'", '"', "#", "--force", "sudo", "rm",
                         "echo", "x=1", "$(date)", "\t", " ", "é", "\u202e", "\x1b[31m", "{", "}", "="])
INLINE = st.lists(WORDS, min_size=1, max_size=8).map(" ".join)
COMMAND = st.builds(lambda program, rest: f"{program} {rest}",
                    st.sampled_from(["kubectl", "oc", "echo", "sudo systemctl", "./deploy.sh", "docker compose",
                                     "python manage.py", "psql -c", "curl -fsS", "rm -rf"]), INLINE)
ANNOTATION = st.sampled_from(["risk=high", "risk=low", "timeout=5m", "timeout=0s", "timeout=-1", "retries=3",
                              "retries=x", "expect_exit=0,1", "expect_output=^ok$", "expect_output=(",
                              "wait_until=2m", "name=migrate", "name=", "skip=true", "run=true", "run=false",
                              "confirm=false", "interactive=true", "container=web", "cwd=/tmp", "env=A=1",
                              "optional=true", "bogus=1", "risk=extreme"])
ANNOTATIONS = st.lists(ANNOTATION, max_size=3).map(" ".join)
LANGUAGE = st.sampled_from(["sh", "bash", "shell", "zsh", "console", "shell-session", "yaml", "json", "promql",
                            "sql", "text", "", "python", "SH"])


@st.composite
def fenced(draw: st.DrawFn) -> str:
    fence = draw(st.sampled_from(["```", "~~~", "````"]))
    info = draw(LANGUAGE)
    attrs = draw(ANNOTATIONS)
    if attrs and draw(st.booleans()):
        info += " {" + attrs + "}"
    body = draw(st.lists(st.one_of(INLINE, COMMAND, COMMAND.map(lambda s: "$ " + s), st.sampled_from(CORPUS_LINES)),
                         max_size=4))
    closed = draw(st.booleans())
    return "\n".join([fence + info, *body, fence if closed else ""])


BLOCK = st.one_of(
    st.sampled_from(CORPUS_LINES),
    st.just("## Steps"),
    st.builds(lambda n, title, code: f"{n}. **{title}**\n   ```sh\n   {code}\n   ```", st.integers(1, 3), INLINE,
              COMMAND),
    st.builds(lambda text: f"- `{text}`", COMMAND),
    st.builds(lambda level, title: "#" * level + " " + title, st.integers(1, 4), INLINE),
    st.builds(lambda n, text: f"{n}. {text}", st.integers(0, 12), INLINE),
    st.builds(lambda text: f"1. **{text}**", INLINE),
    st.builds(lambda text: f"   - `{text}`", INLINE),
    st.builds(lambda text: f"- Run `{text}` now", INLINE),
    st.builds(lambda a: f"<!-- runbook: {a} -->", ANNOTATIONS),
    st.builds(lambda text: f"<!--\n{text}\n-->", INLINE),
    st.builds(lambda body: f"<details><summary>more</summary>\n\n{body}\n\n</details>", fenced()),
    st.builds(lambda key, value: f"**{key}:** {value}", st.sampled_from(["Owner", "Severity", "Last Updated"]),
              INLINE),
    st.builds(lambda target: f"[Other runbook]({target})", st.sampled_from(["./ROLLBACK.md", "../x.md", "", "#a",
                                                                             "./" + "a" * 40 + ".md"])),
    fenced(),
    st.text(max_size=40),
)
FRONT_MATTER = st.one_of(
    st.just(""),
    st.builds(lambda body: f"---\n{body}\n---\n", st.sampled_from([
        "variables:\n  GREETING: Hello", "secrets: {DB: keyring:svc/db}", "shell: sh", "cwd: /tmp",
        "env: {A: 1}", "watch: [{docker: web}]", "variables: [1, 2]", "severity: [", "title: x\nbogus: 1",
        "variables:\n  X: {default: 1, prompt: why}", "- a list"])),
)


@FAST
@given(FRONT_MATTER, st.lists(BLOCK, max_size=25))
def test_markdown_shaped_documents(front: str, blocks: list[str]) -> None:
    harness.check_markdown((front + "\n\n".join(blocks)).encode())


@FAST
@given(st.binary(max_size=600))
def test_markdown_any_bytes(data: bytes) -> None:
    harness.check_markdown(data)


# ---- YAML --------------------------------------------------------------------------------------------

SCALAR = st.one_of(INLINE, st.integers(-3, 100), st.booleans(), st.none(), st.sampled_from(["5m", "2", "high", ""]))
TASK_KEYS = ["title", "run", "manual", "language", "output", "name", "risk", "confirm", "timeout", "retries",
             "expect_exit", "expect_output", "wait_until", "cwd", "env", "interactive", "container", "optional",
             "skip", "bogus", "rn"]
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.sampled_from(TASK_KEYS), inner, max_size=3)),
                     max_leaves=6)
TASK = st.one_of(INLINE, st.dictionaries(st.sampled_from(TASK_KEYS), VALUE, max_size=4))
STEP = st.one_of(INLINE, st.dictionaries(st.sampled_from(["title", "description", "tasks", *TASK_KEYS]),
                                         st.one_of(VALUE, st.lists(TASK, max_size=3)), max_size=4))
SECTION = st.dictionaries(st.sampled_from(["title", "body", "steps", "bogus"]),
                          st.one_of(INLINE, st.lists(STEP, max_size=4)), max_size=3)
SANE_TASK = st.one_of(st.fixed_dictionaries({"run": COMMAND}, optional={"timeout": st.sampled_from(["5m", "1s", "x"]),
                                                                         "risk": st.sampled_from(["high", "low"]),
                                                                         "name": INLINE}),
                      st.fixed_dictionaries({"manual": INLINE}), INLINE)
SANE_STEP = st.one_of(INLINE, st.fixed_dictionaries({"title": INLINE, "run": COMMAND}),
                      st.fixed_dictionaries({"title": INLINE, "tasks": st.lists(SANE_TASK, min_size=1, max_size=3)}))
SANE_DOCUMENT = st.fixed_dictionaries(
    {"title": INLINE, "sections": st.lists(st.one_of(
        st.fixed_dictionaries({"title": INLINE, "steps": st.lists(SANE_STEP, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"title": INLINE, "body": INLINE})), max_size=3)},
    optional={"variables": st.dictionaries(st.sampled_from(["ENV", "X", "Y"]), INLINE, max_size=2),
              "severity": st.sampled_from(["High", "low", "SEV1"])},
)
WILD_DOCUMENT = st.fixed_dictionaries(
    {"title": st.one_of(INLINE, st.none(), st.integers())},
    optional={"sections": st.lists(SECTION, max_size=4), "variables": VALUE, "secrets": VALUE, "watch": VALUE,
              "owner": SCALAR, "severity": SCALAR, "related": VALUE, "shell": SCALAR, "env": VALUE, "titel": SCALAR},
)
DOCUMENT = st.one_of(SANE_DOCUMENT, WILD_DOCUMENT)


@FAST
@given(DOCUMENT, st.lists(st.tuples(st.integers(0, 400), st.sampled_from(["", ":", "- ", "  ", "{", "'", "\t", "&a",
                                                                          "*a", "!!python/object x", "? "])),
                          max_size=3))
def test_yaml_shaped_documents(document: dict, edits: list[tuple[int, str]]) -> None:
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    for at, insert in edits:  # a few hand-made mistakes in otherwise valid YAML
        at = min(at, len(text))
        text = text[:at] + insert + text[at:]
    harness.check_yaml(text.encode())


@FAST
@given(st.binary(max_size=400))
def test_yaml_any_bytes(data: bytes) -> None:
    harness.check_yaml(data)


# ---- the transcript reader ---------------------------------------------------------------------------

SEED_TRANSCRIPT = (SEEDS / "transcript" / "run.jsonl").read_bytes().splitlines(keepends=True)


@st.composite
def damaged_transcript(draw: st.DrawFn) -> bytes:
    lines = list(SEED_TRANSCRIPT)
    for _ in range(draw(st.integers(0, 4))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["delete", "duplicate", "swap", "flip", "cut", "insert", "strip-newline"]))
        if how == "delete":
            del lines[at]
        elif how == "duplicate":
            lines.insert(at, lines[at])
        elif how == "swap" and at + 1 < len(lines):
            lines[at], lines[at + 1] = lines[at + 1], lines[at]
        elif how == "flip" and lines[at]:
            i = draw(st.integers(0, len(lines[at]) - 1))
            lines[at] = lines[at][:i] + bytes([draw(st.integers(0, 255))]) + lines[at][i + 1:]
        elif how == "cut":
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        elif how == "insert":
            value = draw(st.one_of(st.binary(max_size=40), st.sampled_from(
                [b"{}", b"[]", b"null", b'{"hash": 1}', b'{"seq": 0, "hash": "x"}', b"\xff\xfe", b"{" * 50])))
            lines.insert(at, value + b"\n")
        elif how == "strip-newline":
            lines[at] = lines[at].rstrip(b"\n")
    return b"".join(lines)


@FAST
@given(damaged_transcript())
def test_damaged_transcripts(data: bytes) -> None:
    harness.check_transcript(data)


@FAST
@given(st.binary(max_size=300))
def test_transcript_any_bytes(data: bytes) -> None:
    harness.check_transcript(data)


def test_untouched_seed_transcript_verifies() -> None:
    path = SEEDS / "transcript" / "run.jsonl"
    result = verify(path)
    assert result.ok and result.events == len(SEED_TRANSCRIPT)
    assert all(isinstance(event, dict) for event in read_events(path))


# ---- what fuzzing found (strict xfails: remove the marker with the fix) ---------------------------------

def _reader_must_hold(tmp_path: Path, data: bytes) -> None:
    """The reader contract."""
    harness.check_transcript(data, tmp_path / "t.jsonl")


def test_verify_survives_a_deeply_nested_line(tmp_path: Path) -> None:
    _reader_must_hold(tmp_path, b"[" * 100_000 + b"\n")


def test_verify_survives_a_lone_surrogate_escape(tmp_path: Path) -> None:
    """(Was a UnicodeEncodeError from canonical() in _diagnose; fixed with the non-UTF-8 arguments.)"""
    _reader_must_hold(tmp_path, b'{"hash":"' + b"0" * 64 + b'","text":"\\ud800"}\n')


@pytest.mark.parametrize("data", [b"9\n", b"[1]\n", b"\x001"], ids=["int", "list", "utf16-torn"])
def test_read_events_yields_only_events(tmp_path: Path, data: bytes) -> None:
    _reader_must_hold(tmp_path, data)


def test_verify_accepts_only_lines_that_read_back(tmp_path: Path) -> None:
    import hashlib

    first = SEED_TRANSCRIPT[0]
    prev = json.loads(first)["hash"]
    body = ('{"prev":"%s","seq":1,"type":"note",broken}' % prev).encode()
    digest = hashlib.sha256(body).hexdigest()
    forged = body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
    _reader_must_hold(tmp_path, first + forged)


def test_check_survives_a_related_link_too_long_for_a_file_name(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text("# T\n\nSee [the other runbook](./" + "a" * 300 + ".md).\n\n## Steps\n- `echo hi --x`\n")
    done = subprocess.run([sys.executable, "-m", "runbook_tui", "check", str(book)], capture_output=True, text=True,
                          timeout=60)
    assert "Traceback" not in done.stderr, done.stderr[-800:]
    assert done.returncode == 0 and "missing-related" in done.stderr

