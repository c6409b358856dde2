"""The selected step as Markdown, and the selected task: its command, annotations and needs."""

from __future__ import annotations

from rich.console import Group
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static

from runbook_tui.audit.terminal import visible
from runbook_tui.model import Task
from runbook_tui.tui.widgets.step_tree import Item


class StepView(VerticalScroll):
    """Right, top: what the operator reads before acting."""

    DEFAULT_CSS = """
    StepView { height: 1fr; padding: 0 1; }
    StepView #task { border: round $primary; padding: 0 1; height: auto; margin-top: 1; }
    StepView #task.hidden { display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: str | None = None

    def compose(self) -> ComposeResult:
        yield Markdown("", id="markdown")
        yield Static("", id="task", classes="hidden")

    def show(self, item: Item, status: str) -> None:
        """Render the step (or a reading section) and the task under the cursor."""
        key = item.step.id if item.step else item.section.id
        if key != self._shown:
            self._shown = key
            markdown = item.step.markdown if item.step else f"## {item.section.title}\n\n{item.section.markdown}"
            self.query_one(Markdown).update(markdown)
        panel = self.query_one("#task", Static)
        if item.task is None:
            panel.add_class("hidden")
            return
        panel.remove_class("hidden")
        panel.update(describe_task(item.task, status))
        panel.border_title = f"task {item.task.id} · {status.replace('_', ' ')}"


def describe_task(task: Task, status: str) -> Group:
    """The task's command highlighted, then its annotations and what it needs."""
    parts: list[object] = []
    if task.command is not None:
        parts.append(Text(visible(task.text), style="italic") if task.text != task.command else Text(""))
        parts.append(Syntax(visible(task.command), "bash", word_wrap=True, background_color="default"))
    else:
        parts.append(Text(f"Manual check: {visible(task.text)}"))
        parts.append(Text("Press enter when it is done, s to skip it.", style="dim"))
    options = task.options.as_dict()
    if options:
        parts.append(Text("  ".join(_option(k, v) for k, v in options.items()), style="bold"))
    needs = [f"${v}" for v in task.variables] + list(task.placeholders)
    if needs:
        parts.append(Text("needs: " + ", ".join(needs)))
    if task.client_input:
        parts.append(Text(f"then type into {task.client}" + (" (the command above opens it)" if task.command
                                                             else "") + ":", style="bold"))
        parts.append(Text("\n".join(task.client_input)))
    if task.expected_output:
        parts.append(Text("expected output:\n" + task.expected_output, style="dim"))
    return Group(*parts)  # type: ignore[arg-type]


def _option(key: str, value: object) -> str:
    """An annotation as a person reads it: `interactive`, `no confirm`, `timeout 300s`."""
    name = key.replace("_", " ")
    if value is True:
        return name
    if value is False:
        return f"no {name}"
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    elif isinstance(value, dict):
        value = ", ".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, float):
        value = f"{value:g}s" if key in ("timeout",) else f"{value:g}"
    return f"{name} {value}"
