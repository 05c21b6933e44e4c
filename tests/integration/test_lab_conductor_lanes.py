"""Fan-out per conductor group against the real thing: `lab up --conductors 2
--conductor-groups a,b` (MariaDB, ironic-api, one ironic-conductor per group, JSON-RPC) and
`fake-hardware` nodes (no BMC, nothing booted), eight in each group, group b's first.

Both conductors up, the nodes enroll. Then group b's conductor is killed (its group has no
other) and k1prov deploys every node with a failure budget of a quarter: Ironic's API
answers for b's nodes with a 500 "Unable to establish connection" (temporary for k1prov, as
for a conductor that may be taken over), later with "no conductor for group b". Each group is its own lane (k1prov.fanout.engine):
group a's nodes all reach `active`, group b's are named in the report (not deployed, with
the reason) and b's budget stops only b. With one lane for all, b's nodes, first in the
inventory, would fill the level with calls retried until their item timeout and their
failures spend the run's budget: a's nodes would be skipped.

Not SIGSTOP: a stopped conductor (alive to the kernel) makes Ironic 39's API hang on its
JSON-RPC calls, which have no timeout, until the API answers no one, group a's listings
included (tried: the deploy wait's listing timed out); that is Ironic's API, not a lane.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
from lab_fixture import beside_session_lab, bring_up

from k1prov.context import RunOptions
from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.lab import Lab, procs
from k1prov.provisioner import Provisioner
from k1prov.settings import DEFAULT_TIMEOUTS

pytestmark = pytest.mark.lab

CLUSTER = "lanes"
# Ports: the session lab's offset plus this (auth +300, conductors +500, redfish +700).
PORT_SHIFT = 800
PER_GROUP = 8
# A short API timeout: group b's hung calls are given up after 3 of these (the fire's
# item timeout) instead of 3 minutes. Fake nodes answer no SSH: that wait is cut short.
TIMEOUTS = dataclasses.replace(DEFAULT_TIMEOUTS, api_request=15.0, ssh_ready=1.0, ssh_connect=1.0)
BUDGET = 0.25


def _inventory(lab: Lab, d: Path) -> Path:
    s = lab.settings
    # Addresses on loopback where nothing listens: the cut-short SSH wait is refused at once.
    groups = ""
    for i, group in enumerate(("b", "a")):
        groups += (f"  - name: lane{group}[01-{PER_GROUP:02d}]\n"
                   f"    conductor_group: {group}\n"
                   f"    bmc: {{port: {{start: {1 + i * 100}}}}}\n"
                   f"    macs: [{{start: \"02:5d:00:00:0{i}:01\"}}]\n"
                   f"    address: {{start: 127.249.{i}.1}}\n")
    inv = d / "lanes.yaml"
    inv.write_text(f"""\
cluster: {CLUSTER}
cloud: {{ironic_url: "{s.ironic_url}", glance_url: "{s.glance_url}"}}
ssh: {{user: root, private_key: "/nonexistent", public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKy+NXgyylGl9wcqGOTLjwwzPYuJStovXrHR+wBeJACG lanes"]}}
network: {{prefix_length: 16}}
images:
  user: {{name: lanes-image, url: "http://127.0.0.1:9/lanes.img", checksum: "sha256:{'0' * 64}", bypass_glance: true}}
defaults:
  driver: fake-hardware
  interfaces: {{power: fake, management: fake, deploy: fake, boot: fake}}
  bmc: {{address: 127.0.0.1, username: admin, password: {{file: "{s.bmc_password_file}"}}}}
nodes:
{groups}""")
    return inv


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, mounts)")
    root = tmp_path_factory.mktemp("lablanes")
    s = beside_session_lab(root, shift=PORT_SHIFT, conductors=2, conductor_groups=("a", "b"))
    lab = Lab(s)
    bring_up(lab)
    d = root / "work"
    d.mkdir()
    try:
        yield {"lab": lab, "inv": _inventory(lab, d), "state": d / "state"}
    finally:
        lab.down()


def _prov(env) -> Provisioner:
    return Provisioner(load_inventory(env["inv"]), state_root=env["state"], timeouts=TIMEOUTS,
                       options=RunOptions(failure_budget=BUDGET), notify=lambda m: None)


def test_a_dead_groups_conductor_holds_back_only_its_own_nodes(env):
    lab = env["lab"]
    enrolled = _prov(env).enroll()
    assert {o.provision_state for o in enrolled.outcomes} == {"available"}, \
        [(o.node, o.error) for o in enrolled.outcomes if o.error]
    rec = procs.read_running(lab.settings.run_dir, "ironic-conductor-2")   # group b's
    assert rec is not None
    os.killpg(rec.pid, signal.SIGKILL)
    t0 = time.monotonic()
    report = _prov(env).deploy()
    print(f"\ndeploy with group b's conductor killed: {time.monotonic() - t0:.1f} s")
    rows = {o.node: o for o in report.outcomes}
    a_nodes = [f"lanea{i:02d}" for i in range(1, PER_GROUP + 1)]
    b_nodes = [f"laneb{i:02d}" for i in range(1, PER_GROUP + 1)]
    # Group a: every node deployed (Ironic's active; the SSH wait of fake nodes fails).
    assert {n: rows[n].provision_state for n in a_nodes} == {n: "active" for n in a_nodes}, \
        {n: (rows[n].provision_state, rows[n].error) for n in a_nodes}
    # Group b: every node named, none deployed, each with what held it.
    for name in b_nodes:
        row = rows[name]
        assert row.status is not Status.OK and row.error, (name, row.status, row.error)
        assert row.provision_state == "available", (name, row.provision_state)
    skipped = [n for n in b_nodes if rows[n].status is Status.SKIPPED]
    assert all("failure budget exhausted in conductor_group=b" in rows[n].error for n in skipped)
    fired = dict(report.phases)["active"]   # the provision action fired
    assert set(fired.partitions) == {"conductor_group=a", "conductor_group=b"}
    assert fired.partitions["conductor_group=a"].stop_reason is None
    shown = [ph for ph in report.to_dict()["phases"] if ph["phase"] == "active"][0]
    assert {p["name"] for p in shown["partitions"]} == set(fired.partitions)
