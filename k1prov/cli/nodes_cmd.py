"""`k1prov nodes enroll | list | clean | inspect | delete`."""
from __future__ import annotations

from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from k1prov.cli.common import GroupOpt, InventoryOpt, JsonOpt, LimitOpt, finish, handles_errors, load
from k1prov.cli.runtime import ConcurrencyOpt, make_provisioner
from k1prov.settings import DEFAULT_TIMEOUTS

app = typer.Typer(no_args_is_help=True, help="Ironic nodes of the inventory.")


@app.command("enroll")
@handles_errors
def enroll(inventory: Path = InventoryOpt, limit: Optional[list[str]] = LimitOpt,
           group: Optional[str] = GroupOpt, concurrency: Optional[int] = ConcurrencyOpt,
           as_json: bool = JsonOpt):
    """Find-or-create the nodes in Ironic and bring them to `available`."""
    with make_provisioner(load(inventory), concurrency=concurrency, quiet=as_json) as prov:
        report = prov.enroll(limit=limit, group=group)
    finish(report, as_json=as_json)


@app.command("list")
@handles_errors
def list_(inventory: Path = InventoryOpt, limit: Optional[list[str]] = LimitOpt,
          group: Optional[str] = GroupOpt, as_json: bool = JsonOpt):
    """Provision state, power state and last error of each inventory node."""
    with make_provisioner(load(inventory), quiet=True) as prov:
        report = prov.list_nodes(limit=limit, group=group)
    finish(report, as_json=as_json)


@app.command("delete")
@handles_errors
def delete(inventory: Path = InventoryOpt, limit: Optional[list[str]] = LimitOpt,
           group: Optional[str] = GroupOpt, as_json: bool = JsonOpt):
    """Delete this cluster's nodes from Ironic."""
    with make_provisioner(load(inventory), quiet=as_json) as prov:
        report = prov.delete_nodes(limit=limit, group=group)
    finish(report, as_json=as_json)


class Erase(str, Enum):
    metadata = "metadata"
    full = "full"


@app.command("clean")
@handles_errors
def clean(inventory: Path = InventoryOpt, limit: Optional[list[str]] = LimitOpt,
          group: Optional[str] = GroupOpt,
          erase: Erase = typer.Option(Erase.metadata, "--erase",
                                      help="metadata: partition tables and signatures; full: every byte."),
          timeout: float = typer.Option(DEFAULT_TIMEOUTS.clean, "--timeout", min=1,
                                        help="Seconds the cleaning may take (all nodes at once)."),
          concurrency: Optional[int] = ConcurrencyOpt, as_json: bool = JsonOpt):
    """Ironic's manual cleaning: the deploy ramdisk erases the disks of nodes not deployed."""
    with make_provisioner(load(inventory), concurrency=concurrency, quiet=as_json,
                          timeouts=replace(DEFAULT_TIMEOUTS, clean=timeout)) as prov:
        report = prov.clean_nodes(erase=erase.value, limit=limit, group=group)
    finish(report, as_json=as_json)


@app.command("inspect")
@handles_errors
def inspect(inventory: Path = InventoryOpt, limit: Optional[list[str]] = LimitOpt,
            group: Optional[str] = GroupOpt,
            timeout: float = typer.Option(DEFAULT_TIMEOUTS.inspect, "--timeout", min=1,
                                          help="Seconds the inspection may take (all nodes at once)."),
            concurrency: Optional[int] = ConcurrencyOpt, as_json: bool = JsonOpt):
    """Ironic's in-band inspection: the agent reports CPUs, memory, disks and NICs."""
    with make_provisioner(load(inventory), concurrency=concurrency, quiet=as_json,
                          timeouts=replace(DEFAULT_TIMEOUTS, inspect=timeout)) as prov:
        report = prov.inspect_nodes(limit=limit, group=group)
    finish(report, as_json=as_json)
