"""Two Mesos frameworks that always want more, and a sampler of the allocation.

Shipped by `k1prov bench drf` to a cluster host and run there with the host's python3
(standard library only). Each framework subscribes through Mesos' v1 scheduler HTTP API
in its own role and never stops asking; who gets the resources freed as tasks end is the
allocator's (weighted DRF) choice. How they are made, and why (each point moved the
measured ratio; see k1prov.bench.drf):

- One task per offer; the rest of the offer goes back at once (refuse_seconds 0). The
  allocator offers all of an agent's free resources to one role at a time, so a framework
  that took everything would grow in whole agents; one task per offer makes every task
  the allocator's choice (DRF's progressive filling, a task at a time).
- Each framework declares its task as its minimum allocatable resources (FrameworkInfo
  offer_filters). Otherwise the role with the lowest share is offered leftovers its task
  does not fit, declines them, and is offered them again the next cycle, while the other
  role, which could use them, never is.
- Both subscribe with their role suppressed and revive together once both are subscribed:
  the first to subscribe does not take the whole cluster before the other exists.
- Tasks last task_seconds on average, spread over ±50% (seeded), so that tasks launched
  together do not all end in the same allocation cycle.
- Offers are answered at once, over a kept-alive connection; status updates are
  acknowledged by a thread of their own, over another. A framework that opens a
  connection per call, or acknowledges in line, falls behind on a loaded machine (the
  one with more, smaller tasks first: it has more updates), holds its offers longer, and
  the allocator counts an outstanding offer as the role's share: it then gets less.

Phases: the weighted run in the given roles, then (--control) the same frameworks in two
roles with no weight of their own (the control: the ratio should be near 1). Before each
phase the cluster must be idle (no resources used), bounded by --idle-timeout.

A sampler reads the leading master's /roles and /metrics/snapshot every --interval s and
prints one JSON line per sample:

    {"event": "sample", "phase": "weighted", "t": 12.0, "total": {"cpus": 4, "mem": 3072},
     "roles": {"drf1": {"cpus": 1.5, "mem": 576, "offered_cpus": 0.5, "offered_mem": 0, "weight": 1.0}, ...}}

cpus/mem are the resources allocated to the role's tasks (/roles "allocated"; older
masters: "resources", which includes outstanding offers).

Usage: python3 drf_frameworks.py --masters IP:PORT,... --duration S
          --framework ROLE:CPUS:MEM --framework ROLE:CPUS:MEM [--control ROLE,ROLE]
          [--task-seconds S] [--tasks-per-offer N] [--seed N]
"""
import argparse
import json
import queue
import random
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
        info = {"user": "root", "name": FRAMEWORK_PREFIX + self.role, "role": self.role,
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
            found.append({"name": agent.get("hostname", ""), "cpus": res.get("cpus", 0.0), "mem": res.get("mem", 0.0)})
    return found


def teardown_leftovers(master):
    """Tear down this bench's frameworks that a run before left behind (disconnected: the
    run was cut off, or the masters failed over under it); their tasks would count as the
    roles' shares. Connected ones belong to a bench running now and are left alone."""
    gone = []
    for framework in get_json(f"http://{master}/frameworks").get("frameworks", []):
        if framework.get("name", "").startswith(FRAMEWORK_PREFIX) and not framework.get("connected", True):
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
    parser.add_argument("--duration", type=float, required=True, help="seconds of sampling, each phase")
    parser.add_argument("--framework", action="append", required=True, help="ROLE:CPUS:MEM")
    parser.add_argument("--control", default="", help="ROLE,ROLE: a second phase in these roles")
    parser.add_argument("--task-seconds", type=float, default=30.0)
    parser.add_argument("--tasks-per-offer", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    master = leader(args.masters.split(","))
    say({"event": "leader", "master": master})
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
