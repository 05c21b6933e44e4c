"""Lab hosts with systemd as PID 1 (`lab up --host-init systemd`, issue 20 item 3).

One node, `sysd01`, deployed through the session lab's Ironic and Glance (the real agent
writes its disk; the machine boots systemd from it as a systemd container does) and
configured by `cluster up` with ZooKeeper and a standalone Spark master and worker: the
role scripts take their systemd branch, as on a real machine.

- The power-cycle test: the machine's power goes off and on through its BMC (ipmitool,
  as an operator or a power cut would; no k1prov command). While off, nothing of the
  host is left on this machine: no process in its pid namespace or its cgroup, no cgroup
  of its systemd. Once on, systemd starts the units the role scripts enabled: ZooKeeper
  answers `srvr` (and still has the znode written before), Spark's master has its worker.
- The restart test: ZooKeeper's main process is SIGKILLed; systemd starts it again
  (Restart=on-failure) and it answers.

The session lab when it boots systemd hosts (K1PROV_TEST_LAB_HOST_INIT=systemd, or the lab's
default when it is systemd); otherwise a lab of its own with one machine and
`host_init="systemd"`, on the session lab's bridge and subnet and its ports + PORT_SHIFT.
Times are printed (pytest -s).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from lab_fixture import beside_session_lab, bring_up
from labhosts import (SPARK_ROLE, ZOOKEEPER_ROLE, deploy_settings_text, lab_connection, lab_inventory_text,
                      lab_ip, openssh, tear_down_cluster, wait_for, write_deploy_inputs, zk_srvr)

from k1prov.lab import Lab
from k1prov.lab.hosts import HostBooter
from k1prov.lab.machine import machine_mac, machine_name
from k1prov.lab.netns import netns_exists, netns_name
from k1prov.verb_report import EXIT_OK

pytestmark = pytest.mark.lab

CLUSTER = "sysd"
NAME = "sysd01"
# BMC port lab base + 26 in the session lab (its own lab's only machine otherwise) and
# address .191: no other test uses them.
BMC_OFFSET = 26
# The own lab's ports: the session lab's offset plus this (test_lab_auth's lab is at +300,
# the conductors' at +500, test_lab_redfish's at +700).
PORT_SHIFT = 900
FIRST_ADDRESS = 191
K1PROV = Path(sys.executable).with_name("k1prov")
UNIT = "k1prov-zookeeper.service"
# `cluster up` from nothing: the 1 GB image to Glance, a deploy, configure, health.
UP_TIMEOUT = 1200.0
SSH_TIMEOUT = 30.0
IPMI_TIMEOUT = 30.0
# The lab stops a machine within a second or two of its BMC going off, boots it within a
# few after it goes on; ZooKeeper's JVM then takes seconds. Generous: a loaded machine.
POWER_OFF_TIMEOUT = 60.0
BACK_TIMEOUT = 240.0
RESTART_TIMEOUT = 120.0
ZKCLI_TIMEOUT = 120.0
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181"
POLL = 0.5


@pytest.fixture(scope="module")
def systemd_lab(lab, tmp_path_factory):
    """The session lab if its hosts boot systemd, else a lab of its own that boots them."""
    if lab.settings.host_init == "systemd":
        yield lab, BMC_OFFSET
        return
    s = beside_session_lab(tmp_path_factory.mktemp("sdlab"), shift=PORT_SHIFT,
                           bridge=lab.settings.bridge, cidr=lab.settings.cidr, host_init="systemd")
    own = Lab(s)
    bring_up(own)
    try:
        yield own, 0
    finally:
        own.down()


@pytest.fixture(scope="module")
def env(systemd_lab, tmp_path_factory):
    lab, bmc_offset = systemd_lab
    s = lab.settings
    d = tmp_path_factory.mktemp("systemd")
    write_deploy_inputs(d, key_comment=CLUSTER)
    port = s.bmc_base_port + bmc_offset
    address = lab_ip(s, FIRST_ADDRESS)
    node = (f"  - name: {NAME}\n    roles: [zookeeper, spark-master, spark-worker]\n"
            f"    bmc: {{port: {port}}}\n    macs: [\"{machine_mac(port)}\"]\n"
            f"    address: {address}\n")
    inv = d / f"{CLUSTER}.yaml"
    inv.write_text(lab_inventory_text(
        s, cluster=CLUSTER, nodes=node, role_settings="roles:\n" + ZOOKEEPER_ROLE + SPARK_ROLE,
        deploy=deploy_settings_text(d, image_prefix=CLUSTER, user_image=str(lab_image_path()))))
    state = d / "state"
    conn = lab_connection(s)
    env = {"dir": d, "inv": inv, "state": state, "settings": s, "port": port, "address": address,
           "times": {}}
    try:
        t0 = time.monotonic()
        up = subprocess.run([str(K1PROV), "cluster", "up", "--json", "-i", str(inv)], capture_output=True,
                            text=True, timeout=UP_TIMEOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "K1PROV_STATE_DIR": str(state)})
        env["times"]["cluster up"] = time.monotonic() - t0
        assert up.returncode == EXIT_OK, up.stdout[-3000:] + up.stderr[-3000:]
        yield env
    finally:
        _ipmi_power(s, port, "on", check=False)
        tear_down_cluster(inv, state, conn, CLUSTER)
        print("\nsystemd host timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in env["times"].items()))


# ---------------------------------------------------------------- helpers


def _ssh(env, command: str, *, timeout: float = SSH_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    res = openssh(env["dir"] / "id_ed25519", env["state"] / CLUSTER / "known_hosts", env["address"],
                  command, timeout=timeout)
    assert res.returncode == 0 or not check, (command, res.stdout, res.stderr)
    return res


def _ipmi_power(s, port: int, verb: str, *, check: bool = True) -> None:
    """chassis power VERB straight to the machine's BMC (Ironic is not asked)."""
    res = subprocess.run(["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port),
                          "-U", s.bmc_username, "-f", str(s.bmc_password_file), "chassis", "power", verb],
                         capture_output=True, text=True, timeout=IPMI_TIMEOUT)
    assert res.returncode == 0 or not check, (port, verb, res.stderr)


def _booter(env) -> HostBooter:
    # The reconciler's booter root (k1prov.lab.reconciler): only read here.
    return HostBooter(env["settings"].root / "boot")


def _main_pid(env) -> int:
    return int(_ssh(env, f"systemctl show -p MainPID --value {UNIT}").stdout.strip() or 0)


def _spark_workers(address: str) -> list[dict]:
    try:
        with urllib.request.urlopen(f"http://{address}:8080/json/", timeout=5) as res:
            return [w for w in json.load(res).get("workers", []) if w.get("state") == "ALIVE"]
    except (OSError, ValueError):
        return []


def _host_remains(pid_ns: str, cgroup2: str) -> list[str]:
    """Processes on this machine in the host's pid namespace or below its cgroup v2 path."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{entry}/ns/pid")
            groups = Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        if ns == pid_ns or any(line.startswith("0::") and line[3:].startswith(cgroup2)
                               for line in groups.splitlines()):
            found.append(entry)
    return found


# ---------------------------------------------------------------- tests


def test_role_services_are_systemd_units(env):
    """The role scripts took their systemd branch: enabled units, running under PID 1 systemd."""
    assert _ssh(env, "cat /proc/1/comm").stdout.strip() == "systemd"
    units = _ssh(env, "systemctl list-unit-files 'k1prov-*' --no-legend").stdout
    for unit in (UNIT, "k1prov-spark-master.service", "k1prov-spark-worker.service"):
        assert f"{unit} enabled" in " ".join(units.split()), units
        assert _ssh(env, f"systemctl is-active {unit}").stdout.strip() == "active"
    # No pid file of the fallback branch.
    assert _ssh(env, "ls /var/lib/k1prov/run 2>/dev/null | wc -l").stdout.strip() == "0"
    # The host's systemd is not degraded by what a container cannot do (masked units).
    failed = _ssh(env, "systemctl list-units --failed --no-legend --plain").stdout.strip()
    assert not failed, failed


def test_power_cycle_through_the_bmc_brings_the_services_back(env):
    s, port, address = env["settings"], env["port"], env["address"]
    znode = f"/k1prov-sysd-{uuid.uuid4().hex[:8]}"
    out = _ssh(env, f"{ZKCLI} create {znode} before-power-cycle 2>&1", timeout=ZKCLI_TIMEOUT).stdout
    assert "Created" in out, out
    booter, host = _booter(env), machine_name(port)   # the lab's hosts are named by machine
    info = booter.status(host)
    assert info.state == "running", info
    pid_ns = os.readlink(f"/proc/{info.pid}/ns/pid")
    cgroup2 = "/" + str(booter.cgroup2(host).relative_to(booter.cgroup2_parent.parent))
    assert _host_remains(pid_ns, cgroup2), "the running host has no processes in its namespace"

    t0 = time.monotonic()
    _ipmi_power(s, port, "off")
    wait_for("host stopped", lambda: booter.status(host).state != "running", timeout=POWER_OFF_TIMEOUT, interval=POLL)
    env["times"]["power off: host stopped"] = time.monotonic() - t0
    # Nothing of the host is left: no process in its pid namespace or cgroup, no cgroup
    # of its systemd, no devices cgroup, no network namespace.
    wait_for("host's processes gone", lambda: not _host_remains(pid_ns, cgroup2), timeout=POWER_OFF_TIMEOUT, interval=POLL)
    wait_for("host's cgroups removed", lambda: not booter.cgroup2(host).exists() and not booter.cgroup(host).exists(),
             timeout=POWER_OFF_TIMEOUT, interval=POLL)
    wait_for("host's network namespace removed", lambda: not netns_exists(netns_name(host)),
             timeout=POWER_OFF_TIMEOUT, interval=POLL)
    assert zk_srvr(address) == ""

    t0 = time.monotonic()
    _ipmi_power(s, port, "on")
    wait_for("host booted", lambda: booter.status(host).state == "running", timeout=BACK_TIMEOUT, interval=POLL)
    wait_for("sshd answers", lambda: _ssh(env, "true", check=False).returncode == 0, timeout=BACK_TIMEOUT, interval=POLL)
    env["times"]["power on: ssh"] = time.monotonic() - t0
    srvr = wait_for("ZooKeeper answers srvr", lambda: zk_srvr(address), timeout=BACK_TIMEOUT, interval=POLL)
    env["times"]["power on: zookeeper serving"] = time.monotonic() - t0
    assert "Mode: standalone" in srvr, srvr
    out = _ssh(env, f"{ZKCLI} get {znode} 2>&1", timeout=ZKCLI_TIMEOUT).stdout
    assert "before-power-cycle" in out, out
    wait_for("Spark worker registered", lambda: _spark_workers(address), timeout=BACK_TIMEOUT, interval=POLL)
    env["times"]["power on: spark worker alive"] = time.monotonic() - t0
    # A new boot, not the old host: a new PID 1 started them.
    assert booter.status(host).pid != info.pid
    assert _ssh(env, f"systemctl is-active {UNIT}").stdout.strip() == "active"


def test_systemd_restarts_a_killed_zookeeper(env):
    address = env["address"]
    wait_for("ZooKeeper answers srvr", lambda: zk_srvr(address), timeout=BACK_TIMEOUT, interval=POLL)
    old = _main_pid(env)
    assert old > 0
    restarts = int(_ssh(env, f"systemctl show -p NRestarts --value {UNIT}").stdout.strip() or 0)
    t0 = time.monotonic()
    _ssh(env, f"kill -KILL {old}")
    wait_for("a new ZooKeeper main process", lambda: _main_pid(env) not in (0, old), timeout=RESTART_TIMEOUT, interval=POLL)
    assert int(_ssh(env, f"systemctl show -p NRestarts --value {UNIT}").stdout.strip()) == restarts + 1
    srvr = wait_for("ZooKeeper answers srvr again", lambda: zk_srvr(address), timeout=RESTART_TIMEOUT, interval=POLL)
    env["times"]["kill -9: zookeeper serving again"] = time.monotonic() - t0
    assert "Mode: standalone" in srvr, srvr
