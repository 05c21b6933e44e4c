"""The lab's two Ironic shapes side by side: all-in-one on SQLite (`lab up`, the default)
against MariaDB + ironic-api + 2 conductors over JSON-RPC (`lab up --conductors 2`).

    .venv/bin/python benchmarks/conductors_bench.py --nodes 5 --repeat 2 \\
        [--agent] [--port-offset 40000 --bridge k1pcb0 --cidr 10.253.64.1/24] [--json out.json]

For each repetition and each shape (alternating which goes first), in a fresh lab directory
of its own (own ports, bridge and subnet: no other lab is touched):

  up      `Lab.up()` from nothing (databases created; the lab venv already installed);
  again   a second `up` on the running lab (only checks);
  fake    N `fake-hardware` nodes (ipmitool power, fake deploy and boot: Ironic's own work,
          its database and RPC, nothing written to a disk): enroll, images register, deploy
          to active, undeploy (bench_deploy.run_path);
  agent   with --agent, the same for N nodes deployed by the machines' real agent (`direct`,
          until SSH answers);
  down    `Lab.down()`.

Prints one line per run and a table of medians. Timings depend on the machine's load.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_deploy import run_path

from k1prov.imagecatalog import write_lab_deploy_image
from k1prov.lab import Lab, LabSettings

SHAPES = (0, 2)


def lab_for(root: Path, *, conductors: int, nodes: int, offset: int, bridge: str, cidr: str) -> Lab:
    return Lab(LabSettings(
        root=root / "lab", venv=LabSettings.default().venv, nodes=nodes, clouds_yaml=root / "clouds.yaml",
        ironic_port=6385 + offset, glance_port=9292 + offset, http_port=8088 + offset,
        bmc_base_port=6230 + offset, keystone_port=5000 + offset, mariadb_port=3306 + offset,
        # No auth: the figures compare the two shapes of Ironic, as recorded before the lab's
        # default became Keystone.
        bridge=bridge, cidr=cidr, conductors=conductors, auth="none"))


def one_run(conductors: int, args) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"k1prov-bench-cond{conductors}-"))
    lab = lab_for(root, conductors=conductors, nodes=2 * args.nodes if args.agent else args.nodes,
                  offset=args.port_offset, bridge=args.bridge, cidr=args.cidr)
    d = root / "inputs"
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id_ed25519")], check=True)
    write_lab_deploy_image(d / "deploy.kernel", "lab-deploy-kernel")
    write_lab_deploy_image(d / "deploy.initramfs", "lab-deploy-ramdisk")
    out: dict = {"conductors": conductors, "nodes": args.nodes}
    s = lab.settings
    try:
        t0 = time.monotonic()
        lab.up()
        out["up_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        lab.up()
        out["up_again_s"] = time.monotonic() - t0
        out["fake"] = run_path(lab, d, cluster=f"fk{conductors}", count=args.nodes,
                               first_port=s.bmc_base_port, first_host=11, real=False)
        if args.agent:
            out["agent"] = run_path(lab, d, cluster=f"ag{conductors}", count=args.nodes,
                                    first_port=s.bmc_base_port + args.nodes, first_host=11 + args.nodes,
                                    real=True)
        out["rss_mib"] = {x.name: round((x.rss_kib or 0) / 1024) for x in lab.status().services}
    finally:
        t0 = time.monotonic()
        lab.down()
        out["down_s"] = time.monotonic() - t0
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--agent", action="store_true", help="also deploy N nodes with the real agent")
    p.add_argument("--port-offset", type=int, default=40000)
    p.add_argument("--bridge", default="k1pcb0")
    p.add_argument("--cidr", default="10.253.64.1/24")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    runs = []
    for i in range(args.repeat):
        for conductors in (SHAPES if i % 2 == 0 else tuple(reversed(SHAPES))):
            res = one_run(conductors, args)
            runs.append(res)
            print(json.dumps(res), flush=True)
    phases = ["up_s", "up_again_s", "fake.enroll_s", "fake.images_s", "fake.ironic_deploy_s",
              "fake.undeploy_s", "down_s"]
    if args.agent:
        phases += ["agent.enroll_s", "agent.ironic_deploy_s", "agent.deploy_until_ssh_s", "agent.undeploy_s"]

    def value(run: dict, phase: str) -> float:
        for key in phase.split("."):
            run = run[key]
        return run

    print(f"\nmedians over {args.repeat} run(s), {args.nodes} nodes; seconds")
    print(f"{'phase':26} {'sqlite all-in-one':>18} {'mariadb + 2 cond.':>18}")
    for phase in phases:
        cells = [statistics.median(value(r, phase) for r in runs if r["conductors"] == c) for c in SHAPES]
        print(f"{phase:26} {cells[0]:18.2f} {cells[1]:18.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
