"""Ironic API requests per node for enroll + images register + deploy, from Ironic's access log.

    flock -w 1200 /tmp/k1prov-lab.lock timeout 1500 .venv/bin/python benchmarks/bench_ironic_requests.py \
        --nodes 100 --waits sdk,list --json benchmarks/results/ironic-requests-100.json

For each wait implementation in --waits, starts a lab of its own (own directory and ports,
N simulated BMCs; the hosts' bridge and subnet are the lab's default, hence the lab lock),
then runs k1prov's verbs as `cluster up` does: `nodes enroll`, `images register`, `deploy`
(available -> active with a config drive, then SSH with the pinned key), and reads the lines
Ironic's API logged during each phase:

  k1prov  requests k1prov sent (the rest);
  lab     the lab's reconciler, which plays the machines: its listing of the nodes every
          0.5 s and the power-on it asks Ironic for when a node becomes active (a real
          conductor powers the node on itself);
  agent   /v1/lookup and /v1/heartbeat (ironic-python-agent; none with the fake deploy).

Waits (--waits):
  sdk   the code on main before this work (commit ddc00b1), put back for the run:
        openstacksdk's wait_for_nodes_provision_state (one GET /v1/nodes/<id> per node per
        poll) and its set_node_provision_state (which GETs the whole node after each action);
  list  k1prov's list-based wait and provision actions without that GET (main now).

`--phases enroll` stops after enrollment. `--no-hosts` stops the reconciler: Ironic's fake
deploy still goes to active, no host boots, and the deploy's SSH wait is skipped (it sends
nothing to Ironic either way): the Ironic side of a deploy, for sizes whose hosts do not
fit in memory. The lab then runs without its reconciler (which would take the lab bridge),
so it uses only its own ports and directory and needs no lab lock.

The nodes are `fake-hardware` with the `fake` deploy and boot interfaces (IPMI power and
management), whatever the lab inventory uses (the lab deploys with ironic-python-agent now):
the reconciler boots the hosts and no agent runs.
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
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import k1prov.deploy
import k1prov.lab.lab
from k1prov.inventory import load_inventory
from k1prov.ironic import IronicNodes, WaitResult
from k1prov.lab import Lab, LabSettings
from k1prov.provisioner import Provisioner, RunOptions
from k1prov.settings import DEFAULT_TIMEOUTS

# Ports of this benchmark's lab: away from the operator's lab, the test lab and bench_enroll.
BENCH_PORTS = dict(ironic_port=46385, glance_port=49292, http_port=48088, bmc_base_port=46230)
CLUSTER = "benchreq"

ACCESS = re.compile(r"ironic\.api \[[^\]]*\] \S+ - ([A-Z]+) (\S+) - (\d{3})")
RECONCILER_LIST = "/v1/nodes?fields=uuid,name,provision_state,provision_updated_at"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def classify(method: str, path: str) -> tuple[str, str]:
    """(who, what) of one access-log line."""
    if path.startswith(RECONCILER_LIST) or (method == "PUT" and re.fullmatch(
            rf"/v1/nodes/{UUID}/states/power", path)):
        return "lab", f"{method} {re.sub(UUID, '<id>', path.split('?')[0])}"
    if path.startswith(("/v1/lookup", "/v1/heartbeat")):
        return "agent", f"{method} {path.split('?')[0].split('/')[2]}"
    what = re.sub(UUID, "<id>", path.split("?")[0])
    if "?" in path and method == "GET":
        what += "?" + ",".join(sorted(k.split("=")[0] for k in path.split("?", 1)[1].split("&")))
    return "k1prov", f"{method} {what}"


def read_requests(log: Path, start: int) -> tuple[list[tuple[str, str, str]], int]:
    """Access-log lines (who, what, status) after byte offset `start`; and the new offset."""
    with log.open("rb") as f:
        f.seek(start)
        data = f.read()
    lines = []
    for line in data.decode(errors="replace").splitlines():
        m = ACCESS.search(line)
        if m:
            who, what = classify(m.group(1), m.group(2))
            lines.append((who, what, m.group(3)))
    return lines, start + len(data)


def sdk_wait(self: IronicNodes, uuids, state, *, timeout, abort_on_failed_state=True) -> WaitResult:
    """The wait before the list-based one: openstacksdk's own, one GET per node per poll."""
    res = self.conn.baremetal.wait_for_nodes_provision_state(
        uuids, state, timeout=timeout, abort_on_failed_state=abort_on_failed_state, fail=False)
    return WaitResult(list(res.success), list(res.failure), list(res.timeout))


def sdk_start_action(self: IronicNodes, uuid: str, action: str, *, config_drive=None) -> None:
    """The provision request before (commit ddc00b1): the SDK's, which GETs the whole node
    afterwards; after a failure the node is read back as now."""
    from k1prov.errors import NodeError
    from k1prov.ironic_states import ACTION_TAKEN

    try:
        self.conn.baremetal.set_node_provision_state(uuid, action, config_drive=config_drive)
    except Exception as exc:
        try:
            node = self.conn.baremetal.get_node(uuid)
        except Exception:
            raise NodeError(uuid, f"{action}: {exc}") from None
        if node.provision_state not in ACTION_TAKEN.get(action, ()):
            raise NodeError(uuid, f"{action}: {exc}") from None


def no_ssh_wait(ctx, nodes, **_):
    """--no-hosts: no host boots, so SSH is not tried (no connection to any address on
    the lab bridge, where other labs' hosts may answer); every node counts as ready."""
    from k1prov.fanout import Policy, run_fanout

    return run_fanout(nodes, lambda n: 0.0, key=lambda n: n.name, policy=Policy(kind="ssh.skipped"))


def inventory_text(lab: Lab, count: int) -> str:
    text = lab.inventory_yaml(nodes=count, cluster=CLUSTER)
    # The fake deploy interface, whatever the lab inventory uses (see the docstring).
    text = re.sub(r"interfaces: \{[^}]*\}", "interfaces: {power: ipmitool, management: ipmitool, "
                  "deploy: fake, boot: fake}", text)
    text = re.sub(r"(\n  driver: )\S+", r"\1fake-hardware", text)
    return text


def run_one(wait: str, args, workdir: Path) -> dict:
    root = workdir / f"lab-{wait}"
    os.environ["K1PROV_LAB_DIR"] = str(root)          # the image catalog's {lab_dir}
    state = workdir / f"state-{wait}"
    settings = replace(LabSettings.default(), root=root, nodes=args.nodes,
                       clouds_yaml=workdir / "clouds.yaml", **BENCH_PORTS)
    lab = Lab(settings)
    originals = IronicNodes.wait_for_provision_state, IronicNodes.start_action
    ssh_wait = k1prov.deploy.wait_ssh
    if wait == "sdk":
        IronicNodes.wait_for_provision_state = sdk_wait
        IronicNodes.start_action = sdk_start_action
    result: dict = {"wait": wait, "nodes": args.nodes, "phases": []}
    services = k1prov.lab.lab.SERVICES
    if args.no_hosts:
        # The lab without its reconciler: it would take the lab bridge (shared with the
        # lab-lock holder's lab) even with no host to boot.
        k1prov.lab.lab.SERVICES = tuple(n for n in services if n != "reconciler")
    try:
        lab.up(progress=lambda m: print(f"lab: {m}", file=sys.stderr))
        lab.prepare_hosts(progress=lambda m: print(f"lab: {m}", file=sys.stderr))
        if args.no_hosts:
            k1prov.deploy.wait_ssh = no_ssh_wait
        inv_path = workdir / f"inventory-{wait}.yaml"
        inv_path.write_text(inventory_text(lab, args.nodes))
        timeouts = DEFAULT_TIMEOUTS
        log = settings.log_dir / "ironic.log"
        offset = log.stat().st_size

        def prov() -> Provisioner:
            return Provisioner(load_inventory(inv_path), state_root=state, timeouts=timeouts,
                               options=RunOptions())

        verbs = [("enroll", lambda: prov().enroll()),
                 ("images", lambda: prov().register_images()),
                 ("deploy", lambda: prov().deploy())]
        if args.phases == "enroll":
            verbs = verbs[:1]
        for name, verb in verbs:
            t0 = time.monotonic()
            report = verb()
            seconds = time.monotonic() - t0
            time.sleep(1.0)       # let the last access lines reach the log
            lines, offset = read_requests(log, offset)
            by_who = Counter(who for who, _, _ in lines)
            k1 = Counter(what for who, what, _ in lines if who == "k1prov")
            bad = [o for o in report.outcomes if o.status.value != "ok"]
            phase = {"phase": name, "seconds": round(seconds, 1), "requests": dict(by_who),
                     "k1prov_per_node": round(by_who["k1prov"] / args.nodes, 2),
                     "k1prov_by_kind": dict(k1.most_common()),
                     "statuses": dict(Counter(st for who, _, st in lines if who == "k1prov")),
                     "failed_nodes": len(bad), "first_errors": [f"{o.node}: {o.error}" for o in bad[:3]]}
            result["phases"].append(phase)
            print(f"  [{wait}] {name}: {seconds:.1f}s k1prov={by_who['k1prov']} "
                  f"({phase['k1prov_per_node']}/node) lab={by_who['lab']} agent={by_who['agent']} "
                  f"failed={len(bad)}", file=sys.stderr, flush=True)
        total = sum(p["requests"].get("k1prov", 0) for p in result["phases"])
        result["k1prov_total"] = total
        result["k1prov_per_node"] = round(total / args.nodes, 2)
    finally:
        IronicNodes.wait_for_provision_state, IronicNodes.start_action = originals
        k1prov.deploy.wait_ssh = ssh_wait
        try:
            lab.down()
        finally:
            k1prov.lab.lab.SERVICES = services
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--waits", default="sdk,list", help="sdk, list or both, in that order")
    ap.add_argument("--phases", choices=["enroll", "deploy"], default="deploy",
                    help="enroll only, or enroll + images register + deploy")
    ap.add_argument("--no-hosts", action="store_true", help="stop the reconciler: no host boots")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    # SIGTERM unwinds like Ctrl-C, so the benchmark's lab is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="k1prov-bench-requests-"))
    os.environ["K1PROV_STATE_DIR"] = str(workdir / "state")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    results = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
               "commit": commit, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "runs": []}
    try:
        for wait in args.waits.split(","):
            results["runs"].append(run_one(wait, args, workdir))
            if args.json:
                args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nIronic API requests sent by k1prov, {args.nodes} lab nodes (per node in brackets)")
    names = [p["phase"] for p in results["runs"][0]["phases"]]
    print(f"{'wait':<6}" + "".join(f"{n:>18}" for n in names) + f"{'total':>18}")
    for run in results["runs"]:
        cells = [f"{p['requests'].get('k1prov', 0)} ({p['k1prov_per_node']})" for p in run["phases"]]
        print(f"{run['wait']:<6}" + "".join(f"{c:>18}" for c in cells)
              + f"{run['k1prov_total']} ({run['k1prov_per_node']})".rjust(18))
    return 0


if __name__ == "__main__":
    sys.exit(main())
