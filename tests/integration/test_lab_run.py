"""`k1prov run` on lab hosts (booted from the lab image: own network, pid and mount
namespaces, real sshd): script arguments, and what happens on the host when k1prov gives
up on a command (its timeout, the run's deadline, SIGINT, k1prov killed outright).

After every give-up the test looks on the host itself (`pgrep -fx`) that nothing of the
command is left, within a bounded wait.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from labhosts import booted_hosts, host_inventory_text

from k1prov.fanout import Policy, Status, run_fanout
from k1prov.inventory import load_inventory
from k1prov.context import VerbContext
from k1prov.ssh import put_and_run, run_command

pytestmark = pytest.mark.lab

BRIDGE, CIDR = "k1pops0", "10.252.13.1/24"
CLUSTER = "opstest"
NAMES = ("ops1", "ops2")
K1PROV = Path(sys.executable).with_name("k1prov")
CONNECT = 10.0
# Bounded waits for a process to go away on a loaded machine.
GONE_TIMEOUT = 20.0
APPEAR_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("opsrun")
    with booted_hosts(tmp, lab_image_path(), bridge=BRIDGE, cidr=CIDR, cluster=CLUSTER,
                      names=NAMES, first_host=40) as booted:
        path = tmp / "inventory.yaml"
        path.write_text(host_inventory_text(
            cluster=CLUSTER, keys_dir=booted.keys, addresses=booted.addresses,
            roles={name: [] for name in NAMES}, role_settings="",
            first_bmc_port=6950, mac_prefix="52:54:00:0b:00"))
        yield {"path": path, "inv": load_inventory(path), "state_root": booted.state_root,
               "tmp": tmp}
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()


def _env(hosts) -> dict[str, str]:
    return {**os.environ, "K1PROV_STATE_DIR": str(hosts["state_root"]), "COLUMNS": "250"}


def k1prov(hosts, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(K1PROV), "run", "-i", str(hosts["path"]), *args],
                          capture_output=True, text=True, timeout=timeout, env=_env(hosts),
                          stdin=subprocess.DEVNULL)


def errors(stdout: str) -> dict[str, str]:
    """host -> error of a `run --json` report."""
    return {r["key"]: r["error"] for r in json.loads(stdout)["results"]}


def _target(hosts, name: str):
    known = hosts["state_root"] / CLUSTER / "known_hosts"
    return VerbContext(hosts["inv"]).ssh_target(hosts["inv"].node(name), known)


def running(hosts, name: str, cmdline: str) -> list[str]:
    """Processes on host `name` whose whole command line is `cmdline`."""
    res = run_command(_target(hosts, name), f"pgrep -fx {cmdline!r} || true",
                      connect_timeout=CONNECT, command_timeout=30)
    return res.stdout.split()


def wait_gone(hosts, name: str, cmdline: str) -> None:
    until = time.monotonic() + GONE_TIMEOUT
    while running(hosts, name, cmdline):
        assert time.monotonic() < until, f"{cmdline!r} still runs on {name}"
        time.sleep(0.5)


def wait_running(hosts, name: str, cmdline: str) -> None:
    until = time.monotonic() + APPEAR_TIMEOUT
    while not running(hosts, name, cmdline):
        assert time.monotonic() < until, f"{cmdline!r} never started on {name}"
        time.sleep(0.3)


# ---- item 7: the script's arguments ------------------------------------------------------

def test_script_gets_its_arguments_one_by_one(hosts, tmp_path):
    script = tmp_path / "args.sh"
    script.write_text('#!/bin/sh\necho "count=$#"\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n')
    args = ["plain", "two words", "it's", '"dq"', "$HOME", "*", "", "semi;colon", "-n"]
    result = k1prov(hosts, "--script", str(script), "--json", "--", *args)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    outputs = {r["key"]: r["output"] for r in data["results"]}
    expected = f"count={len(args)}\n" + "".join(f"[{a}]\n" for a in args)
    assert outputs == {name: expected for name in NAMES}


def test_script_without_arguments_still_runs(hosts, tmp_path):
    script = tmp_path / "none.sh"
    script.write_text('#!/bin/sh\necho "count=$#"\n')
    result = k1prov(hosts, "--script", str(script), "--limit", "ops1")
    assert result.returncode == 0, result.stderr
    assert "count=0" in result.stdout


# ---- item 9: what k1prov gives up on is ended on the host ------------------------------

def test_a_timed_out_command_and_its_children_are_ended_on_the_host(hosts):
    result = k1prov(hosts, "--limit", "ops1", "--timeout", "3", "--json", "--",
                    "sleep 77 & sh -c 'sleep 78'; echo never")
    assert result.returncode == 4, result.stdout + result.stderr
    assert errors(result.stdout) == {
        "ops1": "ops1: command timed out after 3s; ended on the host (SIGTERM to its session)"}
    for cmdline in ("sleep 77", "sleep 78"):
        wait_gone(hosts, "ops1", cmdline)


def test_a_command_that_ignores_sigterm_is_killed(hosts):
    result = k1prov(hosts, "--limit", "ops2", "--timeout", "2", "--json", "--",
                    "trap '' TERM; sleep 79; sleep 79")
    assert result.returncode == 4
    assert errors(result.stdout)["ops2"].startswith(
        "ops2: command timed out after 2s; killed on the host (SIGKILL")
    wait_gone(hosts, "ops2", "sleep 79")


def test_sigint_ends_the_command_on_every_host(hosts):
    # A test started in the background inherits SIGINT ignored: give k1prov the default.
    proc = subprocess.Popen([str(K1PROV), "run", "-i", str(hosts["path"]), "--json", "--",
                             "sleep 81"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(hosts), stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for name in NAMES:
            wait_running(hosts, name, "sleep 81")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert errors(stdout) == {name: f"{name}: interrupted; ended on the host (SIGTERM to its session)"
                              for name in NAMES}
    for name in NAMES:
        wait_gone(hosts, name, "sleep 81")


def test_k1prov_killed_outright_leaves_nothing_behind(hosts):
    """SIGKILL gives k1prov no chance to clean up: the watchdog on the host ends the
    command when its SSH session goes away."""
    proc = subprocess.Popen([str(K1PROV), "run", "-i", str(hosts["path"]), "--limit", "ops1",
                             "--", "sleep 82"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(hosts), stdin=subprocess.DEVNULL)
    try:
        wait_running(hosts, "ops1", "sleep 82")
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_gone(hosts, "ops1", "sleep 82")


def test_a_pushed_script_past_its_timeout_is_ended_and_its_directory_removed(hosts):
    """Configure's role scripts go through put_and_run: the same ending applies."""
    target = _target(hosts, "ops2")
    with pytest.raises(Exception) as info:
        put_and_run(target, "#!/bin/sh\nsleep 83\n", remote_dir_prefix="/tmp/opsrun.",
                    connect_timeout=CONNECT, command_timeout=2)
    assert "command timed out after 2s; ended on the host" in str(info.value)
    wait_gone(hosts, "ops2", "sleep 83")
    left = run_command(target, "ls -d /tmp/opsrun.* 2>/dev/null || true", connect_timeout=CONNECT,
                       command_timeout=30)
    assert left.stdout.strip() == ""


def test_the_run_deadline_ends_what_is_running(hosts):
    """The engine's run deadline (Policy.deadline) asks running items to stop; the SSH
    layer ends the command on the host and the row says so (health checks and configure
    scripts run through the same engine and the same run_command/put_and_run)."""
    targets = [_target(hosts, name) for name in NAMES]
    policy = Policy(kind="ssh.test", endpoint="ssh", concurrency=2, deadline=4.0, retries=0,
                    item_timeout=120, cancel_wait=10.0)
    report = run_fanout(targets, lambda t: run_command(t, "sleep 84", connect_timeout=CONNECT,
                                                       command_timeout=120),
                        key=lambda t: t.host, policy=policy)
    assert report.deadline_hit
    for result in report.results:
        assert result.status is Status.TIMEOUT
        assert result.error.endswith("run deadline reached; ended on the host (SIGTERM to its session)")
    for name in NAMES:
        wait_gone(hosts, name, "sleep 84")
