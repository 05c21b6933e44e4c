"""The agent's deploy logs, as Ironic's conductor keeps them.

With `[agent] deploy_logs_collect` set, Ironic asks the deploy agent for its logs at the
end of every deploy (and on failure) and, with the `local` storage backend, writes them to
`[agent] deploy_logs_local_path` as `<node uuid>_<node name>_<time>.tar.gz`. When k1prov runs
where the conductor does (the lab, a single-host Bifrost), the inventory names that
directory (`cloud.deploy_logs`): `cluster status` shows each node's newest log and every
cluster run record keeps a copy of the logs of the deploys it made.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

SUFFIX = ".tar.gz"


def newest_logs(directory: str | os.PathLike | None, uuids: list[str]) -> dict[str, Path]:
    """uuid -> its newest deploy log in `directory` (nodes without one are left out)."""
    if not directory:
        return {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return {}
    wanted = set(uuids)
    best: dict[str, tuple[float, Path]] = {}
    for entry in entries:
        if not entry.name.endswith(SUFFIX):
            continue
        uuid = entry.name.split("_", 1)[0]
        if uuid not in wanted:
            continue
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        if uuid not in best or mtime > best[uuid][0]:
            best[uuid] = (mtime, Path(entry.path))
    return {uuid: path for uuid, (_, path) in best.items()}


def keep(log: Path, host_dir: Path) -> Path:
    """Copy a deploy log into a run record's host directory; returns the copy."""
    target = host_dir / f"agent-deploy-{log.name}"
    if not target.exists():
        shutil.copy2(log, target)
    return target
