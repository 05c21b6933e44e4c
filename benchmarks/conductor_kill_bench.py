"""A conductor SIGKILLed in the middle of a deploy of N fake-hardware nodes, 3 conductors in
one group (issue 22, item 5): Ironic moves the dead conductor's nodes to the others, k1prov's
run completes or names exactly the nodes to re-run, and nothing is deployed twice.

    .venv/bin/python benchmarks/conductor_kill_bench.py --nodes 300 \\
        --port-offset 17000 --bridge k1p22k --cidr 10.252.25.1/24 \\
        --json benchmarks/results/conductor-kill-300-<date>.json

A lab of its own (scale_bench.lab_settings: own directory, ports, bridge, subnet;
`--conductors 3`, one group, [conductor] heartbeat_timeout 20 s as the lab's kill tests use),
N nodes as scale_bench enrolls them (fake-hardware, every interface fake, addresses on
127.248/16). Then:

  run 1   a k1prov deploy of all N (a process of its own, through the Provisioner facade,
          the SSH wait cut short as scale_bench does: fake nodes boot nothing); when
          --kill-at of the nodes are active, the process group of the conductor holding the
          most nodes not yet active is SIGKILLed. Recorded: the run's exit code and the nodes
          it names as failed (less the rows failing only the cut-short SSH wait, which every
          deployed fake node fails: so the exit code is 4 or 3 even when all went well, and
          the bench reads the rows); Ironic's state and owner (`conductor`) of every node; how long
          until no node is the dead conductor's any more.
  run 2   the same deploy again: it must deploy exactly the nodes run 1 named ("deployed")
          and leave the others ("unchanged"); every node ends active.
  twice   per node, from Ironic's side: its conductors' "moved to provision state
          "deploying"" lines (every deploy start, whichever conductor ran it, the dead one's
          log included) and the deploy requests k1prov sent (ironic-api's access log,
          PUT …/states/provision answered 2xx) in each run. Nothing deployed twice: a node
          active after run 1 got no request and no deploy start in run 2, and no node
          started more than one deploy in run 1.

Then undeploy and delete (scale_bench.run_phase) and `lab down`.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_cluster_up import ACCESS  # noqa: E402
from scale_bench import inventory_text, lab_settings, run_phase  # noqa: E402

CLUSTER = "ck"
# The lab's kill tests' heartbeat_timeout (tests/integration/test_lab_conductors.py).
HEARTBEAT_TIMEOUT = 20
# A deploy of 300 fake nodes takes 1-3 min on this machine, loaded; with a dead conductor
# and the SSH wait cut short, an hour is far beyond any healthy run.
RUN_TIMEOUT = 3600.0
# Ironic moves a dead conductor's nodes after heartbeat_timeout plus a hash ring reset and
# an orphan check (5 s each in the lab); on a loaded machine, with room.
TAKEOVER_TIMEOUT = 600.0
POLL = 1.0
# Ironic 1.49+ has the node's `conductor` field.
API_VERSION = "1.78"
# A conductor's state change line: "Node <uuid> moved to provision state "deploying" from …".
MOVED = re.compile(r'Node ([0-9a-f-]{36}) moved to provision state "([a-z -]+)" from state "([a-z -]+)"')
PROVISION_PUT = re.compile(r"^/v1/nodes/([0-9a-f-]{36})/states/provision$")


def one_deploy(args) -> int:
    """--phase deploy: k1prov's deploy in this process; writes its per-node rows as JSON to
    --out and exits with the run's exit code."""
    from k1prov.context import RunOptions
    from k1prov.inventory import load_inventory
    from k1prov.provisioner import Provisioner
    from k1prov.settings import DEFAULT_TIMEOUTS

    timeouts = replace(DEFAULT_TIMEOUTS, ssh_ready=1.0, ssh_connect=1.0)
    prov = Provisioner(load_inventory(args.inventory), state_root=args.state, timeouts=timeouts,
                       options=RunOptions(), notify=lambda m: None)
    t0 = time.monotonic()
    rep = prov.deploy()
    rows = {o.node: {"status": o.status.value, "action": o.action, "error": o.error} for o in rep.outcomes}
    args.out.write_text(json.dumps({"verb_s": round(time.monotonic() - t0, 2),
                                    "exit": rep.exit_code(), "nodes": rows}))
    return rep.exit_code()


def ironic_nodes(url: str) -> dict[str, dict]:
    """name -> uuid, provision_state, conductor of every node (the API reads the database: a
    dead conductor does not slow it)."""
    # `conductor` is computed, not a column: only the detailed listing has it (not `fields=`).
    req = urllib.request.Request(f"{url}/v1/nodes/detail?limit=1000",
                                 headers={"X-OpenStack-Ironic-API-Version": API_VERSION})
    with urllib.request.urlopen(req, timeout=60) as r:
        return {n["name"]: n for n in json.load(r)["nodes"]}


def log_sizes(logs: list[Path]) -> dict[Path, int]:
    return {p: p.stat().st_size for p in logs}


def deploy_starts(since: dict[Path, int]) -> collections.Counter:
    """Per node UUID, its moves into "deploying" in the conductors' logs after `since`."""
    out: collections.Counter = collections.Counter()
    for path, start in since.items():
        with path.open("rb") as f:
            f.seek(start)
            for m in MOVED.finditer(f.read().decode(errors="replace")):
                if m.group(2) == "deploying":
                    out[m.group(1)] += 1
    return out


def deploy_requests(api_log: Path, start: float, end: float) -> collections.Counter:
    """Per node UUID, the provision requests Ironic's API accepted (2xx) between start and end
    (a deploy phase sends no other PUT …/states/provision)."""
    out: collections.Counter = collections.Counter()
    for line in api_log.read_text(errors="replace").splitlines():
        m = ACCESS.search(line)
        if not m or m.group(2) != "PUT" or not 200 <= int(m.group(4)) < 300:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        node = PROVISION_PUT.match(m.group(3).split("?")[0])
        if node and start <= t <= end + 0.5:
            out[node.group(1)] += 1
    return out


def start_deploy(inv: Path, state: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--phase", "deploy", "--inventory", str(inv),
                             "--state", str(state), "--out", str(out)])


def wait_run(proc: subprocess.Popen, out: Path) -> dict:
    proc.wait(timeout=RUN_TIMEOUT)
    res = json.loads(out.read_text()) if out.exists() else {"nodes": {}}
    res["process_exit"] = proc.returncode
    return res


def kill_mid_deploy(lab, inv: Path, state: Path, out: Path, args) -> dict:
    """Run 1: the deploy, a conductor killed at --kill-at, the take-over watched."""
    s = lab.settings
    hosts = {s.conductor_host(i): i for i in range(1, s.conductors + 1)}
    proc = start_deploy(inv, state, out)
    try:
        return watch_and_kill(proc, s, hosts, out, args)
    finally:
        if proc.poll() is None:   # the bench failed: its deploy goes with it
            proc.kill()
            proc.wait()


def watch_and_kill(proc: subprocess.Popen, s, hosts: dict[str, int], out: Path, args) -> dict:
    from k1prov.lab import procs

    t0 = time.monotonic()
    while True:
        nodes = ironic_nodes(s.ironic_url)
        states = collections.Counter(n["provision_state"] for n in nodes.values())
        if states["active"] >= args.kill_at * args.nodes or proc.poll() is not None:
            break
        if time.monotonic() - t0 > RUN_TIMEOUT:
            raise TimeoutError(f"no {args.kill_at:.0%} of the nodes active after {RUN_TIMEOUT} s: {states}")
        time.sleep(POLL)
    if proc.poll() is not None:
        raise RuntimeError(f"the deploy ended (exit {proc.returncode}) before the kill: use a lower --kill-at")
    pending = collections.Counter(n["conductor"] for n in nodes.values() if n["provision_state"] != "active")
    victim_host = max(hosts, key=lambda h: pending[h])
    rec = procs.read_running(s.run_dir, f"ironic-conductor-{hosts[victim_host]}")
    os.killpg(rec.pid, signal.SIGKILL)
    killed = time.monotonic()
    mine = {name for name, n in nodes.items() if n["conductor"] == victim_host}
    res = {"killed_after_s": round(killed - t0, 1), "victim": f"ironic-conductor-{hosts[victim_host]}",
           "victim_host": victim_host, "states_at_kill": dict(states),
           "owners_at_kill": dict(collections.Counter(n["conductor"] for n in nodes.values())),
           "victim_nodes": len(mine),
           "victim_states_at_kill": dict(collections.Counter(nodes[n]["provision_state"] for n in mine))}
    print(f"killed {res['victim']} after {res['killed_after_s']} s: {res['states_at_kill']}, "
          f"its {len(mine)} nodes {res['victim_states_at_kill']}", flush=True)
    moved = None
    while moved is None or proc.poll() is None:
        nodes = ironic_nodes(s.ironic_url)
        if moved is None and not any(n["conductor"] == victim_host for n in nodes.values()):
            moved = time.monotonic() - killed
            print(f"no node is {victim_host}'s after {moved:.1f} s", flush=True)
        if moved is None and time.monotonic() - killed > TAKEOVER_TIMEOUT:
            res["not_moved"] = sorted(n for n, x in nodes.items() if x["conductor"] == victim_host)
            break
        if time.monotonic() - t0 > RUN_TIMEOUT:
            break
        time.sleep(POLL)
    res["takeover_s"] = round(moved, 1) if moved is not None else None
    res["run"] = wait_run(proc, out)
    res["run_s"] = round(time.monotonic() - t0, 1)
    return res


def named_failed(rows: dict) -> set[str]:
    """The nodes a run names as failed, less the rows that failed only on the SSH wait cut
    short (a fake node boots nothing, so every deployed one fails it: "ssh: …: not ready
    after 1 s"); their deploy reached `active`."""
    return {n for n, r in rows.items() if r["status"] != "ok" and not (r["error"] or "").startswith("ssh: ")}


def summary(rows: dict, nodes: dict) -> dict:
    return {"exit": rows.get("exit"), "process_exit": rows.get("process_exit"), "verb_s": rows.get("verb_s"),
            "actions": dict(collections.Counter(r["action"] for r in rows["nodes"].values())),
            "statuses": dict(collections.Counter(r["status"] for r in rows["nodes"].values())),
            "named_failed": sorted(named_failed(rows["nodes"])),
            "failed_on_ssh_wait_only": sum(1 for r in rows["nodes"].values() if (r["error"] or "").startswith("ssh: ")),
            "errors": dict(collections.Counter(rows["nodes"][n]["error"] for n in named_failed(rows["nodes"]))),
            "ironic_states": dict(collections.Counter(n["provision_state"] for n in nodes.values())),
            "owners": dict(collections.Counter(n["conductor"] for n in nodes.values()))}


def bench(args) -> dict:
    from k1prov.lab import Lab

    root = Path(tempfile.mkdtemp(prefix="k1prov-condkill-"))
    lab = Lab(lab_settings(root, conductors=args.conductors, port_offset=args.port_offset, bridge=args.bridge,
                           cidr=args.cidr, conductor_heartbeat_timeout=args.heartbeat_timeout))
    s = lab.settings
    res: dict = {"nodes": args.nodes, "conductors": args.conductors, "heartbeat_timeout": args.heartbeat_timeout,
                 "kill_at": args.kill_at}
    try:
        t0 = time.monotonic()
        lab.up()
        res["lab_up_s"] = round(time.monotonic() - t0, 1)
        logs = sorted(s.log_dir.glob("ironic*.log"))
        api_log = next(p for p in logs if "api" in p.name)
        conductor_logs = [p for p in logs if "conductor" in p.name]
        inv = root / f"{CLUSTER}.yaml"
        inv.write_text(inventory_text(s, cluster=CLUSTER, count=args.nodes, image=Path("scale.img")))
        state = root / "state"
        res["enroll"] = run_phase("enroll", inv, state, [api_log], args.nodes, None)

        since1, start1 = log_sizes(conductor_logs), time.time()
        res["run1"] = kill_mid_deploy(lab, inv, state, root / "run1.json", args)
        end1 = time.time()
        after1 = ironic_nodes(s.ironic_url)
        res["run1"].update(summary(res["run1"].pop("run"), after1))
        rows1 = json.loads((root / "run1.json").read_text())["nodes"] if (root / "run1.json").exists() else {}
        named = named_failed(rows1)
        not_active = {n for n, x in after1.items() if x["provision_state"] != "active"}
        res["run1"]["named_is_not_active"] = named == not_active
        res["run1"]["not_active_not_named"] = sorted(not_active - named)
        res["run1"]["named_but_active"] = sorted(named - not_active)
        print("run 1:", json.dumps({k: v for k, v in res["run1"].items() if k != "named_failed"}), flush=True)

        since2, start2 = log_sizes(conductor_logs), time.time()
        t0 = time.monotonic()
        proc = start_deploy(inv, state, root / "run2.json")
        run2 = wait_run(proc, root / "run2.json")
        end2 = time.time()
        after2 = ironic_nodes(s.ironic_url)
        res["run2"] = summary(run2, after2) | {"run_s": round(time.monotonic() - t0, 1)}
        actions2 = {n: r["action"] for n, r in run2["nodes"].items()}
        expected = {n: "deployed" if n in named else "unchanged" for n in after1}
        res["run2"]["deployed_exactly_the_named"] = actions2 == expected
        res["run2"]["action_mismatches"] = {n: [expected.get(n), a] for n, a in actions2.items()
                                            if a != expected.get(n)}
        res["run2"]["all_active"] = all(x["provision_state"] == "active" for x in after2.values())
        print("run 2:", json.dumps({k: v for k, v in res["run2"].items() if k != "named_failed"}), flush=True)

        # Nothing deployed twice, per node, from Ironic's logs.
        time.sleep(1.0)   # the last log lines reach the files
        uuid = {n: x["uuid"] for n, x in after2.items()}
        starts1, starts2 = deploy_starts(since1) - deploy_starts(since2), deploy_starts(since2)
        reqs1, reqs2 = deploy_requests(api_log, start1, end1), deploy_requests(api_log, start2, end2)
        active1 = {n for n in after1 if n not in not_active}
        twice = {
            "run1_deploy_starts": dict(collections.Counter(starts1[uuid[n]] for n in uuid)),
            "run1_deploy_requests": dict(collections.Counter(reqs1[uuid[n]] for n in uuid)),
            "run2_deploy_starts": dict(collections.Counter(starts2[uuid[n]] for n in uuid)),
            "run2_deploy_requests": dict(collections.Counter(reqs2[uuid[n]] for n in uuid)),
            "run1_active_redeployed": sorted(n for n in active1 if starts2[uuid[n]] or reqs2[uuid[n]]),
            "run1_started_more_than_once": sorted(n for n in uuid if starts1[uuid[n]] > 1),
            "named_redeployed": sum(1 for n in named if starts2[uuid[n]] == 1),
        }
        twice["nothing_deployed_twice"] = not twice["run1_active_redeployed"] and not twice["run1_started_more_than_once"]
        res["twice"] = twice
        print("twice:", json.dumps(twice), flush=True)

        for phase in ("undeploy", "delete"):
            res[phase] = run_phase(phase, inv, state, [api_log], args.nodes, None)
        res["left_in_ironic"] = len(ironic_nodes(s.ironic_url))
    finally:
        if args.logs:
            # Ironic's logs outlive the lab: the evidence when a check fails.
            shutil.copytree(s.log_dir, args.logs, dirs_exist_ok=True)
        t0 = time.monotonic()
        lab.down()
        res["lab_down_s"] = round(time.monotonic() - t0, 1)
        shutil.rmtree(root, ignore_errors=True)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=300)
    p.add_argument("--conductors", type=int, default=3)
    p.add_argument("--heartbeat-timeout", type=int, default=HEARTBEAT_TIMEOUT)
    p.add_argument("--kill-at", type=float, default=1 / 3, help="fraction of the nodes active at the kill")
    p.add_argument("--port-offset", type=int, default=17000)
    p.add_argument("--bridge", default="k1p22k")
    p.add_argument("--cidr", default="10.252.25.1/24")
    p.add_argument("--json", type=Path)
    p.add_argument("--logs", type=Path, help="copy the lab's logs here before `lab down`")
    p.add_argument("--phase", choices=("deploy",), help=argparse.SUPPRESS)
    p.add_argument("--inventory", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        return one_deploy(args)
    # `kill PID` stops the run and still takes its lab down (bench's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip()
    out = {"commit": commit, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": " ".join(sys.argv), "load_avg_start": os.getloadavg()}
    out["result"] = bench(args)
    out["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    r = out["result"]
    ok = (r["run1"]["named_is_not_active"] and r["run2"]["deployed_exactly_the_named"] and r["run2"]["all_active"]
          and r["twice"]["nothing_deployed_twice"] and r.get("left_in_ironic") == 0)
    print(f"\n{'PASS' if ok else 'FAIL'}: run 1 exit {r['run1']['exit']}, named {len(r['run1']['named_failed'])}, "
          f"take-over {r['run1']['takeover_s']} s; run 2 exit {r['run2']['exit']} {r['run2']['actions']}; "
          f"redeployed after active: {len(r['twice']['run1_active_redeployed'])}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
