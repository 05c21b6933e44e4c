"""How one fan-out runs: its kind, endpoint, concurrency, timeouts and failure budget.

Its own module so that the engine's observers (k1prov.fanout.events) can name it
without importing the engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from k1prov import settings


@dataclass(frozen=True)
class Policy:
    kind: str                           # kind of operation, e.g. "ironic.enroll", "ssh.run"
    endpoint: str = ""                  # e.g. Ironic URL or "ssh"; profile key = (kind, endpoint)
    concurrency: int | None = None      # fixed level; None = adaptive
    max_concurrency: int = 64           # adaptive ceiling (a fixed `concurrency` may exceed it;
                                        # settings.MAX_CONCURRENCY and the fd limit never)
    start_concurrency: int | None = None  # None = from the stored profile, else DEFAULT_START
    item_timeout: float = 600.0         # per item, retries included
    deadline: float | None = None       # whole run, seconds
    failure_budget: float = settings.DEFAULT_FAILURE_BUDGET
    retries: int = 2                    # for transient failures only
    retry_wait: float = 0.5             # first wait between attempts (grows, with jitter)
    profile_path: Path | None = None    # JSON store of converged levels; None = no profile
    output_limit: int = 2048            # characters of output kept per item (the tail)
    window: float = 0.2                 # shortest measurement window of the climber, seconds
    cancel_grace: float = 5.0           # after Ctrl-C, how long in-flight items may finish
    cancel_wait: float = 0.0            # after giving up on an item (its timeout, the run's
                                        # deadline), how long it may take to report how it
                                        # ended (k1prov.fanout.cancel); 0: record it at once
