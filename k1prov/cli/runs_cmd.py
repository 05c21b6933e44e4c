"""`k1prov runs list | show`: the records every run leaves."""
from __future__ import annotations

from pathlib import Path

import typer

from k1prov.cli.common import InventoryOpt, JsonOpt, finish, handles_errors, load
from k1prov.cli.runtime import make_provisioner
from k1prov.presentation import out, rows_table

app = typer.Typer(no_args_is_help=True, help="Records of earlier runs.")


@app.command("list")
@handles_errors
def list_(inventory: Path = InventoryOpt, as_json: bool = JsonOpt):
    """The cluster's runs, newest first."""
    with make_provisioner(load(inventory), quiet=True) as prov:
        listed = prov.runs()
    finish(listed, as_json=as_json, show=_show_list)


def _show_list(listed) -> None:
    rows = [r.to_dict() for r in listed.runs]
    for row in rows:
        # A run a later one found dead says so where its exit code would be.
        row["exit_code"] = "did not finish" if row["not_finished"] else row["exit_code"]
    out.print(rows_table(rows, ["id", "verb", "started", "duration", "exit_code", "path"],
                         title=f"runs of {listed.cluster}"))


@app.command("show")
@handles_errors
def show(run_id: str = typer.Argument("latest", help="A run id from `runs list`, or latest."),
         inventory: Path = InventoryOpt, as_json: bool = JsonOpt):
    """One run's record: what ran, on which nodes, with what result."""
    with make_provisioner(load(inventory), quiet=True) as prov:
        shown = prov.run_record(run_id)
    finish(shown, as_json=as_json, show=_show_record)


def _show_record(shown) -> None:
    data = shown.data
    meta, report = data["meta"], data["report"] or {}
    ended = meta.get("not_finished") or f"exit {meta.get('exit_code', '(unfinished)')}"
    out.print(f"{meta['id']}: {meta['verb']} {ended}  {data['path']}", highlight=False, soft_wrap=True)
    rows = report.get("nodes", [])
    if rows:
        columns = [c for c in ("node", "status", "provision_state", "action", "health", "error")
                   if any(c in r for r in rows)]
        out.print(rows_table(rows, columns, title="nodes"))
    for phase in report.get("phases", []):
        out.print(f"phase {phase.get('phase')}: {phase.get('seconds', phase.get('duration', ''))} s "
                  f"{phase.get('note', '')}", highlight=False, soft_wrap=True)
