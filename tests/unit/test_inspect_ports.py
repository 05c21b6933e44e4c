"""Nodes enrolled without `macs` (issue 21): the inventory accepts them, enroll holds them
in manageable, `nodes inspect` refuses the ones Ironic could not match, and the lab's
pieces that let the real agent be matched (the BMCs' LAN addresses, the PXE default).
The whole path against real Ironic: tests/integration/test_lab_inspect_ports.py."""
from __future__ import annotations

import pytest

from k1prov.enrollment import waits_for_ports
from k1prov.errors import InventoryError, LabError
from k1prov.imagecatalog import lab_deploy_image_bytes
from k1prov.inspection import refuse_portless
from k1prov.inventory import parse_inventory
from k1prov.lab.machine import machine_mac
from k1prov.lab.netns import bmc_lan_address
from k1prov.lab.pxe import boot_purpose, pxe_config_path, read_pxe_config, write_inspection_default

INVENTORY = """\
cluster: rack
cloud:
  cloud: k1prov-lab
defaults:
  bmc: {username: admin, password: {env: BMC_PASSWORD}}
nodes:
  - name: new1
    bmc: {address: 10.0.1.10}
    address: 10.0.0.10
    roles: [zookeeper]
  - name: old1
    bmc: {address: 10.0.1.11}
    macs: ["52:54:00:aa:00:02"]
    address: 10.0.0.11
    roles: [zookeeper]
"""


def test_a_node_without_macs_is_a_node_whose_ports_come_from_inspection():
    inv = parse_inventory(INVENTORY, path="inv.yaml")
    assert inv.node("new1").macs == ()
    assert inv.node("old1").macs == ("52:54:00:aa:00:02",)


def test_an_empty_macs_list_is_refused_where_it_is():
    text = INVENTORY.replace("    address: 10.0.0.10\n", "    macs: []\n    address: 10.0.0.10\n", 1)
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, path="inv.yaml")
    assert info.value.field == "nodes[0].macs" and info.value.line == 9, str(info.value)
    assert "leave macs out to take them from `k1prov nodes inspect`" in info.value.reason


def test_enroll_holds_back_only_a_node_with_neither_macs_nor_ports():
    assert waits_for_ports((), 0)
    # Inspection made its ports: provided like any other.
    assert not waits_for_ports((), 1)
    assert not waits_for_ports(("52:54:00:aa:00:02",), 0)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.3.0.9", "::1", "localhost"])
def test_a_node_without_ports_behind_a_loopback_bmc_is_refused(address):
    why = refuse_portless(address)
    assert why and address in why and "list its MACs or give the BMC's LAN address" in why


@pytest.mark.parametrize("address", ["169.254.79.6", "10.0.1.10", "bmc1.rack.example"])
def test_a_node_without_ports_behind_a_lan_bmc_is_inspected(address):
    assert refuse_portless(address) is None


def test_each_bmc_port_has_its_own_link_local_lan_address():
    assert bmc_lan_address(20230) == "169.254.79.6"
    ports = range(6230, 6230 + 40)
    assert len({bmc_lan_address(p) for p in ports}) == 40
    for bad in (255, 0xff00):
        with pytest.raises(LabError):
            bmc_lan_address(bad)


def test_a_machine_ironic_wrote_no_config_for_boots_the_inspection_default(tmp_path):
    """pxelinux's order: 01-<mac>, then default. The lab's default boots the agent with
    Ironic's inspection callback and BOOTIF (the NIC Ironic makes the port of)."""
    kernel, ramdisk = tmp_path / "k", tmp_path / "r"
    kernel.write_bytes(lab_deploy_image_bytes("lab-deploy-kernel"))
    ramdisk.write_bytes(lab_deploy_image_bytes("lab-deploy-ramdisk"))
    root = tmp_path / "tftpboot"
    mac = machine_mac(20230)
    with pytest.raises(LabError, match="no config for"):
        read_pxe_config(root, mac)
    path = write_inspection_default(root, kernel=kernel, ramdisk=ramdisk, ironic_url="http://10.244.0.1:20385/")
    assert write_inspection_default(root, kernel=kernel, ramdisk=ramdisk,
                                    ironic_url="http://10.244.0.1:20385") == path
    boot = read_pxe_config(root, mac)
    assert boot.config.name == "default" and boot_purpose(boot.cmdline) == "inspection"
    assert "ipa-inspection-callback-url=http://10.244.0.1:20385/v1/continue_inspection" in boot.cmdline
    assert boot.cmdline.endswith("BOOTIF=01-" + mac.replace(":", "-"))
    # A MAC Ironic wrote a config for boots that one, as before.
    own = pxe_config_path(root, mac)
    own.write_text(path.read_text().replace("ipa-inspection-callback-url", "ipa-api-url"))
    assert read_pxe_config(root, mac).config == own
