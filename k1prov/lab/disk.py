"""Disks of the lab: whole-disk images and the machines' loop-device disks.

A whole-disk image (k1prov/lab/image.py) has an MBR partition table; its partition 1
is the root filesystem. After a deploy, a machine's disk also holds the config drive:
a partition at the end of the disk whose content is an ISO 9660 image labelled
`config-2`, written by ironic-python-agent. This module reads both with plain file
I/O (the kernel here has no iso9660 driver, and nothing needs to be mounted to find
them), and attaches/detaches a machine's disk file as a loop device with partition
scanning.
"""
from __future__ import annotations

import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from k1prov.errors import LabError
from k1prov.lab.command import run

SECTOR = 512
_MBR_SIGNATURE = b"\x55\xaa"
# An ISO 9660 primary volume descriptor: sector 16 (of 2048 bytes), "\x01CD001".
_ISO_PVD_OFFSET = 16 * 2048
_ISO_MAGIC = b"\x01CD001"
CONFIG_DRIVE_LABEL = "config-2"


@dataclass(frozen=True)
class Partition:
    number: int          # 1-based, as the kernel names loopNpM
    start: int           # byte offset on the disk
    size: int            # bytes
    type: int            # MBR type byte
    bootable: bool


def mbr_partitions(path: Path | str) -> list[Partition]:
    """The primary partitions of an MBR disk (image file or block device); [] when the
    disk has no partition table (an empty disk, or a bare filesystem image)."""
    try:
        with open(path, "rb") as f:
            mbr = f.read(SECTOR)
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror}") from None
    if len(mbr) < SECTOR or mbr[510:512] != _MBR_SIGNATURE:
        return []
    parts = []
    for i in range(4):
        entry = mbr[446 + 16 * i: 446 + 16 * (i + 1)]
        boot, ptype = entry[0], entry[4]
        lba, count = struct.unpack_from("<II", entry, 8)
        if ptype == 0 or count == 0 or boot not in (0, 0x80):
            continue
        parts.append(Partition(number=i + 1, start=lba * SECTOR, size=count * SECTOR, type=ptype,
                               bootable=boot == 0x80))
    return parts


def root_partition(path: Path | str) -> Partition | None:
    """Partition 1 of a whole-disk image or disk, None without a partition table."""
    return next((p for p in mbr_partitions(path) if p.number == 1), None)


def read_config_drive(device: Path | str) -> tuple[Partition, bytes] | None:
    """The config-2 partition of a disk and its bytes (an ISO image), or None.

    Looked up the way cloud-init and glean do it, by the filesystem label `config-2`:
    the volume identifier of an ISO 9660 primary volume descriptor.
    """
    for part in mbr_partitions(device):
        if part.size < _ISO_PVD_OFFSET + 2048:
            continue
        with open(device, "rb") as f:
            f.seek(part.start + _ISO_PVD_OFFSET)
            pvd = f.read(2048)
            if pvd[:6] != _ISO_MAGIC or pvd[40:72].decode("ascii", "replace").strip() != CONFIG_DRIVE_LABEL:
                continue
            # The volume space size (both-endian, little first) bounds what to read.
            blocks = struct.unpack_from("<I", pvd, 80)[0]
            block_size = struct.unpack_from("<H", pvd, 128)[0] or 2048
            length = min(part.size, blocks * block_size)
            f.seek(part.start)
            return part, f.read(length)
    return None


# ---------------------------------------------------------------- loop devices


def create_sparse(path: Path, size: int) -> None:
    """A sparse disk file of `size` bytes (kept when it exists: a disk keeps its content)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "wb") as f:
        f.truncate(size)
    os.replace(tmp, path)


def attach_loop(path: Path, *, timeout: float) -> str:
    """Attach `path` as a loop device with partition scanning; returns /dev/loopN.

    An attachment left over from an earlier run (a reconciler killed with -9) is reused.
    """
    deadline = time.monotonic() + timeout
    existing = loops_of(path)
    if existing:
        return existing[0]
    out = run(["losetup", "--find", "--show", "--partscan", "--direct-io=on", str(path)],
              deadline=deadline, what=f"losetup {path}", needs="util-linux")
    return out.strip()


def detach_loop(device: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    if not Path(f"/sys/block/{Path(device).name}/loop").exists():
        return
    run(["losetup", "--detach", device], deadline=deadline, what=f"losetup --detach {device}",
        needs="util-linux")


def update_partitions(device: str, *, timeout: float) -> None:
    """Tell the kernel the disk's partitions (partx parses the table in user space)."""
    run(["partx", "--update", device], deadline=time.monotonic() + timeout,
        what=f"partx --update {device}", needs="util-linux")


def table_partitions(device: str, *, timeout: float) -> dict[int, tuple[int, int]] | None:
    """The disk's partition table as partx reads it (MBR or GPT): number -> (first sector,
    sectors); None when the disk has no table."""
    try:
        out = run(["partx", "--raw", "--noheadings", "-o", "NR,START,SECTORS", device],
                  deadline=time.monotonic() + timeout, what=f"partx --show {device}", needs="util-linux")
    except LabError:
        return None
    table = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            table[int(fields[0])] = (int(fields[1]), int(fields[2]))
    return table


def kernel_partitions(device: str, *, sys_block: Path = Path("/sys/block")) -> dict[int, tuple[int, int]]:
    """The kernel's partitions of the disk: number -> (first sector, sectors)."""
    name = Path(device).name
    out = {}
    for part in (Path(sys_block) / name).glob(f"{name}p*"):
        try:
            out[int(part.name[len(name) + 1:])] = (int((part / "start").read_text()),
                                                   int((part / "size").read_text()))
        except (OSError, ValueError):
            continue
    return out


def add_partitions(device: str, *, timeout: float) -> None:
    """Tell the kernel the partitions of the disk's table (LabError without a table)."""
    run(["partx", "--add", device], deadline=time.monotonic() + timeout,
        what=f"partx --add {device}", needs="util-linux")


def delete_partitions(device: str, *, timeout: float) -> None:
    """Remove every partition the kernel has for the disk (none left is no error)."""
    try:
        run(["partx", "--delete", device], deadline=time.monotonic() + timeout,
            what=f"partx --delete {device}", needs="util-linux")
    except LabError:
        if partition_devices(device):
            raise


def loops_of(path: Path) -> list[str]:
    """Loop devices (/dev/loopN) whose backing file is `path`."""
    path = Path(path).resolve()
    found = []
    for entry in Path("/sys/block").glob("loop*"):
        try:
            backing = (entry / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing == str(path):
            found.append(f"/dev/{entry.name}")
    return sorted(found)


def loop_number(device: str) -> int:
    match = re.fullmatch(r"/dev/loop(\d+)", device)
    if not match:
        raise LabError(f"{device} is not a loop device")
    return int(match.group(1))


def partition_devices(device: str, *, sys_block: Path = Path("/sys/block")) -> dict[str, tuple[int, int]]:
    """The kernel's partitions of a disk: name (loopNpM) -> (major, minor)."""
    name = Path(device).name
    out = {}
    for part in sorted((Path(sys_block) / name).glob(f"{name}p*")):
        try:
            major, minor = (part / "dev").read_text().strip().split(":")
        except (OSError, ValueError):
            continue
        out[part.name] = (int(major), int(minor))
    return out
