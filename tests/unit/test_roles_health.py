"""Health checks over a fake runner, and one ZooKeeper srvr exchange over real TCP."""
from __future__ import annotations

import json
import socket
import subprocess
import threading

import pytest

from k1prov.inventory.model import Bmc, Node, SecretRef
from k1prov.roles import mesos_health, spark_workers_health, wait_until_healthy, zookeeper_health
from k1prov.roles.health import (HealthResult, _zk_command, batch_command, commands_of, parse_batch, replay,
                                 sample, wait_until_all_healthy)


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
    assert all("srvr" in cmd and "/dev/tcp/127.0.0.1/2181" in cmd for _, cmd in seen)


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


def test_zookeeper_member_without_myid_is_data_lost_whatever_it_answers(tmp_path):
    """A wiped data directory (issue 23, fault 7): the member still answers srvr from memory,
    but it has lost its identity and its snapshots. The myid command itself runs in bash
    against real directories."""
    from k1prov.roles.health import DATA_LOST, _zk_myid_command

    intact, wiped, gone = tmp_path / "intact", tmp_path / "wiped", tmp_path / "gone"
    intact.mkdir()
    (intact / "myid").write_text("1\n")
    wiped.mkdir()

    def myid(d) -> str:
        return subprocess.run(["bash", "-c", _zk_myid_command(str(d))], capture_output=True, text=True,
                              timeout=10).stdout.strip()

    assert [myid(intact), myid(wiped), myid(gone)] == ["present", "missing", "missing"]

    def run(n: Node, command: str) -> tuple[int, str]:
        if "srvr" in command:
            return 0, srvr("leader" if n.name == "z2" else "follower")
        assert "/var/lib/zookeeper/myid" in command, command
        return 0, "missing\n" if n.name == "z3" else "present\n"

    result = zookeeper_health(ZK, run, data_dir="/var/lib/zookeeper")
    assert not result.ok and result.states == {"z1": "follower", "z2": "leader", "z3": DATA_LOST}
    # The same through `sample` (one batch per host: the commands a check sends when no
    # host answers), as `cluster status` and configure's gates look.
    sampled = sample({"zookeeper": lambda r: zookeeper_health(ZK, r, data_dir="/var/lib/zookeeper")},
                     lambda wanted: {name: [run(node, c) for c in cmds] for name, (node, cmds) in wanted.items()})
    assert sampled["zookeeper"].states["z3"] == DATA_LOST
    assert any(p.startswith("z3: no myid in /var/lib/zookeeper") for p in result.problems), result.problems
    # A user who cannot look into the directory learns nothing: no verdict from it.
    unknown = zookeeper_health(ZK, lambda n, c: (0, srvr("leader" if n.name == "z2" else "follower"))
                               if "srvr" in c else (0, "unknown\n"), data_dir="/var/lib/zookeeper")
    assert unknown.ok


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
    """A master's answer to /state: the leader's JSON, or a standby's redirect to it."""
    if pid != leader:
        return 0, f"\nK1PROV-HTTP 307 http://{leader.partition('@')[2]}/master/state"
    return 0, json.dumps({"pid": pid, "leader": leader, "slaves": list(slaves)}) + "\nK1PROV-HTTP 200 "


def test_mesos_leader_and_agents():
    slaves = [{"hostname": "a1", "pid": "slave(1)@10.0.1.1:5051", "active": True,
               "resources": {"cpus": 2.0, "mem": 1536.0, "disk": 2048.0, "gpus": 0.0, "ports": "[31000-32000]"}},
              {"hostname": "10.0.1.2", "pid": "slave(1)@10.0.1.2:5051", "active": True}]
    answers = {"m1": state("master@10.0.0.1:5050", "master@10.0.0.2:5050"),
               "m2": state("master@10.0.0.2:5050", "master@10.0.0.2:5050", slaves),
               "m3": state("master@10.0.0.3:5050", "master@10.0.0.2:5050")}
    seen: list = []
    result = mesos_health(MASTERS, runner(answers, seen), agents=AGENTS)
    assert result.ok, result.problems
    assert result.states == {"m1": "standby", "m2": "leader", "m3": "standby",
                             "a1": "registered cpus:2;mem:1536;disk:2048", "a2": "registered"}
    assert result.summary == "leader m2 (master@10.0.0.2:5050), 2/2 agents (cpus:2;mem:1536;disk:2048)"
    # Redirects are not followed: a standby would otherwise answer with the leader's state.
    command = next(c for n, c in seen if n == "m2")
    assert "http://10.0.0.2:5050/state" in command and "-L" not in command.split()


def test_mesos_split_brain_and_missing_agent():
    answers = {"m1": state("master@10.0.0.1:5050", "master@10.0.0.1:5050"),
               "m2": state("master@10.0.0.2:5050", "master@10.0.0.2:5050",
                           [{"hostname": "a1", "pid": "slave(1)@10.0.1.1:5051", "active": True}]),
               "m3": (7, "")}
    result = mesos_health(MASTERS, runner(answers), agents=AGENTS)
    assert not result.ok
    assert "2 masters answer as leader (m1, m2)" in result.problems
    assert "m3: no /state on port 5050" in result.problems


def test_mesos_no_leader_elected_yet():
    answers = {m.name: (0, "No leader elected\nK1PROV-HTTP 503 ") for m in MASTERS}
    result = mesos_health(MASTERS, runner(answers), agents=AGENTS)
    assert not result.ok and result.summary == "no single leader"
    assert set(result.states.values()) == {"no leader"}
    assert "cannot check agents: no master answered as leader" in result.problems


def test_mesos_agent_registered_with_a_standby_only_is_missing():
    answers = {"m1": state("master@10.0.0.1:5050", "master@10.0.0.1:5050",
                           [{"hostname": "a1", "pid": "slave(1)@10.0.1.1:5051", "active": False}]),
               "m2": state("master@10.0.0.2:5050", "master@10.0.0.1:5050"),
               "m3": state("master@10.0.0.3:5050", "master@10.0.0.1:5050")}
    result = mesos_health(MASTERS, runner(answers), agents=AGENTS[:1])
    assert result.problems == ("a1: agent not registered with the leading master",)


def test_mesos_leader_outside_inventory():
    answers = {m.name: (0, json.dumps({"pid": "master@10.9.9.9:5050", "leader": "master@10.9.9.9:5050"})
                        + "\nK1PROV-HTTP 200 ") for m in MASTERS[:1]}
    result = mesos_health(MASTERS[:1], runner(answers))
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


# ---- the final verdict: several checks, one bounded wait ---------------------------------

def fake_clock():
    now = [0.0]
    return now, (lambda s: now.__setitem__(0, now[0] + s)), (lambda: now[0])


def test_wait_until_all_healthy_waits_out_an_election():
    """A ZooKeeper ensemble in the middle of an election for two samples, then healthy:
    the verdict is healthy (one unhealthy sample is not a verdict)."""
    now, sleep, clock = fake_clock()
    samples = iter([{"zookeeper": HealthResult(False, "no single leader"), "spark": HealthResult(True, "master m1")},
                    {"zookeeper": HealthResult(False, "no single leader"), "spark": HealthResult(True, "master m1")},
                    {"zookeeper": HealthResult(True, "leader z2"), "spark": HealthResult(True, "master m1")}])
    got = wait_until_all_healthy(lambda: next(samples), health_timeout=120, interval=2, sleep=sleep, clock=clock)
    assert all(r.ok for r in got.values()) and got["zookeeper"].summary == "leader z2"
    assert now[0] == 4


def test_wait_until_all_healthy_gives_up_after_its_timeout():
    now, sleep, clock = fake_clock()
    seen: list[float] = []

    def never() -> dict[str, HealthResult]:
        seen.append(now[0])
        return {"zookeeper": HealthResult(False, "no single leader"), "spark": HealthResult(True, "master m1")}

    got = wait_until_all_healthy(never, health_timeout=9, interval=2, sleep=sleep, clock=clock)
    assert not got["zookeeper"].ok and got["zookeeper"].summary == "no single leader"
    # Bounded: the sample at 8 is the last (another 2 s would pass the 9 s timeout).
    assert seen == [0.0, 2.0, 4.0, 6.0, 8.0] and now[0] <= 9


def test_wait_until_all_healthy_healthy_at_once_takes_one_sample():
    now, sleep, clock = fake_clock()
    calls = []
    got = wait_until_all_healthy(lambda: calls.append(1) or {"zookeeper": HealthResult(True, "leader z1")},
                                 health_timeout=120, sleep=sleep, clock=clock)
    assert got["zookeeper"].ok and calls == [1] and now[0] == 0


# ---- batched sampling -------------------------------------------------------------------

def test_batch_command_runs_each_command_and_parse_batch_reads_outputs_and_exit_codes():
    """For real, in bash: outputs with and without a final newline, empty, non-zero exits,
    a command that reads stdin (gets /dev/null), quotes."""
    commands = ["printf 'Mode: leader\\nNode count: 5\\n'", "printf 'no newline'; exit 3", "true",
                "cat; echo \"it's $((6 * 7))\"", "false"]
    proc = subprocess.run(["sh", "-c", batch_command(commands)], capture_output=True, text=True,
                          timeout=10, input="must not be read\n")
    assert proc.returncode == 0, proc.stderr
    assert parse_batch(proc.stdout, len(commands)) == [
        (0, "Mode: leader\nNode count: 5\n"), (3, "no newline"), (0, ""), (0, "it's 42\n"), (1, "")]


def test_parse_batch_of_a_batch_cut_short_counts_the_missing_as_failed():
    assert parse_batch("Mode: leader\n\nK1PROV-PROBE 0 0\npartial", 3) == [(0, "Mode: leader\n"), (255, ""),
                                                                           (255, "")]
    assert parse_batch("", 2) == [(255, ""), (255, "")]


def _scenarios():
    zk_answers = {"z1": (0, srvr("follower")), "z2": (0, srvr("leader")), "z3": (1, "")}
    slaves = [{"hostname": "a1", "pid": "slave(1)@10.0.1.1:5051", "active": True}]
    mesos = {"m1": state("master@10.0.0.1:5050", "master@10.0.0.1:5050", slaves),
             "m2": state("master@10.0.0.2:5050", "master@10.0.0.1:5050")}
    spark = {"m1": spark_json("STANDBY", []), "m2": spark_json("ALIVE", ["10.0.1.1"])}
    return [
        (lambda run: zookeeper_health(ZK, run), zk_answers),
        (lambda run: zookeeper_health(ZK, run), {n: (0, srvr("follower")) for n in ("z1", "z2", "z3")}),
        (lambda run: mesos_health(MASTERS[:2], run, agents=AGENTS), mesos),
        (lambda run: mesos_health(MASTERS[:2], run, agents=AGENTS), {}),
        (lambda run: spark_workers_health(MASTERS[:2], AGENTS, run), spark),
        (lambda run: spark_workers_health(MASTERS[:2], AGENTS, run), {}),
    ]


@pytest.mark.parametrize("index", range(6))
def test_sample_in_one_batch_per_host_gives_what_the_checks_give_one_command_at_a_time(index):
    """commands_of (the commands sent when nothing answers) covers every command a check
    sends whatever the answers: a batched sample equals the check run command by command."""
    check, answers = _scenarios()[index]
    by_command = runner(answers)
    direct = check(by_command)
    batches: list[str] = []

    def run_batch(wanted):
        batches.extend(wanted)
        return {name: [by_command(node, cmd) for cmd in cmds] for name, (node, cmds) in wanted.items()}

    assert sample({"g": check}, run_batch) == {"g": direct}
    assert len(batches) == len(set(batches))     # one batch per host


def test_sample_counts_a_host_that_does_not_answer_as_unreachable():
    got = sample({"zookeeper": lambda run: zookeeper_health(ZK, run)},
                 lambda wanted: {"z1": [(0, srvr("leader"))], "z2": [(0, srvr("follower"))], "z3": None})
    assert got["zookeeper"].states == {"z1": "leader", "z2": "follower", "z3": "unreachable"}
    assert not got["zookeeper"].ok


def test_replay_answers_from_an_earlier_read_and_misses_what_was_not_read():
    cmd = commands_of(lambda run: zookeeper_health(ZK, run))[0][1]
    read = {("z1", cmd): (0, srvr("leader")), ("z2", cmd): (0, srvr("follower")),
            ("z3", cmd): (0, srvr("follower"))}
    got = sample({"zookeeper": lambda run: zookeeper_health(ZK, run)}, replay(read))
    assert got["zookeeper"].ok and got["zookeeper"].summary == "leader z1"
    read.pop(("z3", cmd))
    got = sample({"zookeeper": lambda run: zookeeper_health(ZK, run)}, replay(read))
    assert got["zookeeper"].states["z3"] == "unreachable"


def test_mesos_master_whose_log_has_not_caught_up_is_not_healthy_yet():
    """A reimaged master answers (a standby) before its empty replica has caught up; the
    gates wait for it (another master down before then leaves the log without a quorum)."""
    def metrics(recovered: float) -> tuple[int, str]:
        return 0, json.dumps({"master/elected": 0.0, "registrar/log/recovered": recovered})

    answers = {"m1": state("master@10.0.0.1:5050", "master@10.0.0.2:5050"),
               "m2": state("master@10.0.0.2:5050", "master@10.0.0.2:5050"),
               "m3": state("master@10.0.0.3:5050", "master@10.0.0.2:5050")}
    recovered = {"m1": 0.0, "m2": 1.0, "m3": 1.0}

    def run(n: Node, command: str) -> tuple[int, str]:
        return metrics(recovered[n.name]) if "/metrics/snapshot" in command else answers[n.name]

    result = mesos_health(MASTERS, run)
    assert not result.ok
    assert result.problems == ("m1: its replicated log has not caught up with the other masters yet "
                               "(registrar/log/recovered 0)",)
    assert result.states == {"m1": "standby (log catching up)", "m2": "leader", "m3": "standby"}
    recovered["m1"] = 1.0
    assert mesos_health(MASTERS, run).ok
