"""`k1prov render -o DIR` and `k1prov configure [--roles R] [--limit N]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from k1prov.cli.common import GroupOpt, InventoryOpt, JsonOpt, LimitOpt, finish, handles_errors, load
from k1prov.cli.completion import role_names
from k1prov.cli.runtime import ConcurrencyOpt, make_provisioner
from k1prov.presentation import err

RolesOpt = typer.Option(None, "--roles", "-r",
                        help="Only these roles (comma-separated or repeated), e.g. spark-worker.",
                        autocompletion=role_names)


@handles_errors
def render(inventory: Path = InventoryOpt,
           output: Path = typer.Option(..., "--output", "-o", file_okay=False,
                                       help="Directory for <host>/<phase>-<role>.sh, files/ and plan.json."),
           as_json: bool = JsonOpt):
    """Write every host's role scripts and config files (nothing is sent to a host)."""
    with make_provisioner(load(inventory), quiet=True) as prov:
        rendered = prov.render(output)

    def show(result) -> None:
        hosts = result.data["hosts"]
        err.print(f"{sum(len(h) for h in hosts.values())} script(s) for {len(hosts)} host(s) in "
                  f"{output} (plan: {output / 'plan.json'})", highlight=False)

    finish(rendered, as_json=as_json, show=show)


@handles_errors
def configure(inventory: Path = InventoryOpt, roles: Optional[list[str]] = RolesOpt,
              limit: Optional[list[str]] = LimitOpt, group: Optional[str] = GroupOpt,
              concurrency: Optional[int] = ConcurrencyOpt, as_json: bool = JsonOpt):
    """Install and start ZooKeeper, Mesos and Spark on the hosts, phase by phase."""
    with make_provisioner(load(inventory), concurrency=concurrency, quiet=as_json) as prov:
        report = prov.configure(roles=roles, limit=limit, group=group)
    finish(report, as_json=as_json)
