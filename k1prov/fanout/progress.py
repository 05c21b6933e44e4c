"""Presentation of a fan-out run with rich: a live progress bar on stderr, and the
final table where identical outputs are printed once with their host names folded."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from k1prov.fanout.policy import Policy
from k1prov.fanout.hostlist import fold_hosts
from k1prov.fanout.results import Report, Result, Status

_STYLE = {Status.OK: "green", Status.FAILED: "red", Status.TIMEOUT: "yellow",
          Status.SKIPPED: "dim"}
# Output lines shown per group in the table; the JSON report has the whole (bounded) tail.
_MAX_LINES = 20


class RichProgress:
    """EventSink: a progress bar with done, failed, in flight and the current concurrency."""

    def __init__(self, description: str = "", *, console: Console | None = None):
        self.description = description
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None
        self._failed = self._in_flight = self._level = 0

    def _stats(self) -> str:
        return (f"failed {self._failed}  in flight {self._in_flight}  "
                f"concurrency {self._level}")

    def _refresh(self, advance: int = 0) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=advance, stats=self._stats())

    def on_start(self, total: int, policy: Policy) -> None:
        # One sink may serve several runs in a row (the phases of a verb): start each afresh,
        # named after its kind of operation unless a description was given.
        self._failed = self._in_flight = 0
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
            console=self.console, transient=False)
        self._task = self._progress.add_task(self.description or policy.kind, total=total, stats=self._stats())
        self._progress.start()

    def on_item_start(self, key: str) -> None:
        self._in_flight += 1
        self._refresh()

    def on_item_done(self, result: Result) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        if result.status in (Status.FAILED, Status.TIMEOUT):
            self._failed += 1
        self._refresh(advance=1)

    def on_concurrency(self, level: int) -> None:
        self._level = level
        self._refresh()

    def on_finish(self, report: Report) -> None:
        if self._progress is not None:
            self._in_flight = 0
            self._refresh()
            self._progress.stop()
            self._progress = None


def _clip(text: str) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) > _MAX_LINES:
        lines = [f"... ({len(lines) - _MAX_LINES} more lines above)"] + lines[-_MAX_LINES:]
    return "\n".join(lines)


def render_report(report: Report, console: Console, title: str) -> None:
    """One row per group of identical outcomes; remote output is shown as plain text
    (never interpreted as rich markup)."""
    table = Table(title=title, show_lines=True)
    table.add_column("status")
    table.add_column("hosts", overflow="fold")
    table.add_column("n", justify="right")
    table.add_column("output / error", overflow="fold")
    for status, text, keys in report.groups():
        table.add_row(Text(status.value, style=_STYLE[status]), Text(fold_hosts(keys)),
                      str(len(keys)), Text(_clip(text)))
    console.print(table)
    counts = report.counts()
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    notes = [note for flag, note in ((report.cancelled, "cancelled"),
                                     (report.budget_exhausted, "failure budget exhausted"),
                                     (report.deadline_hit, "run deadline reached")) if flag]
    elapsed = report.finished - report.started
    line = f"{summary or 'nothing to do'} in {elapsed:.1f}s"
    if report.final_concurrency:
        line += f", concurrency {report.final_concurrency}"
    if notes:
        line += f" ({'; '.join(notes)})"
    console.print(Text(line))
