"""The dependency rules of configure's phases (k1prov.configure_order), without hosts."""
from __future__ import annotations

from k1prov.configure_order import (MESOS_AGENTS, MESOS_MASTERS, SPARK_MASTERS, SPARK_OTHERS, STEPS,
                                    ZOOKEEPER, Schedule, quorum_lost)

STEP = {s.name: s for s in STEPS}


def test_the_phases_run_in_an_order_that_puts_every_need_first():
    names = [s.name for s in STEPS]
    for step in STEPS:
        for need in step.needs + step.needs_on_mesos:
            assert names.index(need) < names.index(step.name), (step.name, need)


def test_a_failed_host_stops_only_itself():
    sched = Schedule(spark_on_mesos=True)
    sched.after(STEP[MESOS_AGENTS], [("a1", "mesos-agent", True, "mesos-agent: exited 1")])
    assert sched.host_stopped("a1") == "not run: mesos-agent failed on a1 (Mesos agents)"
    assert sched.host_stopped("a2") == ""
    # An agent is no phase's need: Spark, on Mesos or not, still runs.
    assert sched.blocked(STEP[SPARK_OTHERS]) == ""


def test_a_left_out_role_carries_the_first_reason_on():
    sched = Schedule(spark_on_mesos=False)
    sched.after(STEP[ZOOKEEPER], [("h1", "zookeeper", True, "zookeeper: exited 1")])
    first = sched.host_stopped("h1")
    sched.after(STEP[SPARK_MASTERS], [("h1", "spark-master", False, first)])
    assert sched.host_stopped("h1") == first
    # A member held back from a rolling restart names itself.
    sched.after(STEP[ZOOKEEPER], [("h2", "zookeeper", False, "not restarted: ZooKeeper ensemble failed on h1")])
    assert sched.host_stopped("h2") == ("not run: zookeeper on h2 was left as it was "
                                        "(not restarted: ZooKeeper ensemble failed on h1)")


def test_a_phase_that_is_down_stops_what_needs_it_and_only_that():
    sched = Schedule(spark_on_mesos=False)
    sched.stop_step(STEP[ZOOKEEPER], "which lost its quorum: failed on z2, z3 of 3 members")
    assert sched.blocked(STEP[MESOS_MASTERS]) == (
        "not run: it needs the ZooKeeper ensemble, which lost its quorum: failed on z2, z3 of 3 members")
    assert sched.blocked(STEP[MESOS_AGENTS]) == ""     # needs the masters, which are not down (yet)
    # Standalone Spark needs no ZooKeeper or Mesos.
    assert sched.blocked(STEP[SPARK_MASTERS]) == "" and sched.blocked(STEP[SPARK_OTHERS]) == ""
    sched.stop_step(STEP[SPARK_MASTERS], "which failed on every host (s1)")
    assert sched.blocked(STEP[SPARK_OTHERS]) == "not run: it needs the Spark masters, which failed on every host (s1)"


def test_spark_on_mesos_needs_the_mesos_masters_not_the_agents():
    sched = Schedule(spark_on_mesos=True)
    sched.stop_step(STEP[MESOS_AGENTS], "which is not healthy: no agent")
    assert sched.blocked(STEP[SPARK_MASTERS]) == "" and sched.blocked(STEP[SPARK_OTHERS]) == ""
    sched.stop_step(STEP[MESOS_MASTERS], "which is not healthy: no leader")
    assert sched.blocked(STEP[SPARK_OTHERS]) == "not run: it needs the Mesos masters, which is not healthy: no leader"
    assert Schedule(spark_on_mesos=False).blocked(STEP[SPARK_OTHERS]) == ""


def test_quorum_lost_is_a_majority_out():
    assert not quorum_lost(3, 1) and quorum_lost(3, 2)
    assert quorum_lost(1, 1) and not quorum_lost(1, 0)
    assert not quorum_lost(5, 2) and quorum_lost(5, 3)
    assert quorum_lost(4, 2)          # two of four cannot elect
    assert not quorum_lost(0, 0)


def test_excusing_drops_the_problems_of_failed_hosts_only():
    from k1prov.roles.health import HealthResult, excusing
    seen = HealthResult(ok=False, summary="leader z1", states={"z1": "leader", "z3": "unreachable"},
                        problems=("z3: host unreachable",))
    assert excusing(seen, ["z3"]).ok and excusing(seen, ["z3"]).problems == ()
    assert excusing(seen, ["z33"]).ok is False
    whole = HealthResult(ok=False, summary="no single leader", problems=("z3: host unreachable",
                                                                         "expected exactly one leader, found 0"))
    assert excusing(whole, ["z3"]).problems == ("expected exactly one leader, found 0",)
    assert excusing(seen, []) is seen
