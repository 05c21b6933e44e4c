"""IronicNodes decisions that need no Ironic: password fingerprints and action retries."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from k1prov.errors import NodeError
from k1prov.inventory.model import Bmc, Node, SecretRef
from k1prov.ironic import IronicNodes, bmc_fingerprint

from sdk_standin import ListingBaremetal


class SlowIronic:
    """Answers the provision-state PUT with a client-side timeout, like a loaded Ironic
    that still carries the action out; get_node reports the state it then has."""

    def __init__(self, state_after: str):
        self.state_after = state_after
        self.calls = []

    def put(self, url, json=None, **kwargs):
        self.calls.append(json["target"])
        raise TimeoutError("read timed out after 60 s")

    def get_node(self, uuid):
        return SimpleNamespace(id=uuid, provision_state=self.state_after)


def nodes_with(baremetal) -> IronicNodes:
    return IronicNodes(SimpleNamespace(baremetal=baremetal), cluster="c")


def test_timed_out_action_that_ironic_took_counts_as_started():
    ironic = SlowIronic("verifying")
    nodes_with(ironic).start_action("u1", "manage")
    assert ironic.calls == ["manage"]          # sent once, never again


def test_timed_out_action_that_ironic_did_not_take_is_a_node_error():
    ironic = SlowIronic("enroll")
    with pytest.raises(NodeError, match="manage: read timed out"):
        nodes_with(ironic).start_action("u1", "manage")
    assert ironic.calls == ["manage"]


def test_fingerprint_changes_with_password_and_node_but_hides_it():
    a = bmc_fingerprint("c", "n1", "secret")
    assert a == bmc_fingerprint("c", "n1", "secret")
    assert a != bmc_fingerprint("c", "n1", "secret2")
    assert a != bmc_fingerprint("c", "n2", "secret")
    assert "secret" not in a and len(a) == 24


def _node(name: str) -> Node:
    return Node(name=name, index=0, bmc=Bmc("127.0.0.1", 623, "admin", SecretRef(inline="pw")),
                macs=("52:54:00:00:00:01",), address="10.0.0.1", roles=())


def test_nodes_are_listed_once_and_a_new_node_costs_two_calls():
    mine = SimpleNamespace(name="n2", id="u2", provision_state="available",
                           extra={"k1prov_cluster": "c"}, driver_info={})
    foreign = SimpleNamespace(name="n3", id="u3", provision_state="available", extra={})
    baremetal = ListingBaremetal([mine, foreign])
    ironic = nodes_with(baremetal)
    existing = ironic.by_name()
    assert set(existing) == {"n2", "n3"} and baremetal.calls == ["nodes"]

    baremetal.calls.clear()
    result = ironic.ensure(_node("n1"), existing.get("n1"))
    assert result.created and result.ports_created == 1
    assert baremetal.calls == ["create_node", "create_port"]      # no ports listing

    baremetal.calls.clear()
    ironic.ensure(_node("n2"), existing.get("n2"))
    assert "create_node" not in baremetal.calls and "ports" in baremetal.calls

    with pytest.raises(NodeError, match="not k1prov's"):
        ironic.ensure(_node("n3"), existing.get("n3"))
    with pytest.raises(NodeError, match="not k1prov's"):
        ironic.delete("n3", existing.get("n3"))
    assert ironic.delete("n1-gone", None) is False
    assert ironic.delete("n2", existing["n2"]) is True and baremetal.calls[-1] == "delete_node"
