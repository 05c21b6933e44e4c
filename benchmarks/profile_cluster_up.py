"""Where the time of `k1prov cluster up` on the lab goes: py-spy on the k1prov process and
Ironic's API requests per phase, on a lab of its own (own ports, bridge, subnet).

    .venv/bin/pip install py-spy     # once, into k1prov's venv (PyPI)
    .venv/bin/python benchmarks/profile_cluster_up.py --nodes 50 \\
        --port-offset 50000 --bridge k1pd0 --cidr 10.248.0.1/24 --out /tmp/prof50

A fresh lab (all-in-one Ironic on SQLite, no auth: as bench_cluster_up.py measured it) with
N machines; the inventory is the lab's without Mesos, nodes 6..N role-less
(bench_cluster_up.inventory). Then `k1prov cluster up -i lab.yaml --json` runs under
`py-spy record --idle --format raw` (the collapsed stacks, every thread, idle samples
included: waits show as waits). Written to --out: cluster-up.json (k1prov's report),
pyspy.txt (collapsed stacks), ironic-requests.json (Ironic's access-log lines counted by
method and path shape, per phase of the report by their time stamps), summary.json.
The lab is taken down at the end.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster_up import inventory as roleless_inventory  # noqa: E402

from k1prov.lab import Lab, LabSettings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
K1PROV = REPO / ".venv" / "bin" / "k1prov"
PYSPY = REPO / ".venv" / "bin" / "py-spy"
COMMAND_TIMEOUT = 1800
# Ironic's access line (logger ironic.api):
# 2026-12-07 16:31:16.561 17061 INFO ironic.api [...] 10.248.0.1 - GET /v1/nodes?... - 200 (145.53ms)
ACCESS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \d+ INFO ironic\.api \[[^]]*\] \S+ - "
                    r"(GET|POST|PUT|PATCH|DELETE) (\S+) - (\d+) \(([\d.]+)ms\)")
# A node's UUID or name (lab01, ...) in a path; not the API version.
UUIDISH = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27}|/(?!v1(?=/|$))[a-z]+\d+(?:-\d+)?(?=/|$)")


def shape(path: str) -> str:
    path = path.split("?")[0]
    return UUIDISH.sub("/{id}", path)


def ironic_requests(logs: list[Path], start: float) -> list[tuple[float, str, str, int, float]]:
    """(time, method, path shape, status, ms) of Ironic's API requests from `start` on."""
    out = []
    for f in logs:
        for line in f.read_text(errors="replace").splitlines():
            m = ACCESS.search(line)
            if not m:
                continue
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            if t >= start:
                out.append((t, m.group(2), shape(m.group(3)), int(m.group(4)), float(m.group(5))))
    return out


def count_requests(reqs: list, bounds: list[tuple[str, float, float]], nodes: int) -> dict:
    """Requests per phase (by time stamp), per node, by shape, and the API's time in them."""
    per: dict = collections.defaultdict(collections.Counter)
    ms: dict = collections.Counter()
    for ts, method, path, status, took in reqs:
        name = next((n for n, a, b in bounds if a <= ts < b + 0.5), "after")
        per[name][f"{method} {path} {status}"] += 1
        ms[name] += took
    return {"ironic_requests_total": len(reqs),
            "ironic_requests_per_node": round(len(reqs) / nodes, 2),
            "ironic_requests_per_node_by_phase": {k: round(sum(v.values()) / nodes, 2) for k, v in per.items()},
            "ironic_api_seconds_by_phase": {k: round(v / 1000, 1) for k, v in ms.items()},
            "ironic_requests": {k: dict(v.most_common()) for k, v in per.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--port-offset", type=int, default=50000)
    p.add_argument("--bridge", default="k1pd0")
    p.add_argument("--cidr", default="10.248.0.1/24")
    p.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="k1prov-prof-cu-"))
    o = args.port_offset
    lab = Lab(LabSettings(
        root=root / "lab", venv=LabSettings.default().venv, nodes=args.nodes, clouds_yaml=root / "clouds.yaml",
        ironic_port=6385 + o, glance_port=9292 + o, http_port=8088 + o, bmc_base_port=6230 + o,
        keystone_port=5000 + o, mariadb_port=3306 + o, bridge=args.bridge, cidr=args.cidr, auth="none"))
    summary: dict = {"nodes": args.nodes}
    try:
        t0 = time.monotonic()
        lab.up()
        lab.prepare_hosts()
        summary["lab_up_s"] = round(time.monotonic() - t0, 1)
        inv = root / "lab.yaml"
        inv.write_text(roleless_inventory(lab.inventory_yaml(nodes=args.nodes, mesos=False), args.nodes, "roleless"))
        shutil.copy(inv, args.out / "lab.yaml")
        env = dict(os.environ, K1PROV_LAB_DIR=str(root / "lab"), K1PROV_STATE_DIR=str(root / "state"))
        cmd = [str(K1PROV), "cluster", "up", "-i", str(inv), "--json"]
        start = time.time()
        t0 = time.monotonic()
        with open(args.out / "cluster-up.json", "w") as stdout, open(args.out / "stderr.txt", "w") as stderr:
            proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
            # Attached by pid, so that k1prov's own CPU (wait4) does not include py-spy's.
            spy = None if args.no_profile else subprocess.Popen(
                [str(PYSPY), "record", "--idle", "--threads", "--format", "raw", "--rate", str(args.rate),
                 "--pid", str(proc.pid), "-o", str(args.out / "pyspy.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if spy:
                spy.wait(timeout=60)
        summary["wall_s"] = round(time.monotonic() - t0, 1)
        summary["exit_code"] = proc.returncode
        summary["k1prov_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
        summary["k1prov_peak_rss_mib"] = round(usage.ru_maxrss / 1024)
        report = json.loads((args.out / "cluster-up.json").read_text())
        summary["phases"] = {ph["phase"]: ph["seconds"] for ph in report["phases"]}
        # Phase boundaries by their durations from the command's start (the report's order).
        bounds, t = [], start
        for ph in report["phases"]:
            bounds.append((ph["phase"], t, t + ph["seconds"]))
            t += ph["seconds"]
        logs = sorted(lab.settings.log_dir.glob("ironic*.log"))
        for f in logs:
            shutil.copy(f, args.out / f.name)
        summary.update(count_requests(ironic_requests(logs, start), bounds, args.nodes))
        summary["failed"] = [r["node"] for r in report.get("nodes", []) if r.get("error")][:5]
    finally:
        lab.down()
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "ironic_requests"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
