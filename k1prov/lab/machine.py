"""A lab machine: a BMC, a NIC, a disk and a power switch, and what it boots.

Machine `m<port>` belongs to the BMC simulator on UDP port <port> and sees only what a
real machine sees: its BMC's power state, boot device and boot counter, the PXE config
on the "network" (k1prov.lab.pxe) and its own disk; never Ironic's API or database.

- NIC: a veth with MAC `machine_mac(port)` in the namespace `k1p-m<port>`, on the lab
  bridge (the inventory gives that MAC, as an operator copies a real NIC's).
- Disk: `ROOT/machines/m<port>/disk.img`, sparse, on a loop device only while powered on
  (40 machines hold loop devices only for those that run).
- Network boot: an address from the simulated DHCP, and the PXE config's kernel and
  initrd must be real files in the TFTP root, or nothing boots (a PXE ROM that finds
  nothing); then the real ironic-python-agent runs in the sandbox below, with the
  config's kernel command line as its /proc/cmdline.
- Disk boot: partition 1 is the root filesystem (read-only under a writable layer that
  lives until the disk is next written); hostname, address and keys from the config-2
  partition (k1prov.lab.configdrive_apply), then sshd (k1prov.lab.hosts.HostBooter).
- Power off stops what runs; the agent's `poweroff` presses the power button: the lab
  turns the BMC off over IPMI, as ACPI would.

The agent's sandbox (AGENT_SCRIPT). The agent runs as root and keeps CAP_SYS_ADMIN
(parted and partprobe need it), so the fence does not rest on capabilities:
- a devices cgroup allowing only this machine's loop device and, by number, its current
  partitions (k1prov.lab.partitions keeps that true as partitions come and go; the
  agent's `udevadm settle` shim asks it to rescan and waits at most
  PARTITION_ALLOW_TIMEOUT);
- every block device under /dev masked, the host's /dev read-only, its own devpts;
- its own root (pivot_root): read-only /usr, sysfs and /proc/sys, /sys/block showing
  only its disk, tmpfs /run, /tmp, /var, an overlay on /etc; its own mount, pid, uts,
  network and cgroup namespaces;
- a seccomp filter (k1prov/lab/agent_seccomp.py) so it cannot undo any of this;
- shims for systemctl, udevadm and modprobe; setpriv drops DROPPED_CAPS.
A memory cgroup per machine measures what a deploy uses.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from k1prov.errors import LabError
from k1prov.lab import agent_seccomp
from k1prov.lab import disk as disks
from k1prov.lab.netns import attach_host, bmc_lan_address, detach_host, netns_name
from k1prov.lab.partitions import FENCE, FENCE_POLL_INTERVAL, LOOP_MAJOR, allowed_partitions
from k1prov.lab.pxe import Dhcp, boot_purpose, deploy_ramdisk_cmdline_ok, read_pxe_config
from k1prov.lab import pids

log = logging.getLogger("k1prov.lab.machine")

GIB = 2**30
# The agent's own port in its namespace (IPA's default).
AGENT_PORT = 9999
# Capabilities the agent never gets (setpriv --bounding-set).
DROPPED_CAPS = ("sys_boot", "sys_module", "sys_time", "sys_rawio", "sys_ptrace")
# Character devices the agent may open (devices cgroup): null, zero, full, random,
# urandom, tty, ptmx and the pty slaves.
ALLOWED_CHAR_DEVICES = ("1:3", "1:5", "1:7", "1:8", "1:9", "5:0", "5:2", "136:*")
# The agent's `udevadm settle` waits at most this long for the lab to allow every
# partition its disk has (the fence normally does it within FENCE_POLL_INTERVAL).
PARTITION_ALLOW_TIMEOUT = 20.0
# Where the seccomp launcher (k1prov/lab/agent_seccomp.py) is inside the sandbox.
SECCOMP_EXEC = "/k1prov/bin/k1prov-seccomp-exec"
# Stopping one agent (SIGKILL of its namespace, then the kernel's reaping).
STOP_TIMEOUT = 30.0
# losetup, ip, mount: each is quick; a stuck one is an error.
COMMAND_TIMEOUT = 30.0
CGROUP_ROOT = Path("/sys/fs/cgroup")

NETWORK, DISK = "network", "disk"


def machine_name(port: int) -> str:
    return f"m{port}"


def machine_mac(port: int) -> str:
    """The MAC of machine `port`'s NIC: locally administered, fixed like a real NIC's."""
    return f"02:6b:70:00:{port >> 8 & 0xff:02x}:{port & 0xff:02x}"


# ---------------------------------------------------------------- the agent's sandbox

# Runs as PID 1 of the machine's new pid namespace (in its network, mount and uts
# namespaces). Arguments: new-root machine-dir venv disk loop-number cgroup-procs...
AGENT_SCRIPT = r"""
set -eu
new=$1 mdir=$2 venv=$3 disk=$4 loopn=$5 name=$6 pyhome=$7
hostname "$name"
mount --make-rprivate /
mount -t tmpfs -o mode=755,size=64m tmpfs "$new"
cd "$new"
mkdir -p usr proc sys dev run tmp var/log var/lib var/tmp etc .rw/etc .rw/work k1prov/bin root .$venv
ln -s usr/bin bin; ln -s usr/sbin sbin; ln -s usr/lib lib; ln -s usr/lib64 lib64
mount --bind /usr usr; mount -o remount,bind,ro usr
mount --bind "$venv" ".$venv"; mount -o remount,bind,ro ".$venv"
# The Python installation the venv was made from, when it is not the system's.
case "$pyhome" in
  /usr|/usr/*|"") ;;
  *) mkdir -p ".$pyhome"; mount --bind "$pyhome" ".$pyhome"; mount -o remount,bind,ro ".$pyhome" ;;
esac
mount -t overlay overlay -o "lowerdir=/etc,upperdir=.rw/etc,workdir=.rw/work" etc
cp "$mdir/ipa.conf" etc/k1prov-ipa.conf
rm -f etc/resolv.conf; : > etc/resolv.conf
mount -t proc proc proc
mount --bind "$mdir/cmdline" proc/cmdline
# (this kernel may have no magic SysRq at all; where it has, the agent's fallback
# `echo o > /proc/sysrq-trigger` must not reach it)
if [ -e proc/sysrq-trigger ]; then mount --bind /dev/null proc/sysrq-trigger; fi
mount --bind proc/sys proc/sys; mount -o remount,bind,ro proc/sys
mount -t sysfs -o ro sysfs sys
# lsblk (and with it the generic hardware manager) lists /sys/block: only this disk there.
mount -t tmpfs -o mode=755,size=1m tmpfs sys/block
ln -s ../devices/virtual/block/loop$loopn sys/block/loop$loopn
mount -o remount,ro sys/block
mount --rbind /dev dev
mount -t tmpfs -o mode=1777,size=64m tmpfs dev/shm
# Ptys of its own: the host's /dev/pts holds the lab's and everyone's terminals.
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts dev/pts
mount --bind dev/pts/ptmx dev/ptmx
# Every block device node but this machine's disk and its partitions shows /dev/null;
# the devices cgroup refuses any other one anyway, whatever its name.
for node in dev/* dev/*/*; do
  [ -L "$node" ] && continue
  [ -b "$node" ] || [ "$node" = dev/loop-control ] || [ "$node" = dev/mem ] || [ "$node" = dev/kmem ] \
    || [ "$node" = dev/port ] || continue
  case "${node#dev/}" in loop$loopn|loop${loopn}p*) continue ;; esac
  mount --bind /dev/null "$node"
done
# The host's /dev, read-only: no node made or removed there (devtmpfs still adds the
# kernel's new nodes, which the devices cgroup refuses unless they are this disk's).
mount -o remount,bind,ro dev
for t in run tmp var; do mount -t tmpfs -o mode=755,size=256m tmpfs $t; done
chmod 1777 tmp
mkdir -p var/log var/lib var/tmp run/k1prov
mount --bind "$mdir/button" run/k1prov
for shim in "$mdir"/shims/*; do
  cp "$shim" k1prov/bin/; chmod 755 "k1prov/bin/${shim##*/}"
done
mount --bind k1prov/bin/systemctl usr/bin/systemctl
# Into the new root for good: the copies of this machine's mounts (other labs' disks and
# images included) go with the old root, so the agent can neither see nor pin them.
mkdir .old
pivot_root . .old
umount -l /.old
rmdir /.old
cd /
# This shell, the sandbox's PID 1, gives up the agent's dropped capabilities too before it
# starts the agent: a PID 1 with more capabilities than the agent could not be inspected
# by it, and the agent's cleaning runs fuser, which reads every process's /proc/PID/fd to
# see that nothing holds the disk ("Cannot stat file /proc/1/fd/0: Permission denied"
# failed erase_devices_metadata). The seccomp filter (agent_seccomp.py) goes on last,
# just before the agent runs.
export disk venv
exec setpriv --bounding-set "$K1PROV_DROP_CAPS" -- /bin/sh -c '
env -i PATH=/k1prov/bin:/usr/sbin:/usr/bin HOME=/root LANG=C.UTF-8 \
  K1PROV_MACHINE_DISK="$disk" K1PROV_MACHINE_NIC=eth0 K1PROV_MACHINE_BMC="$K1PROV_MACHINE_BMC" \
  /usr/bin/python3 -I "$K1PROV_SECCOMP_EXEC" \
  "$venv/bin/ironic-python-agent" --config-file /etc/k1prov-ipa.conf &
wait $!'
"""

# The power button: poweroff/reboot/halt/shutdown (all systemctl on Debian) record the
# request; the lab turns the BMC off (poweroff) or resets it (reboot).
SHIM_SYSTEMCTL = r"""#!/bin/sh
verb=$(basename "$0")
[ "$verb" = systemctl ] && verb=${1:-}
case "$verb" in
  poweroff|halt|shutdown) echo poweroff > /run/k1prov/request ;;
  reboot) echo reboot > /run/k1prov/request ;;
  *) echo "systemctl $*: not on a lab machine" >&2; exit 1 ;;
esac
exit 0
"""
SHIM_NOOP = "#!/bin/sh\nexit 0\n"
# `udevadm settle` (the agent runs it after partprobe and parted): there is no udev, and
# the kernel's partitions are the lab's to change (BLKPG/BLKRRPART do nothing for the
# agent: agent_seccomp.py). So settle asks the lab's partition fence to scan the disk
# (a token in /run/k1prov/partscan), waits for its answer and then until every partition
# sysfs lists for this disk opens; at most PARTITION_ALLOW_TIMEOUT.
SHIM_UDEVADM = r"""#!/bin/sh
[ "${1:-}" = settle ] || exit 0
read -r up _ < /proc/uptime
deadline=$(( ${up%.*} + @TIMEOUT@ ))
token="$$-$up"
echo "$token" > /run/k1prov/partscan.new
mv -f /run/k1prov/partscan.new /run/k1prov/partscan
while :; do
  answer=
  [ -e /run/k1prov/partscan.done ] && read -r answer < /run/k1prov/partscan.done
  if [ "$answer" = "$token" ]; then
    waiting=
    for dev in /sys/block/loop*/loop*p*/dev; do
      [ -e "$dev" ] || continue
      part=${dev%/dev}
      part=/dev/${part##*/}
      ( : < "$part" ) 2>/dev/null || waiting="$waiting $part"
    done
    [ -z "$waiting" ] && exit 0
  else
    waiting=" (no answer to the scan)"
  fi
  read -r up _ < /proc/uptime
  if [ "${up%.*}" -ge "$deadline" ]; then
    echo "udevadm settle: not usable after @TIMEOUT@ s (the lab's partition fence):$waiting" >&2
    exit 1
  fi
  sleep @INTERVAL@
done
""".replace("@TIMEOUT@", str(int(PARTITION_ALLOW_TIMEOUT))).replace("@INTERVAL@", f"{FENCE_POLL_INTERVAL:g}")
SHIMS = {"systemctl": SHIM_SYSTEMCTL, "poweroff": SHIM_SYSTEMCTL, "reboot": SHIM_SYSTEMCTL,
         "halt": SHIM_SYSTEMCTL, "shutdown": SHIM_SYSTEMCTL, "udevadm": SHIM_UDEVADM,
         "modprobe": SHIM_NOOP}


def ipa_conf(address: str) -> str:
    return (
        "[DEFAULT]\n"
        f"listen_host = {address}\n"
        f"advertise_host = {address}\n"
        f"listen_port = {AGENT_PORT}\n"
        "lookup_interval = 2\n"
        "hardware_initialization_delay = 0\n"
        "disk_wait_attempts = 2\n"
        # The generic manager looks for a disk it can use and finds none (it skips loop
        # devices): wait one second for it, not three.
        "disk_wait_delay = 1\n"
        "collect_lldp = false\n"
        # The image server is on the same bridge: a failed download (or a checksum that
        # does not match) is retried twice, a second apart, not 9 times 10 s apart.
        "image_download_connection_retries = 2\n"
        "image_download_connection_retry_interval = 1\n"
        "use_stderr = true\n"
        "debug = false\n")


# ---------------------------------------------------------------- faults and probes


def cable_unplugged(machine_dir: Path) -> bool:
    """A lab fault: the machine's network cable is out (its NIC is not on the bridge), so
    its agent never reaches Ironic. Set with unplug_cable(); read at every boot."""
    return (Path(machine_dir) / "cable-unplugged").exists()


def unplug_cable(machines_dir: Path, port: int, *, unplugged: bool = True) -> None:
    flag = Path(machines_dir) / machine_name(port) / "cable-unplugged"
    if unplugged:
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_text("")
    else:
        flag.unlink(missing_ok=True)


def sandbox_command(machines_dir: Path, port: int, lab_root: Path, argv: list[str]) -> list[str]:
    """argv run the way machine `port`'s agent runs: its cgroups, its network, mount, uts
    and pid namespaces, its root, its capability bounding set and its environment.
    For probes of the sandbox (tests) and for looking around in a running agent."""
    state = json.loads((Path(machines_dir) / machine_name(port) / "state.json").read_text())
    agent = agent_pid(machines_dir, port)
    ident = lab_id(lab_root)
    join = "".join(f'echo $$ > "{CGROUP_ROOT / c / f"k1prov-{ident}" / machine_name(port) / "cgroup.procs"}"; '
                   for c in ("devices", "memory"))
    return ["sh", "-c", join + 'exec "$@"', "k1p-probe",
            "nsenter", f"--target={agent}", "--mount", "--uts", "--net", "--pid", "--cgroup", "--root",
            "--wd", "setpriv", "--bounding-set", ",".join("-" + c for c in DROPPED_CAPS), "--",
            "env", "-i", "PATH=/k1prov/bin:/usr/sbin:/usr/bin", "HOME=/root",
            f"K1PROV_MACHINE_DISK={state.get('loop')}", "K1PROV_MACHINE_NIC=eth0",
            "/usr/bin/python3", "-I", SECCOMP_EXEC, *argv]


def agent_pid(machines_dir: Path, port: int) -> int:
    """The pid (host's view) of machine `port`'s running ironic-python-agent; LabError
    when none runs or it has not started yet."""
    state = json.loads((Path(machines_dir) / machine_name(port) / "state.json").read_text())
    pid1 = state.get("agent_pid")
    if state.get("running") != "agent" or pid1 is None or pids.start_time(pid1) != state.get("agent_start"):
        raise LabError(f"{machine_name(port)}: no agent running")
    # The agent itself, not a forked copy of the set-up shell (whose command line quotes
    # it) nor the seccomp launcher about to exec it.
    agent = next((c for c in _children(pid1) if pids.comm(c) == "ironic-python-a"), None)
    if agent is None:
        raise LabError(f"{machine_name(port)}: the agent has not started yet")
    return agent


# ---------------------------------------------------------------- one machine


class Machine:
    """Boots, runs and stops what machine `port` runs. Not thread-safe: one worker at a time."""

    def __init__(self, port: int, *, root: Path, lab_id: str, venv: Path, tftp_root: Path,
                 bridge: str, dhcp: Dhcp, booter, disk_gb: int):
        self.port = port
        self.name = machine_name(port)
        self.mac = machine_mac(port)
        self.dir = Path(root) / self.name
        self.lab_id = lab_id
        self.venv = Path(venv)
        self.tftp_root = Path(tftp_root)
        self.bridge = bridge
        self.dhcp = dhcp
        self.booter = booter
        self.disk_size = disk_gb * GIB
        self.agent: subprocess.Popen | None = None
        self.agent_pid1: int | None = None
        self.loop: str | None = None

    # -- state kept on disk (survives a reconciler restart) -------------------------

    @property
    def disk_file(self) -> Path:
        return self.dir / "disk.img"

    def state(self) -> dict:
        try:
            return json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, **changes) -> None:
        state = {**self.state(), **changes}
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.dir / "state.json")

    def running(self) -> str | None:
        """"agent", "host" or None: what runs on the machine now."""
        st = self.state()
        if st.get("running") == "agent" and self.agent_alive():
            return "agent"
        if st.get("running") == "host" and self.booter.status(self.name).state == "running":
            return "host"
        return None

    def agent_alive(self) -> bool:
        st = self.state()
        pid, start = st.get("agent_pid"), st.get("agent_start")
        return pid is not None and pids.start_time(pid) == start

    def button(self) -> str | None:
        try:
            return (self.dir / "button" / "request").read_text().strip() or None
        except OSError:
            return None

    # -- verbs ------------------------------------------------------------------------

    def adopt(self) -> str | None:
        """Take over what an earlier process of the lab's hardware left running on this
        machine (a restart of that process is no power cut: the machine keeps running),
        and return it. When nothing of it runs any more (this machine itself rebooted, or
        `lab down` powered it off), its next look at the BMC boots it again if the BMC is on."""
        state = self.state()
        what = self.running()
        if what == "agent":
            self.loop = state.get("loop")
            devices = self._cgroup("devices")
            FENCE.watch(devices, Path(self.loop).name, self.dir / "button",
                        allowed=allowed_partitions(devices))
        elif what == "host":
            loops = disks.loops_of(self.disk_file) if self.disk_file.exists() else []
            self.loop = loops[0] if loops else None
        elif state:
            self._save(boots=None, running=None, button_pressed=None)
        return what

    def power_off(self) -> None:
        """Stop whatever runs, release the NIC, the lease and the loop device."""
        self._stop_agent()
        self.booter.stop(self.name, timeout=STOP_TIMEOUT)
        detach_host(self.name, timeout=COMMAND_TIMEOUT)
        self.dhcp.release(self.mac)
        self._detach_disk()
        self._remove_cgroups()
        self._save(running=None)

    def boot(self, device: str, boots: int) -> str:
        """Boot from `device` (the BMC's boot device); returns what it booted or raises."""
        self.power_off()
        self._save(boots=boots, running=None, boot_error=None, button_pressed=None)
        if device in ("network", "net", "pxe"):
            return self._boot_network(boots)
        return self._boot_disk(boots)

    # -- network boot: the agent --------------------------------------------------------

    def _boot_network(self, boots: int) -> str:
        pxe = read_pxe_config(self.tftp_root, self.mac)
        if not deploy_ramdisk_cmdline_ok(pxe.cmdline):
            raise LabError(f"PXE: {pxe.config.name}: neither ipa-api-url nor "
                           f"ipa-inspection-callback-url on the kernel command line")
        address = self.dhcp.lease(self.mac)
        network = self.dhcp.network
        # The disk is about to be written: the writable layer of its last instance goes.
        self.booter.wipe(self.name)
        loop = self._attach_disk()
        loopn = disks.loop_number(loop)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "cmdline").write_text(pxe.cmdline + "\n")
        (self.dir / "ipa.conf").write_text(ipa_conf(address))
        button = self.dir / "button"
        shutil.rmtree(button, ignore_errors=True)
        button.mkdir()
        shims = self.dir / "shims"
        shims.mkdir(exist_ok=True)
        for name, text in SHIMS.items():
            (shims / name).write_text(text)
        (shims / Path(SECCOMP_EXEC).name).write_text(Path(agent_seccomp.__file__).read_text())
        procs = self._make_cgroups(loopn)
        (self.dir / "root").mkdir(exist_ok=True)
        attach_host(self.name, bridge=self.bridge, address=address, prefix=network.prefixlen,
                    gateway=None, timeout=COMMAND_TIMEOUT, mac=self.mac,
                    plugged=not cable_unplugged(self.dir))
        log_path = self.dir / "agent.log"
        with open(log_path, "ab") as console:
            console.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} boot {boots}: network "
                          f"({boot_purpose(pxe.cmdline)}), "
                          f"{pxe.config.name}, address {address}, disk {loop}\n"
                          f"==== cmdline: {pxe.cmdline}\n".encode())
            console.flush()
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                   "K1PROV_DROP_CAPS": ",".join("-" + c for c in DROPPED_CAPS),
                   "K1PROV_SECCOMP_EXEC": SECCOMP_EXEC,
                   # What its agent reports as the BMC's address (ipa_hwm.py).
                   "K1PROV_MACHINE_BMC": bmc_lan_address(self.port)}
            # Into the cgroups first (`ip netns exec` mounts a sysfs of the namespace's own,
            # without /sys/fs/cgroup): everything the agent starts inherits them, and its
            # cgroup namespace has them as its root.
            join = "".join(f'echo $$ > "{p}"; ' for p in procs)
            self.agent = subprocess.Popen(
                ["sh", "-c", join + 'exec "$@"', "k1p-cgroup",
                 "ip", "netns", "exec", netns_name(self.name),
                 "unshare", "--mount", "--pid", "--uts", "--cgroup", "--fork", "--kill-child",
                 "sh", "-c", AGENT_SCRIPT, "k1p-agent", str(self.dir / "root"), str(self.dir),
                 str(self.venv), loop, str(loopn), self.name, python_home(self.venv)],
                stdin=subprocess.DEVNULL, stdout=console, stderr=console, env=env,
                start_new_session=True)
        pid1 = self._wait_pid1(self.agent)
        self._save(running="agent", agent_pid=pid1, agent_start=pids.start_time(pid1), address=address,
                   loop=loop, agent_started=time.time())
        log.info("%s: network boot %d: agent (%s) on %s (%s), disk %s", self.name, boots,
                 boot_purpose(pxe.cmdline), address, pxe.config.name, loop)
        return "agent"

    def _wait_pid1(self, child: subprocess.Popen) -> int:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            pid = _descendant(child.pid, "unshare")
            if pid is not None:
                return pid
            if child.poll() is not None:
                raise LabError(f"{self.name}: the agent's namespace did not start "
                               f"(exit {child.returncode}); see {self.dir / 'agent.log'}")
            time.sleep(0.01)
        raise LabError(f"{self.name}: the agent's namespace did not start in {COMMAND_TIMEOUT:.0f} s")

    def _stop_agent(self) -> None:
        FENCE.unwatch(self._cgroup("devices"))
        st = self.state()
        pid, start = st.get("agent_pid"), st.get("agent_start")
        if pid is not None and pids.start_time(pid) == start:
            self._record_memory()
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + STOP_TIMEOUT
            while pids.start_time(pid) == start:
                if time.monotonic() >= deadline:
                    raise LabError(f"{self.name}: agent (pid {pid}) did not exit")
                time.sleep(0.01)
        if self.agent is not None:
            if self.agent.poll() is None:
                self.agent.kill()
            try:
                self.agent.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise LabError(f"{self.name}: agent did not exit") from None
            self.agent = None
        if st.get("agent_pid") is not None:
            self._save(agent_pid=None, agent_start=None)

    # -- disk boot ------------------------------------------------------------------------

    def _boot_disk(self, boots: int) -> str:
        from k1prov.lab.configdrive_apply import host_config_from_config_drive

        if not self.disk_file.exists():
            raise LabError("no bootable device (the disk is empty)")
        loop = self._attach_disk()
        root = disks.root_partition(loop)
        part_dev = f"{loop}p1"
        if root is None or not Path(part_dev).exists():
            raise LabError("no bootable device (no partition table on the disk)")
        drive = disks.read_config_drive(loop)
        if drive is None:
            raise LabError("boot: no config-2 partition on the disk: no hostname, keys or network")
        config = host_config_from_config_drive(drive[1])
        self.booter.boot(self.name, Path(part_dev), config, mac=self.mac, timeout=COMMAND_TIMEOUT * 2)
        self._save(running="host", address=config.address, hostname=config.hostname)
        log.info("%s: disk boot %d: %s on %s", self.name, boots, config.hostname, config.address)
        return "host"

    # -- disk ------------------------------------------------------------------------------

    def _attach_disk(self) -> str:
        disks.create_sparse(self.disk_file, self.disk_size)
        self.loop = disks.attach_loop(self.disk_file, timeout=COMMAND_TIMEOUT)
        deadline = time.monotonic() + COMMAND_TIMEOUT
        want = disks.mbr_partitions(self.loop)
        if want:
            # Like a kernel scanning the disk at boot; partx reads the table itself (this
            # machine's kernel may have no partition table parsers), devtmpfs then makes
            # the loopNpM nodes.
            disks.update_partitions(self.loop, timeout=COMMAND_TIMEOUT)
        while time.monotonic() < deadline:
            parts = disks.partition_devices(self.loop)
            if len(parts) >= len(want) and all(Path("/dev", n).exists() for n in parts):
                break
            time.sleep(0.02)
        return self.loop

    def _detach_disk(self) -> None:
        for loop in disks.loops_of(self.disk_file) if self.disk_file.exists() else []:
            disks.detach_loop(loop, timeout=COMMAND_TIMEOUT)
        self.loop = None

    # -- cgroups ---------------------------------------------------------------------------

    def _cgroup(self, controller: str) -> Path:
        return CGROUP_ROOT / controller / f"k1prov-{self.lab_id}" / self.name

    def _make_cgroups(self, loopn: int) -> list[str]:
        procs = []
        devices = self._cgroup("devices")
        if (CGROUP_ROOT / "devices").is_dir():
            devices.mkdir(parents=True, exist_ok=True)
            (devices / "devices.deny").write_text("a\n")
            rules = [f"c {d} rwm" for d in ALLOWED_CHAR_DEVICES]
            rules += [f"b {LOOP_MAJOR}:{loopn} rwm"]
            for rule in rules:
                (devices / "devices.allow").write_text(rule + "\n")
            # The disk's partitions: those it has now, then each as it comes and goes.
            FENCE.watch(devices, f"loop{loopn}", self.dir / "button")
            procs.append(str(devices / "cgroup.procs"))
        else:
            raise LabError("the lab needs the cgroup v1 devices controller to fence the agent's disks")
        memory = self._cgroup("memory")
        if (CGROUP_ROOT / "memory").is_dir():
            memory.mkdir(parents=True, exist_ok=True)
            try:
                (memory / "memory.max_usage_in_bytes").write_text("0\n")
            except OSError:
                pass
            procs.append(str(memory / "cgroup.procs"))
        return procs

    def _record_memory(self) -> None:
        path = self._cgroup("memory") / "memory.max_usage_in_bytes"
        try:
            peak = int(path.read_text())
        except (OSError, ValueError):
            return
        stat = {}
        try:
            for line in (self._cgroup("memory") / "memory.stat").read_text().splitlines():
                k, v = line.split()
                stat[k] = int(v)
        except (OSError, ValueError):
            pass
        with open(self.dir / "memory.jsonl", "a") as f:
            f.write(json.dumps({"time": time.time(), "peak_bytes": peak,
                                "rss_bytes": stat.get("total_rss", stat.get("rss")),
                                "cache_bytes": stat.get("total_cache", stat.get("cache"))}) + "\n")

    def _remove_cgroups(self) -> None:
        FENCE.unwatch(self._cgroup("devices"))
        for controller in ("devices", "memory"):
            path = self._cgroup(controller)
            if path.is_dir():
                try:
                    path.rmdir()
                except OSError as exc:
                    log.warning("%s: cgroup %s: %s", self.name, path, exc)


def remove_lab_cgroups(ident: str) -> None:
    """The lab's parent cgroups, once its machines' are gone (at the hardware's stop)."""
    for controller in ("devices", "memory"):
        parent = CGROUP_ROOT / controller / f"k1prov-{ident}"
        try:
            parent.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cgroup %s: %s", parent, exc)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _descendant(pid: int, parent_comm: str) -> int | None:
    """The child of the first `parent_comm` process below pid (unshare's forked PID 1)."""
    queue = [pid]
    while queue:
        p = queue.pop(0)
        try:
            comm = Path(f"/proc/{p}/comm").read_text().strip()
        except OSError:
            comm = ""
        kids = _children(p)
        if comm == parent_comm and kids:
            return kids[0]
        queue.extend(kids)
    return None


def python_home(venv: Path) -> str:
    """The installation prefix of the Python a venv was made from (pyvenv.cfg `home`)."""
    try:
        for line in (Path(venv) / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return str(Path(value.strip()).resolve().parent)
    except OSError:
        pass
    return ""


def lab_id(root: Path) -> str:
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:10]
