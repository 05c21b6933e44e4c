"""`nodes enroll | list | delete` against the lab: real Ironic, real IPMI to the BMC simulators."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labhosts import IRONIC_API_VERSION, lab_connection, lab_inventory_text, node_range_text
from typer.testing import CliRunner

from k1prov.cli import app
from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.ironic import IronicNodes
from k1prov.lab.machine import machine_mac
from k1prov.verb_report import EXIT_OK, EXIT_PARTIAL
from k1prov.provisioner import Provisioner

pytestmark = pytest.mark.lab

GOOD = [f"enr{i:02d}" for i in range(1, 11)]
BAD = "enr-badpw"


@pytest.fixture(scope="module")
def enroll_env(lab, tmp_path_factory):
    """An inventory of 10 good nodes and one whose BMC password is wrong."""
    d = tmp_path_factory.mktemp("enroll")
    bad_pw = d / "bad-password"
    bad_pw.write_text("not-the-bmc-password\n")
    s = lab.settings
    inv = d / "enroll.yaml"
    # The machines' own MACs: with automated cleaning, provide boots each machine's agent,
    # which finds its PXE config by its MAC (the node's port).
    nodes = (node_range_text("enr[01-10]", first_bmc_port=s.bmc_base_port,
                             first_address="10.251.0.101")
             + f"""\
  - name: {BAD}
    bmc: {{port: {s.bmc_base_port + 10}, password: {{file: "{bad_pw}"}}}}
    macs: ["{machine_mac(s.bmc_base_port + 10)}"]
    address: 10.251.0.150
""")
    inv.write_text(lab_inventory_text(s, cluster="enrolltest", nodes=nodes))
    conn = lab_connection(s, api_version=IRONIC_API_VERSION)
    yield {"inv": inv, "bad_pw": bad_pw, "conn": conn, "password": lab.bmc_password(),
           "bmc_base_port": s.bmc_base_port}
    for node in conn.baremetal.nodes(details=True):
        if (node.extra or {}).get("k1prov_cluster") == "enrolltest" or node.name == "enr-foreign":
            conn.baremetal.delete_node(node, ignore_missing=True)


def _ports(conn, uuid):
    return [p.address for p in conn.baremetal.ports(node_uuid=uuid)]


def test_enroll_ten_to_available_and_bad_password_fails_alone(enroll_env):
    report = Provisioner(load_inventory(enroll_env["inv"])).enroll()
    by = {o.node: o for o in report.outcomes}
    for name in GOOD:
        assert by[name].status is Status.OK, (name, by[name].error)
        assert by[name].provision_state == "available"
        assert by[name].action == "created"
    bad = by[BAD]
    assert bad.status is Status.FAILED
    assert bad.provision_state == "enroll"
    # Ironic's last_error names the IPMI failure; the row carries it.
    assert "ipmi" in bad.error.lower() or "power" in bad.error.lower(), bad.error
    assert report.exit_code() == EXIT_PARTIAL
    conn = enroll_env["conn"]
    ironic_bad = conn.baremetal.find_node(BAD)
    assert ironic_bad.provision_state == "enroll" and ironic_bad.last_error


WAIT_LIST = re.compile(r"GET /v1/nodes\?fields=uuid(,|%2C)provision_state(,|%2C)last_error ")
NODE_GET = re.compile(r"GET /v1/nodes/[0-9a-f-]{36}[? ]")


def test_a_wait_costs_one_list_request_per_poll_not_one_per_node(enroll_env, lab):
    """Ironic's own access log: waiting on the ten nodes (available; asked for active, so
    the wait runs out) sends one field-limited listing per poll and no per-node GET."""
    conn = enroll_env["conn"]
    uuids = [n.id for n in conn.baremetal.nodes() if n.name in GOOD]
    assert len(uuids) == len(GOOD)
    log = lab.settings.log_dir / "ironic.log"
    start = log.stat().st_size
    sleeps = []
    ironic = IronicNodes(conn, cluster="enrolltest", sleep=lambda s: (sleeps.append(s), time.sleep(s)))
    res = ironic.wait_for_provision_state(uuids, "active", timeout=3)
    assert not res.success and not res.failure
    assert sorted(n.id for n in res.timeout) == sorted(uuids)
    assert {n.provision_state for n in res.timeout} == {"available"}
    with log.open() as f:
        f.seek(start)
        lines = f.read().splitlines()
    polls = len(sleeps) + 1
    assert sum(bool(WAIT_LIST.search(line)) for line in lines) == polls
    assert not [line for line in lines if NODE_GET.search(line)]


def test_second_enroll_is_idempotent(enroll_env):
    conn = enroll_env["conn"]
    before = {n.name: (n.id, sorted(_ports(conn, n.id))) for n in conn.baremetal.nodes()
              if n.name in GOOD}
    report = Provisioner(load_inventory(enroll_env["inv"])).enroll(limit=GOOD)
    assert report.exit_code() == EXIT_OK
    assert {o.action for o in report.outcomes} == {"unchanged"}
    after = {n.name: (n.id, sorted(_ports(conn, n.id))) for n in conn.baremetal.nodes()
             if n.name in GOOD}
    assert after == before
    assert all(len(ports) == 1 for _, ports in after.values())


def test_fixed_password_is_sent_again_and_node_becomes_available(enroll_env):
    enroll_env["bad_pw"].write_text(enroll_env["password"] + "\n")
    report = Provisioner(load_inventory(enroll_env["inv"])).enroll(limit=[BAD])
    (row,) = report.outcomes
    assert row.status is Status.OK, row.error
    assert row.action == "updated" and "driver_info.ipmi_password" in row.changes
    assert row.provision_state == "available"


def test_a_changed_password_the_bmc_refuses_leaves_the_node_as_it_was(enroll_env):
    """Issue 21: the new password is tried against the BMC (ipmitool, as Ironic's ipmi
    driver logs in) before it replaces the one that works in Ironic."""
    conn = enroll_env["conn"]
    before = conn.baremetal.find_node(BAD)
    assert before.provision_state == "available"
    enroll_env["bad_pw"].write_text("a-new-but-wrong-password\n")
    try:
        report = Provisioner(load_inventory(enroll_env["inv"])).enroll(limit=[BAD])
        (row,) = report.outcomes
        assert row.status is Status.FAILED
        assert "refused the new credentials" in row.error and "Ironic keeps the old ones" in row.error
        assert f"port {before.driver_info['ipmi_port']}" in row.error, row.error
        assert "a-new-but-wrong-password" not in row.error
        assert report.exit_code() != EXIT_OK
        after = conn.baremetal.find_node(BAD)
        assert after.extra == before.extra           # the password's fingerprint: not sent
        assert after.driver_info == before.driver_info
        assert (after.provision_state, after.last_error, after.is_maintenance) == ("available", None, False)
    finally:
        enroll_env["bad_pw"].write_text(enroll_env["password"] + "\n")
    again = Provisioner(load_inventory(enroll_env["inv"])).enroll(limit=[BAD])
    assert (again.outcomes[0].status, again.outcomes[0].action) == (Status.OK, "unchanged")


def test_cli_list_json_and_no_password_in_output(enroll_env):
    runner = CliRunner()
    result = runner.invoke(app, ["nodes", "list", "-i", str(enroll_env["inv"]), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    states = {n["node"]: n["provision_state"] for n in data["nodes"]}
    assert states == {name: "available" for name in GOOD + [BAD]}
    assert enroll_env["password"] not in result.output
    enroll = runner.invoke(app, ["nodes", "enroll", "-i", str(enroll_env["inv"]), "--json"])
    assert enroll.exit_code == 0, enroll.output
    assert enroll_env["password"] not in enroll.output


def _baremetal(lab, *args: str) -> list | dict:
    """The `baremetal` CLI (python-ironicclient, installed with k1prov) through the lab's
    clouds.yaml entry, as an operator runs it beside k1prov."""
    s = lab.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(s.clouds_yaml_path)
    exe = Path(sys.executable).with_name("baremetal")
    out = subprocess.run([str(exe), "--os-cloud", s.cloud_name, *args, "-f", "json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_baremetal_cli_sees_the_nodes_as_k1prov_reports_them(enroll_env, lab):
    """`baremetal node list` / `node show` and `k1prov nodes list --json`, side by side: the
    same nodes, UUIDs, provision and power states."""
    result = CliRunner().invoke(app, ["nodes", "list", "-i", str(enroll_env["inv"]), "--json"])
    assert result.exit_code == 0, result.output
    ours = {n["node"]: n for n in json.loads(result.stdout)["nodes"]}
    assert set(ours) == set(GOOD + [BAD])
    # `-f json` rows carry Ironic's field names (python-ironicclient 6.x).
    listed = {n["name"]: n for n in _baremetal(lab, "node", "list")}
    for name, row in ours.items():
        theirs = listed[name]
        assert (theirs["uuid"], theirs["provision_state"], theirs["power_state"]) == \
            (row["uuid"], row["provision_state"], row["power_state"]), name
    for name in (GOOD[0], BAD):
        shown = _baremetal(lab, "node", "show", name)
        assert shown["uuid"] == ours[name]["uuid"]
        assert shown["provision_state"] == ours[name]["provision_state"]
        assert shown["power_state"] == ours[name]["power_state"]
        assert shown["extra"].get("k1prov_cluster") == "enrolltest"
        # Ironic masks the BMC password for every client; k1prov never prints it either.
        assert enroll_env["password"] not in json.dumps(shown)


def test_a_nodes_shard_is_set_in_ironic_and_shown(enroll_env, lab, tmp_path):
    """`shard:` (Ironic API 1.82, issue 22) is written on the node by a re-enroll and shown
    by `nodes list` (JSON and table) as Ironic has it; nodes without one show none."""
    inv = tmp_path / "sharded.yaml"
    inv.write_text(enroll_env["inv"].read_text().replace(
        f"  - name: {BAD}\n", f"  - name: {BAD}\n    shard: rack-b\n"))
    report = Provisioner(load_inventory(inv)).enroll(limit=[BAD])
    (row,) = report.outcomes
    assert row.status is Status.OK and row.changes == ["shard"], (row.error, row.changes)
    assert row.shard == "rack-b"
    assert _baremetal(lab, "node", "show", BAD)["shard"] == "rack-b"
    runner = CliRunner()
    result = runner.invoke(app, ["nodes", "list", "-i", str(inv), "--json"])
    assert result.exit_code == 0, result.output
    shards = {n["node"]: n["shard"] for n in json.loads(result.stdout)["nodes"]}
    assert shards == {**{name: None for name in GOOD}, BAD: "rack-b"}
    table = runner.invoke(app, ["nodes", "list", "-i", str(inv)])
    assert "group/shard" in table.stdout and "-/rack-b" in table.stdout, table.stdout
    again = Provisioner(load_inventory(inv)).enroll(limit=[BAD])
    assert again.outcomes[0].action == "unchanged" and not again.outcomes[0].changes


def test_foreign_node_is_left_alone(enroll_env, tmp_path):
    conn = enroll_env["conn"]
    conn.baremetal.create_node(name="enr-foreign", driver="fake-hardware")
    inv = tmp_path / "foreign.yaml"
    text = enroll_env["inv"].read_text().replace(f"name: {BAD}", "name: enr-foreign")
    inv.write_text(text)
    report = Provisioner(load_inventory(inv)).enroll(limit=["enr-foreign"])
    (row,) = report.outcomes
    assert row.status is Status.FAILED and "not k1prov's" in row.error
    deleted = Provisioner(load_inventory(inv)).delete_nodes(limit=["enr-foreign"])
    assert deleted.outcomes[0].status is Status.FAILED
    assert conn.baremetal.find_node("enr-foreign") is not None


def test_delete_removes_nodes_and_ports(enroll_env):
    conn = enroll_env["conn"]
    runner = CliRunner()
    result = runner.invoke(app, ["nodes", "delete", "-i", str(enroll_env["inv"]), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {n["action"] for n in data["nodes"]} == {"deleted"}
    left = [n.name for n in conn.baremetal.nodes() if n.name in GOOD + [BAD]]
    assert left == []
    macs = {p.address for p in conn.baremetal.ports()}
    base = enroll_env["bmc_base_port"]
    assert not macs & {machine_mac(base + i) for i in range(len(GOOD) + 1)}
