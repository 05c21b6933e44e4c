"""`k1prov inventory check`."""
from __future__ import annotations

from pathlib import Path

import typer

from k1prov.cli.common import JsonOpt, handles_errors, load
from k1prov.inventory import plan_rows
from k1prov.report import err, out, print_json, rows_table

app = typer.Typer(no_args_is_help=True, help="Inspect inventory files.")

PLAN_COLUMNS = ["name", "bmc", "macs", "address", "roles", "driver", "password"]


@app.command("check")
@handles_errors
def check(file: Path = typer.Argument(..., help="Inventory file (YAML)."), as_json: bool = JsonOpt):
    """Validate FILE and print the expanded plan (ranges expanded, secrets never shown)."""
    inv = load(file)
    rows = plan_rows(inv)
    if as_json:
        print_json({"cluster": inv.cluster, "nodes": rows, "warnings": list(inv.warnings)})
        return
    out.print(rows_table(rows, PLAN_COLUMNS, title=f"{inv.cluster}: {len(rows)} node(s)"))
    err.print(f"{file}: ok, {len(rows)} node(s), {len(inv.warnings)} warning(s)", highlight=False)
