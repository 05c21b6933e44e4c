"""What every command shares: loading the inventory, reporting, and turning errors into exit codes."""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable

import typer
from rich.markup import escape

from k1prov.cli.completion import node_names, role_names
from k1prov.errors import K1provError, StateError
from k1prov.inventory import load_inventory
from k1prov.verb_report import EXIT_INTERRUPTED, Result, VerbReport
from k1prov.presentation import err, out, print_json, summary_line, verb_table

log = logging.getLogger("k1prov")

# Set by the app callback from --debug; read by `handles_errors`.
DEBUG = {"on": False}

InventoryOpt = typer.Option(..., "--inventory", "-i", help="Inventory file (YAML).",
                            exists=False, dir_okay=False)
# The one --limit/--group grammar of every verb (k1prov.context.VerbContext.select); TAB completes
# node names from the -i inventory and role names (k1prov.cli.completion).
LimitOpt = typer.Option(None, "--limit", "-l",
                        help="Only these nodes: names or ClusterShell patterns like 'w[01-10]', "
                             "'w[01,03]' (comma-separated or repeated).", autocompletion=node_names)
GroupOpt = typer.Option(None, "--group", "-g", help="Only nodes with this role.",
                        autocompletion=role_names)
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def handles_errors(fn: Callable) -> Callable:
    """One line and an exit code for k1prov errors; a traceback only with --debug."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (K1provError, OSError) as exc:
            # An OSError here is a full (or read-only) disk under a write that the verb's
            # own modules did not translate: one line naming the file all the same.
            error = exc if isinstance(exc, K1provError) else StateError.translate(exc)
            if error is None or DEBUG["on"]:
                raise
            err.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    return wrapper


def load(path: Path):
    inv = load_inventory(path)
    for warning in inv.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    return inv


def show_verb_report(report: VerbReport) -> None:
    out.print(verb_table(report))
    err.print(summary_line(report), highlight=False)


def finish(result: Result, *, as_json: bool, show: Callable[[Any], None] = show_verb_report) -> None:
    """The one way a command ends: the result as JSON (--json) or shown by `show` (a
    VerbReport's table by default), then exit with the code its outcomes add up to."""
    if as_json:
        print_json(result.to_dict())
    else:
        show(result)
    raise typer.Exit(result.exit_code())
