"""Live log tabs and a status line for the containers a runbook watches (`watch: [{docker: web}]`).

Each tab follows one container with a `LogFollower` (its own thread; lines go through the same
queued `OutputPane` as command output, after redaction). The status line polls the engine every
few seconds on a worker thread: running, exited (code), health, or why the engine is unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import work
from textual.widgets import Static

from runbook_tui.model import Watch
from runbook_tui.tui.widgets.output_pane import OutputPane

STATUS_INTERVAL = 3.0


def tab_id(watch: Watch) -> str:
    return "watch-" + "".join(c if c.isalnum() else "-" for c in watch.docker)


class ContainerWatch:
    """Starts and stops the followers of a runbook's watched containers."""

    def __init__(self, watches: tuple[Watch, ...], redact: Callable[[str], str]) -> None:
        self.watches = watches
        self.redact = redact
        self.followers: list[Any] = []

    def start(self, pane_for: Callable[[Watch], OutputPane]) -> None:
        from runbook_tui.integrations.docker import LogFollower

        for watch in self.watches:
            pane = pane_for(watch)
            key = watch.docker
            pane.show(key)
            follower = LogFollower(
                watch.docker,
                tail=watch.tail or 100,
                on_line=lambda line, p=pane, k=key: p.feed(k, self.redact(line) + "\n"),
                on_status=lambda message, p=pane, k=key: p.mark(k, f"[{message}]"),
            )
            self.followers.append(follower.start())

    def stop(self) -> None:
        for follower in self.followers:
            follower.stop(timeout=2.0)
        self.followers.clear()


class ContainerStatus(Static):
    """One line under the header: each watched container's state."""

    DEFAULT_CSS = """
    ContainerStatus { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, watches: tuple[Watch, ...], *, id: str | None = None) -> None:
        super().__init__("containers: …", id=id)
        self.watches = watches

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(STATUS_INTERVAL, self.poll)

    @work(thread=True, exclusive=True, group="container-status", exit_on_error=False)
    def poll(self) -> None:
        from runbook_tui.integrations.docker import DockerError, connect, container_status

        try:
            client = connect(timeout=2)
        except DockerError as exc:
            self.app.call_from_thread(self.update, f"containers: {exc}")
            return
        try:
            parts = [describe(container_status(client, w.docker)) for w in self.watches]
        finally:
            client.close()
        self.app.call_from_thread(self.update, "containers: " + " · ".join(parts))


def describe(status: dict[str, Any]) -> str:
    """`web: running (healthy)`, `worker: exited (1)`, `db: missing`."""
    state = status.get("state") or "unknown"
    detail = status.get("health") or (str(status["exit_code"]) if state == "exited" and
                                      status.get("exit_code") is not None else "")
    return f"{status.get('target')}: {state}" + (f" ({detail})" if detail else "")
