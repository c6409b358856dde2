"""The navigator: sections, steps and tasks with their status, as a tree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from runbook_tui.audit.terminal import visible
from runbook_tui.engine.policy import task_risk
from runbook_tui.model import Runbook, Section, Step, Task

# status -> (icon, theme color variable); Tree labels are Rich Text, so colors are looked up
# in the current theme rather than written as hex codes.
ICONS = {
    "pending": ("○", "foreground"),
    "running": ("▶", "warning"),
    "done": ("✓", "success"),
    "manual": ("☑", "success"),
    "failed": ("✗", "error"),
    "not_confirmed": ("✗", "warning"),
    "skipped": ("↷", "foreground-muted"),
    "planned": ("·", "foreground-muted"),
}


# A task in one of these needs nothing more (a failed or not-confirmed one is still to do).
SETTLED_STATUSES = ("done", "manual", "skipped", "planned")


@dataclass(frozen=True)
class Item:
    """What a tree node stands for."""

    section: Section
    step: Step | None = None
    task: Task | None = None


class StepTree(Tree[Item]):
    """Left pane. Emits `Selected` with the model objects, never widget internals."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Run / done", id="task.activate",
                tooltip="Run the selected command, or mark the manual check done"),
        Binding("j", "cursor_down", "Down", show=False, id="nav.down", tooltip="Next item"),
        Binding("k", "cursor_up", "Up", show=False, id="nav.up", tooltip="Previous item"),
        Binding("left", "fold", "Fold", show=False, id="nav.fold", tooltip="Fold the step or section"),
        Binding("right", "unfold", "Unfold", show=False, id="nav.unfold", tooltip="Unfold the step or section"),
    ]

    class Selected(Message):
        def __init__(self, item: Item) -> None:
            super().__init__()
            self.item = item

    def __init__(self, runbook: Runbook, *, risk_of: Callable[[Task], str] | None = None,
                 id: str | None = None) -> None:
        """`risk_of` gives a task's risk as the run will ask it (default: the policy's, with the
        runbook's own values), so the tree never shows another risk than the prompt."""
        super().__init__(Text(visible(runbook.title)), id=id)  # the runbook's text: never markup
        self.runbook = runbook
        self._risk_of = risk_of or (lambda task: task_risk(runbook, task).level)
        self.status: dict[str, str] = {}
        self._by_id: dict[str, TreeNode[Item]] = {}
        self.show_root = False
        self.guide_depth = 2
        self.auto_expand = False  # enter on a heading goes to its next task; space, left, right fold

    def on_mount(self) -> None:
        for section in self.runbook.sections:
            node = self.root.add(self._section_label(section), Item(section), expand=section.procedural)
            self._by_id[section.id] = node
            for step in section.steps:
                step_node = node.add(self._step_label(step), Item(section, step), expand=True)
                self._by_id[step.id] = step_node
                for task in step.tasks:
                    self._by_id[task.id] = step_node.add_leaf(self._task_label(task), Item(section, step, task))

    def _color(self, variable: str) -> str:
        return self.app.theme_variables.get(variable, "")

    def _section_label(self, section: Section) -> Text:
        style = "bold" if section.procedural else f"italic {self._color('foreground-muted')}"
        return Text(f"{section.id}. {visible(section.title)}", style=style)

    def _step_label(self, step: Step) -> Text:
        text = Text(f"{step.id} {visible(step.title)}")
        if step.optional:
            text.append(" (optional)", style="dim")
        return text

    def _task_label(self, task: Task) -> Text:
        icon, color = ICONS.get(self.status.get(task.id, "pending"), ICONS["pending"])
        body = task.command.splitlines()[0] if task.command else task.text
        text = Text(icon, style=f"bold {self._color(color)}")
        text.append(f" {'$ ' if task.kind == 'command' else ''}{_short(visible(body))}")
        if self._risk_of(task) == "high":
            text.append(" !", style=f"bold {self._color('error')}")
        return text

    def set_status(self, task: Task, status: str) -> None:
        self.status[task.id] = status
        node = self._by_id.get(task.id)
        if node is not None:
            node.set_label(self._task_label(task))

    def relabel(self) -> None:
        """Redraw every label, e.g. after the theme (and so the status colors) changed."""
        for node in self._by_id.values():
            item = node.data
            if item is None:
                continue
            if item.task is not None:
                node.set_label(self._task_label(item.task))
            elif item.step is not None:
                node.set_label(self._step_label(item.step))
            else:
                node.set_label(self._section_label(item.section))

    def select_id(self, element_id: str) -> None:
        """Move the cursor to a section, step or task and tell the app."""
        node = self._by_id.get(element_id)
        if node is None:
            return
        if node.parent is not None:
            node.parent.expand()
        self.move_cursor(node)
        self.scroll_to_node(node)

    def action_fold(self) -> None:
        node = self.cursor_node
        if node is not None and node.data is not None and node.data.task is not None:
            node = node.parent  # on a task, left folds the step it belongs to
        if node is not None and node is not self.root:
            node.collapse()
            self.move_cursor(node)

    def action_unfold(self) -> None:
        if self.cursor_node is not None:
            self.cursor_node.expand()

    def next_pending(self, item: Item) -> Task | None:
        """The first task under a step or section heading that has not settled yet."""
        steps = [item.step] if item.step is not None else list(item.section.steps)
        tasks = [task for step in steps for task in step.tasks]
        return next((t for t in tasks if self.status.get(t.id, "pending") not in SETTLED_STATUSES), None)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Item]) -> None:
        if event.node.data is not None:
            self.post_message(self.Selected(event.node.data))


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
