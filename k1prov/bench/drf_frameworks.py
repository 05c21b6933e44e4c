"""Two Mesos frameworks that always want more, and a sampler of the allocation.

Shipped by `k1prov bench drf` to a cluster host and run there with its python3 (standard
library only). Each framework subscribes through Mesos' v1 scheduler HTTP API in its own
role and never stops asking, so who gets the resources freed as tasks end is the
allocator's (weighted DRF) choice; Framework says how they are built so that it is.

Phases: the weighted run in the given roles, then (--control) the same frameworks in two
roles with no weight (the ratio should be near 1). Before each phase the cluster must be
idle, bounded by --idle-timeout. The sampler reads the leading master's /roles and
/metrics/snapshot every --interval s and prints one JSON line per sample:

    {"event": "sample", "phase": "weighted", "t": 12.0, "total": {"cpus": 4, "mem": 3072},
     "roles": {"drf1": {"cpus": 1.5, "mem": 576, "offered_cpus": 0.5, "offered_mem": 0, "weight": 1.0}, ...}}

cpus/mem are what the role's tasks are allocated (/roles "allocated"; older masters:
"resources", which includes outstanding offers).

The same Framework, as a Holder, is `bench kmeans --contention`'s competing framework
(k1prov.bench.contention).

Usage: python3 drf_frameworks.py --masters IP:PORT,... --duration S
          --framework ROLE:CPUS:MEM --framework ROLE:CPUS:MEM [--control ROLE,ROLE]
          [--task-seconds S] [--tasks-per-offer N] [--seed N]
       python3 drf_frameworks.py --masters IP:PORT,... --hold ROLE:FRACTION --name NAME
          --status-dir DIR --max-seconds S [--release-every S] [--slots-per-agent N]
       python3 drf_frameworks.py --masters IP:PORT,... --teardown NAME --hold ROLE:FRACTION
"""
import argparse
import json
import queue
import os
import random
import signal
import sys
import threading
import time
import urllib.request
import uuid
from http.client import HTTPConnection, HTTPException

HTTP_TIMEOUT = 10.0
SUBSCRIBE_TIMEOUT = 60.0     # both frameworks subscribed
TEARDOWN_TIMEOUT = 10.0
FRAMEWORK_PREFIX = "k1prov-bench-drf-"


def say(record):
    print(json.dumps(record), flush=True)


def get_json(url, timeout=HTTP_TIMEOUT):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def leader(masters):
    """host:port of the leading master (any master's /state names it; standbys redirect)."""
    for master in masters:
        try:
            state = get_json(f"http://{master}/state")
        except (OSError, ValueError):
            continue
        pid = state.get("leader") or ""
        if pid:
            return pid.rpartition("@")[2]
    raise SystemExit("no master names a leader: " + ",".join(masters))


class Caller:
    """Scheduler calls over one kept-alive HTTP connection (reopened once if it broke)."""

    def __init__(self, master):
        self.host, port = master.split(":")
        self.port = int(port)
        self.conn = None
        self.stream_id = None
        self.lock = threading.Lock()

    def call(self, body):
        data = json.dumps(body)
        with self.lock:
            for attempt in (1, 2):
                if self.conn is None:
                    self.conn = HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT)
                try:
                    self.conn.request("POST", "/api/v1/scheduler", data,
                                      {"Content-Type": "application/json", "Mesos-Stream-Id": self.stream_id})
                    resp = self.conn.getresponse()
                    text = resp.read()
                except (OSError, HTTPException):
                    self.conn.close()
                    self.conn = None
                    if attempt == 2:
                        raise
                    continue
                if resp.status not in (200, 202):
                    raise RuntimeError(f"{body['type']}: HTTP {resp.status} {text[:200]!r}")
                return

    def close(self):
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


class Framework(threading.Thread):
    """One framework in one role that always wants more. Each point below moved the
    measured ratio (k1prov.bench.drf):

    - one task per offer, the rest declined at once (refuse_seconds 0): the allocator
      offers all of an agent to one role at a time, so taking everything would grow in
      whole agents instead of a task at a time (DRF's progressive filling);
    - its task declared as its minimum allocatable resources (offer_filters): otherwise
      the lowest-share role is offered leftovers it cannot use, again every cycle, while
      the other role, which could, never is;
    - subscribed suppressed, revived together once both are subscribed: the first does
      not take the cluster before the other exists;
    - tasks last task_seconds ±50% (seeded): tasks launched together do not all end in
      the same allocation cycle;
    - offers answered at once over a kept-alive connection, updates acknowledged by a
      thread of its own over another: a framework that falls behind holds its offers
      longer, and an outstanding offer counts as its role's share.
    """

    def __init__(self, phase, master, role, cpus, mem, task_seconds, tasks_per_offer, seed, go, stop):
        super().__init__(daemon=True)
        self.phase = phase
        self.master, self.role, self.cpus, self.mem = master, role, cpus, mem
        self.task_seconds, self.tasks_per_offer = task_seconds, tasks_per_offer
        self.random = random.Random(f"{seed}-{role}")
        self.go, self.stop = go, stop
        self.caller = Caller(master)
        self.acks = queue.Queue()
        self.ack_caller = Caller(master)
        self.acker = threading.Thread(target=self.acknowledge, daemon=True)
        self.subscribed = threading.Event()
        self.framework_id = None
        self.launched = 0
        self.failed = 0        # tasks that ended other than FINISHED (not killed by the teardown)
        self.error = None
        self.revived = False
        self.name = FRAMEWORK_PREFIX + role

    def call(self, body):
        self.caller.call(body)

    def run(self):
        try:
            self.subscribe()
        except Exception as exc:  # reported, the sampler goes on
            if self.stop.is_set():
                return  # the stream ends with the teardown
            self.error = f"{self.role}: {exc}"
            say({"event": "error", "phase": self.phase, "role": self.role, "error": str(exc)})
        finally:
            self.subscribed.set()   # never leave the start waiting on a framework that failed

    def subscribe(self):
        host, port = self.master.split(":")
        conn = HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT * 6)
        quantities = {"cpus": {"value": self.cpus}, "mem": {"value": self.mem}}
        info = {"user": "root", "name": self.name, "role": self.role,
                "failover_timeout": 0,
                # Offer this role only what holds one of its tasks (see the module's docstring).
                "offer_filters": {self.role: {"min_allocatable_resources": {"quantities": [
                    {"quantities": quantities}]}}}}
        conn.request("POST", "/api/v1/scheduler",
                     json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": info,
                                                                    "suppressed_roles": [self.role]}}),
                     {"Content-Type": "application/json", "Accept": "application/json",
                      "Connection": "close"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"SUBSCRIBE: HTTP {resp.status} {resp.read()[:200]!r}")
        self.caller.stream_id = self.ack_caller.stream_id = resp.getheader("Mesos-Stream-Id")
        self.acker.start()
        while not self.stop.is_set():
            event = self.read_record(resp)
            if event is None:
                raise RuntimeError("the master closed the event stream")
            self.handle(event)

    def revive(self):
        self.revived = True
        self.call({"framework_id": {"value": self.framework_id}, "type": "REVIVE",
                   "revive": {"roles": [self.role]}})

    @staticmethod
    def read_record(resp):
        """RecordIO: '<length>\\n<json of that length>'."""
        length = b""
        while True:
            c = resp.read(1)
            if not c:
                return None
            if c == b"\n":
                break
            length += c
        data = b""
        size = int(length)
        while len(data) < size:
            chunk = resp.read(size - len(data))
            if not chunk:
                return None
            data += chunk
        return json.loads(data.decode())

    def handle(self, event):
        kind = event.get("type")
        if kind == "SUBSCRIBED":
            self.framework_id = event["subscribed"]["framework_id"]["value"]
            self.subscribed.set()
        elif kind == "OFFERS":
            for offer in event["offers"].get("offers", []):
                self.offer(offer)
        elif kind == "UPDATE":
            status = event["update"]["status"]
            if status.get("state") in ("TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED",
                                       "TASK_GONE", "TASK_UNREACHABLE") and not self.stop.is_set():
                self.failed += 1
                if self.failed == 1:
                    say({"event": "task_failed", "phase": self.phase, "role": self.role, "state": status.get("state"),
                         "message": status.get("message", "")})
            if status.get("uuid"):
                self.acks.put({"framework_id": {"value": self.framework_id}, "type": "ACKNOWLEDGE",
                               "acknowledge": {"agent_id": status["agent_id"], "task_id": status["task_id"],
                                               "uuid": status["uuid"]}})
        elif kind == "ERROR":
            raise RuntimeError(event.get("error", {}).get("message", "framework error"))

    def acknowledge(self):
        """Send the queued acknowledgements, in order, until None."""
        while True:
            body = self.acks.get()
            if body is None:
                return
            try:
                self.ack_caller.call(body)
            except Exception as exc:
                if not self.stop.is_set() and self.error is None:
                    self.error = f"{self.role}: ACKNOWLEDGE: {exc}"
                    say({"event": "error", "phase": self.phase, "role": self.role, "error": f"ACKNOWLEDGE: {exc}"})

    def offer(self, offer):
        """Launch up to tasks_per_offer tasks from the offer; the rest goes back at once."""
        have = {r["name"]: r.get("scalar", {}).get("value", 0.0) for r in offer.get("resources", [])
                if r.get("type") == "SCALAR"}
        cpus, mem = have.get("cpus", 0.0), have.get("mem", 0.0)
        tasks = []
        while (self.go.is_set() and not self.stop.is_set() and len(tasks) < self.tasks_per_offer
               and cpus >= self.cpus - 1e-9 and mem >= self.mem - 1e-9):
            cpus, mem = cpus - self.cpus, mem - self.mem
            self.launched += 1
            seconds = round(self.task_seconds * self.random.uniform(0.5, 1.5), 1)
            tasks.append({
                "name": f"drf-{self.role}-{self.launched}",
                "task_id": {"value": f"{self.role}-{uuid.uuid4()}"},
                "agent_id": offer["agent_id"],
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": self.cpus}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": self.mem}}],
                "command": {"value": f"sleep {seconds}"}})
        operations = [{"type": "LAUNCH", "launch": {"task_infos": tasks}}] if tasks else []
        self.call({"framework_id": {"value": self.framework_id}, "type": "ACCEPT",
                   "accept": {"offer_ids": [offer["id"]], "operations": operations,
                              "filters": {"refuse_seconds": 0.0}}})

    def teardown(self):
        if self.framework_id:
            try:
                self.call({"framework_id": {"value": self.framework_id}, "type": "TEARDOWN"})
            except Exception:
                pass
        self.acks.put(None)
        if self.acker.is_alive():
            self.acker.join(TEARDOWN_TIMEOUT)
        self.caller.close()
        self.ack_caller.close()


def sample(master, roles, started, phase):
    metrics = get_json(f"http://{master}/metrics/snapshot")
    listing = get_json(f"http://{master}/roles")
    total = {"cpus": metrics.get("master/cpus_total", 0.0), "mem": metrics.get("master/mem_total", 0.0)}
    found = {}
    for entry in listing.get("roles", []):
        if entry.get("name") in roles:
            held = entry.get("allocated")
            if held is None:            # a master before 1.9: tasks and offers together
                held = entry.get("resources") or {}
            offered = entry.get("offered") or {}
            found[entry["name"]] = {"cpus": held.get("cpus", 0.0), "mem": held.get("mem", 0.0),
                                    "offered_cpus": offered.get("cpus", 0.0),
                                    "offered_mem": offered.get("mem", 0.0),
                                    "weight": entry.get("weight", 1.0)}
    for role in roles:
        found.setdefault(role, {"cpus": 0.0, "mem": 0.0, "offered_cpus": 0.0, "offered_mem": 0.0,
                                "weight": None})
    return {"event": "sample", "phase": phase, "t": round(time.monotonic() - started, 2), "total": total,
            "roles": found}


def agents(master):
    """Each active agent's unreserved cpus and mem (for the fair point k1prov.bench.drf computes)."""
    found = []
    for agent in get_json(f"http://{master}/slaves").get("slaves", []):
        if agent.get("active", True):
            res = agent.get("unreserved_resources") or agent.get("resources") or {}
            found.append({"name": agent.get("hostname", ""), "id": agent.get("id", ""),
                          "cpus": res.get("cpus", 0.0), "mem": res.get("mem", 0.0)})
    return found


def teardown_leftovers(master, prefix=FRAMEWORK_PREFIX):
    """Tear down this bench's frameworks that a run before left behind (disconnected: the
    run was cut off, or the masters failed over under it); their tasks would count as the
    roles' shares. Connected ones belong to a bench running now and are left alone."""
    gone = []
    for framework in get_json(f"http://{master}/frameworks").get("frameworks", []):
        if framework.get("name", "").startswith(prefix) and not framework.get("connected", True):
            request = urllib.request.Request(f"http://{master}/teardown", method="POST",
                                             data=f"frameworkId={framework['id']}".encode())
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT):
                pass
            gone.append(framework["name"])
    return gone


def wait_idle(master, timeout):
    """Until no resources are in use on the cluster (the previous phase's tasks are gone)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            metrics = get_json(f"http://{master}/metrics/snapshot")
            used = metrics.get("master/cpus_used", 0.0) + metrics.get("master/mem_used", 0.0)
        except (OSError, ValueError):
            used = None
        if used == 0.0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)


# ---------------------------------------------------------------- the competing framework

HOLD_PREFIX = "k1prov-bench-contention-"
# At its share the holder declines an agent's offers for this long (its own task ending
# revives it at once), instead of being offered the agent's free resources every cycle.
REFUSE_AT_TARGET = 5.0
# Until the holder's role holds nothing after its teardown (the master kills its tasks).
IDLE_AFTER_TEARDOWN_TIMEOUT = 60.0
# A task state after which the task holds nothing.
TERMINAL_STATES = ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
                   "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNREACHABLE")
# Samples in a row that must hold the whole target before status.json says "holding".
HOLDING_STREAK = 2
_EPS = 1e-6


def agent_slots(cpus, mem, fraction, slots_per_agent):
    """What the holder keeps on one agent: (tasks, cpus per task, mem per task). A task is
    1/slots_per_agent of the agent; the fraction is rounded to whole tasks."""
    count = int(round(fraction * slots_per_agent + 1e-9))
    return count, cpus / slots_per_agent, mem / slots_per_agent


def first_hold_seconds(agent_index, slot_index, agent_count, every):
    """The length of the first fill's task slot_index on agent agent_index: the agents'
    tasks interleaved (agent 0's first, agent 1's first, ..., agent 0's second, ...), one
    ending every `every` seconds."""
    return (slot_index * agent_count + agent_index + 1) * every


def steady_hold_seconds(total_tasks, every):
    """A later task's length: with total_tasks staggered tasks, one ends every `every` s."""
    return max(total_tasks, 1) * every


def hold_plan(agent_list, fraction, slots_per_agent):
    """Per agent what the holder keeps, and the target in all: ([{id, name, tasks, cpus, mem}],
    {"cpus": ..., "mem": ...})."""
    plan = []
    for agent in agent_list:
        tasks, cpus, mem = agent_slots(agent["cpus"], agent["mem"], fraction, slots_per_agent)
        plan.append({"id": agent["id"], "name": agent["name"], "tasks": tasks, "cpus": cpus, "mem": mem})
    target = {"cpus": sum(p["tasks"] * p["cpus"] for p in plan), "mem": sum(p["tasks"] * p["mem"] for p in plan)}
    return plan, target


class Holder(Framework):
    """Keeps plan[agent]["tasks"] tasks on each agent; tasks end in the release pattern.

    In its own role it keeps FRACTION of every agent's cpus and memory, in tasks of
    1/--slots-per-agent of the agent. The first fill's tasks are staggered so that one
    ends every --release-every seconds (agents in turn); every later task lasts (its
    tasks in all) x --release-every: a steady stream of freed slots, as another team's
    jobs would free them. A task that ends revives the role, and DRF offers the freed
    resources first to the lowest share (Spark's, while it holds less); what Spark
    declines comes back. At its share it declines an agent's offers for
    REFUSE_AT_TARGET s. It writes its last sample to --status-dir/status.json
    ("holding" once two samples in a row hold the whole target) and tears itself down
    on --status-dir/stop, SIGTERM or --max-seconds.
    """

    def __init__(self, master, role, name, plan, every, go, stop):
        slots = [p for p in plan if p["tasks"]] or plan or [{"cpus": 0.0, "mem": 0.0}]
        smallest = min(slots, key=lambda p: (p["cpus"], p["mem"]))
        super().__init__("hold", master, role, smallest["cpus"], smallest["mem"], 0.0, 1, 1, go, stop)
        self.name = name
        self.plan = {p["id"]: p for p in plan}
        self.order = {p["id"]: i for i, p in enumerate(plan)}
        self.every = every
        self.total = sum(p["tasks"] for p in plan)
        self.held = {p["id"]: 0 for p in plan}
        self.filled = {p["id"]: 0 for p in plan}     # first-fill tasks launched, per agent
        self.running = {}                              # task id -> agent id
        self.ended = 0

    def task_seconds_for(self, agent):
        if self.filled[agent] < self.plan[agent]["tasks"]:
            seconds = first_hold_seconds(self.order[agent], self.filled[agent], len(self.plan), self.every)
            self.filled[agent] += 1
            return seconds
        return steady_hold_seconds(self.total, self.every)

    def offer(self, offer):
        agent = offer["agent_id"]["value"]
        slot = self.plan.get(agent)
        have = {r["name"]: r.get("scalar", {}).get("value", 0.0) for r in offer.get("resources", [])
                if r.get("type") == "SCALAR"}
        cpus, mem = have.get("cpus", 0.0), have.get("mem", 0.0)
        tasks = []
        while (slot is not None and self.go.is_set() and not self.stop.is_set()
               and self.held[agent] < slot["tasks"] and cpus >= slot["cpus"] - _EPS and mem >= slot["mem"] - _EPS):
            cpus, mem = cpus - slot["cpus"], mem - slot["mem"]
            seconds = self.task_seconds_for(agent)
            self.launched += 1
            self.held[agent] += 1
            task_id = f"{self.role}-{uuid.uuid4()}"
            self.running[task_id] = agent
            tasks.append({
                "name": f"contention-{self.role}-{self.launched}",
                "task_id": {"value": task_id},
                "agent_id": offer["agent_id"],
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": slot["cpus"]}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": slot["mem"]}}],
                "command": {"value": f"sleep {seconds:g}"}})
        operations = [{"type": "LAUNCH", "launch": {"task_infos": tasks}}] if tasks else []
        self.call({"framework_id": {"value": self.framework_id}, "type": "ACCEPT",
                   "accept": {"offer_ids": [offer["id"]], "operations": operations,
                              "filters": {"refuse_seconds": 0.0 if tasks else REFUSE_AT_TARGET}}})

    def handle(self, event):
        if event.get("type") == "UPDATE":
            status = event["update"]["status"]
            task = status.get("task_id", {}).get("value")
            if status.get("state") in TERMINAL_STATES and task in self.running:
                self.held[self.running.pop(task)] -= 1
                self.ended += 1
                if self.go.is_set() and not self.stop.is_set():
                    self.revive()      # the next task wants the slot back
        super().handle(event)


def held_share(record, role):
    """The role's share of the cluster's cpus and of its memory in one sample."""
    got = (record.get("roles") or {}).get(role) or {}
    total = record.get("total") or {}
    return {k: (got.get(k, 0.0) / total[k] if total.get(k) else 0.0) for k in ("cpus", "mem")}


def write_status(directory, name, record):
    tmp = os.path.join(directory, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(record) + "\n")
    os.replace(tmp, os.path.join(directory, name))


def _sigterm(signum, frame):
    raise SystemExit(143)


def run_hold(master, args):
    """The holder until DIR/stop, SIGTERM or --max-seconds; one sample a line, status.json."""
    role, fraction = args.hold.split(":")
    fraction = float(fraction)
    directory = args.status_dir
    os.makedirs(directory, exist_ok=True)
    stop_file = os.path.join(directory, "stop")
    signal.signal(signal.SIGTERM, _sigterm)
    plan, target = hold_plan(agents(master), fraction, args.slots_per_agent)
    say({"event": "plan", "role": role, "fraction": fraction, "agents": plan, "target": target,
         "release_every": args.release_every,
         "task_seconds": steady_hold_seconds(sum(p["tasks"] for p in plan), args.release_every)})
    go, stop = threading.Event(), threading.Event()
    holder = Holder(master, role, args.name, plan, args.release_every, go, stop)
    exit_record = {"event": "exit", "error": ""}
    try:
        holder.start()
        holder.subscribed.wait(SUBSCRIBE_TIMEOUT)
        if not holder.framework_id:
            raise RuntimeError(holder.error or f"not subscribed after {SUBSCRIBE_TIMEOUT:g} s")
        write_status(directory, "framework.json", {"id": holder.framework_id, "name": args.name})
        say({"event": "subscribed", "framework_id": holder.framework_id})
        go.set()
        holder.revive()
        started = time.monotonic()
        streak = 0
        while not os.path.exists(stop_file) and time.monotonic() - started < args.max_seconds:
            if holder.error:
                raise RuntimeError(holder.error)
            try:
                record = sample(master, [role], started, "hold")
            except (OSError, ValueError) as exc:
                say({"event": "error", "phase": "hold", "role": role, "error": f"sample: {exc}"})
            else:
                share = held_share(record, role)
                got = record["roles"][role]
                full = got["cpus"] >= target["cpus"] - _EPS and got["mem"] >= target["mem"] - _EPS
                streak = streak + 1 if full else 0
                record.update({"epoch": round(time.time(), 3), "share": share, "running": len(holder.running),
                               "ended": holder.ended, "holding": streak >= HOLDING_STREAK})
                say(record)
                write_status(directory, "status.json", record)
            time.sleep(args.interval)
    except (Exception, SystemExit) as exc:   # SystemExit: SIGTERM; the teardown below runs either way
        exit_record["error"] = f"{type(exc).__name__}: {exc}"
        say({"event": "error", "phase": "hold", "role": role, "error": exit_record["error"]})
    finally:
        stop.set()
        holder.teardown()
        say({"event": "done", "phase": "hold", "launched": {role: holder.launched}, "ended": holder.ended,
             "failed": {role: holder.failed}, "errors": [holder.error] if holder.error else []})
        write_status(directory, "exit.json", exit_record)
    return 0


def teardown_named(master, name, role, idle_timeout=IDLE_AFTER_TEARDOWN_TIMEOUT):
    """Tear down every framework called `name` (connected or not: this one is ours), then
    wait until `role` holds nothing."""
    gone = []
    for framework in get_json(f"http://{master}/frameworks").get("frameworks", []):
        if framework.get("name") == name:
            request = urllib.request.Request(f"http://{master}/teardown", method="POST",
                                             data=f"frameworkId={framework['id']}".encode())
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT):
                pass
            gone.append(framework["id"])
    deadline = time.monotonic() + idle_timeout
    held = None
    while time.monotonic() < deadline:
        listing = get_json(f"http://{master}/roles")
        entry = next((r for r in listing.get("roles", []) if r.get("name") == role), {})
        res = entry.get("allocated") or entry.get("resources") or {}
        held = {"cpus": res.get("cpus", 0.0), "mem": res.get("mem", 0.0)}
        if held["cpus"] <= _EPS and held["mem"] <= _EPS:
            break
        time.sleep(0.5)
    say({"event": "torn_down", "frameworks": gone, "held": held})
    return gone


def run_phase(phase, master, shapes, args):
    """shapes: [(role, cpus, mem)]. Subscribe all suppressed, revive together, sample."""
    if not wait_idle(master, args.idle_timeout):
        say({"event": "error", "phase": phase, "role": "",
             "error": f"the cluster still had resources in use after {args.idle_timeout:g} s"})
    try:
        say({"event": "agents", "phase": phase, "agents": agents(master)})
    except (OSError, ValueError) as exc:
        say({"event": "error", "phase": phase, "role": "", "error": f"agents: {exc}"})
    go, stop = threading.Event(), threading.Event()
    frameworks = [Framework(phase, master, role, cpus, mem, args.task_seconds, args.tasks_per_offer, args.seed,
                            go, stop) for role, cpus, mem in shapes]
    roles = [f.role for f in frameworks]
    for f in frameworks:
        f.start()
    deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
    for f in frameworks:
        f.subscribed.wait(max(0.0, deadline - time.monotonic()))
    started = time.monotonic()
    go.set()
    for f in frameworks:
        if f.framework_id and not f.error:
            try:
                f.revive()
            except Exception as exc:
                say({"event": "error", "phase": phase, "role": f.role, "error": f"REVIVE: {exc}"})
    say({"event": "phase", "phase": phase, "roles": roles,
         "subscribed": [f.role for f in frameworks if f.framework_id]})
    try:
        while time.monotonic() - started < args.duration:
            try:
                say(sample(master, roles, started, phase))
            except (OSError, ValueError) as exc:
                say({"event": "error", "phase": phase, "role": "", "error": f"sample: {exc}"})
            time.sleep(args.interval)
    finally:
        stop.set()
        for f in frameworks:
            f.teardown()
    say({"event": "done", "phase": phase, "launched": {f.role: f.launched for f in frameworks},
         "failed": {f.role: f.failed for f in frameworks},
         "errors": [f.error for f in frameworks if f.error]})


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--masters", required=True)
    parser.add_argument("--duration", type=float, help="seconds of sampling, each phase")
    parser.add_argument("--framework", action="append", help="ROLE:CPUS:MEM")
    parser.add_argument("--control", default="", help="ROLE,ROLE: a second phase in these roles")
    parser.add_argument("--task-seconds", type=float, default=30.0)
    parser.add_argument("--tasks-per-offer", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument("--hold", default="", help="ROLE:FRACTION: the competing framework")
    parser.add_argument("--name", default="", help="the holder's framework name")
    parser.add_argument("--status-dir", default="")
    parser.add_argument("--max-seconds", type=float, default=0.0)
    parser.add_argument("--release-every", type=float, default=4.0)
    parser.add_argument("--slots-per-agent", type=int, default=8)
    parser.add_argument("--teardown", default="", help="NAME: tear down the holder called NAME")
    args = parser.parse_args(argv)
    if args.teardown and not args.hold:
        parser.error("--teardown needs --hold ROLE:FRACTION (the role to see emptied)")
    if args.hold and not args.teardown and not (args.name.startswith(HOLD_PREFIX) and args.status_dir
                                                and args.max_seconds > 0):
        parser.error(f"--hold needs --name {HOLD_PREFIX}..., --status-dir and --max-seconds")
    if not args.hold and not (args.framework and args.duration):
        parser.error("--framework and --duration are required")
    master = leader(args.masters.split(","))
    say({"event": "leader", "master": master})
    if args.teardown:
        teardown_named(master, args.teardown, args.hold.split(":")[0])
        return 0
    if args.hold:
        try:
            gone = teardown_leftovers(master, HOLD_PREFIX)
            if gone:
                say({"event": "leftovers", "frameworks": gone})
        except (OSError, ValueError) as exc:
            say({"event": "error", "role": "", "error": f"leftover frameworks: {exc}"})
        return run_hold(master, args)
    try:
        flags = get_json(f"http://{master}/flags").get("flags", {})
        say({"event": "flags", "allocation_interval": flags.get("allocation_interval", "")})
    except (OSError, ValueError) as exc:
        say({"event": "error", "role": "", "error": f"flags: {exc}"})
    try:
        gone = teardown_leftovers(master)
        if gone:
            say({"event": "leftovers", "frameworks": gone})
    except (OSError, ValueError) as exc:
        say({"event": "error", "role": "", "error": f"leftover frameworks: {exc}"})
    shapes = []
    for spec in args.framework:
        role, cpus, mem = spec.split(":")
        shapes.append((role, float(cpus), float(mem)))
    run_phase("weighted", master, shapes, args)
    if args.control:
        control_roles = args.control.split(",")
        run_phase("control", master, [(r, c, m) for r, (_, c, m) in zip(control_roles, shapes)], args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
