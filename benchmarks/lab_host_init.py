"""What a lab host costs with each PID 1 (`lab up --host-init plain|systemd`): boot time
(power on to SSH) and memory per host.

    K1PROV_IMAGE_CACHE=~/.cache/k1prov/images .venv/bin/python benchmarks/lab_host_init.py \
        --hosts 5 --bridge k1pinit0 --cidr 10.252.60.1/24 [--json benchmarks/results/host-init.json]

For each init, boots --hosts hosts from the lab image with k1prov.lab.hosts.HostBooter
(what the lab's reconciler does when a machine powers on from its disk; the BMC and the
reconciler's poll come on top, the same for both), each with its config drive's
hostname, address and keys, and times boot() until sshd sends its banner. Then, after
--settle seconds (systemd's boot jobs done), sums per host over the processes of its pid
namespace: RSS, and PSS (/proc/PID/smaps_rollup: a shared page counts 1/N to each of
its N users, so PSS adds up to what the hosts really take of this machine's memory).
The hosts run nothing but their init and sshd (and systemd's journald): what the
role services cost is the same under both. Root; its own bridge, removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from k1prov.lab.hosts import HOST_INITS, HostBooter, HostConfig
from k1prov.lab.image import build_lab_image
from k1prov.lab.netns import LabNetwork

SSH_TIMEOUT = 120.0
IMAGE_BUILD_TIMEOUT = 1800.0


def host_memory(booter: HostBooter, name: str) -> dict:
    rss = pss = 0
    procs = booter.processes(name)
    for pid in procs:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0])
                elif key == "Pss":
                    pss += int(value.split()[0])
        except OSError:
            continue
    return {"processes": len(procs), "rss_kib": rss, "pss_kib": pss}


def run(init: str, image: Path, args, keys: Path, root: Path) -> dict:
    net = LabNetwork(bridge=args.bridge, cidr=args.cidr)
    net.ensure()
    booter = HostBooter(root / init, network=net, init=init)
    names = [f"hi{init[0]}{i:03d}" for i in range(args.hosts)]
    boots = []
    try:
        for i, name in enumerate(names):
            t0 = time.monotonic()
            booter.boot(name, image, HostConfig(
                hostname=name, address=net.host_address(10 + i), prefix=net.prefix, gateway=net.gateway,
                authorized_keys=((keys / "user.pub").read_text(),),
                ssh_host_keys={"ed25519": ((keys / "host").read_text(), (keys / "host.pub").read_text())}))
            booter.wait_ssh(name, timeout=SSH_TIMEOUT)
            boots.append(time.monotonic() - t0)
        time.sleep(args.settle)
        memory = [host_memory(booter, name) for name in names]
    finally:
        booter.stop_all()
        net.remove()
    return {"init": init, "hosts": args.hosts,
            "boot_to_ssh_s": {"median": statistics.median(boots), "max": max(boots), "all": boots},
            "per_host": {"rss_mib": statistics.mean(m["rss_kib"] for m in memory) / 1024,
                         "pss_mib": statistics.mean(m["pss_kib"] for m in memory) / 1024,
                         "processes": statistics.mean(m["processes"] for m in memory)}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=5)
    p.add_argument("--bridge", required=True)
    p.add_argument("--cidr", required=True)
    p.add_argument("--settle", type=float, default=10.0)
    p.add_argument("--inits", default=",".join(HOST_INITS))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    cache = Path(os.environ.get("K1PROV_IMAGE_CACHE", Path.home() / ".cache/k1prov/images"))
    image = build_lab_image(cache, timeout=IMAGE_BUILD_TIMEOUT, progress=lambda m: print(m, file=sys.stderr))
    results = []
    with tempfile.TemporaryDirectory(prefix="k1prov-host-init-") as tmp:
        keys = Path(tmp) / "keys"
        keys.mkdir()
        for key in ("user", "host"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / key)], check=True)
        for init in args.inits.split(","):
            result = run(init, image, args, keys, Path(tmp))
            results.append(result)
            print(f"{init:8s} {args.hosts} hosts: power on -> SSH median {result['boot_to_ssh_s']['median']:.2f} s "
                  f"(max {result['boot_to_ssh_s']['max']:.2f} s); per host RSS "
                  f"{result['per_host']['rss_mib']:.1f} MiB, PSS {result['per_host']['pss_mib']:.1f} MiB, "
                  f"{result['per_host']['processes']:.0f} processes", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
