"""Tests of k1prov.bench (workload, summary, files, plot, orchestration over a fake transport)
and of the job file's argument checks."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import k1prov.bench.kmeans as km
from k1prov.bench.results import (BenchResult, Failure, Skipped, Trial, check_trials, default_ignored,
                                  mark_ignored, summarize)
from k1prov.context import VerbContext
from k1prov.errors import ConfigError, InventoryError, TransportError
from k1prov.inventory import parse_inventory
from k1prov.verb_report import EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL
from k1prov.run_records import list_runs
from k1prov.ssh import CommandResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HEAD = """\
cluster: t1
cloud: {ironic_url: "http://127.0.0.1:9"}
defaults:
  bmc: {address: 127.0.0.1, username: u, password: {env: P}}
"""
STANDALONE = HEAD + """\
roles:
  spark: {source: preinstalled, spark_home: /opt/spark, manager: standalone}
nodes:
  - {name: w1, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2, roles: [spark-worker]}
  - {name: m1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1, roles: [spark-master]}
"""
MESOS = HEAD + """\
roles:
  zookeeper: {source: preinstalled}
  mesos: {source: preinstalled}
  spark: {source: preinstalled, executor_uri: "http://10.0.0.1/spark.tgz"}
nodes:
  - {name: m1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1,
     roles: [zookeeper, mesos-master, spark-master]}
  - {name: a1, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2, roles: [mesos-agent]}
"""


def inventory(text: str, tmp_path: Path):
    return parse_inventory(text, path=tmp_path / "inv.yaml")


# ---- workload -------------------------------------------------------------------------

@pytest.mark.parametrize("scale, points, columns, partitions", [
    (0.001, 1_000, 10, 1),       # 400 * 0.001 = 0.4 partitions: at least 1
    (0.01, 10_000, 100, 4),
    (0.1, 100_000, 1_000, 40),
    (0.5, 500_000, 5_000, 200),
    (1, 1_000_000, 10_000, 400),
])
def test_workload_follows_spark_perf(scale, points, columns, partitions):
    wl = km.workload(scale)
    assert (wl.num_points, wl.num_columns, wl.num_partitions) == (points, columns, partitions)
    assert (wl.centers, wl.iterations, wl.seed) == (20, 20, 5)


def test_workload_arguments_for_the_job():
    args = km.workload(0.01).job_args(3)
    assert dict(zip(args[::2], args[1::2])) == {
        "--num-points": "10000", "--num-columns": "100", "--centers": "20", "--iterations": "20",
        "--num-partitions": "4", "--seed": "5", "--trials": "3"}


@pytest.mark.parametrize("scale", [0, -0.1, 0.00001])
def test_workload_refuses_scale_factors_without_data(scale):
    with pytest.raises(ConfigError):
        km.workload(scale)


def test_parse_scale_factors_and_modes():
    assert km.parse_scale_factors("0.001, 0.01,0.1,0.01") == (0.001, 0.01, 0.1)
    for bad in ("", "0.1,x", "0"):
        with pytest.raises(ConfigError):
            km.parse_scale_factors(bad)
    assert km.parse_modes("fine,coarse") == ("fine", "coarse")
    with pytest.raises(ConfigError, match="medium"):
        km.parse_modes("coarse,medium")


# ---- trials and summaries ----------------------------------------------------------------

@pytest.mark.parametrize("trials, ignored", [(1, 0), (3, 0), (9, 0), (10, 2), (20, 2)])
def test_first_two_trials_are_ignored_only_for_spark_perf_length_runs(trials, ignored):
    assert default_ignored(trials) == ignored
    assert check_trials(trials, None) == ignored


def test_ignore_first_must_leave_a_trial():
    assert check_trials(3, 2) == 2
    for trials, ignore in ((3, 3), (10, 10), (1, 1), (3, -1), (0, None)):
        with pytest.raises(ConfigError):
            check_trials(trials, ignore)


def _trials(mode, scale, train, test):
    return [Trial(mode, scale, i + 1, tr, te, cost=1.0) for i, (tr, te) in enumerate(zip(train, test))]


def test_summary_is_median_min_max_over_the_trials_not_ignored():
    trials = mark_ignored(
        _trials("coarse", 0.01, [90.0, 50.0, 3.0, 1.0, 2.0, 5.0], [9.0, 9.0, 0.3, 0.1, 0.2, 0.4])
        + _trials("fine", 0.01, [7.0, 6.0, 4.0], [0.7, 0.6, 0.4]), ignore_first=2)
    assert [t.ignored for t in trials] == [True, True, False, False, False, False, True, True, False]
    got = {(s.mode, s.phase): (s.trials, s.median_s, s.min_s, s.max_s) for s in summarize(trials)}
    # The warm-up trials (90 s, 50 s) do not pull the maximum up.
    assert got[("coarse", "training")] == (4, 2.5, 1.0, 5.0)
    assert got[("coarse", "test")] == (4, pytest.approx(0.25), 0.1, 0.4)
    assert got[("fine", "training")] == (1, 4.0, 4.0, 4.0)


def test_summary_is_ordered_by_mode_then_scale_then_phase():
    trials = _trials("fine", 0.1, [1.0], [1.0]) + _trials("coarse", 0.1, [1.0], [1.0]) \
        + _trials("coarse", 0.001, [1.0], [1.0])
    assert [(s.mode, s.scale_factor, s.phase) for s in summarize(trials)] == [
        ("coarse", 0.001, "training"), ("coarse", 0.001, "test"), ("coarse", 0.1, "training"),
        ("coarse", 0.1, "test"), ("fine", 0.1, "training"), ("fine", 0.1, "test")]


def _result(tmp_path, trials=(), skipped=(), failures=()) -> BenchResult:
    return BenchResult(cluster="t1", manager="standalone", master_url="spark://10.0.0.1:7077",
                       submit_host="m1", run_dir=tmp_path, trials_per_run=3, ignore_first=0,
                       trials=list(trials), skipped=list(skipped), failures=list(failures))


@pytest.mark.parametrize("ran, failed, code", [(True, False, EXIT_OK), (True, True, EXIT_PARTIAL),
                                               (False, True, EXIT_NOTHING), (False, False, EXIT_NOTHING)])
def test_exit_code(tmp_path, ran, failed, code):
    result = _result(tmp_path, trials=_trials("standalone", 0.1, [1.0], [1.0]) if ran else (),
                     failures=[Failure("standalone", 0.01, "boom")] if failed else ())
    assert result.exit_code() == code


# ---- files --------------------------------------------------------------------------------

def test_outputs_json_csv_and_png(tmp_path):
    result = _result(tmp_path, trials=mark_ignored(
        _trials("standalone", 0.001, [2.0, 1.0, 3.0], [0.2, 0.1, 0.3])
        + _trials("standalone", 0.01, [4.0, 5.0, 6.0], [0.4, 0.5, 0.6]), 0),
        skipped=[Skipped("coarse", "no Mesos"), Skipped("fine", "no Mesos")])
    km.write_outputs(result)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["files"]["plot"] == str(tmp_path / "kmeans.png")
    assert [(s["scale_factor"], s["phase"], s["median_s"]) for s in data["summary"]] == [
        (0.001, "training", 2.0), (0.001, "test", 0.2), (0.01, "training", 5.0), (0.01, "test", 0.5)]
    assert [s["mode"] for s in data["skipped"]] == ["coarse", "fine"]
    with (tmp_path / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["scale_factor"], r["trial"], r["train_s"]) for r in rows][:2] == [
        ("0.001", "1", "2.0"), ("0.001", "2", "1.0")]
    with (tmp_path / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[2] == {"mode": "standalone", "scale_factor": "0.01", "contention": "0.0", "phase": "training", "trials": "3",
                       "median_s": "5.0", "min_s": "4.0", "max_s": "6.0"}
    png = (tmp_path / "kmeans.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_plot_without_measurements_is_still_a_png(tmp_path):
    result = _result(tmp_path, failures=[Failure("standalone", 0.1, "out of memory")])
    km.write_outputs(result)
    png = (tmp_path / "kmeans.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1_000


# ---- the job's output and the pushed script ---------------------------------------------

def test_parse_job_output_keeps_only_the_jobs_records():
    stdout = ('Setting default log level\n{"event": "data", "points": 10}\n[1, 2]\n{broken\n'
              '{"event": "trial", "trial": 1, "train_s": 1.5, "test_s": 0.2, "cost": 3.0}\n')
    data, trials = km.parse_job_output(stdout)
    assert data == {"event": "data", "points": 10}
    assert trials == [{"event": "trial", "trial": 1, "train_s": 1.5, "test_s": 0.2, "cost": 3.0}]


def test_error_tail_prefers_error_lines():
    stderr = "INFO a\nTraceback\nModuleNotFoundError: No module named 'numpy'\nINFO shutdown\n"
    assert km.error_tail(stderr) == "ModuleNotFoundError: No module named 'numpy'"
    assert km.error_tail("last words\n") == "last words"
    assert km.error_tail("") == "no output"


def test_submit_script_ships_the_job_and_passes_the_workload(tmp_path):
    inv = inventory(STANDALONE, tmp_path)
    spark = km.spark_settings(inv)
    driver = km.submit_node(inv)
    conf = km.spark_conf("standalone", options=km.KmeansOptions(), driver=driver, spark=spark)
    script = km.submit_script(km.JOB_FILE.read_text(), master_url="spark://10.0.0.1:7077", conf=conf,
                              args=km.workload(0.01).job_args(3), spark=spark, manager="standalone",
                              python="", app_name="k1prov-bench-kmeans-standalone-s0.01")
    # The job text is in the script unchanged, then submitted with the workload.
    assert km.JOB_FILE.read_text().rstrip("\n") in script
    assert "--master spark://10.0.0.1:7077" in script
    assert "--conf spark.executor.memory=512m --conf spark.ui.enabled=false" in script
    assert "--num-points 10000 --num-columns 100" in script
    assert "spark.mesos" not in script and "MESOS_NATIVE" not in script
    assert "export SPARK_CONF_DIR=/opt/spark/conf" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_spark_conf_per_mode(tmp_path):
    inv = inventory(MESOS, tmp_path)
    spark = km.spark_settings(inv)
    node = km.submit_node(inv)
    opts = km.KmeansOptions(total_executor_cores=0, executor_memory="2g")
    coarse = km.spark_conf("coarse", options=opts, driver=node, spark=spark)
    fine = km.spark_conf("fine", options=opts, driver=node, spark=spark)
    assert coarse["spark.mesos.coarse"] == "true" and fine["spark.mesos.coarse"] == "false"
    assert coarse["spark.executor.uri"] == "http://10.0.0.1/spark.tgz"
    assert coarse["spark.executor.memory"] == "2g" and "spark.cores.max" not in coarse
    assert coarse["spark.driver.host"] == "10.0.0.1"


def test_submit_node_prefers_the_master_and_needs_a_spark_role(tmp_path):
    assert km.submit_node(inventory(STANDALONE, tmp_path)).name == "m1"
    no_spark = HEAD + """\
nodes:
  - {name: z1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1, roles: [zookeeper]}
"""
    with pytest.raises(InventoryError, match="Spark role"):
        km.submit_node(inventory(no_spark, tmp_path))


def test_plan_modes():
    assert km.plan_modes("mesos", ("coarse", "fine")) == (["coarse", "fine"], [])
    run, skipped = km.plan_modes("standalone", ("coarse", "fine"))
    assert run == ["standalone"]
    assert [s.mode for s in skipped] == ["coarse", "fine"]
    assert all("standalone" in s.reason for s in skipped)


# ---- orchestration over a fake transport -------------------------------------------------

class FakeSubmit:
    """Stands in for put_and_run: answers like spark-submit running kmeans_job.py."""

    def __init__(self, *, fail_scales=(), transport_error_scales=()):
        self.scripts: list[str] = []
        self.fail_scales = set(fail_scales)
        self.transport_error_scales = set(transport_error_scales)

    def __call__(self, target, script, *, connect_timeout, command_timeout):
        self.scripts.append(script)
        submit = script.rstrip("\n").splitlines()[-1]   # the spark-submit line
        trials = int(re.search(r"--trials (\d+)", submit).group(1))
        columns = int(re.search(r"--num-columns (\d+)", submit).group(1))
        if columns in self.transport_error_scales:
            raise TransportError(target.host, "connection refused", transient=True)
        if columns in self.fail_scales:
            return CommandResult(target.host, 1, '{"event": "data", "points": 1}\n',
                                 "INFO x\njava.lang.OutOfMemoryError: Java heap space\n")
        lines = [json.dumps({"event": "trial", "trial": i + 1, "train_s": columns / 10 + i,
                             "test_s": columns / 100, "cost": 1.0}) for i in range(trials)]
        return CommandResult(target.host, 0, "\n".join(lines) + "\n", "Executor added\n")


def test_standalone_run_skips_mesos_modes_and_writes_everything(tmp_path, monkeypatch):
    fake = FakeSubmit()
    monkeypatch.setattr(km, "put_and_run", fake)
    inv = inventory(STANDALONE, tmp_path)
    result = km.run_kmeans(VerbContext(inv, state_root=tmp_path / "state"),
                           options=km.KmeansOptions(scale_factors=(0.001, 0.01), trials=10))
    assert len(fake.scripts) == 2
    assert result.exit_code() == EXIT_OK and result.ignore_first == 2
    assert [s.mode for s in result.skipped] == ["coarse", "fine"]
    assert sum(t.ignored for t in result.trials) == 4 and len(result.trials) == 20
    training = [s for s in result.summaries if s.phase == "training"]
    # Trials 3..10 count: train_s = columns/10 + (trial-1) -> median of 2..9 offsets = 5.5.
    assert [(s.scale_factor, s.trials, s.median_s, s.min_s) for s in training] == [
        (0.001, 8, 6.5, 3.0), (0.01, 8, 15.5, 12.0)]
    assert Path(result.files["plot"]).read_bytes().startswith(PNG_MAGIC)
    assert (result.run_dir / "hosts" / "m1" / "standalone-s0.01.err.log").read_text() == "Executor added\n"
    assert result.run_dir.parent == tmp_path / "state" / "t1" / "runs"
    assert result.run_dir.name.endswith("-bench-kmeans")
    # A finished run record: `k1prov runs list` shows it with its exit code.
    [run] = list_runs(tmp_path / "state", "t1")
    assert (run.verb, run.exit_code, run.path) == ("bench-kmeans", EXIT_OK, result.run_dir)


def test_mesos_runs_coarse_and_fine_and_one_failure_does_not_stop_the_rest(tmp_path, monkeypatch):
    fake = FakeSubmit(fail_scales={100}, transport_error_scales=())
    monkeypatch.setattr(km, "put_and_run", fake)
    inv = inventory(MESOS, tmp_path)
    result = km.run_kmeans(VerbContext(inv, state_root=tmp_path / "state"),
                           options=km.KmeansOptions(scale_factors=(0.001, 0.01), trials=3))
    assert result.manager == "mesos" and not result.skipped
    assert len(fake.scripts) == 4
    assert sum("spark.mesos.coarse=true" in s for s in fake.scripts) == 2
    assert sum("spark.mesos.coarse=false" in s for s in fake.scripts) == 2
    assert all("MESOS_NATIVE_JAVA_LIBRARY=/usr/lib/libmesos.so" in s for s in fake.scripts)
    assert result.master_url.startswith("mesos://zk://10.0.0.1:2181/")
    assert [(f.mode, f.scale_factor) for f in result.failures] == [("coarse", 0.01), ("fine", 0.01)]
    assert "OutOfMemoryError" in result.failures[0].reason and "after 0 of 3" in result.failures[0].reason
    assert {(t.mode, t.scale_factor) for t in result.trials} == {("coarse", 0.001), ("fine", 0.001)}
    assert result.exit_code() == EXIT_PARTIAL
    assert set(result.spark_conf) == {"coarse", "fine"}


def test_a_transport_error_is_a_failure_row(tmp_path, monkeypatch):
    monkeypatch.setattr(km, "put_and_run", FakeSubmit(transport_error_scales={10}))
    result = km.run_kmeans(VerbContext(inventory(STANDALONE, tmp_path), state_root=tmp_path / "state"),
                           options=km.KmeansOptions(scale_factors=(0.001,), trials=1))
    assert [(f.mode, f.reason) for f in result.failures] == [("standalone", "m1: connection refused")]
    assert result.exit_code() == EXIT_NOTHING


def test_bad_options_stop_before_any_submit(tmp_path, monkeypatch):
    fake = FakeSubmit()
    monkeypatch.setattr(km, "put_and_run", fake)
    with pytest.raises(ConfigError):
        km.run_kmeans(VerbContext(inventory(STANDALONE, tmp_path), state_root=tmp_path / "state"),
                      options=km.KmeansOptions(trials=3, ignore_first=3))
    assert not fake.scripts and not (tmp_path / "state").exists()


# ---- the job file ----------------------------------------------------------------------------

def test_job_file_needs_only_stdlib_pyspark_and_numpy():
    imports = set(re.findall(r"^\s*(?:from|import) ([a-z_]+)", km.JOB_FILE.read_text(), re.MULTILINE))
    assert imports <= {"__future__", "argparse", "json", "sys", "time", "pyspark", "numpy"}


def test_job_file_checks_its_arguments_before_starting_spark():
    res = subprocess.run([sys.executable, str(km.JOB_FILE), "--num-points", "0", "--num-columns", "1",
                          "--centers", "1", "--iterations", "1", "--num-partitions", "1", "--seed", "5",
                          "--trials", "1"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "--num-points must be at least 1" in res.stderr


def test_python_option_beats_the_rendered_defaults():
    """roles.spark.python puts spark.pyspark.python in spark-defaults, which beats an
    exported PYSPARK_PYTHON: --python has to travel as --conf to take effect."""
    from k1prov.inventory.model import Bmc, Node, SecretRef
    node = Node(name="d", index=0, bmc=Bmc("127.0.0.1", 6230, "admin", SecretRef(env="X")),
                macs=("52:54:00:00:00:01",), address="10.0.0.9", roles=("spark-client",))
    spark = {"executor_uri": ""}
    conf = km.spark_conf("coarse", options=km.KmeansOptions(python="/opt/py/bin/python"), driver=node, spark=spark)
    assert conf["spark.pyspark.python"] == conf["spark.executorEnv.PYSPARK_PYTHON"] == "/opt/py/bin/python"
    assert "spark.pyspark.python" not in km.spark_conf("coarse", options=km.KmeansOptions(), driver=node, spark=spark)


# ---- contention (--contention): results, the table, orchestration with a fake competitor ------

from k1prov.bench.contention import CompetitorRun, ContentionOptions  # noqa: E402
from k1prov.bench.results import Submit, contention_table, faster_mode  # noqa: E402


def test_summary_groups_by_contention_level_too():
    trials = [Trial("coarse", 0.001, i, t, t / 10, 1.0, contention=c)
              for c, times in ((0.0, (1.0, 2.0, 3.0)), (0.5, (4.0, 5.0, 9.0))) for i, t in enumerate(times, 1)]
    got = [(s.contention, s.phase, s.median_s) for s in summarize(trials)]
    assert got == [(0.0, "training", 2.0), (0.0, "test", 0.2), (0.5, "training", 5.0), (0.5, "test", 0.5)]


def test_the_contention_table_has_a_row_per_level_scale_and_mode_even_without_trials():
    trials = [Trial(m, 0.001, 1, t, 0.1, 1.0, contention=c)
              for m, c, t in (("coarse", 0.0, 1.0), ("fine", 0.0, 2.0), ("coarse", 0.5, 3.0))]
    submits = [Submit("fine", 0.001, 0.5, 240.0, outcome="no resources", held_start=0.5, held_median=0.5),
               Submit("coarse", 0.001, 0.5, 60.0, 20.0, 0.5, 0.375, 0.4375),
               Submit("coarse", 0.001, 0.0, 30.0), Submit("fine", 0.001, 0.0, 35.0)]
    rows = contention_table(summarize(trials), submits)
    assert [(r["contention"], r["mode"], r["training_median_s"], r["outcome"]) for r in rows] == [
        (0.0, "coarse", 1.0, "ok"), (0.0, "fine", 2.0, "ok"),
        (0.5, "coarse", 3.0, "ok"), (0.5, "fine", None, "no resources")]
    assert rows[2]["held_median"] == 0.4375 and rows[2]["wall_s"] == 60.0
    assert faster_mode(rows) == {(0.0, 0.001): "coarse", (0.5, 0.001): "coarse"}
    assert faster_mode([{**r, "training_median_s": None} for r in rows]) == {(0.0, 0.001): "neither",
                                                                            (0.5, 0.001): "neither"}


def test_submit_runs_spark_under_the_job_timeout(tmp_path):
    inv = inventory(MESOS, tmp_path)
    spark = km.spark_settings(inv)
    script = km.submit_script("print(1)\n", master_url="mesos://zk://x/mesos", conf={}, args=["--trials", "1"],
                              spark=spark, manager="mesos", python="", app_name="a", time_limit=240.0)
    assert script.rstrip().splitlines()[-1].startswith('timeout -k 10 240 "$SPARK_HOME/bin/spark-submit"')


def test_a_job_that_waited_for_resources_says_so():
    stderr = "WARN TaskSchedulerImpl: Initial job has not accepted any resources; check your cluster UI\n"
    assert "it never got an executor" in km.failure_reason(124, 0, 3, stderr, 240.0)
    # It waited, then got executors (its data was cached), then ran out of time: not "no resources".
    assert "never got" not in km.failure_reason(124, 0, 3, stderr, 240.0, {"event": "data"})
    assert "within 240 s" in km.failure_reason(124, 1, 3, "java.lang.Error: x\n", 240.0)
    assert km.failure_reason(1, 0, 3, "java.lang.Error: x\n", 240.0).startswith("spark-submit exited 1")


def test_a_job_that_outlived_its_sigterm_at_the_time_limit_is_a_timeout_too():
    """`timeout -k` SIGKILLs a driver that ignores SIGTERM (stuck after a Mesos master
    failover): exit 137 at the time limit is the job timeout, not an unexplained exit;
    137 long before it is not (the OOM killer)."""
    stderr = "WARN TaskSchedulerImpl: Initial job has not accepted any resources; check your cluster UI\n"
    reason = km.failure_reason(137, 0, 3, stderr, 420.0, wall=431.0)
    assert "did not finish within 420 s (the job timeout)" in reason and "never got an executor" in reason
    assert km.failure_reason(137, 0, 3, "Killed\n", 420.0, wall=12.0).startswith("spark-submit exited 137")


class FakeCompetitor:
    """Stands in for contention.Competitor: holds at once, records its life."""
    made: list["FakeCompetitor"] = []

    def __init__(self, ctx, target, *, level, token, options, max_seconds):
        self.level, self.token, self.stopped, self.waits = level, token, False, 0
        self.run = CompetitorRun(level=level, host=target.host, name="n-" + token, role=options.role)
        self.run.samples = [{"epoch": 0.0, "share": {"cpus": level, "mem": level}},
                            {"epoch": 4e9, "share": {"cpus": level, "mem": level}}]
        FakeCompetitor.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stopped = True

    def wait_holding(self):
        self.waits += 1
        return None


def test_each_level_above_0_runs_every_submit_against_its_own_competitor(tmp_path, monkeypatch):
    fake = FakeSubmit()
    FakeCompetitor.made = []
    monkeypatch.setattr(km, "put_and_run", fake)
    monkeypatch.setattr(km, "Competitor", FakeCompetitor)
    result = km.run_kmeans(VerbContext(inventory(MESOS, tmp_path), state_root=tmp_path / "state"),
                           options=km.KmeansOptions(scale_factors=(0.001,), trials=3,
                                                    contention=ContentionOptions(levels=(0.0, 0.5, 0.75))))
    assert [(c.level, c.waits, c.stopped) for c in FakeCompetitor.made] == [(0.5, 2, True), (0.75, 2, True)]
    assert len(fake.scripts) == 6 and result.exit_code() == EXIT_OK
    assert [(s.contention, s.mode) for s in result.submits] == [
        (0.0, "coarse"), (0.0, "fine"), (0.5, "coarse"), (0.5, "fine"), (0.75, "coarse"), (0.75, "fine")]
    assert [s.held_start for s in result.submits] == [None, None, 0.5, 0.5, 0.75, 0.75]
    assert {t.contention for t in result.trials} == {0.0, 0.5, 0.75}
    assert sum("k1prov-bench-kmeans-coarse-s0.001-c0.5" in s for s in fake.scripts) == 1
    with (result.run_dir / "contention.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["contention"], r["mode"]) for r in rows] == [
        ("0.0", "coarse"), ("0.0", "fine"), ("0.5", "coarse"), ("0.5", "fine"), ("0.75", "coarse"), ("0.75", "fine")]
    data = json.loads((result.run_dir / "results.json").read_text())
    assert [c["level"] for c in data["competitors"]] == [0.5, 0.75] and len(data["contention_table"]) == 6
    assert Path(result.files["plot"]).read_bytes().startswith(PNG_MAGIC)
    assert (result.run_dir / "hosts" / "m1" / "fine-s0.001-c0.75.err.log").is_file()


def test_ctrl_c_in_a_contended_submit_stops_the_competitor_and_writes_what_ran(tmp_path, monkeypatch):
    FakeCompetitor.made = []
    calls = []

    def interrupted(target, script, **kwargs):
        calls.append(script)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return FakeSubmit()(target, script, **kwargs)

    monkeypatch.setattr(km, "put_and_run", interrupted)
    monkeypatch.setattr(km, "Competitor", FakeCompetitor)
    with pytest.raises(KeyboardInterrupt):
        km.run_kmeans(VerbContext(inventory(MESOS, tmp_path), state_root=tmp_path / "state"),
                      options=km.KmeansOptions(scale_factors=(0.001,), trials=1,
                                               contention=ContentionOptions(levels=(0.5,))))
    assert [c.stopped for c in FakeCompetitor.made] == [True]
    [run] = list_runs(tmp_path / "state", "t1")
    assert json.loads((run.path / "results.json").read_text())["submits"][0]["mode"] == "coarse"


def test_a_submit_is_not_run_when_the_competitor_does_not_hold_its_share(tmp_path, monkeypatch):
    class NeverHolds(FakeCompetitor):
        def wait_holding(self):
            return "the competing framework did not hold 0.5 of every agent within 180 s"

    fake = FakeSubmit()
    monkeypatch.setattr(km, "put_and_run", fake)
    monkeypatch.setattr(km, "Competitor", NeverHolds)
    result = km.run_kmeans(VerbContext(inventory(MESOS, tmp_path), state_root=tmp_path / "state"),
                           options=km.KmeansOptions(scale_factors=(0.001,), trials=1,
                                                    contention=ContentionOptions(levels=(0.5,))))
    assert not fake.scripts and result.exit_code() == EXIT_NOTHING
    assert [(f.mode, f.contention) for f in result.failures] == [("coarse", 0.5), ("fine", 0.5)]
    assert {s.outcome for s in result.submits} == {"failed"}


def test_contention_needs_mesos(tmp_path, monkeypatch):
    monkeypatch.setattr(km, "put_and_run", FakeSubmit())
    with pytest.raises(ConfigError, match="needs Spark on Mesos"):
        km.run_kmeans(VerbContext(inventory(STANDALONE, tmp_path), state_root=tmp_path / "state"),
                      options=km.KmeansOptions(scale_factors=(0.001,), trials=1,
                                               contention=ContentionOptions(levels=(0.0, 0.5))))


def test_the_cli_shows_the_contention_table_and_which_mode_trained_faster(tmp_path, capsys):
    from k1prov.cli.bench_cmd import show

    result = BenchResult(cluster="c1", manager="mesos", master_url="m", submit_host="h", run_dir=tmp_path,
                         trials_per_run=3, ignore_first=0, contention={"levels": [0.0, 0.5]})
    result.trials = [Trial("coarse", 0.001, 1, 7.0, 0.4, 1.0, contention=c) for c in (0.0, 0.5)]
    result.trials.append(Trial("fine", 0.001, 1, 9.0, 0.6, 1.0, contention=0.0))
    result.submits = [Submit("coarse", 0.001, 0.0, 30.0), Submit("fine", 0.001, 0.0, 35.0),
                      Submit("coarse", 0.001, 0.5, 41.2, 22.3, 0.5, 0.375, 0.375),
                      Submit("fine", 0.001, 0.5, 300.5, None, 0.5, 0.4375, 0.5, outcome="no resources")]
    show(result)
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert "no resources" in out and "300.50" in out and "0.38" in out
    assert "0/s=0.001: coarse, 0.5/s=0.001: coarse" in " ".join(captured.err.split())


@pytest.mark.parametrize("given,argv,expected", [
    ("k1prov-bench-kmeans-coarse-s0.01", [], "k1prov-bench-kmeans-coarse-s0.01"),   # spark-submit --name
    ("from-submit", ["--app-name", "asked"], "asked"),
])
def test_the_job_keeps_the_name_spark_submit_gave_it(monkeypatch, given, argv, expected):
    """The bench names each job (--name k1prov-bench-kmeans-<mode>-s<scale>); the job must not
    set a name of its own over it: every job was 'k1prov-bench-kmeans' in Mesos, the Spark
    UI and the logs (found by the fault test of a Mesos leader killed mid-bench)."""
    import sys
    import types

    from k1prov.bench import kmeans_job

    class Stop(Exception):
        pass

    class SparkConf:
        # Made before the SparkContext, PySpark's SparkConf is a plain dict: it does not see
        # the name spark-submit gave; whatever it holds is set over that name.
        def __init__(self):
            self.values = {}

        def contains(self, key):
            return key in self.values

        def setAppName(self, name):
            self.values["spark.app.name"] = name
            return self

    made = {}

    def spark_context(conf):
        made["name"] = conf.values.get("spark.app.name", given)
        raise Stop

    pyspark = types.ModuleType("pyspark")
    pyspark.SparkConf, pyspark.SparkContext = SparkConf, spark_context
    mllib = types.ModuleType("pyspark.mllib")
    clustering = types.ModuleType("pyspark.mllib.clustering")
    clustering.KMeans = object
    monkeypatch.setitem(sys.modules, "pyspark", pyspark)
    monkeypatch.setitem(sys.modules, "pyspark.mllib", mllib)
    monkeypatch.setitem(sys.modules, "pyspark.mllib.clustering", clustering)
    args = ["--num-points", "10", "--num-columns", "2", "--centers", "2", "--iterations", "1",
            "--num-partitions", "1", "--seed", "1", "--trials", "1", *argv]
    with pytest.raises(Stop):
        kmeans_job.main(args)
    assert made["name"] == expected
