"""The TUI's host list for a task with `hosts=`, against a real sshd fleet (tests/ssh_fleet.py):
each host's final state, exit code and duration, a summary line per batch, and the chosen
host's own output in the log pane."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_tui.engine.trust import trust
from runbook_tui.parse import load_runbook
from runbook_tui.tui.app import make_app
from runbook_tui.tui.widgets.host_list import HostList
from runbook_tui.tui.widgets.output_pane import OutputPane
from runbook_tui.tui.widgets.transcript_lines import host_log_id
from tests.ssh_fleet import SshFleet
from tests.tui_helpers import events, run_test, select, until, until_event

SIZE = (120, 50)


@pytest.fixture
def fleet_book(fleet_home: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four hosts in batches [1], [2], [3, 4]: host 2 fails (exit 5), so batch 3 is skipped."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    hosts = fleet_home.names(4)
    failing = fleet_home.server(hosts[1]).port
    path = tmp_path / "fleet.md"
    path.write_text(f"---\nhosts:\n  web: [{', '.join(hosts)}]\n---\n# Fleet\n\n## Steps\n\n"
                    "1. Deploy\n   ```sh {hosts=web serial=1,1,100% max_fail=0}\n"
                    "   set -- $(printenv SSH_CONNECTION)\n"
                    "   echo \"hello from $4\"\n"
                    f"   if [ \"$4\" = {failing} ]; then exit 5; fi\n   ```\n")
    trust(load_runbook(path))
    return path


async def test_the_host_list_shows_each_hosts_end_and_the_chosen_hosts_output(
        fleet_home: SshFleet, fleet_book: Path, tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook(fleet_book), mode="auto", variables={}, transcript=str(transcript), theme=None)
    h1, h2, h3, h4 = fleet_home.names(4)
    async with run_test(app, SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        task_id = load_runbook(fleet_book).commands().__next__().id
        await select(pilot, task_id)
        host_list = app.query_one(HostList)
        await until(pilot, lambda: host_list.has_class("-shown"), what="the host list for a task with hosts")
        table = host_list.table
        assert [str(table.get_row(h)[1]) for h in (h1, h2, h3, h4)] == ["○ pending"] * 4, "before it runs"
        await pilot.press("enter")
        await until_event(pilot, transcript, "task.finished", timeout=60)

        def row(host: str) -> list[str]:
            return [str(cell) for cell in table.get_row(host)]

        await until(pilot, lambda: row(h4)[1] == "↷ skipped", what=lambda: f"the rows to settle: {row(h4)}")
        assert row(h1)[1:3] == ["✓ ok", "0"] and row(h1)[3].endswith("s")
        assert row(h2)[1:3] == ["✗ failed", "5"] and row(h2)[3].endswith("s")
        assert row(h3)[1:3] == ["↷ skipped", ""] and "max_fail=0" in row(h3)[4]
        summary = str(host_list.query_one("#host-batches").render())
        assert summary.splitlines() == ["batch 1/3: 1 ok", "batch 2/3: 1 failed", "batch 3/3: 2 skipped"]
        # The list agrees with the record.
        ends = {e["host"]: e["exit_code"] for e in events(transcript, "command.finished")}
        assert ends == {h1: 0, h2: 5}

        pane = app.query_one("#output", OutputPane)
        for host, other in ((h1, h2), (h2, h1)):
            table.focus()
            table.move_cursor(row=table.get_row_index(host))
            await pilot.press("enter")
            await until(pilot, lambda: pane.shown == host_log_id(task_id, host), what=f"{host}'s output shown")
            port, other_port = fleet_home.server(host).port, fleet_home.server(other).port
            await until(pilot, lambda: f"hello from {port}" in pane.lines_of(pane.shown or ""),
                        what=lambda: f"{host}'s lines: {pane.lines_of(pane.shown or '')}")
            assert not any(f"hello from {other_port}" in line for line in pane.lines_of(pane.shown or "")), "only that host"
            assert f"on {host}" in str(pane.border_title)
            await pilot.pause()
            shown = ["".join(segment.text for segment in pane.view.render_line(y)) for y in range(pane.view.size.height)]
            assert any(f"hello from {port}" in line for line in shown), shown
            assert not any(f"hello from {other_port}" in line for line in shown), "the screen shows that host only"


async def test_each_batchs_confirmation_names_its_hosts_and_what_comes_after(
        fleet_home: SshFleet, fleet_book: Path, tmp_path: Path) -> None:
    from runbook_tui.tui.screens.dialogs import ConfirmCommand
    from tests.tui_helpers import until_screen

    transcript = tmp_path / "t.jsonl"
    app = make_app(load_runbook(fleet_book), mode="paranoid", variables={}, transcript=str(transcript), theme=None)
    h1, h2, h3, h4 = fleet_home.names(4)
    async with run_test(app, SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        task_id = load_runbook(fleet_book).commands().__next__().id
        await select(pilot, task_id)
        await pilot.press("enter")
        dialog = await until_screen(pilot, ConfirmCommand)
        details = str(dialog.query_one(".dialog-details").render())
        assert f"on 1 host: {h1} (batch 1 of 3; then batch 2/3 (1 host): {h2}; batch 3/3 (2 hosts): {h3}, {h4})" \
            in details, details
        await pilot.press("n")
        await until_event(pilot, transcript, "task.finished", timeout=30)
    assert not events(transcript, "command.started"), "declined: nothing ran on any host"


async def test_host_names_and_reasons_are_shown_as_written_never_as_markup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host's name comes from the runbook and its reason from the network or a transcript:
    `[bold]` stays those characters, and `[/x]` (a closing tag with no opening) does not crash
    the screen as Rich markup would."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "fleet.md"
    path.write_text("---\nhosts:\n  web: ['web-[b]1', web-2]\n---\n# Fleet\n\n## Steps\n\n"
                    "1. Deploy\n   ```sh {hosts=web}\n   echo hi\n   ```\n")
    book = load_runbook(path)
    transcript = tmp_path / "t.jsonl"
    app = make_app(book, mode="paranoid", variables={}, transcript=str(transcript), theme=None)
    reason = "[/x] refused by [bold]web-2[/bold]"
    async with run_test(app, SIZE) as pilot:
        await until_event(pilot, transcript, "run.started")
        task_id = next(book.commands()).id
        await select(pilot, task_id)
        host_list = app.query_one(HostList)
        await until(pilot, lambda: host_list.has_class("-shown"), what="the host list")
        host_list.apply({"type": "host.failed", "task_id": task_id, "host": "web-2", "reason": reason, "attempt": 1})
        await pilot.pause()
        table = host_list.table
        shown = ["".join(segment.text for segment in table.render_line(y)) for y in range(table.size.height)]
        assert any("web-[b]1" in line for line in shown), shown
        assert any("[/x] refused by [bold]web-2[/bold]"[:30] in line for line in shown), shown
        assert app.is_running, "the screen is still drawn"
        await pilot.press("q")
