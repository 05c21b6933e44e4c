"""`k1prov bench drf`: Mesos' weighted Dominant Resource Fairness, measured.

Two frameworks, each in its own role, both asking for more than the cluster has (one
short task per offer, forever); the roles' weights are the masters' (--weights, from
the inventory's roles.mesos.weights). The allocation of each role is read from the
leading master's /roles every second; a role's dominant share is the largest of its
shares of the cluster's cpus and memory. Weighted DRF gives each role a dominant share
in proportion to its weight, so share/weight converges to the same value for both, and
the ratio of the dominant shares to the ratio of the weights.

    result = run_drf(inv, state_root=default_state_root(), options=DrfOptions(duration=90))

The frameworks run on a cluster host (k1prov.bench.drf_frameworks, shipped over SSH,
standard-library Python), as an operator's framework would. Files in the run record
STATE/<cluster>/runs/<timestamp>-bench-drf/: samples.csv, results.json, drf.png.
"""
from __future__ import annotations

import csv
import json
import logging
import shlex
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from k1prov.errors import ConfigError, InventoryError, TransportError
from k1prov.inventory.model import Inventory, Node
from k1prov.context import pinned_known_hosts, ssh_target
from k1prov.roles.role_settings import mesos_settings
from k1prov.run_records import RunRecord
from k1prov.settings import DEFAULT_TIMEOUTS, Timeouts
from k1prov.ssh import put_and_run
from k1prov.verb_report import exit_code

log = logging.getLogger("k1prov.bench")

SCRIPT = Path(__file__).with_name("drf_frameworks.py")
_EOF = "K1PROV_DRF_EOF"
# Beyond the run itself: Python start-up, subscriptions, teardown of both frameworks.
RUN_SLACK_SECONDS = 60.0
# The converged share ratio is the median over the last part of the run.
CONVERGED_FRACTION = 1 / 3


@dataclass(frozen=True)
class FrameworkSpec:
    role: str
    cpus: float     # per task
    mem: float      # per task, MB


# Different dominant resources on purpose: the first framework's tasks are
# cpu-heavy, the second's memory-heavy (DRF compares each role on its own dominant one).
# Small tasks: a role's share moves in small steps, so it can settle near its fair point.
DEFAULT_FRAMEWORKS = (FrameworkSpec("drf1", 0.25, 64.0), FrameworkSpec("drf2", 0.1, 128.0))


@dataclass(frozen=True)
class DrfOptions:
    duration: float = 120.0         # seconds of sampling
    task_seconds: float = 6.0       # each task's length (sleep)
    frameworks: tuple[FrameworkSpec, ...] = DEFAULT_FRAMEWORKS


def parse_frameworks(text: str) -> tuple[FrameworkSpec, ...]:
    """'drf1:0.5:128,drf2:0.2:256' -> two FrameworkSpec (role:cpus:mem per task)."""
    specs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            role, cpus, mem = part.split(":")
            spec = FrameworkSpec(role, float(cpus), float(mem))
        except ValueError:
            raise ConfigError(f"--frameworks: {part!r} is not ROLE:CPUS:MEM") from None
        if not role or spec.cpus <= 0 or spec.mem <= 0:
            raise ConfigError(f"--frameworks: {part!r}: a role name and positive cpus and mem")
        specs.append(spec)
    if len(specs) != 2 or specs[0].role == specs[1].role:
        raise ConfigError("--frameworks: give two frameworks in two different roles")
    return tuple(specs)


@dataclass
class DrfResult:
    cluster: str
    run_dir: Path
    host: str
    leader: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    frameworks: list[dict[str, Any]] = field(default_factory=list)
    # One row per sample: t, and per role cpus, mem, dominant share.
    samples: list[dict[str, Any]] = field(default_factory=list)
    launched: dict[str, int] = field(default_factory=dict)
    converged: dict[str, float] = field(default_factory=dict)   # median dominant share, last third
    share_ratio: float | None = None       # second role's over the first's, last third
    weight_ratio: float | None = None
    errors: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def exit_code(self) -> int:
        """The one rule (k1prov.verb_report): nothing measured is NOTHING; a measurement
        with errors beside it is PARTIAL."""
        measured = 1 if self.samples and self.share_ratio is not None else 0
        return exit_code(succeeded=measured, failed=len(self.errors))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data


def driver_node(inv: Inventory) -> Node:
    """Where the frameworks run: a Spark client or master, else a Mesos master."""
    for role in ("spark-client", "spark-master", "mesos-master"):
        if inv.with_role(role):
            return inv.with_role(role)[0]
    raise InventoryError("bench drf needs Mesos: no node has the mesos-master role",
                         file=str(inv.path), field="nodes.roles")


def command(inv: Inventory, options: DrfOptions) -> str:
    """The bash script pushed to the host: the frameworks' file, then python3 on it."""
    text = SCRIPT.read_text()
    if _EOF in text:
        raise ConfigError(f"the frameworks file contains the here-document marker {_EOF}")
    masters = inv.with_role("mesos-master")
    if not masters:
        raise InventoryError("bench drf needs Mesos: no node has the mesos-master role",
                             file=str(inv.path), field="nodes.roles")
    port = mesos_settings(inv)["master_port"]
    args = ["--masters", ",".join(f"{m.address}:{port}" for m in masters),
            "--duration", f"{options.duration:g}", "--task-seconds", f"{options.task_seconds:g}"]
    for spec in options.frameworks:
        args += ["--framework", f"{spec.role}:{spec.cpus:g}:{spec.mem:g}"]
    return "\n".join(["#!/usr/bin/env bash", "set -euo pipefail",
                      'here=$(cd "$(dirname "$0")" && pwd)',
                      f"cat > \"$here/drf_frameworks.py\" <<'{_EOF}'", text.rstrip("\n"), _EOF,
                      "exec python3 \"$here/drf_frameworks.py\" " + " ".join(shlex.quote(a) for a in args)]) + "\n"


def dominant(cpus: float, mem: float, total: dict[str, float]) -> float:
    shares = [cpus / total["cpus"] if total.get("cpus") else 0.0,
              mem / total["mem"] if total.get("mem") else 0.0]
    return max(shares)


def analyse(result: DrfResult, lines: list[dict[str, Any]], roles: list[str]) -> DrfResult:
    """Fill samples, weights, launched, errors and the converged shares from the job's lines."""
    for record in lines:
        event = record.get("event")
        if event == "leader":
            result.leader = str(record.get("master", ""))
        elif event == "error":
            result.errors.append(str(record.get("error")))
        elif event == "done":
            result.launched = {str(k): int(v) for k, v in (record.get("launched") or {}).items()}
        elif event == "sample":
            total = record.get("total") or {}
            row: dict[str, Any] = {"t": float(record["t"])}
            for role in roles:
                got = (record.get("roles") or {}).get(role) or {}
                cpus, mem = float(got.get("cpus") or 0.0), float(got.get("mem") or 0.0)
                row[f"{role}_cpus"], row[f"{role}_mem"] = cpus, mem
                row[f"{role}_share"] = round(dominant(cpus, mem, total), 4)
                if got.get("weight") is not None:
                    result.weights[role] = float(got["weight"])
            result.samples.append(row)
    if result.samples and len(roles) == 2:
        tail = result.samples[int(len(result.samples) * (1 - CONVERGED_FRACTION)):]
        for role in roles:
            result.converged[role] = round(statistics.median(r[f"{role}_share"] for r in tail), 4)
        first, second = roles
        if result.converged[first] > 0:
            result.share_ratio = round(result.converged[second] / result.converged[first], 3)
        if result.weights.get(first):
            result.weight_ratio = round(result.weights.get(second, 1.0) / result.weights[first], 3)
    return result


def write_outputs(result: DrfResult, roles: list[str]) -> None:
    run_dir = result.run_dir
    result.files = {"json": str(run_dir / "results.json"), "samples_csv": str(run_dir / "samples.csv"),
                    "plot": str(run_dir / "drf.png")}
    columns = ["t"] + [f"{r}_{k}" for r in roles for k in ("cpus", "mem", "share")]
    with open(run_dir / "samples.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result.samples)
    plot(result, roles, run_dir / "drf.png")
    (run_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def plot(result: DrfResult, roles: list[str], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.0), dpi=100, sharex=True)
    try:
        ts = [r["t"] for r in result.samples]
        for role in roles:
            weight = result.weights.get(role, 1.0)
            top.plot(ts, [r[f"{role}_share"] for r in result.samples], label=f"{role} (weight {weight:g})")
            bottom.plot(ts, [r[f"{role}_share"] / weight for r in result.samples], label=f"{role} share / weight")
        top.set_ylabel("dominant share")
        top.set_ylim(0, 1)
        top.legend(fontsize=8, loc="upper left")
        ratio = (f"share ratio {result.share_ratio:g} (last third), weight ratio {result.weight_ratio:g}"
                 if result.share_ratio is not None and result.weight_ratio is not None else "no ratio")
        top.set_title(f"Weighted DRF on {result.cluster}: {ratio}", fontsize=10)
        bottom.set_ylabel("dominant share / weight")
        bottom.set_xlabel("time (s)")
        bottom.set_ylim(0, 1)
        bottom.legend(fontsize=8, loc="upper left")
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
        if not result.samples:
            top.text(0.5, 0.5, "no samples", ha="center", transform=top.transAxes)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def parse_lines(stdout: str) -> list[dict[str, Any]]:
    found = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
    return found


def run_drf(inv: Inventory, *, state_root: Path, options: DrfOptions = DrfOptions(),
            timeouts: Timeouts = DEFAULT_TIMEOUTS, notify: Callable[[str], None] | None = None) -> DrfResult:
    say = notify or (lambda msg: log.info("%s", msg))
    roles = [f.role for f in options.frameworks]
    script = command(inv, options)
    host = driver_node(inv)
    record = RunRecord(state_root, inv.cluster, "bench-drf", inventory=inv.path)
    result = DrfResult(cluster=inv.cluster, run_dir=record.path, host=host.name,
                       frameworks=[asdict(f) for f in options.frameworks])
    say(f"two frameworks ({', '.join(f'{f.role}: tasks of {f.cpus:g} cpus, {f.mem:g} MB' for f in options.frameworks)})"
        f" for {options.duration:g} s on {host.name}")
    target = ssh_target(inv, host, known_hosts=pinned_known_hosts(state_root, inv.cluster))
    try:
        res = put_and_run(target, script, connect_timeout=timeouts.ssh_connect,
                          command_timeout=options.duration + RUN_SLACK_SECONDS)
    except TransportError as exc:
        result.errors.append(str(exc))
    else:
        record.host_log(host.name, "drf.out.log").write_text(res.stdout)
        record.host_log(host.name, "drf.err.log").write_text(res.stderr)
        if res.exit_code != 0:
            tail = [ln for ln in res.stderr.splitlines() if ln.strip()][-3:]
            result.errors.append(f"frameworks exited {res.exit_code}: {' | '.join(tail) or 'no output'}")
        analyse(result, parse_lines(res.stdout), roles)
    write_outputs(result, roles)
    record.finish(result.to_dict(), exit_code=result.exit_code())
    return result
