"""The chaos run's history checker finds each broken promise, and nothing in a sound history."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bench.chaos.history import (
    FINAL_PHASE,
    Final,
    Request,
    check,
    dump_finals,
    dump_jsonl,
    load_finals,
    load_jsonl,
    main,
)
from tests.hypothesis_profiles import examples

ROOT = Path(__file__).resolve().parents[2]


def req(
    op: str,
    version: int | None,
    sent: float,
    answered: float | None,
    *,
    client: str = "c1",
    cart: str = "A",
    status: int | None = 200,
    key: str | None = None,
    code: str | None = None,
    fault: str = "calm",
) -> Request:
    return Request(client, cart, op, sent, answered, status, version, key, code, fault)


def final(cart: str, n: int, keys: dict[str, int] | None = None, clean: bool = True) -> Final:
    return Final(cart, list(range(1, n + 1)), keys or {}, clean)


def clean_history() -> tuple[list[Request], list[Final]]:
    """Two clients on cart A, one on cart B: adds, reads, a 503 busy and a retried timeout."""
    requests = [
        req("add", 1, 0.0, 0.1, key="k1"),
        req("read", 1, 0.2, 0.3, client="c2"),
        req("add", None, 0.4, 0.5, status=503, code="busy", key="k2", client="c2"),
        req("add", 2, 0.6, 0.7, key="k2", client="c2"),
        req("set_quantity", None, 0.8, None, status=None, code="timeout", key="k3"),
        req("set_quantity", 3, 1.8, 1.9, key="k3"),
        req("read", 3, 2.0, 2.1, client="c2"),
        req("add", 1, 0.0, 0.2, cart="B", key="b1", client="c3"),
        req("read", 1, 0.3, 0.4, cart="B", client="c3"),
    ]
    finals = [final("A", 3, {"k1": 1, "k2": 1, "k3": 1}), final("B", 1, {"b1": 1})]
    return requests, finals


def kinds(report) -> list[tuple[str, str]]:
    return sorted((v.kind, v.cart_id) for v in report.violations)


def test_a_clean_history_passes():
    report = check(*clean_history())
    assert report.ok, [str(v) for v in report.violations]
    assert report.violations == ()


def test_a_lost_write_is_reported():
    requests, _ = clean_history()
    # The log ends at 2 though the set_quantity was acknowledged at 3.
    report = check(requests, [final("A", 2, {"k1": 1, "k2": 1, "k3": 1}), final("B", 1, {"b1": 1})])
    assert kinds(report) == [("lost_write", "A")]
    (violation,) = report.violations
    assert violation.requests[0].key == "k3"
    assert "the log ends at version 2" in violation.detail


def test_an_acknowledged_key_missing_from_the_applied_keys_is_a_lost_write():
    requests, _ = clean_history()
    report = check(requests, [final("A", 3, {"k1": 1, "k3": 1}), final("B", 1, {"b1": 1})])
    assert kinds(report) == [("lost_write", "A")]
    assert report.violations[0].requests[0].key == "k2"


def test_an_acknowledged_write_on_a_cart_without_a_final_state_is_lost():
    requests, finals = clean_history()
    report = check(requests, finals[:1])
    assert kinds(report) == [("lost_write", "B")]


def test_a_stale_read_across_two_clients_is_reported():
    requests = [
        req("add", 1, 0.0, 0.1, key="k1", client="writer"),
        req("add", 2, 0.2, 0.3, key="k2", client="writer"),
        # Sent after version 2 was acknowledged to another client, yet answers version 1.
        req("read", 1, 0.4, 0.5, client="reader"),
    ]
    report = check(requests, [final("A", 2, {"k1": 1, "k2": 1})])
    assert kinds(report) == [("stale_read", "A")]
    read, newer = report.violations[0].requests
    assert (read.client, read.version) == ("reader", 1)
    assert (newer.client, newer.version) == ("writer", 2)


def test_a_read_below_an_earlier_acknowledged_read_is_stale():
    requests = [
        req("add", 1, 0.0, 0.1, key="k1"),
        req("add", 2, 0.2, 1.0, key="k2"),  # still in flight when the first read is answered
        req("read", 2, 0.3, 0.4, client="c2"),
        req("read", 1, 0.5, 0.6, client="c3"),  # after a read that saw 2
    ]
    report = check(requests, [final("A", 2, {"k1": 1, "k2": 1})])
    assert kinds(report) == [("stale_read", "A")]
    assert report.violations[0].requests[1].client == "c2"


def test_the_highest_version_counts_not_the_latest_answer():
    requests = [
        req("add", 1, 0.0, 0.1, key="k1"),
        req("add", 2, 0.2, 0.5, key="k2"),
        req("read", 1, 0.3, 0.6, client="c2"),  # overlapped the add: fine, answered last
        req("read", 1, 0.7, 0.8, client="c3"),  # after version 2 was acknowledged
    ]
    report = check(requests, [final("A", 2, {"k1": 1, "k2": 1})])
    assert kinds(report) == [("stale_read", "A")]
    assert report.violations[0].requests == (requests[3], requests[1])


def test_an_answer_that_is_not_2xx_acknowledges_nothing():
    requests = [
        req("add", 1, 0.0, 0.1, key="k1"),
        # Its outcome unknown (a version recorded all the same): it may never have applied.
        req("add", 2, 0.2, 0.3, status=503, code="outcome_unknown", key="k2"),
        req("read", 1, 0.4, 0.5, client="c2"),
    ]
    assert check(requests, [final("A", 1, {"k1": 1})]).ok


def test_a_read_overlapping_a_write_may_return_the_older_version():
    requests = [
        req("add", 1, 0.0, 0.1, key="k1"),
        req("add", 2, 0.2, 0.6, key="k2"),
        req("read", 1, 0.3, 0.7, client="c2"),  # sent before the add was answered
        req("read", 1, 0.6, 0.8, client="c3"),  # sent at the very moment: not after it
    ]
    assert check(requests, [final("A", 2, {"k1": 1, "k2": 1})]).ok


def test_reads_of_another_cart_do_not_count():
    requests = [
        req("add", 2, 0.0, 0.1, key="a2"),
        req("read", 1, 0.2, 0.3, cart="B"),
    ]
    finals = [final("A", 2, {"a2": 1}), final("B", 1)]
    assert check(requests, finals).ok


def test_a_key_applied_twice_is_a_doubled_add():
    requests, _ = clean_history()
    report = check(requests, [final("A", 3, {"k1": 1, "k2": 2, "k3": 1}), final("B", 1, {"b1": 1})])
    assert kinds(report) == [("doubled", "A")]
    (violation,) = report.violations
    assert "k2 was applied 2 times" in violation.detail
    assert {r.key for r in violation.requests} == {"k2"}
    assert violation.fault == "calm"


def test_two_acknowledged_adds_at_one_version_are_doubled():
    requests = [
        req("add", 1, 0.0, 0.1, key="k1"),
        req("add", 1, 0.0, 0.2, key="k2", client="c2"),
    ]
    report = check(requests, [final("A", 1, {"k1": 1, "k2": 1})])
    assert kinds(report) == [("doubled", "A")]
    assert {r.key for r in report.violations[0].requests} == {"k1", "k2"}


def test_two_unkeyed_acknowledged_adds_at_one_version_are_doubled():
    requests = [req("add", 1, 0.0, 0.1), req("add", 1, 0.0, 0.2, client="c2")]
    assert kinds(check(requests, [final("A", 1)])) == [("doubled", "A")]


def test_mutations_that_may_change_nothing_can_share_a_version():
    # A quantity set to what it is already, a code applied again: 200 at the same version.
    requests = [
        req("set_quantity", 1, 0.0, 0.1, key="k1"),
        req("set_quantity", 1, 0.2, 0.3, key="k2"),
        req("apply_discount", 1, 0.4, 0.5, key="k3"),
    ]
    # They committed nothing: their keys were not kept, and that is no lost write.
    assert check(requests, [final("A", 1)]).ok


def test_a_failed_request_retried_with_its_key_and_applied_once_is_fine():
    requests = [
        req("add", None, 0.0, None, status=None, code="timeout", key="k1"),
        req("add", None, 1.0, 1.1, status=503, code="outcome_unknown", key="k1"),
        req("add", 1, 2.0, 2.1, key="k1"),
        req("add", 1, 3.0, 3.1, key="k1"),  # a replay answers the recorded version again
    ]
    assert check(requests, [final("A", 1, {"k1": 1})]).ok


def test_a_gap_in_the_log_is_reported():
    report = check([], [Final("A", [1, 2, 4], {}, True), Final("B", [2, 3], {}, True)])
    assert kinds(report) == [("gap", "A"), ("gap", "B")]
    assert "position 3 holds version 4" in report.violations[0].detail
    assert report.violations[0].fault == FINAL_PHASE


def test_a_repeated_version_in_the_log_is_a_gap():
    assert kinds(check([], [Final("A", [1, 2, 2], {}, True)])) == [("gap", "A")]


def test_an_undocumented_503_and_a_500_are_server_errors():
    requests = [
        req("add", None, 0.0, 0.1, status=503, code="busy"),
        req("add", None, 0.2, 0.3, status=503, code="database_unavailable", cart="B"),
        req("add", None, 0.4, 0.5, status=503, code="maintenance", cart="C"),
        req("read", None, 0.6, 0.7, status=500, code="busy", cart="D"),
        req("read", None, 0.8, 0.9, status=502, code=None, cart="E"),
        req("read", None, 1.0, 1.1, status=409, code="version_conflict", cart="F"),
    ]
    finals = [final(cart, 0) for cart in "ABCDEF"]
    report = check(requests, finals)
    assert kinds(report) == [("server_error", "C"), ("server_error", "D"), ("server_error", "E")]
    # The documented codes are the caller's to choose.
    assert kinds(check(requests[:1], finals, allowed_503=frozenset())) == [("server_error", "A")]


def test_an_unverified_final_is_reported():
    requests, finals = clean_history()
    finals[1] = dataclasses.replace(finals[1], verify_clean=False)
    assert kinds(check(requests, finals)) == [("not_verified", "B")]


def test_the_table_counts_per_fault():
    requests = [
        req("add", 1, 0.0, 0.010, key="k1", fault="calm"),
        req("read", 1, 0.02, 0.025, fault="calm"),
        req("add", None, 1.0, 1.2, status=503, code="busy", key="k2", fault="redis SIGSTOP"),
        req("add", None, 1.1, 1.4, status=503, code="busy", key="k3", fault="redis SIGSTOP"),
        req("add", None, 1.2, None, status=None, code="timeout", key="k4", fault="redis SIGSTOP"),
        req("add", 2, 1.5, 1.75, key="k2", fault="redis SIGSTOP"),
        req("read", 1, 1.8, 1.9, client="c2", fault="redis SIGSTOP"),  # stale
        req("read", None, 2.0, 2.1, status=500, fault="FLUSHALL"),  # a server error
    ]
    report = check(requests, [final("A", 2, {"k1": 1, "k2": 1}), final("B", 0, clean=False)])
    assert not report.ok
    rows = {row.fault: row for row in report.rows}
    assert list(rows) == ["calm", "redis SIGSTOP", "FLUSHALL", FINAL_PHASE, "all"]
    sigstop = rows["redis SIGSTOP"]
    assert (sigstop.requests, sigstop.acknowledged, sigstop.violations) == (5, 2, 1)
    assert dict(sigstop.errors) == {"503 busy": 2, "timeout": 1}
    assert sigstop.max_latency_ms == pytest.approx(300)
    assert (rows["calm"].requests, rows["calm"].acknowledged, rows["calm"].violations) == (2, 2, 0)
    assert rows["FLUSHALL"].violations == 1
    assert rows[FINAL_PHASE].violations == 1  # cart B not verified
    assert (rows["all"].requests, rows["all"].acknowledged, rows["all"].violations) == (8, 4, 3)

    table = report.table().splitlines()
    assert table[0] == (
        "| fault | requests | acknowledged | errors | max latency (ms) | violations |"
    )
    assert "| redis SIGSTOP | 5 | 2 | 503 busy: 2, timeout: 1 | 300 | 1 |" in table
    assert "| calm | 2 | 2 | - | 10 | 0 |" in table
    assert f"| {FINAL_PHASE} | 0 | 0 | - | - | 1 |" in table
    assert len(table) == 2 + 5


def test_the_history_survives_a_jsonl_round_trip(tmp_path):
    requests, finals = clean_history()
    dump_jsonl(tmp_path / "history.jsonl", requests)
    dump_finals(tmp_path / "finals.json", finals)
    assert load_jsonl(tmp_path / "history.jsonl") == requests
    assert load_finals(tmp_path / "finals.json") == finals
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == len(requests)
    assert json.loads(lines[0])["key"] == "k1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "history.jsonl:2: "),
        ('{"client": "c1"}', "history.jsonl:2: fields: missing ['answered', 'cart_id'"),
        ("[1, 2]", "history.jsonl:2: expected a JSON object, got list"),
    ],
)
def test_a_bad_history_line_is_named(tmp_path, line, message):
    good = json.dumps(dataclasses.asdict(clean_history()[0][0]))
    path = tmp_path / "history.jsonl"
    path.write_text(f"{good}\n{line}\n")
    with pytest.raises(ValueError) as caught:
        load_jsonl(path)
    assert message in str(caught.value)


def test_a_field_of_the_wrong_type_is_refused(tmp_path):
    data = dataclasses.asdict(clean_history()[0][0]) | {"version": "1"}
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(ValueError, match=r"history\.jsonl:1: version: '1' is not int or NoneType"):
        load_jsonl(path)
    finals = tmp_path / "finals.json"
    finals.write_text(
        json.dumps([{"cart_id": "A", "versions": [1, True], "applied": {}, "verify_clean": True}])
    )
    with pytest.raises(ValueError, match=r"finals.json\[0\]: versions"):
        load_finals(finals)


def write_run(tmp_path, requests, finals) -> tuple[str, str]:
    dump_jsonl(tmp_path / "history.jsonl", requests)
    dump_finals(tmp_path / "finals.json", finals)
    return str(tmp_path / "history.jsonl"), str(tmp_path / "finals.json")


def test_the_cli_exits_0_on_a_clean_run_1_on_a_violation_2_on_bad_input(tmp_path, capsys):
    requests, finals = clean_history()
    assert main(write_run(tmp_path, requests, finals)) == 0
    out = capsys.readouterr().out
    assert "| calm | 9 | 7 | 503 busy: 1, timeout: 1 |" in out
    assert "ok: no violations" in out

    finals[0] = dataclasses.replace(finals[0], versions=[1, 2])
    assert main(write_run(tmp_path, requests, finals)) == 1
    out = capsys.readouterr().out
    assert "lost_write on cart A: set_quantity by c1" in out
    assert "1 violations" in out

    assert main([str(tmp_path / "history.jsonl"), str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main([]) == 2


def test_the_cli_runs_as_a_module(tmp_path):
    requests, finals = clean_history()
    finals[0] = dataclasses.replace(finals[0], applied={"k1": 2, "k2": 1, "k3": 1})
    args = write_run(tmp_path, requests, finals)
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos.history", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    assert "doubled on cart A: key k1 was applied 2 times" in run.stdout


def test_a_large_history_is_checked_in_one_sweep():
    """30,000 requests on one cart: all pairs would be 10^8 comparisons (minutes)."""
    requests = []
    for i in range(15_000):
        requests.append(req("add", i + 1, i * 1.0, i + 0.5, key=f"k{i}"))
        requests.append(req("read", i + 1, i + 0.6, i + 0.7, client="c2"))
    finals = [final("A", 15_000, {f"k{i}": 1 for i in range(15_000)})]
    started = time.perf_counter()
    assert check(requests, finals).ok
    assert time.perf_counter() - started < 10


# ---------------------------------------------------------------- property


@st.composite
def sound_histories(draw) -> tuple[list[Request], list[Final]]:
    """A linearizable history: each request takes effect at its own instant (a per-cart
    counter), sent up to 2.5 instants before it and answered up to 2.5 after, so requests
    overlap, but never out of real-time order. Some mutations time out first and are retried
    with their key; some are refused with 503 busy and not applied."""
    carts = draw(st.lists(st.sampled_from("ABC"), min_size=2, max_size=40))
    counters = dict.fromkeys("ABC", 0)
    applied: dict[str, dict[str, int]] = {c: {} for c in "ABC"}
    requests = []
    for instant, cart in enumerate(carts):
        t = instant * 10.0
        client = draw(st.sampled_from(["c1", "c2", "c3", "c4"]))
        sent = t - draw(st.integers(0, 25))
        answered = t + draw(st.integers(0, 25))
        if draw(st.booleans()):
            requests.append(req("read", counters[cart], sent, answered, client=client, cart=cart))
            continue
        key = f"{cart}{instant}"
        if draw(st.booleans()):
            refused = req("add", None, sent - 30, sent - 29, status=503, code="busy", key=key)
            requests.append(dataclasses.replace(refused, cart_id=cart, client=client))
        if draw(st.booleans()):
            lost = req("add", None, sent - 28, None, status=None, code="timeout", key=key)
            requests.append(dataclasses.replace(lost, cart_id=cart, client=client))
        counters[cart] += 1
        applied[cart][key] = 1
        requests.append(
            req("add", counters[cart], sent, answered, client=client, cart=cart, key=key)
        )
    finals = [final(c, counters[c], applied[c]) for c in "ABC"]
    return requests, finals


def highest_version_before(requests: list[Request], read: Request) -> int:
    return max(
        (
            r.version
            for r in requests
            if r.cart_id == read.cart_id
            and r.acknowledged
            and r.version is not None
            and r.answered < read.sent
        ),
        default=0,
    )


@settings(max_examples=examples(100), deadline=None)
@given(history=sound_histories(), data=st.data())
def test_a_sound_history_passes_and_one_lowered_read_is_stale(history, data):
    requests, finals = history
    report = check(requests, finals)
    assert report.ok, [str(v) for v in report.violations]

    candidates = [
        i
        for i, r in enumerate(requests)
        if r.is_read and r.acknowledged and highest_version_before(requests, r) >= 1
    ]
    assume(candidates)
    index = data.draw(st.sampled_from(candidates))
    read = requests[index]
    lowered = highest_version_before(requests, read) - data.draw(st.integers(1, 3))
    requests[index] = dataclasses.replace(read, version=lowered)
    report = check(requests, finals)
    assert {v.kind for v in report.violations} == {"stale_read"}
    assert any(v.requests[0] == requests[index] for v in report.violations)
    assert {v.cart_id for v in report.violations} == {read.cart_id}
