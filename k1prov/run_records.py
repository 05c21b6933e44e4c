"""Run records: every run writes a directory with its per-host logs, JSON report and
concurrency trace, so an operator can read what happened after the terminal is gone.

Layout: STATE_ROOT/<cluster>/runs/<YYYYmmdd-HHMMSS>-<verb>[-N]/
    report.json      the verb's report (VerbReport.to_dict())
    trace.json       concurrency over time per phase: [[t, level, throughput], ...]
    meta.json        verb, cluster, inventory, argv, start/end, exit code
    hosts/<host>/    per-host logs (role scripts, command output)
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k1prov.atomic_file import write_atomic
from k1prov.errors import ConfigError, StateError
from k1prov.lock import cluster_lock, describe


def cluster_dir(state_root: Path, cluster: str) -> Path:
    return state_root / cluster


def runs_dir(state_root: Path, cluster: str) -> Path:
    return cluster_dir(state_root, cluster) / "runs"


def _atomic_json(path: Path, data: Any) -> None:
    try:
        write_atomic(path, json.dumps(data, indent=2, default=str) + "\n", fsync=False)
    except OSError as exc:
        raise StateError.translate(exc, path) or exc from None


def _remove_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


class RunRecord:
    """The directory of one run; created when the run starts."""

    def __init__(self, state_root: Path, cluster: str, verb: str, *, inventory: Path | None = None):
        base = runs_dir(state_root, cluster)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            base.mkdir(parents=True, exist_ok=True)
            for n in range(1000):
                name = f"{stamp}-{verb}" + (f"-{n}" if n else "")
                try:
                    (base / name).mkdir()
                    break
                except FileExistsError:
                    continue
        except OSError as exc:
            raise StateError.translate(exc, base) or exc from None
        self.path = base / name
        self.id = name
        self.started = time.time()
        self.meta: dict[str, Any] = {"id": name, "verb": verb, "cluster": cluster,
                                     "inventory": str(inventory) if inventory else None,
                                     "argv": sys.argv[1:], "started": self.started}
        try:
            _atomic_json(self.path / "meta.json", self.meta)
        except StateError:
            # No half-made record: `runs list` never shows a run that never started.
            _remove_empty(self.path)
            raise

    def host_dir(self, host: str) -> Path:
        d = self.path / "hosts" / host
        d.mkdir(parents=True, exist_ok=True)
        return d

    def host_log(self, host: str, name: str) -> Path:
        return self.host_dir(host) / name

    def note(self, **fields: Any) -> None:
        """Fields added to meta.json now (the run goes on)."""
        self.meta.update(fields)
        _atomic_json(self.path / "meta.json", self.meta)

    def finish(self, report: dict[str, Any], *, exit_code: int) -> None:
        """Write the report and the concurrency trace; the run is complete."""
        _atomic_json(self.path / "report.json", report)
        trace = {p["phase"]: p.get("trace", []) for p in report.get("phases", [])}
        _atomic_json(self.path / "trace.json", trace)
        self.meta.update(finished=time.time(), exit_code=exit_code)
        _atomic_json(self.path / "meta.json", self.meta)


def mark_not_finished(state_root: Path, cluster: str, run_id: str, reason: str) -> bool:
    """Record in an earlier run's meta.json that it did not finish, and why; False when
    there is no such run (or it did finish)."""
    meta_path = runs_dir(state_root, cluster) / run_id / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if meta.get("finished"):
        return False
    meta["not_finished"] = reason
    _atomic_json(meta_path, meta)
    return True


@contextlib.contextmanager
def locked_run(state_root: Path, cluster: str, verb: str, *, inventory: Path | None, wait: float,
               notify: Callable[[str], None]) -> Iterator[RunRecord]:
    """The cluster's lock (k1prov.lock) and a run record, for a verb that changes the
    cluster. A lock whose holder ended without letting go is taken over: `notify` says
    so, and that run's record says it did not finish."""
    with cluster_lock(cluster_dir(state_root, cluster), verb=verb, wait=wait) as held:
        record = RunRecord(state_root, cluster, verb.replace(" ", "-"), inventory=inventory)
        held.note_run(record.id)
        # A holder that names its run let go by emptying the file: it is still there only
        # when that run died holding the lock. (A k1prov older than this rule named no run
        # and never emptied the file: its leftover is no sign of a killed run.)
        if held.stale is not None and held.stale.get("run"):
            dead = describe(held.stale)
            reason = (f"did not finish: {dead} ended without letting go of the cluster's lock "
                      f"(killed?); run {record.id} took the lock over")
            marked = mark_not_finished(state_root, cluster, held.stale["run"], reason)
            record.note(took_over_from=held.stale)
            notify(f"the cluster's lock was left by {dead}, which ended without letting go of it "
                   f"(killed?): taken over" + (f"; its run {held.stale['run']} is marked as not finished"
                                              if marked else ""))
        yield record


@dataclass(frozen=True)
class RunSummary:
    id: str
    verb: str
    started: float
    finished: float | None
    exit_code: int | None
    path: Path
    # Why the run did not finish, when a later run found it so (locked_run).
    not_finished: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "verb": self.verb,
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
                "duration": round(self.finished - self.started, 1) if self.finished else None,
                "exit_code": self.exit_code, "not_finished": self.not_finished, "path": str(self.path)}


def list_runs(state_root: Path, cluster: str) -> list[RunSummary]:
    """Runs of a cluster, newest first. A run without a finish was interrupted or is running."""
    base = runs_dir(state_root, cluster)
    out = []
    for d in sorted(base.iterdir() if base.is_dir() else [], reverse=True):
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        out.append(RunSummary(id=d.name, verb=meta.get("verb", "?"), started=meta.get("started", 0.0),
                              finished=meta.get("finished"), exit_code=meta.get("exit_code"), path=d,
                              not_finished=meta.get("not_finished")))
    return out


def load_run(state_root: Path, cluster: str, run_id: str) -> dict[str, Any]:
    """meta + report of one run; `latest` means the newest."""
    runs = list_runs(state_root, cluster)
    if run_id == "latest" and runs:
        run_id = runs[0].id
    for r in runs:
        if r.id == run_id:
            data: dict[str, Any] = {"meta": json.loads((r.path / "meta.json").read_text())}
            report = r.path / "report.json"
            data["report"] = json.loads(report.read_text()) if report.is_file() else None
            data["path"] = str(r.path)
            return data
    raise ConfigError(f"no run {run_id!r} for cluster {cluster} (see `k1prov runs list`)")
