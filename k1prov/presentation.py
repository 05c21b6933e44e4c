"""Presentation of verb reports: rich tables for people, JSON for programs."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

from k1prov.fanout import Status
from k1prov.verb_report import VerbReport

STATUS_STYLE = {Status.OK: "green", Status.FAILED: "red", Status.TIMEOUT: "yellow", Status.SKIPPED: "dim"}

# Tables go to stdout; progress and messages go to stderr so that --json stays parseable.
out = Console(soft_wrap=False)
err = Console(stderr=True)
if not out.is_terminal:
    # Piped or captured output: rich would assume 80 columns and fold every cell.
    out = Console(soft_wrap=False, width=160)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def verb_table(report: VerbReport, *, title: str | None = None) -> Table:
    table = Table(title=title or report.verb, title_justify="left")
    # A site with one conductor group and no shards does not get an empty column.
    placed = any(o.conductor_group or o.shard for o in report.outcomes)
    for col in ("node", "result", "action", "provision", "power") + (("group/shard",) if placed else ()) + ("detail",):
        table.add_column(col, overflow="fold")
    # Failed rows first: an operator reads the problems before the successes.
    order = sorted(report.outcomes, key=lambda o: (o.status is Status.OK, o.node))
    for o in order:
        detail = o.error or ", ".join(o.changes)
        where = (placement(o.conductor_group, o.shard),) if placed else ()
        table.add_row(o.node, f"[{STATUS_STYLE[o.status]}]{o.status.value}[/]", o.action,
                      o.provision_state or "-", o.power_state or "-", *where, detail or "")
    return table


def with_placement(rows: list[dict[str, Any]], columns: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows with a "group/shard" cell after the power state, when any node has one."""
    if not any(r.get("conductor_group") or r.get("shard") for r in rows):
        return rows, columns
    at = columns.index("power_state") + 1 if "power_state" in columns else len(columns)
    return ([{**r, "group/shard": placement(r.get("conductor_group"), r.get("shard"))} for r in rows],
            columns[:at] + ["group/shard"] + columns[at:])


def placement(conductor_group: str | None, shard: str | None) -> str:
    """A node's conductor group and shard as one cell ("-" for the default group)."""
    return f"{conductor_group or '-'}/{shard or '-'}"


def summary_line(report: VerbReport) -> str:
    counts: dict[str, int] = {}
    for o in report.outcomes:
        counts[o.status.value] = counts.get(o.status.value, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no nodes"
    extra = " (interrupted)" if report.cancelled else ""
    return f"{report.verb}: {parts}{extra}"


def rows_table(rows: Iterable[dict[str, Any]], columns: list[str], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(col)) for col in columns])
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def progress_display(label: str):
    """A live progress display on stderr for a fan-out's events (k1prov.fanout.progress),
    imported when a command first shows one."""
    from k1prov.fanout.progress import RichProgress
    return RichProgress(label, console=err)


def show_fanout_report(report: Any, *, title: str) -> None:
    """A fan-out's report on stdout: identical outputs once, with their hosts folded."""
    from k1prov.fanout.progress import render_report
    render_report(report, out, title=title)
