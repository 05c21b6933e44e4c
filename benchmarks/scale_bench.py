"""Ironic at scale with `fake-hardware` nodes: enroll -> deploy -> undeploy -> delete for
several N, against the all-in-one Ironic (SQLite) and against MariaDB + ironic-api + 3
conductors (`lab up --conductors 3`), in one run so that the ratios compare (issue 22, item 3).

    .venv/bin/python benchmarks/scale_bench.py --sizes 100,300 --conductors 0,3 \\
        --port-offset 50000 --bridge k1pd0 --cidr 10.248.0.1/24 \\
        --json benchmarks/results/scale-<date>.json [--fixed 1,4,16]

For each shape (a fresh lab of its own: own directory, ports, bridge, subnet; one lab
machine, which the fake nodes do not use) and each N: N nodes with `fake-hardware` and
every interface `fake` (no BMC, no host booted: Ironic's API, state machine, database and
RPC are what is measured), each phase a k1prov process of its own (`--phase`, the verb
through the Provisioner facade, adaptive concurrency unless --concurrency), so that per
phase we have:
  wall        seconds of the process (Python start-up included, ~0.5 s);
  cpu         k1prov's user+sys CPU (wait4);
  rss         k1prov's peak RSS (MiB, wait4's ru_maxrss);
  requests    Ironic API requests per node (Ironic's access log, lines between the
              phase's start and end; ironic-api's log with conductors);
  api_s       the sum of those requests' durations as Ironic logged them.
The deploy phase's SSH wait is cut short (fake nodes boot nothing), as bench_deploy does.
`--fixed L1,L2`: each phase again at fixed concurrency L (on the largest N, first shape),
for adaptive against the best fixed level. With --json, the plot of time per phase against
N is written beside it (.svg); `--plot OUT.svg --results A.json,B.json` draws it from files.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PHASES = ("enroll", "deploy", "undeploy", "delete")
# One phase of the largest N on a loaded machine, with margin.
PHASE_TIMEOUT = 3600


def inventory_text(s, *, cluster: str, count: int, image: Path) -> str:
    # Addresses on loopback (127.248/16, where nothing listens): the deploy's cut-short SSH
    # wait is refused at once and no packet leaves the machine. fake-hardware with every interface fake: Ironic needs no driver_info and talks to no
    # BMC; the bmc block is only what the inventory format asks for (never contacted).
    return f"""\
cluster: {cluster}
cloud: {{ironic_url: "{s.ironic_url}", glance_url: "{s.glance_url}"}}
ssh: {{user: root, private_key: "/nonexistent", public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKy+NXgyylGl9wcqGOTLjwwzPYuJStovXrHR+wBeJACG scale"]}}
network: {{prefix_length: 16}}
images:
  user: {{name: {cluster}-image, url: "http://127.0.0.1:9/{image.name}", checksum: "sha256:{'0' * 64}", bypass_glance: true}}
defaults:
  driver: fake-hardware
  interfaces: {{power: fake, management: fake, deploy: fake, boot: fake}}
  bmc: {{address: 127.0.0.1, username: admin, password: {{file: "{s.bmc_password_file}"}}}}
nodes:
  - name: {cluster}[0001-{count:04d}]
    bmc: {{port: {{start: 1}}}}
    macs: [{{start: "02:5c:00:00:00:01"}}]
    address: {{start: 127.248.0.1}}
"""


def one_phase(args) -> int:
    """--phase: one verb in this process; prints its exit code and timing as JSON."""
    from k1prov.context import RunOptions
    from k1prov.inventory import load_inventory
    from k1prov.provisioner import Provisioner
    from k1prov.settings import DEFAULT_TIMEOUTS

    timeouts = replace(DEFAULT_TIMEOUTS, ssh_ready=1.0, ssh_connect=1.0)
    prov = Provisioner(load_inventory(args.inventory), state_root=args.state, timeouts=timeouts,
                       options=RunOptions(concurrency=args.concurrency), notify=lambda m: None)
    t0 = time.monotonic()
    if args.phase == "enroll":
        rep = prov.enroll()
    elif args.phase == "deploy":
        rep = prov.deploy()
    elif args.phase == "undeploy":
        rep = prov.undeploy()
    else:
        rep = prov.delete_nodes()
    states = sorted({str(o.provision_state) for o in rep.outcomes})
    print(json.dumps({"verb_s": round(time.monotonic() - t0, 2), "states": states,
                      "errors": [o.error for o in rep.outcomes if o.error][:3]}))
    return 0


def run_phase(phase: str, inv: Path, state: Path, logs: list[Path], nodes: int,
              concurrency: int | None) -> dict:
    from profile_cluster_up import ironic_requests

    cmd = [sys.executable, __file__, "--phase", phase, "--inventory", str(inv), "--state", str(state)]
    if concurrency:
        cmd += ["--concurrency", str(concurrency)]
    start = time.time()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    out = proc.stdout.read()
    proc.stdout.close()
    time.sleep(0.6)   # Ironic's last access lines reach its log
    reqs = [r for r in ironic_requests(logs, start) if r[0] <= start + wall + 0.5]
    res = {"phase": phase, "nodes": nodes, "concurrency": concurrency or "adaptive",
           "exit": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 2),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
           "requests_per_node": round(len(reqs) / nodes, 2), "api_s": round(sum(r[4] for r in reqs) / 1000, 1),
           "status_not_2xx": sum(1 for r in reqs if r[3] >= 300)}
    try:
        res.update(json.loads(out.strip().splitlines()[-1]))
    except (json.JSONDecodeError, IndexError):
        res["output"] = out[-500:]
    print(json.dumps(res), flush=True)
    return res


def lab_settings(root: Path, *, conductors: int, port_offset: int, bridge: str, cidr: str, **extra):
    """A lab of its own under `root` for fake-hardware benchmarks: one lab machine (the fake
    nodes use none), no auth, every port shifted by `port_offset`; `extra` other LabSettings
    fields (conductor_heartbeat_timeout, ...). Also used by conductor_kill_bench.py."""
    from k1prov.lab import LabSettings

    o = port_offset
    return LabSettings(
        root=root / "lab", venv=LabSettings.default().venv, nodes=1, clouds_yaml=root / "clouds.yaml",
        ironic_port=6385 + o, glance_port=9292 + o, http_port=8088 + o, bmc_base_port=6230 + o,
        keystone_port=5000 + o, mariadb_port=3306 + o, bridge=bridge, cidr=cidr,
        conductors=conductors, auth="none", **extra)


def one_shape(conductors: int, args) -> list[dict]:
    from k1prov.lab import Lab

    root = Path(tempfile.mkdtemp(prefix=f"k1prov-scale-c{conductors}-"))
    lab = Lab(lab_settings(root, conductors=conductors, port_offset=args.port_offset,
                           bridge=args.bridge, cidr=args.cidr))
    results = []
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"lab up ({conductors} conductors): {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        logs = sorted(lab.settings.log_dir.glob("ironic*.log"))
        if conductors:
            # The API's access lines are in ironic-api's log only.
            logs = [p for p in logs if "api" in p.name] or logs
        levels: list[int | None] = [None]
        for n in args.sizes:
            runs = levels + (args.fixed if n == max(args.sizes) and conductors == args.conductors[0] else [])
            for level in runs:
                cluster = f"s{conductors}n{n}c{level or 0}"
                inv = root / f"{cluster}.yaml"
                inv.write_text(inventory_text(lab.settings, cluster=cluster, count=n, image=Path("scale.img")))
                for phase in PHASES:
                    r = run_phase(phase, inv, root / "state", logs, n, level)
                    r["conductors"] = conductors
                    results.append(r)
                    if r["exit"] != 0:
                        break
    finally:
        lab.down()
        import shutil
        shutil.rmtree(root, ignore_errors=True)
    return results


def markdown(path: Path) -> str:
    """The README's table from a results file: one row per shape and N, per phase wall time
    (s), Ironic requests per node and k1prov's peak RSS (MiB)."""
    runs = json.loads(path.read_text())["runs"]
    rows = {}
    for r in runs:
        rows.setdefault((r["conductors"], r["nodes"], r["concurrency"]), {})[r["phase"]] = r
    head = "| Ironic | N | " + " | ".join(f"{p} s, req/node, RSS" for p in PHASES) + " |"
    lines = [head, "|" + "---|" * (2 + len(PHASES))]
    for (cond, n, level), phases in rows.items():
        shape = "all-in-one, SQLite" if not cond else f"API + {cond} conductors, MariaDB"
        if level != "adaptive":
            shape += f", -c {level}"
        cells = [f"{phases[p]['wall_s']:.1f}, {phases[p]['requests_per_node']:.2f}, {phases[p]['peak_rss_mib']:.0f}"
                 if p in phases else "-" for p in PHASES]
        lines.append(f"| {shape} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def svg_plot(paths: list[Path]) -> str:
    """Time per phase against N, one panel per phase, one line per Ironic shape (adaptive
    runs; a later file's run of the same shape and N replaces an earlier one's), as SVG
    written by hand: no plotting library in k1prov's venv."""
    import math

    points: dict[tuple[int, str], dict[int, float]] = {}
    for path in paths:
        for r in json.loads(path.read_text())["runs"]:
            if r["concurrency"] == "adaptive" and r["exit"] == 0:
                points.setdefault((r["conductors"], r["phase"]), {})[r["nodes"]] = r["wall_s"]
    shapes = sorted({c for c, _ in points})
    sizes = sorted({n for line in points.values() for n in line})
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    w, h, ml, mr, mt, mb = 380, 260, 56, 16, 30, 44
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{2 * h + 40}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{2 * w}" height="{2 * h + 40}" fill="white"/>']
    lo, hi = math.log10(min(sizes)), math.log10(max(sizes))

    def x_of(n: int, x0: int) -> float:
        span = (hi - lo) or 1.0
        return x0 + ml + (math.log10(n) - lo) / span * (w - ml - mr)

    for k, phase in enumerate(PHASES):
        x0, y0 = (k % 2) * w, (k // 2) * h
        top = max([v for (c, p), line in points.items() if p == phase for v in line.values()] or [1.0])
        step = 10 ** math.floor(math.log10(top)) if top >= 1 else 1
        top = math.ceil(top / step) * step

        def y_of(v: float) -> float:
            return y0 + h - mb - v / top * (h - mt - mb)

        out.append(f'<text x="{x0 + w / 2}" y="{y0 + 18}" text-anchor="middle" font-size="13">{phase}</text>')
        for tick in range(0, int(top) + 1, int(step)):
            y = y_of(tick)
            out.append(f'<line x1="{x0 + ml}" x2="{x0 + w - mr}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 + ml - 4}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
        for n in sizes:
            x = x_of(n, x0)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + mt}" y2="{y0 + h - mb}" stroke="#eee"/>')
            out.append(f'<text x="{x:.1f}" y="{y0 + h - mb + 14}" text-anchor="middle">{n}</text>')
        out.append(f'<text x="{x0 + w / 2}" y="{y0 + h - 10}" text-anchor="middle">nodes (log scale)</text>')
        out.append(f'<text x="{x0 + 14}" y="{y0 + h / 2}" transform="rotate(-90 {x0 + 14} {y0 + h / 2})" '
                   'text-anchor="middle">wall s</text>')
        for i, cond in enumerate(shapes):
            line = sorted(points.get((cond, phase), {}).items())
            if not line:
                continue
            xy = " ".join(f"{x_of(n, x0):.1f},{y_of(v):.1f}" for n, v in line)
            out.append(f'<polyline points="{xy}" fill="none" stroke="{colors[i % 4]}" stroke-width="2"/>')
            for n, v in line:
                out.append(f'<circle cx="{x_of(n, x0):.1f}" cy="{y_of(v):.1f}" r="3" fill="{colors[i % 4]}">'
                           f'<title>{v} s at {n}</title></circle>')
    for i, cond in enumerate(shapes):
        label = "all-in-one Ironic, SQLite" if not cond else f"ironic-api + {cond} conductors, MariaDB"
        x = 20 + i * 300
        out.append(f'<line x1="{x}" x2="{x + 24}" y1="{2 * h + 20}" y2="{2 * h + 20}" '
                   f'stroke="{colors[i % 4]}" stroke-width="2"/>')
        out.append(f'<text x="{x + 30}" y="{2 * h + 24}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100,300")
    p.add_argument("--conductors", default="0,3", help="lab shapes: 0 all-in-one, N conductors")
    p.add_argument("--fixed", default="", help="fixed concurrency levels to compare on the largest N")
    p.add_argument("--port-offset", type=int, default=50000)
    p.add_argument("--bridge", default="k1pd0")
    p.add_argument("--cidr", default="10.248.0.1/24")
    p.add_argument("--json", type=Path)
    p.add_argument("--table", type=Path, help="print the markdown table of a results file and exit")
    p.add_argument("--plot", type=Path, help="write the SVG plot of time per phase against N of the "
                   "results files named by --results (or of this run, beside --json) and exit")
    p.add_argument("--results", default="", help="results files for --plot, comma-separated, oldest first")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--inventory", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        return one_phase(args)
    if args.table:
        print(markdown(args.table))
        return 0
    if args.plot and args.results:
        args.plot.write_text(svg_plot([Path(x) for x in args.results.split(",")]))
        return 0
    # `kill PID` stops the run and still takes its lab down (the finally of one_shape).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.conductors = [int(x) for x in args.conductors.split(",")]
    args.fixed = [int(x) for x in args.fixed.split(",") if x]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip()
    out = {"commit": commit, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": " ".join(sys.argv), "load_avg_start": os.getloadavg(), "runs": []}
    for c in args.conductors:
        out["runs"] += one_shape(c, args)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1) + "\n")
    out["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        (args.plot or args.json.with_suffix(".svg")).write_text(svg_plot([args.json]))
    print(f"\n{'cond':>4} {'N':>5} {'conc':>8} {'phase':9} {'wall s':>7} {'req/node':>8} {'rss MiB':>8} {'cpu s':>6}")
    for r in out["runs"]:
        print(f"{r['conductors']:>4} {r['nodes']:>5} {str(r['concurrency']):>8} {r['phase']:9} {r['wall_s']:>7} "
              f"{r['requests_per_node']:>8} {r['peak_rss_mib']:>8} {r['cpu_s']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
