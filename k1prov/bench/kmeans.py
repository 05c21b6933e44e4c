"""`k1prov bench kmeans`: Spark-Perf's K-means experiment on the cluster k1prov configured.

Spark-Perf (abandoned: Spark 1.x, Python 2.7) defined the workload; k1prov carries an
equivalent job (kmeans_job.py) and runs it the way the original testbed did:

    ctx = VerbContext(load_inventory("inventories/lab.yaml"))
    result = run_kmeans(ctx, options=KmeansOptions(scale_factors=(0.001, 0.01), trials=3))

For each mode and scale factor, one spark-submit on the driver host (the first
spark-master, else spark-client, else spark-worker node) over SSH: the job file is
shipped inside the pushed script, generates its data on the executors and prints one
JSON line per trial. On Mesos the modes are coarse and fine (spark.mesos.coarse); on
the standalone manager the job runs once per scale factor as mode "standalone" and the
Mesos modes asked for are reported as skipped. A failed (mode, scale factor) is a
Failure beside the others' results, never the end of the run.

Files, in the run record STATE/<cluster>/runs/<timestamp>-bench-kmeans/ (k1prov.run_records):
results.json, trials.csv, summary.csv, kmeans.png, hosts/<driver>/<mode>-s<scale>.{out,err}.log
(spark-submit's output), and the record's meta.json and report.json.
"""
from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from k1prov.bench.plot import plot_result
from k1prov.bench.results import (BenchResult, Failure, Skipped, Trial, check_trials, mark_ignored,
                                  write_json, write_summary_csv, write_trials_csv)
from k1prov.errors import ConfigError, InventoryError, TransportError
from k1prov.inventory.model import Inventory, Node
from k1prov.context import VerbContext
from k1prov.roles.derive import spark_master_url
from k1prov.roles.role_settings import SPARK_MODES, spark_settings
from k1prov.run_records import RunRecord
from k1prov.ssh import put_and_run

log = logging.getLogger("k1prov.bench")

JOB_FILE = Path(__file__).with_name("kmeans_job.py")
# Ends the job file's here-document inside the pushed script.
_JOB_EOF = "K1PROV_KMEANS_JOB_EOF"

# Spark-Perf's K-means workload at scale factor 1; the others are fixed.
POINTS_AT_1 = 1_000_000
COLUMNS_AT_1 = 10_000
PARTITIONS_AT_1 = 400
CENTERS = 20
ITERATIONS = 20
SEED = 5

DEFAULT_SCALE_FACTORS = (0.001, 0.01, 0.1)
STANDALONE_MODE = "standalone"
# One spark-submit (data generation and every trial of one scale factor). Spark-Perf's
# scale factor 1 took minutes per trial on the original two Xeon workers.
DEFAULT_JOB_TIMEOUT = 3600.0
# Lines of spark-submit's stderr kept in a failure's reason.
ERROR_TAIL_LINES = 5


@dataclass(frozen=True)
class Workload:
    scale_factor: float
    num_points: int
    num_columns: int
    num_partitions: int
    centers: int = CENTERS
    iterations: int = ITERATIONS
    seed: int = SEED

    def job_args(self, trials: int) -> list[str]:
        return ["--num-points", str(self.num_points), "--num-columns", str(self.num_columns),
                "--centers", str(self.centers), "--iterations", str(self.iterations),
                "--num-partitions", str(self.num_partitions), "--seed", str(self.seed),
                "--trials", str(trials)]


def workload(scale_factor: float) -> Workload:
    """Spark-Perf's K-means parameters at one scale factor."""
    if not scale_factor > 0:
        raise ConfigError(f"scale factor must be positive, got {scale_factor:g}")
    columns = round(COLUMNS_AT_1 * scale_factor)
    points = round(POINTS_AT_1 * scale_factor)
    if columns < 1:
        raise ConfigError(f"scale factor {scale_factor:g} is too small: it gives no column "
                          f"({COLUMNS_AT_1} columns at scale factor 1)")
    return Workload(scale_factor=scale_factor, num_points=points, num_columns=columns,
                    num_partitions=max(1, round(PARTITIONS_AT_1 * scale_factor)))


def parse_scale_factors(text: str) -> tuple[float, ...]:
    """'0.001,0.01,0.1' -> (0.001, 0.01, 0.1), each checked, in the order given, no repeats."""
    factors: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--scale-factors: {part!r} is not a number") from None
        workload(value)
        if value not in factors:
            factors.append(value)
    if not factors:
        raise ConfigError("--scale-factors: no scale factor given")
    return tuple(factors)


def parse_modes(text: str) -> tuple[str, ...]:
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in modes if m not in SPARK_MODES]
    if unknown or not modes:
        raise ConfigError(f"--modes: {', '.join(unknown) or 'none given'} "
                          f"(known: {', '.join(SPARK_MODES)})")
    return modes


@dataclass(frozen=True)
class KmeansOptions:
    scale_factors: tuple[float, ...] = DEFAULT_SCALE_FACTORS
    modes: tuple[str, ...] = SPARK_MODES     # Mesos modes; standalone runs its own one
    trials: int = 10
    ignore_first: int | None = None          # None: 2 when trials >= 10, else 0
    executor_memory: str = "512m"
    driver_memory: str = "512m"
    total_executor_cores: int = 2            # spark.cores.max; 0: Spark's default (all offered)
    python: str = ""                         # PYSPARK_PYTHON; empty: python3 on the driver host's PATH


def plan_modes(manager: str, requested: tuple[str, ...]) -> tuple[list[str], list[Skipped]]:
    """The modes to run and those reported as skipped (never faked)."""
    if manager == "mesos":
        return list(requested), []
    reason = f"Mesos {{}}-grained mode does not apply: the Spark manager is {manager}"
    return [STANDALONE_MODE], [Skipped(m, reason.format(m)) for m in requested]


def submit_node(inv: Inventory) -> Node:
    """Where the driver runs: a host with Spark installed and configured by k1prov."""
    for role in ("spark-master", "spark-client", "spark-worker"):
        nodes = inv.with_role(role)
        if nodes:
            return nodes[0]
    raise InventoryError("no node has a Spark role (spark-master, spark-client or spark-worker): "
                         "nothing to submit the benchmark from", file=str(inv.path), field="nodes.roles")


def spark_conf(mode: str, *, options: KmeansOptions, driver: Node, spark: dict) -> dict[str, str]:
    conf = {"spark.executor.memory": options.executor_memory,
            "spark.driver.memory": options.driver_memory,
            "spark.driver.host": driver.address,
            # No web UI: nobody looks at it and it would take a port per application.
            "spark.ui.enabled": "false"}
    if options.total_executor_cores:
        conf["spark.cores.max"] = str(options.total_executor_cores)
    if options.python:
        # The rendered spark-defaults may name a Python (roles.spark.python): the conf
        # beats the PYSPARK_PYTHON the script exports, so --python must be a conf too.
        conf["spark.pyspark.python"] = options.python
        conf["spark.executorEnv.PYSPARK_PYTHON"] = options.python
    if mode in SPARK_MODES:
        conf["spark.mesos.coarse"] = "true" if mode == "coarse" else "false"
        if spark["executor_uri"]:
            conf["spark.executor.uri"] = spark["executor_uri"]
    return conf


def submit_script(job_text: str, *, master_url: str, conf: dict[str, str], args: list[str],
                  spark: dict, manager: str, python: str, app_name: str) -> str:
    """The bash script pushed to the driver host: write the job next to itself, spark-submit it."""
    if _JOB_EOF in job_text:
        raise ConfigError(f"the job file contains the here-document marker {_JOB_EOF}")
    q = shlex.quote
    lines = ["#!/usr/bin/env bash", "set -euo pipefail",
             # Images that keep JAVA_HOME/SPARK_HOME/PATH there (the lab's) also work
             # when sshd does not read it through PAM.
             "if [[ -r /etc/environment ]]; then set -a; . /etc/environment || true; set +a; fi",
             'here=$(cd "$(dirname "$0")" && pwd)',
             f"cat > \"$here/kmeans_job.py\" <<'{_JOB_EOF}'", job_text.rstrip("\n"), _JOB_EOF,
             f"export SPARK_HOME={q(spark['spark_home'])}",
             f"export SPARK_CONF_DIR={q(spark['conf_dir'])}"]
    if spark["java_home"]:
        lines.append(f"export JAVA_HOME={q(spark['java_home'])}")
    if manager == "mesos":
        lines.append(f"export MESOS_NATIVE_JAVA_LIBRARY={q(spark['mesos_native_library'])}")
    # An absolute path: the executors start the same interpreter (uniform hosts).
    lines += [f"PYSPARK_PYTHON={q(python)}" if python else 'PYSPARK_PYTHON=$(command -v python3)',
              'export PYSPARK_PYTHON PYSPARK_DRIVER_PYTHON="$PYSPARK_PYTHON"']
    submit = ['"$SPARK_HOME/bin/spark-submit"', "--master", q(master_url), "--name", q(app_name)]
    for key, value in sorted(conf.items()):
        submit += ["--conf", q(f"{key}={value}")]
    submit += ['"$here/kmeans_job.py"', *(q(a) for a in args)]
    lines.append(" ".join(submit))
    return "\n".join(lines) + "\n"


def parse_job_output(stdout: str) -> tuple[dict | None, list[dict]]:
    """The job's "data" line and its "trial" lines (other stdout lines are ignored)."""
    data, trials = None, []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if record.get("event") == "data":
            data = record
        elif record.get("event") == "trial":
            trials.append(record)
    return data, trials


def error_tail(stderr: str, lines: int = ERROR_TAIL_LINES) -> str:
    """The most telling lines of a failed spark-submit: Python/Java errors first, else the end."""
    text = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in text if "Error" in ln or "Exception" in ln or ln.startswith("error")]
    return " | ".join((errors or text)[-lines:]) or "no output"


def write_outputs(result: BenchResult) -> BenchResult:
    """results.json, trials.csv, summary.csv and kmeans.png in the run directory."""
    run_dir = result.run_dir
    result.files = {"json": str(run_dir / "results.json"), "trials_csv": str(run_dir / "trials.csv"),
                    "summary_csv": str(run_dir / "summary.csv"), "plot": str(run_dir / "kmeans.png")}
    write_trials_csv(result, run_dir / "trials.csv")
    write_summary_csv(result, run_dir / "summary.csv")
    plot_result(result, run_dir / "kmeans.png")
    write_json(result, run_dir / "results.json")
    return result


def _trials_of(records: list[dict], *, mode: str, scale: float) -> list[Trial]:
    return [Trial(mode=mode, scale_factor=scale, trial=int(r["trial"]), train_s=float(r["train_s"]),
                  test_s=float(r["test_s"]), cost=float(r["cost"])) for r in records]


def run_kmeans(ctx: VerbContext, *, options: KmeansOptions = KmeansOptions(),
               job_timeout: float = DEFAULT_JOB_TIMEOUT) -> BenchResult:
    """Run every (mode, scale factor), write the results and the plot, return them."""
    inv, timeouts, say = ctx.inventory, ctx.timeouts, ctx.notify
    ignore_first = check_trials(options.trials, options.ignore_first)
    workloads = [workload(s) for s in options.scale_factors]
    spark = spark_settings(inv)
    manager = spark["manager"]
    master_url = spark_master_url(inv)
    driver = submit_node(inv)
    run_modes, skipped = plan_modes(manager, options.modes)
    record = RunRecord(ctx.state_root, inv.cluster, "bench-kmeans", inventory=inv.path)
    target = ctx.ssh_target(driver, ctx.known_hosts())
    job_text = JOB_FILE.read_text()
    result = BenchResult(cluster=inv.cluster, manager=manager, master_url=master_url,
                         submit_host=driver.name, run_dir=record.path, trials_per_run=options.trials,
                         ignore_first=ignore_first, workloads=[asdict(w) for w in workloads],
                         skipped=skipped)
    for skip in skipped:
        say(f"skipping mode {skip.mode}: {skip.reason}")
    for mode in run_modes:
        conf = spark_conf(mode, options=options, driver=driver, spark=spark)
        result.spark_conf[mode] = conf
        for wl in workloads:
            label = f"{mode}-s{wl.scale_factor:g}"
            say(f"{label}: {wl.num_points} points x {wl.num_columns} columns, "
                f"{wl.num_partitions} partition(s), {options.trials} trial(s) on {driver.name}")
            script = submit_script(job_text, master_url=master_url, conf=conf,
                                   args=wl.job_args(options.trials), spark=spark, manager=manager,
                                   python=options.python, app_name=f"k1prov-bench-kmeans-{label}")
            started = time.monotonic()
            try:
                res = put_and_run(target, script, connect_timeout=timeouts.ssh_connect,
                                  command_timeout=job_timeout)
            except TransportError as exc:
                result.failures.append(Failure(mode, wl.scale_factor, str(exc)))
                say(f"{label}: failed: {exc}")
                continue
            record.host_log(driver.name, f"{label}.out.log").write_text(res.stdout)
            record.host_log(driver.name, f"{label}.err.log").write_text(res.stderr)
            _, records = parse_job_output(res.stdout)
            if res.exit_code != 0 or len(records) != options.trials:
                reason = (f"spark-submit exited {res.exit_code} after {len(records)} of "
                          f"{options.trials} trial(s): {error_tail(res.stderr)}")
                result.failures.append(Failure(mode, wl.scale_factor, reason))
                say(f"{label}: failed: {reason}")
                continue
            result.trials += mark_ignored(_trials_of(records, mode=mode, scale=wl.scale_factor),
                                          ignore_first)
            say(f"{label}: done in {time.monotonic() - started:.1f} s")
    write_outputs(result)
    # meta.json and report.json, so that `k1prov runs list/show` know the run.
    record.finish(result.to_dict(), exit_code=result.exit_code())
    return result
