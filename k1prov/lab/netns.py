"""The lab's network: one bridge on this machine, one network namespace per host.

Each host gets a namespace `k1p-<name>` holding `eth0` (its static address and a
default route via the bridge's address) whose veth peer is a port of the bridge.
Traffic stays on this machine: the bridge has no uplink and nothing is forwarded.
"""
from __future__ import annotations

import hashlib
import ipaddress
import time
from pathlib import Path

from k1prov.errors import LabError
from k1prov.lab.command import run

NETNS_PREFIX = "k1p-"
HOST_IFNAME = "eth0"


class LabNetwork:
    """The lab bridge with this machine's address on it (the hosts' gateway)."""

    def __init__(self, bridge: str = "k1plab0", cidr: str = "10.251.0.1/24"):
        if len(bridge) > 15:
            raise LabError(f"bridge name {bridge!r} is longer than 15 characters")
        try:
            self.interface = ipaddress.IPv4Interface(cidr)
        except ValueError as exc:
            raise LabError(f"lab network: {exc}") from None
        self.bridge = bridge

    @property
    def gateway(self) -> str:
        return str(self.interface.ip)

    @property
    def prefix(self) -> int:
        return self.interface.network.prefixlen

    def host_address(self, index: int) -> str:
        """The index-th host address after the gateway's (index 1 = gateway + 1)."""
        address = self.interface.ip + index
        if address not in self.interface.network or address == self.interface.network.broadcast_address:
            raise LabError(f"lab network {self.interface.network} has no host number {index}")
        return str(address)

    def exists(self) -> bool:
        return Path(f"/sys/class/net/{self.bridge}").exists()

    def ensure(self, *, timeout: float = 10.0, local_addresses: tuple[str, ...] = ()) -> None:
        """Create the bridge, give it the gateway address and bring it up (idempotent).
        local_addresses: more addresses of this machine on the bridge, each a /32 (no
        route comes with it): the BMCs' LAN addresses (bmc_lan_address)."""
        deadline = time.monotonic() + timeout
        if not self.exists():
            ip("link", "add", self.bridge, "type", "bridge", deadline=deadline)
        present = ip("-4", "-o", "addr", "show", "dev", self.bridge, deadline=deadline)
        if f" {self.interface.with_prefixlen} " not in present:
            ip("addr", "add", self.interface.with_prefixlen, "dev", self.bridge, deadline=deadline)
        missing = [a for a in local_addresses if f" {a}/32 " not in present]
        if missing:
            ip("-batch", "-", deadline=deadline,
               stdin="".join(f"addr add {a}/32 dev {self.bridge}\n" for a in missing))
        ip("link", "set", self.bridge, "up", deadline=deadline)

    def remove(self, *, timeout: float = 10.0) -> None:
        """Delete the bridge (its host ports go with their namespaces)."""
        if self.exists():
            ip("link", "del", self.bridge, deadline=time.monotonic() + timeout)


def bmc_lan_address(port: int) -> str:
    """The LAN address of the BMC on UDP `port` (besides 127.0.0.1), fixed like a real
    BMC's: 169.254.<port high byte>.<port low byte>, link-local, unique per port and so
    per BMC of every lab on this machine (their ports differ). The lab puts it on its
    bridge (a /32, local to this machine: nothing outside ever routes to it) and the BMC
    simulator listens there too; the machine's agent reports it as its BMC's address, by
    which Ironic matches the inspection report of a node without ports (it ignores a
    127.0.0.0/8 BMC address for that)."""
    if not 256 <= port < 0xff00:
        # 169.254.0.0/24 and 169.254.255.0/24 are reserved (RFC 3927).
        raise LabError(f"BMC port {port}: no LAN address for a port below 256 or from {0xff00}")
    return f"169.254.{port >> 8}.{port & 0xff}"


def netns_name(host: str) -> str:
    return NETNS_PREFIX + host


def veth_name(host: str) -> str:
    # Interface names are limited to 15 characters; host names are not.
    return "k1v" + hashlib.sha1(host.encode()).hexdigest()[:10]


def mac_address(host: str) -> str:
    """A locally administered unicast MAC address derived from the host name."""
    digest = hashlib.sha1(f"mac:{host}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def attach_host(host: str, *, bridge: str, address: str, prefix: int, gateway: str | None,
                timeout: float, mac: str | None = None, plugged: bool = True) -> str:
    """Create the host's namespace and wire it into the bridge; returns the namespace name.
    The NIC's MAC is `mac` (a lab machine's) or one derived from the host name;
    `plugged=False` leaves the bridge end out of the bridge (a cable pulled out)."""
    deadline = time.monotonic() + timeout
    ns, veth = netns_name(host), veth_name(host)
    ip("netns", "add", ns, deadline=deadline)
    try:
        # A fixed MAC per host, like a real NIC: after a re-boot the machine's neighbour
        # cache still points at the right address. Flush it anyway for a host that takes
        # over the address of another one.
        ip("-batch", "-", deadline=deadline, stdin=(
            f"link add {veth} type veth peer name {HOST_IFNAME} address {mac or mac_address(host)} netns {ns}\n"
            + (f"link set {veth} master {bridge} up\n" if plugged else f"link set {veth} up\n") +
            f"neigh flush to {address} dev {bridge}\n"))
        route = f"route add default via {gateway}\n" if gateway else ""
        ip("-n", ns, "-batch", "-", deadline=deadline, stdin=(
            f"addr add {address}/{prefix} dev {HOST_IFNAME}\n"
            f"link set {HOST_IFNAME} up\n"
            "link set lo up\n" + route))
    except LabError:
        detach_host(host, timeout=max(1.0, deadline - time.monotonic()))
        raise
    return ns


def unplug_host(host: str, *, timeout: float) -> None:
    """Take the host's NIC off the wire at once (its bridge end deleted; no error when
    already gone): from then on nothing the host sends reaches anyone."""
    veth = veth_name(host)
    if Path(f"/sys/class/net/{veth}").exists():
        try:
            ip("link", "del", veth, deadline=time.monotonic() + timeout)
        except LabError:
            if Path(f"/sys/class/net/{veth}").exists():
                raise


def detach_host(host: str, *, timeout: float) -> None:
    """Delete the host's namespace and its bridge port (no error when already gone)."""
    deadline = time.monotonic() + timeout
    ns = netns_name(host)
    # The pair first: deleting it is synchronous, while a deleted namespace frees its
    # devices later (a quick re-boot would then find the old pair still there).
    unplug_host(host, timeout=timeout)
    if netns_exists(ns):
        ip("netns", "del", ns, deadline=deadline)


def ip(*args: str, deadline: float, stdin: str | None = None) -> str:
    return run(["ip", *args], deadline=deadline, stdin=stdin, what="ip " + " ".join(args), needs="iproute2")
