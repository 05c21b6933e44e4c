"""The final health verdict of the cluster verbs (k1prov.cluster.health_verdict, _summarize):
a bounded wait over one-session-per-host samples, over a recording stand-in for the hosts
and Ironic, with a fake clock."""
from __future__ import annotations

import functools

import pytest

from k1prov import cluster
from k1prov.verb_report import EXIT_OK, EXIT_PARTIAL
from k1prov.roles import health
from k1prov.roles.health import HealthResult
from configure_standin import FakeProv


LEADER = {"zookeeper": HealthResult(True, "leader n2", states={"n2": "leader"}), "spark": HealthResult(True, "master n1")}
ELECTION = {"zookeeper": HealthResult(False, "no single leader"), "spark": HealthResult(True, "master n1")}


@pytest.fixture
def clock(monkeypatch):
    """Fake time for the wait; `samples` feeds health_snapshot."""
    now = [0.0]
    state = {"samples": [], "seen": []}

    def snapshot(ctx, *, checks=None):
        state["seen"].append(now[0])
        return state["samples"].pop(0) if len(state["samples"]) > 1 else state["samples"][0]

    monkeypatch.setattr(cluster, "health_snapshot", snapshot)
    monkeypatch.setattr(cluster, "wait_until_all_healthy", functools.partial(
        health.wait_until_all_healthy, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0]))
    state["now"] = now
    return state


def test_an_election_during_the_verdict_is_waited_out(tmp_path, clock):
    clock["samples"] = [ELECTION, ELECTION, LEADER]
    prov = FakeProv(tmp_path, verdict_timeout=120)
    report = cluster.ClusterReport(verb="cluster rebuild")
    cluster._summarize(prov, report, errors={}, timed=True)
    assert report.health == {"zookeeper": "ok: leader n2", "spark": "ok: master n1"}
    assert report.exit_code() == EXIT_OK
    assert clock["seen"] == [0.0, 2.0, 4.0]
    assert [p.name for p in report.phases] == ["health"] and report.phases[0].note == "ok"
    assert prov.notes == ["health: zookeeper (no single leader) not healthy yet; looking again for up to 120 s"]


def test_a_cluster_that_stays_unhealthy_fails_after_the_named_timeout(tmp_path, clock):
    clock["samples"] = [ELECTION]
    prov = FakeProv(tmp_path, verdict_timeout=10)
    report = cluster.ClusterReport(verb="cluster up")
    cluster._summarize(prov, report, errors={}, timed=True)
    assert report.health["zookeeper"] == "unhealthy: no single leader"
    assert report.exit_code() == EXIT_PARTIAL
    assert clock["seen"] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0] and clock["now"][0] <= 10
    assert report.phases[0].note == "unhealthy"


def test_status_waits_too_but_a_healthy_cluster_costs_one_sample(tmp_path, clock):
    clock["samples"] = [LEADER]
    prov = FakeProv(tmp_path, verdict_timeout=120)
    report = cluster.status(prov)
    assert report.exit_code() == EXIT_OK and clock["seen"] == [0.0] and report.phases == []
    assert {r["node"]: r["health"] for r in report.rows}["n2"] == "zookeeper leader"


def test_no_live_look_after_ctrl_c(tmp_path, clock):
    clock["samples"] = [ELECTION]
    report = cluster.ClusterReport(verb="cluster up")
    cluster._summarize(FakeProv(tmp_path, verdict_timeout=120), report, errors={}, live=False)
    assert clock["seen"] == [] and report.health == {}


def test_what_configure_saw_after_its_last_change_is_the_verdict(tmp_path, clock):
    """cluster up: configure's gates (zookeeper, spark-workers) passed after its last change
    (on a no-op run: with the hosts' status) -> no new look at the hosts."""
    clock["samples"] = [ELECTION]
    seen = {"zookeeper": HealthResult(True, "leader n2"), "spark-workers": HealthResult(True, "master n1")}
    report = cluster.ClusterReport(verb="cluster up")
    cluster._summarize(FakeProv(tmp_path, verdict_timeout=120), report, errors={}, timed=True, seen=seen)
    assert clock["seen"] == [] and report.health == {"zookeeper": "ok: leader n2", "spark": "ok: master n1"}


@pytest.mark.parametrize("seen", [
    {"spark-workers": HealthResult(True, "master n1")},                                   # zookeeper not seen
    {"zookeeper": HealthResult(False, "no single leader"), "spark-workers": HealthResult(True, "master n1")},
])
def test_a_partial_or_unhealthy_view_from_configure_means_looking_again(tmp_path, clock, seen):
    clock["samples"] = [LEADER]
    report = cluster.ClusterReport(verb="cluster up")
    cluster._summarize(FakeProv(tmp_path, verdict_timeout=120), report, errors={}, timed=True, seen=seen)
    assert clock["seen"] == [0.0] and report.exit_code() == EXIT_OK


def test_members_not_deployed_get_one_look_not_a_wait(tmp_path, clock):
    """A member that is not active will not heal by waiting: status says so at once."""
    clock["samples"] = [ELECTION]
    prov = FakeProv(tmp_path, verdict_timeout=120)
    prov.ironic().nodes["n3"].provision_state = "available"
    report = cluster.status(prov)
    assert clock["seen"] == [0.0] and report.exit_code() == EXIT_PARTIAL


# ---- cluster up --dry-run: the plan reads the hosts (k1prov.configure_plan.plan) ----------------

def test_dry_run_reads_the_active_hosts_and_says_what_configure_would_do(tmp_path, monkeypatch):
    from configure_standin import FakeHosts, run, use

    from k1prov.errors import TransportError
    from k1prov import probe

    hosts = use(monkeypatch, FakeHosts())
    run(tmp_path)                                   # the scripts ran once: hashes recorded
    ctx = FakeProv(tmp_path, verdict_timeout=120)
    plan = {r["node"]: r["plan"] for r in cluster.plan(ctx).rows}
    assert plan == {"n1": "nothing to do", "n2": "nothing to do", "n3": "nothing to do"}

    hosts.ran.clear()
    hosts.stopped = {("n2", "spark-worker")}
    ctx.ironic().nodes["n3"].provision_state = "available"
    real = hosts.run_command

    def n1_down(target, command, **kw):
        if target.host == "n1":
            raise TransportError("n1", "connection timed out", transient=False)
        return real(target, command, **kw)

    monkeypatch.setattr(probe, "run_command", n1_down)
    report = cluster.plan(ctx)
    rows = {r["node"]: r for r in report.rows}
    assert rows["n1"]["plan"] == "unreachable: n1: connection timed out (what configure would do is unknown)"
    assert rows["n1"]["error"] == "unreachable: n1: connection timed out"
    assert rows["n2"]["plan"] == "configure spark-worker (service stopped)"
    assert rows["n3"]["plan"] == "deploy; configure zookeeper, spark-worker"
    assert hosts.ran == []                           # nothing was run, only read
    assert report.exit_code() == EXIT_PARTIAL
    assert report.health["zookeeper"].startswith("unhealthy")    # n1 and n3 did not answer


def test_status_tells_a_stopped_service_from_a_host_that_does_not_answer(tmp_path, monkeypatch):
    """n3 answers SSH but its ZooKeeper is stopped: "not answering", not "unreachable",
    which stays for n1, whose SSH does not answer at all."""
    from configure_standin import FakeHosts, use

    from k1prov import probe
    from k1prov.errors import TransportError

    hosts = use(monkeypatch, FakeHosts())
    hosts.stopped = {("n3", "zookeeper")}
    real = hosts.run_command

    def n1_down(target, command, **kw):
        if target.host == "n1":
            raise TransportError("n1", "connection refused", transient=False)
        return real(target, command, **kw)

    monkeypatch.setattr(probe, "run_command", n1_down)
    report = cluster.status(FakeProv(tmp_path, verdict_timeout=0))
    rows = {r["node"]: r["health"] for r in report.rows}
    # (n3's Spark worker is "missing": the only master, n1, could not be asked.)
    assert rows["n3"].split("; ")[0] == "zookeeper not answering", rows
    assert rows["n1"] == "zookeeper unreachable; spark unreachable"
    assert rows["n2"] == "zookeeper leader; spark missing"
    assert report.exit_code() == EXIT_PARTIAL
