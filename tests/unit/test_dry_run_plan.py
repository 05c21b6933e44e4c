"""The dry run's Ironic steps come from the state sets the real run uses."""
from __future__ import annotations

import pytest

from k1prov.ironic_states import DEPLOYABLE, IN_FLIGHT, NEEDS_MANAGE, PROVIDABLE, ironic_plan


@pytest.mark.parametrize("state, steps, end", [
    (None, ["create in Ironic", "manage", "provide", "deploy"], "active"),
    ("enroll", ["manage", "provide", "deploy"], "active"),
    ("adopt failed", ["manage", "provide", "deploy"], "active"),     # the hand-made plan lacked it
    ("manageable", ["provide", "deploy"], "active"),
    ("available", ["deploy"], "active"),
    ("deploy failed", ["deploy"], "active"),
    ("active", [], "active"),
    ("verifying", ["wait for manageable (an earlier run's verifying)", "provide", "deploy"], "active"),
    ("wait call-back", ["wait for active (an earlier run's wait call-back)"], "active"),
    ("error", ["deploy refused: node is error; deploy needs available"], "error"),
])
def test_steps_per_state(state, steps, end):
    assert ironic_plan(state) == (steps, end)


def test_every_state_the_run_acts_on_is_planned():
    for state in NEEDS_MANAGE | PROVIDABLE | DEPLOYABLE | set(IN_FLIGHT):
        steps, end = ironic_plan(state)
        assert end == "active" and not any("refused" in s for s in steps), state
