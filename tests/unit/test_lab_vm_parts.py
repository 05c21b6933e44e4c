"""The VM lab's pure parts: settings, the machines they describe, and the rendered
libvirt domain, dnsmasq and BMC emulator configurations (k1prov/lab/vm*.py). The running
lab is tests/integration/test_lab_vm.py."""
from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from k1prov.errors import ConfigError, LabError
from k1prov.lab.vm import VmLabSettings, machines
from k1prov.lab.vm_bmc import sushy_conf, vbmc_conf
from k1prov.lab.vm_libvirt import Libvirt, domain_xml, pick_accel
from k1prov.lab.vm_net import acks, dnsmasq_conf, leases


def _settings(tmp_path, **kw) -> VmLabSettings:
    return VmLabSettings(root=tmp_path / "vm", venv=tmp_path / "venv", **kw)


def test_machines_alternate_ipmi_and_redfish_with_fixed_macs_and_addresses(tmp_path):
    ms = machines(_settings(tmp_path, nodes=3, bridge="k1pvmx", cidr="10.77.0.1/24"))
    assert [m.bmc["type"] for m in ms] == ["ipmi", "redfish", "ipmi"]
    assert [m.address for m in ms] == ["10.77.0.100", "10.77.0.101", "10.77.0.102"]
    assert [m.bmc["port"] for m in ms if m.bmc["type"] == "ipmi"] == [17230, 17232]
    assert ms[1].bmc["system"] == f"/redfish/v1/Systems/{ms[1].uuid}"
    assert len({m.mac for m in ms}) == 3 and all(m.mac.startswith("52:54:00:") for m in ms)
    assert [m.tap for m in ms] == ["k1pvmx-t0", "k1pvmx-t1", "k1pvmx-t2"]
    # Same name, same ids: a re-created lab keeps its Redfish system ids and MACs.
    again = machines(_settings(tmp_path, nodes=3, bridge="k1pvmx", cidr="10.77.0.1/24"))
    assert [(m.uuid, m.mac) for m in again] == [(m.uuid, m.mac) for m in ms]
    # Another bridge (another VM lab): other MACs.
    other = machines(_settings(tmp_path, nodes=3, bridge="k1pvmy", cidr="10.77.0.1/24"))
    assert not {m.mac for m in other} & {m.mac for m in ms}


@pytest.mark.parametrize("kw", [dict(nodes=0), dict(bridge="a-very-long-br"), dict(cidr="10.0.0.1/28"),
                                dict(vbmcd_port=17231), dict(redfish_port=70000), dict(memory_mib=64)])
def test_bad_settings_are_config_errors(tmp_path, kw):
    with pytest.raises(ConfigError):
        _settings(tmp_path, **kw)


def test_default_settings_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("K1PROV_VM_LAB_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("K1PROV_VM_LAB_BRIDGE", "k1pq0")
    monkeypatch.setenv("K1PROV_VM_LAB_CIDR", "10.9.0.1/24")
    monkeypatch.setenv("K1PROV_VM_LAB_PORT_OFFSET", "1000")
    s = VmLabSettings.default(nodes=4)
    assert (s.root, s.bridge, s.cidr, s.nodes) == (tmp_path / "d", "k1pq0", "10.9.0.1/24", 4)
    assert (s.ipmi_base_port, s.vbmcd_port, s.redfish_port) == (18230, 18291, 19000)


def test_pick_accel_honours_a_request_and_refuses_nonsense():
    assert pick_accel("tcg") == "tcg"
    assert pick_accel("kvm") == "kvm"
    assert pick_accel() in ("kvm", "tcg")
    with pytest.raises(LabError):
        pick_accel("xen")


@pytest.mark.parametrize("accel,dtype", [("tcg", "qemu"), ("kvm", "kvm")])
def test_domain_xml(accel, dtype):
    xml = domain_xml(name="k1pvm0-n0", uuid="5f0c6d2e-2b1e-4c55-9a55-6b1f0c0a7f20", memory_mib=1536,
                     accel=accel, disk=Path("/x/d.qcow2"), bridge="k1pvm0", tap="k1pvm0-t0",
                     mac="52:54:00:01:02:03", serial_log=Path("/x/s.log"))
    dom = ElementTree.fromstring(xml)
    assert dom.get("type") == dtype
    assert [b.get("dev") for b in dom.findall("./os/boot")] == ["network", "hd"]
    nic = dom.find("./devices/interface")
    assert nic.find("source").get("bridge") == "k1pvm0"
    assert nic.find("mac").get("address") == "52:54:00:01:02:03"
    assert nic.find("target").get("dev") == "k1pvm0-t0"
    assert dom.find("./devices/serial/source").get("path") == "/x/s.log"
    # TCG's translation cache capped (QEMU 7.2 would take 1 GiB of RSS for it).
    assert (dom.find("./features/tcg/tb-cache") is not None) == (accel == "tcg")


def test_libvirt_is_private_to_the_lab(tmp_path):
    lv = Libvirt(tmp_path / "libvirt")
    assert lv.uri == f"qemu:///system?socket={tmp_path}/libvirt/run/libvirt-sock"
    lv.write_config()
    assert 'user = "root"' in (lv.etc / "qemu.conf").read_text()
    argv = lv.argv()
    assert argv[:2] == ["unshare", "--mount"] and str(lv.etc) in argv


def test_dnsmasq_answers_known_macs_only_without_router_or_dns(tmp_path):
    conf = dnsmasq_conf(bridge="k1pvm0", cidr="10.252.0.1/24",
                        hosts=[("52:54:00:01:02:03", "10.252.0.100", "k1pvm0-n0")],
                        tftp_root=tmp_path, log=tmp_path / "d.log", leases=tmp_path / "l",
                        boot_url="http://10.252.0.1:18088/boot.ipxe")
    lines = conf.splitlines()
    for want in ("interface=k1pvm0", "bind-interfaces", "port=0", "dhcp-ignore=tag:!known",
                 # iPXE chainloads Ironic's boot script over HTTP on the bridge address.
                 "dhcp-boot=tag:ipxe,http://10.252.0.1:18088/boot.ipxe",
                 "dhcp-option=3", "dhcp-option=6", "dhcp-range=10.252.0.100,static,255.255.255.0,1h",
                 "dhcp-host=52:54:00:01:02:03,10.252.0.100,k1pvm0-n0"):
        assert want in lines


def test_leases_and_acks(tmp_path):
    (tmp_path / "l").write_text("1796661593 52:54:00:f2:00:00 10.250.0.100 * 01:52:54:00:f2:00:00\n")
    assert leases(tmp_path / "l") == {"52:54:00:f2:00:00": "10.250.0.100"}
    assert leases(tmp_path / "missing") == {}
    (tmp_path / "d.log").write_text(
        "Dec  7 dnsmasq-dhcp[1]: 42 DHCPOFFER(k1) 10.250.0.100 52:54:00:f2:00:00\n"
        "Dec  7 dnsmasq-dhcp[1]: 42 DHCPACK(k1) 10.250.0.100 52:54:00:F2:00:00 n0\n")
    assert len(acks(tmp_path / "d.log", "52:54:00:f2:00:00")) == 1


def test_emulator_configs(tmp_path):
    text = sushy_conf(port=18000, libvirt_uri="qemu:///system?socket=/s", allowed=["u1", "n1"])
    ns: dict = {}
    exec(text, ns)   # sushy-tools reads its config as Python
    assert ns["SUSHY_EMULATOR_LISTEN_IP"] == "127.0.0.1"
    assert ns["SUSHY_EMULATOR_ALLOWED_INSTANCES"] == ["u1", "n1"]
    assert ns["SUSHY_EMULATOR_LIBVIRT_URI"] == "qemu:///system?socket=/s"
    assert "server_port = 17291" in vbmc_conf(config_dir=tmp_path / "domains", port=17291, log=tmp_path / "l")


def test_the_vm_labs_ironic_is_the_labs_on_its_own_ports_without_simulated_machines(tmp_path):
    from k1prov.lab.config import VM_KERNEL_APPEND, render_ironic_conf
    from k1prov.lab.lab import Lab

    s = VmLabSettings(root=tmp_path / "vm", venv=tmp_path / "venv", lab_venv=tmp_path / "lv",
                      bridge="k1pq0", cidr="10.9.0.1/24", ironic_port=20385, glance_port=20292,
                      http_port=20088)
    ls = s.ironic_settings()
    assert (ls.bridge, ls.cidr, ls.ironic_port, ls.glance_port, ls.http_port) == \
        ("k1pq0", "10.9.0.1/24", 20385, 20292, 20088)
    assert (ls.cloud_name, ls.auth, ls.hardware, ls.venv) == ("k1prov-lab-vm", "http_basic", "vm", tmp_path / "lv")
    assert ls.root.parent == s.root
    assert Lab(ls).services == ("http", "glance", "ironic")
    conf = render_ironic_conf(ls)
    assert f"kernel_append_params = {VM_KERNEL_APPEND}" in conf and "ipxe_timeout = 120" in conf
    assert "console=ttyS0" in VM_KERNEL_APPEND and "rootfstype=ramfs" in VM_KERNEL_APPEND
    # Automated cleaning on, as on a rack (metadata erase), with no conductor-wide stand-in
    # deploy images (they boot no VM): a node cleans with the agent ramdisk in its driver_info.
    import configparser

    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.read_string(conf)
    assert cp["conductor"]["automated_clean"] == "true"
    assert "deploy_kernel" not in cp["conductor"] and "deploy_ramdisk" not in cp["conductor"]
    assert (cp["deploy"]["erase_devices_priority"], cp["deploy"]["erase_devices_metadata_priority"]) == ("0", "99")
    # The netns lab keeps its simulated machines and Ironic's default kernel line.
    from k1prov.lab.config import LabSettings

    netns = LabSettings(root=tmp_path / "n", venv=tmp_path / "lv")
    assert "bmcsim" in Lab(netns).services and "reconciler" in Lab(netns).services
    assert "kernel_append_params" not in render_ironic_conf(netns)


def test_vm_inventory_has_an_ipmi_and_a_redfish_node_and_matches_the_checked_in_file(tmp_path, monkeypatch):
    from k1prov.inventory.loader import parse_inventory
    from k1prov.lab.vm_inventory import render_vm_inventory

    s = _settings(tmp_path, nodes=3)
    # `lab up --kind vm` makes the key pair the inventory names.
    (s.root / "ssh").mkdir(parents=True)
    (s.root / "ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheInventoryCheckOnly0000000 x\n")
    inv = parse_inventory(render_vm_inventory(s), path=tmp_path / "lab-vm.yaml")
    ms = machines(s)
    assert [n.name for n in inv.nodes] == ["vm01", "vm02", "vm03"]
    assert [n.driver for n in inv.nodes] == ["ipmi", "redfish", "ipmi"]
    assert [n.address for n in inv.nodes] == [m.address for m in ms]
    assert [list(n.macs) for n in inv.nodes] == [[m.mac] for m in ms]
    with pytest.raises(ConfigError):
        render_vm_inventory(s, nodes=4)
    # inventories/lab-vm.yaml is the default VM lab's (2 machines), paths under ~.
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for var in ("K1PROV_VM_LAB_DIR", "K1PROV_VM_LAB_BRIDGE", "K1PROV_VM_LAB_CIDR", "K1PROV_VM_LAB_PORT_OFFSET",
                "K1PROV_VM_LAB_VENV", "K1PROV_LAB_VENV"):
        monkeypatch.delenv(var, raising=False)
    checked_in = Path(__file__).resolve().parents[2] / "inventories" / "lab-vm.yaml"
    assert render_vm_inventory(VmLabSettings.default(nodes=2), home_relative=True) == checked_in.read_text()
