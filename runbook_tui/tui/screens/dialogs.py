"""Modal dialogs: every question the app asks the operator, each returning its answer on dismiss."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea

from runbook_tui.audit.export import plain_text
from runbook_tui.audit.terminal import visible
from runbook_tui.engine.session import Answer, Confirmation, Question
from runbook_tui.model import Task


class ConfirmCommand(ModalScreen[Answer]):
    """Shows exactly what will run, where, with which variables, and asks: run, skip, edit, abort.

    A high-risk command is only run when the operator types the word shown (the environment's
    name, or `yes`); `y`/`enter` alone do nothing there.
    """

    BINDINGS = [
        Binding("y", "answer('run')", "Run", id="confirm.yes", tooltip="Run this command"),
        Binding("n,escape", "answer('stop')", "Don't run", id="confirm.no", tooltip="Leave it not run"),
        Binding("s", "answer('skip')", "Skip", id="confirm.skip", tooltip="Skip this task with a reason"),
        Binding("ctrl+e", "answer('edit')", "Edit", id="confirm.edit", priority=True,
                tooltip="Edit the command first"),
    ]

    def __init__(self, request: Confirmation) -> None:
        super().__init__(classes="dialog")
        self.request = request
        self.edited: str | None = None  # an edited high-risk command waits for the typed word

    def compose(self) -> ComposeResult:
        r = self.request
        risk = "HIGH RISK" if r.risk == "high" else "low risk"
        with Vertical(id="dialog-box", classes=f"risk-{r.risk}"):
            yield Label(Text(f"Run task {r.task.id}? ({risk})", style="bold"), id="dialog-title")
            with VerticalScroll(id="dialog-body"):  # a long script scrolls; the buttons stay
                yield Static(Text(r.task.text), id="dialog-text")
                yield from command_details(r)
            if r.typed_word:
                yield Label(Text(f"Type {r.typed_word!r} and press enter to run it:"))
                yield Input(placeholder=r.typed_word, id="typed")
            with Horizontal(id="dialog-buttons"):
                if not r.typed_word:
                    yield Button("Run (y)", id="run", variant="primary")
                yield Button("Don't run (n)", id="stop")
                yield Button("Skip (s)", id="skip")
                yield Button("Edit (ctrl+e)", id="edit")

    def on_mount(self) -> None:
        if self.request.typed_word:
            self.query_one("#typed", Input).focus()
        else:
            self.query_one("#run", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While typing the high-risk word, letters are text, not shortcuts.
        if self.request.typed_word and action == "answer" and parameters and parameters[0] in ("run", "skip"):
            return False
        return True

    def action_answer(self, action: str) -> None:
        if action == "run" and self.request.typed_word:
            return
        if action == "skip":
            self.app.push_screen(TextPrompt("Why skip it?", "reason"), self._skipped)
            return
        if action == "edit":
            self.app.push_screen(EditCommand(self.request.command), self._edited)
            return
        self.dismiss(Answer(action))  # type: ignore[arg-type]

    def _skipped(self, reason: str | None) -> None:
        if reason:
            self.dismiss(Answer("skip", reason=reason))

    def _edited(self, command: str | None) -> None:
        """Low risk: the edit is the confirmation. High risk: the word must still be typed."""
        if not command:
            return
        if not self.request.typed_word:
            self.dismiss(Answer("run", command=command))
            return
        self.edited = command
        self.query_one(".dialog-command", Static).update(
            Syntax(visible(command), "bash", word_wrap=True, background_color="default"))
        self.query_one("#typed", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        typed = event.value.strip()
        if typed == self.request.typed_word:
            self.dismiss(Answer("run", typed=typed, command=self.edited))
        else:
            self.notify(f"That is not {self.request.typed_word!r}; nothing was run.", severity="warning", markup=False)
            event.input.value = ""

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id or "stop")


def command_details(request: Confirmation) -> ComposeResult:
    """Everything that will run, whole: the script, where, which shell, the environment with its
    values (secrets masked), why it is high risk and why the operator is asked."""
    yield Static(Syntax(visible(request.command), "bash", word_wrap=True, background_color="default"),
                 classes="dialog-command")
    details = [f"cwd: {request.cwd}", f"shell: {request.shell}"]
    if request.hosts:  # a fan-out batch: this answer covers these hosts, and says what follows
        details.append(f"on {len(request.hosts)} host{'s' if len(request.hosts) != 1 else ''}: "
                       f"{', '.join(request.hosts)} ({request.after})")
    if request.container:
        details.append(f"container: {request.container}")
    if request.env:
        details.append("environment:")
        details += [f"  {name}={value}" for name, value in request.env]
    else:
        details.append("environment: nothing added")
    details += [f"! {reason}" for reason in request.risk_reasons]
    if request.attempt > 1:
        details.append(f"attempt {request.attempt}")
    if request.reason:
        details.append(f"asked because: {request.reason}")
    yield Static(Text(visible("\n".join(details))), classes="dialog-details")


class ConfirmStep(ModalScreen[bool]):
    """Step mode: every command of the step, in full, approved (or not) at once."""

    BINDINGS = [
        Binding("y", "answer(True)", "Run the step", id="step.yes", tooltip="Run every command listed"),
        Binding("n,escape", "answer(False)", "Don't run", id="step.no", tooltip="Run none of them"),
    ]

    def __init__(self, title: str, requests: list[Confirmation]) -> None:
        super().__init__(classes="dialog")
        self.title_text = title
        self.requests = requests

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label(Text(self.title_text, style="bold"), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                for request in self.requests:
                    yield Label(Text(f"Task {request.task.id}: {visible(request.task.text)}", style="bold"))
                    yield from command_details(request)
            with Horizontal(id="dialog-buttons"):
                yield Button("Run the step (y)", id="yes", variant="primary")
                yield Button("Don't run (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class YesNo(ModalScreen[bool]):
    """A plain yes/no question (quit while running, interrupt)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="yesno.yes", tooltip="Yes"),
        Binding("n,escape", "answer(False)", "No", id="yesno.no", tooltip="No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="dialog")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label(Text(self.question), id="dialog-title")  # it may quote a runbook: never markup
            with Horizontal(id="dialog-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TextPrompt(ModalScreen[str | None]):
    """One line of text: a variable's value, a secret (masked), a skip reason, a note."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel", tooltip="Cancel")]

    def __init__(self, question: str, placeholder: str = "", *, password: bool = False, value: str = "") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.placeholder = placeholder
        self.password = password
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label(Text(self.question), id="dialog-title")  # it may quote a runbook: never markup
            yield Input(value=self.value, placeholder=self.placeholder, password=self.password, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class CommandInput(ModalScreen[str | None]):
    """A running command waits for a line of input: its latest output, and a field to answer in
    (masked, and never recorded, when the command's terminal does not echo: a password)."""

    BINDINGS = [Binding("escape", "cancel", "Stop the command", id="input.cancel",
                        tooltip="Do not answer: the command is stopped")]
    # The last lines of output shown above the field: enough for the question and its context.
    SHOWN_LINES = 12

    def __init__(self, task: Task, shown: str, masked: bool) -> None:
        super().__init__(classes="dialog")
        self.for_task = task  # (Screen.task is Textual's own)
        self.shown = shown
        self.masked = masked

    def compose(self) -> ComposeResult:
        kind = "hidden input (not shown, never recorded)" if self.masked else "input"
        tail = "\n".join(plain_text(self.shown).rstrip("\n").split("\n")[-self.SHOWN_LINES:])
        with Vertical(id="dialog-box"):
            yield Label(Text(f"Task {self.for_task.id} waits for {kind}", style="bold"), id="dialog-title")
            yield Static(Text(tail), classes="dialog-command")
            yield Input(password=self.masked, placeholder="the line to send (enter sends it)", id="answer")
            yield Label(Text("escape: do not answer, stop the command", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#answer", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)  # an empty line is an answer too (a default)

    def action_cancel(self) -> None:
        self.dismiss(None)


class EditCommand(ModalScreen[str | None]):
    """Edit a command before it runs; the transcript records that it was edited."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Use it", id="edit.save", tooltip="Run the edited command"),
        Binding("escape", "cancel", "Cancel", id="edit.cancel", tooltip="Keep the original"),
    ]

    def __init__(self, command: str) -> None:
        super().__init__(classes="dialog")
        self.command = command

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label("Edit the command (ctrl+s to use it, escape to cancel)", id="dialog-title")
            yield TextArea(self.command, language="bash", id="editor", soft_wrap=True)

    def action_save(self) -> None:
        text = self.query_one(TextArea).text.strip("\n")
        self.dismiss(text or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Choose(ModalScreen[int | None]):
    """Pick one of several items (which related runbook to open)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choose.cancel", tooltip="Cancel")]

    def __init__(self, question: str, items: list[str]) -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.items = items

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label(Text(self.question), id="dialog-title")  # it may quote a runbook: never markup
            yield OptionList(*(Text(item) for item in self.items), id="choices")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_index)

    def action_cancel(self) -> None:
        self.dismiss(None)


# The values form never shrinks below this many rows (title, one prompt, its field, the hint and the
# border) to keep the output in view: on a very small terminal it may then cover the output's top.
VALUES_FORM_MIN_ROWS = 10
# Rows of the form that are not fields: border 2, padding 2, title and its margin 2, the hint 1.
VALUES_FORM_CHROME = 7


class ValuesForm(ModalScreen[dict[str, str] | None]):
    """Everything the next task needs, asked at once: variables, placeholders, secrets (masked)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="values.cancel", tooltip="Do not run the task"),
        Binding("ctrl+s", "submit", "Use these values", id="values.submit", tooltip="Use these values"),
    ]

    def __init__(self, questions: list[Question], title: str = "This task needs values") -> None:
        super().__init__(classes="dialog values-form")
        self.questions = questions
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label(self.title_text, id="dialog-title")
            with VerticalScroll(id="dialog-body", can_focus=False):  # focus goes to the first field
                for number, question in enumerate(self.questions):
                    yield Label(Text(visible(question.prompt) + (" (hidden)" if question.secret else "")))
                    yield Input(question.default or "", password=question.secret, id=f"value-{number}",
                                placeholder=question.name)
            yield Static("enter moves on; enter on the last field (or ctrl+s) uses the values", classes="hint")

    def on_mount(self) -> None:
        """Sit above the output tabs: the value asked for is often in the output just printed."""
        tabs = self.app.screen_stack[0].query("#tabs")
        if tabs:
            rows = max(tabs.first().region.y, VALUES_FORM_MIN_ROWS)
            self.query_one("#dialog-body").styles.max_height = rows - VALUES_FORM_CHROME

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
        else:
            self.action_submit()

    def action_submit(self) -> None:
        values = {q.name: field.value for q, field in zip(self.questions, self.query(Input))}
        empty = [q.prompt for q in self.questions if not values[q.name].strip()]
        if empty:
            self.notify("Still needed: " + ", ".join(empty), severity="warning")
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Reading(ModalScreen[None]):
    """Text to read, scrollable, closed with escape: the keys of a screen, the run's messages."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="reading.close", tooltip="Close")]

    def __init__(self, title: str, body: Text) -> None:
        super().__init__(classes="dialog")
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Label(Text(self.title_text, style="bold"), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(self.body, id="reading-body")
            yield Label(Text("escape: close", style="dim"))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)


class KeysHelp(Reading):
    """The keys that work on the screen underneath, with what each does (`?`, F1, or the palette)."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close", id="help.close", tooltip="Close")]

    def __init__(self, title: str, keys: list[tuple[str, str]]) -> None:
        width = max((len(key) for key, _ in keys), default=0)
        super().__init__(title, Text("\n".join(f"{key.ljust(width)}  {what}" for key, what in keys)))
        self.keys = keys
