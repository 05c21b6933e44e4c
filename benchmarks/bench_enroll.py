"""Enrollment to `available`: k1prov against a plain openstacksdk script, side by side.

    .venv/bin/python benchmarks/bench_enroll.py --nodes 100 --repeat 3

Starts a lab of its own (own directory and ports, N simulated BMCs), then alternates, in
the same run on the same lab:
  sdk     the way a short script does it: for each node, create it, create its port,
          `manage` with wait=True, `provide` with wait=True, one node at a time;
  k1prov  `Provisioner.enroll()` (adaptive fan-out, batched waits);
deleting every node between runs. Prints each run's wall time, the medians and the ratio.
Also `--fixed 1,8,16,32,64` runs k1prov at fixed concurrency levels beside the adaptive one
(`--once 1`: levels too slow to repeat run in the first repetition only). Adaptive runs
after the first start from the profile the earlier ones stored, as an operator's would.
Each k1prov run's phases (ensure, manage, provide) are recorded with their duration and the
levels the climber went through.

    .venv/bin/python benchmarks/bench_enroll.py --nodes 300 --repeat 3 --sdk-repeat 0 \
        --fixed 1,8,16,32,64 --once 16,32,64
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import openstack

from k1prov.fanout.results import level_path
from k1prov.inventory import load_inventory
from k1prov.lab import Lab, LabSettings
from k1prov.provisioner import Provisioner, RunOptions

# Ports of the benchmark's own lab: away from the operator's lab and the test lab.
BENCH_PORTS = dict(ironic_port=36385, glance_port=39292, http_port=38088, bmc_base_port=36230)


def sdk_enroll(conn, lab: Lab, count: int, *, timeout: float) -> None:
    s = lab.settings
    password = lab.bmc_password()
    for i in range(count):
        node = conn.baremetal.create_node(
            name=f"bench{i + 1:04d}", driver="fake-hardware",
            power_interface="ipmitool", management_interface="ipmitool",
            deploy_interface="fake", boot_interface="fake",
            driver_info={"ipmi_address": "127.0.0.1", "ipmi_port": s.bmc_base_port + i,
                         "ipmi_username": s.bmc_username, "ipmi_password": password})
        conn.baremetal.create_port(node_uuid=node.id, address=f"52:54:00:be:{(i >> 8) & 0xff:02x}:{i & 0xff:02x}")
        conn.baremetal.set_node_provision_state(node, "manage", wait=True, timeout=timeout)
        conn.baremetal.set_node_provision_state(node, "provide", wait=True, timeout=timeout)


def delete_all(conn) -> None:
    for node in conn.baremetal.nodes():
        if node.name and node.name.startswith("bench"):
            conn.baremetal.delete_node(node, ignore_missing=True)


def inventory_file(lab: Lab, count: int, workdir: Path) -> Path:
    s = lab.settings
    path = workdir / f"bench-{count}.yaml"
    path.write_text(f"""\
cluster: bench
cloud: {{ironic_url: "{s.ironic_url}", glance_url: "{s.glance_url}"}}
defaults:
  driver: fake-hardware
  interfaces: {{power: ipmitool, management: ipmitool, deploy: fake, boot: fake}}
  bmc: {{address: 127.0.0.1, username: {s.bmc_username}, password: {{file: "{s.bmc_password_file}"}}}}
nodes:
  - name: bench[0001-{count:04d}]
    bmc: {{port: {{start: {s.bmc_base_port}}}}}
    macs: [{{start: "52:54:00:be:00:00"}}]
    address: {{start: 10.252.0.1}}
""")
    return path


def phase_summary(report) -> list[dict]:
    return [{"phase": name, "seconds": round(r.finished - r.started, 2),
             "levels": level_path(r.trace), "final": r.final_concurrency,
             "failed": len(r.results) - len(r.ok)} for name, r in report.phases]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sdk-repeat", type=int, default=None, help="runs of the sdk script (default --repeat)")
    ap.add_argument("--fixed", default="", help="also run k1prov at these fixed levels, e.g. 1,8,16,32")
    ap.add_argument("--once", default="", help="fixed levels to run in the first repetition only")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    # SIGTERM unwinds like Ctrl-C, so the benchmark's lab is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="k1prov-bench-enroll-"))
    os.environ["K1PROV_STATE_DIR"] = str(workdir / "state")
    base = LabSettings.default()
    settings = replace(base, root=workdir / "lab", nodes=args.nodes, clouds_yaml=workdir / "clouds.yaml",
                       **BENCH_PORTS)
    lab = Lab(settings)
    lab.up(progress=lambda m: print(f"lab: {m}", file=sys.stderr))
    conn = openstack.connect(auth_type="none", load_yaml_config=False, load_envvars=False,
                             baremetal_endpoint_override=settings.ironic_url, baremetal_api_version="1.78")
    inv = load_inventory(inventory_file(lab, args.nodes, workdir))
    levels = [None] + [int(x) for x in args.fixed.split(",") if x]
    once = {int(x) for x in args.once.split(",") if x}
    times: dict[str, list[float]] = {}
    phases: dict[str, list[list[dict]]] = {}
    try:
        delete_all(conn)
        sdk_runs = args.sdk_repeat if args.sdk_repeat is not None else args.repeat
        for run in range(max(args.repeat, sdk_runs)):
            if run < sdk_runs:
                t0 = time.monotonic()
                sdk_enroll(conn, lab, args.nodes, timeout=600)
                times.setdefault("sdk one-by-one", []).append(time.monotonic() - t0)
                delete_all(conn)
            if run < args.repeat:
                for level in levels:
                    if run > 0 and level in once:
                        continue
                    name = "k1prov adaptive" if level is None else f"k1prov fixed {level}"
                    t0 = time.monotonic()
                    report = Provisioner(inv, options=RunOptions(concurrency=level)).enroll()
                    times.setdefault(name, []).append(time.monotonic() - t0)
                    phases.setdefault(name, []).append(phase_summary(report))
                    print(f"  {name}: {times[name][-1]:.1f}s " + " ".join(
                        f"{p['phase']} {p['seconds']}s [{p['levels']}]" for p in phases[name][-1]),
                        file=sys.stderr, flush=True)
                    bad = [o.node for o in report.outcomes if o.provision_state != "available"]
                    if bad:
                        print(f"{name}: {len(bad)} not available: {bad[:5]}", file=sys.stderr)
                    delete_all(conn)
            print(f"run {run + 1}: " + ", ".join(f"{k}={v[-1]:.1f}s" for k, v in times.items()
                                               if len(v) == run + 1), file=sys.stderr)
    finally:
        delete_all(conn)
        lab.down()
    ref = statistics.median(times["k1prov adaptive"])
    fixed_medians = {k: statistics.median(v) for k, v in times.items() if k.startswith("k1prov fixed")}
    best = min(fixed_medians.values(), default=None)
    print(f"\nenroll {args.nodes} lab nodes to available (median of runs; ratio = tool / k1prov adaptive)")
    print(f"{'tool':<22}{'runs':>5}{'median s':>10}{'ratio':>8}{'/ best fixed':>14}")
    for name, vals in times.items():
        med = statistics.median(vals)
        vs_best = f"{med / best:>14.2f}" if best else ""
        print(f"{name:<22}{len(vals):>5}{med:>10.1f}{med / ref:>8.2f}{vs_best}")
    if args.json:
        args.json.write_text(json.dumps({"nodes": args.nodes, "command": " ".join(sys.argv),
                                         "times": times, "phases": phases}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
