"""The cluster lock: two runs that change the same cluster cannot interleave.

An flock on STATE_ROOT/<cluster>/lock, held for the whole verb; the kernel drops it
when the process dies, so a crashed run never keeps the cluster locked. The holder
writes who it is (and, once it has one, its run record) into the file, so the second
run's error names it, and empties the file when it lets go. A run that finds the lock
free but the file not empty takes over from a holder that ended without letting go
(killed, the machine lost power): `Held.stale` names it, for the run to say so and to
mark that run's record as not finished (k1prov.run_records.locked_run).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from k1prov.errors import LockError, StateError

# How often a waiting run tries again (only when a wait was asked for).
RETRY_INTERVAL = 0.5


@dataclass
class Held:
    """The lock, held. `stale`: what the file said of a holder that ended without letting
    go (its "run" is its run record's id, when it had one); None after a clean release."""
    fd: int
    path: Path
    info: dict
    stale: dict | None

    def note_run(self, run_id: str) -> None:
        """Name the holder's run record in the file (a run that takes over marks it)."""
        self.info["run"] = run_id
        _write(self.fd, self.info, self.path)


@contextlib.contextmanager
def cluster_lock(cluster_dir: Path, *, verb: str, wait: float) -> Iterator[Held]:
    """Hold the cluster's lock; wait up to `wait` seconds for it (0: fail at once)."""
    path = cluster_dir / "lock"
    try:
        cluster_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError.translate(exc, path) or exc from None
    held = None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockError(f"cluster {cluster_dir.name} is locked by {describe(_read(path))}; "
                                    f"wait for it to finish (lock file {path})") from None
                time.sleep(RETRY_INTERVAL)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "verb": verb,
                "argv": " ".join(sys.argv[1:]), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        stale = _read(path)
        _write(fd, info, path)
        held = Held(fd, path, info, stale)
        yield held
    finally:
        if held is not None:
            os.ftruncate(fd, 0)    # let go cleanly: nobody to take over from
        os.close(fd)   # closing drops the flock


def _write(fd: int, info: dict, path: Path) -> None:
    # Written, then cut to its length: on a full disk the write fails and the file keeps
    # what it said (a killed holder's name, for the run after this one).
    data = json.dumps(info).encode()
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError as exc:
        raise StateError.translate(exc, path) or exc from None


def _read(path: Path) -> dict | None:
    """The holder the file names; None when it is empty (nobody holds it, or nobody did)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    if not text.strip():
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def describe(info: dict | None) -> str:
    """A lock holder in words: "k1prov configure (pid 123 on lab, since 2026-12-07 09:00:00)"."""
    if not info:
        return "another k1prov run"
    return (f"k1prov {info.get('verb', '?')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {info.get('since', '?')})")
