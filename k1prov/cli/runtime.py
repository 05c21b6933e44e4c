"""Building a Provisioner for a command: options, progress display, notifications."""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import typer

from k1prov.settings import DEFAULT_TIMEOUTS, Timeouts
from k1prov.inventory.model import Inventory
from k1prov.provisioner import Provisioner, RunOptions, translate_cloud_error
from rich.markup import escape

from k1prov.presentation import err, progress_display

ConcurrencyOpt = typer.Option(None, "--concurrency", "-c", min=1,
                              help="Fix the number of parallel operations (default: adaptive).")


@contextlib.contextmanager
def make_provisioner(inv: Inventory, *, concurrency: Optional[int] = None, quiet: bool = False,
                     options: Optional[RunOptions] = None, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                     progress: str = "") -> Iterator[Provisioner]:
    """A Provisioner with a live progress display on stderr (none when quiet), labelled
    `progress`. `options` (all the fan-out options) wins over `concurrency` alone."""
    events = None if quiet else progress_display(progress)
    notify = (lambda msg: None) if quiet else (lambda msg: err.print(f"[cyan]>[/] {msg}", highlight=False))
    # Warnings are printed even when quiet (--json): stdout stays JSON, stderr says why.
    warn = (lambda msg: err.print(f"[yellow]warning:[/] {escape(msg)}", highlight=False))
    try:
        yield Provisioner(inv, options=options or RunOptions(concurrency=concurrency), timeouts=timeouts,
                          events=events, notify=notify, warn=warn)
    except Exception as exc:
        # keystoneauth/requests errors that escaped the adapters (Ironic or Glance down):
        # one CloudError line naming the service and its URL, exit 1; anything else as is.
        translated = translate_cloud_error(exc, inv.cloud)
        if translated is None:
            raise
        raise translated from exc
