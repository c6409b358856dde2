"""Batch planning for rolling execution (`serial`, issue 15): Ansible's rules, held as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_tui.batches import BatchSizeError, batch_size, describe_batches, parse_serial, plan_batches

sizes = st.one_of(st.integers(1, 60).map(str), st.integers(1, 100).map(lambda n: f"{n}%"))
serials = st.lists(sizes, min_size=1, max_size=5).map(tuple)
host_lists = st.integers(0, 120).map(lambda n: [f"h{i}" for i in range(n)])


@given(host_lists, st.one_of(st.none(), serials))
def test_batches_partition_the_hosts_in_order(hosts: list[str], serial: tuple[str, ...] | None) -> None:
    batches = plan_batches(hosts, serial)
    assert [host for batch in batches for host in batch.hosts] == hosts
    assert all(batch.hosts for batch in batches)
    assert [batch.number for batch in batches] == list(range(1, len(batches) + 1))


@given(host_lists, serials)
def test_each_batch_has_its_size_of_the_total_and_the_last_size_repeats(hosts: list[str], serial: tuple[str, ...]) -> None:
    batches = plan_batches(hosts, serial)
    done = 0
    for index, batch in enumerate(batches):
        spec = serial[min(index, len(serial) - 1)]
        wanted = max(1, int(spec[:-1]) * len(hosts) // 100) if spec.endswith("%") else int(spec)
        assert len(batch.hosts) == min(wanted, len(hosts) - done)
        done += len(batch.hosts)


@given(host_lists)
def test_no_serial_is_one_batch_of_everything(hosts: list[str]) -> None:
    assert [b.hosts for b in plan_batches(hosts)] == ([tuple(hosts)] if hosts else [])


def test_canary_then_quarter_then_rest() -> None:
    hosts = [f"web-{i}" for i in range(1, 21)]
    assert [len(b.hosts) for b in plan_batches(hosts, parse_serial("1,25%,100%"))] == [1, 5, 14]
    assert [len(b.hosts) for b in plan_batches(hosts[:3], parse_serial("1,25%"))] == [1, 1, 1]
    assert [len(b.hosts) for b in plan_batches(hosts[:5], parse_serial(2))] == [2, 2, 1]


def test_percentages_round_down_but_never_to_zero() -> None:
    assert batch_size("30%", 10) == 3
    assert batch_size("33%", 10) == 3
    assert batch_size("5%", 10) == 1


@pytest.mark.parametrize("value", ["0", "0%", "101%", "x", "1.5", "", "-1", "25 %%"])
def test_bad_sizes_are_refused(value: str) -> None:
    with pytest.raises(BatchSizeError):
        parse_serial(value)


def test_serial_accepts_lists_and_text() -> None:
    assert parse_serial([1, "25%", "100%"]) == ("1", "25%", "100%")
    assert parse_serial("1, 25%,100%") == ("1", "25%", "100%")


def test_plan_lines_name_each_batch_and_its_hosts() -> None:
    hosts = [f"web-{i:02d}" for i in range(1, 21)]
    lines = describe_batches(plan_batches(hosts, parse_serial("1,25%,100%")), max_hosts=3)
    assert lines == [
        "batch 1/3 (1 host): web-01",
        "batch 2/3 (5 hosts): web-02, web-03, web-04, ... 2 more",
        "batch 3/3 (14 hosts): web-07, web-08, web-09, ... 11 more",
    ]


def test_hosts_done_before_are_reported_ok_and_each_batch_asks_only_for_the_rest() -> None:
    """A resumed fan-out (`done`): the plan is the original one; a batch left empty is not asked
    for, the others only for their remaining hosts; the commands are real local processes."""
    from runbook_tui.batches import Batch, FanoutCallbacks, run_on_hosts
    from runbook_tui.engine.runner import PtyProcess

    hosts = ["a", "b", "c", "d", "e"]  # serial 1,2,100%: [a], [b, c], [d, e]
    started: list[str] = []
    asked: list[tuple[Batch, list[Batch]]] = []

    def start(host, on_output, on_started):  # type: ignore[no-untyped-def]
        started.append(host)
        return PtyProcess.spawn(["echo", host], on_output=on_output)

    def before_batch(batch: Batch, rest) -> bool:  # type: ignore[no-untyped-def]
        asked.append((batch, list(rest)))
        return True

    results = run_on_hosts(hosts, start, serial=("1", "2", "100%"), done={"a", "b"},
                           callbacks=FanoutCallbacks(before_batch=before_batch))
    assert sorted(started) == ["c", "d", "e"]
    assert asked == [(Batch(2, ("c",)), [Batch(3, ("d", "e"))]), (Batch(3, ("d", "e")), [])]
    assert [(r.host, r.state, r.finished_before) for r in results] == [
        ("a", "ok", True), ("b", "ok", True), ("c", "ok", False), ("d", "ok", False), ("e", "ok", False)]
    assert [r.batch for r in results] == [1, 2, 2, 3, 3]
