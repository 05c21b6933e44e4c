"""`k1prov bench kmeans` (the Spark-Perf K-means experiment) and `k1prov bench drf` (weighted DRF on Mesos)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from k1prov.cli.common import InventoryOpt, JsonOpt, finish, handles_errors, load
from k1prov.cli.runtime import make_provisioner
from k1prov.presentation import err, out, rows_table
from k1prov.provisioner import (DEFAULT_FRAMEWORKS, BenchResult, DrfOptions, DrfResult, KmeansOptions,
                                parse_frameworks, parse_modes, parse_scale_factors)

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Benchmarks on the cluster k1prov built.")


@app.command("kmeans")
@handles_errors
def kmeans(inventory: Path = InventoryOpt,
           scale_factors: str = typer.Option("0.001,0.01,0.1", "--scale-factors",
                                             help="Comma-separated; 1 = 1M points x 10k columns."),
           modes: str = typer.Option("coarse,fine", "--modes",
                                     help="Mesos modes; skipped (and reported) on standalone."),
           trials: int = typer.Option(10, "--trials", min=1, help="Trials per mode and scale factor."),
           ignore_first: Optional[int] = typer.Option(
               None, "--ignore-first", min=0,
               help="Leading trials left out of the summary (default: 2 when trials >= 10, else 0)."),
           executor_memory: str = typer.Option("512m", "--executor-memory"),
           driver_memory: str = typer.Option("512m", "--driver-memory"),
           total_executor_cores: int = typer.Option(2, "--total-executor-cores", min=0,
                                                    help="spark.cores.max (0: all offered)."),
           python: str = typer.Option("", "--python", help="PYSPARK_PYTHON on the hosts "
                                      "(default: python3 on the driver host's PATH)."),
           as_json: bool = JsonOpt):
    """Train and test K-means per scale factor and mode; JSON, CSV and a PNG plot in the run directory."""
    options = KmeansOptions(scale_factors=parse_scale_factors(scale_factors), modes=parse_modes(modes),
                            trials=trials, ignore_first=ignore_first, executor_memory=executor_memory,
                            driver_memory=driver_memory, total_executor_cores=total_executor_cores,
                            python=python)
    with make_provisioner(load(inventory), quiet=as_json) as prov:
        result = prov.bench_kmeans(options)
    finish(result, as_json=as_json, show=show)


def show(result: BenchResult) -> None:
    rows = [{"mode": s.mode, "scale factor": f"{s.scale_factor:g}", "phase": s.phase, "trials": s.trials,
             "median s": f"{s.median_s:.3f}", "min s": f"{s.min_s:.3f}", "max s": f"{s.max_s:.3f}"}
            for s in result.summaries]
    out.print(rows_table(rows, ["mode", "scale factor", "phase", "trials", "median s", "min s", "max s"],
                         title=f"K-means on {result.cluster} ({result.manager}, "
                               f"first {result.ignore_first} of {result.trials_per_run} trials ignored)"))
    for skip in result.skipped:
        err.print(f"skipped {skip.mode}: {skip.reason}", highlight=False)
    for failure in result.failures:
        err.print(f"[red]failed[/] {failure.mode} s={failure.scale_factor:g}: {failure.reason}",
                  highlight=False, soft_wrap=True)
    err.print(f"results: {result.run_dir} (plot: {result.files.get('plot')})", highlight=False)


@app.command("drf")
@handles_errors
def drf(inventory: Path = InventoryOpt,
        duration: float = typer.Option(90.0, "--duration", min=10.0, help="Seconds of sampling, each phase."),
        frameworks: str = typer.Option(",".join(f"{f.role}:{f.cpus:g}:{f.mem:g}" for f in DEFAULT_FRAMEWORKS),
                                       "--frameworks",
                                       help="Two ROLE:CPUS:MEM (per task); the roles' weights are "
                                            "the masters' (roles.mesos.weights)."),
        task_seconds: float = typer.Option(30.0, "--task-seconds", min=0.5,
                                           help="Mean length of each task (spread over ±50%)."),
        tasks_per_offer: int = typer.Option(1, "--tasks-per-offer", min=1,
                                            help="Tasks a framework launches from one offer."),
        control: bool = typer.Option(True, "--control/--no-control",
                                     help="Then the same frameworks in two roles without a weight "
                                          "(ROLE-control): the ratio there should be near 1."),
        as_json: bool = JsonOpt):
    """Two frameworks in two weighted roles, both asking for more than the cluster has: their
    dominant shares over time from the leading master, the steady-state ratio against the
    weights' (and a control run without weights), a CSV and a PNG plot in the run directory."""
    options = DrfOptions(duration=duration, task_seconds=task_seconds, tasks_per_offer=tasks_per_offer,
                         control=control, frameworks=parse_frameworks(frameworks))
    with make_provisioner(load(inventory), quiet=as_json) as prov:
        result = prov.bench_drf(options)
    finish(result, as_json=as_json, show=show_drf)


def show_drf(result: DrfResult) -> None:
    for run in result.runs:
        step = max(1, len(run.samples) // 12)
        rows = [{"t s": f"{r['t']:.0f}", **{f"{role} share": f"{r[f'{role}_share']:.3f}" for role in run.roles}}
                for r in run.samples[::step]]
        out.print(rows_table(rows, ["t s"] + [f"{role} share" for role in run.roles],
                             title=f"Dominant shares, {run.name} (leader {result.leader or '?'})"))
    rows = [{"run": r.name, "weights": ", ".join(f"{role} {r.weights.get(role, 1.0):g}" for role in r.roles),
             "steady from s": "-" if r.steady_from is None else f"{r.steady_from:.0f}",
             "converged shares": ", ".join(f"{r.converged[role]:.3f}" for role in r.roles
                                           if role in r.converged) or "-",
             "share ratio": "-" if r.share_ratio is None else f"{r.share_ratio:g}",
             "weight ratio": "-" if r.weight_ratio is None else f"{r.weight_ratio:g}",
             "reachable ratio": "-" if r.expected_ratio is None else f"{r.expected_ratio:g}",
             "tasks": ", ".join(f"{r.launched.get(role, 0)}" for role in r.roles)}
            for r in result.runs]
    out.print(rows_table(rows, ["run", "weights", "steady from s", "converged shares", "share ratio",
                                "weight ratio", "reachable ratio", "tasks"],
                         title="Steady state (mean dominant share once the cluster is full)"))
    if result.torn_down:
        err.print(f"torn down first (an earlier run's, left behind): {', '.join(result.torn_down)}", highlight=False)
    weighted = result.weighted
    if weighted is not None and weighted.weight_ratio == 1.0:
        err.print(f"the roles {' and '.join(weighted.roles)} have equal weights on this master: give them "
                  "different ones in roles.mesos.weights (e.g. {drf1: 1, drf2: 2}) to see weighted DRF",
                  highlight=False)
    err.print(f"leading master's allocation interval: {result.allocation_interval or '?'} (the ratio is "
              "closest to the weights' with a short one, e.g. 100ms: see k1prov.bench.drf)", highlight=False)
    for problem in result.errors:
        err.print(f"[red]error[/] {problem}", highlight=False, soft_wrap=True)
    err.print(f"results: {result.run_dir} (plot: {result.files.get('plot')})", highlight=False)
