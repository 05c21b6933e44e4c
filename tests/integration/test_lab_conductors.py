"""Ironic in the shape sites with several conductors run it (`k1prov lab up --conductors 2`):
MariaDB, ironic-api and two ironic-conductor processes joined by JSON-RPC, each conductor in
a conductor group. A lab of its own (3 machines, real ironic-python-agent `direct` deploys):

- nodes enrolled with a conductor_group are managed by the conductor of that group;
- a deploy through the API and the conductors completes (hosts answer SSH);
- with both conductors in one group, one SIGKILLed mid-deploy: its nodes go to the other
  (Ironic's hash ring, once its heartbeat is older than heartbeat_timeout), k1prov's run
  completes or names exactly the nodes to re-run, and no machine is deployed twice;
- `lab down` leaves no MariaDB or Ironic process and no listening port behind.
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from lab_fixture import beside_session_lab, bring_up
from labhosts import (deploy_settings_text, lab_connection, lab_inventory_text, lab_ip,
                      release_lab_nodes, write_deploy_inputs)

from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.lab import Lab, procs
from k1prov.lab.config import JSON_RPC_PORT
from k1prov.lab.machine import machine_mac, machine_name
from k1prov.provisioner import Provisioner
from k1prov.verb_report import EXIT_OK

pytestmark = pytest.mark.lab

CLUSTER = "condtest"
NAMES = ["cdt1", "cdt2", "cdt3"]
# Ports: the session lab's offset plus this (test_lab_auth's lab is at +300).
PORT_SHIFT = 500
# Addresses .106-.108 of the session's subnet: no other test uses them.
FIRST_ADDRESS = 106
# Groups of the first part: conductor 1 serves "ga", conductor 2 "gb".
GROUPS = ("ga", "gb")
NODE_GROUPS = {"cdt1": "ga", "cdt2": "gb", "cdt3": "gb"}
# [conductor] heartbeat_timeout of this lab: a killed conductor's nodes move after this
# (the conductors beat every 3 s; 20 s leaves a loaded machine's live ones room).
HEARTBEAT_TIMEOUT = 20
# How long the test waits for a deploy of the killed conductor's nodes to start, and for
# Ironic to move them (heartbeat timeout, hash ring refresh and orphan check, 5 s each).
IN_FLIGHT_TIMEOUT = 600.0
TAKEOVER_TIMEOUT = 300.0
# k1prov's deploy of 3 lab machines (a minute or two on a quiet machine).
DEPLOY_TIMEOUT = 1800.0
POLL = 1.0


def _inventory(lab: Lab, d: Path, *, groups: dict[str, str], name: str) -> Path:
    s = lab.settings
    entries = ""
    for i, node in enumerate(NAMES):
        port = s.bmc_base_port + i
        group = f"    conductor_group: {groups[node]}\n" if groups.get(node) else ""
        entries += (f"  - name: {node}\n"
                    f"    bmc: {{port: {port}}}\n"
                    f"    macs: [\"{machine_mac(port)}\"]\n"
                    f"    address: {lab_ip(s, FIRST_ADDRESS + i)}\n" + group)
    inv = d / name
    inv.write_text(lab_inventory_text(
        s, cluster=CLUSTER, nodes=entries,
        deploy=deploy_settings_text(d, image_prefix="cdt", user_image=str(lab_image_path()))))
    return inv


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, mounts)")
    root = tmp_path_factory.mktemp("labcond")
    s = beside_session_lab(root, shift=PORT_SHIFT, nodes=len(NAMES),
                           conductors=2, conductor_groups=GROUPS,
                     conductor_heartbeat_timeout=HEARTBEAT_TIMEOUT)
    lab = Lab(s)
    t0 = time.monotonic()
    bring_up(lab)
    print(f"\nlab up --conductors 2: {time.monotonic() - t0:.1f} s")
    d = root / "work"
    d.mkdir()
    write_deploy_inputs(d, key_comment=CLUSTER)
    env = {"lab": lab, "dir": d, "state": d / "state", "conn": lab_connection(s),
           "inv": _inventory(lab, d, groups=NODE_GROUPS, name="grouped.yaml")}
    try:
        yield env
    finally:
        try:
            if not env.get("down"):
                release_lab_nodes(env["lab"].settings, inventory=env["inv"], state=env["state"],
                                  bmc_ports=list(s.bmc_ports), conn=env["conn"], cluster=CLUSTER)
        finally:
            env["lab"].down()


def _prov(env) -> Provisioner:
    return Provisioner(load_inventory(env["inv"]), state_root=env["state"])


def _nodes(env) -> dict:
    return {n.name: n for n in env["conn"].baremetal.nodes(details=True) if n.name in NAMES}


def _listening_tcp() -> set[tuple[str, int]]:
    """(IPv4 address, port) of every listening TCP socket of this machine."""
    import socket
    import struct

    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":
            addr, port = fields[1].split(":")
            found.add((socket.inet_ntoa(struct.pack("<I", int(addr, 16))), int(port, 16)))
    return found


def test_api_and_two_conductors_on_mariadb(env):
    s = env["lab"].settings
    status = {x.name: x for x in env["lab"].status().services}
    assert {"mariadb", "ironic-api", "ironic-conductor-1", "ironic-conductor-2"} <= set(status)
    assert "ironic" not in status
    assert all(x.running and x.answers for x in status.values()), status
    conductors = {c.hostname: (c.conductor_group, c.alive) for c in env["conn"].baremetal.conductors(details=True)}
    assert conductors == {
        s.conductor_host(1): ("ga", True), s.conductor_host(2): ("gb", True)}


def test_nodes_land_on_the_conductor_of_their_group(env):
    s = env["lab"].settings
    report = _prov(env).enroll()
    assert report.exit_code() == EXIT_OK, [o.error for o in report.failed]
    host_of_group = {s.conductor_group(i): s.conductor_host(i) for i in (1, 2)}
    nodes = _nodes(env)
    assert {n: (x.conductor_group, x.conductor) for n, x in nodes.items()} == {
        n: (g, host_of_group[g]) for n, g in NODE_GROUPS.items()}


def test_deploy_and_undeploy_through_the_conductors(env):
    images = _prov(env).register_images()
    assert images.exit_code() == EXIT_OK, [(o.node, o.error) for o in images.failed]
    report = _prov(env).deploy()
    assert report.exit_code() == EXIT_OK, [(o.node, o.error) for o in report.failed]
    assert {o.node: o.action for o in report.outcomes if o.node in NAMES} == {n: "deployed" for n in NAMES}
    assert {n: x.provision_state for n, x in _nodes(env).items()} == {n: "active" for n in NAMES}
    undone = _prov(env).undeploy()
    assert undone.exit_code() == EXIT_OK, [(o.node, o.error) for o in undone.failed]
    gone = _prov(env).delete_nodes()
    assert gone.exit_code() == EXIT_OK, [(o.node, o.error) for o in gone.failed]


def _network_boots(log: Path, start: int) -> dict[str, int]:
    """Network boots (agent starts: one per deploy) per machine in the reconciler's log after
    byte `start`."""
    text = log.read_bytes()[start:].decode(errors="replace")
    counts: dict[str, int] = {}
    for m in re.finditer(r"^.*?(\S+): network boot \d+:", text, re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def test_a_conductor_killed_mid_deploy_its_nodes_go_to_the_other(env):
    lab = env["lab"]
    # Both conductors in the default group "" now (`lab up` restarts them); nodes without a
    # group are spread over them by the hash ring.
    s = dataclasses.replace(lab.settings, conductor_groups=("", ""))
    lab = env["lab"] = Lab(s)
    bring_up(lab)
    env["inv"] = _inventory(lab, env["dir"], groups={}, name="one-group.yaml")
    report = _prov(env).enroll()
    assert report.exit_code() == EXIT_OK, [o.error for o in report.failed]
    images = _prov(env).register_images()
    assert images.exit_code() == EXIT_OK, [(o.node, o.error) for o in images.failed]
    owner = {n: x.conductor for n, x in _nodes(env).items()}
    hosts = {s.conductor_host(i): i for i in (1, 2)}
    assert set(owner.values()) <= set(hosts), owner
    # The victim: the conductor with the most of the nodes (at least 2 of 3).
    victim_host = max(hosts, key=lambda h: list(owner.values()).count(h))
    victim = hosts[victim_host]
    survivor_host = s.conductor_host(3 - victim)
    mine = sorted(n for n, h in owner.items() if h == victim_host)
    reconciler_log = s.log_dir / "reconciler.log"
    log_start = reconciler_log.stat().st_size

    result = {}
    deploying = threading.Thread(target=lambda: result.update(report=_prov(env).deploy()), daemon=True)
    deploying.start()
    deadline = time.monotonic() + IN_FLIGHT_TIMEOUT
    while True:
        states = {n: x.provision_state for n, x in _nodes(env).items()}
        if any(states[n] in ("wait call-back", "deploying") for n in mine):
            break
        assert deploying.is_alive() and time.monotonic() < deadline, (states, result)
        time.sleep(POLL)
    rec = procs.read_running(s.run_dir, f"ironic-conductor-{victim}")
    assert rec is not None
    os.killpg(rec.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    print(f"\nkilled conductor {victim} ({victim_host}) with {mine} at {states}")

    # Ironic moves every node of the dead conductor to the live one.
    while True:
        owner = {n: x.conductor for n, x in _nodes(env).items()}
        if set(owner.values()) == {survivor_host}:
            break
        assert time.monotonic() - killed_at < TAKEOVER_TIMEOUT, owner
        time.sleep(POLL)
    print(f"taken over by {survivor_host} after {time.monotonic() - killed_at:.1f} s")
    deploying.join(timeout=DEPLOY_TIMEOUT)
    assert not deploying.is_alive()
    report = result["report"]
    rows = {o.node: o for o in report.outcomes if o.node in NAMES}
    states = {n: x.provision_state for n, x in _nodes(env).items()}
    failed = {n for n, o in rows.items() if o.status is not Status.OK}
    print("first run:", {n: (o.status.value, o.action, o.error) for n, o in rows.items()}, states)
    # Completed, or the nodes that are not active are exactly the ones the run names.
    assert failed == {n for n, st in states.items() if st != "active"}
    assert all(rows[n].action == "deployed" for n in set(NAMES) - failed)
    # No machine went through the agent twice in that run: a deployed node's once, a failed
    # one's at most once (not at all when the conductor died before it powered it on).
    boots = _network_boots(reconciler_log, log_start)
    machines = {n: machine_name(s.bmc_base_port + i) for i, n in enumerate(NAMES)}
    first = {n: boots.get(machines[n], 0) for n in NAMES}
    assert all(first[n] == 1 for n in set(NAMES) - failed) and all(first[n] <= 1 for n in failed), first

    # The re-run deploys the named nodes only; the others are left as they are.
    again = _prov(env).deploy()
    assert again.exit_code() == EXIT_OK, [(o.node, o.error) for o in again.failed]
    actions = {o.node: o.action for o in again.outcomes if o.node in NAMES}
    assert actions == {n: "deployed" if n in failed else "unchanged" for n in NAMES}
    boots = _network_boots(reconciler_log, log_start)
    assert {n: boots.get(machines[n], 0) for n in NAMES} == {n: first[n] + (n in failed) for n in NAMES}


def test_lab_down_leaves_no_process_and_no_port(env):
    lab = env["lab"]
    s = lab.settings
    release_lab_nodes(s, inventory=env["inv"], state=env["state"], bmc_ports=list(s.bmc_ports),
                      conn=env["conn"], cluster=CLUSTER)
    env["down"] = True
    lab.down()
    root = str(s.root)
    left = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if root in cmdline and ("mariadbd" in cmdline or "ironic" in cmdline):
                left.append(cmdline)
    assert left == []
    ours = {("127.0.0.1", s.mariadb_port), (s.gateway, s.ironic_port), ("127.0.0.1", s.glance_port),
            (s.gateway, s.http_port), *((s.conductor_host(i), JSON_RPC_PORT) for i in (1, 2))}
    assert ours & _listening_tcp() == set()
    assert not s.mariadb_socket.exists()
