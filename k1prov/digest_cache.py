"""Digests of local image files, remembered between runs.

Hashing a 1 GB image takes seconds, and a re-run of `cluster up` would spend most of its
time on it: the digests are remembered per file under ~/.cache/k1prov/digests (or
$XDG_CACHE_HOME), keyed by the file's path, size, mtime and inode, so a file changed in
any way is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from k1prov.atomic_file import write_atomic

log = logging.getLogger("k1prov.digest_cache")

CHUNK_SIZE = 1024 * 1024


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def digest_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "k1prov" / "digests"


def hash_file(path: Path, algos: Iterable[str]) -> dict[str, str]:
    """Digests (algo -> hex) of a local file, from the cache when the file is unchanged."""
    wanted = set(algos)
    st = path.stat()
    key = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
    entry = digest_cache_dir() / (hashlib.sha1(key["path"].encode()).hexdigest() + ".json")
    try:
        cached = json.loads(entry.read_text())
        if cached.get("key") == key and wanted <= set(cached.get("digests", {})):
            return {algo: cached["digests"][algo] for algo in wanted}
    except (OSError, ValueError):
        pass
    hashes = {algo: hashlib.new(algo) for algo in wanted}
    for chunk in file_chunks(path):
        for h in hashes.values():
            h.update(chunk)
    digests = {algo: h.hexdigest() for algo, h in hashes.items()}
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(entry, json.dumps({"key": key, "digests": digests}), fsync=False)
    except OSError as exc:
        log.info("digest cache not written (%s): %s", entry, exc)
    return digests
