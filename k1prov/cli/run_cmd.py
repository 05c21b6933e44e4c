"""`k1prov run -i INVENTORY [--group ROLE] [--limit NODES] -- COMMAND...`
   `k1prov run -i INVENTORY --script FILE [-- ARG...]`

Runs one command (or, with --script, one uploaded script) on the inventory's hosts over
SSH and prints identical outputs once with their host names folded (`node[01-40]`).
"""
from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from k1prov.cli.common import GroupOpt, InventoryOpt, JsonOpt, LimitOpt, finish, handles_errors, load
from k1prov.cli.runtime import ConcurrencyOpt, make_provisioner
from k1prov.errors import ConfigError
from k1prov.presentation import err, show_fanout_report
from k1prov.provisioner import RunOptions, RunResult
from k1prov.settings import DEFAULT_TIMEOUTS

# `k1prov run -i F uname -a`: options after the command belong to the command.
CONTEXT_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}

_TITLE_MAX = 60


@handles_errors
def run(inventory: Path = InventoryOpt,
        group: Optional[str] = GroupOpt,
        limit: Optional[list[str]] = LimitOpt,
        concurrency: Optional[int] = ConcurrencyOpt,
        max_concurrency: Optional[int] = typer.Option(
            None, "--max-concurrency", min=1, help="Ceiling of the adaptive concurrency (default 64)."),
        # An ad-hoc command that exits non-zero on many hosts is an answer, not a reason to
        # stop asking the others: unlike provisioning verbs, run everywhere by default.
        failure_budget: float = typer.Option(
            1.0, "--failure-budget", min=0.0, max=1.0,
            help="Stop starting new hosts once this share has failed (default 1: never)."),
        timeout: float = typer.Option(
            DEFAULT_TIMEOUTS.ssh_command, "--timeout", min=0.1, help="Seconds the command may run."),
        connect_timeout: float = typer.Option(
            DEFAULT_TIMEOUTS.ssh_connect, "--connect-timeout", min=0.1,
            help="Seconds for the TCP and SSH handshake with one host (each attempt)."),
        script: Optional[Path] = typer.Option(
            None, "--script", dir_okay=False, help="Upload this script and run it (instead of a command)."),
        known_hosts: Optional[Path] = typer.Option(
            None, "--known-hosts", dir_okay=False,
            help="Pinned host keys (default: the cluster's, written by deploy)."),
        as_json: bool = JsonOpt,
        command: Optional[list[str]] = typer.Argument(
            None, help="The command, after `--` (with --script: the script's arguments).")):
    """Run a command (or upload and run a script) on the inventory's hosts over SSH."""
    text, label, args = _what_to_run(command, script)
    inv = load(inventory)
    options = RunOptions(concurrency=concurrency, max_concurrency=max_concurrency,
                         failure_budget=failure_budget)
    timeouts = replace(DEFAULT_TIMEOUTS, ssh_command=timeout, ssh_connect=connect_timeout)
    with make_provisioner(inv, options=options, timeouts=timeouts, quiet=as_json, progress="run") as prov:
        result = prov.run(text, limit=limit, group=group, known_hosts=known_hosts,
                          script=script is not None, args=args)
    if result.nothing_selected:
        # Said with --json too: stdout has the (empty) JSON, stderr why.
        err.print("nothing to run: no node matches --group/--limit", highlight=False)
    finish(result, as_json=as_json, show=lambda r: _show(r, label))


def _what_to_run(command: Optional[list[str]],
                 script: Optional[Path]) -> tuple[str, str, list[str]]:
    """(text to send, label for the report, the script's arguments). A command's words
    are joined with spaces, as ssh does; with --script the words after `--` are the
    script's arguments, each passed as one argument (as clush and Ansible's `script` do)."""
    words = list(command or [])
    if script is not None:
        try:
            text = script.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--script: cannot read {script}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        label = " ".join([f"script {script.name}", *(shlex.quote(w) for w in words)])
        return text, _title(label), words
    if not words:
        raise ConfigError("no command given (k1prov run -i FILE -- COMMAND...)")
    text = " ".join(words)
    return text, _title(text), []


def _title(text: str) -> str:
    return text if len(text) <= _TITLE_MAX else text[:_TITLE_MAX - 3] + "..."


def _show(result: RunResult, label: str) -> None:
    if not result.nothing_selected:
        show_fanout_report(result.report, title=label)
