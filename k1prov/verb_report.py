"""What a verb reports: per-node outcomes (VerbReport), the phases and node rows of a
cluster workflow (ClusterReport), and the one exit-code rule they add up to.

Outcomes are data, never exceptions: one bad node is a failed row, and the
other nodes' rows stand beside it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from k1prov.fanout import Status

# Exit codes shared by every command (the CLI maps errors and reports to these).
EXIT_OK = 0
EXIT_ERROR = 1          # a k1prov error stopped the command before per-node work
EXIT_INPUT = 2          # bad inventory, options or settings: nothing was changed
EXIT_PARTIAL = 3        # some nodes/hosts failed, the others succeeded
EXIT_NOTHING = 4        # every node failed, or nothing ran
EXIT_INTERRUPTED = 130  # Ctrl-C: what was done is reported


def exit_code(*, succeeded: int, failed: int, cancelled: bool = False) -> int:
    """The one rule every command's exit code follows, from its per-item outcomes:
    INTERRUPTED after Ctrl-C; NOTHING when no item succeeded (every one failed, or there
    was nothing to run: an empty selection is not a success); OK when none failed;
    PARTIAL otherwise."""
    if cancelled:
        return EXIT_INTERRUPTED
    if succeeded == 0:
        return EXIT_NOTHING
    return EXIT_OK if failed == 0 else EXIT_PARTIAL


class Result(Protocol):
    """What every verb returns, one protocol: the exit code its outcomes add up to and a
    JSON-safe dict (`--json`). VerbReport, ClusterReport, inventory_check.InventoryCheck,
    ad_hoc.RunResult, bench.results.BenchResult, bench.drf.DrfResult, runs.RunList and
    DataResult follow it; the CLI
    finishes every one of them the same way (k1prov.cli.common.finish)."""

    def exit_code(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class DataResult:
    """What a verb that changes no node returns (render, runs show): its data as the JSON,
    and exit 0 (a failure is an error, raised)."""

    data: dict[str, Any]

    def exit_code(self) -> int:
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return self.data


@dataclass
class NodeOutcome:
    """One node's row in a verb's report: how it went, what changed, Ironic's view of it."""

    node: str
    status: Status
    # What happened, in a word or two: "created", "updated", "unchanged", "deleted", ...
    action: str = ""
    uuid: str | None = None
    provision_state: str | None = None
    power_state: str | None = None
    # Where Ironic runs the node (issue 22): its conductor group and shard, when it has one.
    conductor_group: str | None = None
    shard: str | None = None
    error: str | None = None
    changes: list[str] = field(default_factory=list)
    duration: float = 0.0
    # What inspection found (k1prov.inspection.facts): CPUs, memory, disks, NICs; None when
    # the verb does not show it.
    hardware: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


@dataclass
class VerbReport:
    """What a verb returns: one row per node (a failure is a row, never an exception that
    hides the others), the fan-out reports of its phases, and the exit code they add up to."""

    verb: str
    outcomes: list[NodeOutcome]
    # The fan-out reports of the phases, in order: (phase name, k1prov.fanout.Report).
    phases: list[tuple[str, Any]] = field(default_factory=list)
    cancelled: bool = False
    # Health checks the verb looked at after its last change, by name (configure: its gates,
    # k1prov.roles.health.HealthResult); a later verdict may start from them.
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[NodeOutcome]:
        return [o for o in self.outcomes if o.status is not Status.OK]

    def exit_code(self) -> int:
        bad = len(self.failed)
        return exit_code(succeeded=len(self.outcomes) - bad, failed=bad, cancelled=self.cancelled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verb": self.verb,
            "ok": sum(1 for o in self.outcomes if o.status is Status.OK),
            "failed": len(self.failed),
            "cancelled": self.cancelled,
            "exit_code": self.exit_code(),
            "nodes": [o.to_dict() for o in self.outcomes],
            "phases": [{"phase": name, "trace": [list(t) for t in rep.trace],
                        "duration": round(rep_duration(rep), 3),
                        # Fanned out per conductor group or shard: each lane's own levels.
                        **({"partitions": [p.to_dict() for p in rep.partitions.values()]}
                           if getattr(rep, "partitions", None) else {})}
                       for name, rep in self.phases],
        }


def rep_duration(rep: Any) -> float:
    start, end = getattr(rep, "started", 0.0), getattr(rep, "finished", 0.0)
    return max(0.0, (end or 0.0) - (start or 0.0))


@dataclass
class PhaseResult:
    name: str
    report: VerbReport | None
    seconds: float
    note: str = ""


@dataclass
class ClusterReport:
    """What a cluster verb returns: its phases (each with a VerbReport), one row per node
    with Ironic's state, roles and health, the endpoints, and the exit code."""

    verb: str
    phases: list[PhaseResult] = field(default_factory=list)
    # Per node: name, provision/power state, address, roles, health, error.
    rows: list[dict[str, Any]] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    health: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False
    dry_run: bool = False
    run_dir: str | None = None

    def failed_nodes(self) -> list[str]:
        return [r["node"] for r in self.rows if r.get("error")]

    def exit_code(self) -> int:
        failed = len(self.failed_nodes())
        code = exit_code(succeeded=len(self.rows) - failed, failed=failed, cancelled=self.cancelled)
        # Every node fine but a service unhealthy: the cluster is only partly up. A plan
        # reports the health it read; what it is asked is what would be done.
        unhealthy = not self.dry_run and any(not v.startswith("ok") for v in self.health.values())
        return EXIT_PARTIAL if code == EXIT_OK and unhealthy else code

    def to_dict(self) -> dict[str, Any]:
        return {
            "verb": self.verb, "dry_run": self.dry_run, "cancelled": self.cancelled,
            "exit_code": self.exit_code(), "run_dir": self.run_dir,
            "phases": [{"phase": p.name, "seconds": round(p.seconds, 2), "note": p.note,
                        # RunRecord.finish writes these into trace.json: per fan-out of the
                        # phase, its concurrency samples [t, level, throughput].
                        "trace": _traces(p.report),
                        "report": p.report.to_dict() if p.report else None} for p in self.phases],
            "nodes": self.rows, "endpoints": self.endpoints, "health": self.health,
        }


def _traces(report: VerbReport | None) -> dict[str, list[list[float]]]:
    if report is None:
        return {}
    return {name: [list(sample) for sample in rep.trace] for name, rep in report.phases}
