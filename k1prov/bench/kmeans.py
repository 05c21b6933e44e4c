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

With contention (KmeansOptions.contention, `--contention 0,0.5,0.75`) the modes and scale
factors run once per level, each level above 0 against a competing framework that holds
that share of every agent (k1prov.bench.contention); every spark-submit's wall time and
what the competitor held meanwhile are recorded beside the trials.

Files, in the run record STATE/<cluster>/runs/<timestamp>-bench-kmeans/ (k1prov.run_records):
results.json, trials.csv, summary.csv, submits.csv, kmeans.png,
hosts/<driver>/<mode>-s<scale>[-c<level>].{out,err}.log (spark-submit's output), with
contention also contention.csv (the level x scale factor x mode table), and the
record's meta.json and report.json.
"""
from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from k1prov.bench.contention import Competitor, ContentionOptions, run_token, share_during
from k1prov.bench.number_lists import parse_number_list
from k1prov.bench.plot import plot_result
from k1prov.bench.results import (BenchResult, Failure, Skipped, Submit, Trial, check_trials, mark_ignored,
                                  write_contention_csv, write_json, write_submits_csv, write_summary_csv,
                                  write_trials_csv)
from k1prov.errors import ConfigError, InventoryError, TransportError
from k1prov.inventory.model import Inventory, Node
from k1prov.context import VerbContext
from k1prov.roles.derive import spark_master_url
from k1prov.roles.role_settings import SPARK_MODES, spark_settings
from k1prov.run_records import RunRecord
from k1prov.settings import Timeouts
from k1prov.ssh import SshTarget, put_and_run

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
# spark-submit runs under `timeout` with the job timeout (its output then still comes back);
# the SSH command gets this much more, for `timeout`'s own kill (-k) and the transfer.
SUBMIT_SLACK_SECONDS = 30.0
SUBMIT_KILL_AFTER = 10
# What Spark logs while its first job waits for an executor (no offer fits one).
NO_RESOURCES_MARK = "Initial job has not accepted any resources"
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
    return parse_number_list(text, option="--scale-factors", what="scale factor",
                             check=lambda value, part: workload(value))


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
    contention: ContentionOptions | None = None   # None: as alone on the cluster (level 0, no competitor)


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
                  spark: dict, manager: str, python: str, app_name: str,
                  time_limit: float | None = None) -> str:
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
    # Under `timeout` (exit 124): a job that waits for resources past its time still
    # returns its output, with Spark's log of the wait.
    limit = [f"timeout -k {SUBMIT_KILL_AFTER} {int(time_limit)}"] if time_limit else []
    submit = [*limit, '"$SPARK_HOME/bin/spark-submit"', "--master", q(master_url), "--name", q(app_name)]
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
    """results.json, trials.csv, summary.csv, submits.csv (and contention.csv) and kmeans.png
    in the run directory."""
    run_dir = result.run_dir
    result.files = {"json": str(run_dir / "results.json"), "trials_csv": str(run_dir / "trials.csv"),
                    "summary_csv": str(run_dir / "summary.csv"), "submits_csv": str(run_dir / "submits.csv"),
                    "plot": str(run_dir / "kmeans.png")}
    write_trials_csv(result, run_dir / "trials.csv")
    write_summary_csv(result, run_dir / "summary.csv")
    write_submits_csv(result, run_dir / "submits.csv")
    if result.contention:
        result.files["contention_csv"] = str(run_dir / "contention.csv")
        write_contention_csv(result, run_dir / "contention.csv")
    plot_result(result, run_dir / "kmeans.png")
    write_json(result, run_dir / "results.json")
    return result


def _trials_of(records: list[dict], *, mode: str, scale: float, contention: float) -> list[Trial]:
    return [Trial(mode=mode, scale_factor=scale, trial=int(r["trial"]), train_s=float(r["train_s"]),
                  test_s=float(r["test_s"]), cost=float(r["cost"]), contention=contention) for r in records]


# `timeout`'s exit when the job ran out of time: 124, or 128 + SIGKILL when the job
# outlived its SIGTERM by SUBMIT_KILL_AFTER (a driver stuck after a Mesos master failover).
TIMED_OUT_EXITS = (124, 128 + 9)


def timed_out(exit_code: int, wall: float | None = None, time_limit: float | None = None) -> bool:
    """Whether `timeout` ended the job at its time limit. A SIGKILL exit counts only
    when the job had run that long (the kernel's OOM killer gives the same code)."""
    if exit_code == 124:
        return True
    return (exit_code in TIMED_OUT_EXITS and wall is not None and time_limit is not None
            and wall >= time_limit)


def never_got_resources(exit_code: int, data: dict | None, stderr: str, *, wall: float | None = None,
                        time_limit: float | None = None) -> bool:
    """Timed out without its data ever cached (that needs an executor), Spark saying its
    first job had no resources: the job waited for resources the whole time."""
    return timed_out(exit_code, wall, time_limit) and data is None and NO_RESOURCES_MARK in stderr


def failure_reason(exit_code: int, got: int, trials: int, stderr: str, time_limit: float,
                   data: dict | None = None, *, wall: float | None = None) -> str:
    """Why a submit gave no (or not every) trial; a job that never got resources says so."""
    if timed_out(exit_code, wall, time_limit):
        why = (f"spark-submit did not finish within {time_limit:g} s (the job timeout) after {got} of "
               f"{trials} trial(s)")
        if never_got_resources(exit_code, data, stderr, wall=wall, time_limit=time_limit):
            return why + f": it never got an executor (Spark: '{NO_RESOURCES_MARK}')"
        return why + f": {error_tail(stderr)}"
    return f"spark-submit exited {exit_code} after {got} of {trials} trial(s): {error_tail(stderr)}"


@dataclass
class _Submitter:
    """What every submit of a run shares: where, how, and the result to add to."""
    result: BenchResult
    record: RunRecord
    target: SshTarget
    driver: Node
    job_text: str
    master_url: str
    spark: dict
    manager: str
    options: KmeansOptions
    timeouts: Timeouts
    job_timeout: float
    say: Callable[[str], None]

    def __post_init__(self) -> None:
        self._windows: list[tuple[int, float, float]] = []   # (submit index, epoch start, end) of a level

    def submit(self, mode: str, wl: Workload, conf: dict[str, str], contention: float,
               competitor: Competitor | None) -> None:
        options = self.options
        label = f"{mode}-s{wl.scale_factor:g}" + (f"-c{contention:g}" if options.contention else "")
        if competitor is not None:
            why = competitor.wait_holding()
            if why:
                self.result.failures.append(Failure(mode, wl.scale_factor, why, contention))
                self.result.submits.append(Submit(mode, wl.scale_factor, contention, 0.0, outcome="failed"))
                self.say(f"{label}: not run: {why}")
                return
        self.say(f"{label}: {wl.num_points} points x {wl.num_columns} columns, "
                 f"{wl.num_partitions} partition(s), {options.trials} trial(s) on {self.driver.name}"
                 + (f", a competing framework holding {contention:g} of every agent" if contention else ""))
        script = submit_script(self.job_text, master_url=self.master_url, conf=conf,
                               args=wl.job_args(options.trials), spark=self.spark, manager=self.manager,
                               python=options.python, app_name=f"k1prov-bench-kmeans-{label}",
                               time_limit=self.job_timeout)
        started, epoch = time.monotonic(), time.time()
        try:
            res = put_and_run(self.target, script, connect_timeout=self.timeouts.ssh_connect,
                              command_timeout=self.job_timeout + SUBMIT_SLACK_SECONDS)
        except TransportError as exc:
            self.result.failures.append(Failure(mode, wl.scale_factor, str(exc), contention))
            self.result.submits.append(Submit(mode, wl.scale_factor, contention,
                                              round(time.monotonic() - started, 3), outcome="failed"))
            self.say(f"{label}: failed: {exc}")
            return
        wall = round(time.monotonic() - started, 3)
        self.record.host_log(self.driver.name, f"{label}.out.log").write_text(res.stdout)
        self.record.host_log(self.driver.name, f"{label}.err.log").write_text(res.stderr)
        data, records = parse_job_output(res.stdout)
        data_s = float(data["generate_s"]) if data and "generate_s" in data else None
        ok = res.exit_code == 0 and len(records) == options.trials
        outcome = "ok" if ok else ("no resources" if never_got_resources(
            res.exit_code, data, res.stderr, wall=wall, time_limit=self.job_timeout) else "failed")
        self.result.submits.append(Submit(mode, wl.scale_factor, contention, wall, data_s, outcome=outcome))
        if competitor is not None:
            self._windows.append((len(self.result.submits) - 1, epoch, time.time()))
        if not ok:
            reason = failure_reason(res.exit_code, len(records), options.trials, res.stderr, self.job_timeout,
                                    data, wall=wall)
            self.result.failures.append(Failure(mode, wl.scale_factor, reason, contention))
            self.say(f"{label}: failed: {reason}")
            return
        self.result.trials += mark_ignored(_trials_of(records, mode=mode, scale=wl.scale_factor,
                                                      contention=contention), self.result.ignore_first)
        self.say(f"{label}: done in {wall:.1f} s")

    def competitor_held(self, samples: list[dict]) -> None:
        """Fill the level's submits with what the competitor held while each ran."""
        for index, start, end in self._windows:
            sub = self.result.submits[index]
            got = share_during(samples, start, end)
            self.result.submits[index] = Submit(sub.mode, sub.scale_factor, sub.contention, sub.wall_s,
                                                sub.data_s, outcome=sub.outcome, **got)
        self._windows.clear()


def run_kmeans(ctx: VerbContext, *, options: KmeansOptions = KmeansOptions(),
               job_timeout: float = DEFAULT_JOB_TIMEOUT) -> BenchResult:
    """Run every (contention level, mode, scale factor), write the results and the plot,
    return them. A competing framework is torn down after its level, whatever happened."""
    inv, timeouts, say = ctx.inventory, ctx.timeouts, ctx.notify
    ignore_first = check_trials(options.trials, options.ignore_first)
    workloads = [workload(s) for s in options.scale_factors]
    spark = spark_settings(inv)
    manager = spark["manager"]
    master_url = spark_master_url(inv)
    driver = submit_node(inv)
    run_modes, skipped = plan_modes(manager, options.modes)
    contention = options.contention
    if contention is not None and manager != "mesos" and any(contention.levels):
        raise ConfigError(f"--contention needs Spark on Mesos (a competing Mesos framework): the Spark "
                          f"manager is {manager}")
    record = RunRecord(ctx.state_root, inv.cluster, "bench-kmeans", inventory=inv.path)
    target = ctx.ssh_target(driver, ctx.known_hosts())
    result = BenchResult(cluster=inv.cluster, manager=manager, master_url=master_url,
                         submit_host=driver.name, run_dir=record.path, trials_per_run=options.trials,
                         ignore_first=ignore_first, workloads=[asdict(w) for w in workloads],
                         skipped=skipped)
    if contention is not None:
        result.contention = asdict(contention)
    submitter = _Submitter(result, record, target, driver, JOB_FILE.read_text(), master_url, spark, manager,
                           options, timeouts, job_timeout, say)
    for skip in skipped:
        say(f"skipping mode {skip.mode}: {skip.reason}")
    confs = {mode: spark_conf(mode, options=options, driver=driver, spark=spark) for mode in run_modes}
    result.spark_conf.update(confs)
    try:
        for level in (contention.levels if contention is not None else (0.0,)):
            if not level:
                for mode in run_modes:
                    for wl in workloads:
                        submitter.submit(mode, wl, confs[mode], level, None)
                continue
            submits = len(run_modes) * len(workloads)
            max_seconds = submits * (job_timeout + SUBMIT_SLACK_SECONDS + contention.hold_timeout)
            with Competitor(ctx, target, level=level, token=run_token(record.path.name, level),
                            options=contention, max_seconds=max_seconds) as competitor:
                for mode in run_modes:
                    for wl in workloads:
                        submitter.submit(mode, wl, confs[mode], level, competitor)
            run = competitor.run
            submitter.competitor_held(run.samples)
            result.competitors.append(run.to_dict())
            for problem in run.errors:
                say(f"contention {level:g}: competing framework: {problem}")
    finally:
        write_outputs(result)
        # meta.json and report.json, so that `k1prov runs list/show` know the run.
        record.finish(result.to_dict(), exit_code=result.exit_code())
    return result
