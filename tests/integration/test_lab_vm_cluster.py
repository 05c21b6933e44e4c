"""`cluster up` on the VM lab: ZooKeeper on real machines under their own systemd (issue 20).

One lean sequence on the two machines of a VM lab (vm01 behind IPMI, vm02 behind Redfish),
with the inventory `k1prov lab inventory --kind vm` writes (every machine a ZooKeeper member):

1. `cluster up`: enroll, images, deploy (the real agent writes the user image, the machine
   boots it from its disk), SSH, configure. The role scripts take their systemd branch:
   k1prov-zookeeper.service enabled and active on each machine, the ensemble serving
   (a leader and a follower).
2. vm01 powered off and on through its BMC with ipmitool (no k1prov command, no Ironic):
   it boots from its disk, systemd starts ZooKeeper and the ensemble serves again.
3. ZooKeeper's main process on vm02 killed with SIGKILL: systemd starts it again.
4. `reimage vm02`: rebuilt from the image and configured back; it rejoins the ensemble.
5. `cluster down --unenroll`: nothing left enrolled in the lab's Ironic.

Each step's time is printed (pytest -s). Under TCG on this 2-core machine the file takes
about half an hour (two deploys' worth: `cluster up` and the reimage), so it runs only with
`-m vm` or K1PROV_TEST_VM_DEPLOY=1, like test_lab_vm.py's deploy, and is skipped with the
reason when the VM images (scripts/vm-lab/build-ipa-ramdisk.sh, build-user-image.sh) are not
built. The lab fixtures (bridge, subnet and ports from K1PROV_TEST_VM_LAB_*) are
test_lab_vm.py's.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labhosts import lab_connection, openssh, wait_for, zk_srvr
from test_lab_vm import (DEPLOY_TEST_TIMEOUT, gated_vm_work, _ipmi, _status, _timeline,  # noqa: F401
                         _wait_state, vm_env, vm_lab)

from k1prov.lab.vm_inventory import render_vm_inventory, vm_ssh_key

pytestmark = [pytest.mark.vm]

K1PROV = Path(sys.executable).with_name("k1prov")
UNIT = "k1prov-zookeeper.service"
RECIPE = Path(__file__).resolve().parents[2] / "scripts" / "vm-lab" / "build-user-image.sh"
# Bounds, not goals (a loaded 2-core machine under TCG): a machine booting from its disk to
# sshd and ZooKeeper serving took 1-2 min here; a JVM restarted by systemd, seconds.
BACK_TIMEOUT = 900.0
RESTART_TIMEOUT = 300.0
SSH_TIMEOUT = 120.0
POLL = 2.0


def _user_image_why_not() -> str:
    """The user image of this recipe (the one with ZooKeeper), not an older cached one."""
    key = hashlib.sha256(RECIPE.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("K1PROV_IMAGE_CACHE") or "~/.cache/k1prov/images").expanduser()
    image = cache / f"k1prov-vm-user-{key}.qcow2"
    return "" if image.exists() else f"the user image of this recipe is not built ({RECIPE}; {image})"


def _k1prov(env: dict, *argv: str, timeout: float = DEPLOY_TEST_TIMEOUT) -> dict:
    """One k1prov verb as an operator runs it; its --json report."""
    res = subprocess.run([str(K1PROV), *argv, "--json", "-i", str(env["inv"])], capture_output=True,
                         text=True, timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **env["env"]})
    assert res.returncode == 0, (argv, res.stdout[-4000:], res.stderr[-4000:])
    return json.loads(res.stdout)


def _note(env: dict, step: str, seconds: float) -> None:
    env["times"][step] = seconds
    print(f"\n{step}: {seconds:.0f} s", flush=True)


def _ssh(env: dict, address: str, command: str, *, check: bool = True) -> subprocess.CompletedProcess:
    res = openssh(env["key"], env["known_hosts"], address, command, timeout=SSH_TIMEOUT)
    assert res.returncode == 0 or not check, (address, command, res.stdout, res.stderr)
    return res


def _ssh_answers(env: dict, address: str) -> bool:
    try:
        return _ssh(env, address, "true", check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _zk_mode(address: str) -> str:
    """The member's mode from ZooKeeper's `srvr` ("leader", "follower"), over the lab's bridge
    from this machine; "" when it does not answer or does not serve (no quorum yet)."""
    for line in zk_srvr(address).splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return ""


def _ensemble_serves(env: dict) -> list[str] | None:
    modes = [_zk_mode(a) for a in env["addresses"].values()]
    return modes if sorted(modes) == ["follower", "leader"] else None


def _main_pid(env: dict, address: str) -> int:
    return int(_ssh(env, address, f"systemctl show -p MainPID --value {UNIT}").stdout.strip() or 0)


@pytest.fixture(scope="module")
def cluster(vm_lab, tmp_path_factory, request):
    """`cluster up` on both machines of the VM lab; per-node boot steps and phases printed."""
    d, k1prov_env = gated_vm_work(
        vm_lab, tmp_path_factory, request.config, name="vmcluster", why_not=_user_image_why_not(),
        skip="the VM cluster runs with -m vm or K1PROV_TEST_VM_DEPLOY=1 (16 min under TCG beside another VM lab)")
    inv = d / "lab-vm.yaml"
    inv.write_text(render_vm_inventory(vm_lab.settings))
    env = {"inv": inv, "times": {}, "key": vm_ssh_key(vm_lab.settings),
           "known_hosts": d / "state" / "lab-vm" / "known_hosts", "env": k1prov_env,
           "machines": {}, "addresses": {}}
    t0, wall = time.monotonic(), time.time()
    up = _k1prov(env, "cluster", "up")
    _note(env, "cluster up", time.monotonic() - t0)
    print("cluster up phases: " + ", ".join(f"{p['phase']} {p['seconds']:.0f} s" for p in up["phases"]))
    listed = _k1prov(env, "nodes", "list")
    uuids = {r["node"]: r["uuid"] for r in listed["nodes"]}
    for name, m in zip(("vm01", "vm02"), _status()["machines"]):
        env["machines"][name], env["addresses"][name] = m, m["address"]
        steps = _timeline(vm_lab, m, uuids[name], wall)
        print(f"{name} ({m['bmc']['type']}), from cluster up's start: " + ", ".join(
            f"{k} {v:.0f} s" if v is not None else f"{k} ?" for k, v in steps.items()))
    yield env
    print("\nVM cluster timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in env["times"].items()))


@pytest.mark.timeout(DEPLOY_TEST_TIMEOUT)
def test_cluster_up_runs_zookeeper_as_systemd_units_on_every_vm(cluster):
    for name, address in cluster["addresses"].items():
        out = _ssh(cluster, address, f"cat /proc/1/comm; systemctl is-enabled {UNIT}; "
                   f"systemctl is-active {UNIT}; ls /var/lib/k1prov/run 2>/dev/null | wc -l").stdout.split()
        # PID 1 systemd runs the scripts' unit; no pid file of the fallback branch.
        assert out == ["systemd", "enabled", "active", "0"], (name, out)
    t0 = time.monotonic()
    modes = wait_for("the ensemble serves", lambda: _ensemble_serves(cluster), timeout=BACK_TIMEOUT, interval=POLL)
    _note(cluster, "ZooKeeper serving after cluster up", time.monotonic() - t0)
    print(f"modes: {modes}")


def test_power_cycle_through_ipmi_brings_zookeeper_back(vm_lab, cluster):
    m, address = cluster["machines"]["vm01"], cluster["addresses"]["vm01"]
    assert m["bmc"]["type"] == "ipmi"
    t0 = time.monotonic()
    _ipmi(vm_lab, m, "power", "off")
    _wait_state(vm_lab, m["name"], "shut off")
    assert _zk_mode(address) == ""
    _ipmi(vm_lab, m, "power", "on")
    wait_for("vm01 answers SSH", lambda: _ssh_answers(cluster, address), timeout=BACK_TIMEOUT, interval=POLL)
    _note(cluster, "power cycle (ipmitool): SSH back", time.monotonic() - t0)
    modes = wait_for("the ensemble serves again", lambda: _ensemble_serves(cluster), timeout=BACK_TIMEOUT,
                     interval=POLL)
    _note(cluster, "power cycle (ipmitool): ZooKeeper serving", time.monotonic() - t0)
    print(f"modes: {modes}")
    # A new boot (systemd started the unit), not a process that survived.
    assert float(_ssh(cluster, address, "cut -d. -f1 /proc/uptime").stdout) < time.monotonic() - t0 + 60
    assert _ssh(cluster, address, f"systemctl is-active {UNIT}").stdout.strip() == "active"


def test_systemd_restarts_a_killed_zookeeper(cluster):
    address = cluster["addresses"]["vm02"]
    wait_for("the ensemble serves", lambda: _ensemble_serves(cluster), timeout=BACK_TIMEOUT, interval=POLL)
    old = _main_pid(cluster, address)
    assert old > 0
    restarts = int(_ssh(cluster, address, f"systemctl show -p NRestarts --value {UNIT}").stdout.strip() or 0)
    t0 = time.monotonic()
    _ssh(cluster, address, f"kill -KILL {old}")
    wait_for("a new ZooKeeper main process", lambda: _main_pid(cluster, address) not in (0, old),
             timeout=RESTART_TIMEOUT, interval=POLL)
    assert int(_ssh(cluster, address, f"systemctl show -p NRestarts --value {UNIT}").stdout.strip()) == restarts + 1
    wait_for("the ensemble serves again", lambda: _ensemble_serves(cluster), timeout=RESTART_TIMEOUT, interval=POLL)
    _note(cluster, "kill -9: ZooKeeper serving again", time.monotonic() - t0)


@pytest.mark.timeout(DEPLOY_TEST_TIMEOUT)
def test_reimage_rejoins_the_ensemble(cluster):
    t0 = time.monotonic()
    _k1prov(cluster, "reimage", "vm02")
    _note(cluster, "reimage vm02 (rebuild + configure)", time.monotonic() - t0)
    address = cluster["addresses"]["vm02"]
    # A new disk: the role script wrote its myid again, systemd runs the unit.
    assert _ssh(cluster, address, f"cat /var/lib/zookeeper/myid; systemctl is-active {UNIT}").stdout.split() \
        == ["2", "active"]
    wait_for("the ensemble serves", lambda: _ensemble_serves(cluster), timeout=BACK_TIMEOUT, interval=POLL)
    _note(cluster, "reimage vm02: ZooKeeper serving", time.monotonic() - t0)


def test_cluster_down_unenroll_leaves_nothing_enrolled(vm_lab, cluster):
    t0 = time.monotonic()
    _k1prov(cluster, "cluster", "down", "--unenroll", "--yes")
    _note(cluster, "cluster down --unenroll", time.monotonic() - t0)
    conn = lab_connection(vm_lab.settings.ironic_settings())
    assert [n.name for n in conn.baremetal.nodes()] == []
    for m in cluster["machines"].values():
        assert vm_lab.libvirt.state(m["name"]) == "shut off"
