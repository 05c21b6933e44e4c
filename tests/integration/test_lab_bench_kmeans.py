"""`bench kmeans` on a real Spark standalone cluster: a master and two workers on lab hosts.

Needs root (namespaces, mounts). The hosts boot from the lab image with HostBooter on a
bridge and subnet of their own; `k1prov.configure.apply` installs and starts the
Spark master and workers (as an operator's `k1prov configure` would), then the benchmark
runs against that cluster. Measurements are printed (pytest -s).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import time
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from labhosts import SPARK_ROLE_SETTINGS, booted_hosts, host_inventory_text
from typer.testing import CliRunner

from k1prov.bench.kmeans import KmeansOptions, run_kmeans
from k1prov.cli import app
from k1prov.configure import apply
from k1prov.context import VerbContext
from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.verb_report import EXIT_NOTHING, EXIT_OK
from k1prov.settings import DEFAULT_TIMEOUTS

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root"),
]

BRIDGE, CIDR = "k1pbench0", "10.252.11.1/24"
CLUSTER = "benchtest"
NAMES = ("bkm1", "bkm2", "bkm3")
TIMEOUTS = dataclasses.replace(DEFAULT_TIMEOUTS, health=90.0, ssh_command=300.0)
# Two scale factors x three trials, plus two JVM start-ups: about a minute here.
JOB_TIMEOUT = 600.0
# Scale factor 0.1 with 512 MiB executors: 800 MB of points, cached partly on disk.
LARGE_JOB_TIMEOUT = 1800.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def inventory_text(keys_dir: Path, addresses: dict[str, str]) -> str:
    roles = {NAMES[0]: ["spark-master"], NAMES[1]: ["spark-worker"], NAMES[2]: ["spark-worker"]}
    return host_inventory_text(cluster=CLUSTER, keys_dir=keys_dir, addresses=addresses, roles=roles,
                               role_settings=SPARK_ROLE_SETTINGS,
                               first_bmc_port=6950, mac_prefix="52:54:00:cb:00")


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    image = lab_image_path()
    tmp = tmp_path_factory.mktemp("bench")
    with booted_hosts(tmp, image, bridge=BRIDGE, cidr=CIDR, cluster=CLUSTER, names=NAMES,
                      first_host=30) as hosts:
        path = tmp / "inventory.yaml"
        path.write_text(inventory_text(hosts.keys, hosts.addresses))
        inv = load_inventory(path)
        report = apply(VerbContext(inv, state_root=hosts.state_root, timeouts=TIMEOUTS))
        failed = [(o.node, o.changes, o.error) for o in report.outcomes if o.status is not Status.OK]
        assert not failed, failed
        yield {"inv": inv, "path": path, "state_root": hosts.state_root, "addresses": hosts.addresses}
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()


@pytest.fixture(scope="module")
def standalone_run(spark_cluster):
    started = time.monotonic()
    result = run_kmeans(VerbContext(spark_cluster["inv"], state_root=spark_cluster["state_root"],
                                    timeouts=TIMEOUTS, notify=print),
                        options=KmeansOptions(scale_factors=(0.001, 0.01), modes=("coarse", "fine"),
                                              trials=3),
                        job_timeout=JOB_TIMEOUT)
    print(f"\nbench kmeans, scale factors 0.001 and 0.01, 3 trials: {time.monotonic() - started:.1f} s")
    for s in result.summaries:
        print(f"  {s.mode:10} s={s.scale_factor:<6g} {s.phase:8} median {s.median_s:7.3f} s "
              f"min {s.min_s:7.3f} s  max {s.max_s:7.3f} s  ({s.trials} trials)")
    print(f"  plot: {result.files.get('plot')}")
    return result


def test_runs_every_trial_at_both_scale_factors_on_the_standalone_manager(standalone_run):
    result = standalone_run
    assert not result.failures, result.failures
    assert result.exit_code() == EXIT_OK
    assert result.manager == "standalone" and result.submit_host == NAMES[0]
    # 3 trials: none ignored (the first two only go when there are 10 or more).
    assert result.ignore_first == 0
    got = sorted((t.mode, t.scale_factor, t.trial) for t in result.trials)
    assert got == [("standalone", s, n) for s in (0.001, 0.01) for n in (1, 2, 3)]
    assert all(t.train_s > 0 and t.test_s > 0 and t.cost > 0 and not t.ignored for t in result.trials)
    # Ten times the points and columns, each with noise of variance 1: a larger cost.
    cost = {t.scale_factor: t.cost for t in result.trials}
    assert cost[0.01] > cost[0.001]
    assert [(s.scale_factor, s.phase, s.trials) for s in result.summaries] == [
        (0.001, "training", 3), (0.001, "test", 3), (0.01, "training", 3), (0.01, "test", 3)]


def test_mesos_modes_are_reported_skipped_not_run(standalone_run):
    skipped = {s.mode: s.reason for s in standalone_run.skipped}
    assert set(skipped) == {"coarse", "fine"}
    assert all("standalone" in reason for reason in skipped.values())
    assert {t.mode for t in standalone_run.trials} == {"standalone"}
    data = json.loads(Path(standalone_run.files["json"]).read_text())
    assert {s["mode"] for s in data["skipped"]} == {"coarse", "fine"}
    assert {s["mode"] for s in data["summary"]} == {"standalone"}


def test_results_json_csv_and_plot_are_written_in_the_run_directory(standalone_run, spark_cluster):
    run_dir = standalone_run.run_dir
    assert run_dir.parent == spark_cluster["state_root"] / CLUSTER / "runs"
    assert run_dir.name.endswith("-bench-kmeans")
    data = json.loads((run_dir / "results.json").read_text())
    assert len(data["trials"]) == 6 and len(data["summary"]) == 4
    assert data["workloads"][1] == {"scale_factor": 0.01, "num_points": 10000, "num_columns": 100,
                                    "num_partitions": 4, "centers": 20, "iterations": 20, "seed": 5}
    with (run_dir / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {r["mode"] for r in rows} == {"standalone"}
    with (run_dir / "summary.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 4
    png = (run_dir / "kmeans.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_the_executors_ran_on_the_workers(standalone_run, spark_cluster):
    log = (standalone_run.run_dir / "hosts" / NAMES[0] / "standalone-s0.01.err.log").read_text()
    workers = "|".join(re.escape(spark_cluster["addresses"][n]) for n in NAMES[1:])
    assert re.search(r"Executor added: .* on worker-\S+-(" + workers + ")", log), log[-3000:]


def test_a_failing_submit_is_a_failure_row_not_a_crash(spark_cluster):
    result = run_kmeans(VerbContext(spark_cluster["inv"], state_root=spark_cluster["state_root"],
                                    timeouts=TIMEOUTS),
                        options=KmeansOptions(scale_factors=(0.001,), trials=1,
                                              python="/nonexistent/python3"),
                        job_timeout=JOB_TIMEOUT)
    assert [(f.mode, f.scale_factor) for f in result.failures] == [("standalone", 0.001)]
    assert "spark-submit exited" in result.failures[0].reason
    assert result.exit_code() == EXIT_NOTHING
    # The run is still written down, with its plot saying there is nothing to show.
    assert Path(result.files["plot"]).read_bytes().startswith(PNG_MAGIC)
    assert json.loads(Path(result.files["json"]).read_text())["failures"][0]["scale_factor"] == 0.001


def test_cli_prints_the_table_and_writes_under_the_state_directory(spark_cluster):
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "kmeans", "-i", str(spark_cluster["path"]),
                              "--scale-factors", "0.001", "--trials", "2", "--json"],
                        env={"K1PROV_STATE_DIR": str(spark_cluster["state_root"])})
    assert res.exit_code == EXIT_OK, res.output
    data = json.loads(res.stdout)
    assert [t["trial"] for t in data["trials"]] == [1, 2]
    assert Path(data["files"]["plot"]).is_file()
    assert Path(data["run_dir"]).parent == spark_cluster["state_root"] / CLUSTER / "runs"


@pytest.mark.skipif(os.environ.get("K1PROV_BENCH_LARGE") != "1",
                    reason="scale factor 0.1 (100k points x 1000 columns) takes minutes: "
                           "set K1PROV_BENCH_LARGE=1")
def test_scale_factor_0_1_with_small_executors(spark_cluster):
    started = time.monotonic()
    result = run_kmeans(VerbContext(spark_cluster["inv"], state_root=spark_cluster["state_root"],
                                    timeouts=TIMEOUTS, notify=print),
                        options=KmeansOptions(scale_factors=(0.1,), trials=1),
                        job_timeout=LARGE_JOB_TIMEOUT)
    print(f"\nbench kmeans, scale factor 0.1, 1 trial: {time.monotonic() - started:.1f} s")
    for s in result.summaries:
        print(f"  {s.mode:10} s=0.1 {s.phase:8} {s.median_s:8.3f} s")
    print(f"  failures: {result.failures}; plot: {result.files.get('plot')}")
    assert not result.failures, result.failures
    assert [t.trial for t in result.trials] == [1]
