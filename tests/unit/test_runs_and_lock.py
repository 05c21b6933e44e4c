"""Run records and the cluster lock, with real files and a real second process."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from k1prov.errors import ConfigError, LockError
from k1prov.lock import cluster_lock
from k1prov.run_records import RunRecord, list_runs, load_run


def test_run_record_writes_report_trace_and_logs(tmp_path):
    rec = RunRecord(tmp_path, "c1", "configure")
    rec.host_log("node1", "zookeeper.log").write_text("hello\n")
    report = {"verb": "configure", "phases": [{"phase": "zookeeper", "trace": [[0.0, 4, 1.5]]}]}
    rec.finish(report, exit_code=3)
    runs = list_runs(tmp_path, "c1")
    assert [r.id for r in runs] == [rec.id]
    assert runs[0].exit_code == 3 and runs[0].verb == "configure"
    assert json.loads((rec.path / "trace.json").read_text()) == {"zookeeper": [[0.0, 4, 1.5]]}
    loaded = load_run(tmp_path, "c1", "latest")
    assert loaded["report"]["verb"] == "configure"
    assert (rec.path / "hosts/node1/zookeeper.log").read_text() == "hello\n"


def test_two_runs_in_one_second_get_distinct_directories(tmp_path):
    a, b = RunRecord(tmp_path, "c", "up"), RunRecord(tmp_path, "c", "up")
    assert a.path != b.path
    unfinished = {r.id: r for r in list_runs(tmp_path, "c")}
    assert unfinished[a.id].exit_code is None


def test_unknown_run_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no run 'nope'"):
        load_run(tmp_path, "c", "nope")


def test_second_holder_gets_error_naming_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from k1prov.lock import cluster_lock
        with cluster_lock(Path({str(tmp_path / 'c')!r}), verb="cluster-up", wait=0):
            print("held", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError, match=rf"locked by k1prov cluster-up \(pid {holder.pid} "):
            with cluster_lock(tmp_path / "c", verb="cluster-up", wait=0.3):
                pass
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=10)
    # Once the holder has exited, the lock is free again.
    with cluster_lock(tmp_path / "c", verb="cluster-up", wait=0):
        pass
