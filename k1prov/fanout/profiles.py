"""Remembered concurrency levels: one JSON file, one converged level per (kind, endpoint).

The MOHA paper's observation: a starting point taken from earlier runs removes most of
the climbing. Writers take an flock on a side file and replace the JSON atomically, so
two runs that finish together neither corrupt the file nor lose each other's keys.
Readers need no lock (os.replace is atomic). A corrupt or unreadable file is treated
as empty with a warning: a lost hint costs a few windows of climbing, not a failed run.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from k1prov.atomic_file import write_atomic

log = logging.getLogger("k1prov.fanout")

_VERSION = 1


def endpoint_key(endpoint: str) -> str:
    """The endpoint as stored: credentials in a URL never reach the file."""
    if "@" in endpoint and "://" in endpoint:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return endpoint


class ProfileStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": _VERSION, "levels": {}}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable concurrency profile %s: %s", self.path, exc)
            return {"version": _VERSION, "levels": {}}
        if not isinstance(data, dict) or not isinstance(data.get("levels"), dict):
            log.warning("ignoring concurrency profile %s: unexpected layout", self.path)
            return {"version": _VERSION, "levels": {}}
        return data

    def get(self, kind: str, endpoint: str) -> int | None:
        entry = self._read()["levels"].get(kind, {}).get(endpoint_key(endpoint))
        if isinstance(entry, dict) and isinstance(entry.get("level"), int) and entry["level"] > 0:
            return entry["level"]
        return None

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def put(self, kind: str, endpoint: str, level: int) -> None:
        with self._locked():
            data = self._read()
            data["version"] = _VERSION
            data["levels"].setdefault(kind, {})[endpoint_key(endpoint)] = {
                "level": int(level), "updated": round(time.time(), 3)}
            write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
