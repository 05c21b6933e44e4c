"""`k1prov deploy | undeploy | reimage`: commands registered on the top-level app."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from k1prov.cli.common import GroupOpt, InventoryOpt, JsonOpt, LimitOpt, finish, handles_errors, load
from k1prov.cli.completion import node_names
from k1prov.cli.runtime import ConcurrencyOpt, make_provisioner


@handles_errors
def deploy(inventory: Path = InventoryOpt, limit: Optional[list[str]] = LimitOpt,
           group: Optional[str] = GroupOpt, concurrency: Optional[int] = ConcurrencyOpt,
           as_json: bool = JsonOpt):
    """Deploy the user image on nodes not yet active, then wait until SSH answers."""
    with make_provisioner(load(inventory), concurrency=concurrency, quiet=as_json) as prov:
        report = prov.deploy(limit=limit, group=group)
    finish(report, as_json=as_json)


@handles_errors
def undeploy(inventory: Path = InventoryOpt, limit: Optional[list[str]] = LimitOpt,
             group: Optional[str] = GroupOpt, concurrency: Optional[int] = ConcurrencyOpt,
             as_json: bool = JsonOpt):
    """Tear the instances down: nodes go back to available."""
    with make_provisioner(load(inventory), concurrency=concurrency, quiet=as_json) as prov:
        report = prov.undeploy(limit=limit, group=group)
    finish(report, as_json=as_json)


@handles_errors
def reimage(nodes: list[str] = typer.Argument(..., help="Nodes to rebuild: names or patterns, "
                                                       "like --limit.", autocompletion=node_names),
            inventory: Path = InventoryOpt,
            image: Optional[str] = typer.Option(None, "--image", help="Glance image name (default: "
                                                "the inventory's user image)."),
            new_host_keys: bool = typer.Option(False, "--new-host-keys",
                                               help="Give the nodes new SSH host keys."),
            rejoin: bool = typer.Option(True, "--rejoin/--no-rejoin",
                                        help="Configure the rebuilt nodes back into the cluster."),
            as_json: bool = JsonOpt):
    """Rebuild NODE... with a fresh config drive (host keys kept unless --new-host-keys),
    then configure them back into the cluster."""
    with make_provisioner(load(inventory), quiet=as_json) as prov:
        verb = prov.rejoin if rejoin else prov.reimage
        report = verb(nodes, image=image, new_host_keys=new_host_keys)
    finish(report, as_json=as_json)
