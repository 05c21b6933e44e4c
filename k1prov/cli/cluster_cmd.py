"""`k1prov cluster up | status | down | rebuild`: the operator's workflow."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from k1prov.cli.common import InventoryOpt, JsonOpt, finish, handles_errors, load
from k1prov.cli.runtime import ConcurrencyOpt, make_provisioner
from k1prov.verb_report import ClusterReport
from k1prov.verb_report import EXIT_INPUT
from k1prov.presentation import err, out, rows_table, with_placement

app = typer.Typer(no_args_is_help=True, help="The whole cluster: up, status, down, rebuild.")

NODE_COLUMNS = ["node", "provision_state", "power_state", "address", "roles", "health", "error"]
PLAN_COLUMNS = ["node", "provision_state", "address", "roles", "plan"]


def show(report: ClusterReport) -> None:
    """Summary table, phases, endpoints (k1prov.cli.common.finish exits after it)."""
    columns = PLAN_COLUMNS if report.dry_run else NODE_COLUMNS
    title = f"{report.verb}{' --dry-run (nothing changed)' if report.dry_run else ''}"
    out.print(rows_table(*with_placement(report.rows, columns), title=title))
    if report.phases:
        out.print(rows_table([{"phase": p.name, "seconds": f"{p.seconds:.1f}",
                               "result": _phase_result(p)} for p in report.phases],
                             ["phase", "seconds", "result"], title="phases"))
    for gate, text in report.health.items():
        out.print(f"health {gate}: {text}", highlight=False, soft_wrap=True)
    for name, value in report.endpoints.items():
        out.print(f"{name}: {value}", highlight=False, soft_wrap=True)
    if report.run_dir:
        err.print(f"run record: {report.run_dir}", highlight=False, soft_wrap=True)
    if report.cancelled:
        err.print("interrupted: run `k1prov cluster up` again to continue from here")


def _phase_result(phase) -> str:
    if phase.report is None:
        return phase.note
    counts: dict[str, int] = {}
    for o in phase.report.outcomes:
        counts[o.status.value] = counts.get(o.status.value, 0) + 1
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do"
    return f"{text}{'; ' + phase.note if phase.note else ''}"


@app.command("up")
@handles_errors
def up(inventory: Path = InventoryOpt, dry_run: bool = typer.Option(False, "--dry-run",
                                                                    help="Show the plan; change nothing."),
       concurrency: Optional[int] = ConcurrencyOpt, as_json: bool = JsonOpt):
    """Enroll, register images, deploy, wait for SSH, configure — from wherever the cluster is."""
    with make_provisioner(load(inventory), concurrency=concurrency, quiet=as_json) as prov:
        report = prov.cluster_up(dry_run=dry_run)
    finish(report, as_json=as_json, show=show)


@app.command("status")
@handles_errors
def status(inventory: Path = InventoryOpt, as_json: bool = JsonOpt):
    """Ironic state, address, roles and live service health of every node."""
    # Not quiet (unless --json): an unhealthy look is looked at again for up to
    # timeouts.health_verdict, and the operator is told so on stderr meanwhile.
    with make_provisioner(load(inventory), quiet=as_json) as prov:
        report = prov.cluster_status()
    finish(report, as_json=as_json, show=show)


@app.command("down")
@handles_errors
def down(inventory: Path = InventoryOpt,
         unenroll: bool = typer.Option(False, "--unenroll",
                                       help="Also delete the nodes from Ironic and k1prov's images."),
         yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
         as_json: bool = JsonOpt):
    """Stop the services and undeploy every node (the disks are wiped)."""
    inv = load(inventory)
    if not yes:
        if not sys.stdin.isatty():
            err.print("error: cluster down needs --yes when there is no terminal to confirm on")
            raise typer.Exit(EXIT_INPUT)
        what = "undeploy and delete" if unenroll else "undeploy"
        typer.confirm(f"{what} all {len(inv.nodes)} node(s) of cluster {inv.cluster}?", abort=True)
    with make_provisioner(inv, quiet=as_json) as prov:
        report = prov.cluster_down(unenroll=unenroll)
    finish(report, as_json=as_json, show=show)


@app.command("rebuild")
@handles_errors
def rebuild(inventory: Path = InventoryOpt,
            image: Optional[str] = typer.Option(None, "--image", help="Rebuild onto this Glance image."),
            as_json: bool = JsonOpt):
    """Reimage and reconfigure every node; quorum members one at a time."""
    with make_provisioner(load(inventory), quiet=as_json) as prov:
        report = prov.cluster_rebuild(image=image)
    finish(report, as_json=as_json, show=show)
