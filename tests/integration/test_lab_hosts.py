"""Lab hosts booted from the real lab image, reached with OpenSSH over the lab bridge.

Needs root (namespaces, loop and overlay mounts). Uses its own bridge and subnet so
that it does not disturb a lab that is up. Measurements are printed (pytest -s).
"""
from __future__ import annotations

import base64
import gzip
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from labhosts import (HOST_FENCE_PROBE, beside_other_sessions, fenced_caps_left, host_fence_command,
                      lab_host_init, this_machine_disk)

from k1prov.errors import LabError
from k1prov.lab.configdrive_apply import build_config_drive_iso, host_config_from_config_drive
from k1prov.lab.hosts import HostBooter, HostConfig
from k1prov.lab.netns import LabNetwork, veth_name

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root"),
]

# Host names are machine-wide (network namespaces k1p-<name>): moved with the bridge and
# subnet when another session of the suite may run beside this one.
_MOVED = beside_other_sessions("k1phtest0", "10.252.7.1/24", 0)
BRIDGE, CIDR = _MOVED.bridge, _MOVED.cidr
ZK1, ZK2, SPARK1, FENCE = (name + _MOVED.suffix for name in ("zk1", "zk2", "spark1", "fence"))
NAMES = (ZK1, ZK2, SPARK1)
SSH_TIMEOUT = 30.0
SSH_READY_TIMEOUT = 20.0


def keygen(path: Path) -> tuple[str, str]:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                   check=True, timeout=30)
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="session")
def lab_image():
    return lab_image_path()


@pytest.fixture(scope="module")
def network():
    net = LabNetwork(bridge=BRIDGE, cidr=CIDR)
    net.ensure()
    yield net
    net.remove()
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    _, user_public = keygen(d / "user")
    host_keys = {name: keygen(d / f"host-{name}") for name in NAMES + (FENCE,)}
    return {"dir": d, "user": d / "user", "user_public": user_public, "hosts": host_keys}


def host_config(network, keys, index, name) -> HostConfig:
    return HostConfig(hostname=name, address=network.host_address(10 + index), prefix=network.prefix,
                      gateway=network.gateway, authorized_keys=(keys["user_public"],),
                      ssh_host_keys={"ed25519": keys["hosts"][name]})


def ssh(keys, address: str, pinned_public: str, command: str, *, check: bool = True):
    known_hosts = keys["dir"] / f"known_hosts-{address}-{abs(hash(pinned_public))}"
    known_hosts.write_text(f"{address} {pinned_public}\n")
    result = subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(keys["user"]), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10", f"root@{address}", command],
        capture_output=True, text=True, timeout=SSH_TIMEOUT)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def lab(lab_image, network, keys, tmp_path_factory):
    booter = HostBooter(tmp_path_factory.mktemp("lab"), network=network, init=lab_host_init())
    configs = {}
    try:
        for index, name in enumerate(NAMES):
            config = host_config(network, keys, index, name)
            if name == SPARK1:
                # One host takes its config the way a deployed node does: from the drive
                # as Ironic stores it (gzip + base64 of the ISO).
                drive = base64.b64encode(gzip.compress(build_config_drive_iso(config))).decode()
                config = host_config_from_config_drive(drive)
            configs[name] = config
            started = time.monotonic()
            booter.boot(name, lab_image, config)
            boot_s = time.monotonic() - started
            ready_s = booter.wait_ssh(name, timeout=SSH_READY_TIMEOUT)
            print(f"\n{name}: boot {boot_s * 1000:.0f} ms, sshd ready {ready_s * 1000:.0f} ms later")
        yield booter, configs
    finally:
        booter.stop_all()


def test_ssh_reaches_each_host_with_its_name_and_pinned_host_key(lab, keys):
    booter, configs = lab
    for name, config in configs.items():
        result = ssh(keys, config.address, keys["hosts"][name][1], "hostname; cat /etc/hostname")
        assert result.stdout.split() == [name, name]
    # The pin is real: the same host checked against another host's key is refused.
    wrong = ssh(keys, configs[ZK1].address, keys["hosts"][ZK2][1], "true", check=False)
    assert wrong.returncode != 0
    assert "host key" in wrong.stderr.lower()


def test_image_has_java_zookeeper_and_spark(lab, keys):
    _, configs = lab
    address, pinned = configs[SPARK1].address, keys["hosts"][SPARK1][1]
    java = ssh(keys, address, pinned, "java -version 2>&1")
    assert 'version "17.' in java.stdout
    zk = ssh(keys, address, pinned, "dpkg-query -W -f '${Version}' zookeeper; "
                                     "test -x /usr/share/zookeeper/bin/zkServer.sh && echo zk-ok")
    assert zk.stdout.startswith("3.8.") and "zk-ok" in zk.stdout
    spark = ssh(keys, address, pinned, ". /etc/environment; test -x $SPARK_HOME/sbin/spark-daemon.sh && "
                                       "/opt/spark-venv/bin/python -c 'import pyspark; print(pyspark.__version__)'")
    assert spark.stdout.strip() == "3.5.9"


def test_daemon_started_over_ssh_outlives_the_session(lab, keys):
    booter, configs = lab
    address, pinned = configs[ZK2].address, keys["hosts"][ZK2][1]
    ssh(keys, address, pinned, "k1p-service start sleeper -- sleep 600")
    status = ssh(keys, address, pinned, "k1p-service status sleeper; ps -o ppid= -C sleep")
    assert "running" in status.stdout
    assert status.stdout.split()[-1] == "1"  # reparented to the host's init, not a zombie-maker
    ssh(keys, address, pinned, "k1p-service stop sleeper")
    assert ssh(keys, address, pinned, "k1p-service status sleeper", check=False).returncode == 3


def test_boot_of_a_running_host_is_a_no_op(lab, lab_image, network, keys):
    booter, configs = lab
    before = booter.status(ZK1)
    started = time.monotonic()
    again = booter.boot(ZK1, lab_image, configs[ZK1])
    assert again.pid == before.pid and again.state == "running"
    assert time.monotonic() - started < 0.5
    zk9 = "zk9" + _MOVED.suffix
    with pytest.raises(LabError, match=f"in use by host {ZK1}"):
        booter.boot(zk9, lab_image, HostConfig(hostname=zk9, address=configs[ZK1].address,
                                               prefix=network.prefix))
    booter.wipe(zk9)


def test_rebuild_wipes_only_that_host(lab, lab_image, keys):
    booter, configs = lab
    pinned = {name: keys["hosts"][name][1] for name in configs}
    for name in (ZK1, ZK2):
        ssh(keys, configs[name].address, pinned[name], f"echo {name} > /root/data")
    zk2_pid = booter.status(ZK2).pid
    with pytest.raises(LabError, match="running"):
        booter.wipe(ZK1)
    booter.stop(ZK1)
    assert booter.status(ZK1).state == "stopped"
    assert not Path(f"/run/netns/k1p-{ZK1}").exists()
    assert not booter.cgroup(ZK1).exists() and booter.cgroup(ZK2).is_dir()
    # Power cycle without wipe keeps the disk ...
    booter.boot(ZK1, lab_image, configs[ZK1])
    booter.wait_ssh(ZK1, timeout=SSH_READY_TIMEOUT)
    assert ssh(keys, configs[ZK1].address, pinned[ZK1], "cat /root/data").stdout == f"{ZK1}\n"
    # ... a rebuild does not.
    booter.stop(ZK1)
    booter.wipe(ZK1)
    booter.boot(ZK1, lab_image, configs[ZK1])
    booter.wait_ssh(ZK1, timeout=SSH_READY_TIMEOUT)
    gone = ssh(keys, configs[ZK1].address, pinned[ZK1], "test -e /root/data", check=False)
    assert gone.returncode == 1
    assert ssh(keys, configs[ZK1].address, pinned[ZK1], "hostname").stdout.strip() == ZK1
    assert ssh(keys, configs[ZK2].address, pinned[ZK2], "cat /root/data").stdout == f"{ZK2}\n"
    assert booter.status(ZK2).pid == zk2_pid


def test_root_on_a_host_cannot_reach_this_machines_disks_power_clock_or_kernel(lab, lab_image, network, keys):
    """A root shell on a host (what role scripts are) against the fence: the capability
    bounding set, the devices cgroup and the read-only /sys and /proc/sys. Every call the
    probe makes is harmless whatever its outcome (labhosts.HOST_FENCE_PROBE); the same
    calls on this machine show that they do tell a refusal from a pass."""
    booter, _ = lab
    control = subprocess.run([sys.executable, "-c", HOST_FENCE_PROBE, "--syscalls-only"],
                             capture_output=True, text=True, timeout=SSH_TIMEOUT, check=True)
    here = json.loads(control.stdout)
    # Root on this machine gets past every capability check the host must fail.
    assert fenced_caps_left(here), here["caps"]
    assert here["reboot"] == "EINVAL" and here["settimeofday"] == "EINVAL" and here["swapon"] == "ENOENT", here
    config = HostConfig(hostname=FENCE, address=network.host_address(30), prefix=network.prefix,
                        gateway=network.gateway, authorized_keys=(keys["user_public"],),
                        ssh_host_keys={"ed25519": keys["hosts"][FENCE]})
    disk = this_machine_disk()
    # The loop device under this host's own root (the image, mounted once for all hosts).
    loop = os.stat(next(p for p in _loops_of(lab_image))).st_rdev
    nodes = {"disk": (stat.S_IFBLK, os.makedev(*disk)), "loop": (stat.S_IFBLK, loop),
             "mem": (stat.S_IFCHR, os.makedev(1, 1))}
    try:
        booter.boot(FENCE, lab_image, config)
        # Device nodes already on the host's disk (made here while it is off) cannot be
        # opened either: the devices cgroup refuses them whatever the capabilities.
        booter.stop(FENCE)
        made = booter.status(FENCE).root / "upper" / "root" / "fence"
        made.mkdir()
        for node, (kind, dev) in nodes.items():
            os.mknod(made / node, kind | 0o600, dev)
        info = booter.boot(FENCE, lab_image, config)
        booter.wait_ssh(FENCE, timeout=SSH_READY_TIMEOUT)
        cgroup = booter.cgroup(FENCE)
        assert f"devices:/{cgroup.relative_to(cgroup.parents[1])}" in Path(f"/proc/{info.pid}/cgroup").read_text()
        rules = (cgroup / "devices.list").read_text().split("\n")
        assert not any(rule.startswith(("a ", "b ")) for rule in rules), rules
        result = ssh(keys, config.address, keys["hosts"][FENCE][1], host_fence_command(
            *(f"/root/fence/{node}" for node in nodes),
            f"b:{disk[0]}:{disk[1]}", f"b:{os.major(loop)}:{os.minor(loop)}", "c:1:1"))
        probe = json.loads(result.stdout)
        print(f"\nhost probe: {json.dumps({k: v for k, v in probe.items() if k != 'caps'})}")
        assert fenced_caps_left(probe) == []
        assert probe["open"] == {f"/root/fence/{node}": "EPERM" for node in nodes}
        assert set(probe["mknod"].values()) == {"EPERM"}
        assert probe["reboot"] == "EPERM" and probe["settimeofday"] == "EPERM" and probe["swapon"] == "EPERM"
        assert probe["clock_settime"] == "EPERM"
        assert probe["kexec_load"] in ("EPERM", "ENOSYS") and probe["delete_module"] in ("EPERM", "ENOSYS")
        assert probe["remount_sys"] != 0 and probe["mount_tmpfs"] == "EPERM" and probe["sys_mount"] == ["ro"]
        assert probe["sys_power_state"] in ("EROFS", "absent") and probe["core_pattern"] == "EROFS"
        assert probe["sysrq_trigger"] in ("masked", "absent")
        # The host's cgroup namespace: its own cgroups are its root. (Under systemd the cgroup
        # v2 line names the cgroup its systemd made for sshd below that root, and on this
        # machine that is below the host's own subtree.)
        unified = [line for line in probe["cgroup"] if line.startswith("0::")]
        assert all(line.endswith(":/") for line in probe["cgroup"] if line not in unified), probe["cgroup"]
        if booter.init == "systemd":
            assert unified == ["0::/system.slice/ssh.service"], probe["cgroup"]
            assert f"0::/{booter.cgroup2(FENCE).relative_to(booter.cgroup2_parent.parent)}/" in \
                Path(f"/proc/{info.pid}/cgroup").read_text()
        else:
            assert unified == ["0::/"], probe["cgroup"]
        # The host still works: a role-like daemon as another user, started over SSH.
        ssh(keys, config.address, keys["hosts"][FENCE][1],
            "k1p-service start fenced -- runuser -u nobody -- sleep 600 && k1p-service status fenced")
    finally:
        booter.stop(FENCE)
        booter.wipe(FENCE)
    assert not booter.cgroup(FENCE).exists()
    assert not booter.cgroup2(FENCE).exists()


def test_memory_per_host(lab):
    booter, _ = lab
    for info in booter.list():
        rss_kib = 0
        for pid in booter.processes(info.name):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kib += int(line.split()[1])
        print(f"\n{info.name}: {len(booter.processes(info.name))} processes, RSS {rss_kib / 1024:.1f} MiB")
        assert 0 < rss_kib < 100 * 1024


def test_stop_all_leaves_nothing(lab, lab_image, network, keys, tmp_path):
    booter = HostBooter(tmp_path / "lab", network=network, init=lab_host_init())
    loops_before = set(_loops_of(lab_image))
    # Namespace names are machine-wide: a second lab cannot take over a running host's.
    with pytest.raises(LabError, match="belongs to another lab"):
        booter.boot(ZK1, lab_image, host_config(network, keys, 20, ZK1))
    names = tuple(n + _MOVED.suffix for n in ("st1", "st2"))
    pids = []
    try:
        for index, name in enumerate(names):
            config = host_config(network, keys, 20 + index, ZK1)
            booter.boot(name, lab_image, HostConfig(hostname=name, address=config.address, prefix=config.prefix,
                                                    authorized_keys=config.authorized_keys))
            booter.wait_ssh(name, timeout=SSH_READY_TIMEOUT)
            # (a short-lived sshd child may already be gone: keep what is alive now)
            pids += [(pid, start) for pid in booter.processes(name) if (start := _start_time(pid)) is not None]
        assert len(pids) >= 4  # init + sshd on each
        # The overlays live only in the hosts' own mount namespaces.
        assert str(tmp_path) not in _run("findmnt -rn -t overlay -o TARGET,OPTIONS")
        assert str(tmp_path) in Path(f"/proc/{booter.status(names[0]).pid}/mounts").read_text()
    finally:
        # (a failed check above must not leave these hosts running)
        booter.stop_all()
    assert [i.state for i in booter.list()] == ["stopped", "stopped"]
    assert lab[0].status(ZK1).state == "running"
    netns = _run("ip netns list")
    assert not any(f"k1p-{name}" in netns.split() for name in names)
    assert str(tmp_path) not in _run("findmnt -rn -o TARGET,OPTIONS")
    assert not booter.cgroup_parent.exists()  # the lab's devices cgroups
    assert not booter.cgroup2_parent.exists()  # and its systemd hosts' cgroup v2 subtrees
    assert lab[0].cgroup(ZK1).is_dir()
    assert set(_loops_of(lab_image)) <= loops_before
    assert all(_start_time(pid) != start for pid, start in pids)
    bridge_ports = _run(f"ip -o link show master {BRIDGE}")
    assert not any(veth_name(name) in bridge_ports for name in names)
    assert veth_name(ZK1) in bridge_ports  # the other lab's hosts were left alone
    booter.stop_all()  # a second time is harmless


def _run(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30).stdout


def _loops_of(image: Path) -> list[str]:
    return [line.split(":")[0] for line in _run(f"losetup -j {image}").splitlines()]


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def test_concurrent_boots_from_threads(lab_image, network, keys, tmp_path):
    # The lab reconciler boots nodes as Ironic marks them active, from several threads.
    from concurrent.futures import ThreadPoolExecutor

    booter = HostBooter(tmp_path / "lab", network=network, init=lab_host_init())
    names = [f"c{i}{_MOVED.suffix}" for i in range(8)]
    configs = {name: HostConfig(hostname=name, address=network.host_address(100 + i), prefix=network.prefix,
                                authorized_keys=(keys["user_public"],))
               for i, name in enumerate(names)}
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            infos = list(pool.map(lambda n: booter.boot(n, lab_image, configs[n]), names))
        for name in names:
            booter.wait_ssh(name, timeout=SSH_READY_TIMEOUT)
        print(f"\n{len(names)} hosts booted from 4 threads, all sshd ready in "
              f"{time.monotonic() - started:.2f} s")
        assert [i.state for i in infos] == ["running"] * len(names)
        assert len({i.pid for i in infos}) == len(names)
        assert len(list(Path(tmp_path / "lab/lower").iterdir())) == 1  # one image mount shared
    finally:
        booter.stop_all()
    assert not any(f"k1p-{name}" in _run("ip netns list").split() for name in names)
