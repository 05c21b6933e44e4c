"""The VM lab's provisioning network: dnsmasq (DHCP and TFTP) on the lab's bridge only.

As on a real provisioning network, only the machines the lab knows (their MACs) get an
answer and boot options; anything else on the bridge is ignored. dnsmasq hands out no
router and no DNS server, and the bridge has no uplink: nothing a VM sends leaves it.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path


def dnsmasq_conf(*, bridge: str, cidr: str, hosts: list[tuple[str, str, str]], tftp_root: Path,
                 log: Path, leases: Path, boot_url: str) -> str:
    """`hosts`: (mac, address, name) of every lab machine; `cidr`: the bridge's address;
    `boot_url`: the iPXE script an iPXE client chainloads (Ironic's boot.ipxe, which in turn
    chains to the machine's own config by its MAC, as on a rack with Ironic's ipxe boot)."""
    iface = ipaddress.IPv4Interface(cidr)
    # A static range: addresses come from dhcp-host lines only.
    first = hosts[0][1] if hosts else str(iface.ip)
    lines = [
        "# Written by k1prov (k1prov/lab/vm_net.py); dnsmasq --conf-file skips /etc/dnsmasq.conf.",
        f"interface={bridge}",
        # One interface and bind-interfaces: the DHCP socket is bound to the bridge device.
        "bind-interfaces",
        "except-interface=lo",
        "port=0",                       # no DNS server at all
        "no-hosts",
        "no-resolv",
        "dhcp-authoritative",
        f"dhcp-range={first},static,{iface.netmask},1h",
        # Only known MACs (the lab's machines) get an answer.
        "dhcp-ignore=tag:!known",
        "dhcp-option=3",                # no router
        "dhcp-option=6",                # no DNS
        "enable-tftp",
        f"tftp-root={tftp_root}",
        # The NIC's ROM is iPXE (ipxe-qemu): it says so in its user class and option 175.
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe,175",
        # Only iPXE gets a boot file: every machine of this lab has an iPXE ROM.
        f"dhcp-boot=tag:ipxe,{boot_url}",
        "log-dhcp",
        f"log-facility={log}",
        f"dhcp-leasefile={leases}",
        "pid-file=",
        "user=root",
    ]
    lines += [f"dhcp-host={mac},{address},{name}" for mac, address, name in hosts]
    return "\n".join(lines) + "\n"


def leases(path: Path) -> dict[str, str]:
    """MAC -> address from dnsmasq's lease file."""
    found = {}
    try:
        text = path.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            found[fields[1].lower()] = fields[2]
    return found


def acks(log: Path, mac: str) -> list[str]:
    """dnsmasq's DHCPACK lines for `mac` in its log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if "DHCPACK" in line and mac.lower() in line.lower()]
