"""IronicNodes decisions that need no Ironic: password fingerprints and action retries."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from k1prov.errors import NodeError
from k1prov.ironic import IronicNodes, bmc_fingerprint


class SlowIronic:
    """Answers set_node_provision_state with a client-side timeout, like a loaded Ironic
    that still carries the action out; get_node reports the state it then has."""

    def __init__(self, state_after: str):
        self.state_after = state_after
        self.calls = []

    def set_node_provision_state(self, uuid, action, config_drive=None):
        self.calls.append(action)
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
