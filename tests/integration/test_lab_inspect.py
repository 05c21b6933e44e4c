"""`nodes inspect` against the lab (issue 21): Ironic 39's built-in agent inspection
(inspect_interface agent), the real ironic-python-agent booted by the lab machine from
the PXE config Ironic wrote for the inspection (ipa-inspection-callback-url), its report
posted to Ironic's /v1/continue_inspection. What the agent sees is the machine's own
namespace: its veth (the machine's MAC) and its loop disk (LabSettings.disk_gb)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from labhosts import deploy_settings_text, lab_connection, lab_inventory_text, lab_ip, write_deploy_inputs
from typer.testing import CliRunner

from k1prov import glance
from k1prov.cli import app
from k1prov.inventory import load_inventory
from k1prov.lab.machine import GIB, machine_mac, unplug_cable
from k1prov.provisioner import Provisioner
from k1prov.verb_report import EXIT_OK

pytestmark = pytest.mark.lab

CLUSTER = "inspecttest"
NAMES = ["insp01", "insp02"]
# BMC ports lab base + 33, 34 and addresses .171, .172: no other test uses them.
BMC_OFFSET = 33
FIRST_ADDRESS = 171
# A MAC no lab machine has (machine MACs are 02:6b:70:00:..): the inventory gives it to
# insp02 beside its real one, as an operator who copied a MAC wrongly would.
NOT_ON_THE_MACHINE = "02:6b:70:ff:ff:01"
# A spark worker needs 4 GB of disk (k1prov.roles.fit); inspection finds the lab disk's
# disk_gb (4) less the 1 GiB Ironic keeps back: insp02 is refused, insp01 (a master) fits.
ROLES = {"insp01": "spark-master", "insp02": "spark-worker"}


def _nodes_text(s) -> str:
    out = []
    for i, name in enumerate(NAMES):
        port = s.bmc_base_port + BMC_OFFSET + i
        macs = [machine_mac(port)] + ([NOT_ON_THE_MACHINE] if name == "insp02" else [])
        out.append(f"  - name: {name}\n"
                   f"    bmc: {{port: {port}}}\n"
                   f"    roles: [{ROLES[name]}]\n"
                   f"    macs: [{', '.join(f'{m!r}' for m in macs)}]\n"
                   f"    address: {lab_ip(s, FIRST_ADDRESS + i)}\n")
    return "".join(out)


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    s = lab.settings
    d = tmp_path_factory.mktemp("inspect")
    write_deploy_inputs(d, key_comment=CLUSTER)
    inv = d / "inspect.yaml"
    inv.write_text(lab_inventory_text(
        s, cluster=CLUSTER, nodes=_nodes_text(s),
        role_settings="roles:\n  spark: {source: preinstalled, manager: standalone}\n",
        deploy=deploy_settings_text(d, image_prefix="insp", user_image=str(lab_image_path()))))
    state = d / "state"
    conn = lab_connection(s)
    prov = Provisioner(load_inventory(inv), state_root=state)
    try:
        enrolled = prov.enroll()
        assert enrolled.exit_code() == EXIT_OK, [o.error for o in enrolled.failed]
        registered = prov.register_images()
        assert registered.exit_code() == EXIT_OK, [o.error for o in registered.failed]
        yield {"dir": d, "inv": inv, "state": state, "conn": conn, "lab": lab}
    finally:
        Provisioner(load_inventory(inv), state_root=state).undeploy()
        Provisioner(load_inventory(inv), state_root=state).delete_nodes()
        for img in glance.list_own_images(conn, CLUSTER):
            conn.image.delete_image(img.id, ignore_missing=True)


def _cli(env, *args: str):
    return CliRunner().invoke(app, [*args, "-i", str(env["inv"]), "--json"],
                              env={"K1PROV_STATE_DIR": str(env["state"])})


def test_inspection_reports_the_machines_veth_and_loop_disk(env):
    s = env["lab"].settings
    t0 = time.monotonic()
    result = _cli(env, "nodes", "inspect")
    took = time.monotonic() - t0
    print(f"\nnodes inspect, {len(NAMES)} nodes at once: {took:.1f} s "
          f"({took / len(NAMES):.1f} s a node)")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {r["node"]: r for r in data["nodes"]}
    assert [p["phase"] for p in data["phases"]] == ["manage", "inspect", "provide", "inventory"]
    for i, name in enumerate(NAMES):
        row = rows[name]
        port = s.bmc_base_port + BMC_OFFSET + i
        hw = row["hardware"]
        # The machine's one NIC (its veth) and its one disk (the loop device of disk.img).
        assert machine_mac(port) in [n["mac"] for n in hw["nics"]], hw
        assert [d["size_bytes"] for d in hw["disks"]] == [s.disk_gb * GIB], hw
        assert hw["disks"][0]["name"].startswith("/dev/loop"), hw
        # Ironic's hooks set the properties role fit reads (root-device keeps 1 GiB back).
        assert hw["local_gb"] == s.disk_gb - 1
        assert int(hw["memory_mb"]) > 0 and int(hw["cpus"]) >= 1
        # Back where they started (available), the machine off once Ironic is done.
        assert (row["provision_state"], row["power_state"]) == ("available", "power off"), row
        node = env["conn"].baremetal.get_node(row["uuid"])
        assert node.inspect_interface == "agent"
        assert node.properties["local_gb"] == s.disk_gb - 1
    # The inventory gave insp02 a MAC its machine has not: named in its row.
    assert rows["insp01"]["action"] == "inspected"
    assert NOT_ON_THE_MACHINE in rows["insp02"]["action"], rows["insp02"]
    # The agent booted for inspection, from the PXE config Ironic wrote for it.
    log = (s.machines_dir / f"m{s.bmc_base_port + BMC_OFFSET}" / "agent.log").read_text()
    assert "network (inspection)" in log and "ipa-inspection-callback-url=" in log


def test_nodes_list_shows_the_inspected_hardware(env):
    result = _cli(env, "nodes", "list")
    assert result.exit_code == 0, result.output
    rows = {r["node"]: r for r in json.loads(result.stdout)["nodes"]}
    s = env["lab"].settings
    for name in NAMES:
        hw = rows[name]["hardware"]
        assert hw["disks"] and hw["nics"], hw
        assert hw["local_gb"] == s.disk_gb - 1


def test_an_agent_that_never_calls_back_is_aborted_then_inspected_again(env):
    """The machine's cable out: its agent boots but never reaches Ironic. At k1prov's
    timeout the inspection is aborted (Ironic powers the machine off; the node is inspect
    failed, not left in inspect wait) and the row says how to go on; with the cable back,
    the same command inspects it (the one-node time is printed)."""
    s = env["lab"].settings
    port = s.bmc_base_port + BMC_OFFSET + 1
    unplug_cable(s.machines_dir, port)
    try:
        result = _cli(env, "nodes", "inspect", "--limit", NAMES[1], "--timeout", "40")
    finally:
        unplug_cable(s.machines_dir, port, unplugged=False)
    assert result.exit_code != 0, result.output
    (row,) = json.loads(result.stdout)["nodes"]
    assert row["status"] == "timeout", row
    assert "the inspection was aborted; the node is left in inspect failed" in row["error"], row
    assert (row["provision_state"], row["power_state"]) == ("inspect failed", "power off"), row
    t0 = time.monotonic()
    again = _cli(env, "nodes", "inspect", "--limit", NAMES[1])
    took = time.monotonic() - t0
    print(f"\nnodes inspect, one node from inspect failed (manage + inspect): {took:.1f} s")
    assert again.exit_code == 0, again.output
    (row,) = json.loads(again.stdout)["nodes"]
    assert row["action"].startswith("inspected") and row["provision_state"] == "manageable", row
    assert machine_mac(port) in [n["mac"] for n in row["hardware"]["nics"]]


def test_an_inspected_node_deploys_and_one_too_small_for_its_roles_is_refused(env):
    """What inspection leaves (ports, properties, a powered-off machine) deploys; the
    properties it set are what role fit checks: insp02's spark-worker needs more disk
    than inspection found, so it is refused before its disk is written."""
    s = env["lab"].settings
    enrolled = _cli(env, "nodes", "enroll")          # insp02 back to available
    assert enrolled.exit_code == 0, enrolled.output
    result = _cli(env, "deploy")
    rows = {r["node"]: r for r in json.loads(result.stdout)["nodes"]}
    assert rows["insp01"]["provision_state"] == "active", rows["insp01"]
    assert rows["insp02"]["status"] == "failed" and rows["insp02"]["provision_state"] == "available"
    assert rows["insp02"]["error"] == (
        f"refused before deploying: spark-worker need 4 GB of disk; Ironic says the node has "
        f"{s.disk_gb - 1} (properties.local_gb); raise it, lower roles.common.needs, or move a role")


def test_cluster_status_shows_the_inspected_facts(env):
    result = _cli(env, "cluster", "status")
    rows = {r["node"]: r for r in json.loads(result.stdout)["nodes"]}
    s = env["lab"].settings
    for name in NAMES:
        hw = rows[name]["hardware"]
        assert hw["local_gb"] == s.disk_gb - 1 and int(hw["cpus"]) >= 1, rows[name]
