"""Nodes enrolled without `macs` through enroll, inspect and deploy, against the recording
SDK stand-in (tests/unit/sdk_standin.py; the decisions only: the real path is
tests/integration/test_lab_inspect_ports.py)."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

import k1prov.context
import k1prov.ssh_ready
from k1prov.enrollment import NO_PORTS_YET
from k1prov.fanout import Status
from k1prov.inventory import parse_inventory
from k1prov.provisioner import Provisioner
from k1prov.settings import DEFAULT_TIMEOUTS
from k1prov.ssh import CommandResult

from sdk_standin import RecordingConnection

INVENTORY = """\
cluster: orch
cloud: {ironic_url: "http://127.0.0.1:9"}
ssh: {user: root, public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForOrchestrationTests000000 t"]}
images:
  user: {name: u, url: "http://127.0.0.1:9/u.raw", bypass_glance: true,
         checksum: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}
defaults:
  bmc: {username: u, password: "pw"}
roles:
  spark: {source: preinstalled, manager: standalone}
nodes:
  - {name: new1, bmc: {address: 10.0.9.1}, address: 10.0.0.1, roles: [spark-master]}
  - {name: lo1, bmc: {address: 127.0.0.1, port: 7002}, address: 10.0.0.2, roles: [spark-client]}
"""
RAMDISK = {"deploy_kernel": "k", "deploy_ramdisk": "r"}
MAC = "52:54:00:00:00:01"


@pytest.fixture
def ironic(monkeypatch):
    conn = RecordingConnection(cluster="orch")
    monkeypatch.setattr(k1prov.context, "connect", lambda cloud, api_timeout: conn)
    monkeypatch.setattr(k1prov.ssh_ready, "run_command",
                        lambda target, command, **kw: CommandResult(target.host, 0, "1.0 0 100\n", ""))
    return conn.baremetal


def prov(tmp_path) -> Provisioner:
    inv = parse_inventory(INVENTORY, path=str(tmp_path / "inv.yaml"))
    return Provisioner(inv, timeouts=replace(DEFAULT_TIMEOUTS), state_root=tmp_path / "state")


def actions(ironic) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for method, args in ironic.calls:
        if method == "provision":
            out.setdefault(ironic.by_id[args[0]].name, []).append(args[1])
    return out


def inspection_makes_a_port(ironic, name: str, mac: str) -> None:
    """Ironic's ports hook: the inspected node gets the port of the NIC it booted from."""
    provision = ironic._provision

    def _provision(ref, action):
        provision(ref, action)
        node = ironic._get(ref)
        if action == "inspect" and node.name == name:
            ironic.ports_of.setdefault(node.id, []).append(SimpleNamespace(address=mac, extra={}, node_uuid=node.id))
    ironic._provision = _provision


def test_enroll_manages_a_node_without_macs_but_does_not_provide_it(tmp_path, ironic):
    report = prov(tmp_path).enroll(limit=["new1"])
    (row,) = report.outcomes
    assert (row.status, row.provision_state) == (Status.OK, "manageable")
    assert row.action == f"created; {NO_PORTS_YET}"
    assert actions(ironic) == {"new1": ["manage"]}
    assert ironic.names_called("create_port") == []


def test_inspect_gives_it_ports_names_them_and_provides_it(tmp_path, ironic):
    ironic.add("new1", provision_state="manageable", driver_info=dict(RAMDISK))
    inspection_makes_a_port(ironic, "new1", MAC)
    (row,) = prov(tmp_path).inspect_nodes(limit=["new1"]).outcomes
    assert row.status is Status.OK, row.error
    assert row.action == f"inspected; ports from inspection: {MAC}"
    assert actions(ironic) == {"new1": ["inspect", "provide"]}
    assert row.provision_state == "available"
    # Enroll again keeps inspection's port (no cluster tag) and has nothing to hold back.
    again = prov(tmp_path).enroll(limit=["new1"])
    assert again.outcomes[0].provision_state == "available"
    assert [p.address for p in ironic.ports_of[ironic.node("new1").id]] == [MAC]


def test_a_node_without_macs_inspected_again_has_no_disagreement_named(tmp_path, ironic):
    node = ironic.add("new1", provision_state="available", driver_info=dict(RAMDISK))
    ironic.ports_of[node.id] = [SimpleNamespace(address=MAC, extra={}, node_uuid=node.id)]
    ironic.inventories["new1"] = {"inventory": {"interfaces": [{"name": "eth0", "mac_address": MAC}]}}
    warnings: list[str] = []
    p = prov(tmp_path)
    p.context.warn = warnings.append
    (row,) = p.inspect_nodes(limit=["new1"]).outcomes
    assert (row.status, row.action, warnings) == (Status.OK, "inspected", [])
    assert actions(ironic) == {"new1": ["manage", "inspect", "provide"]}


def test_an_inspection_that_made_no_port_fails_and_is_not_provided(tmp_path, ironic):
    ironic.add("new1", provision_state="manageable", driver_info=dict(RAMDISK))
    (row,) = prov(tmp_path).inspect_nodes(limit=["new1"]).outcomes
    assert row.status is Status.FAILED and "Ironic made no port" in row.error
    assert actions(ironic) == {"new1": ["inspect"]}


def test_inspect_refuses_a_node_without_ports_behind_a_loopback_bmc(tmp_path, ironic):
    ironic.add("lo1", provision_state="manageable", driver_info=dict(RAMDISK))
    (row,) = prov(tmp_path).inspect_nodes(limit=["lo1"]).outcomes
    assert row.status is Status.FAILED and "loopback BMC address (127.0.0.1)" in row.error
    assert actions(ironic) == {}


def test_deploy_takes_the_config_drive_mac_from_the_port_and_names_inspect_for_a_portless_one(
        tmp_path, ironic):
    node = ironic.add("new1", provision_state="available", driver_info=dict(RAMDISK))
    ironic.ports_of[node.id] = [SimpleNamespace(address=MAC, extra={}, node_uuid=node.id)]
    ironic.add("lo1", provision_state="manageable", driver_info=dict(RAMDISK))
    report = prov(tmp_path).deploy()
    rows = {o.node: o for o in report.outcomes}
    assert (rows["new1"].status, rows["new1"].action) == (Status.OK, "deployed"), rows["new1"].error
    assert rows["lo1"].error == ("node is manageable; deploy needs available: a node enrolled without macs "
                                 "gets its ports, and is provided, by `k1prov nodes inspect`")
