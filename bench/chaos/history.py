"""The chaos run's history checker: lost writes, gaps, doubled adds, stale reads, 5xx."""

from __future__ import annotations

import bisect
import dataclasses
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READ = "read"
# Mutations that always make a new version when they succeed. Others may succeed changing
# nothing (a quantity set to what it is, a discount applied again): two of those can be
# answered with one version, and they commit nothing, so their Idempotency-Key is not kept.
ALWAYS_CHANGES = frozenset({"add", "remove", "save_for_later", "move_to_cart", "checkout"})
ALLOWED_503 = frozenset({"busy", "database_unavailable", "outcome_unknown"})
# Violations not caused by one request (a gap in the log, verify_carts) are counted here.
FINAL_PHASE = "(final state)"


@dataclass(frozen=True)
class Request:
    """One HTTP request the chaos driver made, and what came back (None: no answer)."""

    client: str
    cart_id: str
    op: str
    sent: float
    answered: float | None
    status: int | None
    version: int | None
    key: str | None
    error_code: str | None
    fault: str

    @property
    def acknowledged(self) -> bool:
        return self.answered is not None and self.status is not None and 200 <= self.status < 300

    @property
    def is_read(self) -> bool:
        return self.op == READ

    @property
    def latency_ms(self) -> float | None:
        return None if self.answered is None else (self.answered - self.sent) * 1000.0

    def describe(self) -> str:
        key = f", key {self.key}" if self.key else ""
        return f"{self.op} by {self.client} sent at {self.sent:.6f}{key}"


@dataclass(frozen=True)
class Final:
    """A cart's truth after the run: its event log, its applied keys, verify_carts' verdict."""

    cart_id: str
    versions: list[int]
    # Idempotency-Key -> how many events/commands it applied (the driver reads the database).
    applied: dict[str, int]
    verify_clean: bool

    @property
    def last_version(self) -> int:
        return self.versions[-1] if self.versions else 0


@dataclass(frozen=True)
class Violation:
    """One broken promise, with the requests that show it (the offending one first)."""

    kind: str
    cart_id: str
    detail: str
    requests: tuple[Request, ...] = ()

    @property
    def fault(self) -> str:
        return self.requests[0].fault if self.requests else FINAL_PHASE

    def __str__(self) -> str:
        return f"{self.kind} on cart {self.cart_id}: {self.detail}"


@dataclass
class PhaseRow:
    """One line of the per-fault table."""

    fault: str
    requests: int = 0
    acknowledged: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    max_latency_ms: float | None = None
    violations: int = 0

    def add(self, request: Request) -> None:
        self.requests += 1
        if request.acknowledged:
            self.acknowledged += 1
        else:
            self.errors[error_label(request)] += 1
        latency = request.latency_ms
        if latency is not None and (self.max_latency_ms is None or latency > self.max_latency_ms):
            self.max_latency_ms = latency

    def cells(self) -> list[str]:
        errors = ", ".join(f"{label}: {n}" for label, n in sorted_counts(self.errors)) or "-"
        latency = "-" if self.max_latency_ms is None else f"{self.max_latency_ms:.0f}"
        counts = [self.requests, self.acknowledged]
        return [self.fault, *map(str, counts), errors, latency, str(self.violations)]


@dataclass(frozen=True)
class Report:
    """Every violation found, and the per-fault table."""

    violations: tuple[Violation, ...]
    rows: tuple[PhaseRow, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def kinds(self) -> Counter[str]:
        return Counter(v.kind for v in self.violations)

    def table(self) -> str:
        """The per-fault table in Markdown."""
        header = ["fault", "requests", "acknowledged", "errors", "max latency (ms)", "violations"]
        lines = [_md_row(header), _md_row(["---"] + ["---:"] * 2 + ["---"] + ["---:"] * 2)]
        lines += [_md_row(row.cells()) for row in self.rows]
        return "\n".join(lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def sorted_counts(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def error_label(request: Request) -> str:
    """`503 busy`, `500`, or for no answer the driver's code (`timeout`) or `no answer`."""
    if request.status is None:
        return request.error_code or "no answer"
    if request.error_code:
        return f"{request.status} {request.error_code}"
    return str(request.status)


# ---------------------------------------------------------------- the checks


def check(
    requests: Iterable[Request],
    finals: Iterable[Final],
    allowed_503: frozenset[str] = ALLOWED_503,
) -> Report:
    """Every violation in the history against the final truth, and the per-fault table."""
    history = sorted(requests, key=lambda r: (r.sent, r.client))
    by_cart = {f.cart_id: f for f in finals}
    violations = [
        *lost_writes(history, by_cart),
        *gaps(by_cart.values()),
        *doubled_keys(history, by_cart.values()),
        *doubled_versions(history),
        *stale_reads(history),
        *server_errors(history, allowed_503),
        *not_verified(by_cart.values()),
    ]
    return Report(tuple(violations), phase_rows(history, violations))


def acknowledged_mutations(history: Iterable[Request]) -> Iterator[Request]:
    return (r for r in history if r.acknowledged and not r.is_read)


def lost_writes(history: Iterable[Request], finals: dict[str, Final]) -> Iterator[Violation]:
    """An acknowledged mutation above the final log's end, or whose key was never applied."""
    for request in acknowledged_mutations(history):
        final = finals.get(request.cart_id)
        problem = _lost(request, final)
        if problem:
            yield Violation("lost_write", request.cart_id, problem, (request,))


def _lost(request: Request, final: Final | None) -> str | None:
    what = f"{request.describe()}, acknowledged at version {request.version}"
    if final is None:
        return f"{what}: the cart has no final state"
    if request.version is not None and request.version > final.last_version:
        return f"{what}: the log ends at version {final.last_version}"
    # A mutation that changed nothing commits nothing, its key included (ALWAYS_CHANGES).
    keyed = request.key is not None and request.op in ALWAYS_CHANGES
    if keyed and final.applied.get(request.key, 0) < 1:
        return f"{what}: its key is not among the applied keys"
    return None


def gaps(finals: Iterable[Final]) -> Iterator[Violation]:
    """A log whose versions are not exactly 1..n."""
    for final in finals:
        if final.versions != list(range(1, len(final.versions) + 1)):
            at = next(i for i, v in enumerate(final.versions, 1) if v != i)
            detail = (
                f"the log's versions are not 1..{len(final.versions)}: position {at} "
                f"holds version {final.versions[at - 1]}"
            )
            yield Violation("gap", final.cart_id, detail)


def doubled_keys(history: Sequence[Request], finals: Iterable[Final]) -> Iterator[Violation]:
    """An Idempotency-Key applied more than once."""
    by_key: dict[tuple[str, str], list[Request]] = defaultdict(list)
    for request in history:
        if request.key is not None:
            by_key[request.cart_id, request.key].append(request)
    for final in finals:
        for key, times in sorted(final.applied.items()):
            if times > 1:
                detail = f"key {key} was applied {times} times"
                sent = tuple(by_key.get((final.cart_id, key), ()))
                yield Violation("doubled", final.cart_id, detail, sent)


def doubled_versions(history: Iterable[Request]) -> Iterator[Violation]:
    """Two acknowledged mutations with different keys answered with one version (only
    mutations that always make a new version count, see ALWAYS_CHANGES)."""
    by_version: dict[tuple[str, int], list[Request]] = defaultdict(list)
    for request in acknowledged_mutations(history):
        if request.version is not None and request.op in ALWAYS_CHANGES:
            by_version[request.cart_id, request.version].append(request)
    for (cart_id, version), acks in by_version.items():
        # A replay of one key answers its version again; requests without a key are distinct.
        writes = {r.key if r.key is not None else id(r) for r in acks}
        if len(writes) > 1:
            detail = f"{len(writes)} different mutations were acknowledged at version {version}"
            yield Violation("doubled", cart_id, detail, tuple(acks))


# (time, version, request): an acknowledgement by its answer time, a read by its send time.
Seen = tuple[float, int, Request]


def stale_reads(history: Iterable[Request]) -> Iterator[Violation]:
    """A read sent after an acknowledgement of version v (any client) answering below v."""
    answers: dict[str, list[Seen]] = defaultdict(list)
    reads: dict[str, list[Seen]] = defaultdict(list)
    for r in history:
        if r.acknowledged and r.answered is not None and r.version is not None:
            answers[r.cart_id].append((r.answered, r.version, r))
            if r.is_read:
                reads[r.cart_id].append((r.sent, r.version, r))
    for cart_id, cart_reads in reads.items():
        yield from _stale_in_cart(cart_id, answers[cart_id], cart_reads)


def _stale_in_cart(cart_id: str, answers: list[Seen], reads: list[Seen]) -> Iterator[Violation]:
    """Each read against the highest version answered strictly before it was sent: the
    answers sorted once with a running max, then one binary search a read (O(n log n))."""
    answers.sort(key=lambda seen: seen[0])
    times = [answered for answered, _, _ in answers]
    best: list[Seen] = []  # best[i]: the highest version among the first i + 1 answers
    for seen in answers:
        best.append(best[-1] if best and best[-1][1] >= seen[1] else seen)
    for sent, version, read in reads:
        before = bisect.bisect_left(times, sent)
        if before and version < best[before - 1][1]:
            answered, newer_version, newer = best[before - 1]
            detail = (
                f"{read.describe()} returned version {version}, but version {newer_version}"
                f" was acknowledged at {answered:.6f} to {newer.describe()}"
            )
            yield Violation("stale_read", cart_id, detail, (read, newer))


def server_errors(history: Iterable[Request], allowed_503: frozenset[str]) -> Iterator[Violation]:
    """A 5xx other than a 503 with one of the documented codes."""
    for request in history:
        status = request.status
        if status is None or status < 500:
            continue
        if status == 503 and request.error_code in allowed_503:
            continue
        detail = f"{request.describe()} answered {error_label(request)}"
        yield Violation("server_error", request.cart_id, detail, (request,))


def not_verified(finals: Iterable[Final]) -> Iterator[Violation]:
    for final in finals:
        if not final.verify_clean:
            yield Violation("not_verified", final.cart_id, "verify_carts reported a difference")


def phase_rows(history: Iterable[Request], violations: Iterable[Violation]) -> tuple[PhaseRow, ...]:
    """One row per fault phase in the order they first ran, then the final state, then all."""
    rows: dict[str, PhaseRow] = {}
    total = PhaseRow("all")
    for request in history:
        rows.setdefault(request.fault, PhaseRow(request.fault)).add(request)
        total.add(request)
    for violation in violations:
        rows.setdefault(violation.fault, PhaseRow(violation.fault)).violations += 1
        total.violations += 1
    return (*rows.values(), total)


# ---------------------------------------------------------------- files


REQUEST_TYPES: dict[str, tuple[type, ...]] = {
    "client": (str,),
    "cart_id": (str,),
    "op": (str,),
    "sent": (float, int),
    "answered": (float, int, type(None)),
    "status": (int, type(None)),
    "version": (int, type(None)),
    "key": (str, type(None)),
    "error_code": (str, type(None)),
    "fault": (str,),
}
FINAL_TYPES: dict[str, tuple[type, ...]] = {
    "cart_id": (str,),
    "versions": (list,),
    "applied": (dict,),
    "verify_clean": (bool,),
}


def _fields(data: Any, types: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """`data` checked against the field types (bool is no number here), or ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if set(data) != set(types):
        missing, unknown = sorted(set(types) - set(data)), sorted(set(data) - set(types))
        raise ValueError(f"fields: missing {missing or 'none'}, unknown {unknown or 'none'}")
    for name, allowed in types.items():
        if type(data[name]) not in allowed:
            raise ValueError(
                f"{name}: {data[name]!r} is not {' or '.join(t.__name__ for t in allowed)}"
            )
    return data


def request_from(data: Any) -> Request:
    fields = _fields(data, REQUEST_TYPES)
    answered = fields["answered"]
    return Request(
        **{
            **fields,
            "sent": float(fields["sent"]),
            "answered": None if answered is None else float(answered),
        }
    )


def final_from(data: Any) -> Final:
    fields = _fields(data, FINAL_TYPES)
    if not all(type(v) is int for v in fields["versions"]):
        raise ValueError(f"versions: {fields['versions']!r} is not a list of integers")
    if not all(type(n) is int for n in fields["applied"].values()):
        raise ValueError(f"applied: {fields['applied']!r} does not map keys to integers")
    return Final(**fields)


def dump_jsonl(path: str | Path, requests: Iterable[Request]) -> None:
    """The history, one JSON object a line."""
    with open(path, "w", encoding="utf-8") as out:
        for request in requests:
            out.write(json.dumps(dataclasses.asdict(request), sort_keys=True) + "\n")


def load_jsonl(path: str | Path) -> list[Request]:
    """A history written by dump_jsonl; a bad line raises ValueError naming it."""
    requests = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                requests.append(request_from(json.loads(line)))
            except ValueError as exc:  # json.JSONDecodeError is one
                raise ValueError(f"{path}:{number}: {exc}") from exc
    return requests


def dump_finals(path: str | Path, finals: Iterable[Final]) -> None:
    """The finals as one JSON list."""
    data = [dataclasses.asdict(f) for f in finals]
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def load_finals(path: str | Path) -> list[Final]:
    """Finals written by dump_finals; bad data raises ValueError naming the entry."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of finals")
    finals = []
    for index, entry in enumerate(data):
        try:
            finals.append(final_from(entry))
        except ValueError as exc:
            raise ValueError(f"{path}[{index}]: {exc}") from exc
    return finals


def main(argv: Sequence[str] | None = None) -> int:
    """Re-check a recorded run: print the table and every violation; 1 on any, 2 on bad input."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.chaos.history HISTORY.jsonl FINALS.json", file=sys.stderr)
        return 2
    try:
        report = check(load_jsonl(args[0]), load_finals(args[1]))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    for violation in report.violations:
        print(violation)
    print("ok: no violations" if report.ok else f"{len(report.violations)} violations")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
