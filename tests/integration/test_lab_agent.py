"""The real ironic-python-agent in the lab machines: its failures and its sandbox.

- An image whose checksum does not match: the agent refuses to finish the write, Ironic
  fails that node's deploy, its row carries Ironic's error, and the other nodes of the
  same run are deployed and answer SSH.
- An agent that never calls back (the machine's cable is unplugged: a lab fault): the
  deploy ends with k1prov's named `deploy` timeout in that node's row.
- While that agent runs, its sandbox is probed from inside, with its own cgroups,
  namespaces, root, capability bounding set and seccomp filter: the agent's hardware
  manager lists exactly one disk (the machine's), another block device cannot be opened or
  created, and it cannot reboot, set the clock or load modules on this machine.
  - The agent adds a partition to its own disk's table and runs `udevadm settle` (as
    after parted): the lab scans the disk and the partition opens. It removes it and
    settles: the partition is gone and its number already refused to the agent (refused
    before the kernel freed it). A partition of another loop device made after that (the
    kernel hands out the lowest free number, often the same one) cannot be opened, by its
    /dev name or by a node made for its number, nor can any other block node it sees;
    BLKPG from inside changes nothing.
  - Undoing the sandbox fails with EPERM: mounting a cgroupfs (new and old mount API),
    remounting /sys read-write, unmounting a /dev/null mask, a new mount namespace. The
    agent process itself runs under the seccomp filter and in a cgroup namespace of its own.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from labhosts import (deploy_settings_text, lab_connection, lab_inventory_text, lab_ip, node_range_text,
                      openssh, release_lab_nodes, write_deploy_inputs)

from k1prov.errors import LabError
from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.lab.machine import CGROUP_ROOT, agent_pid, lab_id, machine_name, sandbox_command, unplug_cable
from k1prov.verb_report import EXIT_PARTIAL
from k1prov.provisioner import Provisioner
from k1prov.settings import DEFAULT_TIMEOUTS

pytestmark = pytest.mark.lab

CLUSTER = "agenttest"
NAMES = ["agt01", "agt02", "agt03"]
# BMC ports lab base + 36.., addresses .141..: no other test uses them.
BMC_OFFSET = 36
FIRST_ADDRESS = 141
SSH_TIMEOUT = 30.0
# k1prov's deploy timeout for the node whose agent never calls back: long enough for a
# loaded machine to boot the agent and for the probes to run, short for the suite.
NO_CALLBACK_DEPLOY_TIMEOUT = 90.0
AGENT_UP_TIMEOUT = 60.0
# One probe: importing the agent's modules alone takes tens of seconds on a loaded machine.
PROBE_TIMEOUT = 180.0
# A partition the agent adds to its own disk's table (MBR entry 3): first sector and
# length in 512-byte sectors (at 2 GiB of its 4 GiB, clear of the image's partition 1
# and of the config drive at the end).
OWN_PART = (3, 4 * 2**20, 2048)

# Runs inside the agent's sandbox: sets (or clears) MBR entry 3 of the agent's own disk,
# then `udevadm settle`, as the agent does after parted.
SET_ENTRY = r"""
import json, os, subprocess, sys
number, first, length = json.loads(sys.argv[1])
entry = bytearray(16)
if length:
    entry[4] = 0x83
    entry[8:16] = first.to_bytes(4, "little") + length.to_bytes(4, "little")
with open(os.environ["K1PROV_MACHINE_DISK"], "r+b") as f:
    f.seek(446 + 16 * (number - 1))
    f.write(entry)
    f.seek(510)
    f.write(b"\x55\xaa")
    f.flush()
    os.fsync(f.fileno())
settle = subprocess.run(["udevadm", "settle"], capture_output=True, text=True)
print(json.dumps([settle.returncode, settle.stderr.strip()]))
"""

# Runs inside the agent's sandbox with the lab venv's python (the agent's own).
PROBE = r"""
import ctypes, errno, json, os, stat, sys
from ironic_python_agent import config
config.populate_config()
from ironic_python_agent import hardware

out = {}
devices = hardware.dispatch_to_managers("list_block_devices")
out["devices"] = [d.name for d in devices]
out["managers"] = [type(m).__name__ for m in hardware.get_managers()][:1]
libc = ctypes.CDLL(None, use_errno=True)

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def open_dev(major, minor):
    path = f"/tmp/probe-{major}-{minor}"
    r = attempt(lambda: os.mknod(path, 0o600 | stat.S_IFBLK, os.makedev(major, minor)))
    if r != "ok":
        return "mknod " + r
    return "open " + attempt(lambda: os.close(os.open(path, os.O_RDONLY)))

import subprocess
args = json.loads(sys.argv[1])
out["own_disk"] = attempt(lambda: os.close(os.open(os.environ["K1PROV_MACHINE_DISK"], os.O_RDONLY)))
# Telling the kernel about partitions (BLKPG) does nothing for the agent: the lab does it.
disk_name = os.path.basename(os.environ["K1PROV_MACHINE_DISK"])
before = sorted(os.listdir(f"/sys/block/{disk_name}"))
rc = subprocess.run(["delpart", os.environ["K1PROV_MACHINE_DISK"], "1"], capture_output=True).returncode
out["blkpg_is_a_no_op"] = [rc, sorted(os.listdir(f"/sys/block/{disk_name}")) == before]
# `udevadm settle` (the shim) returns once the fence allowed every partition of the disk.
settle = subprocess.run(["udevadm", "settle"], capture_output=True, text=True)
out["settle"] = [settle.returncode, settle.stderr.strip()]
disk = os.path.basename(os.environ["K1PROV_MACHINE_DISK"])
out["own_parts"] = {p: attempt(lambda: os.close(os.open(f"/dev/{p}", os.O_RDONLY)))
                    for p in sorted(os.listdir(f"/sys/block/{disk}")) if p.startswith(disk + "p")}
out["other"] = {arg: open_dev(*map(int, arg.split(":"))) for arg in args["other"]}
def open_node(path):
    # "null": a node masked with /dev/null when the sandbox was made; "ok": a real device
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    rdev = os.fstat(fd).st_rdev
    os.close(fd)
    return "null" if (os.major(rdev), os.minor(rdev)) == (1, 3) else "ok"
out["other_nodes"] = {path: open_node(path) for path in args["other_nodes"]}
# /dev nodes of other disks are /dev/null in the sandbox
def is_block(path):
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False
blocks = [f"/dev/{n}" for n in os.listdir("/dev") if is_block(f"/dev/{n}")]
out["block_nodes"] = sorted(os.path.basename(p) for p in blocks)
# Every block node that is not its disk's: other labs' machines make partitions all the
# time on a shared machine, and each new node shows up here unmasked.
out["foreign_nodes"] = {p: open_node(p) for p in blocks
                        if os.path.basename(p) != disk and not os.path.basename(p).startswith(disk + "p")}
def reboot():
    # LINUX_REBOOT_CMD_CAD_OFF: harmless even if it were allowed; needs CAP_SYS_BOOT.
    if libc.reboot(0) != 0:
        raise OSError(ctypes.get_errno(), "reboot")
out["reboot"] = attempt(reboot)
def settime():
    ts = (ctypes.c_long * 2)(1, 0)
    if libc.clock_settime(0, ts) != 0:
        raise OSError(ctypes.get_errno(), "clock_settime")
out["settime"] = attempt(settime)
def delete_module():
    if libc.delete_module(b"k1prov_none", 0) != 0:
        raise OSError(ctypes.get_errno(), "delete_module")
out["module"] = attempt(delete_module)
MS_REMOUNT, MS_BIND, MS_RDONLY, MNT_DETACH = 32, 4096, 1, 2
CLONE_NEWNS, CLONE_NEWCGROUP = 0x20000, 0x2000000
def call(name, *a):
    def fn():
        if getattr(libc, name)(*a) != 0:
            raise OSError(ctypes.get_errno(), name)
    return attempt(fn)
os.makedirs("/tmp/cg", exist_ok=True)
out["mount_cgroupfs"] = call("mount", b"cgroup", b"/tmp/cg", b"cgroup", 0, b"devices")
def fsopen():
    # fsopen(2), x86_64 number 430: the new mount API's first step
    fd = libc.syscall(430, b"cgroup", 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "fsopen")
    os.close(fd)
out["fsopen_cgroup"] = attempt(fsopen)
out["remount_sys_rw"] = call("mount", None, b"/sys", None, MS_REMOUNT | MS_BIND, None)
out["umount_mask"] = call("umount2", b"/dev/loop-control", MNT_DETACH)
out["unshare"] = call("unshare", CLONE_NEWNS | CLONE_NEWCGROUP)
out["seccomp"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0]
out["cgroup_ns_root"] = [l.strip().split(":", 2)[2] for l in open("/proc/self/cgroup") if ":devices:" in l]
out["poweroff_is_shim"] = "k1prov" in open("/usr/bin/systemctl", "rb").read(4096).decode("latin1")
out["sysrq"] = (os.path.exists("/proc/sysrq-trigger")
                and os.major(os.stat("/proc/sysrq-trigger").st_rdev) == 1) or \
               not os.path.exists("/proc/sysrq-trigger")
print(json.dumps(out))
"""


def _inventory(s, d: Path, name: str = "agent.yaml") -> Path:
    inv = d / name
    nodes = node_range_text("agt[01-03]", first_bmc_port=s.bmc_base_port + BMC_OFFSET,
                            first_address=lab_ip(s, FIRST_ADDRESS))
    inv.write_text(lab_inventory_text(
        s, cluster=CLUSTER, nodes=nodes,
        deploy=deploy_settings_text(d, image_prefix="agt", user_image=str(lab_image_path()))))
    return inv


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("agent")
    write_deploy_inputs(d, key_comment=CLUSTER)
    inv = _inventory(lab.settings, d)
    state = d / "state"
    conn = lab_connection(lab.settings)
    prov = Provisioner(load_inventory(inv), state_root=state)
    assert prov.enroll().exit_code() == 0
    assert prov.register_images().exit_code() == 0
    try:
        yield {"dir": d, "inv": inv, "state": state, "conn": conn, "prov": prov, "lab": lab}
    finally:
        first = lab.settings.bmc_base_port + BMC_OFFSET
        release_lab_nodes(lab.settings, inventory=inv, state=state, conn=conn, cluster=CLUSTER,
                          bmc_ports=range(first, first + len(NAMES)))


def test_checksum_mismatch_fails_that_node_with_ironics_error_and_the_others_deploy(env):
    s = env["lab"].settings
    bad = env["conn"].baremetal.find_node(NAMES[0])
    # Ironic serves each node's image at http_root/agent_images/<node uuid> and keeps a file
    # already there: for this node it is a truncated copy (a broken mirror, a bad cache),
    # so the bytes the agent gets do not hash to Glance's os_hash_value.
    served = s.http_dir / "agent_images" / bad.id
    served.parent.mkdir(parents=True, exist_ok=True)
    with open(lab_image_path(), "rb") as src:
        served.write_bytes(src.read(8 * 2**20))
    try:
        report = env["prov"].deploy()
    finally:
        served.unlink(missing_ok=True)
    rows = {o.node: o for o in report.outcomes}
    assert report.exit_code() == EXIT_PARTIAL
    assert rows[NAMES[0]].status is Status.FAILED
    assert rows[NAMES[0]].provision_state == "deploy failed"
    node = env["conn"].baremetal.get_node(bad.id)
    assert "checksum" in (node.last_error or "").lower() or "hash" in (node.last_error or "").lower(), \
        node.last_error
    assert node.last_error.split(":")[0] in rows[NAMES[0]].error or "ssh" not in rows[NAMES[0]].error
    for name in NAMES[1:]:
        assert rows[name].status is Status.OK, (name, rows[name].error)
        assert rows[name].provision_state == "active"
        res = openssh(env["dir"] / "id_ed25519", env["state"] / CLUSTER / "known_hosts",
                      env["prov"].inventory.node(name).address, "hostname", timeout=SSH_TIMEOUT)
        assert res.stdout.strip() == name, res.stderr
    # The agent's log of the refused write is kept (by Ironic, and by the lab machine).
    logs = list((s.root / "deploy-logs").glob(f"{bad.id}_*"))
    assert logs, "Ironic collected no deploy log of the failed node"
    console = (s.machines_dir / machine_name(s.bmc_base_port + BMC_OFFSET) / "agent.log").read_text()
    assert "checksum" in console.lower() or "hash" in console.lower()


def test_an_agent_that_never_calls_back_times_out_by_name_and_its_sandbox_holds(env):
    s = env["lab"].settings
    port = s.bmc_base_port + BMC_OFFSET
    # The failed node of the test above: back to available, then its cable out.
    env["prov"].undeploy(limit=[NAMES[0]])
    unplug_cable(s.machines_dir, port)
    timeouts = dataclasses.replace(DEFAULT_TIMEOUTS, deploy=NO_CALLBACK_DEPLOY_TIMEOUT)
    prov = Provisioner(load_inventory(env["inv"]), state_root=env["state"], timeouts=timeouts)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(report=prov.deploy(limit=[NAMES[0]])))
    worker.start()
    try:
        probe = _probe_running_agent(s, port)
    finally:
        worker.join(timeout=NO_CALLBACK_DEPLOY_TIMEOUT + 120)
        unplug_cable(s.machines_dir, port, unplugged=False)
    (row,) = result["report"].outcomes
    assert row.status is Status.TIMEOUT, row
    assert "deploy timeout" in row.error and row.provision_state == "wait call-back", row

    # The sandbox, seen from inside (printed for the record: pytest -rP shows it).
    print(json.dumps({k: v for k, v in probe.items() if k != "agent_status"}, indent=1))
    loop = json.loads((s.machines_dir / machine_name(port) / "state.json").read_text())["loop"]
    assert probe["same_agent"], "the agent was restarted during the probes"
    first, second = probe["first"], probe["second"]
    for p in (first, second):
        assert p["devices"] == [loop], p
        assert p["own_disk"] == "ok"
        assert p["settle"] == [0, ""], p["settle"]
        # Every block device node the agent can see but its own disk's: the ones there at
        # its start (/dev/vda, other loops) show /dev/null; the ones made since (the other
        # loop device's partition below, other labs' machines' partitions) are refused.
        assert all(v in ("null", "EPERM") for v in p["foreign_nodes"].values()), p["foreign_nodes"]
    # Its own partition made after it started opens once settle returns ...
    assert probe["add_settle"] == [0, ""], probe["add_settle"]
    assert first["own_parts"].get(probe["own_part"]) == "ok", (probe["own_part"], first["own_parts"])
    assert all(v == "ok" for v in first["own_parts"].values()), first["own_parts"]
    # ... is refused to it before the kernel lets the number go when it is removed ...
    assert probe["remove_settle"] == [0, ""], probe["remove_settle"]
    assert probe["own_part_gone"] and probe["own_dev_refused"], probe
    # ... and it cannot change the kernel's partitions itself (BLKPG is a no-op for it).
    assert second["blkpg_is_a_no_op"] == [0, True], second["blkpg_is_a_no_op"]
    # ... and another disk's partition made after that does not, by its /dev name (not
    # masked: it did not exist when the sandbox was made) nor by a node for its number.
    for dev, outcome in second["other"].items():
        assert outcome in ("mknod EPERM", "open EPERM"), (dev, outcome)
    assert second["other_nodes"][probe["other_part"]] == "EPERM", second["other_nodes"]
    assert second["other_nodes"][probe["other_loop"]] in ("null", "EPERM"), second["other_nodes"]
    # Undoing the sandbox: refused by the seccomp filter.
    for key in ("mount_cgroupfs", "fsopen_cgroup", "remount_sys_rw", "umount_mask", "unshare"):
        assert second[key] == "EPERM", (key, second[key])
    assert second["seccomp"] == "2"                 # SECCOMP_MODE_FILTER
    assert second["cgroup_ns_root"] == ["/"], second["cgroup_ns_root"]
    assert "Seccomp:\t2" in probe["agent_status"]    # the agent itself, not only the probe
    assert probe["agent_cgroup_ns"] != os.readlink("/proc/self/ns/cgroup")
    assert second["reboot"] == "EPERM" and second["settime"] == "EPERM"
    # ENOSYS: a kernel built without module support refuses before any capability check.
    assert second["module"] in ("EPERM", "ENOSYS")
    assert second["poweroff_is_shim"] and second["sysrq"]


def _probe_running_agent(s, port: int) -> dict:
    """Wait for the machine's agent; then PROBE runs inside its sandbox twice: after a
    partition was added to the agent's own disk, and after that partition went and
    another loop device with a partition was made."""
    mdir = s.machines_dir / machine_name(port)
    deadline = time.monotonic() + AGENT_UP_TIMEOUT
    while True:
        # The agent's namespace runs its set-up script first: wait for the agent itself.
        try:
            agent = agent_pid(s.machines_dir, port)
            break
        except (LabError, OSError, ValueError) as exc:
            assert time.monotonic() < deadline, f"the machine never started its agent: {exc}"
            time.sleep(0.2)
    loop = json.loads((mdir / "state.json").read_text())["loop"]
    devices_list = CGROUP_ROOT / "devices" / f"k1prov-{lab_id(s.root)}" / machine_name(port) / "devices.list"
    out = {"agent_status": Path(f"/proc/{agent}/status").read_text(),
           "agent_cgroup_ns": os.readlink(f"/proc/{agent}/ns/cgroup")}
    other = s.root / "probe-other.img"
    other_loop = None
    number, first, length = OWN_PART
    own_part = f"{Path(loop).name}p{number}"
    try:
        # The agent adds a partition to its disk's table and settles (as after parted):
        # the lab scans the disk and allows the new partition.
        out["add_settle"] = _run_probe(s, port, [number, first, length], code=SET_ENTRY)
        own_dev = _dev_of(Path("/sys/block") / Path(loop).name / own_part)
        out["first"] = _run_probe(s, port, {"other": [], "other_nodes": []})
        out["own_part"] = own_part
        # It removes it again: by the time its settle returns, the number is refused.
        out["remove_settle"] = _run_probe(s, port, [number, 0, 0], code=SET_ENTRY)
        out["own_part_gone"] = not (Path("/sys/block") / Path(loop).name / own_part).exists()
        out["own_dev_refused"] = f"b {own_dev} rwm" not in devices_list.read_text().split("\n")
        # Another machine's disk with a partition: made now, after the agent started.
        # (--partscan: its detach drops the partition, which a loop device without it keeps.)
        with open(other, "wb") as f:
            f.truncate(4 * 2**20)
        other_loop = subprocess.run(["losetup", "--find", "--show", "--partscan", str(other)],
                                    capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        subprocess.run(["addpart", other_loop, "1", "2048", "2048"], check=True, timeout=30)
        other_part = f"{other_loop}p1"
        other_dev = _dev_of(Path("/sys/block") / Path(other_loop).name / Path(other_part).name)
        out["reused_number"] = other_dev == own_dev
        out["other_part"], out["other_loop"] = other_part, other_loop
        rdev = os.stat(other_loop).st_rdev
        root_dev = os.stat("/").st_dev
        targets = [f"{os.major(rdev)}:{os.minor(rdev)}", other_dev,
                   f"{os.major(root_dev)}:{os.minor(root_dev)}"]
        out["second"] = _run_probe(s, port, {"other": targets, "other_nodes": [other_part, other_loop]})
        out["same_agent"] = agent_pid(s.machines_dir, port) == agent
        return out
    finally:
        if other_loop:
            subprocess.run(["delpart", other_loop, "1"], capture_output=True, timeout=30)
            subprocess.run(["losetup", "--detach", other_loop], timeout=30)
        other.unlink(missing_ok=True)


def _run_probe(s, port: int, args, *, code: str = PROBE):
    deadline = time.monotonic() + PROBE_TIMEOUT
    while True:
        argv = sandbox_command(s.machines_dir, port, s.root,
                               [str(s.venv / "bin" / "python"), "-c", code, json.dumps(args)])
        res = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        # nsenter fails when the agent it was given is gone meanwhile.
        if res.returncode == 0 or "nsenter:" not in res.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _dev_of(sys_dir: Path) -> str:
    """MAJOR:MINOR of a block device, from sysfs."""
    return (sys_dir / "dev").read_text().strip()

