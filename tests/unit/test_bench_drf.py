"""k1prov.bench.drf without a cluster: options, the shipped script, the analysis and files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from k1prov.bench.drf import (DEFAULT_FRAMEWORKS, DrfOptions, DrfResult, FrameworkSpec, analyse, command,
                              dominant, fair_point, parse_frameworks, write_outputs)
from k1prov.errors import ConfigError, InventoryError
from k1prov.inventory.model import Bmc, Cloud, Inventory, Node, SecretRef

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def inventory(mesos: bool = True) -> Inventory:
    roles = ("zookeeper", "mesos-master") if mesos else ("zookeeper",)
    nodes = tuple(Node(name=f"m{i}", index=i, bmc=Bmc("127.0.0.1", 6230 + i, "admin", SecretRef(env="X")),
                       macs=(f"52:54:00:00:00:{i:02x}",), address=f"10.0.0.{i + 1}", roles=roles)
                  for i in range(3))
    return Inventory(path=Path("/inv/site.yaml"), cluster="lab", cloud=Cloud(), nodes=nodes,
                     roles={"mesos": {"weights": {"drf1": 1, "drf2": 2}}})


def test_parse_frameworks():
    assert parse_frameworks("a:0.5:128, b:1:64") == (FrameworkSpec("a", 0.5, 128.0), FrameworkSpec("b", 1.0, 64.0))
    for bad in ("a:0.5:128", "a:1:1,a:1:1", "a:x:1,b:1:1", "a:0:1,b:1:1", "a:1,b:1:1"):
        with pytest.raises(ConfigError, match="--frameworks"):
            parse_frameworks(bad)


def test_the_script_names_every_master_and_framework():
    text = command(inventory(), DrfOptions(duration=30, task_seconds=2))
    assert "--masters 10.0.0.1:5050,10.0.0.2:5050,10.0.0.3:5050" in text
    assert "--framework drf1:0.25:128 --framework drf2:0.05:128" in text and "--duration 30" in text
    assert "--tasks-per-offer 1" in text and "--control drf1-control,drf2-control" in text
    assert "--control drf1" not in command(inventory(), DrfOptions(control=False))
    proc = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(InventoryError, match="no node has the mesos-master role"):
        command(inventory(mesos=False), DrfOptions())


def test_the_frameworks_file_is_plain_python3():
    source = Path(__file__).resolve().parents[2] / "k1prov" / "bench" / "drf_frameworks.py"
    proc = subprocess.run([sys.executable, str(source), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--framework" in proc.stdout and "--control" in proc.stdout


LAB_AGENTS = [{"cpus": 2.0, "mem": 1536.0}, {"cpus": 2.0, "mem": 1536.0}]


def test_the_default_shapes_reach_the_weights_split_exactly_on_the_lab_agents():
    # 6 drf1 + 18 drf2 tasks fill the 24 memory slots: shares 0.375 (cpus) and 0.75 (memory).
    assert fair_point(LAB_AGENTS, DEFAULT_FRAMEWORKS, {"drf1": 1.0, "drf2": 2.0}) == {"drf1": 0.375, "drf2": 0.75}
    # Equal weights: near 1 (tasks are indivisible: 10 and 14 tasks).
    assert fair_point(LAB_AGENTS, DEFAULT_FRAMEWORKS, {}) == {"drf1": 0.625, "drf2": 0.5833}
    # The earlier default shapes could not reach 2 (the leftovers go to whoever still fits).
    old = (FrameworkSpec("drf1", 0.25, 64.0), FrameworkSpec("drf2", 0.1, 128.0))
    assert fair_point(LAB_AGENTS, old, {"drf1": 1.0, "drf2": 2.0}) == {"drf1": 0.5, "drf2": 0.8333}
    assert fair_point([], DEFAULT_FRAMEWORKS, {}) == {}


def sample(t, a, b, total=(4.0, 3072.0), weights=(1.0, 2.0), roles=("drf1", "drf2"), phase="weighted"):
    return {"event": "sample", "phase": phase, "t": t, "total": {"cpus": total[0], "mem": total[1]},
            "roles": {roles[0]: {"cpus": a[0], "mem": a[1], "weight": weights[0]},
                      roles[1]: {"cpus": b[0], "mem": b[1], "weight": weights[1]}}}


def test_dominant_share_is_the_larger_of_cpus_and_mem():
    assert dominant(1.0, 256.0, {"cpus": 4.0, "mem": 3072.0}) == 0.25
    assert dominant(0.2, 1536.0, {"cpus": 4.0, "mem": 3072.0}) == 0.5
    assert dominant(1.0, 1.0, {}) == 0.0


def test_the_steady_state_starts_once_the_cluster_is_full(tmp_path):
    # Filling (ratio anything), then full at 0.4 / 0.8 (ratio 2); the control at 0.55 / 0.6.
    lines = [{"event": "leader", "master": "10.0.0.1:5050"}, {"event": "flags", "allocation_interval": "100ms"},
             {"event": "leftovers", "frameworks": ["k1prov-bench-drf-drf1"]},
             {"event": "agents", "phase": "weighted", "agents": LAB_AGENTS}]
    lines += [sample(t, (0.25 * t, 128.0 * t), (0.05 * 3 * t, 128.0 * 3 * t)) for t in range(1, 6)]
    lines += [sample(t, (1.5, 768.0), (0.9, 2304.0)) for t in range(6, 20)]
    lines += [{"event": "done", "phase": "weighted", "launched": {"drf1": 20, "drf2": 40},
               "failed": {"drf1": 0, "drf2": 0}, "errors": []}]
    control = ("drf1-control", "drf2-control")
    lines += [{"event": "agents", "phase": "control", "agents": LAB_AGENTS}]
    lines += [sample(t, (2.5, 1280.0), (0.7, 1792.0), weights=(1.0, 1.0), roles=control, phase="control")
              for t in range(0, 15)]
    result = analyse(DrfResult(cluster="lab", run_dir=tmp_path, host="m0"), lines, DrfOptions())
    weighted, ctl = result.weighted, result.control
    assert result.leader == "10.0.0.1:5050" and result.allocation_interval == "100ms"
    assert result.torn_down == ["k1prov-bench-drf-drf1"]
    assert weighted.weights == {"drf1": 1.0, "drf2": 2.0} and weighted.weight_ratio == 2.0
    assert weighted.samples[0]["drf1_share"] == 0.0625 and weighted.samples[-1]["drf2_share"] == 0.75
    assert weighted.steady_from == 6.0 and weighted.steady_samples == 14
    assert weighted.converged == {"drf1": 0.375, "drf2": 0.75} and weighted.share_ratio == 2.0
    assert weighted.expected == {"drf1": 0.375, "drf2": 0.75} and weighted.expected_ratio == 2.0
    assert weighted.launched == {"drf1": 20, "drf2": 40}
    assert ctl.roles == list(control) and ctl.weight_ratio == 1.0 and ctl.share_ratio == 0.933
    assert ctl.expected_ratio == 0.933 and ctl.steady_from == 0.0
    assert result.exit_code() == 0 and not result.errors
    write_outputs(result)
    assert Path(result.files["plot"]).read_bytes().startswith(PNG_MAGIC)
    rows = (tmp_path / "samples.csv").read_text().splitlines()
    assert rows[0] == "phase,t,role,weight,cpus,mem,share" and len(rows) == 1 + 2 * (19 + 15)
    assert rows[-1].startswith("control,14.0,drf2-control,1.0,")
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["weighted", "control"]
    assert data["runs"][0]["expected_ratio"] == 2.0


def test_too_short_a_run_has_no_ratio_and_says_so(tmp_path):
    lines = [sample(t, (0.25 * t, 128.0 * t), (0.15 * t, 384.0 * t)) for t in range(1, 8)]
    result = analyse(DrfResult(cluster="lab", run_dir=tmp_path, host="m0"), lines, DrfOptions(control=False))
    assert result.weighted.share_ratio is None and result.exit_code() == 4
    assert "no steady state to measure" in result.errors[0]


def test_failed_tasks_are_errors(tmp_path):
    lines = [sample(t, (1.5, 768.0), (0.9, 2304.0)) for t in range(0, 12)]
    lines += [{"event": "task_failed", "phase": "weighted", "role": "drf2", "state": "TASK_FAILED",
               "message": "Failed to launch container"}]
    result = analyse(DrfResult(cluster="lab", run_dir=tmp_path, host="m0"), lines, DrfOptions())
    assert result.weighted.share_ratio == 2.0 and result.exit_code() == 3    # PARTIAL
    assert result.errors == ["weighted: drf2: a task ended TASK_FAILED: Failed to launch container"]


def test_no_samples_is_nothing_measured(tmp_path):
    result = analyse(DrfResult(cluster="lab", run_dir=tmp_path, host="m0"),
                     [{"event": "error", "phase": "weighted", "role": "drf1", "error": "SUBSCRIBE: HTTP 403"}],
                     DrfOptions())
    assert result.exit_code() == 4 and result.errors == ["weighted: SUBSCRIBE: HTTP 403"]
    write_outputs(result)
    assert Path(result.files["plot"]).read_bytes().startswith(PNG_MAGIC)


def test_the_summary_shows_both_runs_and_says_when_the_weights_are_equal(tmp_path, capsys):
    from k1prov.cli.bench_cmd import show_drf

    lines = [sample(t, (1.5, 768.0), (0.9, 2304.0), weights=(1.0, 1.0)) for t in range(0, 12)]
    result = analyse(DrfResult(cluster="lab", run_dir=tmp_path, host="m0"), lines, DrfOptions())
    show_drf(result)
    captured = capsys.readouterr()
    assert "weighted" in captured.out and "drf1 1, drf2 1" in captured.out
    assert "have equal weights on this master" in " ".join(captured.err.split())
