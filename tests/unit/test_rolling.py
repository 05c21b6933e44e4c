"""Ensembles roll: configure restarts the running members of ZooKeeper (and the Mesos
masters, the same code) one at a time when their script changed, followers first and the
leader last, each back in the ensemble before the next; `cluster rebuild` reads the
leaders again before each quorum member. Over the recording stand-in for SSH of
test_configure, with a fake clock for the waits."""
from __future__ import annotations

import functools
from dataclasses import replace

import pytest

import k1prov.configure as cfg
import k1prov.rolling_restart as rolling_restart
from k1prov import cluster
from k1prov.context import VerbContext
from k1prov.fanout import Status
from k1prov.roles import health
from k1prov.roles.health import HealthResult, back_in_ensemble, leaders, leaders_last
from k1prov.settings import DEFAULT_TIMEOUTS
from k1prov.ssh import CommandResult
from configure_standin import LAB_ROLES, NODES, FakeHosts, FakeProv, load, use

# The same roles with one ZooKeeper setting changed: every member's script changes.
CHANGED = LAB_ROLES.replace("server_script:", "heap_mb: 512, server_script:")


class EnsembleHosts(FakeHosts):
    """FakeHosts whose ZooKeeper members take `syncing` looks to answer again after their
    script ran (a restarted member catching up), and that records every script run while
    another member had not answered again yet (two members out at once)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.syncing_looks = 0
        self.syncing: dict[str, int] = {}
        self.overlaps: list[tuple[str, list[str]]] = []
        # After a script on host H ran, the leadership moves to moves[H].
        self.moves: dict[str, str] = {}
        self.never_back: set[str] = set()

    def put_and_run(self, target, text, **kw):
        res = super().put_and_run(target, text, **kw)
        role = self.ran[-1][1]
        if role == "zookeeper":
            out = [h for h, n in self.syncing.items() if n > 0]
            if out:
                self.overlaps.append((target.host, out))
            self.syncing[target.host] = 10**6 if target.host in self.never_back else self.syncing_looks
            if target.host in self.moves:
                self.leader = self.moves.pop(target.host)
        return res

    def one_command(self, target, command):
        if "srvr" in command and self.syncing.get(target.host, 0) > 0:
            self.syncing[target.host] -= 1
            return CommandResult(target.host, 1, "", "")
        return super().one_command(target, command)


@pytest.fixture
def hosts(monkeypatch):
    now = [0.0]
    # The waits sleep on a fake clock.
    fake_clock_wait = functools.partial(
        health.wait_until_healthy, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    # The health gates wait in configure, the rolls between two members in rolling_restart.
    monkeypatch.setattr(cfg, "wait_until_healthy", fake_clock_wait)
    monkeypatch.setattr(rolling_restart, "wait_until_healthy", fake_clock_wait)
    return use(monkeypatch, EnsembleHosts())


def run(tmp_path, roles=LAB_ROLES, **timeouts):
    return cfg.apply(VerbContext(load(roles), state_root=tmp_path,
                                 timeouts=replace(DEFAULT_TIMEOUTS, **{"health": 10.0, **timeouts})))


def zookeeper_runs(hosts) -> list[str]:
    return [h for h, role in hosts.ran if role == "zookeeper"]


def test_a_changed_ensemble_restarts_one_member_at_a_time_leader_last(tmp_path, hosts):
    first = run(tmp_path)
    # Nothing runs yet: the members start together (no quorum to keep).
    assert first.exit_code() == 0 and [n for n, _ in first.phases][:2] == ["recorded hashes", "ZooKeeper ensemble"]
    hosts.ran.clear()
    hosts.syncing_looks = 2
    report = run(tmp_path, CHANGED)
    assert report.exit_code() == 0
    assert zookeeper_runs(hosts) == ["n1", "n3", "n2"]        # n2 leads: last
    assert hosts.overlaps == []                               # each one back before the next
    assert [n for n, _ in report.phases][:4] == [
        "recorded hashes", "ZooKeeper ensemble: n1", "ZooKeeper ensemble: n3", "ZooKeeper ensemble: n2"]
    assert {o.action for o in report.outcomes if o.changes == ["zookeeper"]} == {"changed"}
    # The re-run restarts nothing.
    hosts.ran.clear()
    again = run(tmp_path, CHANGED)
    assert hosts.ran == [] and {o.action for o in again.outcomes} == {"unchanged"}


def test_the_leader_is_read_again_before_each_turn(tmp_path, hosts):
    run(tmp_path)
    hosts.ran.clear()
    # n1's restart moves the leadership to n3: n3 now waits for the end, n2 goes before it.
    hosts.moves = {"n1": "n3"}
    report = run(tmp_path, CHANGED)
    assert report.exit_code() == 0
    assert zookeeper_runs(hosts) == ["n1", "n2", "n3"]


def test_a_member_that_does_not_come_back_stops_the_roll_and_its_hosts_later_phases(tmp_path, hosts):
    run(tmp_path)
    hosts.ran.clear()
    hosts.never_back = {"n1"}
    report = run(tmp_path, CHANGED, rolling_restart=10.0)
    assert zookeeper_runs(hosts) == ["n1"]                     # n3 and n2 keep the quorum
    by = {(o.node, o.changes[0]): o for o in report.outcomes}
    assert by[("n1", "zookeeper")].status is Status.FAILED
    assert "not back in its ensemble 10 s after its restart (n1 not answering" in by[("n1", "zookeeper")].error
    for name in ("n2", "n3"):
        assert by[(name, "zookeeper")].status is Status.SKIPPED
        assert by[(name, "zookeeper")].error == "not restarted: n1 did not come back"
    assert by[("n1", "spark-master")].error == "not run: zookeeper failed on n1 (ZooKeeper ensemble)"
    # The members held back keep their old script: their hosts stop there too, saying why.
    assert by[("n2", "spark-worker")].error == ("not run: zookeeper on n2 was left as it was "
                                                "(not restarted: n1 did not come back)")
    assert not any(role.startswith("spark") for _, role in hosts.ran)


def test_stopped_members_start_first_together_then_the_running_ones_roll(tmp_path, hosts):
    run(tmp_path)
    hosts.ran.clear()
    hosts.stopped = {("n3", "zookeeper")}
    report = run(tmp_path, CHANGED)
    assert report.exit_code() == 0
    assert zookeeper_runs(hosts) == ["n3", "n1", "n2"]
    assert [n for n, _ in report.phases][1:4] == [
        "ZooKeeper ensemble", "ZooKeeper ensemble: n1", "ZooKeeper ensemble: n2"]


def test_an_ensemble_without_a_leader_has_nothing_to_keep_its_members_go_together(tmp_path, hosts):
    run(tmp_path)
    hosts.ran.clear()
    hosts.unhealthy = True
    report = run(tmp_path, CHANGED, health=0.5)
    assert sorted(zookeeper_runs(hosts)) == ["n1", "n2", "n3"]
    assert [n for n, _ in report.phases][1] == "ZooKeeper ensemble"
    assert len(report.phases[1][1].results) == 3


MESOS = HealthResult(True, "leader mz2", states={"mz1": "standby", "mz2": "leader", "mz3": "standby",
                                                 "ag1": "registered cpus:2"})
ZK = HealthResult(True, "leader mz1", states={"mz1": "leader", "mz2": "follower", "mz3": "follower"})


def test_leaders_last_puts_a_node_leading_two_ensembles_after_one_leading_one():
    nodes = load(nodes=NODES.replace("n1", "mz1").replace("n2", "mz2").replace("n3", "mz3")).nodes
    assert [n.name for n in leaders_last(nodes, [MESOS])] == ["mz1", "mz3", "mz2"]
    assert [n.name for n in leaders_last(nodes, [MESOS, ZK])] == ["mz3", "mz1", "mz2"]
    both = HealthResult(True, "leader mz2", states={"mz1": "follower", "mz2": "leader", "mz3": "follower"})
    assert [n.name for n in leaders_last(nodes, [MESOS, both])] == ["mz1", "mz3", "mz2"]
    assert leaders([MESOS, ZK]) == {"mz1", "mz2"}


def test_back_in_ensemble_needs_the_member_in_it_and_a_leader():
    assert back_in_ensemble(MESOS, "mz1") and back_in_ensemble(MESOS, "mz2")
    assert not back_in_ensemble(replace(MESOS, states={**MESOS.states, "mz1": "no leader"}), "mz1")
    assert not back_in_ensemble(replace(MESOS, states={"mz1": "standby", "mz2": "unreachable"}), "mz1")
    assert not back_in_ensemble(ZK, "ag1")


def test_rebuild_reads_the_leaders_again_before_each_quorum_member(tmp_path, monkeypatch):
    ctx = FakeProv(tmp_path, verdict_timeout=10)
    rebuilt: list[str] = []
    monkeypatch.setattr(cluster, "_rebuild_group", lambda ctx, report, names, **kw: rebuilt.extend(names) or True)

    def zk(leader):
        return {"zookeeper": HealthResult(True, f"leader {leader}", states={
            n: "leader" if n == leader else "follower" for n in ("n1", "n2", "n3")})}

    # n2 leads at the start; n1's rebuild moves the leadership to n3.
    looks = iter([zk("n2"), zk("n3"), zk("n3"), zk("n1"), zk("n1")])
    monkeypatch.setattr(cluster, "health_snapshot", lambda ctx, *, checks=None: next(looks))
    report = cluster.rebuild(ctx)
    assert rebuilt == ["n1", "n2", "n3"]
    assert [p.name for p in report.phases][:3] == ["quorum after n1", "quorum after n2", "quorum after n3"]
