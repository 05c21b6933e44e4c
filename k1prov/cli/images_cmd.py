"""`k1prov images register`."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import typer

from k1prov.cli.common import InventoryOpt, JsonOpt, finish, handles_errors, load
from k1prov.cli.runtime import make_provisioner
from k1prov.presentation import err

app = typer.Typer(no_args_is_help=True, help="Images in Glance (deploy kernel/ramdisk, user image).")


@contextlib.contextmanager
def _byte_progress(quiet: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar per image upload (bytes sent), on stderr."""
    if quiet:
        yield None
        return
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=err, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"upload {name}", total=total or None)
            bar.update(tasks[name], completed=done)

        yield update


@app.command("register")
@handles_errors
def register(inventory: Path = InventoryOpt, as_json: bool = JsonOpt):
    """Upload the inventory's images to Glance (find-or-create by content) and set
    driver_info deploy_kernel/deploy_ramdisk on every node of the inventory."""
    with make_provisioner(load(inventory), quiet=as_json) as prov, _byte_progress(as_json) as progress:
        report = prov.register_images(progress=progress)
    finish(report, as_json=as_json)
