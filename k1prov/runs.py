"""`k1prov runs list | show`: the records every run leaves (k1prov.run_records), for the
context's cluster and state directory.

    summaries = list_runs(VerbContext(load_inventory("inventories/lab.yaml")))
"""
from __future__ import annotations

from typing import Any

from k1prov.context import VerbContext
from k1prov import run_records
from k1prov.run_records import RunSummary


def list_runs(ctx: VerbContext) -> list[RunSummary]:
    """The cluster's runs, newest first."""
    return run_records.list_runs(ctx.state_root, ctx.inventory.cluster)


def show_run(ctx: VerbContext, run_id: str = "latest") -> dict[str, Any]:
    """One run's record (meta, report, path); `latest` for the newest."""
    return run_records.load_run(ctx.state_root, ctx.inventory.cluster, run_id)
