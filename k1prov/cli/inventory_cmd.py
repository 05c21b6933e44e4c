"""`k1prov inventory check`."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from k1prov.cli.common import JsonOpt, finish, handles_errors, load
from k1prov.cli.runtime import make_provisioner
from k1prov.presentation import err, out, rows_table

app = typer.Typer(no_args_is_help=True, help="Inspect inventory files.")

PLAN_COLUMNS = ["name", "bmc", "macs", "address", "roles", "driver", "password"]


@app.command("check")
@handles_errors
def check(file: Path = typer.Argument(..., help="Inventory file (YAML)."), as_json: bool = JsonOpt):
    """Validate FILE as render, images register and deploy will (each refusal located
    FILE:LINE) and print the expanded plan (ranges expanded, secrets never shown)."""
    with make_provisioner(load(file), quiet=True) as prov:
        result = prov.check_inventory()
    for warning in result.found:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)

    def show(result) -> None:
        rows = result.rows
        out.print(rows_table(rows, PLAN_COLUMNS, title=f"{result.cluster}: {len(rows)} node(s)"))
        err.print(f"{file}: ok, {len(rows)} node(s), {len(result.warnings)} warning(s)", highlight=False)

    finish(result, as_json=as_json, show=show)
