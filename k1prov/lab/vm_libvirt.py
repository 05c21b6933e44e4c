"""The VM lab's libvirt: a private libvirtd and the machines' domains.

The lab runs its own libvirtd in a mount namespace of its own, where /etc/libvirt,
/run/libvirt, /var/lib/libvirt and /var/log/libvirt are directories of the lab. So:
- its qemu.conf (QEMU as root, see below) never touches the machine's /etc/libvirt;
- libvirt's `default` NAT network can never start: the daemon sees no network
  definitions but the lab's (none), and no autostart link;
- two VM labs (an operator's and the tests') each have their own daemon and socket,
  and clients reach it with `qemu:///system?socket=<lab>/libvirt/run/libvirt-sock`.
Only the capability cache (/var/cache/libvirt) is shared: the first QEMU probe takes
seconds, later starts reuse it.

QEMU runs as root (qemu.conf user/group): with /dev/kvm owned by another group, libvirt
re-probes QEMU on every define for 1-2 minutes and the BMC emulators time out
(/work/shared/vm-proto/NOTES.md, pitfall 10). The QEMU driver still resolves its
compiled-in user `libvirt-qemu` at start, so scripts/install.sh creates that system user
(Debian's libvirt-daemon-system would, but it pulls in systemd as init).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from xml.sax.saxutils import escape

from k1prov.errors import LabError
from k1prov.lab.command import run

# libvirtd up and its QEMU capabilities probed (seconds the first time, from the cache later).
LIBVIRTD_START_TIMEOUT = 180.0
# One virsh call (define, start, destroy: milliseconds to a few seconds under TCG).
VIRSH_TIMEOUT = 60.0

QEMU_CONF = """\
# Written by k1prov (k1prov/lab/vm_libvirt.py): the VM lab's private libvirtd.
user = "root"
group = "root"
# Domain logs to plain files, without virtlogd (one daemon fewer to start by hand).
stdio_handler = "file"
"""

LIBVIRTD_CONF = """\
# Written by k1prov: the VM lab's private libvirtd; its socket is in the lab's directory
# (0700, root only), so no other authentication.
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
"""

# Runs as `sh -c SCRIPT k1prov-libvirtd ETC RUN LIB LOG` inside `unshare --mount`. The pid
# file in the lab's run directory: libvirtd's default, /run/libvirtd.pid, is outside the bind
# mounts and locked, so a second VM lab on the machine (another checkout's tests) could not start.
_NAMESPACE_SCRIPT = (
    'set -e; mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt; '
    'mount --bind "$1" /etc/libvirt; mount --bind "$2" /run/libvirt; '
    'mount --bind "$3" /var/lib/libvirt; mount --bind "$4" /var/log/libvirt; '
    'exec libvirtd --config /etc/libvirt/libvirtd.conf --pid-file /run/libvirt/libvirtd.pid')


def pick_accel(requested: str = "") -> str:
    """'kvm' where KVM runs ordinary guests, else 'tcg'. /dev/kvm from the nested
    `kvm_pvm` module cannot: iPXE triple-faults under it (vm-proto NOTES, pitfall 7)."""
    if requested:
        if requested not in ("kvm", "tcg"):
            raise LabError(f"VM lab accel {requested!r}: use kvm or tcg")
        return requested
    if os.path.exists("/sys/module/kvm_pvm") or not os.path.exists("/dev/kvm"):
        return "tcg"
    return "kvm"


class Libvirt:
    """The lab's libvirtd: its directories, its argv, and virsh against its socket."""

    def __init__(self, base: Path):
        self.base = base
        self.etc = base / "etc"
        self.run_dir = base / "run"
        self.lib = base / "lib"
        self.log = base / "log"

    @property
    def socket(self) -> Path:
        return self.run_dir / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    def write_config(self) -> None:
        for d in (self.etc, self.run_dir, self.lib, self.log, self.etc / "qemu"):
            d.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o700)
        (self.etc / "qemu.conf").write_text(QEMU_CONF)
        (self.etc / "libvirtd.conf").write_text(LIBVIRTD_CONF)

    def argv(self) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                _NAMESPACE_SCRIPT, "k1prov-libvirtd", str(self.etc), str(self.run_dir),
                str(self.lib), str(self.log)]

    def answers(self, *, timeout: float) -> bool:
        if not self.socket.exists():
            return False
        try:
            self.virsh("version", timeout=timeout)
        except LabError:
            return False
        return True

    def virsh(self, *args: str, timeout: float = VIRSH_TIMEOUT) -> str:
        return run(["virsh", "-q", "-c", self.uri, *args], deadline=time.monotonic() + timeout,
                   what="virsh " + " ".join(args[:2]), needs="libvirt-clients")

    def domains(self) -> list[str]:
        return [n for n in self.virsh("list", "--all", "--name").split() if n]

    def state(self, name: str) -> str:
        """'running', 'shut off', ... or 'undefined'."""
        try:
            return self.virsh("domstate", name).strip()
        except LabError:
            return "undefined"

    def define(self, xml_path: Path) -> None:
        self.virsh("define", str(xml_path))

    def remove(self, name: str) -> None:
        """Power the domain off (if on) and forget it."""
        if self.state(name) == "running":
            self.virsh("destroy", name)
        self.virsh("undefine", name)


def domain_xml(*, name: str, uuid: str, memory_mib: int, accel: str, disk: Path, bridge: str,
               tap: str, mac: str, serial_log: Path) -> str:
    """One machine: 1 vCPU, a virtio disk, a virtio NIC with a fixed MAC on the lab bridge
    (its option ROM is iPXE, from ipxe-qemu), an empty CD drive (Redfish virtual media
    later), the serial console to a file. Boot order network, then disk, as a rack
    machine set to PXE; the BMCs' boot device override changes it."""
    if accel == "kvm":
        dtype, cpu, tcg = "kvm", "<cpu mode='host-passthrough'/>", ""
    else:
        # TCG's translation cache defaults to 1 GiB of RSS in QEMU 7.2; 128 MiB is enough.
        dtype, cpu, tcg = "qemu", "<cpu mode='maximum' check='none'/>", \
            "<tcg><tb-cache unit='MiB'>128</tb-cache></tcg>"
    e = lambda v: escape(str(v), {"'": "&apos;"})  # noqa: E731
    return f"""<domain type='{dtype}'>
  <name>{e(name)}</name>
  <uuid>{e(uuid)}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='network'/>
    <boot dev='hd'/>
    <bootmenu enable='no'/>
  </os>
  <features><acpi/><apic/>{tcg}</features>
  {cpu}
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{e(disk)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <interface type='bridge'>
      <source bridge='{e(bridge)}'/>
      <mac address='{e(mac)}'/>
      <model type='virtio'/>
      <target dev='{e(tap)}'/>
    </interface>
    <serial type='file'>
      <source path='{e(serial_log)}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{e(serial_log)}' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <video><model type='vga'/></video>
  </devices>
</domain>
"""
