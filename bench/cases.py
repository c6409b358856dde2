"""The cases of issue 6, by key (`--only` takes a key or a name)."""

from __future__ import annotations

from collections.abc import Callable

from bench.common import CaseResult, Context
from bench.log_pane import case_log_pane
from bench.scale import case_scale
from bench.startup import case_startup
from bench.throughput import case_flood, case_headless, case_memory, case_tui
from bench.tui_terminal import case_terminal

CASES: dict[str, tuple[str, Callable[[Context], CaseResult]]] = {
    "1": ("headless", case_headless),
    "2": ("tui", case_tui),
    "3": ("flood", case_flood),
    "4": ("memory", case_memory),
    "5": ("startup", case_startup),
    "6": ("scale", case_scale),
    "7": ("logpane", case_log_pane),
    "8": ("terminal", case_terminal),
}


def select(only: list[str] | None) -> list[str]:
    """Case keys for `--only` values (keys or names), in order; all of them by default."""
    if not only:
        return list(CASES)
    by_name = {name: key for key, (name, _) in CASES.items()}
    keys = []
    for item in only:
        for part in item.split(","):
            key = part if part in CASES else by_name.get(part)
            if key is None:
                raise SystemExit(f"unknown case {part!r}; cases: "
                                 + ", ".join(f"{k} ({n})" for k, (n, _) in CASES.items()))
            keys.append(key)
    return sorted(set(keys), key=list(CASES).index)
