"""The cluster lock: two runs that change the same cluster cannot interleave.

An flock on STATE_ROOT/<cluster>/lock, held for the whole verb; the kernel drops it
when the process dies, so a crashed run never leaves a stale lock. The holder writes
who it is into the file, so the second run's error names it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from k1prov.errors import LockError

# How often a waiting run tries again (only when a wait was asked for).
RETRY_INTERVAL = 0.5


@contextlib.contextmanager
def cluster_lock(cluster_dir: Path, *, verb: str, wait: float) -> Iterator[None]:
    """Hold the cluster's lock; wait up to `wait` seconds for it (0: fail at once)."""
    cluster_dir.mkdir(parents=True, exist_ok=True)
    path = cluster_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockError(f"cluster {cluster_dir.name} is locked by {_holder(path)}; "
                                    f"wait for it to finish (lock file {path})") from None
                time.sleep(RETRY_INTERVAL)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "verb": verb,
                "argv": " ".join(sys.argv[1:]), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)   # closing drops the flock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another k1prov run"
    return (f"k1prov {info.get('verb', '?')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {info.get('since', '?')})")
