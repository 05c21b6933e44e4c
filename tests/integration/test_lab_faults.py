"""Faults injected into real runs on the lab, and what operators expect afterwards.

- A second installation's `lab up` restarts the lab's hardware process (its settings
  changed: another Python runs it): the machines keep running. Here a machine runs the
  real ironic-python-agent (its cable unplugged, so it stays up waiting for Ironic):
  the same agent runs after two restarts, its BMC saw no new boot, and its partition
  fence is followed by the new process.
- k1prov SIGKILLed mid-configure: the next run takes the lock over and says so, finishes,
  and the killed run's record says it did not finish; nothing of it is left running.
- Glance stopped during `images register`: one line naming Glance, exit 1; once Glance
  is back, a re-run registers each image once (the half-uploaded one is not kept).
- A flaky BMC (bmcsim --flaky: 30 % of its answers dropped, the rest 1 s late): the lab's
  Ironic runs with the [ipmi] settings of a site with slow BMCs (k1prov.lab.config), and
  enroll manages again a node whose BMC did not answer; enroll completes, and the test
  prints what the BMC did, Ironic's ipmitool re-runs and k1prov's retries. Its deploy is
  not survived yet (strict xfail, the reason says why); the other node deploys beside it.
- A BMC dead mid-deploy (bmcsim --dead): that node's row names it and its BMC, the other
  deploys; with the BMC back a re-run deploys it alone, once (the other untouched).
- Ironic SIGKILLed mid-deploy: the running `k1prov deploy` ends with one line naming
  Ironic; restarted, Ironic fails the deploys its dead conductor ran; a re-run redeploys
  those, waits for the ones whose agents kept going, and uploads nothing again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from labhosts import (ZOOKEEPER_ROLE, beside_other_sessions, booted_hosts, deploy_settings_text,
                      host_inventory_text, lab_connection, lab_inventory_text, lab_ip, node_range_text, openssh,
                      release_lab_nodes, write_deploy_inputs)

from k1prov import glance
from k1prov.errors import LabError
from k1prov.inventory import load_inventory
from k1prov.fanout import Status
from k1prov.fanout.profiles import ProfileStore
from k1prov.lab import Lab, procs
from k1prov.lab.machine import agent_pid, machine_name, unplug_cable
from k1prov.provisioner import Provisioner
from k1prov.settings import DEFAULT_TIMEOUTS

pytestmark = pytest.mark.lab

CLUSTER = "faulttest"
NAMES = ["flt01", "flt02"]
# BMC ports lab base + 24.., addresses .151..: no other test uses them.
BMC_OFFSET = 24
FIRST_ADDRESS = 151
# The agent of a machine whose cable is out waits for Ironic until k1prov's deploy
# timeout, which only has to outlast the checks of the test (it is aborted after them).
NO_CALLBACK_DEPLOY_TIMEOUT = 300.0
AGENT_UP_TIMEOUT = 120.0
# One `lab up` by another installation: its services are running, it restarts one.
OTHER_UP_TIMEOUT = 180.0
DEPLOY_THREAD_JOIN = 120.0
SMALL_IMAGE_BYTES = 8 * 2**20
# The flaky BMC: answers dropped, and how late the others are (seconds).
FLAKY_DROP, FLAKY_DELAY = 0.3, 1.0
SSH_TIMEOUT = 30.0
DEPLOY_ABORT_API_VERSION = "1.110"
SFDISK_TIMEOUT = 30.0

# `lab up` as another installation of k1prov runs it: its own Python (a virtualenv of
# its own whose packages are this one's), settings passed pickled.
OTHER_UP = """
import pickle, sys
from k1prov.lab import Lab
Lab(pickle.loads(bytes.fromhex(sys.argv[1]))).up(progress=lambda msg: print(msg, flush=True))
"""


def _inventory(s, d: Path, *, user_image: Path, name: str, image_prefix: str = "flt") -> Path:
    inv = d / name
    nodes = node_range_text(f"flt[01-{len(NAMES):02d}]", first_bmc_port=s.bmc_base_port + BMC_OFFSET,
                            first_address=lab_ip(s, FIRST_ADDRESS))
    inv.write_text(lab_inventory_text(
        s, cluster=CLUSTER, nodes=nodes,
        deploy=deploy_settings_text(d, image_prefix=image_prefix, user_image=str(user_image))))
    return inv


def _small_disk_image(d: Path) -> Path:
    """A small whole-disk raw image (a partition table, nothing bootable): Ironic accepts
    it, and the agents of these tests never get to write it."""
    image = d / "small-disk.raw"
    with open(image, "wb") as f:
        f.truncate(SMALL_IMAGE_BYTES)
    subprocess.run(["sfdisk", "--quiet", str(image)], input="label: dos\n2048,,83\n", text=True,
                   check=True, timeout=SFDISK_TIMEOUT)
    return image


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    write_deploy_inputs(d, key_comment=CLUSTER)
    # The same nodes with a small image (for the agents that never write it) and with the
    # lab's bootable image (for the hosts that are deployed).
    small = _inventory(lab.settings, d, user_image=_small_disk_image(d), name="faults-small.yaml")
    inv = _inventory(lab.settings, d, user_image=lab_image_path(), name="faults.yaml")
    # Images of their own (flg-*), for the test that stops Glance during their upload.
    glance_inv = _inventory(lab.settings, d, user_image=lab_image_path(), name="faults-glance.yaml",
                            image_prefix="flg")
    state = d / "state"
    conn = lab_connection(lab.settings)
    try:
        yield {"dir": d, "inv": inv, "small": small, "glance_inv": glance_inv, "state": state, "conn": conn,
               "lab": lab}
    finally:
        first = lab.settings.bmc_base_port + BMC_OFFSET
        release_lab_nodes(lab.settings, inventory=inv, state=state, conn=conn, cluster=CLUSTER,
                          bmc_ports=range(first, first + len(NAMES)))


def other_installation(d: Path) -> Path:
    """The python of another installation of k1prov: a virtualenv of its own (another
    path, so another reconciler command line) whose packages are this one's."""
    other = d / "other-install"
    if not other.exists():
        (other / "bin").mkdir(parents=True)
        here = Path(sys.prefix)
        shutil.copy(here / "pyvenv.cfg", other / "pyvenv.cfg")
        (other / "bin" / "python").symlink_to(Path(sys.executable).resolve())
        (other / "lib").symlink_to(here / "lib")
    return other / "bin" / "python"


def lab_up_from(python: Path, settings) -> list[str]:
    res = subprocess.run([str(python), "-c", OTHER_UP, pickle.dumps(settings).hex()],
                         capture_output=True, text=True, timeout=OTHER_UP_TIMEOUT)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def _wait_agent(s, port: int) -> int:
    deadline = time.monotonic() + AGENT_UP_TIMEOUT
    while True:
        try:
            return agent_pid(s.machines_dir, port)
        except (LabError, OSError, ValueError) as exc:
            assert time.monotonic() < deadline, f"the machine never started its agent: {exc}"
            time.sleep(0.2)


def _abort_deploy(conn, name: str) -> None:
    """The agent never calls back: abort the deploy (ends k1prov's wait with "deploy
    failed"). Ironic aborts a deploy in "wait call-back" from API 1.110 on (the SDK asks
    for 1.13 with "abort": HTTP 406)."""
    node = conn.baremetal.find_node(name)
    if node.provision_state == "wait call-back":
        res = conn.baremetal.put(f"/nodes/{node.id}/states/provision", json={"target": "abort"},
                                 microversion=DEPLOY_ABORT_API_VERSION)
        assert res.status_code == 202, res.text


def _bmc_record(s, port: int, name: str) -> str:
    """What the flaky BMC did and how often Ironic ran ipmitool again for its node."""
    counts = json.loads((s.bmc_state_dir / f"{port}.flaky.json").read_text())
    uuid = lab_connection(s).baremetal.find_node(name).id
    log = (s.log_dir / "ironic.log").read_text(errors="replace").splitlines()
    reruns = sum(1 for line in log if uuid in line and "IPMI Error encountered, retrying" in line)
    failed = sum(1 for line in log if uuid in line and "IPMI Error while attempting" in line)
    return (f"{counts['answers']} answers, {counts['dropped']} dropped, {counts['late']} sent "
            f"{FLAKY_DELAY:g} s late; Ironic re-ran ipmitool {reruns} times, gave up {failed} times")


def _bmc(s, port: int) -> dict:
    return json.loads((s.bmc_state_dir / f"{port}.json").read_text())


def test_a_second_installations_lab_up_leaves_the_machines_running(env):
    lab = env["lab"]
    s = lab.settings
    port = s.bmc_base_port + BMC_OFFSET
    timeouts = dataclasses.replace(DEFAULT_TIMEOUTS, deploy=NO_CALLBACK_DEPLOY_TIMEOUT)
    prov = Provisioner(load_inventory(env["small"]), state_root=env["state"], timeouts=timeouts)
    assert prov.enroll(limit=[NAMES[0]]).exit_code() == 0
    # (flt02 is enrolled by the next test, through its flaky BMC: its row fails here.)
    registered = {o.node: o for o in prov.register_images().outcomes}
    assert all(o.status is Status.OK for k, o in registered.items() if k != NAMES[1]), registered
    # Unplugged after enroll: its provide boots the agent for automated cleaning, which
    # must reach Ironic; the deploy's agent is the one that waits with its cable out.
    unplug_cable(s.machines_dir, port)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(report=prov.deploy(limit=[NAMES[0]])))
    worker.start()
    try:
        agent = _wait_agent(s, port)
        boots = _bmc(s, port)["boots"]
        reconciler = procs.read_running(s.run_dir, "reconciler").pid
        log = s.log_dir / "reconciler.log"
        log_start = log.stat().st_size

        said = lab_up_from(other_installation(env["dir"]), s)
        assert "restarting reconciler (its settings changed)" in said, said
        moved = procs.read_running(s.run_dir, "reconciler").pid
        assert moved != reconciler
        assert lab.status().ok
        # The machine kept running: the same agent, and its BMC saw no new boot.
        assert agent_pid(s.machines_dir, port) == agent
        assert _bmc(s, port)["boots"] == boots
        taken = log.read_text()[log_start:]
        assert f"{machine_name(port)}: agent still running: taken over" in taken, taken

        # And back to this installation: a second restart, the same agent still.
        lab.up()
        assert procs.read_running(s.run_dir, "reconciler").pid not in (reconciler, moved)
        assert agent_pid(s.machines_dir, port) == agent
        assert _bmc(s, port)["boots"] == boots
        # Nothing booted or stopped the machine meanwhile (its console says so at each boot).
        console = (s.machines_dir / machine_name(port) / "agent.log").read_text()
        assert console.count(f"boot {boots}: network") == 1
    finally:
        _abort_deploy(env["conn"], NAMES[0])
        worker.join(timeout=DEPLOY_THREAD_JOIN)
        unplug_cable(s.machines_dir, port, unplugged=False)
    assert not worker.is_alive()


@pytest.fixture
def flaky_bmc(env):
    """flt02's BMC flaky (bmcsim --flaky) for one test: its port; healthy again after.

    Ironic runs without automated cleaning meanwhile: a clean, like a deploy, runs a dozen
    ipmitool sessions (power, boot device) through the BMC, and Ironic 39's ipmitool driver
    gets stuck on about one in five of them there ("Failed to prepare node … for cleaning:
    IPMI call failed"), the limit test_a_flaky_bmc_still_deploys_its_node records (xfail).
    What this fixture's test proves is k1prov's: its manage retried through the fault."""
    lab = env["lab"]
    s = lab.settings
    port = s.bmc_base_port + BMC_OFFSET + 1
    reconciler = procs.read_running(s.run_dir, "reconciler").pid
    try:
        assert Lab(dataclasses.replace(s, flaky_bmcs=(f"{port}:{FLAKY_DROP}:{FLAKY_DELAY}",),
                                       automated_clean=False)).up().ok
        # Only the simulator (and Ironic, for its slow-BMC settings) restarted; the
        # machines' hardware did not.
        assert procs.read_running(s.run_dir, "reconciler").pid == reconciler
        assert json.loads((s.bmc_state_dir / f"{port}.flaky.json").read_text()) == \
            {"answers": 0, "dropped": 0, "late": 0}
        yield port
    finally:
        # The BMC healthy again (the simulator restarts without the fault, Ironic with the
        # lab's own settings).
        assert lab.up().ok


def test_a_flaky_bmc_still_enrolls_its_node_and_says_how_many_retries_it_took(env, flaky_bmc):
    """flt02's BMC drops 30 % of its answers and sends the rest 1 s late: enroll (create,
    manage: Ironic's IPMI check of the BMC, provide) still completes for both nodes.
    Ironic runs with the [ipmi] settings of a site with slow BMCs (k1prov.lab.config);
    k1prov manages again a node whose BMC did not answer, and its row says so."""
    s = env["lab"].settings
    port, name = flaky_bmc, NAMES[1]
    prov = Provisioner(load_inventory(env["inv"]), state_root=env["state"])
    # flt02 new to Ironic, so that enroll checks its BMC (manage) through the fault.
    assert prov.undeploy(limit=[name]).exit_code() == 0
    assert prov.delete_nodes(limit=[name]).exit_code() == 0
    t0 = time.monotonic()
    enrolled = prov.enroll()
    took = time.monotonic() - t0
    rows = {o.node: o for o in enrolled.outcomes}
    retried = [c for c in rows[name].changes if "retried" in c]
    print(f"\nflaky BMC {port}: enroll took {took:.1f} s: {_bmc_record(s, port, name)}; "
          f"k1prov: {retried[0] if retried else 'manage not retried'}")
    assert enrolled.exit_code() == 0, [(o.node, o.error) for o in enrolled.outcomes]
    assert rows[name].action == "created" and rows[name].provision_state == "available", rows[name]
    counts = json.loads((s.bmc_state_dir / f"{port}.flaky.json").read_text())
    assert counts["dropped"] > 0 and counts["late"] > 0, counts


# k1prov's deploy timeout for the deploy through the flaky BMC: flt01's deploy takes about a
# minute; flt02's has not ended in 10 minutes in any run so far (see the xfail's reason).
FLAKY_DEPLOY_TIMEOUT = 300.0


# raises: only the flaky node's own assertion is the expected failure; pytest.fail (what
# must hold beside it) is a plain failure.
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "issue 23, fault 1, deploy not survived: a deploy runs a dozen ipmitool sessions through "
    "the flaky BMC and about one in five gets stuck: a late answer to a repeated RAKP 1 (pyghmi "
    "draws a new random number for each) gives ipmitool a session key the BMC does not have, "
    "so every request of that session goes unanswered until ipmitool's -R retries, which "
    "Ironic 39 sizes to fill [ipmi]command_retry_timeout, run out; Ironic cannot re-run it "
    "in time. The deploy either fails (IPMI call failed) or outlasts k1prov's deploy timeout"))
def test_a_flaky_bmc_still_deploys_its_node(env, flaky_bmc):
    """Deploying both nodes with flt02's BMC flaky: flt01 deploys (SSH with the pinned key)
    whatever flt02's BMC does, and its row is checked first; flt02's deploy is the xfail."""
    s = env["lab"].settings
    port, name = flaky_bmc, NAMES[1]
    _available(env)
    prov = Provisioner(load_inventory(env["inv"]), state_root=env["state"],
                       timeouts=dataclasses.replace(DEFAULT_TIMEOUTS, deploy=FLAKY_DEPLOY_TIMEOUT))
    t0 = time.monotonic()
    deployed = prov.deploy()
    took = time.monotonic() - t0
    rows = {o.node: o for o in deployed.outcomes}
    print(f"\nflaky BMC {port}: deploy took {took:.1f} s: {name} {rows[name].status.value}"
          f"{': ' + rows[name].error if rows[name].error else ''}; {_bmc_record(s, port, name)}")
    # One bad BMC costs its own node only (checked before the xfail's assertion).
    other = rows[NAMES[0]]
    if other.status is not Status.OK or other.action != "deployed":
        pytest.fail(f"the healthy node did not deploy beside the flaky one: {other}")
    try:
        _ssh_hostname(env, prov, NAMES[0])
    except AssertionError as exc:
        pytest.fail(f"the healthy node does not answer SSH: {exc}")
    if rows[name].status is Status.FAILED:
        if f"BMC {prov.inventory.node(name).bmc.address}:{port}" not in rows[name].error:
            pytest.fail(f"the flaky node's row does not name its BMC: {rows[name].error}")
    assert rows[name].status is Status.OK, rows[name].error
    _ssh_hostname(env, prov, name)


# ---- a BMC dead mid-deploy; Ironic killed mid-deploy -------------------------------------

# Waiting for a deploy to be under way on a node (its agent booted: "wait call-back").
DEPLOY_UNDER_WAY_TIMEOUT = 600.0
# One deploy of both nodes through Ironic and the real agents (or its failure), on a
# loaded machine.
DEPLOY_TIMEOUT = 1200.0
# The k1prov run Ironic died under: it must end by itself, well within this.
KILLED_RUN_END_TIMEOUT = 180.0
# Polling Ironic's view while a deploy runs.
STATE_POLL = 0.5
# Ironic's last ipmitool runs against a BMC it gave up on end within its
# [ipmi]command_retry_timeout (60 s by default); with a margin for a loaded machine.
IPMI_GIVE_UP_TIMEOUT = 180.0


def _available(env) -> Provisioner:
    """Both nodes enrolled and available (whatever an earlier test left), the images registered."""
    prov = Provisioner(load_inventory(env["inv"]), state_root=env["state"])
    assert prov.undeploy().exit_code() == 0
    enrolled = prov.enroll()
    assert enrolled.exit_code() == 0, [(o.node, o.error) for o in enrolled.outcomes]
    assert prov.register_images().exit_code() == 0
    return prov


def _wait_state(conn, name: str, states: set[str], *, timeout: float, alive=lambda: True) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = conn.baremetal.get_node(conn.baremetal.find_node(name).id).provision_state
        if state in states:
            return state
        assert alive(), f"the deploy ended before {name} was in {states} (it is {state})"
        assert time.monotonic() < deadline, f"{name} never got to {states}: it is {state}"
        time.sleep(STATE_POLL)


def _network_boots(s, port: int) -> int:
    """How often machine `port` booted from the network (each time a deploy's agent): its
    console says so at each such boot."""
    console = s.machines_dir / machine_name(port) / "agent.log"
    if not console.exists():
        return 0
    return sum(1 for line in console.read_text(errors="replace").splitlines()
               if line.startswith("==== ") and ": network" in line)


def _ipmitool_runs(port: int) -> list[str]:
    """ipmitool processes (Ironic's) talking to the BMC on `port`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ipmitool") and str(port).encode() in argv:
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def _no_ipmitool_left(port: int) -> None:
    """Wait until nothing asks the BMC on `port` any more (bounded: IPMI_GIVE_UP_TIMEOUT)."""
    deadline = time.monotonic() + IPMI_GIVE_UP_TIMEOUT
    while _ipmitool_runs(port):
        assert time.monotonic() < deadline, _ipmitool_runs(port)
        time.sleep(STATE_POLL)


def _known_hosts_lines(env) -> dict[str, str]:
    """The cluster's pinned host keys, by node name (k1prov writes "ADDRESS,NAME KEY")."""
    path = env["state"] / CLUSTER / "known_hosts"
    return {line.split()[0].split(",")[-1]: line for line in path.read_text().splitlines() if line.strip()}


def _ssh_hostname(env, prov, name: str) -> None:
    res = openssh(env["dir"] / "id_ed25519", env["state"] / CLUSTER / "known_hosts",
                  prov.inventory.node(name).address, "hostname", timeout=SSH_TIMEOUT)
    assert res.stdout.strip() == name, res.stderr


def test_a_bmc_dead_mid_deploy_fails_its_node_alone_and_a_rerun_completes_it(env):
    """flt01's BMC goes away (bmcsim --dead) once its agent is writing the disk: Ironic's
    next IPMI command for it fails, its row names the node and the BMC, flt02 deploys.
    Once the BMC is back, a re-run deploys flt01 alone (flt02 untouched)."""
    lab, conn = env["lab"], env["conn"]
    s = lab.settings
    victim, other = NAMES
    port, other_port = s.bmc_base_port + BMC_OFFSET, s.bmc_base_port + BMC_OFFSET + 1
    prov = _available(env)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(report=prov.deploy()))
    t0 = time.monotonic()
    worker.start()
    try:
        _wait_state(conn, victim, {"wait call-back"}, timeout=DEPLOY_UNDER_WAY_TIMEOUT, alive=worker.is_alive)
        assert Lab(dataclasses.replace(s, dead_bmcs=(port,))).up().ok
        killed_at = time.monotonic()
        worker.join(timeout=DEPLOY_TIMEOUT)
        assert not worker.is_alive(), "deploy did not end with its node's BMC dead"
        failed_in = time.monotonic() - killed_at
    finally:
        # The BMC back (the simulator restarts without the fault), whatever happened; and
        # the deploy thread ended even then, so that it does not run into the next test.
        back = False
        try:
            back = lab.up().ok
            assert back
        finally:
            if not back:
                for name in NAMES:
                    _abort_deploy(conn, name)
            worker.join(timeout=DEPLOY_TIMEOUT)
    rows = {o.node: o for o in result["report"].outcomes}
    assert rows[other].status is Status.OK and rows[other].action == "deployed", rows[other]
    bad = rows[victim]
    assert bad.status is Status.FAILED, bad
    assert f"BMC {prov.inventory.node(victim).bmc.address}:{port}" in bad.error, bad.error
    # Ironic gave up on the BMC: nothing of it keeps asking.
    _no_ipmitool_left(port)
    print(f"\nBMC {port} dead mid-deploy: {victim}'s row after {failed_in:.1f} s: {bad.error}")

    # The re-run, the BMC back: the failed node alone is deployed, once; the other untouched.
    before = {"updated": conn.baremetal.get_node(conn.baremetal.find_node(other).id).updated_at,
              "bmc boots": _bmc(s, other_port)["boots"], "network boots": _network_boots(s, other_port),
              "known_hosts": _known_hosts_lines(env)[other]}
    victim_boots = _network_boots(s, port)
    t1 = time.monotonic()
    again = prov.deploy()
    recovered = time.monotonic() - t1
    rows = {o.node: o for o in again.outcomes}
    assert again.exit_code() == 0, [(o.node, o.error) for o in again.outcomes]
    assert (rows[victim].action, rows[other].action) == ("deployed", "unchanged"), rows
    assert _network_boots(s, port) == victim_boots + 1
    after = {"updated": conn.baremetal.get_node(conn.baremetal.find_node(other).id).updated_at,
             "bmc boots": _bmc(s, other_port)["boots"], "network boots": _network_boots(s, other_port),
             "known_hosts": _known_hosts_lines(env)[other]}
    assert after == before
    for name in NAMES:
        _ssh_hostname(env, prov, name)
    _no_ipmitool_left(port)
    _no_ipmitool_left(other_port)
    print(f"\nBMC {port} back: the re-run deployed {victim} in {recovered:.1f} s "
          f"(first run {time.monotonic() - t0 - recovered:.1f} s in all)")


@pytest.mark.parametrize("kill_at", ["deploying", "wait call-back"])
def test_ironic_killed_mid_deploy_ends_the_run_with_one_line_and_a_rerun_completes(env, kill_at):
    """Ironic (API and conductor, one process group) SIGKILLed while `k1prov deploy` waits
    for both nodes, as soon as flt01 is `kill_at`: the run ends by itself with one line
    naming Ironic. Restarted (`lab up`), Ironic takes its nodes over (a node its dead
    conductor was deploying becomes "deploy failed", one whose agent was writing stays in
    "wait call-back"); a re-run of `deploy` redeploys the failed ones, waits for the others,
    and fires nothing twice."""
    lab, conn = env["lab"], env["conn"]
    s = lab.settings
    ports = {name: s.bmc_base_port + BMC_OFFSET + i for i, name in enumerate(NAMES)}
    _available(env)
    cli = [str(K1PROV), "deploy", "-i", str(env["inv"])]
    cli_env = {**os.environ, "K1PROV_STATE_DIR": str(env["state"])}
    images = {i.name: i.id for i in glance.list_own_images(conn, CLUSTER)}
    killed = subprocess.Popen(cli, env=cli_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        _wait_state(conn, NAMES[0], {kill_at}, timeout=DEPLOY_UNDER_WAY_TIMEOUT,
                    alive=lambda: killed.poll() is None)
        at_kill = {n: conn.baremetal.find_node(n).provision_state for n in NAMES}
        ironic = procs.read_running(s.run_dir, "ironic")
        os.killpg(ironic.pid, signal.SIGKILL)
        t0 = time.monotonic()
        out, err = killed.communicate(timeout=KILLED_RUN_END_TIMEOUT)
        ended_in = time.monotonic() - t0
        dead_members = procs.group_members(ironic.pid)
        left = {p: _ipmitool_runs(p) for p in ports.values()}
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait(timeout=SSH_TIMEOUT)
        # Ironic back whatever happened (the module's teardown needs it).
        t1 = time.monotonic()
        assert lab.up().ok
        restarted_in = time.monotonic() - t1
    # One line naming Ironic, exit 1, no traceback; nothing of Ironic's is left running.
    assert killed.returncode == 1, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Ironic" in errors[0], err
    assert "Traceback" not in err
    assert dead_members == [] and left == {p: [] for p in ports.values()}, (dead_members, left)

    assert procs.read_running(s.run_dir, "ironic").pid != ironic.pid
    # The new conductor's takeover (it fails the deploys the dead one was running) may
    # still be under way when the API answers. ("available": the killed run had not fired
    # that node's deploy yet.)
    taken_over = {n: _wait_state(conn, n, {"deploy failed", "wait call-back", "active", "available"},
                                 timeout=DEPLOY_UNDER_WAY_TIMEOUT) for n in NAMES}
    # What the takeover leaves: a deploy the dead conductor was running failed; one whose
    # agent was writing waits for that agent.
    boots = {n: _network_boots(s, ports[n]) for n in NAMES}
    t2 = time.monotonic()
    again = subprocess.run([*cli, "--json"], env=cli_env, capture_output=True, text=True,
                           timeout=DEPLOY_TIMEOUT, stdin=subprocess.DEVNULL)
    recovered = time.monotonic() - t2
    assert again.returncode == 0, again.stderr
    rows = {r["node"]: r for r in json.loads(again.stdout)["nodes"]}
    assert all(rows[n]["status"] == "ok" and rows[n]["provision_state"] == "active" for n in NAMES), rows
    # Only the failed (or never fired) deploys were fired (a network boot each); the others
    # were waited for.
    assert {n: _network_boots(s, ports[n]) - boots[n] for n in NAMES} == \
        {n: int(taken_over[n] in ("deploy failed", "available")) for n in NAMES}, taken_over
    prov = Provisioner(load_inventory(env["inv"]), state_root=env["state"])
    for name in NAMES:
        _ssh_hostname(env, prov, name)
    # Nothing uploaded again; one pinned key per node.
    assert {i.name: i.id for i in glance.list_own_images(conn, CLUSTER)} == images
    assert len(_known_hosts_lines(env)) == len(NAMES)
    print(f"\nIronic killed mid-deploy (nodes {at_kill}): the run ended {ended_in:.1f} s later: {errors[0]}; "
          f"`lab up` restarted Ironic in {restarted_in:.1f} s, which left {taken_over}; "
          f"the re-run took {recovered:.1f} s")


# ---- k1prov SIGKILLed mid-configure -------------------------------------------------------

KILL_NET = beside_other_sessions("k1pkill0", "10.252.33.1/24", 0)
KILL_CLUSTER = "killtest"
KILL_HOST = "kil1" + KILL_NET.suffix
K1PROV = Path(sys.executable).with_name("k1prov")
# One `k1prov configure` of one ZooKeeper host (the first run installs and starts it).
CONFIGURE_TIMEOUT = 300.0
# Waiting for the killed run to reach its first role script.
SCRIPT_STARTED_TIMEOUT = 120.0
# The host's watchdog ends what the killed run started (it looks once a second).
LEFTOVER_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def kill_host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kill")
    with booted_hosts(tmp, lab_image_path(), bridge=KILL_NET.bridge, cidr=KILL_NET.cidr, cluster=KILL_CLUSTER,
                      names=[KILL_HOST], first_host=20) as hosts:
        path = tmp / "inventory.yaml"
        path.write_text(host_inventory_text(
            cluster=KILL_CLUSTER, keys_dir=hosts.keys, addresses=hosts.addresses,
            roles={KILL_HOST: ["zookeeper"]}, role_settings="roles:\n" + ZOOKEEPER_ROLE,
            first_bmc_port=6990, mac_prefix="52:54:00:c7:00"))
        yield {"inv": path, "hosts": hosts}


def _k1prov(kill_host, *args: str) -> list[str]:
    return [str(K1PROV), *args, "-i", str(kill_host["inv"])]


def _env(kill_host) -> dict[str, str]:
    return {**os.environ, "K1PROV_STATE_DIR": str(kill_host["hosts"].state_root)}


def _on_host(kill_host, command: str) -> subprocess.CompletedProcess:
    hosts = kill_host["hosts"]
    return openssh(hosts.keys / "user", hosts.state_root / KILL_CLUSTER / "known_hosts",
                   hosts.addresses[KILL_HOST], command, timeout=SSH_TIMEOUT)


def test_a_configure_killed_mid_run_leaves_a_lock_the_next_run_takes_over(kill_host):
    runs = kill_host["hosts"].state_root / KILL_CLUSTER / "runs"
    lock = kill_host["hosts"].state_root / KILL_CLUSTER / "lock"
    killed = subprocess.Popen(_k1prov(kill_host, "configure"), env=_env(kill_host), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Mid-configure: its first role script is on its way to the host (configure makes the
        # host's log directory in its run record just before it pushes the script).
        deadline = time.monotonic() + SCRIPT_STARTED_TIMEOUT
        while not list(runs.glob(f"*-configure/{KILL_HOST}")):
            assert killed.poll() is None, "configure ended before it was killed"
            assert time.monotonic() < deadline, "configure never reached its role script"
            time.sleep(0.05)
        killed.kill()
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
    (killed_run,) = [p.parent.name for p in runs.glob(f"*-configure/{KILL_HOST}")]
    # The lock file still names the dead run: nobody let go of it.
    assert json.loads(lock.read_text())["pid"] == killed.pid

    t0 = time.monotonic()
    again = subprocess.run(_k1prov(kill_host, "configure"), env=_env(kill_host), capture_output=True,
                           text=True, timeout=CONFIGURE_TIMEOUT, stdin=subprocess.DEVNULL)
    recovered = time.monotonic() - t0
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stderr.split())
    assert f"pid {killed.pid}" in said and "taken over" in said, again.stderr
    assert f"its run {killed_run} is marked as not finished" in said, again.stderr
    shown = subprocess.run(_k1prov(kill_host, "runs", "show", "latest", "--json"), env=_env(kill_host),
                           capture_output=True, text=True, timeout=SSH_TIMEOUT)
    rows = {(r["node"], r["changes"][0]): r for r in json.loads(shown.stdout)["report"]["nodes"]}
    assert rows[(KILL_HOST, "zookeeper")]["status"] == "ok", rows
    # The new run let go of the lock cleanly: the file is empty.
    assert lock.read_text() == ""

    listed = subprocess.run(_k1prov(kill_host, "runs", "list", "--json"), env=_env(kill_host),
                            capture_output=True, text=True, timeout=SSH_TIMEOUT)
    by_id = {r["id"]: r for r in json.loads(listed.stdout)["runs"]}
    assert by_id[killed_run]["exit_code"] is None
    assert by_id[killed_run]["not_finished"].startswith("did not finish: k1prov configure (pid "), by_id
    (newest, *_) = json.loads(listed.stdout)["runs"]
    assert newest["verb"] == "configure" and newest["exit_code"] == 0 and not newest["not_finished"]
    # Nothing of the killed run is left: not here, not on the host (its watchdog ended it).
    assert subprocess.run(["pgrep", "-f", str(kill_host["inv"])], capture_output=True).returncode == 1
    deadline = time.monotonic() + LEFTOVER_TIMEOUT
    while _on_host(kill_host, "pgrep -f /tmp/k1prov\\.").returncode == 0:
        assert time.monotonic() < deadline, _on_host(kill_host, "ps -eo pid,args").stdout
        time.sleep(0.5)
    print(f"\nconfigure killed mid-run ({killed_run}); the next run took the lock over and "
          f"finished in {recovered:.1f} s")


# ---- Glance stopped during `images register` ---------------------------------------------

# Waiting for the user image's upload to be under way (the deploy kernel and ramdisk first).
UPLOAD_STARTED_TIMEOUT = 120.0
# One `images register` (a 1 GB upload on a loaded machine), or its failure.
REGISTER_TIMEOUT = 600.0


def test_glance_stopped_during_images_register_then_a_rerun_registers_each_image_once(env):
    lab, conn = env["lab"], env["conn"]
    s = lab.settings
    inv = env["glance_inv"]
    names = ["flg-deploy-kernel", "flg-deploy-ramdisk", "flg-lab-image"]
    # The nodes' driver_info rows need them enrolled (healthy BMCs).
    assert Provisioner(load_inventory(inv), state_root=env["state"]).enroll().exit_code() == 0
    cli = [str(K1PROV), "images", "register", "-i", str(inv)]
    cli_env = {**os.environ, "K1PROV_STATE_DIR": str(env["state"])}
    first = subprocess.Popen(cli, env=cli_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + UPLOAD_STARTED_TIMEOUT
        while not any(i.status == "saving" for i in glance.list_own_images(conn, CLUSTER, name=names[2])):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the user image's upload never started"
            time.sleep(0.1)
        procs.stop(s.run_dir, "glance", grace=procs.STOP_GRACE)
        stopped = time.monotonic()
        out, err = first.communicate(timeout=REGISTER_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 1, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: Glance at {s.glance_url}"), err
    assert "Traceback" not in err
    failed_in = time.monotonic() - stopped

    assert lab.up().ok                                   # Glance is back
    back = time.monotonic()
    again = subprocess.run([*cli, "--json"], env=cli_env, capture_output=True, text=True,
                           timeout=REGISTER_TIMEOUT, stdin=subprocess.DEVNULL)
    recovered = time.monotonic() - back
    assert again.returncode == 0, again.stderr
    rows = {r["node"]: r for r in json.loads(again.stdout)["nodes"]}
    # The kernel and ramdisk the first run uploaded are reused, the user image uploaded once.
    assert [rows[f"image:{n}"]["action"] for n in names] == ["unchanged", "unchanged", "uploaded"], rows
    for name in names:
        images = glance.list_own_images(conn, CLUSTER, name=name)
        assert [i.status for i in images] == ["active"], (name, [(i.id, i.status) for i in images])
        assert images[0].id == rows[f"image:{name}"]["uuid"]
    print(f"\nGlance stopped mid-upload: the run ended {failed_in:.1f} s later with one line; "
          f"the re-run after Glance was back took {recovered:.1f} s")


# ---- the controller's state directory full ----------------------------------------------

# The tmpfs that holds the state directory: room for a run or two of one host's records.
STATE_TMPFS_SIZE = "2m"
MOUNT_TIMEOUT = 30.0


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_full_state_directory_is_one_clean_error_and_what_was_there_stays(kill_host, tmp_path):
    hosts = kill_host["hosts"]
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STATE_TMPFS_SIZE},mode=0700", "k1prov-full", str(state)],
                   check=True, timeout=MOUNT_TIMEOUT)
    try:
        shutil.copytree(hosts.state_root / KILL_CLUSTER, state / KILL_CLUSTER,
                        ignore=shutil.ignore_patterns("runs", "lock"))
        env = {**os.environ, "K1PROV_STATE_DIR": str(state)}
        first = subprocess.run(_k1prov(kill_host, "configure"), env=env, capture_output=True, text=True,
                               timeout=CONFIGURE_TIMEOUT, stdin=subprocess.DEVNULL)
        assert first.returncode == 0, first.stderr
        # A cache of earlier runs' converged concurrency levels, as k1prov keeps it.
        ProfileStore(state / "profiles.json").put("ssh.configure", "ssh://elsewhere", 8)
        before = _files(state)
        assert f"{KILL_CLUSTER}/known_hosts" in before and "profiles.json" in before, sorted(before)
        assert any(name.endswith("/meta.json") for name in before), sorted(before)
        # Fill it up.
        with open(state / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        t0 = time.monotonic()
        full = subprocess.run(_k1prov(kill_host, "configure"), env=env, capture_output=True, text=True,
                              timeout=CONFIGURE_TIMEOUT, stdin=subprocess.DEVNULL)
        took = time.monotonic() - t0
        assert full.returncode == 1, (full.stdout, full.stderr)
        errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "no space left" in errors[0].lower() and str(state) in errors[0], full.stderr
        assert "Traceback" not in full.stderr
        after = _files(state)
        after.pop("filler")
        # Everything that was there is there, byte for byte; nothing half-written was added.
        assert after == before, sorted(set(after) ^ set(before))
        print(f"\nstate directory full: one line after {took:.1f} s: {errors[0]}")
    finally:
        subprocess.run(["umount", str(state)], timeout=MOUNT_TIMEOUT)
