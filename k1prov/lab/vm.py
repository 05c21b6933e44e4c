"""The VM lab (`k1prov lab up --kind vm`): machines that are virtual machines.

Each machine is a libvirt domain (QEMU; KVM where it runs ordinary guests, software
emulation (TCG) where it does not) with a disk, a NIC with a fixed MAC on the lab's own
bridge and its serial console in a file. Half of them (even numbers) have an IPMI BMC
(virtualbmc), the others a Redfish one (sushy-tools). dnsmasq on the bridge answers the
machines' network boot (DHCP, TFTP). Machines start powered off, as in a rack; their BMCs
turn them on.

It runs beside the default (network namespace) lab: its own directory, bridge, subnet,
ports and libvirtd (k1prov.lab.vm_libvirt). `up` is idempotent; `down` leaves no domain,
QEMU, emulator, dnsmasq, bridge, tap or disk file behind.

The lab's own Ironic and Glance (k1prov.lab.lab.Lab with LabSettings.hardware "vm", on
the VM lab's ports and bridge) deploy these machines as on a rack: `direct` deploy, `ipxe`
boot (dnsmasq gives known MACs the URL of Ironic's boot.ipxe, which chains to the node's
own iPXE config over HTTP), the real agent ramdisk (scripts/vm-lab/build-ipa-ramdisk.sh)
and a whole-disk user image (scripts/vm-lab/build-user-image.sh). Its clouds.yaml entry is
`k1prov-lab-vm` (Ironic's own http_basic auth, as Bifrost runs it).

A Redfish machine can also boot the agent from virtual media (Ironic's redfish-virtual-media
boot, `interfaces: {boot: redfish-virtual-media}`): Ironic builds a deploy ISO, sushy-tools
puts it into its libvirt storage pool and the machine's CD drive; the agent still leases its
address from dnsmasq, which gives it no boot options (it is no iPXE client).

Automated cleaning is on (metadata erase, as in the netns lab): see ironic_settings.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import signal
import time
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from k1prov.atomic_file import write_if_changed
from k1prov.errors import ConfigError, LabError
from k1prov.lab import procs
from k1prov.lab.command import run
from k1prov.lab.netns import LabNetwork
from k1prov.lab.secret_files import ensure_secret
from k1prov.lab.venv import ensure_venv
from k1prov.lab.vm_bmc import (Vbmc, ensure_vmedia_pool, redfish_answers, sushy_conf, sushy_htpasswd,
                               vbmc_conf)
from k1prov.lab.vm_libvirt import LIBVIRTD_START_TIMEOUT, Libvirt, domain_xml, pick_accel
from k1prov.lab.config import LabSettings
from k1prov.lab.lab import Lab
from k1prov.lab.vm_net import dnsmasq_conf, leases
from k1prov.settings import DEFAULT_TIMEOUTS, Timeouts

VM_REQUIREMENTS_FILE = Path(__file__).resolve().with_name("requirements-vm.txt")
# Start order; `down` stops in reverse (the BMC emulators before the libvirtd they use).
SERVICES = ("libvirtd", "dnsmasq", "vbmcd", "sushy")
# One answer check of a running service.
CHECK_TIMEOUT = 5.0
START_POLL = 0.3
# Machine i leases address gateway + FIRST_HOST + i.
FIRST_HOST = 99
# The Debian packages the VM lab runs (scripts/apt-packages.txt lists them).
PROGRAMS = {"qemu-system-x86_64": "qemu-system-x86", "libvirtd": "libvirt-daemon",
            "virsh": "libvirt-clients", "dnsmasq": "dnsmasq-base", "qemu-img": "qemu-utils",
            "unshare": "util-linux", "ipmitool": "ipmitool"}
# The clouds.yaml entry of the VM lab's Ironic and Glance.
VM_CLOUD_NAME = "k1prov-lab-vm"
# Namespace for the machines' libvirt UUIDs (= their Redfish system ids): uuid5 of the
# domain name, so that a re-created lab keeps its ids.
_UUID_NS = uuidlib.UUID("5f0c6d2e-2b1e-4c55-9a55-6b1f0c0a7f20")


@dataclass(frozen=True)
class VmLabSettings:
    root: Path
    venv: Path
    nodes: int = 2
    # Its own bridge and subnet (the netns lab has k1plab0, 10.251.0.1/24).
    bridge: str = "k1pvm0"
    cidr: str = "10.252.0.1/24"
    # IPMI endpoint of machine i: UDP ipmi_base_port + i (the netns lab's BMCs are 6230+).
    ipmi_base_port: int = 17230
    # vbmcd's control port (TCP, loopback) and the Redfish emulator (HTTP, loopback).
    vbmcd_port: int = 17291
    redfish_port: int = 18000
    memory_mib: int = 1536
    disk_gb: int = 4
    # "kvm", "tcg", or "" for pick_accel's choice.
    accel: str = ""
    bmc_username: str = "admin"
    # The lab's Ironic, Glance and image HTTP server (the netns lab's are 6385, 9292, 8088),
    # and the virtualenv they run from (the netns lab's, installed once).
    lab_venv: Path = Path("~/.cache/k1prov/lab-venv")
    ironic_port: int = 16385
    glance_port: int = 19292
    http_port: int = 18088
    # Where `lab up` writes the `k1prov-lab-vm` entry; None: ~/.config/openstack/clouds.yaml.
    clouds_yaml: Path | None = None

    @classmethod
    def default(cls, **overrides) -> "VmLabSettings":
        """From K1PROV_VM_LAB_{DIR,VENV,BRIDGE,CIDR,PORT_OFFSET,ACCEL,CLOUDS_YAML} and
        K1PROV_LAB_VENV (the Ironic and Glance venv), else the defaults."""
        env = os.environ.get
        offset = int(env("K1PROV_VM_LAB_PORT_OFFSET", "0"))
        base = cls(root=Path(env("K1PROV_VM_LAB_DIR") or "~/.local/share/k1prov/lab-vm").expanduser(),
                   venv=Path(env("K1PROV_VM_LAB_VENV") or "~/.cache/k1prov/vm-lab-venv").expanduser())
        values = dict(bridge=env("K1PROV_VM_LAB_BRIDGE") or base.bridge,
                      cidr=env("K1PROV_VM_LAB_CIDR") or base.cidr,
                      accel=env("K1PROV_VM_LAB_ACCEL") or "",
                      ipmi_base_port=base.ipmi_base_port + offset,
                      vbmcd_port=base.vbmcd_port + offset, redfish_port=base.redfish_port + offset,
                      lab_venv=Path(env("K1PROV_LAB_VENV") or "~/.cache/k1prov/lab-venv").expanduser(),
                      ironic_port=base.ironic_port + offset, glance_port=base.glance_port + offset,
                      http_port=base.http_port + offset,
                      clouds_yaml=Path(env("K1PROV_VM_LAB_CLOUDS_YAML")) if env("K1PROV_VM_LAB_CLOUDS_YAML") else None)
        values.update(overrides)
        return cls(root=base.root, venv=base.venv, **values)

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 50:
            raise ConfigError(f"VM lab nodes: {self.nodes} (1 to 50)")
        ports = [self.vbmcd_port, self.redfish_port, self.ipmi_base_port, self.ipmi_base_port + self.nodes - 1,
                 self.ironic_port, self.glance_port, self.http_port]
        if not all(1 <= p <= 65535 for p in ports):
            raise ConfigError(f"VM lab ports out of range: {ports}")
        if self.ipmi_base_port <= self.vbmcd_port < self.ipmi_base_port + self.nodes:
            raise ConfigError(f"VM lab: vbmcd port {self.vbmcd_port} is one of the IPMI ports")
        # Tap names are <bridge>-t<i>: 15 characters at most.
        if not self.bridge or len(self.bridge) > 11 or "/" in self.bridge:
            raise ConfigError(f"VM lab bridge {self.bridge!r}: 1 to 11 characters")
        try:
            iface = ipaddress.IPv4Interface(self.cidr)
        except ValueError as exc:
            raise ConfigError(f"VM lab cidr: {exc}") from None
        last = iface.ip + FIRST_HOST + self.nodes - 1
        if last not in iface.network or last == iface.network.broadcast_address:
            raise ConfigError(f"VM lab cidr {self.cidr}: no room for {self.nodes} machines "
                              f"from {iface.ip + FIRST_HOST}")
        if self.memory_mib < 256 or self.disk_gb < 1:
            raise ConfigError("VM lab: memory_mib >= 256 and disk_gb >= 1")

    # ---- where things are --------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def disks_dir(self) -> Path:
        return self.root / "disks"

    @property
    def vmedia_dir(self) -> Path:
        # The Redfish emulator's virtual media images (its libvirt storage pool); under
        # disks_dir, so that `down` removes them with the disks.
        return self.disks_dir / "vmedia"

    @property
    def serial_dir(self) -> Path:
        return self.root / "serial"

    @property
    def tftp_root(self) -> Path:
        return self.root / "tftp"

    @property
    def bmc_password_file(self) -> Path:
        return self.root / "secrets" / "bmc-password"

    @property
    def vbmc_conf(self) -> Path:
        return self.root / "vbmc" / "virtualbmc.conf"

    @property
    def sushy_conf(self) -> Path:
        return self.root / "sushy" / "emulator.conf"

    @property
    def sushy_htpasswd(self) -> Path:
        return self.root / "sushy" / "htpasswd"

    @property
    def dnsmasq_conf(self) -> Path:
        return self.root / "dnsmasq.conf"

    @property
    def dnsmasq_log(self) -> Path:
        return self.log_dir / "dnsmasq-dhcp.log"

    @property
    def leases_file(self) -> Path:
        return self.run_dir / "dnsmasq.leases"

    @property
    def gateway(self) -> str:
        return str(ipaddress.IPv4Interface(self.cidr).ip)

    @property
    def redfish_url(self) -> str:
        return f"http://127.0.0.1:{self.redfish_port}"

    def ironic_settings(self) -> LabSettings:
        """The lab's Ironic and Glance: the netns lab's services (k1prov.lab.lab) on this
        lab's bridge and ports, without its simulated machines. Keystone's port is unused
        (http_basic) but must differ from the others. Automated cleaning is on, as on a rack
        and in the netns lab (metadata erase): provide and undeploy boot the real agent
        ramdisk once more, minutes under TCG. No conductor-wide default deploy images: the
        netns lab's stand-ins boot no VM, so a node cleans with the agent ramdisk that
        `images register` put in its driver_info (register before enroll; `cluster up`
        does), and one without it fails cleaning at once, with Ironic's error naming
        deploy_kernel, rather than after a boot that never calls back."""
        return LabSettings(root=self.root / "ironic-lab", venv=self.lab_venv, ironic_port=self.ironic_port,
                           glance_port=self.glance_port, http_port=self.http_port,
                           keystone_port=self.ironic_port + 1, nodes=self.nodes,
                           bmc_username=self.bmc_username, clouds_yaml=self.clouds_yaml,
                           cloud_name=VM_CLOUD_NAME, bridge=self.bridge, cidr=self.cidr,
                           disk_gb=self.disk_gb, auth="http_basic", hardware="vm",
                           conductor_deploy_images=False)


@dataclass(frozen=True)
class VmMachine:
    """One machine of the VM lab, as its inventory and its tests see it."""
    name: str          # the libvirt domain
    uuid: str          # the domain's UUID, also its Redfish system id
    mac: str
    address: str       # what dnsmasq leases it
    bmc: dict          # {"type": "ipmi", "address", "port", "username"} or {"type": "redfish", "url", "system"}
    serial_log: str
    disk: str
    tap: str


def machines(s: VmLabSettings) -> list[VmMachine]:
    iface = ipaddress.IPv4Interface(s.cidr)
    # The MAC's last three bytes: two from the bridge name, so that two VM labs (on
    # separate bridges) never share a MAC, and the machine number.
    tag = hashlib.sha1(s.bridge.encode()).digest()
    found = []
    for i in range(s.nodes):
        name = f"{s.bridge}-n{i}"
        uuid = str(uuidlib.uuid5(_UUID_NS, name))
        if i % 2 == 0:
            bmc = {"type": "ipmi", "address": "127.0.0.1", "port": s.ipmi_base_port + i,
                   "username": s.bmc_username}
        else:
            bmc = {"type": "redfish", "url": s.redfish_url, "system": f"/redfish/v1/Systems/{uuid}",
                   "username": s.bmc_username}
        found.append(VmMachine(
            name=name, uuid=uuid, mac=f"52:54:00:{tag[0]:02x}:{tag[1]:02x}:{i:02x}",
            address=str(iface.ip + FIRST_HOST + i), bmc=bmc,
            serial_log=str(s.serial_dir / f"{name}.log"), disk=str(s.disks_dir / f"{name}.qcow2"),
            tap=f"{s.bridge}-t{i}"))
    return found


@dataclass
class VmServiceStatus:
    name: str
    pid: int | None
    running: bool
    answers: bool
    detail: str = ""


@dataclass
class VmLabStatus:
    accel: str
    bridge: str
    cidr: str
    services: list[VmServiceStatus]
    machines: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (bool(self.services) and all(s.running and s.answers for s in self.services)
                and all(m["state"] != "undefined" for m in self.machines))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "kind": "vm", "accel": self.accel, "bridge": self.bridge,
                "cidr": self.cidr, "services": [asdict(s) for s in self.services],
                "machines": self.machines}


class VmLab:
    def __init__(self, settings: VmLabSettings, *, timeouts: Timeouts = DEFAULT_TIMEOUTS):
        self.settings = settings
        self.timeouts = timeouts
        self.libvirt = Libvirt(settings.root / "libvirt")
        self.vbmc = Vbmc(settings.venv, settings.vbmc_conf)
        self.ironic = Lab(settings.ironic_settings(), timeouts=timeouts)

    # ---- verbs -------------------------------------------------------------------------

    def up(self, *, progress: Callable[[str], None] | None = None) -> VmLabStatus:
        s = self.settings
        say = progress or (lambda _msg: None)
        self._check_prerequisites()
        ensure_venv(s.venv, VM_REQUIREMENTS_FILE, timeout=self.timeouts.lab_install, progress=say,
                    what="virtualbmc, sushy-tools and libvirt-python")
        password = ensure_secret(s.bmc_password_file, nbytes=12)
        self._ensure_ssh_key()
        self._write_configs()
        specs = {name: self._spec(name) for name in SERVICES}
        running = {}
        for name, spec in specs.items():
            rec = procs.read_running(s.run_dir, name)
            if rec is not None and rec.fingerprint != spec.fingerprint:
                say(f"restarting {name} (its settings changed)")
                procs.stop(s.run_dir, name, grace=procs.STOP_GRACE)
                rec = None
            running[name] = rec
        for spec in specs.values():
            if running[spec.name] is None:
                for proto, port in spec.ports:
                    if not procs.port_free(proto, port):
                        raise LabError(f"{proto} port {port} (for the VM lab's {spec.name}) is in use")
        LabNetwork(bridge=s.bridge, cidr=s.cidr).ensure(timeout=self.timeouts.lab_service)
        for name in SERVICES:
            if running[name] is None:
                say(f"starting {name}")
                if name == "dnsmasq" and s.dnsmasq_log.exists():
                    # Its readiness is read from a fresh log (and the last one is kept).
                    s.dnsmasq_log.replace(s.dnsmasq_log.with_suffix(".log.1"))
                running[name] = procs.start(specs[name], run_dir=s.run_dir, log_dir=s.log_dir)
                timeout = LIBVIRTD_START_TIMEOUT if name == "libvirtd" else self.timeouts.lab_service
            else:
                timeout = CHECK_TIMEOUT
            self._wait_answers(name, running[name], timeout=timeout)
            if name == "libvirtd":
                self._define_machines(say)
                ensure_vmedia_pool(self.libvirt, s.vmedia_dir)
        for m in machines(s):
            if m.bmc["type"] == "ipmi":
                self.vbmc.ensure(m.name, port=m.bmc["port"], username=s.bmc_username,
                                 password=password, libvirt_uri=self.libvirt.uri)
        # Ironic and Glance last: the machines and their BMCs are there when it starts.
        self.ironic.up(progress=say)
        status = self.status()
        if not status.ok:
            raise LabError("the VM lab started but is not healthy: "
                           + ", ".join(f"{x.name}: {x.detail or 'no answer'}" for x in status.services
                                       if not (x.running and x.answers)))
        return status

    def down(self) -> None:
        # Ironic first, so that no conductor powers a machine on while the lab goes; the
        # rest goes whatever it says.
        try:
            self.ironic.down()
        finally:
            self._down_machines()

    def _down_machines(self) -> None:
        s = self.settings
        ours = {m.name for m in machines(s)}
        if procs.read_running(s.run_dir, "libvirtd") is not None and self.libvirt.answers(timeout=CHECK_TIMEOUT):
            # Every domain of the lab's own libvirtd is the lab's (also those of a larger
            # earlier `--nodes`).
            for name in self.libvirt.domains():
                self.libvirt.remove(name)
                ours.add(name)
        was_up = False
        for name in reversed(SERVICES):
            was_up = procs.stop(s.run_dir, name, grace=procs.STOP_GRACE) or was_up
        # A QEMU whose libvirtd died keeps running: found by its `-name guest=` and stopped.
        _kill_qemus(ours)
        for m in machines(s):
            if Path(f"/sys/class/net/{m.tap}").exists():
                run(["ip", "link", "del", m.tap], deadline=time.monotonic() + self.timeouts.lab_service)
        LabNetwork(bridge=s.bridge, cidr=s.cidr).remove(timeout=self.timeouts.lab_service)
        shutil.rmtree(s.disks_dir, ignore_errors=True)
        # The IPMI endpoints' definitions went with their domains.
        shutil.rmtree(s.vbmc_conf.parent / "domains", ignore_errors=True)
        # libvirt's state (domain definitions, sockets) goes; logs and serial consoles stay.
        for sub in ("etc", "run", "lib"):
            shutil.rmtree(self.libvirt.base / sub, ignore_errors=True)
        # Ports are ours to free only if our services held them.
        busy = procs.wait_ports_free(tuple(p for n in SERVICES for p in self._ports(n)),
                                     timeout=self.timeouts.lab_service) if was_up else []
        if busy:
            raise LabError("VM lab stopped but ports are still in use: "
                           + ", ".join(f"{proto} {port}" for proto, port in busy))

    def status(self) -> VmLabStatus:
        s = self.settings
        services = [self._service_status(name) for name in SERVICES]
        libvirt_ok = services[0].answers
        lease = leases(s.leases_file)
        rows = []
        for m in machines(s):
            row = asdict(m)
            row["state"] = self.libvirt.state(m.name) if libvirt_ok else "undefined"
            row["lease"] = lease.get(m.mac)
            rows.append(row)
        services += [VmServiceStatus(name=x.name, pid=x.pid, running=x.running, answers=x.answers,
                                     detail=x.url if x.running else x.detail)
                     for x in self.ironic.status().services]
        return VmLabStatus(accel=pick_accel(s.accel), bridge=s.bridge, cidr=s.cidr,
                           services=services, machines=rows)

    def bmc_password(self) -> str:
        try:
            return self.settings.bmc_password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise LabError(f"cannot read the VM lab's BMC password: {exc.strerror} "
                           "(run `k1prov lab up --kind vm` first)") from None

    # ---- steps -------------------------------------------------------------------------

    def _ensure_ssh_key(self) -> None:
        """The operator's key pair (root/ssh/id_ed25519): its public half goes onto every
        deployed machine's config drive (the VM lab's inventory names it)."""
        key = self.settings.root / "ssh" / "id_ed25519"
        if key.exists():
            return
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k1prov-lab-vm", "-f", str(key)],
            deadline=time.monotonic() + self.timeouts.lab_service, needs="openssh-client")

    def _check_prerequisites(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the VM lab needs root (bridge, taps, libvirtd, QEMU)")
        missing = sorted({pkg for prog, pkg in PROGRAMS.items() if not shutil.which(prog)
                          and not Path("/usr/sbin", prog).exists()})
        if missing:
            raise LabError(f"the VM lab needs: apt-get install {' '.join(missing)} (scripts/install.sh)")
        try:
            import pwd

            pwd.getpwnam("libvirt-qemu")
        except KeyError:
            raise LabError("libvirtd's QEMU driver needs the system user libvirt-qemu; "
                           "scripts/install.sh creates it") from None

    def _write_configs(self) -> None:
        s = self.settings
        for d in (s.run_dir, s.log_dir, s.disks_dir, s.serial_dir, s.tftp_root, s.vbmc_conf.parent,
                  s.sushy_conf.parent):
            d.mkdir(parents=True, exist_ok=True)
        s.root.chmod(0o700)
        self.libvirt.write_config()
        ms = machines(s)
        write_if_changed(s.dnsmasq_conf, dnsmasq_conf(
            bridge=s.bridge, cidr=s.cidr, hosts=[(m.mac, m.address, m.name) for m in ms],
            tftp_root=s.tftp_root, log=s.dnsmasq_log, leases=s.leases_file,
            boot_url=s.ironic_settings().http_url + "/boot.ipxe"))
        write_if_changed(s.vbmc_conf, vbmc_conf(config_dir=s.vbmc_conf.parent / "domains",
                                                port=s.vbmcd_port, log=s.log_dir / "vbmcd-debug.log"))
        (s.vbmc_conf.parent / "domains").mkdir(exist_ok=True)
        redfish = [m for m in ms if m.bmc["type"] == "redfish"]
        sushy_htpasswd(s.venv, s.sushy_htpasswd, username=s.bmc_username, password=self.bmc_password(),
                       timeout=self.timeouts.lab_service)
        write_if_changed(s.sushy_conf, sushy_conf(
            port=s.redfish_port, libvirt_uri=self.libvirt.uri,
            allowed=[x for m in redfish for x in (m.uuid, m.name)], auth_file=s.sushy_htpasswd))

    def _define_machines(self, say: Callable[[str], None]) -> None:
        s = self.settings
        accel = pick_accel(s.accel)
        defined = set(self.libvirt.domains())
        for m in machines(s):
            if not Path(m.disk).exists():
                run(["qemu-img", "create", "-q", "-f", "qcow2", m.disk, f"{s.disk_gb}G"],
                    deadline=time.monotonic() + self.timeouts.lab_service, needs="qemu-utils")
            xml = domain_xml(name=m.name, uuid=m.uuid, memory_mib=s.memory_mib, accel=accel,
                             disk=Path(m.disk), bridge=s.bridge, tap=m.tap, mac=m.mac,
                             serial_log=Path(m.serial_log))
            path = s.root / "libvirt" / f"{m.name}.xml"
            if write_if_changed(path, xml) or m.name not in defined:
                say(f"defining {m.name} ({accel}, {s.memory_mib} MiB, {m.bmc['type']} BMC)")
                self.libvirt.define(path)

    def _ports(self, name: str) -> tuple[tuple[str, int], ...]:
        s = self.settings
        if name == "vbmcd":
            return (("tcp", s.vbmcd_port),) + tuple(
                ("udp", m.bmc["port"]) for m in machines(s) if m.bmc["type"] == "ipmi")
        if name == "sushy":
            return (("tcp", s.redfish_port),)
        return ()

    def _spec(self, name: str) -> procs.ServiceSpec:
        s = self.settings
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("OS_")}
        watched: list[Path] = []
        if name == "libvirtd":
            argv = self.libvirt.argv()
            watched = [self.libvirt.etc / "qemu.conf", self.libvirt.etc / "libvirtd.conf"]
        elif name == "dnsmasq":
            argv = ["dnsmasq", "--keep-in-foreground", f"--conf-file={s.dnsmasq_conf}"]
            watched = [s.dnsmasq_conf]
        elif name == "vbmcd":
            argv = [str(s.venv / "bin" / "vbmcd"), "--foreground"]
            env["VIRTUALBMC_CONFIG"] = str(s.vbmc_conf)
            watched = [s.vbmc_conf]
        else:
            argv = [str(s.venv / "bin" / "sushy-emulator"), "--config", str(s.sushy_conf)]
            watched = [s.sushy_conf]
        h = hashlib.sha256("\0".join(argv).encode())
        for path in watched:
            h.update(path.read_bytes())
        return procs.ServiceSpec(name=name, argv=tuple(argv), env=tuple(sorted(env.items())),
                                 cwd=s.root, ports=self._ports(name), fingerprint=h.hexdigest())

    def _answers(self, name: str, *, timeout: float) -> bool:
        s = self.settings
        if name == "libvirtd":
            return self.libvirt.answers(timeout=timeout)
        if name == "dnsmasq":
            # Its DHCP and TFTP sockets are bound to the bridge; it logs once it is ready.
            try:
                return "TFTP root is" in s.dnsmasq_log.read_text(errors="replace")
            except OSError:
                return False
        if name == "vbmcd":
            return self.vbmc.answers()
        redfish = [m for m in machines(s) if m.bmc["type"] == "redfish"]
        url = s.redfish_url + (redfish[0].bmc["system"] if redfish else "/redfish/v1/")
        return redfish_answers(url, username=s.bmc_username, password=self.bmc_password(),
                               timeout=timeout)

    def _wait_answers(self, name: str, rec: procs.Running, *, timeout: float) -> None:
        s = self.settings
        deadline = time.monotonic() + timeout
        while not self._answers(name, timeout=CHECK_TIMEOUT):
            if not procs.process_alive(rec.pid) and not procs.group_members(rec.pid):
                raise LabError(f"VM lab {name} exited while starting; log: {s.log_dir / (name + '.log')}\n"
                               f"{procs.log_tail(s.log_dir, name)}")
            if time.monotonic() >= deadline:
                raise LabError(f"VM lab {name} (pid {rec.pid}) does not answer after {timeout:.0f} s; "
                               f"log: {s.log_dir / (name + '.log')}\n{procs.log_tail(s.log_dir, name)}")
            time.sleep(START_POLL)

    def _service_status(self, name: str) -> VmServiceStatus:
        s = self.settings
        rec = procs.read_running(s.run_dir, name)
        answers = rec is not None and self._answers(name, timeout=CHECK_TIMEOUT)
        detail = {"libvirtd": f"socket {self.libvirt.socket}",
                  "dnsmasq": f"DHCP/TFTP on {s.bridge} {s.gateway}; log {s.dnsmasq_log}",
                  "vbmcd": f"IPMI on udp 127.0.0.1:{s.ipmi_base_port}+, control tcp {s.vbmcd_port}",
                  "sushy": f"Redfish {s.redfish_url}/redfish/v1"}[name]
        return VmServiceStatus(name=name, pid=rec.pid if rec else None, running=rec is not None,
                               answers=answers, detail=detail if rec else "not running")


def _kill_qemus(names: set[str]) -> None:
    """SIGKILL the QEMU processes of these domains (found by `-name guest=NAME,...`)."""
    wanted = {f"guest={n}" for n in names}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"qemu-system-x86_64"):
            continue
        args = [a.decode(errors="replace") for a in argv]
        if any(a.split(",")[0] in wanted for a in args):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
