"""Redfish virtual media in the VM lab (issue 21): a deploy whose agent boots from a CD.

The VM lab's Redfish machine (sushy-tools over libvirt) is deployed with Ironic's
`redfish-virtual-media` boot (`interfaces: {boot: redfish-virtual-media}` in the
inventory), through the CLI as an operator runs it. Ironic builds the deploy ISO (isolinux,
the agent's kernel and ramdisk, its kernel line with ipa-api-url), publishes it on its HTTP
server, and asks the BMC to insert it and boot from it once. The test watches, while the
deploy runs, what the BMC and libvirt say of the CD drive, and then shows:
- the ISO was in the machine's CD drive during the deploy (Redfish `VirtualMedia/Cd` and
  the libvirt domain's cdrom source in the emulator's storage pool);
- the machine never network-booted: no DHCP transaction of its MAC came from the firmware's
  PXE/iPXE ROM and none was given a boot file; the agent's own DHCP (plain, no boot
  options) is what gave it its address;
- the agent looked its node up, the node is active, the user image boots and answers SSH;
- the media is ejected once the deploy is done, and stays so after undeploy.
Each step's time from the deploy's start is printed.

It reuses test_lab_vm.py's lab (fixtures vm_env and vm_lab: the same bridge, subnet and
ports, K1PROV_TEST_VM_LAB_*) and deploys only the Redfish machine (one VM; TCG is slow).
Gated like the iPXE deploy: `-m vm` or K1PROV_TEST_VM_DEPLOY=1.
"""
from __future__ import annotations

import datetime
import json
import re
import threading
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from typer.testing import CliRunner

from k1prov.cli import app
from k1prov.lab.vm import VmLab
from k1prov.lab.vm_net import acks
# The VM lab and its helpers are test_lab_vm.py's (its fixtures are used by name here).
from test_lab_vm import (DEPLOY_TEST_TIMEOUT, gated_vm_work, _redfish,  # noqa: F401
                         _status, vm_env, vm_lab)

pytestmark = [pytest.mark.vm]

VMEDIA = "redfish-virtual-media"
# How often the watcher reads the BMC's CD drive and the domain (a Redfish GET and a virsh
# dumpxml: milliseconds).
WATCH_INTERVAL = 2.0


class CdWatcher:
    """Reads, in its own thread, the Redfish machine's CD drive (BMC and libvirt) and power
    state; keeps the first time (s from t0) each was seen inserted/ejected."""

    def __init__(self, lab: VmLab, machine: dict, t0: float):
        self.lab, self.machine, self.t0 = lab, machine, t0
        self.inserted_at: float | None = None
        self.ejected_at: float | None = None
        self.powered_on_at: float | None = None
        self.image: str = ""
        self.cd_source: str = ""
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = time.time() - self.t0
                cd = _redfish(self.machine, path="/VirtualMedia/Cd")
                if self.powered_on_at is None and _redfish(self.machine)["PowerState"] == "On":
                    self.powered_on_at = now
                source = cdrom_source(self.lab, self.machine["name"])
                if cd.get("Inserted") and source and self.inserted_at is None:
                    self.inserted_at, self.image, self.cd_source = now, cd.get("Image") or "", source
                elif self.inserted_at is not None and not cd.get("Inserted") and not source \
                        and self.ejected_at is None:
                    self.ejected_at = now
            except Exception as exc:  # noqa: BLE001 - recorded, shown by the test
                self.errors.append(repr(exc))
            self._stop.wait(WATCH_INTERVAL)


def cdrom_source(lab: VmLab, name: str) -> str:
    """The file or volume in the domain's CD drive ('' when empty). sushy-tools attaches the
    image as a new cdrom disk (a volume of its pool) after removing the old one."""
    dom = ElementTree.fromstring(lab.libvirt.virsh("dumpxml", "--inactive", name))
    for disk in dom.findall("./devices/disk[@device='cdrom']"):
        src = disk.find("source")
        if src is not None:
            return src.get("file") or src.get("volume") or src.get("dev") or "?"
    return ""


def dhcp_transactions(log: Path, mac: str) -> list[list[str]]:
    """dnsmasq's log-dhcp lines grouped by transaction (its number after the pid), for the
    transactions that name the MAC."""
    by_xid: dict[str, list[str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r"dnsmasq-dhcp\[\d+\]: (\d+) ", line)
        if m:
            by_xid.setdefault(m.group(1), []).append(line)
    return [lines for lines in by_xid.values() if any(mac.lower() in x.lower() for x in lines)]


def vmedia_inventory(lab: VmLab, path: Path) -> None:
    """The VM lab's inventory with its Redfish machine only, booted from virtual media."""
    from k1prov.lab.vm_inventory import render_vm_inventory

    doc = yaml.safe_load(render_vm_inventory(lab.settings))
    doc["cluster"] = "lab-vmedia"
    doc["nodes"] = [n for n in doc["nodes"] if n.get("driver") == "redfish"]
    doc["nodes"][0]["interfaces"] = {"boot": VMEDIA}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _ironic_at(lab: VmLab, uuid: str, mac: str, pattern: str, t0: float) -> float | None:
    log = lab.settings.ironic_settings().log_dir / "ironic.log"
    for line in log.read_text(errors="replace").splitlines():
        if (uuid in line or mac.replace(":", "%3A") in line) and re.search(pattern, line):
            try:
                stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                continue
            if stamp >= t0:
                return stamp - t0
    return None


@pytest.fixture(scope="module")
def vmedia_deployed(vm_lab, tmp_path_factory, request):
    d, env = gated_vm_work(vm_lab, tmp_path_factory, request.config, name="vmedia",
                           skip="the VM deploy runs with -m vm or K1PROV_TEST_VM_DEPLOY=1 (10-20 min under TCG)")
    inv = d / "lab-vmedia.yaml"
    vmedia_inventory(vm_lab, inv)

    def k1prov(*argv: str):
        result = CliRunner().invoke(app, [*argv, "-i", str(inv)], env=env)
        assert result.exit_code == 0, result.output
        return result

    machine = next(m for m in _status()["machines"] if m["bmc"]["type"] == "redfish")
    t0 = time.monotonic()
    # Images first: enroll's provide cleans each node through the agent ramdisk that
    # `images register` puts in its driver_info (the VM lab has no default deploy images).
    k1prov("images", "register")
    k1prov("nodes", "enroll")
    print(f"\nimages register + enroll (provide cleans both): {time.monotonic() - t0:.1f} s")
    listed = json.loads(k1prov("nodes", "list", "--json").stdout)["nodes"]
    uuid = listed[0]["uuid"]
    dhcp_before = len(acks(vm_lab.settings.dnsmasq_log, machine["mac"]))
    t0 = time.time()
    watcher = CdWatcher(vm_lab, machine, t0)
    watcher.start()
    try:
        k1prov("deploy")
        took = time.time() - t0
    finally:
        # A little longer: the ejection comes with the deploy's last steps.
        time.sleep(WATCH_INTERVAL * 2)
        watcher.stop()
    yield {"dir": d, "inv": inv, "env": env, "k1prov": k1prov, "t0": t0, "took": took, "uuid": uuid,
           "machine": machine, "watcher": watcher, "dhcp_before": dhcp_before}
    CliRunner().invoke(app, ["undeploy", "-i", str(inv)], env=env)


@pytest.mark.timeout(DEPLOY_TEST_TIMEOUT)
def test_deploy_boots_the_agent_from_virtual_media_without_network_boot(vm_lab, vmedia_deployed):
    from k1prov.inventory import load_inventory

    from labhosts import openssh

    dep = vmedia_deployed
    m, w, t0 = dep["machine"], dep["watcher"], dep["t0"]
    node = load_inventory(dep["inv"]).nodes[0]
    key = vm_lab.settings.root / "ssh" / "id_ed25519"
    known_hosts = dep["dir"] / "state" / "lab-vmedia" / "known_hosts"
    out = openssh(key, known_hosts, node.address, "hostname; systemctl is-system-running --wait; "
                  "cat /proc/cmdline", timeout=600)
    ssh_at = time.time() - t0
    assert out.returncode == 0, out.stderr
    hostname, running, cmdline = out.stdout.splitlines()[:3]
    steps = {"power on": _ironic_at(vm_lab, dep["uuid"], m["mac"], r"power state to power on", t0),
             "media inserted": w.inserted_at,
             "agent lookup": _ironic_at(vm_lab, dep["uuid"], m["mac"], r"GET /v1/lookup\?", t0),
             "active": _ironic_at(vm_lab, dep["uuid"], m["mac"], r'moved to provision state "active"', t0),
             "media ejected": w.ejected_at, "deploy returned": dep["took"], "SSH": ssh_at}
    print(f"\n{node.name} (redfish-virtual-media), s from the deploy's start: " + ", ".join(
        f"{k} {v:.0f}" if v is not None else f"{k} ?" for k, v in steps.items()))
    print(f"ISO {w.image} in the CD drive as {w.cd_source}; watcher errors: {w.errors[:3]}")

    # The node was deployed with the virtual media boot, not a default.
    from k1prov.lab.vm_bmc import VMEDIA_POOL

    assert w.inserted_at is not None, f"the CD drive never held an image (watcher errors: {w.errors[:3]})"
    assert w.image.startswith(vm_lab.settings.ironic_settings().http_url) and w.image.endswith(".iso"), w.image
    assert w.cd_source.startswith(str(vm_lab.settings.vmedia_dir)) or VMEDIA_POOL in w.cd_source, w.cd_source
    assert steps["agent lookup"] is not None, "the agent never looked its node up"
    # The firmware never network-booted: no PXE/iPXE DHCP client and no boot file for this
    # MAC in the whole log; the agent's own DHCP gave the address (plain DHCP, no options).
    transactions = dhcp_transactions(vm_lab.settings.dnsmasq_log, m["mac"])
    assert len(acks(vm_lab.settings.dnsmasq_log, m["mac"])) > dep["dhcp_before"], "the agent got no lease"
    # ("next server" is in every answer: dnsmasq with TFTP on fills in siaddr; a boot file is
    # what makes a network boot.)
    booted = [x for t in transactions for x in t
              if re.search(r"PXEClient|user class: iPXE|bootfile|tags: .*ipxe", x)]
    assert not booted, booted[:5]
    http = (vm_lab.settings.ironic_settings().log_dir / "http.log").read_text(errors="replace")
    assert not [x for x in http.splitlines() if x.startswith(m["address"] + " ")
                and ("ipxe" in x or "deploy_kernel" in x or "deploy_ramdisk" in x)]
    # The user image from the disk, named by its config drive, every unit up.
    assert hostname == node.name and running == "running", out.stdout
    assert "root=LABEL=cloudimg-rootfs" in cmdline
    # Ejected once the agent was done: the BMC and libvirt both show an empty drive.
    assert w.ejected_at is not None and steps["active"] is not None
    assert _redfish(m, path="/VirtualMedia/Cd").get("Inserted") is False
    assert cdrom_source(vm_lab, m["name"]) == ""


def test_undeploy_leaves_the_media_ejected(vm_lab, vmedia_deployed):
    t0 = time.monotonic()
    vmedia_deployed["k1prov"]("undeploy")
    print(f"\nundeploy: {time.monotonic() - t0:.0f} s")
    rows = json.loads(vmedia_deployed["k1prov"]("nodes", "list", "--json").stdout)["nodes"]
    assert [(r["provision_state"], r["power_state"]) for r in rows] == [("available", "power off")]
    m = vmedia_deployed["machine"]
    assert _redfish(m, path="/VirtualMedia/Cd").get("Inserted") is False
    assert cdrom_source(vm_lab, m["name"]) == ""
    assert vm_lab.libvirt.state(m["name"]) == "shut off"
