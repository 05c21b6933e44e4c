"""Two parts of the lab agent's sandbox, without a lab:

- the partition fence follows a disk's partitions (a sysfs and a devices cgroup made of
  plain files here): a new partition is allowed by its number, a removed one denied again,
  another disk's never;
- the seccomp launcher (k1prov/lab/agent_seccomp.py, under Debian's python3 with
  python3-seccomp, as in the sandbox) refuses mount, umount, namespaces and the like to the
  command it runs and to that command's children, makes BLKRRPART/BLKPG succeed without
  reaching the kernel, and the command otherwise runs normally (threads, fork,
  subprocesses). Run as root inside a throw-away mount namespace, so the
  refusals are the filter's, not a missing privilege.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from k1prov.lab import agent_seccomp
from k1prov.lab.machine import SHIM_UDEVADM
from k1prov.lab.partitions import PartitionFence

# The fence thread picks up a change within its interval; this bounds the wait for it.
FENCE_WAIT = 10.0
SYSTEM_PYTHON = "/usr/bin/python3"


def _partition(sys_block: Path, disk: str, number: int, dev: str) -> None:
    part = sys_block / disk / f"{disk}p{number}"
    part.mkdir(parents=True)
    (part / "dev").write_text(dev + "\n")


def _cgroup(tmp_path: Path) -> Path:
    cg = tmp_path / "cgroup"
    cg.mkdir()
    return cg


def _rules(cg: Path, name: str) -> str:
    path = cg / name
    return path.read_text().strip() if path.exists() else ""


def test_the_fence_allows_the_disks_own_partitions_and_takes_a_gone_one_back(tmp_path):
    sys_block = tmp_path / "block"
    (sys_block / "loop3").mkdir(parents=True)
    _partition(sys_block, "loop3", 1, "259:4")
    _partition(sys_block, "loop5", 1, "259:5")          # another machine's disk
    cg = _cgroup(tmp_path)
    # Synced by hand here; its thread only repeats the same sync (and stops soon after
    # the last unwatch, at its next pass).
    fence = PartitionFence(sys_block=sys_block, interval=0.02)
    fence.watch(cg, "loop3")
    assert fence.allowed(cg) == {(259, 4)}
    assert _rules(cg, "devices.allow") == "b 259:4 rwm"

    _partition(sys_block, "loop3", 2, "259:6")
    fence.sync()
    assert fence.allowed(cg) == {(259, 4), (259, 6)}
    assert _rules(cg, "devices.allow") == "b 259:6 rwm"

    shutil.rmtree(sys_block / "loop3" / "loop3p1")
    fence.sync()
    assert fence.allowed(cg) == {(259, 6)}
    assert _rules(cg, "devices.deny") == "b 259:4 rwm"

    fence.unwatch(cg)
    _partition(sys_block, "loop3", 3, "259:7")
    fence.sync()
    assert fence.allowed(cg) == set()
    assert _rules(cg, "devices.allow") == "b 259:6 rwm"
    assert fence.join(FENCE_WAIT)


def test_the_fence_thread_follows_new_partitions_and_stops_with_nothing_to_watch(tmp_path):
    sys_block = tmp_path / "block"
    (sys_block / "loop3").mkdir(parents=True)
    cg = _cgroup(tmp_path)
    fence = PartitionFence(sys_block=sys_block, interval=0.02)
    fence.watch(cg, "loop3")
    try:
        _partition(sys_block, "loop3", 1, "259:9")
        deadline = time.monotonic() + FENCE_WAIT
        while fence.allowed(cg) != {(259, 9)}:
            assert time.monotonic() < deadline, "the fence thread never allowed the new partition"
            time.sleep(0.02)
        assert _rules(cg, "devices.allow") == "b 259:9 rwm"
    finally:
        fence.unwatch(cg)
    assert fence.join(FENCE_WAIT), "the fence thread still runs with nothing to watch"


def test_the_udevadm_shim_waits_for_the_fence_by_name_and_only_for_settle():
    assert SHIM_UDEVADM.startswith("#!/bin/sh\n")
    assert '[ "${1:-}" = settle ] || exit 0' in SHIM_UDEVADM
    assert "@" not in SHIM_UDEVADM                  # every placeholder filled in
    res = subprocess.run(["sh", "-n"], input=SHIM_UDEVADM, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


PROBE = r"""
import ctypes, errno, json, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *a):
    if getattr(libc, name)(*a) != 0:
        return errno.errorcode.get(ctypes.get_errno())
    return "ok"
out = {}
os.makedirs("/tmp/k1p-seccomp-test", exist_ok=True)
out["mount"] = call("mount", b"tmpfs", b"/tmp/k1p-seccomp-test", b"tmpfs", 0, None)
out["umount2"] = call("umount2", b"/tmp/k1p-seccomp-test", 2)
out["unshare"] = call("unshare", 0x20000)
out["setns"] = call("setns", os.open("/proc/self/ns/mnt", os.O_RDONLY), 0)
out["chroot"] = call("chroot", b"/")
out["swapoff"] = call("swapoff", b"/nonexistent")
out["fsopen"] = "ok" if libc.syscall(430, b"tmpfs", 0) >= 0 else errno.errorcode.get(ctypes.get_errno())
out["open_tree_attr"] = "ok" if libc.syscall(467, -100, b"/", 1, None, 0) >= 0 else errno.errorcode.get(ctypes.get_errno())
fd = os.open("/dev/null", os.O_RDONLY)
# BLKRRPART on /dev/null: ENOTTY from the kernel; 0 from the filter, which never lets it through
out["blkrrpart"] = "ok" if libc.ioctl(fd, 0x125F) == 0 else errno.errorcode.get(ctypes.get_errno())
child = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
out["child_unshare"] = child.returncode
t = threading.Thread(target=lambda: out.__setitem__("thread", "ok")); t.start(); t.join()
out["seccomp"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0]
print(json.dumps(out))
"""


def test_the_seccomp_launcher_refuses_mounts_and_namespaces_to_the_agent_and_its_children(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: without privileges every refusal would be the kernel's anyway")
    check = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import seccomp"], capture_output=True, timeout=30)
    assert check.returncode == 0, "python3-seccomp is missing: run scripts/install.sh"
    res = subprocess.run(["unshare", "--mount", "--propagation", "private",
                          SYSTEM_PYTHON, "-I", agent_seccomp.__file__, sys.executable, "-I", "-c", PROBE],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for call in ("mount", "umount2", "unshare", "setns", "chroot", "swapoff", "fsopen", "open_tree_attr"):
        assert out[call] == "EPERM", (call, out[call])
    assert out["child_unshare"] != 0
    assert out["blkrrpart"] == "ok"            # told the kernel nothing, said it did
    assert out["thread"] == "ok" and out["seccomp"] == "2"


def test_the_seccomp_launcher_says_what_is_wrong_without_a_command():
    res = subprocess.run([SYSTEM_PYTHON, "-I", agent_seccomp.__file__], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 2 and "usage" in res.stderr
