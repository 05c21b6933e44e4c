"""Lab hosts: a deployed image "boots" as namespaces on this machine.

A host named N is:
  - network: namespace k1p-N, eth0 with its static address, veth into the lab bridge
    (k1prov.lab.netns);
  - disk: the image loop-mounted read-only once per image under ROOT/lower/<key>
    (shared by every host on that image) and an overlay whose writable layer is
    ROOT/hosts/N/upper. The overlay is mounted inside the host's own mount
    namespace only, so it disappears with the host: nothing is left mounted on
    this machine if a booter dies;
  - machine: `ip netns exec k1p-N unshare --mount --pid --uts --fork`, then a
    small shell script mounts the overlay, /proc, /sys, a private /dev (device
    nodes + a new devpts instance) and /run, sets the hostname and execs
    `unshare --cgroup setpriv ... chroot MERGED INIT`: PID 1 of the host. INIT is
    the booter's `init` (`lab up --host-init`):
    - "plain": /usr/local/sbin/k1p-init, which runs sshd and reaps orphans; role
      scripts find no systemd and keep their services under pid files;
    - "systemd": /lib/systemd/systemd, as a systemd container runs it (container=
      in its environment): the booter gives the host a cgroup v2 subtree of this
      machine's hybrid layout (CGROUP2_ROOT/k1prov-hosts-<lab id>/N, mounted as the
      host's /sys/fs/cgroup in its cgroup namespace, so systemd manages it as
      delegated to it), tmpfs /run/lock (and /run, as every host), and a machine-id
      in the writable layer; /tmp is on the writable layer, as on Debian 12. systemd
      starts journald and sshd (ssh.service), then whatever units the role scripts
      enabled: services come back after a power cycle and are restarted when they die. What a container's systemd cannot do without CAP_SYS_ADMIN
      (mount, set the hostname, private mount namespaces for units) it logs and
      skips; the units that fail outright are masked in the image (image.py).

The fence: whatever runs as root on a host (sshd's sessions, so every role script, and
the daemons they start) cannot touch this machine's disks, power, clock or kernel:
  - devices cgroup (v1) DEVICES/k1prov-hosts-<lab id>/N, joined by the boot script
    right after it mounted the host's root device: no block device at all (not even
    the machine's own disk), character devices ALLOWED_CHAR_DEVICES only (null, zero,
    full, random, urandom, tty, ptmx, the pty slaves); removed when the host stops,
    and the lab's parent with stop_all (lab down);
  - capability bounding set without HOST_DROPPED_CAPS (boot, module, time, rawio,
    ptrace, mknod, sys_admin, ...), dropped at PID 1 so nothing on the host regains
    them: no reboot(2)/kexec, no clock_settime, no mknod, no mount or remount;
  - /sys mounted read-only, /proc/sys, /proc/irq, /proc/bus and /proc/fs bound
    read-only, /proc/sysrq-trigger (where the kernel has one) masked with /dev/null,
    /proc/acpi and /proc/scsi hidden: the /proc and /sys files that check only uid 0;
  - a cgroup namespace, so the host sees its own cgroups as its root.
tests/integration/test_lab_hosts.py and test_lab_deploy.py probe it over SSH as root.

The config drive's content (HostConfig) is written into the writable layer before
the overlay is mounted. stop() SIGKILLs the host's PID 1 (k1p-init or systemd alike: a
power cut, no shutdown), which kills every process of its pid namespace and releases its
mounts, then removes its cgroups (the v2 subtree deepest first: the cgroups its systemd
made outlive their processes); wipe() deletes the writable layer.
State lives in ROOT/hosts/N/state.json, so a second process (k1prov lab down) can
stop hosts that another one booted.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from k1prov.errors import LabError
from k1prov.lab.command import run
from k1prov.lab.configdrive_apply import HostConfig, apply_host_config
from k1prov.lab.disk import root_partition
from k1prov.lab.machine import ALLOWED_CHAR_DEVICES, CGROUP_ROOT, DROPPED_CAPS, lab_id
from k1prov.lab.netns import LabNetwork, attach_host, detach_host, netns_exists, netns_name, unplug_host
from k1prov.lab import pids
from k1prov.settings import DEFAULT_TIMEOUTS

__all__ = ["HostBooter", "HostConfig", "HostInfo"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
INIT = "/usr/local/sbin/k1p-init"
# What a host boots as its PID 1 (`lab up --host-init`): k1p-init, or systemd as in a
# systemd container, so role scripts take their systemd branch, as on real machines.
HOST_INITS = ("plain", "systemd")
_INIT_COMM = {"plain": "k1p-init", "systemd": "systemd"}
# Where the hybrid cgroup layout of this machine has cgroup v2; systemd hosts get a
# subtree of it (the v1 controllers stay this machine's: devices fences the host).
CGROUP2_ROOT = CGROUP_ROOT / "unified"
RUNNING, STOPPED, ABSENT = "running", "stopped", "absent"
# Paths in the image that the writable layer shadows with the config drive's files;
# their directories are created in the upper layer with the image's owner and mode.
_CONFIG_DIRS = ("etc", "etc/ssh", "root", "root/.ssh")
# Capabilities no process of a host ever gets (setpriv --bounding-set at PID 1): the
# agent's (boot, modules, clock, raw I/O, ptrace) and, since nothing a host runs needs
# them (sshd, runuser, ZooKeeper, Spark, the Mesos agent with its posix launcher):
# mknod; sys_admin (mount and remount, swapon, setns, ...: /sys, /proc and the root stay
# as the booter mounted them); dac_read_search (open_by_handle_at); syslog; bpf and
# perfmon (kernel-wide programs); wake_alarm and block_suspend (power).
HOST_DROPPED_CAPS = tuple(dict.fromkeys(DROPPED_CAPS + (
    "mknod", "sys_admin", "dac_read_search", "syslog", "bpf", "perfmon", "wake_alarm", "block_suspend")))
# Waiting for the kernel to take the last process of a stopped host out of its cgroup.
_CGROUP_EMPTY_POLL = 0.01

# Runs as PID 1 of the new pid namespace, in the host's network, mount and uts
# namespaces, before the chroot. Arguments: merged lower upper work hostname lowers-dir
# lower-device (a lab machine's root partition, mounted in this namespace only; empty
# when the lower is an image mounted on this machine), the capabilities to drop
# (setpriv --bounding-set syntax), the init (HOST_INITS) and, for systemd, the number of
# the descriptor open on the host's cgroup v2 cgroup.procs. Its stdin is the host's
# devices cgroup's cgroup.procs, open for writing.
_BOOT_SCRIPT = r"""
set -eu
merged=$1 lower=$2 upper=$3 work=$4 name=$5 lowers=$6 lowerdev=$7 dropcaps=$8 init=$9 cg2fd=${10}
mount --make-rprivate /
# This namespace began as a copy of the machine's mounts: drop the copies that would
# pin other hosts' network namespaces and other images' loop devices.
findmnt -rn -o TARGET | sort -r | while read -r target; do
  case "$target" in
    # A mount listed here may be gone by now (another host's namespace was deleted
    # meanwhile): that is what this loop wants, not an error.
    /run/netns/*|"$lowers"/*) [ "$target" = "$lower" ] || umount -l "$target" 2>/dev/null || true ;;
  esac
done
if [ -n "$lowerdev" ]; then mount -o ro "$lowerdev" "$lower"; fi
# The last block device this host opens (the mount keeps it): from here on it is in its
# devices cgroup, which allows no block device at all and only ALLOWED_CHAR_DEVICES, for
# this script's mknods as for everything the host runs. (`ip netns exec` left no
# /sys/fs/cgroup in this namespace: the booter opened cgroup.procs as our stdin, a fixed
# descriptor that dash can name; 0 written = this process.)
echo 0 >&0
exec </dev/null
# systemd: the host's own cgroup v2 subtree (the booter opened its cgroup.procs as
# descriptor $cg2fd; reopened through /proc, as dash names no descriptor above 9), which
# its systemd manages as a container's systemd manages what its runtime delegated.
if [ "$init" = systemd ]; then echo 0 > "/proc/self/fd/$cg2fd"; fi
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"
mount -t proc proc "$merged/proc"
mount -t sysfs -o ro sysfs "$merged/sys"
mount -t tmpfs -o mode=755,size=16m tmpfs "$merged/dev"
mknod -m 666 "$merged/dev/null" c 1 3
mknod -m 666 "$merged/dev/zero" c 1 5
mknod -m 666 "$merged/dev/full" c 1 7
mknod -m 666 "$merged/dev/random" c 1 8
mknod -m 666 "$merged/dev/urandom" c 1 9
mknod -m 666 "$merged/dev/tty" c 5 0
ln -s /proc/self/fd "$merged/dev/fd"
ln -s /proc/self/fd/0 "$merged/dev/stdin"
ln -s /proc/self/fd/1 "$merged/dev/stdout"
ln -s /proc/self/fd/2 "$merged/dev/stderr"
mkdir "$merged/dev/pts" "$merged/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$merged/dev/pts"
ln -s pts/ptmx "$merged/dev/ptmx"
mount -t tmpfs -o mode=1777,size=256m tmpfs "$merged/dev/shm"
mount -t tmpfs -o mode=755,size=64m tmpfs "$merged/run"
if [ "$init" = systemd ]; then
  # What systemd mounts itself at boot and must find mounted here, where it cannot mount
  # (no CAP_SYS_ADMIN): /run/lock (fatal to it when missing). /tmp stays on the disk (the
  # writable layer), as on Debian 12, whose tmp.mount is off: role scripts unpack
  # release tarballs there (the Mesos build alone is 287 MB), which a tmpfs would keep in
  # this machine's memory, per host.
  mkdir -p "$merged/run/lock"
  mount -t tmpfs -o mode=1777,nosuid,nodev,noexec,size=5m tmpfs "$merged/run/lock"
fi
# What of this machine root could still change through /proc with no capability at all
# (sysctls and sysrq-trigger check uid 0 only; IRQ affinity, ACPI, SCSI): read-only or
# masked, as container runtimes do. Without CAP_SYS_ADMIN (dropped below) the host can
# neither unmount nor remount these. (This machine's kernel may have no sysrq at all.)
for p in sys irq bus fs; do
  if [ -d "$merged/proc/$p" ]; then
    mount --bind "$merged/proc/$p" "$merged/proc/$p"; mount -o remount,bind,ro "$merged/proc/$p"
  fi
done
if [ -e "$merged/proc/sysrq-trigger" ]; then mount --bind "$merged/dev/null" "$merged/proc/sysrq-trigger"; fi
for p in acpi scsi; do
  if [ -d "$merged/proc/$p" ]; then mount -t tmpfs -o ro,mode=555,size=4k tmpfs "$merged/proc/$p"; fi
done
hostname "$name"
# Into the host's root for good: the copies of this machine's other mounts (other labs'
# images and disks included) are dropped with the old root, so this host pins none.
cd "$merged"
pivot_root . mnt
umount -l /mnt
# PID 1 and everything it starts: a cgroup namespace rooted at the host's cgroups, and a
# capability bounding set without what reaches this machine's disks, power, clock and
# kernel (HOST_DROPPED_CAPS). Root on the host keeps the rest (sshd needs sys_chroot,
# setuid, setgid, audit_write; k1p-service runuser). unshare, setpriv and chroot are the
# image's own (util-linux, coreutils): this machine's root is gone.
if [ "$init" = plain ]; then
  exec unshare --cgroup setpriv --inh-caps=-all --bounding-set="$dropcaps" -- \
    chroot . /usr/local/sbin/k1p-init
fi
# systemd: in its new cgroup namespace, the host's cgroup v2 subtree mounted as the
# host's /sys/fs/cgroup (systemd sees "unified" and this subtree as the root), then
# systemd as PID 1 with an empty environment but container= (it then skips what only
# a machine's own init does: making / shared, the hardware's mounts, getty on a tty).
exec unshare --cgroup sh -c '
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
exec setpriv --inh-caps=-all --bounding-set="$1" -- chroot . /usr/bin/env -i container=k1prov-lab \
  /lib/systemd/systemd' k1p-cgroup "$dropcaps"
"""


@dataclass(frozen=True)
class HostInfo:
    name: str
    state: str                  # "running", "stopped" (has a writable layer) or "absent"
    address: str | None = None
    netns: str | None = None
    pid: int | None = None      # PID 1 of the host, as this machine numbers it
    image: Path | None = None
    root: Path | None = None    # ROOT/hosts/<name>: upper/, work/, state.json, console.log


class HostBooter:
    """Boots, stops and wipes lab hosts whose files live under `root`."""

    def __init__(self, root: Path, *, network: LabNetwork | None = None, init: str = "plain"):
        if init not in HOST_INITS:
            raise LabError(f"host init {init!r}: use one of {', '.join(HOST_INITS)}")
        self.root = Path(root)
        self.network = network or LabNetwork()
        self.init = init
        self._hosts_dir = self.root / "hosts"
        self._lowers_dir = self.root / "lower"
        # One devices cgroup per host, under one per booter root: two labs' hosts of the
        # same name never share one (and never meet the machines' k1prov-<id> cgroups).
        self.cgroup_parent = CGROUP_ROOT / "devices" / f"k1prov-hosts-{lab_id(self.root)}"
        # And, for systemd hosts, one cgroup v2 subtree per host under one per booter root.
        self.cgroup2_parent = CGROUP2_ROOT / f"k1prov-hosts-{lab_id(self.root)}"
        self._children: dict[str, subprocess.Popen] = {}
        self._children_lock = threading.Lock()

    # -- verbs -------------------------------------------------------------------

    def boot(self, name: str, image: Path, config: HostConfig, *,
             timeout: float = DEFAULT_TIMEOUTS.lab_service, mac: str | None = None) -> HostInfo:
        """Boot host `name` from `image` with `config`; a running host is left as it is.

        `image` is a root filesystem: a whole-disk image file (its partition 1), a bare
        filesystem image, or a block device (a lab machine's root partition). `mac` is the
        NIC's MAC (default: one derived from the name)."""
        _check_name(name)
        image = Path(image).resolve()
        if not (image.is_file() or image.is_block_device()):
            raise LabError(f"{name}: image {image} does not exist")
        deadline = time.monotonic() + timeout
        # The bridge is shared by every lab on the machine, and the last lab to go down
        # removes it: make sure it is there at each boot rather than once at start.
        self.network.ensure(timeout=max(1.0, deadline - time.monotonic()))
        with self._host_lock(name):
            current = self.status(name)
            if current.state == RUNNING:
                return current
            # A host that died by itself, or a booter that died mid-boot, leaves pieces.
            self._teardown(name, deadline=deadline)
            if netns_exists(netns_name(name)):
                # Namespace names are machine-wide: another booter (root) has a host of this name.
                raise LabError(f"{name}: network namespace {netns_name(name)} belongs to another lab")
            self._check_address_free(name, config.address)
            host_dir = self._hosts_dir / name
            upper, work, merged = host_dir / "upper", host_dir / "work", host_dir / "merged"
            for path in (upper, work, merged):
                path.mkdir(parents=True, exist_ok=True)
            try:
                lower = self._acquire_lower(image, deadline=deadline)
                lower_dev = str(image) if image.is_block_device() else ""
                self._write_state(name, {"image": str(image), "lower": str(lower),
                                         "address": config.address, "booting": True})
                self._prepare_upper(lower, upper, image_mounted=not lower_dev)
                apply_host_config(upper, config)
                if self.init == "systemd":
                    ensure_machine_id(upper)
                attach_host(name, bridge=self.network.bridge, address=config.address,
                            prefix=config.prefix, gateway=config.gateway,
                            timeout=_remaining(deadline, name, "network"), mac=mac)
                pid, start_time = self._start(name, merged, lower, upper, work, config.hostname, lower_dev,
                                              deadline=deadline)
            except BaseException:
                self._teardown(name, deadline=time.monotonic() + DEFAULT_TIMEOUTS.lab_service)
                raise
            self._write_state(name, {"image": str(image), "lower": str(lower), "address": config.address,
                                     "hostname": config.hostname, "pid": pid, "start_time": start_time,
                                     "init": self.init})
            return self.status(name)

    def stop(self, name: str, *, timeout: float = DEFAULT_TIMEOUTS.lab_service) -> None:
        """Power the host off: kill all of its processes, release its namespaces (idempotent)."""
        _check_name(name)
        with self._host_lock(name):
            self._teardown(name, deadline=time.monotonic() + timeout)

    def wipe(self, name: str) -> None:
        """Delete the host's writable layer (what undeploy/rebuild does to a disk)."""
        _check_name(name)
        with self._host_lock(name):
            if self.status(name).state == RUNNING:
                raise LabError(f"{name}: cannot wipe a running host (stop it first)")
            host_dir = self._hosts_dir / name
            for part in ("upper", "work", "merged", "state.json", "console.log"):
                path = host_dir / part
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)

    def status(self, name: str) -> HostInfo:
        _check_name(name)
        host_dir = self._hosts_dir / name
        if not host_dir.is_dir():
            return HostInfo(name=name, state=ABSENT)
        state = self._read_state(name)
        pid = state.get("pid")
        alive = pid is not None and pids.start_time(pid) == state.get("start_time")
        image = Path(state["image"]) if state.get("image") else None
        if not alive:
            exists = (host_dir / "upper").is_dir()
            return HostInfo(name=name, state=STOPPED if exists else ABSENT, address=state.get("address"),
                            image=image, root=host_dir)
        return HostInfo(name=name, state=RUNNING, address=state.get("address"), netns=netns_name(name),
                        pid=pid, image=image, root=host_dir)

    def list(self) -> list[HostInfo]:
        """Hosts that are running or have a writable layer."""
        if not self._hosts_dir.is_dir():
            return []
        names = sorted(p.name for p in self._hosts_dir.iterdir() if p.is_dir() and _NAME.match(p.name))
        return [info for info in map(self.status, names) if info.state != ABSENT]

    def stop_all(self, *, timeout: float = DEFAULT_TIMEOUTS.lab_service) -> None:
        """Stop every host and release every image mount: nothing of the lab hosts is left."""
        deadline = time.monotonic() + timeout
        failures = []
        # One host that will not stop must not keep the others running.
        for info in self.list():
            try:
                self.stop(info.name, timeout=max(1.0, deadline - time.monotonic()))
            except LabError as exc:
                failures.append(str(exc))
        with self._global_lock():
            for lower in self._mounted_lowers():
                try:
                    _umount(lower, deadline=max(deadline, time.monotonic() + 5.0))
                except LabError as exc:
                    failures.append(str(exc))
            for parent in (self.cgroup_parent, self.cgroup2_parent):
                try:
                    parent.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:  # a host still running: its cgroup is below
                    failures.append(f"cgroup {parent}: {exc.strerror}")
        if failures:
            raise LabError("lab hosts not stopped cleanly: " + "; ".join(failures))

    def wait_ssh(self, name: str, *, timeout: float) -> float:
        """Wait until the host's sshd accepts TCP connections; returns the seconds waited."""
        info = self.status(name)
        if info.state != RUNNING:
            raise LabError(f"{name}: not running")
        started = time.monotonic()
        deadline = started + timeout
        while True:
            try:
                with socket.create_connection((info.address, 22), timeout=1.0) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return time.monotonic() - started
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise LabError(f"{name}: sshd on {info.address} not ready after {timeout:.0f} s")
            time.sleep(0.02)

    def processes(self, name: str) -> list[int]:
        """Pids (as this machine numbers them) of every process of the running host."""
        info = self.status(name)
        if info.state != RUNNING:
            return []
        try:
            target = os.readlink(f"/proc/{info.pid}/ns/pid")
        except OSError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/pid") == target:
                        pids.append(int(entry))
                except OSError:
                    continue
        return sorted(pids)

    # -- boot and teardown ---------------------------------------------------------

    def cgroup(self, name: str) -> Path:
        """The host's devices cgroup (cgroup v1), there while the host runs."""
        _check_name(name)
        return self.cgroup_parent / name

    def _start(self, name: str, merged: Path, lower: Path, upper: Path, work: Path, hostname: str,
               lower_dev: str, *, deadline: float) -> tuple[int, int]:
        procs = self._make_cgroup(name)
        # systemd: the host's cgroup v2 subtree, joined by the boot script (descriptor 3).
        procs2 = self._make_cgroup2(name) if self.init == "systemd" else None
        console = open(self._hosts_dir / name / "console.log", "ab")
        try:
            child = subprocess.Popen(
                ["ip", "netns", "exec", netns_name(name),
                 "unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child", "--propagation", "slave",
                 "sh", "-c", _BOOT_SCRIPT, "k1p-boot",
                 str(merged), str(lower), str(upper), str(work), hostname, str(self._lowers_dir),
                 lower_dev, ",".join("-" + cap for cap in HOST_DROPPED_CAPS), self.init,
                 "" if procs2 is None else str(procs2)],
                stdin=procs, stdout=console, stderr=console, start_new_session=True,
                pass_fds=() if procs2 is None else (procs2,))
        finally:
            console.close()
            os.close(procs)
            if procs2 is not None:
                os.close(procs2)
        with self._children_lock:
            self._children[name] = child
        # PID 1 of the host is unshare's child; the boot is done once it is the init.
        while True:
            pid = _first_child(child.pid)
            if pid is not None and pids.comm(pid) == _INIT_COMM[self.init]:
                start_time = pids.start_time(pid)
                if start_time is not None:
                    return pid, start_time
            if child.poll() is not None:
                raise LabError(f"{name}: boot failed: {self._console_tail(name)}")
            if time.monotonic() >= deadline:
                raise LabError(f"{name}: boot timed out: {self._console_tail(name)}")
            time.sleep(0.002)

    def _teardown(self, name: str, *, deadline: float) -> None:
        state = self._read_state(name)
        with self._children_lock:
            child = self._children.pop(name, None)
        pid, start_time = state.get("pid"), state.get("start_time")
        if pid is None and child is not None:
            # Boot failed before PID 1 was recorded: find it through unshare.
            pid = _first_child(child.pid)
            start_time = pids.start_time(pid) if pid is not None else None
        if pid is not None and start_time is not None and pids.start_time(pid) == start_time:
            if state:
                # A power cut stops the NIC with the CPU: the host's peers (k1prov's SSH
                # sessions, the other ZooKeeper members) get no FIN or RST from the dying
                # processes, as from a real machine that loses power, and must notice the
                # silence themselves. So the cable goes before the processes.
                unplug_host(name, timeout=_remaining(deadline, name, "network teardown"))
            try:
                os.kill(pid, signal.SIGKILL)  # PID 1 of its namespace: every process dies with it
            except ProcessLookupError:
                pass
            # PID 1 is gone (or a zombie) only once the kernel has reaped the whole namespace.
            while pids.start_time(pid) == start_time:
                if time.monotonic() >= deadline:
                    raise LabError(f"{name}: host did not exit (pid {pid})")
                time.sleep(0.002)
        if child is not None:
            if child.poll() is None:
                child.kill()  # unshare --kill-child takes its child with it
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise LabError(f"{name}: host did not exit") from None
        self._remove_cgroup(name, deadline=deadline)
        self._remove_cgroup2(name, deadline=deadline)
        if state:  # only what this booter made: never another lab's namespace of the same name
            detach_host(name, timeout=_remaining(deadline, name, "network teardown"))
        if state.get("lower"):
            self._write_state(name, {k: v for k, v in state.items() if k not in ("pid", "start_time",
                                                                                  "lower", "booting")})
            self._release_lower(Path(state["lower"]), deadline=deadline)

    # -- the host's devices cgroup -----------------------------------------------------

    def _make_cgroup(self, name: str) -> int:
        """Create the host's devices cgroup (no block device, ALLOWED_CHAR_DEVICES only)
        and return a write descriptor of its cgroup.procs for the boot script."""
        if not (CGROUP_ROOT / "devices").is_dir():
            raise LabError("the lab needs the cgroup v1 devices controller to fence its hosts' devices")
        path = self.cgroup(name)
        path.mkdir(parents=True, exist_ok=True)
        (path / "devices.deny").write_text("a\n")
        for device in ALLOWED_CHAR_DEVICES:
            (path / "devices.allow").write_text(f"c {device} rwm\n")
        return os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def _remove_cgroup(self, name: str, *, deadline: float) -> None:
        path = self.cgroup(name)
        while True:
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # The host's processes are dead (its PID 1 was reaped); the kernel may not
                # have taken the last one out of the cgroup yet.
                if time.monotonic() >= deadline:
                    raise LabError(f"{name}: devices cgroup {path} not removed: {exc.strerror}") from None
            time.sleep(_CGROUP_EMPTY_POLL)

    def cgroup2(self, name: str) -> Path:
        """The host's cgroup v2 subtree (systemd hosts; its systemd's root), there while it runs."""
        _check_name(name)
        return self.cgroup2_parent / name

    def _make_cgroup2(self, name: str) -> int:
        if not (CGROUP2_ROOT / "cgroup.procs").is_file():
            raise LabError(f"systemd hosts need cgroup v2 at {CGROUP2_ROOT} (this machine's hybrid "
                           "cgroup layout); use --host-init plain")
        path = self.cgroup2(name)
        path.mkdir(parents=True, exist_ok=True)
        return os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def _remove_cgroup2(self, name: str, *, deadline: float) -> None:
        """The host's cgroup v2 subtree, deepest first: the cgroups its systemd made
        (init.scope, system.slice and a cgroup per service) outlive its processes."""
        top = self.cgroup2(name)
        if not top.is_dir():
            return
        while True:
            busy = []
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                               reverse=True) + [top]:
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    busy.append(f"{path}: {exc.strerror}")
            if not busy:
                return
            # As for the devices cgroup: the kernel takes the dead out a moment later.
            if time.monotonic() >= deadline:
                raise LabError(f"{name}: cgroup v2 subtree not removed: {'; '.join(busy)}")
            time.sleep(_CGROUP_EMPTY_POLL)

    # -- image mounts ----------------------------------------------------------------

    def _acquire_lower(self, image: Path, *, deadline: float) -> Path:
        st = image.stat()
        # A rebuilt image at the same path is a different disk: key on its identity too.
        key = hashlib.sha256(f"{image}\0{st.st_dev}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_size}"
                             .encode()).hexdigest()[:16]
        lower = self._lowers_dir / key
        if stat.S_ISBLK(st.st_mode):
            # A machine's own root partition: mounted inside the host's mount namespace only
            # (_BOOT_SCRIPT), so no copy of this machine's mounts made meanwhile can pin it.
            lower.mkdir(parents=True, exist_ok=True)
            return lower
        with self._global_lock():
            if not os.path.ismount(lower):
                lower.mkdir(parents=True, exist_ok=True)
                _run(["mount", "-o", _mount_options(image), str(image), str(lower)], deadline=deadline)
        return lower

    def _release_lower(self, lower: Path, *, deadline: float) -> None:
        with self._global_lock():
            for other in self._hosts_dir.iterdir():
                if other.is_dir() and self._read_state(other.name).get("lower") == str(lower):
                    return
            if os.path.ismount(lower):
                _umount(lower, deadline=deadline)

    def _mounted_lowers(self) -> list[Path]:
        if not self._lowers_dir.is_dir():
            return []
        return [p for p in self._lowers_dir.iterdir() if os.path.ismount(p)]

    @staticmethod
    def _prepare_upper(lower: Path, upper: Path, *, image_mounted: bool = True) -> None:
        for rel in _CONFIG_DIRS:
            source, target = lower / rel, upper / rel
            if target.is_dir():
                continue
            target.mkdir(mode=0o700)
            if not image_mounted:
                # The root partition is not mounted here: Debian's modes for these.
                os.chmod(target, 0o700 if rel.startswith("root") else 0o755)
            elif source.is_dir():
                st = source.stat()
                os.chown(target, st.st_uid, st.st_gid)
                os.chmod(target, st.st_mode & 0o7777)

    # -- state and locks ---------------------------------------------------------------

    def _check_address_free(self, name: str, address: str) -> None:
        for info in self.list():
            if info.name != name and info.state == RUNNING and info.address == address:
                raise LabError(f"{name}: address {address} is in use by host {info.name}")

    def _read_state(self, name: str) -> dict:
        try:
            return json.loads((self._hosts_dir / name / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, name: str, state: dict) -> None:
        path = self._hosts_dir / name / "state.json"
        tmp = path.with_name("state.json.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)

    def _console_tail(self, name: str) -> str:
        try:
            lines = (self._hosts_dir / name / "console.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no console output)"
        return " | ".join(lines[-5:]) or "(no console output)"

    @contextmanager
    def _host_lock(self, name: str):
        # flock on a fresh open file: excludes other threads and other processes alike.
        (self._hosts_dir / name).mkdir(parents=True, exist_ok=True)
        with open(self._hosts_dir / name / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    @contextmanager
    def _global_lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise LabError(f"bad lab host name {name!r}: lowercase letters, digits and '-', at most 32")


def _remaining(deadline: float, name: str, what: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise LabError(f"{name}: timed out before {what}")
    return remaining


def _first_child(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def ensure_machine_id(upper: Path) -> None:
    """A machine-id of the host's own, made at its first boot and kept in its writable
    layer like a real disk keeps it. systemd would make one itself, but commits it
    with a bind mount, and a host's PID 1 has no CAP_SYS_ADMIN."""
    path = upper / "etc" / "machine-id"
    if path.is_file() and path.stat().st_size:
        return
    tmp = path.with_name("machine-id.tmp")
    tmp.write_text(uuid.uuid4().hex + "\n")
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)


def _mount_options(image: Path) -> str:
    """Read-only mount options for a root filesystem: a block device (a machine's root
    partition), a whole-disk image (its partition 1) or a bare filesystem image."""
    if stat.S_ISBLK(image.stat().st_mode):
        return "ro"
    part = root_partition(image)
    if part is None:
        return "ro,loop"
    return f"ro,loop,offset={part.start},sizelimit={part.size}"


def _umount(target: Path, *, deadline: float) -> None:
    # The loop device was set up with autoclear by mount(8): it goes with the last unmount.
    _run(["umount", str(target)], deadline=deadline)


def _run(argv: list[str], *, deadline: float) -> None:
    run(argv, deadline=deadline, what=" ".join(argv))
