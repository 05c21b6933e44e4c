"""`cluster up` twice on a lab of its own: the first from nothing, the second on the healthy
cluster (issue 12 item 4: the second must cost at most 5% of the first), then `--dry-run`.

Each run is the `k1prov` command as an operator starts it (a new process: CLI start-up
included), timed from outside, with the phases from its --json report. The lab is the
default one shifted by --port-offset (Ironic 47385, Glance 50292, BMCs 47230…) in its own
directory, but on the default bridge k1plab0 / 10.251.0.0/24: run it under the lab lock.

    flock -w 1200 /tmp/k1prov-lab.lock .venv/bin/python benchmarks/second_up.py \
        --lab-dir /work/wt/perf-lab

Also prints the CLI's start-up alone (`k1prov --help`, best of 3) and the import time of
`k1prov.cli`. Tears the cluster and the lab down at the end (unless --keep).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from k1prov.lab import Lab, LabSettings

K1PROV = str(Path(sys.executable).with_name("k1prov"))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    return time.monotonic() - t0, proc


def phases(stdout: str) -> str:
    try:
        data = json.loads(stdout)
    except ValueError:
        return "(no JSON report)"
    return ", ".join(f"{p['phase']} {p['seconds']:.2f}" for p in data.get("phases", [])) or "(no phases)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("K1PROV_LAB_DIR", "/tmp/k1prov-second-up")))
    # +41000: benchmarks/bench_ironic_requests.py runs its lab at +40000, without the lab lock.
    ap.add_argument("--port-offset", type=int, default=41000)
    ap.add_argument("--seconds", type=int, default=2, help="second (no-op) runs to time")
    ap.add_argument("--keep", action="store_true", help="leave the cluster and the lab running")
    ap.add_argument("--profile", type=Path, help="also run one second `cluster up` under cProfile, "
                                                  "stats written here (and the top 40 printed)")
    args = ap.parse_args()

    base = LabSettings.default()
    root = args.lab_dir.resolve()
    settings = replace(base, root=root, ironic_port=base.ironic_port + args.port_offset,
                       glance_port=base.glance_port + args.port_offset,
                       http_port=base.http_port + args.port_offset,
                       bmc_base_port=base.bmc_base_port + args.port_offset, nodes=5,
                       clouds_yaml=root / "clouds.yaml")
    lab = Lab(settings)
    env = {**os.environ, "K1PROV_LAB_DIR": str(root), "K1PROV_STATE_DIR": str(root / "state"),
           "COLUMNS": "200"}
    inv = root / "lab.yaml"
    code = 0
    try:
        status = lab.up(progress=lambda m: print(f"lab: {m}", file=sys.stderr))
        if not status.ok:
            print(f"lab not healthy: {status.to_dict()}", file=sys.stderr)
            return 1
        lab.prepare_hosts(progress=lambda m: print(f"lab: {m}", file=sys.stderr))
        inv.write_text(lab.inventory_yaml())

        startup = min(timed([K1PROV, "--help"], env)[0] for _ in range(3))
        imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import k1prov.cli"],
                                 capture_output=True, text=True, env=env).stderr.splitlines()
        cli_import = int(imports[-1].split("|")[1]) / 1e6 if imports else float("nan")
        print(f"CLI start-up (k1prov --help, best of 3): {startup:.2f} s; import k1prov.cli {cli_import:.2f} s")

        first, proc = timed([K1PROV, "cluster", "up", "-i", str(inv), "--json"], env)
        print(f"first cluster up: {first:.2f} s, exit {proc.returncode}; {phases(proc.stdout)}")
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        seconds = []
        for i in range(args.seconds):
            took, proc = timed([K1PROV, "cluster", "up", "-i", str(inv), "--json"], env)
            seconds.append(took)
            print(f"second cluster up #{i + 1}: {took:.2f} s = {took / first:.1%} of the first, "
                  f"exit {proc.returncode}; {phases(proc.stdout)}")
            code = code or proc.returncode
        print(f"second cluster up, median of {len(seconds)}: {statistics.median(seconds):.2f} s = "
              f"{statistics.median(seconds) / first:.1%} of the first")
        if args.profile:
            took, proc = timed([sys.executable, "-m", "cProfile", "-o", str(args.profile), K1PROV, "cluster", "up",
                                "-i", str(inv), "--json"], env)
            print(f"second cluster up under cProfile: {took:.2f} s, exit {proc.returncode}")
            import pstats
            pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(40)
        took, proc = timed([K1PROV, "cluster", "up", "-i", str(inv), "--dry-run", "--json"], env)
        plans = sorted({r.get("plan") for r in json.loads(proc.stdout)["nodes"]}) if proc.stdout else []
        print(f"cluster up --dry-run: {took:.2f} s, exit {proc.returncode}; plans {plans}")
        took, proc = timed([K1PROV, "cluster", "status", "-i", str(inv), "--json"], env)
        print(f"cluster status: {took:.2f} s, exit {proc.returncode}")
    finally:
        if not args.keep:
            if inv.exists():
                took, proc = timed([K1PROV, "cluster", "down", "-i", str(inv), "--unenroll", "--yes"], env)
                print(f"cluster down --unenroll: {took:.2f} s, exit {proc.returncode}", file=sys.stderr)
            lab.down()
    return code


if __name__ == "__main__":
    sys.exit(main())
