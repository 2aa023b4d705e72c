"""The chaos driver's own logic: a seed names one schedule, and each event names its key."""

from __future__ import annotations

from itertools import pairwise

from bench.chaos.faults import COMMON_FAULTS, Fault, schedule
from bench.chaos.run import applied


def noop(target, seconds, rng) -> str:
    return "nothing"


FAULTS = [*COMMON_FAULTS, *(Fault(f"f{n}", noop) for n in range(4))]


def windows(seed: int, duration: float = 60.0) -> list[tuple[str, float, float]]:
    return [(s.fault.name, s.start, s.length) for s in schedule(FAULTS, seed, duration)]


def test_the_same_seed_is_the_same_schedule_and_another_seed_another():
    assert windows(7) == windows(7)
    assert windows(7) != windows(8)


def test_every_fault_runs_once_in_its_own_window_inside_the_run():
    for seed in range(20):
        slots = windows(seed)
        assert sorted(name for name, _, _ in slots) == sorted(f.name for f in FAULTS)
        ends = [(start, start + length) for _, start, length in slots]
        assert ends[0][0] > 0 and ends[-1][1] < 60.0
        for (_, end), (start, _) in pairwise(ends):
            assert end < start  # calm between two faults


def added(version: int, line: int, key: str) -> tuple[int, str, dict]:
    return (version, "line_added", {"line_id": line, "options": [["k", key]], "quantity": 1})


def test_an_add_applied_twice_counts_twice_though_its_key_row_is_one():
    events = [
        (1, "cart_opened", {}),
        added(2, 1, "add-a"),
        (3, "quantity_changed", {"line_id": 1, "quantity": 2}),  # set by key "set-b"
        (4, "quantity_changed", {"line_id": 1, "quantity": 3}),  # no key row: add-a again
    ]
    keys = {1: "open-k", 2: "add-a", 3: "set-b"}
    assert applied(events, keys) == {"open-k": 1, "add-a": 2, "set-b": 1}


def test_options_written_as_an_object_name_the_key_too():
    events = [(2, "line_added", {"line_id": 1, "options": {"k": "add-a"}})]
    assert applied(events, {}) == {"add-a": 1}
