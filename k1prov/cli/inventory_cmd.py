"""`k1prov inventory check`."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from k1prov.cli.common import JsonOpt, handles_errors, load
from k1prov.inventory import plan_rows
from k1prov.preflight import check_all
from k1prov.presentation import err, out, print_json, rows_table

app = typer.Typer(no_args_is_help=True, help="Inspect inventory files.")

PLAN_COLUMNS = ["name", "bmc", "macs", "address", "roles", "driver", "password"]


@app.command("check")
@handles_errors
def check(file: Path = typer.Argument(..., help="Inventory file (YAML)."), as_json: bool = JsonOpt):
    """Validate FILE as render, images register and deploy will (each refusal located
    FILE:LINE) and print the expanded plan (ranges expanded, secrets never shown)."""
    inv = load(file)
    later = check_all(inv)
    for warning in later:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    warnings = [*inv.warnings, *later]
    rows = plan_rows(inv)
    if as_json:
        print_json({"cluster": inv.cluster, "nodes": rows, "warnings": warnings})
        return
    out.print(rows_table(rows, PLAN_COLUMNS, title=f"{inv.cluster}: {len(rows)} node(s)"))
    err.print(f"{file}: ok, {len(rows)} node(s), {len(warnings)} warning(s)", highlight=False)
