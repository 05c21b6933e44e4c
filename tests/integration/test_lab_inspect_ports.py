"""Nodes enrolled without `macs` get their ports from inspection (issue 21), against the
lab's real Ironic 39 and the real ironic-python-agent:

- enroll leaves them in manageable (no port: Ironic could not PXE-boot them for cleaning);
- `nodes inspect`: Ironic cannot write a boot config by MAC, so it only sets PXE and powers
  on (unmanaged inspection); the machine boots the agent from the lab's PXE default
  (pxelinux.cfg/default, as a site's dnsmasq serves an unknown machine); the agent reports
  its BMC's LAN address (169.254.x.y, k1prov.lab.netns.bmc_lan_address: not loopback, the
  BMC simulator listens there too), by which Ironic matches the report to the node, and
  Ironic makes the port of the NIC it booted from ([inspector] add_ports = pxe);
- the node is provided and deploys through that port.

Two nodes are inspected at once: each report must find its own node by its own BMC address.
"""
from __future__ import annotations

import json
import time

import pytest
from image_fixture import lab_image_path
from labhosts import (deploy_settings_text, lab_connection, lab_inventory_text, lab_ip, release_lab_nodes,
                      write_deploy_inputs)
from typer.testing import CliRunner

from k1prov.cli import app
from k1prov.enrollment import NO_PORTS_YET
from k1prov.inventory import load_inventory
from k1prov.lab.machine import machine_mac
from k1prov.lab.netns import bmc_lan_address
from k1prov.provisioner import Provisioner
from k1prov.verb_report import EXIT_OK

pytestmark = pytest.mark.lab

CLUSTER = "inspportstest"
NAMES = ["ipt01", "ipt02"]
# BMC ports lab base + 35 and + 39, addresses .176 and .177: no other test uses them.
BMC_OFFSETS = (35, 39)
FIRST_ADDRESS = 176
# What role fit lets onto the lab's 4 GB disk (k1prov.roles.fit; test_lab_inspect).
ROLES = {"ipt01": "spark-master", "ipt02": "spark-worker"}


def _ports(s) -> list[int]:
    return [s.bmc_base_port + o for o in BMC_OFFSETS]


def _nodes_text(s) -> str:
    # No `macs`: a new rack's nodes known by their BMC's (LAN) address only.
    return "".join(f"  - name: {name}\n"
                   f"    bmc: {{address: {bmc_lan_address(port)}, port: {port}}}\n"
                   f"    roles: [{ROLES[name]}]\n"
                   f"    address: {lab_ip(s, FIRST_ADDRESS + i)}\n"
                   for i, (name, port) in enumerate(zip(NAMES, _ports(s))))


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    s = lab.settings
    d = tmp_path_factory.mktemp("inspect-ports")
    write_deploy_inputs(d, key_comment=CLUSTER)
    inv = d / "inspect-ports.yaml"
    inv.write_text(lab_inventory_text(
        s, cluster=CLUSTER, nodes=_nodes_text(s),
        role_settings="roles:\n  spark: {source: preinstalled, manager: standalone}\n",
        deploy=deploy_settings_text(d, image_prefix="ipt", user_image=str(lab_image_path()))))
    state = d / "state"
    conn = lab_connection(s)
    try:
        registered = Provisioner(load_inventory(inv), state_root=state).register_images()
        assert registered.exit_code() == EXIT_OK, [o.error for o in registered.failed]
        yield {"inv": inv, "state": state, "conn": conn, "lab": lab}
    finally:
        release_lab_nodes(s, inventory=inv, state=state, bmc_ports=_ports(s), conn=conn, cluster=CLUSTER)


def _cli(env, *args: str):
    return CliRunner().invoke(app, [*args, "-i", str(env["inv"]), "--json"],
                              env={"K1PROV_STATE_DIR": str(env["state"])})


def _port_macs(env, uuid: str) -> list[str]:
    return sorted(p.address.lower() for p in env["conn"].baremetal.ports(node_uuid=uuid))


def test_enroll_leaves_nodes_without_macs_manageable(env):
    result = _cli(env, "nodes", "enroll")
    assert result.exit_code == 0, result.output
    rows = {r["node"]: r for r in json.loads(result.stdout)["nodes"]}
    for name in NAMES:
        row = rows[name]
        assert row["provision_state"] == "manageable", row
        assert row["action"].endswith(NO_PORTS_YET), row
        assert _port_macs(env, row["uuid"]) == []


def test_inspection_gives_them_ports_and_provides_them(env):
    s = env["lab"].settings
    t0 = time.monotonic()
    result = _cli(env, "nodes", "inspect")
    took = time.monotonic() - t0
    print(f"\nnodes inspect, {len(NAMES)} nodes without ports at once (inspect + provide): "
          f"{took:.1f} s ({took / len(NAMES):.1f} s a node)")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {r["node"]: r for r in data["nodes"]}
    phases = [p["phase"] for p in data["phases"]]
    assert "inspect" in phases and "ports" in phases and "provide" in phases, phases
    for name, port in zip(NAMES, _ports(s)):
        row = rows[name]
        mac = machine_mac(port)
        # The port of the machine's one NIC, the one it booted from, made by Ironic.
        assert row["action"] == f"inspected; ports from inspection: {mac}", row
        assert _port_macs(env, row["uuid"]) == [mac]
        assert mac in [n["mac"] for n in row["hardware"]["nics"]], row
        # Provided: where enroll would have taken it with MACs in the inventory.
        assert (row["provision_state"], row["power_state"]) == ("available", "power off"), row
        node = env["conn"].baremetal.get_node(row["uuid"])
        assert node.properties["local_gb"] == s.disk_gb - 1
        # The agent booted from the lab's PXE default (Ironic wrote no config for its MAC),
        # for inspection, and reported its own BMC's LAN address.
        log = (s.machines_dir / f"m{port}" / "agent.log").read_text()
        assert "network (inspection), default," in log, log[-2000:]
        inventory = env["conn"].baremetal.get(f"/nodes/{row['uuid']}/inventory",
                                              microversion="1.81").json()["inventory"]
        assert inventory["bmc_address"] == bmc_lan_address(port)


def test_enroll_again_keeps_the_ports_inspection_made(env):
    result = _cli(env, "nodes", "enroll")
    assert result.exit_code == 0, result.output
    rows = {r["node"]: r for r in json.loads(result.stdout)["nodes"]}
    for name, port in zip(NAMES, _ports(env["lab"].settings)):
        assert rows[name]["provision_state"] == "available", rows[name]
        assert _port_macs(env, rows[name]["uuid"]) == [machine_mac(port)]


def test_a_node_given_its_ports_by_inspection_deploys(env):
    result = _cli(env, "deploy", "--limit", NAMES[0])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["nodes"]
    assert row["provision_state"] == "active", row
