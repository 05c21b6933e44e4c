"""The operator's workflow on the lab: `cluster up | status | down | rebuild`, run records,
the cluster lock and Ctrl-C, through the CLI, against real Ironic and Glance, the BMC
simulators over IPMI and lab hosts running real ZooKeeper and Spark.

The tests run in order on one cluster, `cuptest` (cup01-05: three ZooKeeper members,
which are also Mesos masters (quorum 2), cup01 also the standalone Spark master, two
workers that are Mesos agents and Spark workers): up, a no-op up, --dry-run, the lock,
rebuild (ZooKeeper's and Mesos' quorums polled throughout), down, Ctrl-C during the deploy
of a new up and its re-run, down --unenroll. Mesos is the lab's build (k1prov.lab.mesos),
published on the session lab's HTTP server as `lab up` does; without one the cluster has no
Mesos roles and the Mesos checks are left out (the reason is printed).
The Ctrl-C test starts from `cluster down` (nodes enrolled, images in Glance) rather than
from nothing: a fresh cluster would upload the 1 GB lab image to Glance once more.
A second inventory, `cupint` (cup06-07), is only ever planned (--dry-run), never built.
Timings are printed (pytest -s).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from labhosts import (ROLE_SETTINGS, SPARK_ROLE, ZOOKEEPER_ROLE, deploy_settings_text, lab_connection, mesos_role,
                      lab_host_init, lab_inventory_text, tear_down_cluster, lab_ip, openssh, write_deploy_inputs)
from typer.testing import CliRunner

from k1prov import glance
from k1prov.cli import app
from k1prov.inventory import load_inventory
from k1prov.lab.machine import machine_mac, machine_name
from k1prov.lab.mesos import publish
from k1prov.lab.netns import netns_exists, netns_name
from k1prov.lock import cluster_lock
from k1prov.verb_report import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK
from k1prov.provisioner import Provisioner

pytestmark = pytest.mark.lab

CLUSTER = "cuptest"
NAMES = [f"cup{i:02d}" for i in range(1, 6)]
ZK_MEMBERS = NAMES[:3]
# With the lab's Mesos build: masters on the ZooKeeper members, agents on the workers.
MESOS_MASTERS = ZK_MEMBERS
MESOS_AGENTS = NAMES[3:]
MESOS_MASTER_PORT = 5050
MESOS_CONNECT_TIMEOUT = 1.0
MESOS_ANSWER_TIMEOUT = 10.0
SECOND = "cupint"
SECOND_NAMES = ["cup06", "cup07"]
# BMC ports lab base + 15.. and addresses .161..: no other test uses them.
BMC_OFFSET = 15
FIRST_ADDRESS = 161
SSH_TIMEOUT = 30.0
HOST_GONE_TIMEOUT = 30.0
# The Ctrl-C test: how long to watch Ironic for the first deploy, and to wait for exit 130.
DEPLOY_SEEN_TIMEOUT = 240.0
INTERRUPT_EXIT_TIMEOUT = 60.0
ZK_PORT = 2181
ZK_POLL_INTERVAL = 0.5
ZK_CONNECT_TIMEOUT = 1.0
# Three quorum members one at a time, then the workers, each through the real agent (and
# with Mesos a 287 MB build unpacked on each): seen 330-440 s without Mesos on a loaded
# machine, 546 s with Mesos at load average 20. The test's own limit (pytest-timeout, 900 s
# for every test) is raised to match: the polls and the checks after the rebuild need time too.
REBUILD_TIMEOUT = 900.0
REBUILD_TEST_TIMEOUT = REBUILD_TIMEOUT + 300
# Longest a leader election may take in the lab (seen well under 1 s; failover ~5 s).
ELECTION_MAX_SECONDS = 10.0
LOCK_HOLDER_TIMEOUT = 20.0
# The session lab's settings (its subnet gives the nodes' addresses), set by `env`.
_SETTINGS: list = []
# Whether the cluster has Mesos (the lab has a build), set by `env`.
_MESOS: list[bool] = []


def _mesos_role_settings(s) -> str:
    """roles: with Mesos from the build the session lab publishes; Spark stays standalone,
    as the other checks expect."""
    return "roles:\n" + ZOOKEEPER_ROLE + mesos_role(s) + SPARK_ROLE

def _node(name: str, index: int, roles: list[str], s) -> str:
    return (f"  - name: {name}\n"
            + (f"    roles: [{', '.join(roles)}]\n" if roles else "")
            + f"    bmc: {{port: {s.bmc_base_port + BMC_OFFSET + index}}}\n"
            f"    macs: [\"{machine_mac(s.bmc_base_port + BMC_OFFSET + index)}\"]\n"
            f"    address: {lab_ip(s, FIRST_ADDRESS + index)}\n")


def _inventory(s, d: Path, *, cluster: str, nodes: str, user_image: str,
               role_settings: str = ROLE_SETTINGS) -> Path:
    inv = d / f"{cluster}.yaml"
    inv.write_text(lab_inventory_text(
        s, cluster=cluster, nodes=nodes, role_settings=role_settings,
        deploy=deploy_settings_text(d, image_prefix="cup", user_image=user_image)))
    return inv


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    write_deploy_inputs(d, key_comment=CLUSTER)
    image = str(lab_image_path())
    s = lab.settings
    _SETTINGS[:] = [s]
    build, where = publish(s.http_dir)      # what `k1prov lab up` does
    _MESOS[:] = [build is not None]
    if build is None:
        print(f"\n{where}: cluster {CLUSTER} runs without Mesos")
    roles = {NAMES[0]: ["zookeeper", "spark-master"], NAMES[1]: ["zookeeper"], NAMES[2]: ["zookeeper"],
             NAMES[3]: ["spark-worker"], NAMES[4]: ["spark-worker"]}
    if _MESOS[0]:
        for name in MESOS_MASTERS:
            roles[name].insert(1, "mesos-master")
        for name in MESOS_AGENTS:
            roles[name].insert(0, "mesos-agent")
    inv = _inventory(s, d, cluster=CLUSTER, user_image=image,
                     nodes="".join(_node(n, i, roles[n], s) for i, n in enumerate(NAMES)),
                     role_settings=_mesos_role_settings(s) if _MESOS[0] else ROLE_SETTINGS)
    # The second cluster: a one-member ZooKeeper and a node without roles.
    second = _inventory(s, d, cluster=SECOND, user_image=image,
                        nodes=_node(SECOND_NAMES[0], 5, ["zookeeper"], s) + _node(SECOND_NAMES[1], 6, [], s))
    state = d / "state"
    conn = lab_connection(s)
    env = {"dir": d, "inv": inv, "second": second, "state": state, "conn": conn, "times": {},
           "bmc_base": s.bmc_base_port + BMC_OFFSET}
    try:
        yield env
    finally:
        tear_down_cluster(second, state, conn, SECOND)
        tear_down_cluster(inv, state, conn, CLUSTER)
        print("\ncluster timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in env["times"].items()))


def _cli(env, *args: str, inv: Path | None = None, json_out: bool = True):
    argv = [*args, "-i", str(inv or env["inv"])] + (["--json"] if json_out else [])
    return CliRunner().invoke(app, argv, env={"K1PROV_STATE_DIR": str(env["state"])})


def _address(name: str) -> str:
    index = int(name[3:]) - 1
    return lab_ip(_SETTINGS[0], FIRST_ADDRESS + index)


def _ssh(env, name: str, command: str, *, cluster: str = CLUSTER, check: bool = True):
    result = openssh(env["dir"] / "id_ed25519", env["state"] / cluster / "known_hosts", _address(name),
                     command, timeout=SSH_TIMEOUT)
    if check:
        assert result.returncode == 0, (name, result.stderr)
    return result


def _zk_pids(env) -> dict[str, str]:
    return {name: _ssh(env, name, "pgrep -f QuorumPeer[M]ain")
            .stdout.strip() for name in ZK_MEMBERS}


def _zk_mode(address: str) -> str:
    """One `srvr` straight to a member's client port: its mode, or why there is none."""
    try:
        with socket.create_connection((address, ZK_PORT), timeout=ZK_CONNECT_TIMEOUT) as sock:
            sock.settimeout(ZK_CONNECT_TIMEOUT)
            sock.sendall(b"srvr")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError as exc:
        return f"down ({exc.__class__.__name__})"
    match = re.search(rb"^Mode:\s*(\w+)", data, re.MULTILINE)
    return match.group(1).decode() if match else "not serving"


def _mesos_mode(address: str) -> str:
    """One look at a Mesos master's /metrics/snapshot (standbys answer it too, without
    redirecting): leader, standby, "catching up" (a master whose replicated log has not
    caught up with the others: it does not count towards the log's quorum yet), or down
    (no connection within MESOS_CONNECT_TIMEOUT: a host being reimaged, or no master
    process). An answer may take longer on a loaded machine (MESOS_ANSWER_TIMEOUT): slow
    is not down."""
    conn = http.client.HTTPConnection(address, MESOS_MASTER_PORT, timeout=MESOS_CONNECT_TIMEOUT)
    try:
        conn.connect()
        conn.sock.settimeout(MESOS_ANSWER_TIMEOUT)
        conn.request("GET", "/metrics/snapshot")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return f"HTTP {response.status}"
        metrics = json.loads(body)
        if metrics.get("registrar/log/recovered") == 0:
            return "catching up"
        return "leader" if metrics.get("master/elected") == 1 else "standby"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"down ({exc.__class__.__name__})"
    finally:
        conn.close()


def _poll_mesos(masters: dict[str, str], done: threading.Event, t0: float,
                polls: list[tuple[float, dict[str, str]]]) -> None:
    """Every master's mode, every ZK_POLL_INTERVAL, until `done` (or REBUILD_TIMEOUT)."""
    with ThreadPoolExecutor(len(masters)) as pool:
        while not done.is_set() and time.monotonic() - t0 < REBUILD_TIMEOUT:
            started = time.monotonic()
            polls.append((started - t0, dict(zip(masters, pool.map(_mesos_mode, masters.values())))))
            time.sleep(max(0.0, ZK_POLL_INTERVAL - (time.monotonic() - started)))


def _mesos_agents(address: str) -> dict[str, dict]:
    """The active agents the leading master at `address` has registered, by host name (an
    agent that went away may still be listed, inactive, until the master gives up on it)."""
    conn = http.client.HTTPConnection(address, MESOS_MASTER_PORT, timeout=SSH_TIMEOUT)
    try:
        conn.request("GET", "/state")
        response = conn.getresponse()
        assert response.status == 200, (address, response.status)
        active = [a for a in json.loads(response.read())["slaves"] if a.get("active")]
        assert len({a["hostname"] for a in active}) == len(active), active
        return {a["hostname"]: a for a in active}
    finally:
        conn.close()


def _dump_zookeeper(env) -> None:
    """What the members say and log, printed when a test finds the ensemble unhealthy."""
    for name in ZK_MEMBERS:
        res = _ssh(env, name, "echo srvr | timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181; "
                              "printf srvr >&3; cat <&3'; ps -eo pid,etime,args | grep -c java; "
                              "tail -n 30 /var/log/zookeeper/*.log /var/log/k1prov/zookeeper.log",
                   check=False)
        print(f"\n==== {name} (exit {res.returncode})\n{res.stdout[-6000:]}\n{res.stderr[-1000:]}")


def _ironic_states(env, names: list[str]) -> dict[str, str | None]:
    out = {}
    for name in names:
        node = env["conn"].baremetal.find_node(name)
        out[name] = node.provision_state if node else None
    return out


def _wait_hosts_gone(env, names: list[str]) -> None:
    """The lab machines of `names` run nothing (their namespaces are gone)."""
    base = env["bmc_base"]
    machines = [machine_name(base + NAMES.index(n)) for n in names]
    deadline = time.monotonic() + HOST_GONE_TIMEOUT
    while any(netns_exists(netns_name(m)) for m in machines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [m for m in machines if netns_exists(netns_name(m))]


def _check_healthy(data: dict, names: list[str], *, zk_members: list[str], spark: bool) -> None:
    rows = {r["node"]: r for r in data["nodes"]}
    if _MESOS[0] and zk_members == ZK_MEMBERS:
        # One leading master (the others standbys) and both agents registered with the
        # resources the inventory gives them, as `cluster status` reads them.
        assert data["health"]["mesos"].startswith("ok: leader "), data["health"]
        assert "2/2 agents (cpus:4;mem:3072;disk:4096)" in data["health"]["mesos"], data["health"]
        masters = sorted(next((part[len("mesos "):] for part in (rows[n]["health"] or "").split("; ")
                               if part.startswith("mesos ")), "") for n in MESOS_MASTERS)
        assert masters == ["leader", "standby", "standby"], {n: rows[n]["health"] for n in MESOS_MASTERS}
        for name in MESOS_AGENTS:
            assert "mesos registered cpus:2;mem:1536;disk:2048" in (rows[name]["health"] or ""), rows[name]
    assert set(rows) == set(names)
    for name in names:
        assert rows[name]["provision_state"] == "active", rows[name]
        assert rows[name]["error"] is None, rows[name]
    assert data["health"]["zookeeper"].startswith("ok"), data["health"]
    leaders = [n for n in zk_members if "zookeeper leader" in (rows[n]["health"] or "")
               or "zookeeper standalone" in (rows[n]["health"] or "")]
    assert len(leaders) == 1, {n: rows[n]["health"] for n in zk_members}
    assert data["endpoints"]["zookeeper"] == ",".join(f"{_address(n)}:{ZK_PORT}" for n in zk_members)
    if spark:
        assert data["health"]["spark"].startswith("ok"), data["health"]
        assert data["endpoints"]["spark"] == f"spark://{_address(NAMES[0])}:7077"
        assert data["endpoints"]["spark_ui"].startswith(f"http://{_address(NAMES[0])}:")


def _phase(data: dict, name: str) -> dict:
    return next(p for p in data["phases"] if p["phase"] == name)


# ---------------------------------------------------------------- the tests, in order


def test_up_from_nothing_to_healthy(env):
    assert set(_ironic_states(env, NAMES).values()) == {None}
    t0 = time.monotonic()
    result = _cli(env, "cluster", "up")
    env["times"]["first up"] = time.monotonic() - t0
    if result.exit_code != EXIT_OK:
        _dump_zookeeper(env)
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    _check_healthy(data, NAMES, zk_members=ZK_MEMBERS, spark=True)
    assert [p["phase"] for p in data["phases"]] == ["images", "enroll", "deploy", "ssh", "configure", "health"]
    assert {o["action"] for o in _phase(data, "enroll")["report"]["nodes"]} == {"created"}
    deployed = _phase(data, "deploy")["report"]["nodes"]
    assert {o["action"] for o in deployed} == {"deployed"}
    print("\nfirst cluster up: " + ", ".join(f"{p['phase']} {p['seconds']} s" for p in data["phases"])
          + f"; total {env['times']['first up']:.1f} s")
    env["first_up"] = data

    run_dir = Path(data["run_dir"])
    assert run_dir.parent == env["state"] / CLUSTER / "runs"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verb"] == "cluster up" and report["exit_code"] == EXIT_OK
    trace = json.loads((run_dir / "trace.json").read_text())
    # The concurrency trace of the deploy phase is really there (not an empty placeholder).
    assert any(samples for samples in trace["deploy"].values()), trace

    listed = _cli(env, "runs", "list")
    assert listed.exit_code == 0, listed.output
    runs = {r["id"]: r for r in json.loads(listed.stdout)["runs"]}
    assert runs[run_dir.name]["verb"] == "cluster-up" and runs[run_dir.name]["exit_code"] == EXIT_OK
    shown = _cli(env, "runs", "show", run_dir.name)
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.stdout)
    assert record["report"]["nodes"] == data["nodes"]
    table = _cli(env, "runs", "show", "latest", json_out=False)
    assert table.exit_code == 0 and run_dir.name in table.stdout and "cup05" in table.stdout

    status = _cli(env, "cluster", "status")
    assert status.exit_code == EXIT_OK, status.output
    _check_healthy(json.loads(status.stdout), NAMES, zk_members=ZK_MEMBERS, spark=True)
    # Each node's agent deploy log: Ironic collected it, the run record keeps a copy, and
    # `cluster status` names the newest one.
    for row in data["nodes"]:
        kept = Path(row["deploy_log"] or "")
        assert kept.parent == run_dir / "hosts" / row["node"] and kept.stat().st_size > 0, row
    for row in json.loads(status.stdout)["nodes"]:
        assert (row["deploy_log"] or "").endswith(".tar.gz"), row


def test_second_up_is_a_no_op(env):
    pids = _zk_pids(env)
    assert all(pids.values()), pids
    t0 = time.monotonic()
    result = _cli(env, "cluster", "up")
    env["times"]["second up"] = elapsed = time.monotonic() - t0
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    _check_healthy(data, NAMES, zk_members=ZK_MEMBERS, spark=True)
    assert {o["action"] for o in _phase(data, "enroll")["report"]["nodes"]} == {"unchanged"}
    assert {o["action"] for o in _phase(data, "deploy")["report"]["nodes"]} == {"unchanged"}
    assert not [p for p in _phase(data, "deploy")["report"]["phases"] if p["phase"] == "active"]
    images = _phase(data, "images")["report"]["nodes"]
    assert {o["action"] for o in images} == {"unchanged"}
    configured = _phase(data, "configure")["report"]["nodes"]
    # One row per host and role: 3 zookeeper, 1 master, 2 workers (+ 3 Mesos masters, 2 agents).
    assert len(configured) == 6 + (5 if _MESOS[0] else 0)
    assert {o["action"] for o in configured} == {"unchanged"}
    assert _zk_pids(env) == pids
    first = env["times"]["first up"]
    print(f"\nsecond cluster up: {elapsed:.1f} s = {elapsed / first:.0%} of the first ({first:.1f} s); "
          + ", ".join(f"{p['phase']} {p['seconds']} s" for p in data["phases"]))


def test_dry_run_shows_the_plan_and_changes_nothing(env):
    # On the healthy cluster: the hosts say there is nothing to do (script hashes and
    # service states read from them, as the real run reads them).
    before = _ironic_states(env, NAMES)
    runs_before = sorted((env["state"] / CLUSTER / "runs").iterdir())
    result = _cli(env, "cluster", "up", "--dry-run")
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is True
    plans = {r["node"]: r["plan"] for r in data["nodes"]}
    assert plans == {name: "nothing to do" for name in NAMES}, plans
    assert data["health"]["zookeeper"].startswith("ok") and data["health"]["spark"].startswith("ok"), data
    assert _ironic_states(env, NAMES) == before
    assert sorted((env["state"] / CLUSTER / "runs").iterdir()) == runs_before

    # A worker whose service died: the plan names it and why, and the real run does
    # exactly that (and nothing else).
    # (Gone or a zombie, as the role scripts' own liveness test counts it.)
    # On systemd hosts a killed worker would be restarted by its unit: it is stopped, as an
    # operator or a unit that gave up leaves it.
    if lab_host_init() == "systemd":
        _ssh(env, NAMES[3], "systemctl stop k1prov-spark-worker.service")
    else:
        _ssh(env, NAMES[3], "read -r pid _ < /var/lib/k1prov/run/spark-worker.pid; kill -TERM -- -$pid; "
                            "for _ in $(seq 200); do [ -e /proc/$pid ] && [ \"$(cut -d' ' -f3 /proc/$pid/stat)\" != Z ] "
                            "|| exit 0; sleep 0.1; done; exit 1")
    data = json.loads(_cli(env, "cluster", "up", "--dry-run").stdout)
    plans = {r["node"]: r["plan"] for r in data["nodes"]}
    assert plans.pop(NAMES[3]) == "configure spark-worker (service stopped)"
    assert set(plans.values()) == {"nothing to do"}, plans
    up = _cli(env, "cluster", "up")
    assert up.exit_code == EXIT_OK, up.output
    configured = {(o["node"], o["changes"][0]): o["action"]
                  for o in _phase(json.loads(up.stdout), "configure")["report"]["nodes"]}
    assert configured.pop((NAMES[3], "spark-worker")) == "restarted"
    assert set(configured.values()) == {"unchanged"}, configured

    # A host that does not answer is reported as unreachable, not guessed: the same cluster
    # with cup05 at an address where nobody answers.
    moved = env["dir"] / "moved.yaml"
    moved.write_text(env["inv"].read_text().replace(_address(NAMES[4]), "10.251.0.254"))
    data = json.loads(_cli(env, "cluster", "up", "--dry-run", inv=moved).stdout)
    rows = {r["node"]: r for r in data["nodes"]}
    assert rows[NAMES[4]]["plan"].startswith("unreachable: "), rows[NAMES[4]]
    assert rows[NAMES[4]]["error"].startswith("unreachable: ")
    # (The others answer; what they would do depends on what the new address changes.)
    assert not [n for n in NAMES[:4] if "unreachable" in rows[n]["plan"]], rows
    assert data["exit_code"] == 3

    # On a cluster that does not exist yet: everything to create, and still nothing created.
    table = _cli(env, "cluster", "up", "--dry-run", inv=env["second"], json_out=False)
    assert table.exit_code == EXIT_OK, table.output
    assert "nothing changed" in table.stdout and "create in Ironic" in table.stdout
    fresh = json.loads(_cli(env, "cluster", "up", "--dry-run", inv=env["second"]).stdout)
    for row in fresh["nodes"]:
        assert row["provision_state"] == "not enrolled"
        assert row["plan"].startswith("create in Ironic; manage; provide; deploy")
    assert set(_ironic_states(env, SECOND_NAMES).values()) == {None}
    assert glance.list_own_images(env["conn"], SECOND) == []


def test_second_run_waits_for_no_one_and_names_the_lock_holder(env):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from k1prov.lock import cluster_lock
        with cluster_lock(Path({str(env['state'] / CLUSTER)!r}), verb="cluster up", wait=0):
            print("held", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        result = _cli(env, "cluster", "up")
        assert time.monotonic() - t0 < LOCK_HOLDER_TIMEOUT
        assert result.exit_code == 1, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: cluster cuptest is locked by k1prov cluster up "
                                   f"(pid {holder.pid} "), lines[0]
        assert result.stdout == ""
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=LOCK_HOLDER_TIMEOUT)


@pytest.mark.timeout(REBUILD_TEST_TIMEOUT)
def test_rebuild_keeps_the_zookeeper_quorum(env):
    for name in NAMES:
        _ssh(env, name, "echo before-rebuild > /root/marker")
    addresses = {name: _address(name) for name in ZK_MEMBERS}
    assert all(m in ("leader", "follower") for m in map(_zk_mode, addresses.values()))
    mesos = _MESOS[0]
    if mesos:
        masters = {name: _address(name) for name in MESOS_MASTERS}
        leader = [n for n, a in masters.items() if _mesos_mode(a) == "leader"]
        assert len(leader) == 1, leader
        agents_before = _mesos_agents(masters[leader[0]])
        assert sorted(agents_before) == sorted(MESOS_AGENTS), agents_before
    done = threading.Event()
    outcome: dict = {}

    def rebuild() -> None:
        try:
            outcome["report"] = Provisioner(load_inventory(env["inv"]),
                                            state_root=env["state"]).cluster_rebuild()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc
        finally:
            done.set()

    polls: list[tuple[float, dict[str, str]]] = []
    mesos_polls: list[tuple[float, dict[str, str]]] = []
    t0 = time.monotonic()
    worker = threading.Thread(target=rebuild, name="rebuild", daemon=True)
    worker.start()
    if mesos:
        # The Mesos masters on a loop of their own: a slow answer must not slow the ZooKeeper polls.
        mesos_poller = threading.Thread(target=_poll_mesos, args=(masters, done, t0, mesos_polls),
                                        name="mesos-poll", daemon=True)
        mesos_poller.start()
    with ThreadPoolExecutor(len(addresses)) as pool:
        while not done.is_set() and time.monotonic() - t0 < REBUILD_TIMEOUT:
            started = time.monotonic()
            modes = dict(zip(addresses, pool.map(_zk_mode, addresses.values())))
            polls.append((started - t0, modes))
            time.sleep(max(0.0, ZK_POLL_INTERVAL - (time.monotonic() - started)))
    worker.join(timeout=REBUILD_TIMEOUT)
    env["times"]["rebuild"] = elapsed = time.monotonic() - t0
    if mesos:
        mesos_poller.join(timeout=REBUILD_TIMEOUT)
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    data = report.to_dict()
    assert report.exit_code() == EXIT_OK, json.dumps(data, indent=1, default=str)[:4000]

    def serving(modes: dict[str, str]) -> int:
        return sum(m in ("leader", "follower") for m in modes.values())

    changes = [f"{t:6.1f}s " + " ".join(f"{n}={m}" for n, m in modes.items())
               for i, (t, modes) in enumerate(polls) if i == 0 or modes != polls[i - 1][1]]
    print(f"\nrebuild: {elapsed:.1f} s, {len(polls)} ZooKeeper polls; mode changes:\n  " + "\n  ".join(changes))
    print("rebuild phases: " + ", ".join(f"{p['phase']} {p['seconds']} s" for p in data["phases"]))
    assert len(polls) >= elapsed / (ZK_POLL_INTERVAL + 2 * ZK_CONNECT_TIMEOUT)
    # Every member was really down at some point (it was rebuilt), and never two at once.
    for name in ZK_MEMBERS:
        assert any(modes[name] not in ("leader", "follower") for _, modes in polls), name
    # A majority of the members runs at every poll: never two rebuilt at once.
    down = [(t, modes) for t, modes in polls if sum(not m.startswith("down") for m in modes.values()) < 2]
    assert not down, down
    # A majority serves at every poll but during one leader election: ZooKeeper has no
    # leadership transfer, so rebuilding the leader always costs one election; cluster
    # rebuild takes the leader last so that it costs only that one (not one per member).
    lost = [t for t, modes in polls if serving(modes) < 2]
    windows = [t for i, t in enumerate(lost) if i == 0 or t - lost[i - 1] > 2 * ZK_POLL_INTERVAL + 2]
    assert len(windows) <= 1, lost
    assert not lost or lost[-1] - lost[0] <= ELECTION_MAX_SECONDS, lost
    print(f"polls without a serving majority (the one election): {len(lost)}")

    if mesos:
        _check_mesos_rebuild(mesos_polls, masters, agents_before)

    for name in NAMES:
        gone = _ssh(env, name, "test -e /root/marker", check=False)
        assert gone.returncode == 1, (name, gone.stderr)
    status = _cli(env, "cluster", "status")
    assert status.exit_code == EXIT_OK, status.output
    _check_healthy(json.loads(status.stdout), NAMES, zk_members=ZK_MEMBERS, spark=True)


def _check_mesos_rebuild(polls: list[tuple[float, dict[str, str]]], masters: dict[str, str],
                         agents_before: dict[str, dict]) -> None:
    """The Mesos masters during the rebuild: each was down at some point (it was reimaged);
    at every poll two of them were up with their replicated log caught up (the log's
    quorum of 2 kept: a reimaged master's empty replica counts only once it has caught up);
    afterwards one leader, and both reimaged agents registered again (as new agents: their
    work directories are gone)."""
    # The changes of mode (why a master was down is left out: it varies from poll to poll).
    shown = [(t, {n: m.split(" (")[0] for n, m in modes.items()}) for t, modes in polls]
    changes = [f"{t:6.1f}s " + " ".join(f"{n}={m}" for n, m in modes.items())
               for i, (t, modes) in enumerate(shown) if i == 0 or modes != shown[i - 1][1]]
    leaderless = [t for t, modes in polls if "leader" not in modes.values()]
    windows = [t for i, t in enumerate(leaderless) if i == 0 or t - leaderless[i - 1] > 2 * ZK_POLL_INTERVAL + 2]
    print(f"\nMesos masters: {len(polls)} polls; mode changes:\n  " + "\n  ".join(changes))
    print(f"polls without a leading master: {len(leaderless)}, in {len(windows)} window(s) starting at "
          + ", ".join(f"{t:.1f} s" for t in windows))
    for name in masters:
        assert any(modes[name].startswith("down") for _, modes in polls), name
    no_quorum = [(t, modes) for t, modes in polls
                 if sum(m in ("leader", "standby") for m in modes.values()) < 2]
    assert not no_quorum, no_quorum
    leader = [n for n, a in masters.items() if _mesos_mode(a) == "leader"]
    assert len(leader) == 1, leader
    agents = _mesos_agents(masters[leader[0]])
    assert sorted(agents) == sorted(MESOS_AGENTS), agents
    for name, agent in agents.items():
        assert agent["id"] != agents_before[name]["id"], (name, "the reimaged agent registered anew")


def test_down_needs_yes_without_a_terminal_then_undeploys(env):
    refused = _cli(env, "cluster", "down", json_out=False)
    assert refused.exit_code == EXIT_INPUT, refused.output
    assert "--yes" in refused.stderr
    assert set(_ironic_states(env, NAMES).values()) == {"active"}

    t0 = time.monotonic()
    result = _cli(env, "cluster", "down", "--yes")
    env["times"]["down"] = time.monotonic() - t0
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert _phase(data, "stop services")["note"] == f"stopped services on {len(NAMES)} node(s)"
    assert {o["action"] for o in _phase(data, "undeploy")["report"]["nodes"]} == {"undeployed"}
    _wait_hosts_gone(env, NAMES)
    # Undeployed, not deleted: the nodes and the images stay for the next `cluster up`.
    assert set(_ironic_states(env, NAMES).values()) == {"available"}
    assert len(glance.list_own_images(env["conn"], CLUSTER)) == 3


def _k1prov_command() -> list[str]:
    exe = Path(sys.executable).parent / "k1prov"
    assert exe.is_file(), f"no k1prov entry point next to {sys.executable}"
    return [str(exe)]


def test_ctrl_c_during_deploy_then_rerun_finishes(env):
    """From undeployed nodes (cluster down above): the run reaches its deploy phase at once."""
    inv = env["inv"]
    out_path, err_path = env["dir"] / "interrupted.out", env["dir"] / "interrupted.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        # preexec_fn: a test run started in the background has SIGINT ignored (bash does that
        # to background jobs) and the child would inherit it; an operator's terminal has not.
        proc = subprocess.Popen([*_k1prov_command(), "cluster", "up", "-i", str(inv)],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                                env={**os.environ, "K1PROV_STATE_DIR": str(env["state"]), "COLUMNS": "160"})
    try:
        deadline = time.monotonic() + DEPLOY_SEEN_TIMEOUT
        seen: dict[str, str | None] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            seen = _ironic_states(env, NAMES)
            if any(st in ("deploying", "wait call-back", "active") for st in seen.values()):
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"cluster up ended before its deploy phase: {err_path.read_text()}"
        assert any(st in ("deploying", "wait call-back", "active") for st in seen.values()), seen
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=INTERRUPT_EXIT_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    stderr = err_path.read_text()
    print(f"\ninterrupted at Ironic states {seen}; exit {code}")
    assert code == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr
    # The interrupted run left its record, marked with exit 130, and released the lock.
    runs = json.loads(_cli(env, "runs", "list", inv=inv).stdout)["runs"]
    assert runs[0]["verb"] == "cluster-up" and runs[0]["exit_code"] == EXIT_INTERRUPTED, runs
    with cluster_lock(env["state"] / CLUSTER, verb="test", wait=0):
        pass

    t0 = time.monotonic()
    again = _cli(env, "cluster", "up", inv=inv)
    env["times"]["re-run after Ctrl-C"] = time.monotonic() - t0
    assert again.exit_code == EXIT_OK, again.output
    data = json.loads(again.stdout)
    _check_healthy(data, NAMES, zk_members=ZK_MEMBERS, spark=True)
    # The re-run continued from the real state: nothing enrolled or uploaded again, and the
    # nodes the interrupted run had sent to `active` were not deployed a second time.
    assert {o["action"] for o in _phase(data, "enroll")["report"]["nodes"]} == {"unchanged"}
    assert {o["action"] for o in _phase(data, "images")["report"]["nodes"]} == {"unchanged"}
    redeployed = {o["node"] for o in _phase(data, "deploy")["report"]["nodes"] if o["action"] == "deployed"}
    assert not redeployed & {n for n, st in seen.items() if st == "active"}


def test_down_unenroll_leaves_nothing(env):
    t0 = time.monotonic()
    result = _cli(env, "cluster", "down", "--unenroll", "--yes")
    env["times"]["down --unenroll"] = time.monotonic() - t0
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert _phase(data, "stop services")["note"] == f"stopped services on {len(NAMES)} node(s)"
    assert {o["action"] for o in _phase(data, "undeploy")["report"]["nodes"]} == {"undeployed"}
    assert {o["action"] for o in _phase(data, "delete nodes")["report"]["nodes"]} == {"deleted"}
    assert _phase(data, "delete images")["note"] == "3 image(s) deleted"
    _wait_hosts_gone(env, NAMES)
    assert set(_ironic_states(env, NAMES).values()) == {None}
    assert glance.list_own_images(env["conn"], CLUSTER) == []

    # Down of what is already gone is a clean no-op.
    again = _cli(env, "cluster", "down", "--unenroll", "--yes")
    assert again.exit_code == EXIT_OK, again.output
