"""k1prov.bench.drf without a cluster: options, the shipped script, the analysis and files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from k1prov.bench.drf import (DrfOptions, DrfResult, FrameworkSpec, analyse, command, dominant,
                              parse_frameworks, write_outputs)
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
    assert "--framework drf1:0.25:64 --framework drf2:0.1:128" in text and "--duration 30" in text
    proc = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(InventoryError, match="no node has the mesos-master role"):
        command(inventory(mesos=False), DrfOptions())


def test_the_frameworks_file_is_plain_python3():
    source = Path(__file__).resolve().parents[2] / "k1prov" / "bench" / "drf_frameworks.py"
    proc = subprocess.run([sys.executable, str(source), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--framework" in proc.stdout


def sample(t, a, b, total=(4.0, 3072.0), weights=(1.0, 2.0)):
    return {"event": "sample", "t": t, "total": {"cpus": total[0], "mem": total[1]},
            "roles": {"drf1": {"cpus": a[0], "mem": a[1], "weight": weights[0]},
                      "drf2": {"cpus": b[0], "mem": b[1], "weight": weights[1]}}}


def test_dominant_share_is_the_larger_of_cpus_and_mem():
    assert dominant(1.0, 256.0, {"cpus": 4.0, "mem": 3072.0}) == 0.25
    assert dominant(0.2, 1536.0, {"cpus": 4.0, "mem": 3072.0}) == 0.5
    assert dominant(1.0, 1.0, {}) == 0.0


def test_analysis_converges_on_the_last_third_and_files_are_written(tmp_path):
    # First one role has everything, then they settle at 0.375 / 0.75 (ratio 2).
    lines = [{"event": "leader", "master": "10.0.0.1:5050"}]
    lines += [sample(t, (2.0, 512.0), (0.0, 0.0)) for t in range(0, 6)]
    lines += [sample(t, (1.5, 384.0), (1.2, 2304.0)) for t in range(6, 18)]
    lines += [{"event": "done", "launched": {"drf1": 20, "drf2": 40}, "errors": []}]
    result = analyse(DrfResult(cluster="lab", run_dir=tmp_path, host="m0"), lines, ["drf1", "drf2"])
    assert result.leader == "10.0.0.1:5050" and result.weights == {"drf1": 1.0, "drf2": 2.0}
    assert result.samples[0]["drf1_share"] == 0.5 and result.samples[-1]["drf2_share"] == 0.75
    assert result.converged == {"drf1": 0.375, "drf2": 0.75}
    assert result.share_ratio == 2.0 and result.weight_ratio == 2.0
    assert result.launched == {"drf1": 20, "drf2": 40}
    assert result.exit_code() == 0
    write_outputs(result, ["drf1", "drf2"])
    assert Path(result.files["plot"]).read_bytes().startswith(PNG_MAGIC)
    rows = (tmp_path / "samples.csv").read_text().splitlines()
    assert rows[0] == "t,drf1_cpus,drf1_mem,drf1_share,drf2_cpus,drf2_mem,drf2_share" and len(rows) == 19
    assert json.loads((tmp_path / "results.json").read_text())["share_ratio"] == 2.0


def test_no_samples_is_nothing_measured(tmp_path):
    result = analyse(DrfResult(cluster="lab", run_dir=tmp_path, host="m0"),
                     [{"event": "error", "role": "drf1", "error": "SUBSCRIBE: HTTP 403"}], ["drf1", "drf2"])
    assert result.exit_code() == 4 and result.errors == ["SUBSCRIBE: HTTP 403"]
    write_outputs(result, ["drf1", "drf2"])
    assert Path(result.files["plot"]).read_bytes().startswith(PNG_MAGIC)
