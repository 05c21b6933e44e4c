"""The partition fence: each running agent's devices cgroup allows exactly the
partitions its own loop device has now (PartitionFence).

Partition numbers (major 259) are handed out machine-wide as partitions appear, so a
number says nothing about whose disk it is: the fence follows each disk (kernel
uevents, and a look every FENCE_POLL_INTERVAL), allows each new partition of it and
takes a gone one's number back before the kernel can give it to another machine."""
from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from k1prov.errors import LabError
from k1prov.lab import disk as disks

log = logging.getLogger("k1prov.lab.partitions")

LOOP_MAJOR = 7
# Partitions of loop devices get dynamic numbers under the "blkext" major (259), handed
# out lowest-free first across the whole machine: a number says nothing about whose
# disk it is, so the devices cgroup allows each of the agent's own partitions by number
# as it appears (PartitionFence) and takes the number back when the partition goes.
# Seconds between two looks of the partition fence at the running agents' disks when no
# uevent woke it first.
FENCE_POLL_INTERVAL = 0.05
# partx and sfdisk for one scan of a disk: each is quick; a stuck one is an error.
SCAN_TIMEOUT = 30.0


@dataclass
class _Watched:
    loop: str                          # the disk: loopN
    requests: Path | None              # where its `udevadm settle` asks for a scan
    allowed: set = None                # the (major, minor) allowed now
    scanned: str | None = None         # the last request token answered

    def __post_init__(self):
        self.allowed = set() if self.allowed is None else self.allowed


class PartitionFence:
    """Keeps each running agent's devices cgroup allowing exactly the partitions its own
    loop device has now: `b MAJOR:MINOR rwm` allowed for each new one, denied again when
    it is gone (its number may go to another machine's partition next).

    The agent cannot change the kernel's partitions itself (its seccomp filter makes
    BLKPG and BLKRRPART succeed without doing anything). Its `udevadm settle` asks for a
    scan instead (a token in `requests/partscan`); the fence then denies every number of
    the disk, lets `partx --update` make the kernel's partitions match the disk's table,
    allows what is there now and answers (`requests/partscan.done`). A number is thus
    refused to the agent before the kernel can free it for anyone else.

    One thread for every agent of the process; it wakes on the kernel's uevents and at
    least every FENCE_POLL_INTERVAL, and stops when nothing is watched.
    """

    def __init__(self, *, sys_block: Path = Path("/sys/block"), interval: float = FENCE_POLL_INTERVAL):
        self.sys_block = Path(sys_block)
        self.interval = interval
        self._lock = threading.Lock()
        self._watched: dict[Path, _Watched] = {}
        self._thread: threading.Thread | None = None

    def watch(self, cgroup: Path, loop_name: str, requests: Path | None = None, *,
              allowed: set[tuple[int, int]] | None = None) -> None:
        """Allow the partitions `loop_name` has, and from now on follow them (and answer
        the scan requests written into `requests`). `allowed`: the partitions the cgroup
        allows already (an agent adopted from an earlier process of the lab's hardware),
        so that those gone meanwhile are taken back."""
        with self._lock:
            self._watched[Path(cgroup)] = _Watched(loop_name, Path(requests) if requests else None,
                                                   set(allowed or ()))
            self._sync_one(Path(cgroup))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="partition-fence", daemon=True)
                self._thread.start()

    def unwatch(self, cgroup: Path) -> None:
        with self._lock:
            self._watched.pop(Path(cgroup), None)

    def join(self, timeout: float) -> bool:
        """Wait for the thread to stop (it does once nothing is watched); True when it has."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def allowed(self, cgroup: Path) -> set[tuple[int, int]]:
        with self._lock:
            entry = self._watched.get(Path(cgroup))
            return set(entry.allowed) if entry else set()

    def sync(self) -> None:
        with self._lock:
            for cgroup in list(self._watched):
                self._sync_one(cgroup)

    def _sync_one(self, cgroup: Path) -> None:
        w = self._watched[cgroup]
        token = _read_token(w.requests / "partscan") if w.requests else None
        scanning = token is not None and token != w.scanned
        if scanning:
            self._scan(cgroup, w)
        now = set(disks.partition_devices(w.loop, sys_block=self.sys_block).values())
        # Taken back first: a number that left this disk may be another machine's already.
        self._deny(cgroup, w, w.allowed - now)
        for major, minor in sorted(now - w.allowed):
            try:
                (cgroup / "devices.allow").write_text(f"b {major}:{minor} rwm\n")
            except OSError as exc:
                log.warning("%s: cannot allow partition %d:%d: %s", cgroup.name, major, minor, exc)
                continue
            w.allowed.add((major, minor))
            log.debug("%s: partition %d:%d of %s allowed", cgroup.name, major, minor, w.loop)
        if scanning:
            w.scanned = token
            _write_token(w.requests / "partscan.done", token)
            log.info("%s: %s scanned for its agent: partitions %s", cgroup.name, w.loop,
                     " ".join(f"{a}:{b}" for a, b in sorted(w.allowed)) or "none")

    def _deny(self, cgroup: Path, w: _Watched, numbers: set) -> None:
        for major, minor in sorted(numbers):
            try:
                (cgroup / "devices.deny").write_text(f"b {major}:{minor} rwm\n")
            except FileNotFoundError:
                pass      # the cgroup is gone with its machine
            except OSError as exc:
                log.error("%s: cannot deny partition %d:%d: %s", cgroup.name, major, minor, exc)
                continue
            w.allowed.discard((major, minor))
            log.debug("%s: partition %d:%d of %s denied", cgroup.name, major, minor, w.loop)

    def _scan(self, cgroup: Path, w: _Watched) -> None:
        """What a kernel does when asked to re-read a disk's partition table, with every
        number of the disk refused to its agent while partitions go and come."""
        device = f"/dev/{w.loop}"
        table = disks.table_partitions(device, timeout=SCAN_TIMEOUT)
        if (table or {}) == disks.kernel_partitions(device, sys_block=self.sys_block):
            return        # the kernel has what the table says: nothing goes, nothing comes
        self._deny(cgroup, w, set(w.allowed))
        # All of them go and what the table says comes (`partx --update` keeps partitions
        # numbered above the new table's last one).
        disks.delete_partitions(device, timeout=SCAN_TIMEOUT)
        if table is None:
            return
        try:
            disks.add_partitions(device, timeout=SCAN_TIMEOUT)
        except LabError as exc:
            # No partition table (a wiped disk, or not written yet): no partitions.
            log.debug("%s: %s", cgroup.name, exc)

    def _run(self) -> None:
        uevents = _uevent_socket()
        try:
            while True:
                with self._lock:
                    if not self._watched:
                        self._thread = None
                        return
                if uevents is None:
                    time.sleep(self.interval)
                else:
                    ready, _, _ = select.select([uevents], [], [], self.interval)
                    if ready:
                        _drain(uevents)
                try:
                    self.sync()
                except Exception as exc:  # noqa: BLE001 - logged; the next pass tries again
                    log.error("partition fence: %s", exc)
        finally:
            if uevents is not None:
                uevents.close()


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _write_token(path: Path, token: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(token + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("partition fence: cannot answer %s: %s", path, exc)


def _uevent_socket() -> socket.socket | None:
    """The kernel's uevents (a partition added or removed wakes the fence at once); None
    when they cannot be had (the fence then only polls)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        sock.bind((0, 1))
        sock.setblocking(False)
        return sock
    except OSError as exc:
        log.info("partition fence: no uevents (%s): polling every %.2f s", exc, FENCE_POLL_INTERVAL)
        return None


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            # ENOBUFS: events were lost; the sync that follows reads sysfs anyway.
            if exc.errno != errno.ENOBUFS:
                return


NETLINK_KOBJECT_UEVENT = 15
FENCE = PartitionFence()


def allowed_partitions(devices: Path) -> set[tuple[int, int]]:
    """The partitions (block devices but the loop disk itself) a devices cgroup allows now."""
    allowed = set()
    try:
        lines = (devices / "devices.list").read_text().splitlines()
    except OSError:
        return allowed
    for line in lines:
        kind, number, _access = (line.split() + ["", "", ""])[:3]
        major, _, minor = number.partition(":")
        if kind == "b" and major.isdigit() and minor.isdigit() and int(major) != LOOP_MAJOR:
            allowed.add((int(major), int(minor)))
    return allowed
