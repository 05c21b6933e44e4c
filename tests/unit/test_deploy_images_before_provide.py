"""Issue 21: with automated cleaning, `provide` boots the deploy ramdisk, so every node has
its deploy kernel/ramdisk in driver_info before k1prov fires provide: written by enroll's
create or update (never counted as a BMC login change), and `cluster up` registers the
images before it enrolls. Against the recording stand-in for the SDK
(tests/unit/sdk_standin.py); the deploy images bypass Glance, so no Glance is needed."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

import k1prov.cluster
import k1prov.context
from k1prov.fanout import Status
from k1prov.inventory import parse_inventory
from k1prov.ironic import IronicNodes
from k1prov.provisioner import Provisioner

from sdk_standin import RecordingConnection

KERNEL, RAMDISK = "http://127.0.0.1:9/ipa.kernel", "http://127.0.0.1:9/ipa.initramfs"
SUM = "sha256:" + "1" * 64
INVENTORY = f"""\
cluster: dimg
cloud: {{ironic_url: "http://127.0.0.1:9"}}
ssh: {{user: root, public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForOrchestrationTests000000 t"]}}
images:
  deploy_kernel: {{name: k, url: "{KERNEL}", bypass_glance: true, checksum: "{SUM}"}}
  deploy_ramdisk: {{name: r, url: "{RAMDISK}", bypass_glance: true, checksum: "{SUM}"}}
  user: {{name: u, url: "http://127.0.0.1:9/u.raw", bypass_glance: true, checksum: "{SUM}"}}
defaults:
  bmc: {{address: 127.0.0.1, username: u, password: "pw"}}
roles:
  spark: {{source: preinstalled, manager: standalone}}
nodes:
  - {{name: n1, bmc: {{port: 7001}}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1, roles: [spark-master]}}
  - {{name: n2, bmc: {{port: 7002}}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2, roles: [spark-client]}}
"""
REFS = {"deploy_kernel": KERNEL, "deploy_ramdisk": RAMDISK}


@pytest.fixture
def ironic(monkeypatch):
    conn = RecordingConnection(cluster="dimg")
    conn.config = SimpleNamespace(config={"auth_type": "none"})      # standalone Ironic
    monkeypatch.setattr(k1prov.context, "connect", lambda cloud, api_timeout: conn)
    baremetal = conn.baremetal
    # What each node's driver_info held when k1prov fired `provide` at it.
    baremetal.at_provide = {}
    provision = baremetal._provision

    def recording(ref, action):
        if action == "provide":
            node = baremetal._get(ref)
            baremetal.at_provide[node.name] = {k: node.driver_info.get(k) for k in REFS}
        provision(ref, action)

    monkeypatch.setattr(baremetal, "_provision", recording)
    return baremetal


def _prov(tmp_path) -> Provisioner:
    return Provisioner(parse_inventory(INVENTORY, path=str(tmp_path / "inv.yaml")), state_root=tmp_path / "state")


def test_enroll_creates_each_node_with_the_deploy_images_before_provide(tmp_path, ironic):
    report = _prov(tmp_path).enroll()
    assert {o.node: (o.status, o.action) for o in report.outcomes} == {
        "n1": (Status.OK, "created"), "n2": (Status.OK, "created")}
    assert ironic.at_provide == {"n1": REFS, "n2": REFS}


def test_an_enrolled_node_gets_new_deploy_images_in_its_update_and_no_bmc_login_is_tried(
        tmp_path, ironic, bmc_logins):
    _prov(tmp_path).enroll()
    n1 = ironic.node("n1")
    # An older ramdisk, and a node a failed cleaning left in manageable: provided again.
    n1.driver_info["deploy_ramdisk"] = "http://127.0.0.1:9/old.initramfs"
    n1.provision_state = "manageable"
    ironic.at_provide.clear()
    inv = parse_inventory(INVENTORY, path=str(tmp_path / "inv.yaml"))
    assert IronicNodes(RecordingConnection("dimg"), cluster="dimg").login_changes(inv.nodes[0], n1) is False
    report = _prov(tmp_path).enroll()
    rows = {o.node: o for o in report.outcomes}
    assert rows["n1"].action == "updated" and rows["n1"].changes == ["driver_info.deploy_ramdisk"]
    assert rows["n2"].action == "unchanged"
    assert bmc_logins == []              # a deploy image is not a BMC login
    assert ironic.at_provide == {"n1": REFS}


def test_enroll_without_registered_deploy_images_goes_on_and_says_so(tmp_path, ironic):
    text = INVENTORY.replace(f'  deploy_kernel: {{name: k, url: "{KERNEL}", bypass_glance: true, checksum: "{SUM}"}}\n',
                             "").replace(
        f'  deploy_ramdisk: {{name: r, url: "{RAMDISK}", bypass_glance: true, checksum: "{SUM}"}}\n', "")
    said: list[str] = []
    prov = Provisioner(parse_inventory(text, path=str(tmp_path / "inv.yaml")), state_root=tmp_path / "state",
                       notify=said.append)
    report = prov.enroll()
    assert report.exit_code() == 0
    assert ironic.at_provide == {"n1": {k: None for k in REFS}, "n2": {k: None for k in REFS}}
    assert any("no deploy kernel/ramdisk in the inventory" in line for line in said), said


def test_cluster_up_registers_the_images_before_it_enrolls(tmp_path, ironic, monkeypatch):
    seen = {}

    def deploy(ctx, *, limit):
        # Stop the run here (as a Ctrl-C does): what enroll left is what this test looks at.
        seen["states"] = {n.name: n.provision_state for n in ironic.by_id.values()}
        raise KeyboardInterrupt

    monkeypatch.setattr(k1prov.cluster.deploy, "deploy", deploy)
    report = _prov(tmp_path).cluster_up()
    assert [p.name for p in report.phases] == ["images", "enroll"]
    images = report.phases[0].report
    assert {o.node: o.action for o in images.outcomes} == {
        "image:k": "bypasses glance", "image:r": "bypasses glance", "image:u": "bypasses glance"}
    assert ironic.at_provide == {"n1": REFS, "n2": REFS}
    assert seen["states"] == {"n1": "available", "n2": "available"}


def test_images_register_before_enroll_is_the_order_that_works(tmp_path, ironic):
    """An Ironic without default deploy images: images register first (a node not enrolled
    yet is no failure), then enroll finds the refs and creates the nodes with them."""
    registered = _prov(tmp_path).register_images()
    assert registered.exit_code() == 0
    assert {o.node: o.action for o in registered.outcomes if not o.node.startswith("image:")} == {
        "n1": "not enrolled (nodes enroll gives it the deploy images)",
        "n2": "not enrolled (nodes enroll gives it the deploy images)"}
    assert _prov(tmp_path).enroll().exit_code() == 0
    assert ironic.at_provide == {"n1": REFS, "n2": REFS}
    again = _prov(tmp_path).register_images()
    assert {o.node: o.action for o in again.outcomes if not o.node.startswith("image:")} == {
        "n1": "unchanged", "n2": "unchanged"}
