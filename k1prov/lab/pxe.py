"""The lab's network as a booting machine sees it: the PXE config Ironic wrote in its
TFTP root (`tftpboot/pxelinux.cfg/01-<mac>`), read and checked as a PXE ROM + pxelinux
would; the TFTP transfer itself is not simulated. DHCP is: leases by MAC from the top
quarter of the lab subnet (Dhcp)."""
from __future__ import annotations

import fcntl
import gzip
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from k1prov.errors import LabError


# ---------------------------------------------------------------- PXE


@dataclass(frozen=True)
class PxeBoot:
    config: Path
    kernel: Path
    initrd: Path
    cmdline: str          # the append line (plus BOOTIF), what the kernel would get


def pxe_config_path(tftp_root: Path, mac: str) -> Path:
    return Path(tftp_root) / "pxelinux.cfg" / ("01-" + mac.lower().replace(":", "-"))


# pxelinux's last try, after the files named by the MAC (and the IP): what the site
# boots a machine Ironic has no config for. The lab writes one that boots the agent for
# inspection (write_inspection_default), as a site running unmanaged inspection (Bifrost's
# dnsmasq) does: a node without ports has no 01-<mac> file.
DEFAULT_CONFIG = "default"
# Where that config's kernel and ramdisk are, under the TFTP root.
INSPECTION_DIR = "k1prov-inspection"


def write_inspection_default(tftp_root: Path, *, kernel: Path, ramdisk: Path, ironic_url: str) -> Path:
    """pxelinux.cfg/default: the deploy ramdisk with Ironic's inspection callback, for a
    machine that network-boots while Ironic has written no config for its MAC (unmanaged
    inspection of a node enrolled without MACs). Idempotent; returns the config's path."""
    root = Path(tftp_root)
    (root / INSPECTION_DIR).mkdir(parents=True, exist_ok=True)
    for src, name in ((kernel, "kernel"), (ramdisk, "ramdisk")):
        dest = root / INSPECTION_DIR / name
        data = Path(src).read_bytes()
        if not dest.is_file() or dest.read_bytes() != data:
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
    path = root / "pxelinux.cfg" / DEFAULT_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    # ipappend 2: BOOTIF, the booted NIC, which Ironic's add_ports = pxe makes the port of.
    text = (f"default inspect\n\nlabel inspect\n"
            f"kernel {INSPECTION_DIR}/kernel\n"
            f"append initrd={INSPECTION_DIR}/ramdisk nofb vga=normal "
            f"ipa-inspection-callback-url={ironic_url.rstrip('/')}/v1/continue_inspection\n"
            f"ipappend 2\n")
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def read_pxe_config(tftp_root: Path, mac: str) -> PxeBoot:
    """What a PXE ROM + pxelinux would boot for `mac`, checked; LabError when nothing.
    Like pxelinux it tries pxelinux.cfg/01-<mac> first, then pxelinux.cfg/default.

    The default label's `kernel` and `initrd=` must name files under the TFTP root that
    are a Linux kernel (bzImage "HdrS" signature) and an initramfs (gzip'd cpio).
    """
    path = pxe_config_path(tftp_root, mac)
    try:
        text = path.read_text()
    except OSError:
        fallback = path.with_name(DEFAULT_CONFIG)
        try:
            text, path = fallback.read_text(), fallback
        except OSError:
            raise LabError(f"PXE: no config for {mac} ({path.name} not in the TFTP root, "
                           f"nor {DEFAULT_CONFIG})") from None
    labels: dict[str, dict[str, str]] = {}
    default, current = None, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word == "default":
            default = rest
        elif word == "label":
            current = labels.setdefault(rest, {})
        elif current is not None and word in ("kernel", "append", "ipappend"):
            current[word] = rest
    label = labels.get(default or "")
    if not label or "kernel" not in label:
        raise LabError(f"PXE: {path.name}: no kernel in the default label {default!r}")
    append = label.get("append", "")
    initrd_match = re.search(r"(?:^|\s)initrd=(\S+)", append)
    if not initrd_match:
        raise LabError(f"PXE: {path.name}: no initrd= in the default label")
    kernel = _tftp_file(tftp_root, label["kernel"])
    initrd = _tftp_file(tftp_root, initrd_match.group(1))
    _check_kernel(kernel)
    _check_initramfs(initrd)
    cmdline = append
    if label.get("ipappend", "").strip() in ("2", "3"):
        cmdline += " BOOTIF=01-" + mac.lower().replace(":", "-")
    return PxeBoot(config=path, kernel=kernel, initrd=initrd, cmdline=cmdline.strip())


def _tftp_file(tftp_root: Path, name: str) -> Path:
    root = Path(tftp_root).resolve()
    path = Path(name)
    if path.is_absolute() and str(path).startswith(str(root) + "/"):
        candidate = path
    else:
        candidate = root / name.lstrip("/")
    candidate = candidate.resolve()
    if not str(candidate).startswith(str(root) + "/") or not candidate.is_file():
        raise LabError(f"PXE: TFTP has no file {name}")
    return candidate


def _check_kernel(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(0x210)
    if len(head) < 0x206 or head[0x202:0x206] != b"HdrS":
        raise LabError(f"PXE: {path.name} is not a Linux kernel (no bzImage header)")


def _check_initramfs(path: Path) -> None:
    try:
        with gzip.open(path, "rb") as f:
            magic = f.read(6)
    except (OSError, EOFError):
        magic = b""
    if magic not in (b"070701", b"070702"):
        raise LabError(f"PXE: {path.name} is not an initramfs (gzip'd cpio)")


def deploy_ramdisk_cmdline_ok(cmdline: str) -> bool:
    """Whether the agent this command line starts has somewhere to call: Ironic's API
    (deploy, clean: `ipa-api-url`) or, when Ironic prepared an inspection boot, its
    inspection callback (`ipa-inspection-callback-url`, Ironic's /v1/continue_inspection;
    without fast track Ironic gives that boot no ipa-api-url)."""
    return "ipa-api-url=" in cmdline or "ipa-inspection-callback-url=" in cmdline


def boot_purpose(cmdline: str) -> str:
    """"inspection" when Ironic prepared the boot to inspect the machine, else "agent"."""
    return "inspection" if "ipa-inspection-callback-url=" in cmdline else "agent"


# ---------------------------------------------------------------- DHCP (simulated)


class Dhcp:
    """Addresses for machines that network-boot: the top quarter of the lab subnet,
    leased by MAC in a file shared by every lab on the bridge (flock)."""

    def __init__(self, lease_file: Path, network: ipaddress.IPv4Network, gateway: str):
        self.lease_file = Path(lease_file)
        self.network = network
        hosts = list(network.hosts())
        first = hosts[len(hosts) * 3 // 4]
        self.pool = [a for a in hosts if a >= first and str(a) != gateway]

    def lease(self, mac: str) -> str:
        with self._locked() as leases:
            if mac in leases:
                return leases[mac]
            used = set(leases.values())
            for address in self.pool:
                if str(address) not in used:
                    leases[mac] = str(address)
                    return str(address)
        raise LabError(f"DHCP: no free address in the pool of {self.network}")

    def release(self, mac: str) -> None:
        with self._locked() as leases:
            leases.pop(mac, None)

    def _locked(self):
        lease_file = self.lease_file

        class _Ctx:
            def __enter__(self_inner):
                lease_file.parent.mkdir(parents=True, exist_ok=True)
                self_inner.f = open(lease_file.with_suffix(".lock"), "w")
                fcntl.flock(self_inner.f, fcntl.LOCK_EX)
                try:
                    self_inner.leases = json.loads(lease_file.read_text())
                except (OSError, ValueError):
                    self_inner.leases = {}
                return self_inner.leases

            def __exit__(self_inner, *exc):
                tmp = lease_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(self_inner.leases))
                os.replace(tmp, lease_file)
                self_inner.f.close()

        return _Ctx()
