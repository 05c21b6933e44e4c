"""Two Mesos frameworks that always want more, and a sampler of the allocation.

Shipped by `k1prov bench drf` to a cluster host and run there with the host's python3
(standard library only). Each framework subscribes through Mesos' v1 scheduler HTTP API
in its own role, launches as many short tasks as each offer holds (declining nothing for
longer than an allocation), and never stops asking: who gets the resources freed as tasks
end is the allocator's (weighted DRF) choice. A sampler reads the leading master's /roles and /metrics/snapshot
every second and prints one JSON line per sample:

    {"event": "sample", "t": 12.0, "total": {"cpus": 4, "mem": 3072},
     "roles": {"drf1": {"cpus": 1.5, "mem": 576, "tasks": 3, "weight": 1.0}, ...}}

Usage: python3 drf_frameworks.py --masters IP:PORT,... --duration S
          --framework ROLE:CPUS:MEM ... [--task-seconds S]
"""
import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.client import HTTPConnection

HTTP_TIMEOUT = 10.0


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


class Framework(threading.Thread):
    def __init__(self, master, role, cpus, mem, task_seconds, stop):
        super().__init__(daemon=True)
        self.master, self.role, self.cpus, self.mem = master, role, cpus, mem
        self.task_seconds, self.stop = task_seconds, stop
        self.framework_id = None
        self.stream_id = None
        self.launched = 0
        self.error = None

    def call(self, body):
        host, port = self.master.split(":")
        conn = HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT)
        try:
            conn.request("POST", "/api/v1/scheduler", json.dumps(body),
                         {"Content-Type": "application/json", "Mesos-Stream-Id": self.stream_id})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status not in (200, 202):
                raise RuntimeError(f"{body['type']}: HTTP {resp.status} {data[:200]!r}")
        finally:
            conn.close()

    def run(self):
        try:
            self.subscribe()
        except Exception as exc:  # reported, the sampler goes on
            if self.stop.is_set():
                return  # the stream ends with the teardown
            self.error = f"{self.role}: {exc}"
            print(json.dumps({"event": "error", "role": self.role, "error": str(exc)}), flush=True)

    def subscribe(self):
        host, port = self.master.split(":")
        conn = HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT * 6)
        info = {"user": "root", "name": f"k1prov-bench-drf-{self.role}", "role": self.role,
                "failover_timeout": 0}
        conn.request("POST", "/api/v1/scheduler",
                      json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}),
                      {"Content-Type": "application/json", "Accept": "application/json",
                       "Connection": "close"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"SUBSCRIBE: HTTP {resp.status} {resp.read()[:200]!r}")
        self.stream_id = resp.getheader("Mesos-Stream-Id")
        while not self.stop.is_set():
            event = self.read_record(resp)
            if event is None:
                raise RuntimeError("the master closed the event stream")
            self.handle(event)

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
        elif kind == "OFFERS":
            for offer in event["offers"].get("offers", []):
                self.offer(offer)
        elif kind == "UPDATE":
            status = event["update"]["status"]
            if status.get("uuid"):
                self.call({"framework_id": {"value": self.framework_id}, "type": "ACKNOWLEDGE",
                           "acknowledge": {"agent_id": status["agent_id"], "task_id": status["task_id"],
                                           "uuid": status["uuid"]}})
        elif kind == "ERROR":
            raise RuntimeError(event.get("error", {}).get("message", "framework error"))

    def offer(self, offer):
        """Launch as many tasks as the offer holds (a framework that always wants more);
        who gets the resources as tasks end is the allocator's weighted DRF choice."""
        have = {r["name"]: r.get("scalar", {}).get("value", 0.0) for r in offer.get("resources", [])
                if r.get("type") == "SCALAR"}
        cpus, mem = have.get("cpus", 0.0), have.get("mem", 0.0)
        tasks = []
        while cpus >= self.cpus - 1e-9 and mem >= self.mem - 1e-9:
            cpus, mem = cpus - self.cpus, mem - self.mem
            self.launched += 1
            tasks.append({
                "name": f"drf-{self.role}-{self.launched}",
                "task_id": {"value": f"{self.role}-{uuid.uuid4()}"},
                "agent_id": offer["agent_id"],
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": self.cpus}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": self.mem}}],
                "command": {"value": f"sleep {self.task_seconds}"}})
        operations = [{"type": "LAUNCH", "launch": {"task_infos": tasks}}] if tasks else []
        # What is left goes back at once (no filter): the next offer is the allocator's choice.
        self.call({"framework_id": {"value": self.framework_id}, "type": "ACCEPT",
                   "accept": {"offer_ids": [offer["id"]], "operations": operations,
                              "filters": {"refuse_seconds": 0.0}}})


def sample(master, roles, started):
    metrics = get_json(f"http://{master}/metrics/snapshot")
    listing = get_json(f"http://{master}/roles")
    total = {"cpus": metrics.get("master/cpus_total", 0.0), "mem": metrics.get("master/mem_total", 0.0)}
    found = {}
    for entry in listing.get("roles", []):
        if entry.get("name") in roles:
            res = entry.get("resources") or {}
            found[entry["name"]] = {"cpus": res.get("cpus", 0.0), "mem": res.get("mem", 0.0),
                                    "weight": entry.get("weight", 1.0)}
    for role in roles:
        found.setdefault(role, {"cpus": 0.0, "mem": 0.0, "weight": None})
    return {"event": "sample", "t": round(time.monotonic() - started, 2), "total": total, "roles": found}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--masters", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--framework", action="append", required=True, help="ROLE:CPUS:MEM")
    parser.add_argument("--task-seconds", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    master = leader(args.masters.split(","))
    print(json.dumps({"event": "leader", "master": master}), flush=True)
    stop = threading.Event()
    frameworks = []
    for spec in args.framework:
        role, cpus, mem = spec.split(":")
        frameworks.append(Framework(master, role, float(cpus), float(mem), args.task_seconds, stop))
    roles = [f.role for f in frameworks]
    started = time.monotonic()
    for f in frameworks:
        f.start()
    try:
        while time.monotonic() - started < args.duration:
            try:
                print(json.dumps(sample(master, roles, started)), flush=True)
            except (OSError, ValueError) as exc:
                print(json.dumps({"event": "error", "role": "", "error": f"sample: {exc}"}), flush=True)
            time.sleep(args.interval)
    finally:
        stop.set()
        for f in frameworks:
            if f.framework_id:
                try:
                    f.call({"framework_id": {"value": f.framework_id}, "type": "TEARDOWN"})
                except Exception:
                    pass
    print(json.dumps({"event": "done", "launched": {f.role: f.launched for f in frameworks},
                      "errors": [f.error for f in frameworks if f.error]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
