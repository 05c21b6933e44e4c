"""Health checks of the roles, as pure functions over a command runner.

A runner is `run(node, command) -> (exit_code, stdout)`: the caller decides how the
command reaches the host (SSH, a local shell in tests). Each check runs once and
returns a HealthResult; `wait_until_healthy` repeats one until it passes or its
named timeout ends.
"""
from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from k1prov.inventory.model import Node

Runner = Callable[[Node, str], tuple[int, str]]


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    summary: str
    # Per node: what it reported ("leader", "follower", "unreachable", ...).
    states: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _zk_command(port: int) -> str:
    # `srvr` is the one four-letter word ZooKeeper 3.5+ allows by default. nc is not
    # on every host; bash's /dev/tcp is.
    tcp = f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf srvr >&3 && cat <&3"
    return (f"echo srvr | nc -q1 127.0.0.1 {port} 2>/dev/null"
            f" || timeout 5 bash -c {shlex.quote(tcp)}")


def zookeeper_health(nodes: Sequence[Node], run: Runner, *, port: int = 2181) -> HealthResult:
    """Every member answers as leader or follower, and exactly one is the leader
    (a single-member ensemble answers "standalone")."""
    states: dict[str, str] = {}
    problems: list[str] = []
    for node in nodes:
        code, out = run(node, _zk_command(port))
        match = re.search(r"^Mode:\s*(\w+)", out or "", re.MULTILINE)
        if code != 0 or not match:
            states[node.name] = "unreachable"
            problems.append(f"{node.name}: no answer to srvr on port {port}")
            continue
        states[node.name] = match.group(1)
    leaders = [name for name, mode in states.items() if mode in ("leader", "standalone")]
    if len(leaders) != 1:
        problems.append(f"expected exactly one leader, found {len(leaders)}"
                        + (f" ({', '.join(leaders)})" if leaders else ""))
    for name, mode in states.items():
        if mode not in ("leader", "follower", "observer", "standalone", "unreachable"):
            problems.append(f"{name}: unexpected mode {mode}")
    ok = not problems
    summary = f"leader {leaders[0]}" if len(leaders) == 1 else "no single leader"
    return HealthResult(ok=ok, summary=summary, states=states, problems=tuple(problems))


def _json(code: int, out: str) -> dict | None:
    if code != 0:
        return None
    try:
        data = json.loads(out)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _pid_ip(pid: str) -> str:
    """'master@10.0.0.1:5050' -> '10.0.0.1'."""
    return pid.rpartition("@")[2].rpartition(":")[0]


def mesos_health(masters: Sequence[Node], run: Runner, *, agents: Iterable[Node] = (),
                 port: int = 5050) -> HealthResult:
    """All answering masters agree on one leader, which is one of the masters, and
    every given agent is registered with it."""
    states: dict[str, str] = {}
    problems: list[str] = []
    leaders: set[str] = set()
    leader_state: dict | None = None
    addresses = {m.address: m.name for m in masters}
    for master in masters:
        url = f"http://{master.address}:{port}/state"
        state = _json(*run(master, f"curl -sfL --max-time 5 {shlex.quote(url)}"))
        if state is None:
            states[master.name] = "unreachable"
            problems.append(f"{master.name}: no /state on port {port}")
            continue
        leader = str(state.get("leader") or "")
        if leader:
            leaders.add(leader)
        is_leader = bool(leader) and leader == state.get("pid")
        states[master.name] = "leader" if is_leader else ("standby" if leader else "no leader")
        if is_leader:
            leader_state = state
    if len(leaders) != 1:
        problems.append(f"masters report {len(leaders)} leaders: {sorted(leaders)}")
    elif _pid_ip(next(iter(leaders))) not in addresses:
        problems.append(f"leader {next(iter(leaders))} is not one of the inventory's masters")
    wanted = list(agents)
    if wanted:
        if leader_state is None:
            problems.append("cannot check agents: no master answered as leader")
        else:
            registered: set[str] = set()
            for agent in leader_state.get("slaves") or []:
                if agent.get("active", True):
                    registered.add(str(agent.get("hostname", "")))
                    registered.add(_pid_ip(str(agent.get("pid", ""))))
            for node in wanted:
                seen = node.name in registered or node.address in registered
                states[node.name] = "registered" if seen else "missing"
                if not seen:
                    problems.append(f"{node.name}: agent not registered with the leading master")
    summary = f"leader {next(iter(leaders))}" if len(leaders) == 1 else "no single leader"
    return HealthResult(ok=not problems, summary=summary, states=states, problems=tuple(problems))


def spark_workers_health(masters: Sequence[Node], workers: Iterable[Node], run: Runner, *,
                         webui_port: int = 8080,
                         log_files: Sequence[str] = ("/var/log/k1prov/spark-master.log",)) -> HealthResult:
    """A standalone master is ALIVE and every worker is registered with it: from the
    master's JSON UI, or, when that does not answer, from the master's log."""
    states: dict[str, str] = {}
    problems: list[str] = []
    registered: set[str] | None = None
    alive_master = ""
    for master in masters:
        url = f"http://{master.address}:{webui_port}/json/"
        data = _json(*run(master, f"curl -sf --max-time 5 {shlex.quote(url)}"))
        if data is not None:
            states[master.name] = str(data.get("status", "unknown")).lower()
            if data.get("status") == "ALIVE":
                alive_master = master.name
                registered = {str(w.get("host", "")) for w in data.get("workers") or []
                              if w.get("state") == "ALIVE"}
                break
            continue
        files = " ".join(shlex.quote(f) for f in log_files)
        code, out = run(master, f"grep -ho 'Registering worker [^ ]*' {files} 2>/dev/null")
        if code == 0 and out.strip():
            states[master.name] = "alive (from log)"
            alive_master = master.name
            registered = {m.rpartition(":")[0] for m in re.findall(r"Registering worker (\S+)", out)}
            break
        states[master.name] = "unreachable"
    if registered is None:
        problems.append("no Spark master is ALIVE")
        registered = set()
    for worker in workers:
        seen = worker.address in registered or worker.name in registered
        states[worker.name] = "registered" if seen else "missing"
        if not seen and alive_master:
            problems.append(f"{worker.name}: worker not registered with {alive_master}")
    summary = f"master {alive_master}" if alive_master else "no master"
    return HealthResult(ok=not problems, summary=summary, states=states, problems=tuple(problems))


def wait_until_healthy(check: Callable[[], HealthResult], *, health_timeout: float,
                       interval: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                       clock: Callable[[], float] = time.monotonic) -> HealthResult:
    """Repeats `check` until it passes or `health_timeout` seconds have passed;
    returns the last result either way (the caller decides what failure means)."""
    deadline = clock() + health_timeout
    while True:
        result = check()
        if result.ok or clock() + interval > deadline:
            return result
        sleep(interval)
