"""Tests of `bench kmeans --contention`'s competing framework: the levels, the release
pattern and the holder's offers (k1prov.bench.drf_frameworks), what it held during a
submit, and the Competitor's start, waits and teardown over a fake transport."""
from __future__ import annotations

import json
import threading

import pytest

import k1prov.bench.contention as ct
from k1prov.bench import drf_frameworks as fw
from k1prov.bench.drf import SCRIPT
from k1prov.context import VerbContext
from k1prov.errors import ConfigError, TransportError
from k1prov.inventory import parse_inventory
from k1prov.settings import DEFAULT_TIMEOUTS
from k1prov.ssh import CommandResult, SshTarget

LAB_AGENTS = [{"id": "A", "name": "ma1", "cpus": 2.0, "mem": 1536.0},
              {"id": "B", "name": "ma2", "cpus": 2.0, "mem": 1536.0}]


# ---- levels -----------------------------------------------------------------------------

def test_parse_levels_in_order_without_repeats():
    assert ct.parse_levels("0, 0.5,0.75,0.5") == (0.0, 0.5, 0.75)
    assert ct.parse_levels("0.25") == (0.25,)


@pytest.mark.parametrize("text, says", [
    ("", "no level"), ("x", "not a number"), ("1", "below 1"), ("-0.125", "at least 0"),
    ("0.3", "0.25 or 0.375"),
])
def test_parse_levels_refuses(text, says):
    with pytest.raises(ConfigError, match=says):
        ct.parse_levels(text)


def test_levels_follow_the_number_of_tasks_per_agent():
    assert ct.parse_levels("0.3", slots_per_agent=10) == (0.3,)


# ---- what the holder keeps, and the release pattern ---------------------------------------

def test_the_holder_keeps_whole_eighths_of_every_agent():
    assert fw.agent_slots(2.0, 1536.0, 0.5, 8) == (4, 0.25, 192.0)
    assert fw.agent_slots(2.0, 1536.0, 0.75, 8) == (6, 0.25, 192.0)
    plan, target = fw.hold_plan(LAB_AGENTS, 0.5, 8)
    assert [(p["id"], p["tasks"]) for p in plan] == [("A", 4), ("B", 4)]
    assert target == {"cpus": 2.0, "mem": 1536.0}


def release_times(agents: int, slots: int, every: float, horizon: float) -> list[tuple[float, int]]:
    """(end time, agent) of every task over `horizon` s when each ending task is replaced at once."""
    total = agents * slots
    ends = [(fw.first_hold_seconds(a, j, agents, every), a) for a in range(agents) for j in range(slots)]
    found = []
    while ends:
        ends.sort()
        t, agent = ends.pop(0)
        if t > horizon:
            break
        found.append((t, agent))
        ends.append((t + fw.steady_hold_seconds(total, every), agent))
    return found


def test_one_task_ends_every_release_interval_agents_in_turn():
    times = release_times(agents=2, slots=4, every=4.0, horizon=100.0)
    assert [t for t, _ in times] == [4.0 * k for k in range(1, 26)]
    assert [a for _, a in times[:6]] == [0, 1, 0, 1, 0, 1]
    # Every task lives the same time in the steady state: 8 tasks, one ending every 4 s.
    assert fw.steady_hold_seconds(8, 4.0) == 32.0


def test_first_fill_durations_interleave_the_agents():
    assert [fw.first_hold_seconds(a, j, 2, 4.0) for j in range(3) for a in range(2)] == [4, 8, 12, 16, 20, 24]


class Calls:
    def __init__(self):
        self.bodies = []

    def __call__(self, body):
        self.bodies.append(body)


def holder(fraction=0.5):
    plan, _ = fw.hold_plan(LAB_AGENTS, fraction, 8)
    go, stop = threading.Event(), threading.Event()
    h = fw.Holder("127.0.0.1:9", "contention", fw.HOLD_PREFIX + "t", plan, 4.0, go, stop)
    h.framework_id = "F"
    h.call = Calls()
    go.set()
    return h


def offer(agent, cpus, mem, offer_id="o1"):
    return {"id": {"value": offer_id}, "agent_id": {"value": agent},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}]}


def launched(body):
    ops = body["accept"]["operations"]
    return ops[0]["launch"]["task_infos"] if ops else []


def test_the_holder_fills_an_agent_to_its_share_and_then_declines_for_a_while():
    h = holder()
    h.offer(offer("A", 2.0, 1536.0))
    tasks = launched(h.call.bodies[-1])
    assert len(tasks) == 4 and h.held["A"] == 4
    assert [t["command"]["value"] for t in tasks] == ["sleep 4", "sleep 12", "sleep 20", "sleep 28"]
    assert h.call.bodies[-1]["accept"]["filters"]["refuse_seconds"] == 0.0
    h.offer(offer("A", 1.0, 768.0, "o2"))
    assert launched(h.call.bodies[-1]) == []
    assert h.call.bodies[-1]["accept"]["filters"]["refuse_seconds"] == fw.REFUSE_AT_TARGET


def test_an_ended_task_frees_its_slot_revives_and_its_replacement_lasts_the_steady_length():
    h = holder()
    h.offer(offer("A", 2.0, 1536.0))
    first = launched(h.call.bodies[-1])[0]
    h.handle({"type": "UPDATE", "update": {"status": {
        "state": "TASK_FINISHED", "task_id": first["task_id"], "agent_id": {"value": "A"}}}})
    assert h.held["A"] == 3 and h.ended == 1
    assert h.call.bodies[-1]["type"] == "REVIVE"
    h.offer(offer("A", 1.25, 960.0, "o3"))
    [again] = launched(h.call.bodies[-1])
    assert again["command"]["value"] == "sleep 32" and h.held["A"] == 4


def test_the_holder_takes_only_whole_tasks_and_only_on_known_agents():
    h = holder()
    h.offer(offer("A", 0.6, 1536.0))
    assert len(launched(h.call.bodies[-1])) == 2       # 0.25 cpus each
    h.offer(offer("Z", 2.0, 1536.0, "o2"))
    assert launched(h.call.bodies[-1]) == []


def test_held_share_is_per_resource():
    record = {"total": {"cpus": 4.0, "mem": 3072.0}, "roles": {"contention": {"cpus": 2.0, "mem": 1152.0}}}
    assert fw.held_share(record, "contention") == {"cpus": 0.5, "mem": 0.375}


def test_the_script_refuses_a_holder_without_its_name_directory_or_bound(capsys):
    with pytest.raises(SystemExit):
        fw.main(["--masters", "127.0.0.1:9", "--hold", "contention:0.5"])
    assert "--max-seconds" in capsys.readouterr().err


# ---- what it held during a submit --------------------------------------------------------

def sample(epoch, cpus, mem):
    return {"event": "sample", "epoch": epoch, "share": {"cpus": cpus, "mem": mem}}


def test_share_during_a_submit():
    samples = [sample(10, 0.5, 0.5), sample(11, 0.5, 0.5), sample(12, 0.375, 0.4), sample(13, 0.25, 0.3),
               sample(14, 0.5, 0.5), sample(20, 0.0, 0.0)]
    got = ct.share_during(samples, 11.5, 14.0)
    assert got == {"held_start": 0.5, "held_min": 0.25, "held_median": 0.375}
    assert ct.share_during([], 0, 1) == {"held_start": None, "held_min": None, "held_median": None}
    # A submit that started before the first sample: the first sample stands for the start.
    assert ct.share_during(samples, 0, 10)["held_start"] == 0.5


def test_read_lines_keeps_plan_samples_errors_and_counts():
    run = ct.CompetitorRun(level=0.5, host="m1", name="n", role="contention")
    ct.read_lines(run, [{"event": "plan", "agents": [{"id": "A"}], "target": {"cpus": 2.0, "mem": 1536.0},
                         "release_every": 4.0, "task_seconds": 32.0},
                        {"event": "sample", "t": 1.0, "epoch": 5.0, "share": {"cpus": 0.5, "mem": 0.5},
                         "roles": {"contention": {"cpus": 2.0, "mem": 1536.0}}},
                        {"event": "sample", "t": 1.0},                # not the holder's: no epoch
                        {"event": "error", "error": "sample: timed out"},
                        {"event": "done", "launched": {"contention": 12}, "ended": 4}])
    assert (run.target, run.task_seconds, run.launched, run.ended) == ({"cpus": 2.0, "mem": 1536.0}, 32.0, 12, 4)
    assert len(run.samples) == 1 and run.errors == ["sample: timed out"]
    assert run.to_dict()["samples"] == [{"epoch": 5.0, "t": 1.0, "held": 0.5, "cpus": 2.0, "mem": 1536.0,
                                         "running": None}]


def test_the_token_names_the_run_and_level():
    assert ct.run_token("20261207-092000-bench-kmeans", 0.5) == "20261207-092000-bench-kmeans-0.5"


# ---- the Competitor over a fake transport --------------------------------------------------

MESOS = """\
cluster: t1
cloud: {ironic_url: "http://127.0.0.1:9"}
defaults:
  bmc: {address: 127.0.0.1, username: u, password: {env: P}}
roles:
  zookeeper: {source: preinstalled}
  mesos: {source: preinstalled}
  spark: {source: preinstalled}
nodes:
  - {name: m1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1,
     roles: [zookeeper, mesos-master, spark-master]}
  - {name: a1, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2, roles: [mesos-agent]}
"""


class FakeHost:
    """put_and_run and run_command on the driver host: the holder runs until its stop file."""

    def __init__(self, *, holding_code=0, holder_error=None):
        self.holding_code = holding_code
        self.holder_error = holder_error
        self.stopped = threading.Event()
        self.commands: list[str] = []
        self.scripts: list[str] = []

    def put_and_run(self, target, script, *, connect_timeout, command_timeout, cancel=None):
        self.scripts.append(script)
        if "--teardown" in script.rstrip().splitlines()[-1]:      # the python3 line, not the file's text
            return CommandResult(target.host, 0, json.dumps({"event": "torn_down", "frameworks": ["F1"],
                                                             "held": {"cpus": 0.0, "mem": 0.0}}) + "\n", "")
        if self.holder_error:
            raise TransportError(target.host, self.holder_error)
        assert self.stopped.wait(5), "never stopped"
        lines = [{"event": "plan", "agents": [], "target": {"cpus": 2.0, "mem": 1536.0}, "release_every": 4.0,
                  "task_seconds": 32.0},
                 {"event": "sample", "t": 1.0, "epoch": 1.0, "share": {"cpus": 0.5, "mem": 0.5}, "roles": {}},
                 {"event": "done", "launched": {"contention": 9}, "ended": 1}]
        return CommandResult(target.host, 0, "\n".join(json.dumps(r) for r in lines) + "\n", "")

    def run_command(self, target, command, *, connect_timeout, command_timeout, cancel=None):
        self.commands.append(command)
        if "touch" in command:
            self.stopped.set()
            return CommandResult(target.host, 0, "", "")
        return CommandResult(target.host, self.holding_code, '{"held": 0.25}' if self.holding_code else "", "")


@pytest.fixture
def host(monkeypatch):
    fake = FakeHost()
    monkeypatch.setattr(ct, "put_and_run", fake.put_and_run)
    monkeypatch.setattr(ct, "run_command", fake.run_command)
    return fake


def competitor(tmp_path, level=0.5):
    inv = parse_inventory(MESOS, path=tmp_path / "inv.yaml")
    target = SshTarget(host="m1", address="10.0.0.1")
    return ct.Competitor(VerbContext(inv, timeouts=DEFAULT_TIMEOUTS, state_root=tmp_path / "state"), target,
                         level=level, token="run-0.5", options=ct.ContentionOptions(levels=(level,)),
                         max_seconds=600.0)


def test_a_competitor_holds_until_stopped_then_is_torn_down(tmp_path, host):
    with competitor(tmp_path) as comp:
        assert comp.wait_holding() is None
    run = comp.run
    holder_script = host.scripts[0].splitlines()[-1]
    assert "--hold contention:0.5" in holder_script and f"--name {fw.HOLD_PREFIX}run-0.5" in holder_script
    assert "--status-dir /tmp/k1prov-contention-run-0.5" in holder_script and "--max-seconds 600" in holder_script
    assert SCRIPT.read_text().splitlines()[0] in host.scripts[0]
    # Stop file, then the teardown by name, which also removes the status directory.
    assert any("touch /tmp/k1prov-contention-run-0.5/stop" in c for c in host.commands)
    teardown = host.scripts[-1]
    assert f"--teardown {fw.HOLD_PREFIX}run-0.5" in teardown.splitlines()[-1]
    assert "rm -rf -- /tmp/k1prov-contention-run-0.5" in teardown
    assert (run.launched, run.ended, run.torn_down, run.leftover_hold) == (9, 1, ["F1"], {"cpus": 0.0, "mem": 0.0})
    assert len(run.samples) == 1 and not run.errors


def test_the_competitor_is_torn_down_when_the_body_raises(tmp_path, host):
    with pytest.raises(KeyboardInterrupt):
        with competitor(tmp_path):
            raise KeyboardInterrupt
    assert "--teardown" in host.scripts[-1].splitlines()[-1]


@pytest.mark.parametrize("code, says", [(2, "did not hold 0.5 of every agent within 180 s"),
                                        (3, "the competing framework ended")])
def test_waiting_for_the_share_says_why_it_did_not_come(tmp_path, monkeypatch, code, says):
    fake = FakeHost(holding_code=code)
    monkeypatch.setattr(ct, "put_and_run", fake.put_and_run)
    monkeypatch.setattr(ct, "run_command", fake.run_command)
    with competitor(tmp_path) as comp:
        assert says in comp.wait_holding()


def test_a_holder_that_could_not_start_is_an_error_and_still_torn_down(tmp_path, monkeypatch):
    fake = FakeHost(holder_error="connection refused")
    monkeypatch.setattr(ct, "put_and_run", fake.put_and_run)
    monkeypatch.setattr(ct, "run_command", fake.run_command)
    with competitor(tmp_path) as comp:
        comp._thread.join(5)
        assert "not running: m1: connection refused" in comp.wait_holding()
    assert "m1: connection refused" in comp.run.errors
    assert "--teardown" in fake.scripts[-1].splitlines()[-1]
