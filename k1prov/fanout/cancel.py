"""Asking a running item to stop: the engine's side of "give up".

Threads cannot be killed, so when the engine gives up on an item (its timeout, the run's
deadline, Ctrl-C) it sets the item's CancelToken; an fn that holds remote work (an SSH
command) watches `current_cancel()` and ends that work (k1prov.ssh ends the command on
the host), then returns or raises with a reason. An fn that never looks is abandoned as
before. The token is per item and reached through a thread-local set by the worker
running the item, so fn's signature stays `fn(item)`.
"""
from __future__ import annotations

import threading


class CancelToken:
    """Set once, with the reason the engine gave up ("timed out after 3s", ...)."""

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


_local = threading.local()


def current_cancel() -> CancelToken | None:
    """The token of the item this thread runs for the engine (None outside the engine)."""
    return getattr(_local, "token", None)


def set_current(token: CancelToken | None) -> None:
    _local.token = token
