"""The hosts of the selected task, when it runs on hosts (`hosts=`): each host's state, exit code
and duration, and one summary line per batch ("batch 2/3: 5 ok, 1 failed").

It only shows what the run reports: every state comes from a transcript event (`command.started`
and `command.finished` with a host, `host.skipped`, `host.failed`); the hosts and their batches
before any of that come from the runbook's inventory, as `plan` shows them. Selecting a host
asks the screen (`Selected`) to show that host's own output in the log pane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from runbook_tui.batches import plan_batches
from runbook_tui.model import Runbook, Task
from runbook_tui.parse.errors import RunbookError

# state -> its mark in the list (the same marks as the step tree's)
MARKS = {"pending": "○", "running": "▶", "ok": "✓", "failed": "✗", "skipped": "↷"}
# The order the summary counts states in.
SUMMARY_ORDER = ("ok", "failed", "skipped", "running", "pending")
HOST_EVENTS = ("command.started", "command.finished", "host.skipped", "host.failed")


@dataclass
class HostRow:
    """One host of one task, as the events so far tell it."""

    batch: int
    state: str = "pending"
    exit_code: int | None = None
    duration: float | None = None
    reason: str | None = None


@dataclass
class TaskHosts:
    """A fan-out task's hosts in plan order, and the attempt the rows describe."""

    batches: int
    rows: dict[str, HostRow] = field(default_factory=dict)
    attempt: int | None = None

    def summary(self) -> list[str]:
        """One line per batch: how many of its hosts are in each state."""
        lines = []
        for number in range(1, self.batches + 1):
            states = [row.state for row in self.rows.values() if row.batch == number]
            counts = ", ".join(f"{states.count(s)} {s}" for s in SUMMARY_ORDER if s in states)
            lines.append(f"batch {number}/{self.batches}: {counts}")
        return lines


class HostList(Vertical):
    """Below the step: the selected task's hosts (hidden for a task without hosts)."""

    DEFAULT_CSS = """
    HostList { height: auto; max-height: 16; display: none; border-top: hkey $panel; }
    HostList.-shown { display: block; }
    HostList #host-batches { height: auto; color: $text-muted; padding: 0 1; }
    HostList DataTable { height: auto; max-height: 12; }
    """

    class Selected(Message):
        """The operator chose a host: show its output."""

        def __init__(self, host_list: HostList, task_id: str, host: str) -> None:
            super().__init__()
            self.host_list = host_list
            self.task_id = task_id
            self.host = host

        @property
        def control(self) -> HostList:
            return self.host_list

    def __init__(self, runbook: Runbook, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runbook = runbook
        self.tasks: dict[str, TaskHosts] = {}
        self.shown: str | None = None  # the task whose hosts are listed

    def compose(self) -> ComposeResult:
        yield Static("", id="host-batches")
        table: DataTable[Text] = DataTable(id="host-table", cursor_type="row", zebra_stripes=True)
        table.add_column("Host", key="host")
        table.add_column("State", key="state")
        table.add_column("Exit", key="exit")
        table.add_column("Duration", key="duration")
        table.add_column("Why", key="reason")
        yield table

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#host-table", DataTable)

    def hosts_of(self, task_id: str) -> TaskHosts | None:
        """The task's hosts and their batches, planned once from the runbook (None: no hosts)."""
        if task_id not in self.tasks:
            task = self.runbook.find(task_id)
            if not isinstance(task, Task) or not task.options.hosts:
                return None
            from runbook_tui.integrations.inventory import runbook_inventory

            try:
                names = [host.name for host in runbook_inventory(self.runbook).resolve(task.options.hosts)]
            except (LookupError, RunbookError):  # an unknown group, a bad inventory: `check` says which
                return None
            batches = plan_batches(names, task.options.serial)
            self.tasks[task_id] = TaskHosts(len(batches), {host: HostRow(batch.number)
                                                           for batch in batches for host in batch.hosts})
        return self.tasks[task_id]

    # ---- what is shown ---------------------------------------------------------------------------
    def show_task(self, task: Task | None) -> None:
        """List `task`'s hosts, or hide the list when it has none."""
        hosts = self.hosts_of(task.id) if task is not None else None
        self.set_class(hosts is not None, "-shown")
        if hosts is None or task is None:
            self.shown = None
            return
        if self.shown != task.id:
            self.shown = task.id
            table = self.table
            table.clear()
            for host, row in hosts.rows.items():
                table.add_row(Text(host), *self._cells(row), key=host)
        self._summarize()

    def _cells(self, row: HostRow) -> tuple[Text, Text, Text, Text]:
        """As `Text`: a str cell is Rich markup to DataTable, and a reason comes from the network
        or a transcript (`[/x]` in one made the screen raise)."""
        return (Text(f"{MARKS.get(row.state, '?')} {row.state}"), Text("" if row.exit_code is None else str(row.exit_code)),
                Text("" if row.duration is None else f"{row.duration:.1f}s"), Text(row.reason or ""))

    def _summarize(self) -> None:
        hosts = self.tasks.get(self.shown or "")
        self.query_one("#host-batches", Static).update("\n".join(hosts.summary()) if hosts else "")

    # ---- what the run reports --------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        """A transcript event: a host's state changes (any other event is ignored)."""
        if event["type"] not in HOST_EVENTS or not event.get("host") or not event.get("task_id"):
            return
        task_id, host = str(event["task_id"]), str(event["host"])
        hosts = self.hosts_of(task_id)
        if hosts is None:
            return
        if event.get("attempt") is not None and event["attempt"] != hosts.attempt:
            hosts.attempt = event["attempt"]  # a new run of the task: every host starts over
            for other in hosts.rows.values():
                other.state, other.exit_code, other.duration, other.reason = "pending", None, None, None
            if task_id == self.shown:
                self._refresh_rows(hosts)
        row = hosts.rows.setdefault(host, HostRow(0))
        kind = event["type"]
        if kind == "command.started":
            row.state, row.exit_code, row.duration, row.reason = "running", None, None, None
        elif kind == "command.finished":
            row.state = str(event.get("state") or ("ok" if event.get("exit_code") == 0 else "failed"))
            row.exit_code, row.duration, row.reason = event.get("exit_code"), event.get("duration"), event.get("reason")
        else:
            row.state = "ok" if event.get("finished_before") else kind.removeprefix("host.")
            row.reason = event.get("reason")
        if task_id == self.shown:
            self._refresh_rows(hosts, host)
            self._summarize()

    def _refresh_rows(self, hosts: TaskHosts, only: str | None = None) -> None:
        table = self.table
        for host, row in hosts.rows.items():
            if only is not None and host != only:
                continue
            if host not in table.rows:
                table.add_row(Text(host), *self._cells(row), key=host)
                continue
            for column, value in zip(("state", "exit", "duration", "reason"), self._cells(row), strict=True):
                table.update_cell(host, column, value, update_width=True)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.shown is not None and event.row_key.value is not None:
            self.post_message(self.Selected(self, self.shown, event.row_key.value))
