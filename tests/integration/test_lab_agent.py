"""The real ironic-python-agent in the lab machines: its failures and its sandbox.

- An image whose checksum does not match: the agent refuses to finish the write, Ironic
  fails that node's deploy, its row carries Ironic's error, and the other nodes of the
  same run are deployed and answer SSH.
- An agent that never calls back (the machine's cable is unplugged: a lab fault): the
  deploy ends with k1prov's named `deploy` timeout in that node's row.
- While that agent runs, its sandbox is probed from inside, with its own cgroups,
  namespaces, root and capability bounding set: the agent's hardware manager lists exactly
  one disk (the machine's), another block device cannot be opened or created, and it
  cannot reboot, set the clock or load modules on this machine.
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
                      openssh, write_deploy_inputs)

from k1prov import glance
from k1prov.errors import LabError
from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.lab.machine import machine_name, sandbox_command, unplug_cable
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
PROBE_TIMEOUT = 60.0

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

out["own_disk"] = attempt(lambda: os.close(os.open(os.environ["K1PROV_MACHINE_DISK"], os.O_RDONLY)))
out["other"] = {arg: open_dev(*map(int, arg.split(":"))) for arg in sys.argv[1:]}
# /dev nodes of other disks are /dev/null in the sandbox
def is_block(path):
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False
blocks = [f"/dev/{n}" for n in os.listdir("/dev") if is_block(f"/dev/{n}")]
out["block_nodes"] = sorted(os.path.basename(p) for p in blocks)
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
        s = lab.settings
        for i in range(len(NAMES)):
            unplug_cable(s.machines_dir, s.bmc_base_port + BMC_OFFSET + i, unplugged=False)
        Provisioner(load_inventory(inv), state_root=state).undeploy()
        Provisioner(load_inventory(inv), state_root=state).delete_nodes()
        for img in glance.list_own_images(conn, CLUSTER):
            conn.image.delete_image(img.id, ignore_missing=True)


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

    # The sandbox, seen from inside.
    loop = json.loads((s.machines_dir / machine_name(port) / "state.json").read_text())["loop"]
    assert probe["devices"] == [loop], probe
    assert probe["own_disk"] == "ok"
    for dev, outcome in probe["other"].items():
        assert outcome in ("mknod EPERM", "open EPERM"), (dev, outcome)
    # Every block device node the agent can see is its own disk or one of its partitions;
    # the other disks' nodes (/dev/vda, other loops) show /dev/null.
    own = Path(loop).name
    assert all(n == own or n.startswith(own + "p") for n in probe["block_nodes"]), probe["block_nodes"]
    assert probe["reboot"] == "EPERM" and probe["settime"] == "EPERM"
    # ENOSYS: a kernel built without module support refuses before any capability check.
    assert probe["module"] in ("EPERM", "ENOSYS")
    assert probe["poweroff_is_shim"] and probe["sysrq"]


def _probe_running_agent(s, port: int) -> dict:
    """Wait for the machine's agent, then run PROBE inside its sandbox."""
    state_file = s.machines_dir / machine_name(port) / "state.json"
    deadline = time.monotonic() + AGENT_UP_TIMEOUT
    while True:
        try:
            if json.loads(state_file.read_text()).get("running") == "agent":
                break
        except (OSError, ValueError):
            pass
        assert time.monotonic() < deadline, "the machine never booted its agent"
        time.sleep(0.2)
    # Another machine's disk: a loop device made now, after the agent started.
    other = s.root / "probe-other.img"
    with open(other, "wb") as f:
        f.truncate(2**20)
    other_loop = subprocess.run(["losetup", "--find", "--show", str(other)], capture_output=True,
                                text=True, check=True, timeout=30).stdout.strip()
    try:
        rdev = os.stat(other_loop).st_rdev
        targets = [f"{os.major(rdev)}:{os.minor(rdev)}"]
        root_dev = os.stat("/").st_dev
        targets.append(f"{os.major(root_dev)}:{os.minor(root_dev)}")
        deadline = time.monotonic() + PROBE_TIMEOUT
        while True:
            # The agent's namespace runs its set-up script first: wait for the agent itself.
            try:
                argv = sandbox_command(s.machines_dir, port, s.root,
                                       [str(s.venv / "bin" / "python"), "-c", PROBE, *targets])
            except LabError as exc:
                assert time.monotonic() < deadline, str(exc)
                time.sleep(0.5)
                continue
            res = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
            # nsenter fails when the agent it was given is gone: the machine was rebooted
            # meanwhile (Ironic powers it off and on while it prepares the deploy).
            if res.returncode == 0 or "nsenter:" not in res.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["losetup", "--detach", other_loop], timeout=30)
        other.unlink(missing_ok=True)
