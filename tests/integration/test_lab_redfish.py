"""`driver: redfish` nodes (issue 21): the VM lab's Redfish machine, behind sushy-tools on
127.0.0.1, enrolled into the netns lab's Ironic through k1prov's enroll verb.

Ironic's `redfish` hardware type checks the BMC on its way to manageable; its power on
(k1prov's own power action, the one deploy uses) and off (the SDK: k1prov has no power
verb) start and stop the libvirt domain; a wrong password leaves its node in `enroll` with
a row naming the node and the BMC, while the other node goes on.

Both labs are their own: the netns lab on K1PROV_TEST_LAB_PORT_OFFSET/_BRIDGE/_CIDR with
one machine (none of its machines is enrolled here), the VM lab on
K1PROV_TEST_VM_LAB_BRIDGE/_CIDR/_PORT_OFFSET (fixtures of test_lab_vm.py). About a minute
when both venvs are installed. Run alone with `pytest tests/integration/test_lab_redfish.py`.
"""
from __future__ import annotations

import os
import time

import pytest
from lab_fixture import beside_session_lab, bring_up
from labhosts import IRONIC_API_VERSION, assert_a_refused_new_redfish_login_changes_nothing, lab_connection
from test_lab_vm import _machine, vm_env, vm_lab  # noqa: F401  (fixtures)

from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.ironic import IronicNodes
from k1prov.lab import Lab
from k1prov.provisioner import Provisioner

pytestmark = [pytest.mark.vm, pytest.mark.lab]

CLUSTER = "rfish"
GOOD, BAD = "rf01", "rf-badpw"
# Ironic reading the domain's new power state, and libvirt showing it: 4-8 s on this machine
# lightly loaded; a bound, not a goal (one run under a load average of 32 failed after 162 s
# in the last test with the bound at 120 s; its cause was not captured).
POWER_WAIT = 300.0


# Ports: the session lab's offset plus this (test_lab_auth's lab is at +300, the conductors'
# at +500): the session's lab is up beside this one in a whole run.
PORT_SHIFT = 700


@pytest.fixture(scope="module")
def netns_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, mounts)")
    root = tmp_path_factory.mktemp("rflab")
    # Without automated cleaning: the VM's provide would boot the netns lab's stand-in deploy
    # image (its machines never boot it; a VM would), and clean wait for ever.
    s = beside_session_lab(root, shift=PORT_SHIFT, automated_clean=False)
    lab = Lab(s)
    t0 = time.monotonic()
    bring_up(lab)
    print(f"\nnetns lab up: {time.monotonic() - t0:.1f} s")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def redfish_env(netns_lab, vm_lab, tmp_path_factory):  # noqa: F811  (vm_lab: a fixture)
    d = tmp_path_factory.mktemp("redfish")
    m = _machine("redfish")
    bad_pw = d / "bad-password"
    bad_pw.write_text("not-the-bmc-password\n")
    s = netns_lab.settings
    inv = d / "redfish.yaml"
    # The bad node names no system_id: Ironic would take the BMC's only system (it never
    # gets that far: the BMC refuses the login first).
    inv.write_text(f"""\
cluster: {CLUSTER}
cloud: {{ironic_url: "{s.ironic_url}", glance_url: "{s.glance_url}"}}
defaults:
  driver: redfish
  interfaces: {{boot: pxe, deploy: direct}}
  bmc: {{url: "{m['bmc']['url']}", username: {m['bmc']['username']}, verify: false,
         password: {{file: "{vm_lab.settings.bmc_password_file}"}}}}
nodes:
  - name: {GOOD}
    bmc: {{system_id: "{m['bmc']['system']}"}}
    macs: ["{m['mac']}"]
    address: {m['address']}
  - name: {BAD}
    bmc: {{password: {{file: "{bad_pw}"}}}}
    macs: ["52:54:00:fe:ff:01"]
    address: 10.245.0.250
""")
    conn = lab_connection(s, api_version=IRONIC_API_VERSION)
    try:
        yield {"inv": inv, "conn": conn, "machine": m, "lab": vm_lab}
    finally:
        Provisioner(load_inventory(inv)).delete_nodes()
        if vm_lab.libvirt.state(m["name"]) == "running":   # a test that failed half-way
            vm_lab.libvirt.virsh("destroy", m["name"])


def _wait_domain(vm_lab, name: str, want: str) -> None:
    deadline = time.monotonic() + POWER_WAIT
    while (state := vm_lab.libvirt.state(name)) != want:
        assert time.monotonic() < deadline, f"{name} is {state!r}, not {want!r}"
        time.sleep(0.5)


def test_enroll_checks_the_redfish_bmc_and_a_wrong_password_fails_alone(redfish_env):
    t0 = time.monotonic()
    report = Provisioner(load_inventory(redfish_env["inv"])).enroll()
    print(f"\nenroll (1 good, 1 wrong password): {time.monotonic() - t0:.1f} s")
    rows = {o.node: o for o in report.outcomes}
    good, bad = rows[GOOD], rows[BAD]
    assert good.status is Status.OK and good.provision_state == "available", good
    assert bad.status is not Status.OK and bad.provision_state == "enroll", bad
    m = redfish_env["machine"]
    # The row names the BMC as the inventory has it (no system_id: the URL alone).
    assert f"BMC {m['bmc']['url']}" in bad.error, bad.error
    assert "not-the-bmc-password" not in bad.error
    print(f"{BAD}: {bad.error}")

    node = redfish_env["conn"].baremetal.get_node(good.uuid)
    assert node.driver == "redfish"
    assert (node.power_interface, node.management_interface, node.boot_interface) == \
        ("redfish", "redfish", "pxe")
    info = node.driver_info
    assert info["redfish_address"] == m["bmc"]["url"]
    assert info["redfish_system_id"] == m["bmc"]["system"]
    assert info["redfish_username"] == m["bmc"]["username"]
    assert info["redfish_verify_ca"] is False
    assert info["redfish_password"] == "******"       # Ironic has it; nobody reads it back
    assert not any(k.startswith("ipmi_") for k in info)
    # Ironic read the power through Redfish on its way to manageable.
    assert node.power_state == "power off"


def test_a_changed_redfish_password_the_bmc_refuses_leaves_the_node_as_it_was(redfish_env, tmp_path):
    """Issue 21: a changed password of an enrolled redfish node is tried against the BMC
    first (a Redfish GET of its system with the new login; a 401 asked again once): the
    sushy-tools BMC refuses it, so Ironic keeps the login that works and the row says so."""
    wrong = tmp_path / "new-wrong-password"
    wrong.write_text("a-new-but-wrong-password\n")
    inv = tmp_path / "changed.yaml"
    inv.write_text(redfish_env["inv"].read_text().replace(
        f"    bmc: {{system_id: ", f"    bmc: {{password: {{file: \"{wrong}\"}}, system_id: ", 1))
    m = redfish_env["machine"]
    assert_a_refused_new_redfish_login_changes_nothing(
        redfish_env["conn"], GOOD, redfish_env["inv"], inv, f"{m['bmc']['url']}{m['bmc']['system']}",
        "a-new-but-wrong-password")


def test_power_through_redfish_starts_and_stops_the_domain(redfish_env):
    conn, vm_lab, m = redfish_env["conn"], redfish_env["lab"], redfish_env["machine"]
    uuid = conn.baremetal.find_node(GOOD, ignore_missing=False).id
    assert vm_lab.libvirt.state(m["name"]) == "shut off"
    t0 = time.monotonic()
    IronicNodes(conn, cluster=CLUSTER).power_on(GOOD, uuid, timeout=POWER_WAIT)
    _wait_domain(vm_lab, m["name"], "running")
    on = time.monotonic() - t0
    t0 = time.monotonic()
    conn.baremetal.set_node_power_state(uuid, "power off", wait=True, timeout=POWER_WAIT)
    _wait_domain(vm_lab, m["name"], "shut off")
    print(f"\npower on through Ironic + Redfish: {on:.1f} s; off: {time.monotonic() - t0:.1f} s")
    assert conn.baremetal.get_node(uuid).power_state == "power off"


def test_without_a_system_id_ironic_uses_the_bmcs_only_system(redfish_env, tmp_path):
    """The VM lab's sushy-tools serves one system: with system_id taken out of the inventory,
    enroll removes it from Ironic and the power still reaches the same domain."""
    conn, vm_lab, m = redfish_env["conn"], redfish_env["lab"], redfish_env["machine"]
    text = redfish_env["inv"].read_text()
    inv = tmp_path / "no-system.yaml"
    # rf01 without its system_id, and without rf-badpw (which has none either: one BMC,
    # one system, one node).
    text = text.split(f"  - name: {BAD}\n")[0]
    inv.write_text(text.replace(f'    bmc: {{system_id: "{m["bmc"]["system"]}"}}\n', ""))
    report = Provisioner(load_inventory(inv)).enroll(limit=[GOOD])
    row = report.outcomes[0]
    assert row.status is Status.OK and row.provision_state == "available", row
    assert row.changes == ["driver_info.redfish_system_id removed"], row.changes
    node = conn.baremetal.get_node(row.uuid)
    assert "redfish_system_id" not in node.driver_info
    IronicNodes(conn, cluster=CLUSTER).power_on(GOOD, row.uuid, timeout=POWER_WAIT)
    _wait_domain(vm_lab, m["name"], "running")
    conn.baremetal.set_node_power_state(row.uuid, "power off", wait=True, timeout=POWER_WAIT)
    _wait_domain(vm_lab, m["name"], "shut off")
