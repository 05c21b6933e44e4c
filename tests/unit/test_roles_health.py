"""Health checks over a fake runner, and one ZooKeeper srvr exchange over real TCP."""
from __future__ import annotations

import json
import socket
import subprocess
import threading

import pytest

from k1prov.inventory.model import Bmc, Node, SecretRef
from k1prov.roles import mesos_health, spark_workers_health, wait_until_healthy, zookeeper_health
from k1prov.roles.health import HealthResult, _zk_command


def node(name: str, address: str) -> Node:
    return Node(name=name, index=0, bmc=Bmc("127.0.0.1", 6230, "admin", SecretRef(env="X")), macs=(),
                address=address, roles=())


ZK = [node("z1", "10.0.0.1"), node("z2", "10.0.0.2"), node("z3", "10.0.0.3")]


def srvr(mode: str) -> str:
    return f"Zookeeper version: 3.8.4\nLatency min/avg/max: 0/0.1/3\nMode: {mode}\nNode count: 5\n"


def runner(answers: dict[str, tuple[int, str]], seen: list | None = None):
    def run(n: Node, command: str) -> tuple[int, str]:
        if seen is not None:
            seen.append((n.name, command))
        return answers.get(n.name, (1, ""))
    return run


def test_zookeeper_one_leader_two_followers():
    seen: list = []
    result = zookeeper_health(ZK, runner({"z1": (0, srvr("follower")), "z2": (0, srvr("leader")),
                                          "z3": (0, srvr("follower"))}, seen))
    assert result.ok and result.summary == "leader z2"
    assert result.states == {"z1": "follower", "z2": "leader", "z3": "follower"}
    assert all("srvr" in cmd and "127.0.0.1 2181" in cmd for _, cmd in seen)


@pytest.mark.parametrize("answers,problem", [
    ({"z1": (0, srvr("leader")), "z2": (0, srvr("leader")), "z3": (0, srvr("follower"))},
     "expected exactly one leader, found 2 (z1, z2)"),
    ({"z1": (0, srvr("follower")), "z2": (0, srvr("follower")), "z3": (0, srvr("follower"))},
     "expected exactly one leader, found 0"),
    ({"z1": (0, srvr("leader")), "z2": (0, srvr("follower")), "z3": (1, "")},
     "z3: no answer to srvr on port 2181"),
    ({"z1": (0, srvr("leader")), "z2": (0, srvr("follower")),
      "z3": (0, "This ZooKeeper instance is not currently serving requests\n")},
     "z3: no answer to srvr on port 2181"),
])
def test_zookeeper_unhealthy(answers, problem):
    result = zookeeper_health(ZK, runner(answers))
    assert not result.ok
    assert problem in result.problems


def test_zookeeper_single_member_standalone():
    assert zookeeper_health(ZK[:1], runner({"z1": (0, srvr("standalone"))})).ok


def test_zookeeper_command_talks_srvr_over_tcp():
    """The command itself, run by bash against a local listener that answers like ZooKeeper."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    port = server.getsockname()[1]
    received = []

    def answer():
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(16))
            conn.sendall(srvr("leader").encode())

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        proc = subprocess.run(["bash", "-c", _zk_command(port)], capture_output=True, text=True, timeout=20)
    finally:
        thread.join(timeout=10)
        server.close()
    assert received == [b"srvr"]
    assert "Mode: leader" in proc.stdout


MASTERS = [node("m1", "10.0.0.1"), node("m2", "10.0.0.2"), node("m3", "10.0.0.3")]
AGENTS = [node("a1", "10.0.1.1"), node("a2", "10.0.1.2")]


def state(pid: str, leader: str, slaves=()) -> tuple[int, str]:
    return 0, json.dumps({"pid": pid, "leader": leader, "slaves": list(slaves)})


def test_mesos_leader_and_agents():
    slaves = [{"hostname": "a1", "pid": "slave(1)@10.0.1.1:5051", "active": True},
              {"hostname": "10.0.1.2", "pid": "slave(1)@10.0.1.2:5051", "active": True}]
    answers = {"m1": state("master@10.0.0.1:5050", "master@10.0.0.2:5050"),
               "m2": state("master@10.0.0.2:5050", "master@10.0.0.2:5050", slaves),
               "m3": state("master@10.0.0.3:5050", "master@10.0.0.2:5050")}
    seen: list = []
    result = mesos_health(MASTERS, runner(answers, seen), agents=AGENTS)
    assert result.ok, result.problems
    assert result.states == {"m1": "standby", "m2": "leader", "m3": "standby", "a1": "registered",
                             "a2": "registered"}
    assert ("m2", "curl -sfL --max-time 5 http://10.0.0.2:5050/state") in seen


def test_mesos_split_brain_and_missing_agent():
    answers = {"m1": state("master@10.0.0.1:5050", "master@10.0.0.1:5050"),
               "m2": state("master@10.0.0.2:5050", "master@10.0.0.2:5050",
                           [{"hostname": "a1", "pid": "slave(1)@10.0.1.1:5051", "active": True}]),
               "m3": (7, "")}
    result = mesos_health(MASTERS, runner(answers), agents=AGENTS)
    assert not result.ok
    assert any(p.startswith("masters report 2 leaders") for p in result.problems)
    assert "m3: no /state on port 5050" in result.problems


def test_mesos_leader_outside_inventory():
    answers = {m.name: state(f"master@{m.address}:5050", "master@10.9.9.9:5050") for m in MASTERS}
    result = mesos_health(MASTERS, runner(answers))
    assert result.problems == ("leader master@10.9.9.9:5050 is not one of the inventory's masters",)


def spark_json(status: str, hosts: list[str]) -> tuple[int, str]:
    return 0, json.dumps({"status": status, "workers": [{"host": h, "state": "ALIVE"} for h in hosts]})


def test_spark_workers_registered_with_the_alive_master():
    answers = {"m1": spark_json("STANDBY", []), "m2": spark_json("ALIVE", ["10.0.1.1", "10.0.1.2"])}
    result = spark_workers_health(MASTERS[:2], AGENTS, runner(answers))
    assert result.ok and result.summary == "master m2"
    assert result.states["m1"] == "standby"


def test_spark_worker_missing():
    result = spark_workers_health(MASTERS[:1], AGENTS, runner({"m1": spark_json("ALIVE", ["10.0.1.1"])}))
    assert result.problems == ("a2: worker not registered with m1",)


def test_spark_falls_back_to_the_master_log(tmp_path):
    """The log command runs for real (bash, grep) over a master log in tmp_path."""
    log = tmp_path / "spark master.log"
    log.write_text("25/01/01 INFO Master: Registering worker 10.0.1.1:40123 with 8 cores, 30.0 GiB RAM\n"
                   "25/01/01 INFO Master: Registering worker 10.0.1.2:40999 with 8 cores, 30.0 GiB RAM\n")

    def run(n: Node, command: str):
        if command.startswith("curl"):
            return 7, ""
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=10)
        return proc.returncode, proc.stdout

    result = spark_workers_health(MASTERS[:1], AGENTS, run, log_files=(str(log),))
    assert result.ok, result.problems
    assert result.states == {"m1": "alive (from log)", "a1": "registered", "a2": "registered"}
    log.write_text("25/01/01 INFO Master: Registering worker 10.0.1.1:40123 with 8 cores\n")
    result = spark_workers_health(MASTERS[:1], AGENTS, run, log_files=(str(log),))
    assert result.problems == ("a2: worker not registered with m1",)


def test_no_spark_master_alive():
    result = spark_workers_health(MASTERS[:1], AGENTS, runner({}))
    assert result.problems == ("no Spark master is ALIVE",)


def test_wait_until_healthy_retries_then_gives_up_on_time():
    now = [0.0]
    results = iter([HealthResult(False, "no"), HealthResult(False, "no"), HealthResult(True, "yes")])
    got = wait_until_healthy(lambda: next(results), health_timeout=10, interval=2,
                             sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert got.ok and now[0] == 4
    now[0] = 0.0
    calls = []

    def never() -> HealthResult:
        calls.append(now[0])
        return HealthResult(False, "no")

    got = wait_until_healthy(never, health_timeout=5, interval=2,
                             sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert not got.ok and calls == [0.0, 2.0, 4.0]
