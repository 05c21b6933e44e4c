"""Automated cleaning and inspection on the VM lab's machines (issues 20 and 21): the real
agent ramdisk on real (QEMU) machines, one behind IPMI (virtualbmc), one behind Redfish
(sushy-tools), through the CLI as an operator runs it:

1. `images register`, then `nodes enroll`: provide cleans both machines (the agent erases
   the disk's metadata), so each boots the ramdisk once;
2. `nodes inspect` of both: the agent reports the machine QEMU defines (its vCPU, its memory,
   its virtio disk and its NIC with the MAC the inventory gives), shown in
   `nodes list --json`; provide after it cleans once more;
3. `deploy` of the IPMI machine, then `undeploy`: deleting → cleaning → available.

Each step's time is printed, and each node's time in cleaning and inspection read from
Ironic's log (issue 21 wants both in each lab). Under TCG each step is one boot of the agent
ramdisk per machine, minutes each; the file runs with `-m vm` or K1PROV_TEST_VM_DEPLOY=1,
like the other VM deploy tests, and needs the agent ramdisk and the user image built."""
from __future__ import annotations

import datetime
import json
import re
import time

import pytest
from typer.testing import CliRunner

from k1prov.cli import app
from k1prov.lab.vm import VmLab

from test_lab_vm import (DEPLOY_TEST_TIMEOUT, gated_vm_work, _status,  # noqa: F401
                         vm_env, vm_lab)

pytestmark = [pytest.mark.vm]


@pytest.fixture(scope="module")
def env(vm_lab, tmp_path_factory, request):
    d, env = gated_vm_work(vm_lab, tmp_path_factory, request.config, name="vmclean",
                           skip="the VM cleaning and inspection run with -m vm or K1PROV_TEST_VM_DEPLOY=1 "
                                "(one ramdisk boot per machine and step under TCG)")
    from k1prov.lab.vm_inventory import render_vm_inventory

    inv = d / "lab-vm.yaml"
    inv.write_text(render_vm_inventory(vm_lab.settings))
    # Nothing to undo: vm_env's `lab down --kind vm` takes the machines and Ironic away.
    return {"inv": inv, "env": env}


def _k1prov(env: dict, *argv: str) -> dict | None:
    result = CliRunner().invoke(app, [*argv, "-i", str(env["inv"])], env=env["env"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in argv else None


def _uuids(env: dict) -> dict[str, str]:
    return {r["node"]: r["uuid"] for r in _k1prov(env, "nodes", "list", "--json")["nodes"]}


def _states(lab: VmLab, uuid: str, since: float) -> list[tuple[str, float]]:
    """The node's provision states after `since` (epoch s), each with when Ironic moved it there."""
    pattern = re.compile(rf'Node {uuid} moved to provision state "([^"]+)"')
    found = []
    for line in (lab.settings.ironic_settings().log_dir / "ironic.log").read_text(errors="replace").splitlines():
        m = pattern.search(line)
        if m:
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            if stamp >= since - 1:
                found.append((m.group(1), stamp))
    return found


def _span(states: list[tuple[str, float]], start: str, end: str) -> float | None:
    """Seconds from the node's first move to `start` to its next move to `end`."""
    began = next((t for s, t in states if s == start), None)
    if began is None:
        return None
    return next((t - began for s, t in states if s == end and t >= began), None)


def _print_spans(lab: VmLab, env: dict, since: float, start: str, end: str, what: str) -> dict[str, float]:
    spans = {}
    for name, uuid in sorted(_uuids(env).items()):
        bmc = "ipmi" if name == "vm01" else "redfish"
        spans[name] = _span(_states(lab, uuid, since), start, end)
        shown = f"{spans[name]:.0f} s" if spans[name] is not None else "?"
        print(f"  {name} ({bmc}): {what} ({start} -> {end}) {shown}")
    return spans


@pytest.mark.timeout(DEPLOY_TEST_TIMEOUT)
def test_enroll_cleans_both_machines_through_the_agent(vm_lab, env):
    t0 = time.time()
    _k1prov(env, "images", "register")
    mid = time.time()
    data = _k1prov(env, "nodes", "enroll", "--json")
    print(f"\nimages register {mid - t0:.0f} s; nodes enroll (provide cleans both) {time.time() - mid:.0f} s")
    assert {r["node"]: r["provision_state"] for r in data["nodes"]} == {"vm01": "available", "vm02": "available"}
    spans = _print_spans(vm_lab, env, mid, "cleaning", "available", "automated cleaning")
    # Cleaned, not just provided: each went through cleaning and clean wait (the agent's call).
    for name, uuid in _uuids(env).items():
        seen = [s for s, _ in _states(vm_lab, uuid, mid)]
        assert "clean wait" in seen, (name, seen)
        assert spans[name] is not None
    # The agent erased the disk's metadata: the step Ironic ran, in its log.
    log = (vm_lab.settings.ironic_settings().log_dir / "ironic.log").read_text(errors="replace")
    assert "erase_devices_metadata" in log


@pytest.mark.timeout(DEPLOY_TEST_TIMEOUT)
def test_inspection_reports_the_machines_qemu_defines(vm_lab, env):
    t0 = time.time()
    data = _k1prov(env, "nodes", "inspect", "--json")
    print(f"\nnodes inspect, both at once (manage, inspect, provide with cleaning): {time.time() - t0:.0f} s")
    for p in data["phases"]:
        print(f"  phase {p['phase']}")
    _print_spans(vm_lab, env, t0, "inspecting", "manageable", "inspection")
    _print_spans(vm_lab, env, t0, "cleaning", "available", "automated cleaning")
    s = vm_lab.settings
    machines = {m["name"]: m for m in _status()["machines"]}
    rows = {r["node"]: r for r in data["nodes"]}
    listed = {r["node"]: r for r in _k1prov(env, "nodes", "list", "--json")["nodes"]}
    for i, name in enumerate(("vm01", "vm02")):
        m = machines[f"{s.bridge}-n{i}"]
        # The inventory's MAC is the one the agent found: no disagreement named.
        assert rows[name]["action"] == "inspected", rows[name]
        assert rows[name]["provision_state"] == "available", rows[name]
        hw = listed[name]["hardware"]
        print(f"  {name}: cpus {hw['cpus']}, memory_mb {hw['memory_mb']}, local_gb {hw['local_gb']}, "
              f"disks {[(d['name'], d['size_bytes']) for d in hw['disks']]}, nics {[n['mac'] for n in hw['nics']]}")
        assert [n["mac"] for n in hw["nics"]] == [m["mac"]], hw
        assert int(hw["cpus"]) == 1                      # <vcpu>1</vcpu>
        assert 0 < int(hw["memory_mb"]) <= s.memory_mib, hw
        assert (s.disk_gb << 30) in [d["size_bytes"] for d in hw["disks"]], hw
        assert hw["local_gb"] == s.disk_gb - 1           # less the GiB Ironic keeps back
        assert vm_lab.libvirt.state(m["name"]) == "shut off"


@pytest.mark.timeout(DEPLOY_TEST_TIMEOUT)
def test_undeploy_cleans_on_the_way_to_available(vm_lab, env):
    """One machine (IPMI) deployed, then undeployed: its cleaning is what a deploy cycle gains."""
    t0 = time.time()
    _k1prov(env, "deploy", "--limit", "vm01")
    mid = time.time()
    print(f"\ndeploy vm01: {mid - t0:.0f} s")
    _k1prov(env, "undeploy", "--limit", "vm01")
    print(f"undeploy vm01 (with cleaning): {time.time() - mid:.0f} s")
    uuid = _uuids(env)["vm01"]
    states = _states(vm_lab, uuid, mid)
    seen = [s for s, _ in states]
    assert seen[:1] == ["deleting"] and "clean wait" in seen and seen[-1] == "available", seen
    print(f"  deleting -> cleaning {_span(states, 'deleting', 'cleaning'):.0f} s, "
          f"cleaning -> available {_span(states, 'cleaning', 'available'):.0f} s")
    row = next(r for r in _k1prov(env, "nodes", "list", "--json")["nodes"] if r["node"] == "vm01")
    assert (row["provision_state"], row["power_state"]) == ("available", "power off")
