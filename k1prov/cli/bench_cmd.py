"""`k1prov bench kmeans`: the Spark-Perf K-means experiment on the configured cluster."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from k1prov.bench.kmeans import KmeansOptions, parse_modes, parse_scale_factors
from k1prov.bench.results import BenchResult
from k1prov.cli.common import InventoryOpt, JsonOpt, handles_errors, load
from k1prov.cli.runtime import make_provisioner
from k1prov.presentation import err, out, print_json, rows_table

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
    if as_json:
        print_json(result.to_dict())
    else:
        show(result)
    raise typer.Exit(result.exit_code())


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
