"""`k1prov cluster up` from nothing on lab clusters of several sizes: wall time per phase.

    flock -w 1200 /tmp/k1prov-lab.lock timeout 1500 .venv/bin/python benchmarks/bench_cluster_up.py \
        --sizes 5,50 --extra roleless --json benchmarks/results/cluster-up-5-50.json

For each size N: a fresh lab in its own directory (--lab-dir/N; the lab's default ports,
bridge and subnet, hence the lab lock) with N machines, `k1prov lab up --nodes N`, an
inventory, then the command an operator runs, timed:

    K1PROV_LAB_DIR=DIR K1PROV_STATE_DIR=DIR/state k1prov cluster up -i DIR/lab.yaml --json

and the phases from its JSON report; then `k1prov lab down` and the directory is removed.
The inventory is the 5-node lab's (lab01 ZooKeeper + Spark master, lab02-03 ZooKeeper,
lab04-05 Spark workers) plus N-5 extra nodes: `--extra roleless` (deployed, SSH checked,
no role service: what fits in memory) or `--extra workers` (Spark workers, ~150 MB each).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
K1PROV = REPO / ".venv" / "bin" / "k1prov"
# lab up, lab down and cluster up of the largest size, each.
COMMAND_TIMEOUT = 1800


def run(cmd: list[str], env: dict, *, log) -> subprocess.CompletedProcess:
    print(f"$ {' '.join(cmd)}", file=log, flush=True)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    log.write(res.stderr)
    log.flush()
    return res


def inventory(text: str, count: int, extra: str) -> str:
    """The lab inventory of `count` machines with only lab[04-05] as Spark workers when
    the extra nodes are role-less."""
    if extra == "workers" or count <= 5:
        return text
    m = re.search(r"  - name: lab\[(\d+)-(\d+)\]\n    roles: \[spark-worker\]\n"
                  r"    bmc: \{port: \{start: (\d+)\}\}\n    macs: \[\{start: \"([0-9a-f:]+)\"\}\]\n"
                  r"    address: \{start: \"([0-9.]+)\"\}\n", text)
    assert m, "lab inventory format changed"
    first, last, port, mac, addr = m.groups()
    width = len(first)
    mac6 = int(mac.replace(":", ""), 16) + 2
    mac6s = ":".join(f"{mac6:012x}"[i:i + 2] for i in range(0, 12, 2))
    a, b, c, d = (int(x) for x in addr.split("."))
    workers = (f"  - name: lab[{4:0{width}d}-{5:0{width}d}]\n    roles: [spark-worker]\n"
               f"    bmc: {{port: {{start: {port}}}}}\n    macs: [{{start: \"{mac}\"}}]\n"
               f"    address: {{start: \"{addr}\"}}\n"
               f"  - name: lab[{6:0{width}d}-{last}]\n    roles: []\n"
               f"    bmc: {{port: {{start: {int(port) + 2}}}}}\n    macs: [{{start: \"{mac6s}\"}}]\n"
               f"    address: {{start: \"{a}.{b}.{c}.{d + 2}\"}}\n")
    return text[:m.start()] + workers + text[m.end():]


def one_size(count: int, args, log) -> dict:
    lab_dir = args.lab_dir / str(count)
    shutil.rmtree(lab_dir, ignore_errors=True)
    lab_dir.mkdir(parents=True)
    env = dict(os.environ, K1PROV_LAB_DIR=str(lab_dir), K1PROV_STATE_DIR=str(lab_dir / "state"))
    result: dict = {"nodes": count, "extra": args.extra if count > 5 else "none"}
    try:
        t0 = time.monotonic()
        res = run([str(K1PROV), "lab", "up", "--nodes", str(count)], env, log=log)
        result["lab_up_seconds"] = round(time.monotonic() - t0, 1)
        if res.returncode != 0:
            result["error"] = f"lab up exited {res.returncode}"
            return result
        # ZooKeeper and standalone Spark, as the recorded results were measured (the lab's
        # inventory has Mesos when the lab has a build).
        text = run([str(K1PROV), "lab", "inventory", "--nodes", str(count), "--no-mesos"], env, log=log).stdout
        inv = lab_dir / "lab.yaml"
        inv.write_text(inventory(text, count, args.extra))
        cmd = [str(K1PROV), "cluster", "up", "-i", str(inv), "--json"]
        result["command"] = (f"K1PROV_LAB_DIR={lab_dir} K1PROV_STATE_DIR={lab_dir}/state "
                             f"k1prov cluster up -i {inv} --json")
        t0 = time.monotonic()
        res = run(cmd, env, log=log)
        result["wall_seconds"] = round(time.monotonic() - t0, 1)
        result["exit_code"] = res.returncode
        try:
            report = json.loads(res.stdout)
        except json.JSONDecodeError:
            result["error"] = f"no JSON report; stdout starts {res.stdout[:200]!r}"
            return result
        result["phases"] = {p["phase"]: p["seconds"] for p in report["phases"]}
        # Inside each phase: its fan-outs' durations (deploy: the provision requests, then
        # ssh.ready; the rest of the phase is the wait for `active`).
        result["fanouts"] = {p["phase"]: {f["phase"]: f["duration"] for f in (p.get("report") or {}).get("phases", [])}
                             for p in report["phases"]}
        result["health"] = report.get("health")
        result["failed_nodes"] = [r["node"] for r in report.get("nodes", []) if r.get("error")]
        result["first_errors"] = [f"{r['node']}: {r['error']}" for r in report.get("nodes", [])
                                  if r.get("error")][:3]
        mem = subprocess.run(["free", "-m"], capture_output=True, text=True).stdout.splitlines()[1].split()
        result["memory_used_mib_after"] = int(mem[2])
        print(f"{count} nodes: {result['wall_seconds']} s, exit {res.returncode}, "
              f"phases {result['phases']}", file=sys.stderr, flush=True)
    finally:
        run([str(K1PROV), "lab", "down"], env, log=log)
        if not args.keep:
            shutil.rmtree(lab_dir, ignore_errors=True)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,50,100")
    ap.add_argument("--extra", choices=["roleless", "workers"], default="roleless")
    ap.add_argument("--lab-dir", type=Path, default=Path("/tmp/k1prov-bench-cluster-up"))
    ap.add_argument("--keep", action="store_true", help="keep each size's lab directory")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--log", type=Path, help="the commands' stderr (default: stderr)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    out = {"commit": commit, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": " ".join(["bench_cluster_up.py", *(argv or sys.argv[1:])]), "runs": []}
    log = args.log.open("a") if args.log else sys.stderr
    for count in (int(x) for x in args.sizes.split(",")):
        out["runs"].append(one_size(count, args, log))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
    phases = list(dict.fromkeys(p for r in out["runs"] for p in r.get("phases", {})))
    print(f"\ncluster up from nothing (s); commit {commit}")
    print(f"{'nodes':>6}{'wall':>8}" + "".join(f"{p:>12}" for p in phases))
    for r in out["runs"]:
        print(f"{r['nodes']:>6}{r.get('wall_seconds', '-'):>8}"
              + "".join(f"{r.get('phases', {}).get(p, '-'):>12}" for p in phases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
