"""Health checks of the roles, as pure functions over a command runner.

A runner is `run(node, command) -> (exit_code, stdout)`: the caller decides how the
command reaches the host (SSH, a local shell in tests). Each check runs once and
returns a HealthResult; `wait_until_healthy` repeats one until it passes or its
named timeout ends, `wait_until_all_healthy` does the same for several at once.

Batching: a check sends its commands one by one, but none of them depends on the
answer to an earlier one except that a check may stop early (the Spark check stops at
the first master that answers). So the commands a check may send are those it sends
when nothing answers (`commands_of`), and `sample` sends all of them in ONE session per
host (`batch_command` / `parse_batch`), then evaluates the checks over the answers.
"""
from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from k1prov.host_layout import HOST
from k1prov.inventory.model import Inventory, Node
from k1prov.roles.role_settings import mesos_settings, spark_settings, zookeeper_settings

Runner = Callable[[Node, str], tuple[int, str]]


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    summary: str
    # Per node: what it reported ("leader", "follower", "not answering", "unreachable", ...).
    states: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


# A check with its nodes and settings bound: run it over a runner.
Check = Callable[[Runner], HealthResult]
# Answers of a host to a batch of commands, in order (exit code, stdout); None when the
# host could not be reached at all.
BatchRunner = Callable[[dict[str, tuple[Node, list[str]]]], dict[str, list[tuple[int, str]] | None]]

# The exit code `sample` gives every command of a host that could not be reached at all
# (no SSH session): no command's own exit code is negative.
HOST_UNREACHABLE = -1
# A member's state when its service gave no answer: the host answered and its service
# did not (stopped, or not listening yet), or the host itself could not be reached. The
# operator's next step differs (start the service / look at the machine or the network).
NOT_ANSWERING, UNREACHABLE = "not answering", "unreachable"


def _silent(node: Node, code: int, what: str) -> tuple[str, str]:
    """(state, problem) of a member that gave no usable answer to `what`."""
    if code == HOST_UNREACHABLE:
        return UNREACHABLE, f"{node.name}: host unreachable"
    return NOT_ANSWERING, f"{node.name}: {what}"


def _zk_command(port: int) -> str:
    # `srvr` is the one four-letter word ZooKeeper 3.5+ allows by default. Through bash's
    # /dev/tcp (on every host, unlike nc): `cat` ends as soon as ZooKeeper closes the
    # connection after its answer, where `nc -q1` waited a second more every time.
    tcp = f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf srvr >&3 && cat <&3"
    return f"timeout 5 bash -c {shlex.quote(tcp)} 2>/dev/null"


# A member whose data directory lost its myid (wiped, a replaced disk): it may still
# serve from memory, but it cannot start again as that member, and its snapshots are gone.
DATA_LOST = "data lost"


def _zk_myid_command(data_dir: str) -> str:
    # "unknown" where this user cannot look into the directory (a non-root SSH user):
    # that says nothing about the member.
    d = shlex.quote(data_dir.rstrip("/"))
    return (f"if [ -s {d}/myid ]; then echo present; elif [ -x {d} ] || [ ! -e {d} ]; "
            f"then echo missing; else echo unknown; fi")


def zookeeper_health(nodes: Sequence[Node], run: Runner, *, port: int = 2181,
                     data_dir: str | None = None) -> HealthResult:
    """Every member answers as leader or follower, and exactly one is the leader
    (a single-member ensemble answers "standalone"). With `data_dir`, a member whose
    data directory has no myid is DATA_LOST, whatever it answers."""
    states: dict[str, str] = {}
    problems: list[str] = []
    for node in nodes:
        code, out = run(node, _zk_command(port))
        # Asked whatever srvr answered: `sample` sends a check's commands in one batch, those
        # it sends when nothing answers (commands_of).
        myid = run(node, _zk_myid_command(data_dir)) if data_dir is not None else (255, "")
        match = re.search(r"^Mode:\s*(\w+)", out or "", re.MULTILINE)
        if code != 0 or not match:
            states[node.name], problem = _silent(node, code, f"no answer to srvr on port {port}")
            problems.append(problem)
            continue
        states[node.name] = match.group(1)
        if data_dir is not None:
            code, out = myid
            if code == 0 and out.strip() == "missing":
                problems.append(f"{node.name}: no myid in {data_dir}: its data directory was wiped "
                                f"(it answers as {states[node.name]} from memory; configure sets it up again)")
                states[node.name] = DATA_LOST
    leaders = [name for name, mode in states.items() if mode in ("leader", "standalone")]
    if len(leaders) != 1:
        problems.append(f"expected exactly one leader, found {len(leaders)}"
                        + (f" ({', '.join(leaders)})" if leaders else ""))
    for name, mode in states.items():
        if mode not in ("leader", "follower", "observer", "standalone", NOT_ANSWERING, UNREACHABLE, DATA_LOST):
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


# After the body, curl prints the status and where a redirect points: a standby master
# answers /state with 307 to the leader (following it would make every master look
# like the leader), and 503 while no leader is elected.
_CURL_TRAILER = "\nK1PROV-HTTP %{http_code} %{redirect_url}"
_TRAILER_RE = re.compile(r"\nK1PROV-HTTP (\d{3}) ?(\S*)\s*$")


def _mesos_state_command(url: str) -> str:
    return f"curl -s --max-time 5 -w {shlex.quote(_CURL_TRAILER)} {shlex.quote(url)}"


def _format_resources(resources: dict) -> str:
    """{'cpus': 2.0, 'mem': 1536.0, 'disk': 2048.0, 'gpus': 0, ...} -> 'cpus:2;mem:1536;disk:2048'."""
    parts = []
    for name in ("cpus", "mem", "disk"):
        value = resources.get(name)
        if isinstance(value, (int, float)):
            parts.append(f"{name}:{value:g}")
    return ";".join(parts)


def mesos_health(masters: Sequence[Node], run: Runner, *, agents: Iterable[Node] = (),
                 port: int = 5050) -> HealthResult:
    """Exactly one master is the elected leader (it answers /state; the others redirect
    to it), it is one of the inventory's masters, every master that answers has its
    replicated log caught up (registrar/log/recovered), and every given agent is
    registered and active with it. Agents' states carry their registered resources.

    The log: a reimaged master starts with an empty replica, which counts towards the
    log's quorum only once it has caught up from the others. Taking another master down
    before then leaves the log without a quorum, and no leader can be elected until a
    master comes back (seen in a loaded lab: 80 s without a leader during a rebuild)."""
    states: dict[str, str] = {}
    problems: list[str] = []
    leading: list[tuple[Node, dict]] = []
    pointed: set[str] = set()
    recovering: list[str] = []
    addresses = {m.address: m.name for m in masters}
    for master in masters:
        url = f"http://{master.address}:{port}/state"
        code, out = run(master, _mesos_state_command(url))
        match = _TRAILER_RE.search(out or "")
        if code != 0 or not match:
            states[master.name], problem = _silent(master, code, f"no /state on port {port}")
            problems.append(problem)
            continue
        status, location = match.group(1), match.group(2)
        metrics = _json(*run(master, f"curl -s --max-time 5 "
                                     f"{shlex.quote(f'http://{master.address}:{port}/metrics/snapshot')}"))
        if metrics is not None and metrics.get("registrar/log/recovered") == 0:
            recovering.append(master.name)
            problems.append(f"{master.name}: its replicated log has not caught up with the other "
                            "masters yet (registrar/log/recovered 0)")
        if status in ("301", "302", "307"):
            states[master.name] = "standby"
            pointed.add(location.split("//", 1)[-1].split("/", 1)[0])
            continue
        state = _json(0, out[:match.start()]) if status == "200" else None
        if state is None:
            states[master.name] = "no leader" if status == "503" else f"HTTP {status}"
            continue
        leader = str(state.get("leader") or "")
        if leader and leader == state.get("pid"):
            states[master.name] = "leader"
            leading.append((master, state))
        else:
            states[master.name] = "standby" if leader else "no leader"
    for name in recovering:
        states[name] += " (log catching up)"
    leader_state: dict | None = None
    summary = "no single leader"
    if len(leading) != 1:
        problems.append(f"{len(leading)} masters answer as leader"
                        + (f" ({', '.join(m.name for m, _ in leading)})" if leading else ""))
    else:
        master, leader_state = leading[0]
        pid = str(leader_state.get("pid"))
        if _pid_ip(pid) not in addresses:
            problems.append(f"leader {pid} is not one of the inventory's masters")
        summary = f"leader {master.name} ({pid})"
    wanted = list(agents)
    if wanted:
        if leader_state is None:
            problems.append("cannot check agents: no master answered as leader")
        else:
            registered: dict[str, dict] = {}
            for agent in leader_state.get("slaves") or []:
                if agent.get("active", True):
                    registered[str(agent.get("hostname", ""))] = agent
                    registered[_pid_ip(str(agent.get("pid", "")))] = agent
            total: dict[str, float] = {}
            for node in wanted:
                agent = registered.get(node.name) or registered.get(node.address)
                if agent is None:
                    states[node.name] = "missing"
                    problems.append(f"{node.name}: agent not registered with the leading master")
                    continue
                resources = agent.get("resources") or {}
                states[node.name] = "registered" + (f" {_format_resources(resources)}"
                                                    if _format_resources(resources) else "")
                for key in ("cpus", "mem", "disk"):
                    if isinstance(resources.get(key), (int, float)):
                        total[key] = total.get(key, 0.0) + resources[key]
            found = sum(1 for n in wanted if states[n.name] != "missing")
            summary += f", {found}/{len(wanted)} agents" + (f" ({_format_resources(total)})" if total else "")
    return HealthResult(ok=not problems, summary=summary, states=states, problems=tuple(problems))


def spark_workers_health(masters: Sequence[Node], workers: Iterable[Node], run: Runner, *,
                         webui_port: int = 8080,
                         log_files: Sequence[str] = (HOST.service_log("spark-master"),)) -> HealthResult:
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
        states[master.name] = _silent(master, code, "")[0]
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


def excusing(result: HealthResult, names: Iterable[str]) -> HealthResult:
    """`result` without the problems of the nodes `names` (each problem about one node
    starts "NAME: "): how the ensemble looks to what depends on it once those hosts'
    own rows already say they failed. What concerns the whole ensemble (no single
    leader, no Spark master alive) stays."""
    prefixes = tuple(f"{name}: " for name in names)
    if not prefixes:
        return result
    kept = tuple(p for p in result.problems if not p.startswith(prefixes))
    return HealthResult(ok=not kept, summary=result.summary, states=result.states, problems=kept)


# What a member of an ensemble reports when it is in it: ZooKeeper's modes, a Mesos
# master's role (a standby redirects to the leader it follows). Anything else
# ("not answering", "unreachable", "no leader", "HTTP 500") is a member out of its ensemble.
LEADING = ("leader", "standalone")
IN_ENSEMBLE = LEADING + ("follower", "observer", "standby")


def leaders(results: Iterable[HealthResult]) -> set[str]:
    """The nodes that lead an ensemble, in any of `results` (ZooKeeper's, the Mesos masters')."""
    return {name for result in results for name, state in result.states.items() if state in LEADING}


def leaders_last(members: Sequence[Node], results: Iterable[HealthResult]) -> list[Node]:
    """`members` with the followers first and the leaders last (stable otherwise); a node
    leading two ensembles (ZooKeeper and Mesos) after one leading one. Taking a leader out
    costs an election (nothing is served until it ends), a follower costs none: in this
    order a rolling restart or rebuild holds one election per ensemble, where another
    order holds one each time it happens to take out the member the leadership moved to.
    Read the leaders again before each member's turn: they move (k1prov.configure,
    k1prov.cluster.rebuild)."""
    results = list(results)
    return sorted(members, key=lambda m: sum(1 for r in results if r.states.get(m.name) in LEADING))


def back_in_ensemble(result: HealthResult, name: str) -> bool:
    """`name` is in its ensemble again (answers as leader, follower or standby) and the
    ensemble has a leader: the state in which the next member may be taken out."""
    return result.states.get(name) in IN_ENSEMBLE and bool(leaders([result]))


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


def wait_until_all_healthy(sample: Callable[[], dict[str, HealthResult]], *, health_timeout: float,
                           interval: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                           clock: Callable[[], float] = time.monotonic) -> dict[str, HealthResult]:
    """`wait_until_healthy` for several checks sampled together: repeats `sample` until
    every result passes or `health_timeout` seconds have passed; returns the last sample.
    One unhealthy sample is not a verdict: right after a rolling restart a ZooKeeper
    ensemble may be in the middle of an election for a few seconds (longer under load)."""
    deadline = clock() + health_timeout
    while True:
        results = sample()
        if all(r.ok for r in results.values()) or clock() + interval > deadline:
            return results
        sleep(interval)


# ---------------------------------------------------------------- batched sampling

_PROBE_MARK = "K1PROV-PROBE"
_PROBE_RE = re.compile(rf"\n{_PROBE_MARK} (\d+) (\d+)\n")


def batch_command(commands: Sequence[str]) -> str:
    """One command that runs `commands` in order (each in its own subshell, stdin from
    /dev/null) and follows each one's output with a line "K1PROV-PROBE <i> <exit code>"."""
    body = "".join(f"(\n{cmd}\n) </dev/null\nprintf '\\n{_PROBE_MARK} {i} %d\\n' \"$?\"\n"
                   for i, cmd in enumerate(commands))
    return f"bash -c {shlex.quote(body)}"


def parse_batch(stdout: str, count: int) -> list[tuple[int, str]]:
    """The answers to a `batch_command` of `count` commands: (exit code, stdout) each;
    a command whose end marker is missing (the batch was cut short) counts as failed."""
    answers: list[tuple[int, str]] = [(255, "")] * count
    pieces = _PROBE_RE.split(stdout)
    # pieces: out0, i0, rc0, out1, i1, rc1, ..., rest
    for k in range(0, len(pieces) - 2, 3):
        out, index, code = pieces[k], int(pieces[k + 1]), int(pieces[k + 2])
        if 0 <= index < count:
            answers[index] = (code, out)
    return answers


def commands_of(check: Check) -> list[tuple[Node, str]]:
    """Every command `check` may send: those it sends when no host answers (a check
    stops early only after an answer, see the module docstring)."""
    sent: list[tuple[Node, str]] = []

    def record(node: Node, command: str) -> tuple[int, str]:
        sent.append((node, command))
        return 255, ""

    check(record)
    return sent


def commands_by_host(checks: dict[str, Check]) -> dict[str, tuple[Node, list[str]]]:
    """Every command `checks` may send, per host name, each once, in order."""
    wanted: dict[str, tuple[Node, list[str]]] = {}
    for check in checks.values():
        for node, command in commands_of(check):
            cmds = wanted.setdefault(node.name, (node, []))[1]
            if command not in cmds:
                cmds.append(command)
    return wanted


def replay(answers: dict[tuple[str, str], tuple[int, str]]) -> BatchRunner:
    """A BatchRunner that answers from (host name, command) -> answer read earlier; a
    host with none of the commands asked counts as not answering."""
    def run(wanted: dict[str, tuple[Node, list[str]]]) -> dict[str, list[tuple[int, str]] | None]:
        out: dict[str, list[tuple[int, str]] | None] = {}
        for name, (_node, cmds) in wanted.items():
            got = [answers.get((name, c)) for c in cmds]
            out[name] = None if all(a is None for a in got) else [a or (255, "") for a in got]
        return out
    return run


def sample(checks: dict[str, Check], run_batch: BatchRunner) -> dict[str, HealthResult]:
    """Run `checks` once with ONE batch per host (`run_batch`: host name -> (node,
    commands) to the answers of each host, None for a host that did not answer)."""
    wanted = commands_by_host(checks)
    answers = run_batch(wanted) if wanted else {}
    table: dict[tuple[str, str], tuple[int, str]] = {}
    for name, (_node, cmds) in wanted.items():
        got = answers.get(name) or [(HOST_UNREACHABLE, "")] * len(cmds)
        table.update({(name, command): answer for command, answer in zip(cmds, got)})

    def answered(node: Node, command: str) -> tuple[int, str]:
        return table.get((node.name, command), (255, ""))

    return {gate: check(answered) for gate, check in checks.items()}


# ---------------------------------------------------------------- the checks of an inventory

# configure's gates (k1prov.configure_order.STEPS), in the order they run.
GATES = ("zookeeper", "mesos-masters", "mesos-agents", "spark-workers")


def gate_checks(inv: Inventory) -> dict[str, Check]:
    """The check behind each of configure's gates that the inventory's roles have. A
    gate checks every inventory member of its roles (a quorum is a property of the
    whole ensemble, not of the hosts in --limit)."""
    checks: dict[str, Check] = {}
    if inv.with_role("zookeeper"):
        zk_nodes, zk = inv.with_role("zookeeper"), zookeeper_settings(inv)
        checks["zookeeper"] = lambda run: zookeeper_health(zk_nodes, run, port=zk["client_port"],
                                                           data_dir=zk["data_dir"])
    masters = inv.with_role("mesos-master")
    if masters:
        port = mesos_settings(inv)["master_port"]
        agents = inv.with_role("mesos-agent")
        checks["mesos-masters"] = lambda run: mesos_health(masters, run, agents=(), port=port)
        checks["mesos-agents"] = lambda run: mesos_health(masters, run, agents=agents, port=port)
    spark = spark_settings(inv) if inv.with_role("spark-master") else None
    if spark and spark["manager"] == "standalone" and inv.with_role("spark-worker"):
        spark_masters, workers = inv.with_role("spark-master"), inv.with_role("spark-worker")
        ui = spark["master_webui_port"]
        checks["spark-workers"] = lambda run: spark_workers_health(spark_masters, workers, run,
                                                                   webui_port=ui)
    return checks


def cluster_gates(inv: Inventory) -> dict[str, str]:
    """What the cluster verbs report as the cluster's health, and the configure gate each
    one is: zookeeper (quorum), mesos (one leader, every agent registered), spark
    (standalone workers registered)."""
    gates = gate_checks(inv)
    named = {"zookeeper": "zookeeper",
             "mesos": "mesos-agents" if inv.with_role("mesos-agent") else "mesos-masters",
             "spark": "spark-workers"}
    return {name: gate for name, gate in named.items() if gate in gates}


def cluster_checks(inv: Inventory) -> dict[str, Check]:
    """The checks of `cluster_gates`, by the cluster verbs' names."""
    gates = gate_checks(inv)
    return {name: gates[gate] for name, gate in cluster_gates(inv).items()}
