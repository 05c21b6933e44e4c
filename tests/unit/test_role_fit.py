"""k1prov.roles.fit: a node's needs are the sums over its roles; facts Ironic lacks are not
checked; the inventory's overrides are checked where they are written."""
from __future__ import annotations

import pytest

from k1prov.errors import InventoryError
from k1prov.inventory import parse_inventory
from k1prov.inventory.model import Bmc, Node, SecretRef
from k1prov.roles.fit import ROLE_NEEDS, misfit, resolve_needs


def node(*roles: str) -> Node:
    return Node(name="n1", index=0, macs=("52:54:00:00:00:01",), address="10.0.0.1", roles=roles,
                bmc=Bmc(address="127.0.0.1", port=623, username="u", password=SecretRef(inline="p")))


def test_needs_add_up_over_the_roles_of_a_node():
    both = node("zookeeper", "mesos-master")
    assert misfit(both, {"memory_mb": 2048, "local_gb": 4, "cpus": 2}, ROLE_NEEDS) is None
    why = misfit(both, {"memory_mb": 2047}, ROLE_NEEDS)
    assert why.startswith("zookeeper + mesos-master need 2048 MB of memory; Ironic says the node has 2047")


def test_each_fact_is_checked_and_an_unknown_one_is_not():
    assert misfit(node("mesos-agent"), {}, ROLE_NEEDS) is None
    assert misfit(node("mesos-agent"), {"cpus": "0"}, ROLE_NEEDS).startswith("mesos-agent need 1 CPUs")
    assert "GB of disk" in misfit(node("spark-worker"), {"local_gb": 3}, ROLE_NEEDS)
    assert misfit(node("spark-worker"), {"local_gb": "lots"}, ROLE_NEEDS) is None


def test_overrides_go_over_the_defaults_and_bad_ones_are_refused():
    table = resolve_needs({"zookeeper": {"memory_mb": 256}}, pytest.fail)
    assert table["zookeeper"] == {"memory_mb": 256, "local_gb": 2, "cpus": 1}
    assert table["mesos-agent"] == ROLE_NEEDS["mesos-agent"]
    for bad, reason in (({"zk": {}}, "unknown role 'zk'"), ({"zookeeper": {"ram": 1}}, "unknown need"),
                        ({"zookeeper": {"cpus": -1}}, ">= 0"), ({"zookeeper": 3}, "must be a mapping")):
        with pytest.raises(AssertionError, match=reason):
            resolve_needs(bad, lambda why: (_ for _ in ()).throw(AssertionError(why)))


def test_the_loader_places_a_bad_need_at_its_line():
    text = """\
cluster: c
cloud: {ironic_url: "http://127.0.0.1:9"}
roles:
  common:
    needs: {zookeeper: {memory_gb: 4}}
nodes:
  - {name: n1, bmc: {address: 127.0.0.1, username: u, password: p}, macs: ["52:54:00:00:00:01"],
     address: 10.0.0.1, roles: [zookeeper]}
"""
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, path="inv.yaml")
    assert str(info.value).startswith("inv.yaml:5: roles.common.needs: zookeeper.memory_gb: unknown need")


def test_the_documented_defaults_are_the_codes():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "inventory.md").read_text()
    rows = {}
    for line in doc.split("**Role fit.**", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ROLE_NEEDS:
            rows[cells[0]] = dict(zip(("memory_mb", "local_gb", "cpus"), map(int, cells[1:])))
    assert rows == ROLE_NEEDS
