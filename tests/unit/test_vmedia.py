"""Redfish virtual media (issue 21): `interfaces: {boot: redfish-virtual-media}` in the
inventory (Redfish nodes only, a located error otherwise), what enroll sends Ironic, and the
VM lab's Ironic and sushy-tools configuration for it. The deploy through it is
tests/integration/test_lab_vmedia.py."""
from __future__ import annotations

import configparser

from k1prov.ironic import desired_for
from k1prov.lab.vm import VmLabSettings
from k1prov.lab.vm_bmc import VMEDIA_POOL, sushy_conf

from test_inventory_redfish import HEAD, load, node, refuse

RF = '{url: "http://127.0.0.1:8000", verify: false}'
IPMI = "{address: 10.0.0.9}"
VMEDIA = "    interfaces: {boot: redfish-virtual-media}\n"


def test_a_redfish_node_may_boot_from_virtual_media_and_enroll_asks_ironic_for_it(monkeypatch):
    monkeypatch.setenv("P", "pw")
    inv = load(HEAD + node(RF) + VMEDIA)
    n = inv.nodes[0]
    assert n.interfaces == {"boot": "redfish-virtual-media"}
    attrs = desired_for(n, "c").attrs
    assert attrs["boot_interface"] == "redfish-virtual-media"
    assert (attrs["power_interface"], attrs["management_interface"]) == ("redfish", "redfish")
    # From defaults: every Redfish node of the block.
    s = HEAD.replace("defaults:\n", "defaults:\n  interfaces: {boot: redfish-virtual-media}\n") + node(RF)
    assert load(s).nodes[0].interfaces["boot"] == "redfish-virtual-media"


def test_an_ipmi_node_booting_from_virtual_media_is_a_located_error():
    s = HEAD + node(IPMI, driver="ipmi") + VMEDIA
    err = refuse(s, "nodes[0].interfaces.boot", "redfish-virtual-media",
                 "boot interface 'redfish-virtual-media' needs driver: redfish")
    assert "node rf01 has driver: ipmi" in err.reason
    # The same from defaults: located at the defaults line, naming the node.
    s = HEAD.replace("defaults:\n", "defaults:\n  interfaces: {boot: redfish-virtual-media}\n") + \
        node(IPMI, name="ip01", driver="ipmi")
    err = refuse(s, "defaults.interfaces.boot", "redfish-virtual-media", "needs driver: redfish")
    assert "node ip01" in err.reason
    # Other boot interfaces stay free for either driver.
    assert load(HEAD + node(IPMI, driver="ipmi") + "    interfaces: {boot: ipxe}\n").nodes[0].interfaces == \
        {"boot": "ipxe"}


def _parse(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.read_string(text)
    return cp


def test_the_vm_labs_ironic_enables_virtual_media_last_with_its_iso_tools(tmp_path):
    from k1prov.lab.config import VM_ISOLINUX_BIN, VM_KERNEL_APPEND, LabSettings, render_ironic_conf

    s = VmLabSettings(root=tmp_path / "vm", venv=tmp_path / "venv", lab_venv=tmp_path / "lv")
    cp = _parse(render_ironic_conf(s.ironic_settings()))
    boots = cp["DEFAULT"]["enabled_boot_interfaces"].split(",")
    # Last: never a node's default (the inventory asks for it), ipxe stays the lab's boot.
    assert boots[-1] == "redfish-virtual-media" and "ipxe" in boots
    assert cp["DEFAULT"]["isolinux_bin"] == VM_ISOLINUX_BIN == "/usr/lib/ISOLINUX/isolinux.bin"
    assert cp["redfish"]["use_swift"] == "false"
    assert cp["redfish"]["kernel_append_params"] == VM_KERNEL_APPEND
    # The ISO is published where the lab's HTTP server serves it.
    assert cp["deploy"]["http_url"] == s.ironic_settings().http_url
    # The netns lab has no Redfish machines to boot from a CD.
    netns = _parse(render_ironic_conf(LabSettings(root=tmp_path / "n", venv=tmp_path / "lv")))
    assert "redfish-virtual-media" not in netns["DEFAULT"]["enabled_boot_interfaces"]
    assert not netns.has_section("redfish")


def test_sushy_keeps_virtual_media_in_the_labs_storage_pool(tmp_path):
    ns: dict = {}
    exec(sushy_conf(port=18000, libvirt_uri="qemu:///system?socket=/s", allowed=["u1"]), ns)
    assert ns["SUSHY_EMULATOR_STORAGE_POOL"] == VMEDIA_POOL
    s = VmLabSettings(root=tmp_path / "vm", venv=tmp_path / "venv")
    # Under the disks: `lab down` removes the inserted images with them.
    assert s.vmedia_dir.parent == s.disks_dir
