"""`k1prov runs list | show`: the records every run leaves (k1prov.run_records), for the
context's cluster and state directory.

    listed = list_runs(VerbContext(load_inventory("inventories/lab.yaml"))).runs
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k1prov.context import VerbContext
from k1prov import run_records
from k1prov.run_records import RunSummary
from k1prov.verb_report import EXIT_OK, DataResult


@dataclass
class RunList:
    """`runs list`: the cluster's runs, newest first."""

    cluster: str
    runs: list[RunSummary]

    def exit_code(self) -> int:
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "runs": [r.to_dict() for r in self.runs]}


def list_runs(ctx: VerbContext) -> RunList:
    """The cluster's runs, newest first."""
    return RunList(ctx.inventory.cluster, run_records.list_runs(ctx.state_root, ctx.inventory.cluster))


def show_run(ctx: VerbContext, run_id: str = "latest") -> DataResult:
    """One run's record (meta, report, path); `latest` for the newest."""
    return DataResult(run_records.load_run(ctx.state_root, ctx.inventory.cluster, run_id))
