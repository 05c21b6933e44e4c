"""A small inventory for the unit tests of the verb context and of `run`: three ZooKeeper
members, a Spark master behind its own gateway and four workers, over an SSH gateway."""
from __future__ import annotations

from pathlib import Path

from k1prov.inventory import load_inventory
from k1prov.inventory.model import Inventory

INVENTORY = """\
cluster: unit
cloud: {ironic_url: "http://127.0.0.1:9"}
ssh: {user: ops, private_key: /keys/id, port: 2222, gateway: "jump@10.9.0.1:22"}
defaults:
  bmc: {address: 127.0.0.1, username: admin, password: {env: UNIT_UNUSED}}
nodes:
  - name: zk[1-3]
    address: {start: 10.0.0.1}
    macs: [{start: "52:54:00:00:00:01"}]
    bmc: {port: {start: 7001}}
    roles: [zookeeper]
  - name: master
    address: 10.0.0.10
    macs: ["52:54:00:00:01:00"]
    bmc: {port: 7010}
    roles: [spark-master]
    gateway: "other@10.9.0.2:2200"
  - name: w[01-04]
    address: {start: 10.0.0.21}
    macs: [{start: "52:54:00:00:02:01"}]
    bmc: {port: {start: 7021}}
    roles: [spark-worker]
"""


def small_inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    return load_inventory(path)
