"""Per-item outcomes and the report of one fan-out run: data, never exceptions."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


# Order in which outcomes are listed (problems after successes, like ClusterShell).
STATUS_ORDER = (Status.OK, Status.FAILED, Status.TIMEOUT, Status.SKIPPED)

_JSON_SCALARS = (str, int, float, bool, type(None))


def level_path(trace) -> str:
    """The levels a run went through, in order, from its trace of (t, level, items/s)
    windows: '4>8>16>12'. Repeats of a level in a row are shown once."""
    levels: list[int] = []
    for _, level, _ in trace:
        if not levels or levels[-1] != level:
            levels.append(level)
    return ">".join(map(str, levels))


@dataclass
class Result:
    key: str
    status: Status
    duration: float = 0.0
    attempts: int = 0
    error: str | None = None
    output: str = ""              # tail of the output only (bounded by Policy.output_limit)
    value: Any = None             # what fn returned (None for command results: see engine)
    exit_code: int | None = None

    def to_dict(self) -> dict:
        out = {"key": self.key, "status": self.status.value, "duration": round(self.duration, 3),
               "attempts": self.attempts, "error": self.error, "output": self.output,
               "exit_code": self.exit_code}
        if isinstance(self.value, _JSON_SCALARS):
            out["value"] = self.value
        return out


@dataclass
class Partition:
    """One lane of a partitioned run (k1prov.fanout.engine): its items, its own climber's
    last level and windows, and why it stopped early (its failure budget), if it did."""

    name: str
    items: int
    final_concurrency: int
    trace: list[tuple[float, int, float]] = field(default_factory=list)
    stop_reason: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "items": self.items,
                "final_concurrency": self.final_concurrency, "stop_reason": self.stop_reason,
                "trace": [[round(t, 3), level, round(tput, 3)] for t, level, tput in self.trace]}


@dataclass
class Report:
    results: list[Result]                       # in input order
    trace: list[tuple[float, int, float]] = field(default_factory=list)  # (t, level, items/s)
    started: float = 0.0                        # epoch seconds
    finished: float = 0.0
    cancelled: bool = False
    budget_exhausted: bool = False
    deadline_hit: bool = False
    kind: str = ""
    endpoint: str = ""
    final_concurrency: int = 0                  # with partitions: the sum of theirs
    # Partitioned runs only (several lanes): name -> its lane; `trace` then holds the
    # windows of every lane in time order.
    partitions: dict[str, Partition] = field(default_factory=dict)

    def _with(self, status: Status) -> list[Result]:
        return [r for r in self.results if r.status is status]

    @property
    def ok(self) -> list[Result]:
        return self._with(Status.OK)

    @property
    def failed(self) -> list[Result]:
        return self._with(Status.FAILED)

    @property
    def timed_out(self) -> list[Result]:
        return self._with(Status.TIMEOUT)

    @property
    def skipped(self) -> list[Result]:
        return self._with(Status.SKIPPED)

    @property
    def all_ok(self) -> bool:
        return all(r.status is Status.OK for r in self.results)

    def by_key(self, key: str) -> Result:
        for result in self.results:
            if result.key == key:
                return result
        raise KeyError(key)

    def groups(self) -> list[tuple[Status, str, list[str]]]:
        """(status, text, keys): items with the same outcome and identical text together.

        The text is the output tail, or the error when there is no output. Listed by
        status (ok, failed, timeout, skipped), then largest group first.
        """
        buckets: dict[tuple[Status, str], list[str]] = {}
        for r in self.results:
            text = r.output if r.output else (r.error or "")
            buckets.setdefault((r.status, text), []).append(r.key)
        ordered = sorted(buckets.items(),
                         key=lambda kv: (STATUS_ORDER.index(kv[0][0]), -len(kv[1]), kv[0][1]))
        return [(status, text, keys) for (status, text), keys in ordered]

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for r in self.results if r.status is s) for s in STATUS_ORDER}

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "endpoint": self.endpoint,
            "started": self.started, "finished": self.finished,
            "duration": round(self.finished - self.started, 3),
            "cancelled": self.cancelled, "budget_exhausted": self.budget_exhausted,
            "deadline_hit": self.deadline_hit, "final_concurrency": self.final_concurrency,
            "counts": self.counts(),
            "results": [r.to_dict() for r in self.results],
            "trace": [[round(t, 3), level, round(tput, 3)] for t, level, tput in self.trace],
            **({"partitions": [p.to_dict() for p in self.partitions.values()]}
               if self.partitions else {}),
        }
