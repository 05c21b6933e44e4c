"""`k1prov bench drf`: Mesos' weighted Dominant Resource Fairness, measured.

Two frameworks, each in its own role, ask forever for more than the cluster has; the
roles' weights are the masters' (--weights, from roles.mesos.weights). A role's dominant
share (the larger of its shares of cpus and memory) is read from the leading master's
/roles every second. Weighted DRF makes the ratio of the dominant shares converge to the
ratio of the weights; a control phase in two unweighted roles must come out near 1, so
that a ratio near 2 in the first is the weights' doing.

    result = run_drf(VerbContext(inv), options=DrfOptions(duration=90))

What the ratio depends on (measured on the lab: tests/integration/test_lab_mesos.py, DRF_BAND):
- Task shapes against the agents. A share moves in whole tasks that fit on one agent, so
  the weights' split is reachable only if the shapes pack at it. The defaults do on the
  lab's agents (2 cpus, 1536 MB): 128 MB per task makes memory 24 slots either role's
  task fits; drf1's tasks are cpu-heavy (0.25 cpus), drf2's light (0.05), so weights 1:2
  fall on 6 + 18 tasks, 0.375 and 0.75 exactly. `fair_point` computes the split the
  shapes can reach on the master's agents (printed as the reachable ratio).
- How the frameworks ask (k1prov.bench.drf_frameworks.Framework).
- The masters' --allocation_interval (printed). Within one cycle a role is charged for
  a whole offer until it answers, so two agents freeing resources in the same cycle
  pull the split towards equal (1.8-1.9 at the default 1 s; 2.0 at the lab test's 100ms).
- The window: only the steady state counts, from the first sample where both roles run
  tasks and the cluster is STEADY_UTILISATION of the phase's peak; the share is the mean
  over it.

Files in the run record STATE/<cluster>/runs/<timestamp>-bench-drf/: samples.csv,
results.json, drf.png.
"""
from __future__ import annotations

import csv
import json
import logging
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from k1prov.errors import ConfigError, InventoryError, TransportError
from k1prov.inventory.model import Inventory, Node
from k1prov.context import VerbContext
from k1prov.roles.role_settings import mesos_settings
from k1prov.run_records import RunRecord
from k1prov.ssh import put_and_run
from k1prov.verb_report import exit_code

log = logging.getLogger("k1prov.bench")

SCRIPT = Path(__file__).with_name("drf_frameworks.py")
_EOF = "K1PROV_DRF_EOF"
# Beyond each phase's sampling: Python start-up, waiting for an idle cluster (the script's
# --idle-timeout, 60 s), both subscriptions (its SUBSCRIBE_TIMEOUT, 60 s), the teardown.
PHASE_SLACK_SECONDS = 150.0
# The steady state starts where the cluster is this full (of the phase's peak).
STEADY_UTILISATION = 0.95
# Fewer steady samples than this: no converged share (the run was too short to tell).
MIN_STEADY_SAMPLES = 10
# The control phase's roles: the weighted roles' names with this suffix (no weight of their own).
CONTROL_SUFFIX = "-control"
_EPS = 1e-6


@dataclass(frozen=True)
class FrameworkSpec:
    role: str
    cpus: float     # per task
    mem: float      # per task, MB


# Different dominant resources on purpose (drf1 cpu-heavy, drf2 memory-heavy: DRF compares
# each role on its own dominant one), one memory size for both so that weights 1:2 are
# reachable exactly on the lab's agents, whatever the placement (see the module's docstring).
DEFAULT_FRAMEWORKS = (FrameworkSpec("drf1", 0.25, 128.0), FrameworkSpec("drf2", 0.05, 128.0))


@dataclass(frozen=True)
class DrfOptions:
    duration: float = 90.0          # seconds of sampling, each phase
    task_seconds: float = 30.0      # each task's mean length (sleep), spread over ±50%
    tasks_per_offer: int = 1
    control: bool = True            # a second phase in unweighted roles
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


def control_roles(options: DrfOptions) -> list[str]:
    return [f.role + CONTROL_SUFFIX for f in options.frameworks]


@dataclass
class DrfRun:
    name: str                       # "weighted" or "control"
    roles: list[str]
    weights: dict[str, float] = field(default_factory=dict)
    agents: list[dict[str, Any]] = field(default_factory=list)
    # One row per sample: t, and per role cpus, mem (its tasks'), dominant share.
    samples: list[dict[str, Any]] = field(default_factory=list)
    launched: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    steady_from: float | None = None       # t of the window's first sample
    steady_samples: int = 0
    converged: dict[str, float] = field(default_factory=dict)   # mean dominant share, steady window
    share_ratio: float | None = None       # second role's over the first's
    weight_ratio: float | None = None
    expected: dict[str, float] = field(default_factory=dict)    # fair_point on the agents
    expected_ratio: float | None = None


@dataclass
class DrfResult:
    cluster: str
    run_dir: Path
    host: str
    leader: str = ""
    allocation_interval: str = ""          # the leading master's --allocation_interval
    torn_down: list[str] = field(default_factory=list)   # an earlier run's frameworks, left behind
    frameworks: list[dict[str, Any]] = field(default_factory=list)
    runs: list[DrfRun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def phase(self, name: str) -> DrfRun | None:
        return next((p for p in self.runs if p.name == name), None)

    @property
    def weighted(self) -> DrfRun | None:
        return self.phase("weighted")

    @property
    def control(self) -> DrfRun | None:
        return self.phase("control")

    def exit_code(self) -> int:
        """The one rule (k1prov.verb_report): nothing measured is NOTHING; a measurement
        with errors beside it is PARTIAL."""
        weighted = self.weighted
        measured = 1 if weighted and weighted.samples and weighted.share_ratio is not None else 0
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


def frameworks_script(inv: Inventory, args: Sequence[str], *, needs: str = "bench drf",
                      remove_after: str = "") -> str:
    """The bash script pushed to a host: the frameworks' file (drf_frameworks.py), then
    python3 on it with --masters (every mesos-master of the inventory) and `args`; with
    remove_after, that path is removed when the script ends. Also the competing framework
    of `bench kmeans --contention` (k1prov.bench.contention)."""
    text = SCRIPT.read_text()
    if _EOF in text:
        raise ConfigError(f"the frameworks file contains the here-document marker {_EOF}")
    masters = inv.with_role("mesos-master")
    if not masters:
        raise InventoryError(f"{needs} needs Mesos: no node has the mesos-master role",
                             file=str(inv.path), field="nodes.roles")
    port = mesos_settings(inv)["master_port"]
    argv = ["--masters", ",".join(f"{m.address}:{port}" for m in masters), *args]
    run = "python3 \"$here/drf_frameworks.py\" " + " ".join(shlex.quote(a) for a in argv)
    lines = ["#!/usr/bin/env bash", "set -euo pipefail", 'here=$(cd "$(dirname "$0")" && pwd)']
    if remove_after:
        lines.append(f"trap {shlex.quote('rm -rf -- ' + shlex.quote(remove_after))} EXIT")
    lines += [f"cat > \"$here/drf_frameworks.py\" <<'{_EOF}'", text.rstrip("\n"), _EOF,
              run if remove_after else "exec " + run]
    return "\n".join(lines) + "\n"


def command(inv: Inventory, options: DrfOptions) -> str:
    """The bash script pushed to the host: the frameworks' file, then python3 on it."""
    args = ["--duration", f"{options.duration:g}", "--task-seconds", f"{options.task_seconds:g}",
            "--tasks-per-offer", str(options.tasks_per_offer)]
    for spec in options.frameworks:
        args += ["--framework", f"{spec.role}:{spec.cpus:g}:{spec.mem:g}"]
    if options.control:
        args += ["--control", ",".join(control_roles(options))]
    return frameworks_script(inv, args)


def dominant(cpus: float, mem: float, total: dict[str, float]) -> float:
    shares = [cpus / total["cpus"] if total.get("cpus") else 0.0,
              mem / total["mem"] if total.get("mem") else 0.0]
    return max(shares)


def fair_point(agents: Sequence[dict[str, float]], shapes: Sequence[FrameworkSpec],
               weights: dict[str, float]) -> dict[str, float]:
    """The dominant shares weighted DRF can reach with these task shapes on these agents:
    progressive filling a task at a time (the role with the lowest share/weight whose
    task fits somewhere gets one more), each task on the agent with the most room for the
    task's dominant resource. The allocator's agent order is random, so this is what the
    shapes allow, not a prediction of each placement."""
    total = {"cpus": sum(a["cpus"] for a in agents), "mem": sum(a["mem"] for a in agents)}
    if not agents or not total["cpus"] or not total["mem"]:
        return {}
    free = [[a["cpus"], a["mem"]] for a in agents]
    tasks = {s.role: 0 for s in shapes}
    share = {s.role: dominant(s.cpus, s.mem, total) for s in shapes}
    heavy = {s.role: 0 if s.cpus / total["cpus"] >= s.mem / total["mem"] else 1 for s in shapes}
    while True:
        for spec in sorted(shapes, key=lambda s: (tasks[s.role] * share[s.role] / weights.get(s.role, 1.0), s.role)):
            fits = [f for f in free if f[0] >= spec.cpus - _EPS and f[1] >= spec.mem - _EPS]
            if fits:
                room = max(fits, key=lambda f: f[heavy[spec.role]])
                room[0] -= spec.cpus
                room[1] -= spec.mem
                tasks[spec.role] += 1
                break
        else:
            return {role: round(n * share[role], 4) for role, n in tasks.items()}


def steady_window(rows: list[dict[str, Any]], roles: list[str], total: dict[str, float]) -> list[dict[str, Any]]:
    """The samples from the first one where both roles run tasks and the cluster is as
    full as it gets in this phase (STEADY_UTILISATION of the peak), to the end."""
    def used(row: dict[str, Any]) -> float:
        cpus = sum(row[f"{r}_cpus"] for r in roles)
        mem = sum(row[f"{r}_mem"] for r in roles)
        return dominant(cpus, mem, total)

    if not rows:
        return []
    peak = max(used(r) for r in rows)
    for i, row in enumerate(rows):
        if peak > 0 and used(row) >= STEADY_UTILISATION * peak and all(row[f"{r}_share"] > 0 for r in roles):
            return rows[i:]
    return []


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(b / a, 3) if a and b is not None else None


def analyse_phase(phase: DrfRun, records: list[dict[str, Any]], shapes: Sequence[FrameworkSpec]) -> list[str]:
    """Fill a phase from its lines; returns its errors."""
    errors: list[str] = []
    total: dict[str, float] = {}
    for record in records:
        event = record.get("event")
        if event == "error":
            errors.append(f"{phase.name}: {record.get('error')}")
        elif event == "agents":
            phase.agents = list(record.get("agents") or [])
        elif event == "task_failed":
            errors.append(f"{phase.name}: {record.get('role')}: a task ended {record.get('state')}: "
                          f"{record.get('message') or 'no message'}")
        elif event == "done":
            phase.launched = {str(k): int(v) for k, v in (record.get("launched") or {}).items()}
            phase.failed = {str(k): int(v) for k, v in (record.get("failed") or {}).items()}
        elif event == "sample":
            total = record.get("total") or {}
            row: dict[str, Any] = {"t": float(record["t"])}
            for role in phase.roles:
                got = (record.get("roles") or {}).get(role) or {}
                cpus, mem = float(got.get("cpus") or 0.0), float(got.get("mem") or 0.0)
                row[f"{role}_cpus"], row[f"{role}_mem"] = cpus, mem
                row[f"{role}_share"] = round(dominant(cpus, mem, total), 4)
                if got.get("weight") is not None:
                    phase.weights[role] = float(got["weight"])
            phase.samples.append(row)
    first, second = phase.roles
    if phase.weights.get(first):
        phase.weight_ratio = _ratio(phase.weights[first], phase.weights.get(second, 1.0))
    if phase.agents:
        phase.expected = fair_point(phase.agents, shapes, phase.weights)
        phase.expected_ratio = _ratio(phase.expected.get(first), phase.expected.get(second))
    window = steady_window(phase.samples, phase.roles, total)
    phase.steady_samples = len(window)
    if len(window) < MIN_STEADY_SAMPLES:
        if phase.samples:
            errors.append(f"{phase.name}: no steady state to measure ({len(window)} samples where both roles "
                          f"ran tasks on a full cluster, {MIN_STEADY_SAMPLES} needed): run longer")
        return errors
    phase.steady_from = window[0]["t"]
    for role in phase.roles:
        phase.converged[role] = round(sum(r[f"{role}_share"] for r in window) / len(window), 4)
    phase.share_ratio = _ratio(phase.converged[first], phase.converged[second])
    return errors


def analyse(result: DrfResult, lines: list[dict[str, Any]], options: DrfOptions) -> DrfResult:
    """Split the job's lines by phase and fill the result."""
    names = {"weighted": [f.role for f in options.frameworks], "control": control_roles(options)}
    by_phase: dict[str, list[dict[str, Any]]] = {}
    for record in lines:
        if record.get("event") == "leader":
            result.leader = str(record.get("master", ""))
        elif record.get("event") == "flags":
            result.allocation_interval = str(record.get("allocation_interval", ""))
        elif record.get("event") == "leftovers":
            result.torn_down = [str(name) for name in record.get("frameworks") or []]
        elif record.get("phase") in names:
            by_phase.setdefault(record["phase"], []).append(record)
        elif record.get("event") == "error":
            result.errors.append(str(record.get("error")))
    for name in ("weighted", "control"):
        if name in by_phase:
            phase = DrfRun(name=name, roles=names[name])
            shapes = [FrameworkSpec(role, f.cpus, f.mem) for role, f in zip(phase.roles, options.frameworks)]
            result.errors += analyse_phase(phase, by_phase[name], shapes)
            result.runs.append(phase)
    return result


CSV_COLUMNS = ["phase", "t", "role", "weight", "cpus", "mem", "share"]


def write_outputs(result: DrfResult) -> None:
    run_dir = result.run_dir
    result.files = {"json": str(run_dir / "results.json"), "samples_csv": str(run_dir / "samples.csv"),
                    "plot": str(run_dir / "drf.png")}
    with open(run_dir / "samples.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for phase in result.runs:
            for row in phase.samples:
                for role in phase.roles:
                    writer.writerow({"phase": phase.name, "t": row["t"], "role": role,
                                     "weight": phase.weights.get(role, ""), "cpus": row[f"{role}_cpus"],
                                     "mem": row[f"{role}_mem"], "share": row[f"{role}_share"]})
    plot(result, run_dir / "drf.png")
    (run_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def plot(result: DrfResult, path: Path) -> Path:
    """Top: each phase's dominant shares over time (control dashed); bottom: the share
    ratio over time against the weight ratio; the steady windows shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8.0, 6.5), dpi=100, sharex=True)
    try:
        styles = {"weighted": "-", "control": "--"}
        colours = ("tab:blue", "tab:orange")
        for phase in result.runs:
            ts = [r["t"] for r in phase.samples]
            style = styles.get(phase.name, ":")
            for role, colour in zip(phase.roles, colours):
                weight = phase.weights.get(role, 1.0)
                top.plot(ts, [r[f"{role}_share"] for r in phase.samples], style, color=colour,
                         label=f"{role} (weight {weight:g})", alpha=1.0 if phase.name == "weighted" else 0.6)
            first, second = phase.roles
            ratios = [(r["t"], r[f"{second}_share"] / r[f"{first}_share"]) for r in phase.samples
                      if r[f"{first}_share"] > 0]
            if ratios:
                bottom.plot([t for t, _ in ratios], [q for _, q in ratios], style, color="tab:green",
                            alpha=1.0 if phase.name == "weighted" else 0.6,
                            label=f"{phase.name}: {second} / {first}"
                                  + (f", steady mean {phase.share_ratio:g}" if phase.share_ratio is not None else ""))
            if phase.weight_ratio is not None:
                bottom.axhline(phase.weight_ratio, color="grey", linestyle=style, linewidth=0.8)
            if phase.steady_from is not None and ts:
                top.axvspan(phase.steady_from, ts[-1], color="grey", alpha=0.08 if phase.name == "weighted" else 0.04)
        weighted = result.weighted
        title = (f"Weighted DRF on {result.cluster}: share ratio {weighted.share_ratio:g} "
                 f"(weight ratio {weighted.weight_ratio:g}, reachable {weighted.expected_ratio})"
                 if weighted and weighted.share_ratio is not None and weighted.weight_ratio is not None
                 else f"Weighted DRF on {result.cluster}: no ratio")
        control = result.control
        if control and control.share_ratio is not None:
            title += f"; control {control.share_ratio:g}"
        top.set_title(title, fontsize=9)
        top.set_ylabel("dominant share (tasks' resources)")
        top.set_ylim(0, 1)
        if top.get_legend_handles_labels()[0]:
            top.legend(fontsize=7, loc="lower right", ncol=2)
        bottom.set_ylabel("dominant share ratio")
        bottom.set_xlabel("time since both frameworks started asking (s); shaded: steady state")
        bottom.set_ylim(0, 4)
        if bottom.get_legend_handles_labels()[0]:
            bottom.legend(fontsize=7, loc="upper right")
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
        if not any(p.samples for p in result.runs):
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


def run_drf(ctx: VerbContext, *, options: DrfOptions = DrfOptions()) -> DrfResult:
    inv, timeouts, say = ctx.inventory, ctx.timeouts, ctx.notify
    script = command(inv, options)
    host = driver_node(inv)
    record = RunRecord(ctx.state_root, inv.cluster, "bench-drf", inventory=inv.path)
    result = DrfResult(cluster=inv.cluster, run_dir=record.path, host=host.name,
                       frameworks=[asdict(f) for f in options.frameworks])
    phases = 2 if options.control else 1
    say(f"two frameworks ({', '.join(f'{f.role}: tasks of {f.cpus:g} cpus, {f.mem:g} MB' for f in options.frameworks)})"
        f" for {options.duration:g} s on {host.name}"
        + (f", then the same in {' and '.join(control_roles(options))} (the control)" if options.control else ""))
    target = ctx.ssh_target(host, ctx.known_hosts())
    try:
        res = put_and_run(target, script, connect_timeout=timeouts.ssh_connect,
                          command_timeout=phases * (options.duration + PHASE_SLACK_SECONDS))
    except TransportError as exc:
        result.errors.append(str(exc))
    else:
        record.host_log(host.name, "drf.out.log").write_text(res.stdout)
        record.host_log(host.name, "drf.err.log").write_text(res.stderr)
        if res.exit_code != 0:
            tail = [ln for ln in res.stderr.splitlines() if ln.strip()][-3:]
            result.errors.append(f"frameworks exited {res.exit_code}: {' | '.join(tail) or 'no output'}")
        analyse(result, parse_lines(res.stdout), options)
    write_outputs(result)
    record.finish(result.to_dict(), exit_code=result.exit_code())
    return result
