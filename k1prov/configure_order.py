"""Which of configure's phases may still run on which host after a failure.

Two kinds of dependency stop work (k1prov.configure runs the phases in order):
- a host: a role that failed (or was left as it was) on a host stops that host's later
  roles; they may build on it (a Spark client on a host whose agent install broke);
- a phase: a phase needs what earlier phases serve to the whole cluster, as their
  health gates check it: the Mesos masters need the ZooKeeper quorum, the agents the
  masters' quorum, Spark its standalone masters or (on Mesos) the Mesos masters. A phase
  is down when its gate does not pass over the hosts that did not fail, when every host
  of it failed, or when an ensemble lost so many members that it cannot have a quorum;
  then every phase that needs it is skipped on every host.
One dead agent, then, stops its own host's later roles and nothing else: the masters'
quorum still holds, so the other agents and Spark go on. One dead ZooKeeper member of
three stops its own host; two stop the Mesos masters and everything after them.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One phase of a configure run: the roles it runs, the gate after it, and the
    earlier phases (by name) whose service it needs."""

    name: str
    roles: tuple[str, ...]
    # "zookeeper", "mesos-masters", "mesos-agents", "spark-workers" or "" (no gate).
    gate: str = ""
    needs: tuple[str, ...] = ()
    # Needed only when Spark runs on Mesos (its master URL is the Mesos masters' ZooKeeper path).
    needs_on_mesos: tuple[str, ...] = ()


ZOOKEEPER, MESOS_MASTERS, MESOS_AGENTS = "ZooKeeper ensemble", "Mesos masters", "Mesos agents"
SPARK_MASTERS, SPARK_OTHERS = "Spark masters", "Spark workers and clients"

# In the order they run (k1prov.roles.plan: the dependencies between the services).
STEPS = (
    Step(ZOOKEEPER, ("zookeeper",), gate="zookeeper"),
    Step(MESOS_MASTERS, ("mesos-master",), gate="mesos-masters", needs=(ZOOKEEPER,)),
    Step(MESOS_AGENTS, ("mesos-agent",), gate="mesos-agents", needs=(MESOS_MASTERS,)),
    Step(SPARK_MASTERS, ("spark-master",), needs_on_mesos=(MESOS_MASTERS,)),
    Step(SPARK_OTHERS, ("spark-worker", "spark-client"), gate="spark-workers",
         needs=(SPARK_MASTERS,), needs_on_mesos=(MESOS_MASTERS,)),
)


def quorum_lost(members: int, out: int) -> bool:
    """An ensemble of `members` (ZooKeeper, the Mesos masters' replicated log) with `out`
    of them failed cannot have a majority: no need to wait for its gate."""
    return members > 0 and 2 * out >= members


class Schedule:
    """What has stopped so far in one run: hosts and phases, each with the reason its
    dependents are skipped. `spark_on_mesos`: the inventory's Spark manager is Mesos."""

    def __init__(self, *, spark_on_mesos: bool):
        self.spark_on_mesos = spark_on_mesos
        self.hosts: dict[str, str] = {}
        self.steps: dict[str, str] = {}

    def needs(self, step: Step) -> tuple[str, ...]:
        return step.needs + (step.needs_on_mesos if self.spark_on_mesos else ())

    def blocked(self, step: Step) -> str:
        """Why `step` must not run anywhere ('' when it may)."""
        for need in self.needs(step):
            if need in self.steps:
                return f"not run: it needs the {need}, {self.steps[need]}"
        return ""

    def host_stopped(self, host: str) -> str:
        """Why `host`'s later roles must not run ('' when they may)."""
        return self.hosts.get(host, "")

    def stopped_hosts(self) -> set[str]:
        return set(self.hosts)

    def stop_host(self, host: str, why: str) -> None:
        self.hosts.setdefault(host, why)

    def stop_step(self, step: Step, why: str) -> None:
        self.steps.setdefault(step.name, why)

    def after(self, step: Step, outcomes: Iterable[tuple[str, str, bool, str]]) -> None:
        """Records a phase's (host, role, failed, error) outcomes for the roles that are
        not ok: each such host stops. A role left out carries its own reason on; a role
        left as it was for another reason (a rolling restart held back) names itself."""
        for host, role, failed, error in outcomes:
            if failed:
                self.stop_host(host, f"not run: {role} failed on {host} ({step.name})")
            elif error.startswith("not run: "):
                self.stop_host(host, error)
            else:
                self.stop_host(host, f"not run: {role} on {host} was left as it was ({error})")
