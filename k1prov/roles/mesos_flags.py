"""The flags that each Mesos version's master and agent accept, shipped as data.

`k1prov/roles/mesos-flags/<major.minor>.json` holds the names `mesos-master --help` and
`mesos-agent --help` list (aliases included), written by `scripts/mesos_flags.py` from a
build. A flag either daemon does not know makes it refuse to start on the host; the
inventory's `master_flags`/`agent_flags` are checked against these lists when the file
is loaded, before anything is contacted (k1prov.roles.role_settings).

Which list: the one of `roles.mesos.version`'s major.minor when k1prov ships it; else
(no version given, or one k1prov has no list for) the newest list it ships. Mesos is in
the Apache Attic: 1.12 is the last version, and the flags documented for 1.11 are all
in it (../shared/mesos/README.md).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

FLAGS_DIR = Path(__file__).with_name("mesos-flags")


@dataclass(frozen=True)
class MesosFlags:
    version: str               # the build the lists were read from ("1.12.0")
    master: frozenset[str]
    agent: frozenset[str]

    def of(self, daemon: str) -> frozenset[str]:
        """The flags of "master" or "agent"."""
        return self.master if daemon == "master" else self.agent


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


@functools.cache
def shipped() -> tuple[MesosFlags, ...]:
    """Every list k1prov ships, oldest first (read once: they are part of the package)."""
    lists = []
    for path in FLAGS_DIR.glob("*.json"):
        data = json.loads(path.read_text())
        lists.append(MesosFlags(data["version"], frozenset(data["master"]), frozenset(data["agent"])))
    return tuple(sorted(lists, key=lambda f: _key(f.version)))


def flags_for(version: str) -> MesosFlags:
    """The lists for `version` ("1.12.0", "1.12"): its major.minor's, else the newest."""
    lists = shipped()
    wanted = _key(version) if version else ()
    return next((f for f in lists if wanted and _key(f.version) == wanted), lists[-1])
