"""k1prov.lab.procs: detached services, pidfiles, ownership, process-group stop.

Real processes (sleep, sh) with sub-second waits; nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from k1prov.lab import procs


def spec(tmp_path: Path, argv: list[str], name: str = "svc", ports=()) -> procs.ServiceSpec:
    return procs.ServiceSpec(name=name, argv=tuple(argv), env=tuple(sorted(os.environ.items())),
                             cwd=tmp_path, ports=tuple(ports), fingerprint="fp1")


@pytest.fixture
def dirs(tmp_path):
    run, log = tmp_path / "run", tmp_path / "logs"
    yield run, log
    # Whatever a failed test left running of its own.
    for meta in run.glob("*.json") if run.exists() else []:
        procs.stop(run, meta.stem, grace=1.0)


def test_start_writes_pidfiles_and_stop_kills_the_whole_group(tmp_path, dirs):
    run, log = dirs
    # A leader with a child: the child must die too (gunicorn's worker, Ironic's workers).
    rec = procs.start(spec(tmp_path, ["sh", "-c", "sleep 60 & echo child $!; wait"]),
                      run_dir=run, log_dir=log)
    assert (run / "svc.pid").read_text() == f"{rec.pid}\n"
    assert os.getpgid(rec.pid) == rec.pid          # its own session and group
    deadline = time.monotonic() + 5
    while len(procs.group_members(rec.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = procs.group_members(rec.pid)
    assert len(members) == 2
    assert procs.read_running(run, "svc") == rec
    assert procs.stop(run, "svc", grace=2.0) is True
    assert procs.group_members(rec.pid) == []
    assert not (run / "svc.pid").exists() and not (run / "svc.json").exists()
    assert "child" in (log / "svc.log").read_text()


def test_stop_escalates_to_sigkill_after_the_grace(tmp_path, dirs):
    run, log = dirs
    rec = procs.start(spec(tmp_path, ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]),
                      run_dir=run, log_dir=log)
    time.sleep(0.2)
    t0 = time.monotonic()
    assert procs.stop(run, "svc", grace=0.5) is True
    assert 0.4 < time.monotonic() - t0 < 3
    assert not procs.process_alive(rec.pid)


def test_stop_is_idempotent(tmp_path, dirs):
    run, _ = dirs
    assert procs.stop(run, "never-started", grace=0.5) is False
    assert procs.stop(run, "never-started", grace=0.5) is False


def test_a_reused_pid_is_not_ours_and_is_not_signalled(tmp_path, dirs):
    run, _ = dirs
    run.mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        # Same pid as a stranger, but another start time: a pid reused after our service died.
        (run / "svc.json").write_text(json.dumps(
            {"pid": stranger.pid, "start_time": 1, "fingerprint": "fp1"}))
        (run / "svc.pid").write_text(f"{stranger.pid}\n")
        assert procs.read_running(run, "svc") is None
        assert procs.stop(run, "svc", grace=0.5) is False
        assert stranger.poll() is None
        assert not (run / "svc.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_dead_service_is_not_running(tmp_path, dirs):
    run, log = dirs
    rec = procs.start(spec(tmp_path, ["true"]), run_dir=run, log_dir=log)
    deadline = time.monotonic() + 5
    while procs.process_alive(rec.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert procs.read_running(run, "svc") is None


def test_start_of_a_missing_program_is_a_lab_error(tmp_path, dirs):
    from k1prov.errors import LabError
    run, log = dirs
    with pytest.raises(LabError, match="cannot start svc"):
        procs.start(spec(tmp_path, [str(tmp_path / "nope")]), run_dir=run, log_dir=log)


@pytest.mark.parametrize("proto, kind", [("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)])
def test_port_free_sees_a_bound_port(proto, kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        if proto == "tcp":
            s.listen()
        port = s.getsockname()[1]
        assert procs.port_free(proto, port) is False
        assert procs.wait_ports_free(((proto, port),), timeout=0.2) == [(proto, port)]
    assert procs.port_free(proto, port) is True


def test_group_rss_counts_members(tmp_path, dirs):
    run, log = dirs
    rec = procs.start(spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"]),
                      run_dir=run, log_dir=log)
    time.sleep(0.3)
    assert procs.group_rss_kib(rec.pid) > 1000     # a python interpreter is megabytes


@pytest.mark.parametrize("proto, kind", [("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)])
def test_port_holders_name_the_process_that_binds_the_port(proto, kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        if proto == "tcp":
            s.listen()
        port = s.getsockname()[1]
        holders = procs.port_holders(proto, port)
        assert len(holders) == 1 and holders[0].startswith(f"pid {os.getpid()} ("), holders
    assert procs.port_holders(proto, port) == []
