"""Container tasks and watched containers through the session and the app, on a real engine."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runbook_tui.audit.transcript import Transcript, read_events
from runbook_tui.engine.session import Session
from runbook_tui.parse.markdown import parse_markdown
from tests.docker_engine import DockerEngine
from tests.test_session import Operator
from tests.tui_helpers import until as wait_for

SECRET = "s3cret-in-container"


def test_container_task_runs_through_docker_exec_and_is_recorded(
    docker_engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
    monkeypatch.setenv("TEST_DB_PASSWORD", SECRET)
    name = docker_engine.unique("web")
    container = docker_engine.run("sleep 600", name=name, labels={"com.docker.compose.service": name})
    book = parse_markdown(textwrap.dedent(f"""\
        ---
        secrets: {{DB_PASSWORD: "env:TEST_DB_PASSWORD"}}
        ---
        # T
        ## Steps
        ```sh {{container={name}}}
        echo "inside $(hostname) password=$DB_PASSWORD"; printf '\\033[32mgreen\\033[0m\\n'; exit 3
        ```
        """), str(tmp_path / "book.md"))
    transcript = Transcript.create(tmp_path / "t.jsonl")
    session = Session(book, transcript, Operator(), mode="auto", secrets={"DB_PASSWORD": SECRET})
    session.start()
    assert session.run_all() == "failed"
    events = list(read_events(tmp_path / "t.jsonl"))
    started = next(e for e in events if e["type"] == "command.started")
    assert started["container"] == name and started["image"] == docker_engine.image
    assert started["container_id"] == container.id[:12], "the record names the very container it ran in"
    assert "DB_PASSWORD" in started["env_names"]
    output = "".join(e["text"] for e in events if e["type"] == "output")
    assert "password=[REDACTED:DB_PASSWORD]" in output and "\x1b[32mgreen" in output
    assert SECRET not in (tmp_path / "t.jsonl").read_text()
    finished = next(e for e in events if e["type"] == "command.finished")
    assert finished["exit_code"] == 3



def test_a_container_task_runs_in_its_own_directory_or_the_containers_with_the_runbooks_shell(
    docker_engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cwd=` is a directory inside the container; without it, the container's own working
    directory (not the operator's, which the container does not have); the runbook's shell."""
    monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
    name = docker_engine.unique("where")
    docker_engine.run("sleep 600", name=name, working_dir="/etc")
    book = parse_markdown(textwrap.dedent(f"""\
        ---
        shell: ash
        ---
        # T
        ## Steps
        ```sh {{container={name} cwd=/tmp}}
        echo "at $(pwd)"
        ```
        ```sh {{container={name}}}
        echo "at $(pwd) in $0"
        ```
        """), str(tmp_path / "book.md"))
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), Operator(), mode="auto")
    session.start()
    assert session.run_all() == "success"
    output = [e["text"] for e in read_events(tmp_path / "t.jsonl") if e["type"] == "output"]
    assert "".join(output).split() == ["at", "/tmp", "at", "/etc", "in", "ash"], "the runbook's shell, in there too"


def test_missing_container_fails_the_task_with_a_reason(
    docker_engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
    book = parse_markdown("# T\n## Steps\n```sh {container=no-such-container}\necho hi\n```\n",
                          str(tmp_path / "book.md"))
    session = Session(book, Transcript.create(tmp_path / "t.jsonl"), Operator(), mode="auto")
    session.start()
    assert session.run_all() == "failed"
    finished = next(e for e in read_events(tmp_path / "t.jsonl") if e["type"] == "command.finished")
    assert finished["exit_code"] == 127 and "no-such-container" in finished["error"]


async def test_watch_tab_follows_the_container_across_recreation(
    docker_engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runbook_tui.tui.app import make_app
    from runbook_tui.tui.widgets.container_watch import ContainerStatus
    from runbook_tui.tui.widgets.output_pane import OutputPane

    monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
    monkeypatch.chdir(tmp_path)
    service = docker_engine.unique("web")
    labels = {"com.docker.compose.service": service}
    first = docker_engine.run("i=0; while true; do echo first-$i; i=$((i+1)); sleep 0.2; done",
                              name=f"{service}-1", labels=labels)
    book = parse_markdown(f"---\nwatch: [{{docker: {service}, tail: 5}}]\n---\n# T\n## Steps\n- Look around.\n",
                          str(tmp_path / "book.md"))
    app = make_app(book, mode="paranoid", variables={}, transcript=str(tmp_path / "t.jsonl"), theme=None)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(f"#watch-{service}-pane", OutputPane)
        await wait_for(pilot, lambda: any(line.startswith("first-") for line in pane.lines_of(service)))
        await wait_for(pilot, lambda: "running" in str(app.query_one(ContainerStatus).render()))
        first.stop(timeout=1)
        first.remove()
        docker_engine.run("while true; do echo second; sleep 0.2; done", name=f"{service}-2", labels=labels)
        await wait_for(pilot, lambda: "second" in pane.lines_of(service), timeout=30)
        assert any("re-attached to" in line for line in pane.lines_of(service))
        assert app.run_screen.containers is not None
        followers = list(app.run_screen.containers.followers)
        tabs = app.run_screen.query_one("#tabs")
        assert tabs.active == "output-tab"
        await pilot.press("]")
        await wait_for(pilot, lambda: tabs.active == f"watch-{service}", timeout=5)
        await pilot.press("[")
        await wait_for(pilot, lambda: tabs.active == "output-tab", timeout=5)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, timeout=10)
    assert followers and not any(f.running for f in followers)
