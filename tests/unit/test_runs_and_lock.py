"""Run records and the cluster lock, with real files and a real second process."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from k1prov.errors import ConfigError, LockError
from k1prov.lock import cluster_lock
from k1prov.run_records import RunRecord, list_runs, load_run, locked_run


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


def test_a_lock_left_by_a_killed_run_is_taken_over_and_its_record_marked(tmp_path):
    """A real process takes the lock inside locked_run and is SIGKILLed holding it; the
    next run takes it over, says so, and marks the killed run as not finished."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from k1prov.run_records import locked_run
        with locked_run(Path({str(tmp_path)!r}), "c1", "configure", inventory=None, wait=0,
                        notify=print) as record:
            print(record.id, flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        killed_run = holder.stdout.readline().strip()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    said: list[str] = []
    with locked_run(tmp_path, "c1", "configure", inventory=None, wait=0, notify=said.append) as record:
        assert record.meta["took_over_from"]["pid"] == holder.pid
        record.finish({"verb": "configure"}, exit_code=0)
    assert len(said) == 1 and f"pid {holder.pid}" in said[0] and "taken over" in said[0]
    assert f"its run {killed_run} is marked as not finished" in said[0]
    runs = {r.id: r for r in list_runs(tmp_path, "c1")}
    assert runs[killed_run].not_finished.startswith("did not finish: k1prov configure (pid ")
    assert runs[killed_run].exit_code is None and runs[record.id].exit_code == 0
    assert not runs[record.id].not_finished
    # Let go cleanly: the next run takes over from nobody.
    with locked_run(tmp_path, "c1", "configure", inventory=None, wait=0, notify=said.append):
        pass
    assert len(said) == 1
