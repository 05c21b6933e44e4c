"""Atomic file writes: readers see the old file or the new one, never half of one.

The one helper every k1prov module writes state through (host keys, run records,
concurrency profiles, the digest cache, lab files): a uniquely named temporary file
in the same directory, written with its final mode from the start (a secret is never
readable by others, not even for a moment), flushed to disk, then renamed over the
target. A failure leaves the target as it was and removes the temporary file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path | str, data: str | bytes, *, mode: int = 0o644, fsync: bool = True) -> Path:
    """Replace `path` with `data` (text is written as UTF-8); returns the path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_if_changed(path: Path | str, text: str, *, mode: int = 0o644) -> bool:
    """Write `text` to `path` (atomically) unless the file already holds it; True if written.

    Lab configs and the agent plugin are rewritten on every `lab up`: an unchanged file keeps
    its mtime, so nothing that watches it restarts for nothing (its mode is still set to
    `mode`: a config that now holds a password becomes private without being rewritten).
    """
    path = Path(path)
    try:
        if path.read_text() == text:
            if path.stat().st_mode & 0o777 != mode:
                os.chmod(path, mode)
            return False
    except OSError:
        pass
    write_atomic(path, text, mode=mode, fsync=False)
    return True
