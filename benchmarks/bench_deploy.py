"""Deploy until SSH answers: the real `direct` deploy against the `fake` deploy, side by side.

    .venv/bin/python benchmarks/bench_deploy.py --nodes 5 --nodes 20 [--json out.json]

Starts a lab of its own (own directory, ports, bridge and subnet: nothing of the operator's
lab or the test session's is touched), then, for each N, in the same run on the same lab:

  agent  N nodes as lab.yaml has them: `ipmi` + `pxe` + `direct`; the machines' real
         ironic-python-agent writes the whole-disk image and the config drive, the machines
         boot from their disks; phases: enroll, images register, Ironic deploy (available ->
         active), SSH answers (pinned host key, fresh boot);
  fake   N other nodes with `fake-hardware` + `fake` deploy/boot (ipmitool power): Ironic walks
         the same states but nothing is written and nothing boots, so there is no SSH phase
         (the lab machines follow only their BMCs and disks; the old reconciler that booted a
         host from the Glance image for a `fake` node is gone).

Then undeploys and deletes everything. Prints one line per phase and path, and the memory
each deploying machine used (peak of its memory cgroup, agent RSS) from the machines'
records. Timings depend on the machine's load; run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from k1prov.imagecatalog import write_lab_deploy_image
from k1prov.inventory import load_inventory
from k1prov.lab import Lab, LabSettings
from k1prov.lab.image import build_lab_image
from k1prov.lab.machine import machine_mac
from k1prov.provisioner import Provisioner
from k1prov.settings import DEFAULT_TIMEOUTS

BENCH = dict(ironic_port=49385, glance_port=52292, http_port=51088, bmc_base_port=49230,
             bridge="k1pipab0", cidr="10.253.128.1/24")
IMAGE_BUILD_TIMEOUT = 1800.0


def inventory(lab: Lab, d: Path, *, cluster: str, count: int, first_port: int, first_host: int,
              real: bool) -> Path:
    s = lab.settings
    pub = (d / "id_ed25519.pub").read_text().strip()
    image = build_lab_image(Path(os.environ.get("K1PROV_IMAGE_CACHE",
                                                Path.home() / ".cache/k1prov/images")),
                            timeout=IMAGE_BUILD_TIMEOUT)
    driver = ("driver: ipmi\n  interfaces: {power: ipmitool, management: ipmitool, deploy: direct, boot: pxe}"
              if real else
              "driver: fake-hardware\n  interfaces: {power: ipmitool, management: ipmitool, deploy: fake, boot: fake}")
    net = s.cidr.rsplit(".", 1)[0]
    text = f"""\
cluster: {cluster}
cloud: {{ironic_url: "{s.ironic_url}", glance_url: "{s.glance_url}"}}
ssh: {{user: root, private_key: "{d / 'id_ed25519'}", public_keys: ["{pub}"]}}
network: {{prefix_length: 24}}
images:
  deploy_kernel: {{name: {cluster}-kernel, file: "{d / 'deploy.kernel'}"}}
  deploy_ramdisk: {{name: {cluster}-ramdisk, file: "{d / 'deploy.initramfs'}"}}
  user: {{name: {cluster}-image, file: "{image}"}}
defaults:
  {driver}
  bmc: {{address: 127.0.0.1, username: {s.bmc_username}, password: {{file: "{s.bmc_password_file}"}}}}
nodes:
  - name: {cluster}[001-{count:03d}]
    bmc: {{port: {{start: {first_port}}}}}
    macs: [{{start: "{machine_mac(first_port)}"}}]
    address: {{start: {net}.{first_host}}}
"""
    path = d / f"{cluster}.yaml"
    path.write_text(text)
    return path


def run_path(lab: Lab, d: Path, *, cluster: str, count: int, first_port: int, first_host: int,
             real: bool) -> dict:
    inv = inventory(lab, d, cluster=cluster, count=count, first_port=first_port,
                    first_host=first_host, real=real)
    messages: list[tuple[float, str]] = []
    # The fake path boots nothing: its SSH wait would only time out, so it is cut short.
    timeouts = DEFAULT_TIMEOUTS if real else replace(DEFAULT_TIMEOUTS, ssh_ready=1.0, ssh_connect=1.0)
    prov = Provisioner(load_inventory(inv), state_root=d / "state", timeouts=timeouts,
                       notify=lambda m: messages.append((time.monotonic(), m)))
    out: dict = {"path": "agent" if real else "fake", "nodes": count}
    t0 = time.monotonic()
    rep = prov.enroll()
    out["enroll_s"] = time.monotonic() - t0
    assert rep.exit_code() == 0, [o.error for o in rep.failed]
    t0 = time.monotonic()
    rep = prov.register_images()
    out["images_s"] = time.monotonic() - t0
    assert rep.exit_code() == 0, [o.error for o in rep.outcomes if o.error]
    t0 = time.monotonic()
    rep = prov.deploy()
    total = time.monotonic() - t0
    if real:
        assert rep.exit_code() == 0, [(o.node, o.error) for o in rep.outcomes if o.error]
    else:
        assert {o.provision_state for o in rep.outcomes} == {"active"}
    active = next((float(m.split(" in ")[1].split()[0]) for _, m in messages
                   if "reached active in" in m), total)
    out["ironic_deploy_s"] = active
    out["ssh_s"] = total - active if real else None
    out["deploy_until_ssh_s"] = total if real else None
    t0 = time.monotonic()
    prov.undeploy()
    out["undeploy_s"] = time.monotonic() - t0
    prov.delete_nodes()
    return out


def memory(lab: Lab) -> dict:
    peaks, rss = [], []
    for f in lab.settings.machines_dir.glob("*/memory.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            peaks.append(rec["peak_bytes"] / 2**20)
            if rec.get("rss_bytes"):
                rss.append(rec["rss_bytes"] / 2**20)
    if not peaks:
        return {}
    return {"machines": len(peaks), "peak_mib_median": statistics.median(peaks),
            "peak_mib_max": max(peaks), "rss_mib_median": statistics.median(rss) if rss else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, action="append", required=True)
    p.add_argument("--json", type=Path)
    p.add_argument("--keep", action="store_true", help="leave the lab directory")
    args = p.parse_args()
    biggest = max(args.nodes)
    root = Path(tempfile.mkdtemp(prefix="k1prov-bench-deploy-"))
    settings = LabSettings(root=root / "lab", venv=LabSettings.default().venv, nodes=2 * biggest,
                           clouds_yaml=root / "clouds.yaml", auth="none", **BENCH)  # as its recorded runs
    lab = Lab(settings)
    d = root / "inputs"
    d.mkdir()
    import subprocess
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id_ed25519")], check=True)
    write_lab_deploy_image(d / "deploy.kernel", "lab-deploy-kernel")
    write_lab_deploy_image(d / "deploy.initramfs", "lab-deploy-ramdisk")
    results = []
    try:
        t0 = time.monotonic()
        lab.up(progress=lambda m: print(f"[lab {time.monotonic() - t0:5.1f} s] {m}", file=sys.stderr))
        for n in args.nodes:
            for real in (True, False):
                first_port = settings.bmc_base_port + (0 if real else biggest)
                res = run_path(lab, d, cluster=f"{'agt' if real else 'fak'}{n}", count=n,
                               first_port=first_port, first_host=11 + (0 if real else biggest), real=real)
                results.append(res)
                print(json.dumps(res), flush=True)
        mem = memory(lab)
        print("memory per deploying machine:", json.dumps(mem))
    finally:
        lab.down()
        if not args.keep:
            import shutil
            shutil.rmtree(settings.machines_dir, ignore_errors=True)
    print(f"\n{'path':6} {'N':>3} {'enroll':>7} {'images':>7} {'ironic':>8} {'ssh':>6} {'total':>7} {'undeploy':>9}")
    for r in results:
        ssh = f"{r['ssh_s']:6.1f}" if r["ssh_s"] is not None else "     -"
        total = f"{r['deploy_until_ssh_s']:7.1f}" if r["deploy_until_ssh_s"] is not None else "      -"
        print(f"{r['path']:6} {r['nodes']:3d} {r['enroll_s']:7.1f} {r['images_s']:7.1f} "
              f"{r['ironic_deploy_s']:8.1f} {ssh} {total} {r['undeploy_s']:9.1f}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "memory": mem}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
