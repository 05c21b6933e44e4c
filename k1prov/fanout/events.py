"""What the engine tells its observers. All calls come from the thread that called
run_fanout, so a sink needs no locking (and may raise KeyboardInterrupt like any code
in the main thread)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from k1prov.fanout.policy import Policy
    from k1prov.fanout.results import Report, Result


class EventSink(Protocol):
    def on_start(self, total: int, policy: "Policy") -> None: ...
    def on_item_start(self, key: str) -> None: ...
    def on_item_done(self, result: "Result") -> None: ...
    def on_concurrency(self, level: int) -> None: ...
    def on_finish(self, report: "Report") -> None: ...


class NullSink:
    """An EventSink that ignores everything (the default)."""

    def on_start(self, total: int, policy: "Policy") -> None:
        pass

    def on_item_start(self, key: str) -> None:
        pass

    def on_item_done(self, result: "Result") -> None:
        pass

    def on_concurrency(self, level: int) -> None:
        pass

    def on_finish(self, report: "Report") -> None:
        pass
