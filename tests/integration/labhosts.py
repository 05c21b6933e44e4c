"""Keys, lab hosts and inventories that several integration tests build the same way.

Each test module keeps its own bridge, subnet, node names, BMC ports, MAC addresses and
cluster name: the tests share one machine (and one lab), so these must never meet.

`beside_other_sessions` moves a module's own bridge, subnet, port and node names when
K1PROV_TEST_LAB_PORT_OFFSET says another session of the suite may run on this machine.

Hosts reached over SSH only (configure, bench), booted straight from the lab image:

    with booted_hosts(tmp, image, bridge=..., cidr=..., cluster=..., names=..., first_host=20) as hosts:
        path.write_text(host_inventory_text(cluster=..., keys_dir=hosts.keys, ...))

Nodes that go through the lab's Ironic and Glance (enroll, deploy, cluster):

    write_deploy_inputs(d, key_comment=CLUSTER)
    text = lab_inventory_text(lab.settings, cluster=..., nodes=...,
                              deploy=deploy_settings_text(d, image_prefix="dpl", user_image=...))
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import openstack

from k1prov import glance
from k1prov.fanout import Status
from k1prov.imagecatalog import write_lab_deploy_image
from k1prov.inventory import load_inventory
from k1prov.lab import LabSettings
from k1prov.lab.hosts import HostBooter, HostConfig
from k1prov.lab.machine import machine_mac, unplug_cable
from k1prov.provisioner import Provisioner
from k1prov.lab.netns import LabNetwork

KEYGEN_TIMEOUT = 30.0
SSH_READY_TIMEOUT = 30.0
SSH_CONNECT_TIMEOUT = 10
# The Ironic API microversion the tests' SDK connections ask for.
IRONIC_API_VERSION = "1.78"

# Role settings for hosts booted from the lab image, which has ZooKeeper and Spark
# preinstalled; the heap and executor sizes are the ones every lab test runs with.
ZOOKEEPER_ROLE = """\
  zookeeper: {source: preinstalled, server_script: /usr/share/zookeeper/bin/zkServer.sh, heap_mb: 256}
"""
SPARK_ROLE = """\
  spark:
    source: preinstalled
    spark_home: /opt/spark
    manager: standalone
    python: /opt/spark-venv/bin/python
    worker_memory: 1g
    defaults: {spark.executor.memory: 512m, spark.driver.memory: 512m}
"""
ROLE_SETTINGS = "roles:\n" + ZOOKEEPER_ROLE + SPARK_ROLE
SPARK_ROLE_SETTINGS = "roles:\n" + SPARK_ROLE


def mesos_role(s) -> str:
    """The `mesos:` section of `roles:` for the build the session lab publishes (url and
    SHA512SUMS as inventories/lab.yaml names them), with the lab hosts' launcher and resources."""
    from k1prov.lab.mesos import published_sums, published_url

    return f"""\
  mesos:
    source: tarball
    url: {published_url(s.http_url)}
    sha512_file: "{published_sums(s.http_dir)}"
    isolation: posix/cpu,posix/mem
    agent_flags: {{launcher: posix}}
    resources: "cpus:2;mem:1536;disk:2048"
"""


def mesos_master_get(address: str, path: str, *, timeout: float, port: int = 5050) -> dict | None:
    """GET `path` of the Mesos master at `address` (elected or not), straight from this
    machine over the lab's bridge; its JSON, or None when it does not answer."""
    import http.client
    import json

    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        body = res.read()
        return json.loads(body) if res.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def lab_host_init() -> str:
    """What the tests' lab hosts run as PID 1: K1PROV_TEST_LAB_HOST_INIT, else the lab's default."""
    return os.environ.get("K1PROV_TEST_LAB_HOST_INIT") or LabSettings.host_init


def keygen(path: Path, *, comment: str | None = None) -> str:
    """An ed25519 key pair at path and path.pub (comment: the file name unless given);
    returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment or path.name,
                    "-f", str(path)], check=True, timeout=KEYGEN_TIMEOUT)
    return path.with_suffix(".pub").read_text().strip()


@dataclasses.dataclass(frozen=True)
class ModuleNetwork:
    bridge: str
    cidr: str
    port: int
    suffix: str    # appended to the module's node names ("" when not moved)


def beside_other_sessions(bridge: str, cidr: str, port: int) -> ModuleNetwork:
    """A test module's own bridge, subnet, HTTP port and node-name suffix. With
    K1PROV_TEST_LAB_PORT_OFFSET set (several sessions of the suite on one machine, each with
    its own offset, see conftest.py) they move by the offset's thousands (28000: bridge
    k1pmesos28, subnet 10.228.x.0/24, port + 28000, names mz1-28): the host namespaces are
    named after the nodes (k1p-<name>), so two sessions booting the same names would take
    each other's hosts. Unchanged without it."""
    offset = int(os.environ.get("K1PROV_TEST_LAB_PORT_OFFSET", "0") or 0)
    tag = offset // 1000
    if not tag:
        return ModuleNetwork(bridge, cidr, port, "")
    net = ipaddress.IPv4Interface(cidr)
    third = net.ip.packed[2]
    moved = f"10.{200 + tag % 50}.{third}.1/24"
    return ModuleNetwork(f"{bridge.rstrip('0123456789')[:12]}{tag}", moved, port + offset, f"-{tag}")


# ---------------------------------------------------------------- hosts without Ironic


@dataclasses.dataclass(frozen=True)
class BootedHosts:
    keys: Path                 # user (the operator's key pair) and host-<name> (each host's)
    state_root: Path           # STATE, with the pinned STATE/<cluster>/known_hosts
    addresses: dict[str, str]  # host name -> address on the test's bridge
    booter: HostBooter


@contextlib.contextmanager
def booted_hosts(tmp: Path, image: Path, *, bridge: str, cidr: str, cluster: str,
                 names: Sequence[str], first_host: int) -> Iterator[BootedHosts]:
    """Boot `names` from `image` on a bridge and subnet of their own, each with a generated
    host key and the user key authorized, and wait until each answers SSH.

    The host keys are pinned where deploy writes them (STATE/<cluster>/known_hosts), so
    that configure finds them the way it does after a deploy. Addresses are the subnet's
    first_host-th, first_host+1-th, ... On leaving, the hosts are stopped and the bridge
    removed, whatever happened.
    """
    keys = tmp / "keys"
    keys.mkdir()
    user_public = keygen(keys / "user")
    net = LabNetwork(bridge=bridge, cidr=cidr)
    net.ensure()
    booter = HostBooter(tmp / "hosts", network=net, init=lab_host_init())
    state_root = tmp / "state"
    (state_root / cluster).mkdir(parents=True)
    addresses = {name: net.host_address(first_host + i) for i, name in enumerate(names)}
    try:
        pinned = []
        for name in names:
            host_key = keys / f"host-{name}"
            host_public = keygen(host_key)
            booter.boot(name, image, HostConfig(
                hostname=name, address=addresses[name], prefix=net.prefix, gateway=net.gateway,
                authorized_keys=(user_public,),
                ssh_host_keys={"ed25519": (host_key.read_text(), host_public)}))
            pinned.append(f"{addresses[name]},{name} {' '.join(host_public.split()[:2])}\n")
        for name in names:
            booter.wait_ssh(name, timeout=SSH_READY_TIMEOUT)
        # Where deploy pins host keys (k1prov.hostkeys.write_known_hosts).
        (state_root / cluster / "known_hosts").write_text("".join(pinned))
        yield BootedHosts(keys=keys, state_root=state_root, addresses=addresses, booter=booter)
    finally:
        booter.stop_all()
        net.remove()


def host_inventory_text(*, cluster: str, keys_dir: Path, addresses: dict[str, str],
                        roles: dict[str, list[str]], role_settings: str,
                        first_bmc_port: int, mac_prefix: str) -> str:
    """The inventory of booted hosts, one node per entry of roles (in its order).

    Only SSH is used: the Ironic URL and the BMCs are stand-ins that nothing calls. The
    i-th node gets BMC port first_bmc_port + i and MAC mac_prefix:<i + 1>.
    """
    nodes = "".join(
        f"  - name: {name}\n    bmc: {{port: {first_bmc_port + i}}}\n"
        f"    macs: [\"{mac_prefix}:{i + 1:02x}\"]\n"
        f"    address: {addresses[name]}\n    roles: [{', '.join(node_roles)}]\n"
        for i, (name, node_roles) in enumerate(roles.items()))
    return (f"cluster: {cluster}\ncloud: {{ironic_url: \"http://127.0.0.1:9\"}}\n"
            f"ssh: {{user: root, private_key: {keys_dir / 'user'}}}\n"
            "defaults:\n  bmc: {address: 127.0.0.1, username: admin, password: {env: K1PROV_UNUSED}}\n"
            + role_settings + "nodes:\n" + nodes)


# ---------------------------------------------------------------- nodes in the lab's Ironic


def lab_connection(settings: LabSettings, *,
                   api_version: str = IRONIC_API_VERSION) -> openstack.connection.Connection:
    """An SDK connection to the lab's Ironic and Glance that reads no OS_* variable: by URL
    without auth, else through the lab's own clouds.yaml entry (never the user's file)."""
    if settings.auth != "none":
        from openstack.config.loader import OpenStackConfig

        region = OpenStackConfig(config_files=[str(settings.clouds_yaml_path)], vendor_files=[],
                                 load_envvars=False).get_one(cloud=settings.cloud_name,
                                                             baremetal_api_version=api_version)
        return openstack.connection.Connection(config=region)
    return openstack.connect(auth_type="none", load_yaml_config=False, load_envvars=False,
                             baremetal_endpoint_override=settings.ironic_url,
                             baremetal_api_version=api_version,
                             image_endpoint_override=settings.glance_url)


def openssh(key: Path, known_hosts: Path, address: str, command: str, *,
            timeout: float) -> subprocess.CompletedProcess:
    """Run command as root on address with OpenSSH, as an operator would after a deploy: only
    this key, no ~/.ssh/config, and the host key checked against the pinned known_hosts."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT}", f"root@{address}", command],
        capture_output=True, text=True, timeout=timeout)


def write_deploy_inputs(d: Path, *, key_comment: str) -> None:
    """What deploy_settings_text names in d: the operator's key pair (id_ed25519) and the
    lab's stand-in deploy kernel and ramdisk."""
    keygen(d / "id_ed25519", comment=key_comment)
    write_lab_deploy_image(d / "deploy.kernel", "lab-deploy-kernel")
    write_lab_deploy_image(d / "deploy.initramfs", "lab-deploy-ramdisk")


def deploy_settings_text(d: Path, *, image_prefix: str, user_image: str, user_extra: str = "") -> str:
    """The inventory's ssh, network and images sections for the files write_deploy_inputs
    wrote in d. Glance names start with image_prefix; user_extra is YAML text added to
    the user image's mapping (`, checksum: ...`)."""
    return f"""\
ssh:
  user: root
  private_key: "{d / 'id_ed25519'}"
  public_keys: ["{(d / 'id_ed25519.pub').read_text().strip()}"]
network: {{prefix_length: 24}}
images:
  deploy_kernel: {{name: {image_prefix}-deploy-kernel, file: "{d / 'deploy.kernel'}"}}
  deploy_ramdisk: {{name: {image_prefix}-deploy-ramdisk, file: "{d / 'deploy.initramfs'}"}}
  user: {{name: {image_prefix}-lab-image, file: "{user_image}"{user_extra}}}
"""


def lab_inventory_text(s: LabSettings, *, cluster: str, nodes: str, deploy: str = "",
                       role_settings: str = "", cloud: str | None = None) -> str:
    """An inventory of nodes enrolled in the lab's Ironic, powered through its BMC
    simulators over IPMI and deployed like real machines (ipmi, pxe boot, direct deploy:
    the lab machine's ironic-python-agent writes its disk); deploy and role_settings are
    optional sections, nodes the entries under `nodes:` (their MACs must be the lab
    machines', machine_mac(bmc port)). cloud: a clouds.yaml entry's name instead of the
    lab's URLs; a lab with auth is always named by its entry."""
    cloud = cloud or (s.cloud_name if s.auth != "none" else None)
    where = f"cloud: {cloud}" if cloud else f'ironic_url: "{s.ironic_url}", glance_url: "{s.glance_url}"'
    return f"""\
cluster: {cluster}
cloud: {{{where}, deploy_logs: "{s.root / 'deploy-logs'}"}}
{deploy}defaults:
  driver: ipmi
  interfaces: {{power: ipmitool, management: ipmitool, deploy: direct, boot: pxe}}
  bmc: {{address: 127.0.0.1, username: {s.bmc_username}, password: {{file: "{s.bmc_password_file}"}}}}
{role_settings}nodes:
{nodes}"""


def release_lab_nodes(s: LabSettings, *, inventory: Path, state: Path, bmc_ports: Sequence[int],
                      conn: openstack.connection.Connection, cluster: str) -> None:
    """What a module that deploys lab nodes leaves behind it: every machine's cable back
    in, its nodes undeployed and deleted from Ironic, its cluster's images deleted from
    Glance."""
    for port in bmc_ports:
        unplug_cable(s.machines_dir, port, unplugged=False)
    Provisioner(load_inventory(inventory), state_root=state).undeploy()
    Provisioner(load_inventory(inventory), state_root=state).delete_nodes()
    for img in glance.list_own_images(conn, cluster):
        conn.image.delete_image(img.id, ignore_missing=True)


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    """check()'s first truthy value, asked every `interval` s; the test fails naming `what`
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s"
        time.sleep(interval)


def tear_down_cluster(inv: Path, state: Path, conn, cluster: str) -> None:
    """Best effort: leave Ironic, Glance and the lab without a test's cluster (its nodes
    undeployed and deleted, its images gone), whatever the test left."""
    try:
        Provisioner(load_inventory(inv), state_root=state).cluster_down(unenroll=True)
    except Exception as exc:  # noqa: BLE001 - cleanup goes on whatever failed
        print(f"cleanup of {cluster}: {exc}", file=sys.stderr)
    for img in glance.list_own_images(conn, cluster):
        conn.image.delete_image(img.id, ignore_missing=True)


def lab_ip(s: LabSettings, host: int) -> str:
    """The host-th address of the lab's subnet (10.251.0.<host> for the default lab)."""
    return str(ipaddress.IPv4Interface(s.cidr).network.network_address + host)


def node_range_text(names: str, *, first_bmc_port: int, first_address: str,
                    first_mac: str | None = None) -> str:
    """One `nodes:` entry for a range of nodes (`enr[01-10]`): BMC ports, MACs and
    addresses count up from the first. The MACs are the lab machines' own unless given."""
    first_mac = first_mac or machine_mac(first_bmc_port)
    return (f"  - name: {names}\n"
            f"    bmc: {{port: {{start: {first_bmc_port}}}}}\n"
            f"    macs: [{{start: \"{first_mac}\"}}]\n"
            f"    address: {{start: {first_address}}}\n")


# ---------------------------------------------------------------- the hosts' fence

# Runs as root on a lab host (python3 -c): what root there can do to this machine's disks,
# power, clock and kernel. Every call is safe whatever the outcome: a power or clock call
# has arguments no kernel accepts (bad reboot magic, a 1000-segment kexec, a time zone 1667
# hours off), so it fails with EPERM when the capability check refuses it and with EINVAL
# when it got past that check, and never does anything; files that could power the machine
# off are opened, never written. The two calls that would change something if they were
# allowed (mount, clock_settime) are only made once the harmless probes showed that the
# capability is gone. Arguments: paths of device nodes to open read-only; b:MAJ:MIN or
# c:MAJ:MIN nodes to create and open; "--syscalls-only" (for the control run on this machine).
HOST_FENCE_PROBE = r"""
import ctypes, errno, json, os, platform, re, stat, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
# reboot, kexec_load (x86_64, aarch64)
SYSCALLS = {"x86_64": (169, 246), "aarch64": (142, 104)}.get(platform.machine())
SYS_ADMIN, SYS_BOOT, SYS_TIME = 21, 22, 25
args = sys.argv[1:]
out = {}
status = open("/proc/self/status").read()
caps = {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s*([0-9a-f]+)$", status, re.M)}
out["caps"] = caps
def has(cap):
    return bool(caps["CapEff"] >> cap & 1)
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
def call(fn, *a):
    def run():
        if fn(*a) == -1:
            raise OSError(ctypes.get_errno(), "")
    return attempt(run)
if SYSCALLS:
    # reboot(2) with a wrong second magic number: the capability is checked first.
    out["reboot"] = call(libc.syscall, ctypes.c_long(SYSCALLS[0]), ctypes.c_int(0xfee1dead - 2**32),
                         ctypes.c_int(0), ctypes.c_uint(0), None)
    out["kexec_load"] = call(libc.syscall, ctypes.c_long(SYSCALLS[1]), ctypes.c_ulong(0),
                             ctypes.c_ulong(1000), None, ctypes.c_ulong(0))
class Timezone(ctypes.Structure):
    _fields_ = [("minuteswest", ctypes.c_int), ("dsttime", ctypes.c_int)]
out["settimeofday"] = call(libc.settimeofday, None, ctypes.byref(Timezone(100000, 0)))
out["delete_module"] = call(libc.delete_module, b"k1prov_none", 0)
out["swapon"] = call(libc.swapon, b"/k1prov-no-such-swap", 0)
if "--syscalls-only" not in args:
    if not has(SYS_TIME) and out["settimeofday"] == "EPERM":
        class Timespec(ctypes.Structure):
            _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]
        now = Timespec()
        libc.clock_gettime(0, ctypes.byref(now))
        out["clock_settime"] = call(libc.clock_settime, 0, ctypes.byref(now))
    if not has(SYS_ADMIN):
        r = subprocess.run(["mount", "-o", "remount,rw", "/sys"], capture_output=True, text=True)
        out["remount_sys"] = r.returncode
        out["mount_tmpfs"] = call(libc.mount, b"k1prov", b"/mnt", b"tmpfs", ctypes.c_ulong(0), None)
    out["sys_mount"] = [line.split()[3].split(",")[0] for line in open("/proc/mounts") if line.split()[1] == "/sys"]
    def open_write(path):
        return attempt(lambda: os.close(os.open(path, os.O_WRONLY)))
    out["sys_power_state"] = open_write("/sys/power/state") if os.path.exists("/sys/power/state") else "absent"
    out["core_pattern"] = open_write("/proc/sys/kernel/core_pattern")
    if os.path.exists("/proc/sysrq-trigger"):
        st = os.stat("/proc/sysrq-trigger")
        out["sysrq_trigger"] = "masked" if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 else "open"
    else:
        out["sysrq_trigger"] = "absent"
    out["cgroup"] = open("/proc/self/cgroup").read().split()
    out["open"], out["mknod"] = {}, {}
    for arg in args:
        if arg.startswith(("b:", "c:")):
            kind, major, minor = arg.split(":")
            path = f"/root/k1prov-probe-{kind}-{major}-{minor}"
            mode = (stat.S_IFBLK if kind == "b" else stat.S_IFCHR) | 0o600
            made = attempt(lambda: os.mknod(path, mode, os.makedev(int(major), int(minor))))
            if made == "ok":
                made = "ok, open " + attempt(lambda: os.close(os.open(path, os.O_RDONLY)))
                os.unlink(path)
            out["mknod"][arg] = made
        elif not arg.startswith("--"):
            out["open"][arg] = attempt(lambda: os.close(os.open(arg, os.O_RDONLY)))
print(json.dumps(out))
"""

# Capabilities (number: name) that root on a lab host must not have.
HOST_FENCED_CAPS = {16: "sys_module", 17: "sys_rawio", 19: "sys_ptrace", 21: "sys_admin", 22: "sys_boot",
                    25: "sys_time", 27: "mknod"}


def host_fence_command(*args: str) -> str:
    """The shell command that runs HOST_FENCE_PROBE with args on a host (as root)."""
    return "python3 -c " + shlex.quote(HOST_FENCE_PROBE) + "".join(" " + shlex.quote(a) for a in args)


def this_machine_disk() -> tuple[int, int]:
    """(major, minor) of this machine's root disk: the block device behind / or, when /
    is not on one (an overlay in a container), the first disk in /sys/block."""
    dev = os.stat("/").st_dev
    if os.major(dev) != 0 and Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").exists():
        return os.major(dev), os.minor(dev)
    for entry in sorted(Path("/sys/block").iterdir()):
        if not entry.name.startswith(("loop", "ram", "zram", "nbd", "dm-")):
            major, minor = (entry / "dev").read_text().split(":")
            return int(major), int(minor)
    raise AssertionError("this machine has no disk in /sys/block")


def fenced_caps_left(probe: dict) -> list[str]:
    """The fenced capabilities still in the probe's bounding, permitted or effective set."""
    caps = probe["caps"]
    return sorted({name for bit, name in HOST_FENCED_CAPS.items()
                   for key in ("CapBnd", "CapPrm", "CapEff") if caps[key] >> bit & 1})


def assert_a_refused_new_redfish_login_changes_nothing(conn, node: str, inventory: Path,
                                                        changed: Path, bmc: str, secret: str) -> None:
    """Issue 21: `changed` is `inventory` with a new but wrong Redfish password for `node`
    (enrolled, available). k1prov tries it against the BMC first (a Redfish GET of the
    system, a 401 asked again once): the row names the BMC (`bmc`: its URL and system path),
    Ironic keeps the login that works, and the inventory as it was changes nothing."""
    before = conn.baremetal.find_node(node, ignore_missing=False)
    assert before.provision_state == "available", before.provision_state
    t0 = time.monotonic()
    report = Provisioner(load_inventory(changed)).enroll(limit=[node])
    (row,) = report.outcomes
    print(f"\n{node} ({time.monotonic() - t0:.1f} s): {row.error}")
    assert row.status is Status.FAILED
    assert (f"the BMC at {bmc} refused the new credentials (Redfish HTTP 401, asked 2 times); "
            f"Ironic keeps the old ones") in row.error, row.error
    assert secret not in row.error
    after = conn.baremetal.find_node(node, ignore_missing=False)
    assert after.extra == before.extra                 # the password's fingerprint: not sent
    assert after.driver_info == before.driver_info
    assert (after.provision_state, after.last_error) == ("available", None)
    # The login that works is still Ironic's: as the inventory has it, nothing to change.
    again = Provisioner(load_inventory(inventory)).enroll(limit=[node])
    assert (again.outcomes[0].status, again.outcomes[0].action) == (Status.OK, "unchanged")


def zk_srvr(address: str) -> str:
    """ZooKeeper's `srvr` four-letter word from this machine over the lab's bridge ("" when
    it does not answer, or answers that it does not serve yet: a JVM just started)."""
    try:
        with socket.create_connection((address, 2181), timeout=5) as sock:
            sock.sendall(b"srvr")
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        answer = b"".join(chunks).decode(errors="replace")
        return answer if "Mode:" in answer else ""
    except OSError:
        return ""
