"""Issue 21 against the real lab: an Ironic with automated cleaning and NO conductor-wide
default deploy images (a lab of its own, LabSettings.conductor_deploy_images off), where
`provide` can boot a node's cleaning ramdisk only from the deploy images in the node's own
driver_info. A node enrolled before `images register` ends its provide failed (the lab
really has no default); after `images register`, `nodes enroll` finds the registered
images' Glance ids and writes them at create time, before provide, so both nodes reach
`available` through real cleaning (the machine's agent network-booted)."""
from __future__ import annotations

import configparser
import os
import time

import pytest
from lab_fixture import bring_up, lab_settings
from labhosts import lab_connection, lab_inventory_text, lab_ip, node_range_text, write_deploy_inputs

from k1prov import glance
from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.lab import Lab
from k1prov.lab.machine import machine_name
from k1prov.provisioner import Provisioner

pytestmark = pytest.mark.lab

CLUSTER = "dimgtest"
NAMES = ["dim1", "dim2"]
# Ports: the session lab's offset plus this (others: 300, 500, 700, 760, 800, 900).
PORT_SHIFT = 650
# Addresses .111-.112 of the session's subnet: no other test uses them.
FIRST_ADDRESS = 111
SUM = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, mounts)")
    offset = int(os.environ.get("K1PROV_TEST_LAB_PORT_OFFSET", "10000")) + PORT_SHIFT
    root = tmp_path_factory.mktemp("labdimg")
    s = lab_settings(root, nodes=len(NAMES), port_offset=offset,
                     bridge=os.environ.get("K1PROV_TEST_LAB_BRIDGE", "k1plab0"),
                     cidr=os.environ.get("K1PROV_TEST_LAB_CIDR", "10.251.0.1/24"),
                     automated_clean=True, conductor_deploy_images=False)
    lab = Lab(s)
    bring_up(lab)
    d = root / "work"
    d.mkdir()
    write_deploy_inputs(d, key_comment=CLUSTER)
    inv = d / "dimg.yaml"
    # The deploy kernel/ramdisk through Glance (the real path: Ironic fetches them by
    # Glance id); the user image bypasses Glance, so nothing large is uploaded.
    images = f"""\
ssh: {{user: root, private_key: "{d / 'id_ed25519'}", public_keys: ["{(d / 'id_ed25519.pub').read_text().strip()}"]}}
network: {{prefix_length: 24}}
images:
  deploy_kernel: {{name: dimg-deploy-kernel, file: "{d / 'deploy.kernel'}"}}
  deploy_ramdisk: {{name: dimg-deploy-ramdisk, file: "{d / 'deploy.initramfs'}"}}
  user: {{name: dimg-user, url: "http://127.0.0.1:9/none.raw", checksum: "{SUM}", bypass_glance: true}}
"""
    nodes = node_range_text("dim[1-2]", first_bmc_port=s.bmc_base_port, first_address=lab_ip(s, FIRST_ADDRESS))
    inv.write_text(lab_inventory_text(s, cluster=CLUSTER, nodes=nodes, deploy=images))
    env = {"lab": lab, "inv": inv, "state": d / "state", "conn": lab_connection(s)}
    try:
        yield env
    finally:
        try:
            Provisioner(load_inventory(inv), state_root=env["state"]).delete_nodes()
            for img in glance.list_own_images(env["conn"], CLUSTER):
                env["conn"].image.delete_image(img.id, ignore_missing=True)
        finally:
            lab.down()


def _network_boots(s, port: int) -> int:
    """How often machine `port` booted from the network (each boot of its agent)."""
    console = s.machines_dir / machine_name(port) / "agent.log"
    if not console.exists():
        return 0
    return sum(1 for line in console.read_text(errors="replace").splitlines()
               if line.startswith("==== ") and ": network" in line)


def test_the_lab_has_no_default_deploy_images_and_cleans(env):
    conf = configparser.ConfigParser(interpolation=None, strict=False)
    conf.read(env["lab"].settings.ironic_conf)
    assert conf["conductor"]["automated_clean"] == "true"
    assert "deploy_kernel" not in conf["conductor"] and "deploy_ramdisk" not in conf["conductor"]


def test_a_node_enrolled_before_images_register_cannot_be_cleaned(env):
    """The trap of issue 21, shown on this lab: no deploy images, no cleaning."""
    report = Provisioner(load_inventory(env["inv"]), state_root=env["state"]).enroll(limit=[NAMES[0]])
    row = report.outcomes[0]
    print(f"\n{row.node}: {row.provision_state}: {row.error}")
    assert row.status is Status.FAILED and row.provision_state != "available"
    # Ironic's own words: "... Missing are: ['deploy_kernel', 'deploy_ramdisk']".
    assert "deploy_kernel" in row.error and "deploy_ramdisk" in row.error, row.error


def test_after_images_register_enroll_writes_the_deploy_images_before_provide(env):
    s = env["lab"].settings
    prov = Provisioner(load_inventory(env["inv"]), state_root=env["state"])
    registered = prov.register_images()
    assert registered.exit_code() == 0, [(o.node, o.error) for o in registered.failed]
    ids = {o.node: o.uuid for o in registered.outcomes}
    refs = {"deploy_kernel": ids["image:dimg-deploy-kernel"], "deploy_ramdisk": ids["image:dimg-deploy-ramdisk"]}
    rows = {o.node: o.action for o in registered.outcomes if not o.node.startswith("image:")}
    # dim1 is enrolled (the test before left it failed): pointed; dim2 is not enrolled yet.
    assert rows == {NAMES[0]: "updated", NAMES[1]: "not enrolled (nodes enroll gives it the deploy images)"}
    boots = {port: _network_boots(s, port) for port in s.bmc_ports}

    t0 = time.monotonic()
    report = prov.enroll()
    print(f"\nenroll of {len(NAMES)} nodes through real cleaning: {time.monotonic() - t0:.1f} s")
    by = {o.node: o for o in report.outcomes}
    for name in NAMES:
        assert by[name].status is Status.OK and by[name].provision_state == "available", (name, by[name].error)
    assert by[NAMES[1]].action == "created"
    conn = env["conn"]
    for name in NAMES:
        node = conn.baremetal.find_node(name)
        assert {k: node.driver_info.get(k) for k in refs} == refs
        assert node.provision_state == "available" and not node.last_error
    # Cleaning ran with the agent: each machine network-booted its ramdisk once more.
    for port in s.bmc_ports:
        assert _network_boots(s, port) > boots[port], (port, boots)
