"""Ironic's provision states as k1prov reads them: its state machine's rules in one place.

Which states each verb starts from, the transitions an interrupted run may leave in flight
and where each one ends, which states show Ironic took an action, when a wait is over, and
the dry run's plan read from the same sets. Verbs import these; none redefines them
(metalsmith keeps its instance states the same way, `_instance.py`).
"""
from __future__ import annotations

from typing import Any

ENROLL = "enroll"
MANAGEABLE = "manageable"
AVAILABLE = "available"
ACTIVE = "active"

# States from which `manage` is the way forward (enroll, or a failed earlier attempt).
NEEDS_MANAGE = frozenset({ENROLL, "clean failed", "inspect failed", "adopt failed"})
# States from which `provide` is the way forward.
PROVIDABLE = frozenset({MANAGEABLE})
# States from which `active` (a deploy) is the way forward.
DEPLOYABLE = frozenset({AVAILABLE, "deploy failed"})
# States from which `rebuild` (reimage) is accepted.
REBUILDABLE = frozenset({ACTIVE, "deploy failed", "error"})
# States from which `deleted` (undeploy) is accepted.
UNDEPLOYABLE = frozenset({ACTIVE, "deploy failed", "error", "wait call-back", "rescue",
                          "rescue failed", "rescue wait", "service failed"})
# States undeploy leaves as they are (nothing deployed).
NOT_DEPLOYED = frozenset({AVAILABLE, MANAGEABLE, ENROLL})
# States Ironic lets a node be deleted from.
DELETABLE = frozenset({ENROLL, MANAGEABLE, AVAILABLE, "adopt failed", "inspect failed",
                       "clean failed"})

# States from which `nodes clean` (Ironic's manual cleaning) starts: it runs from
# manageable, so an available node is managed first and a clean failed one too.
CLEANABLE = frozenset({AVAILABLE, MANAGEABLE, "clean failed"})
CLEAN_FAILED = "clean failed"

# States from which `nodes inspect` starts: Ironic inspects from manageable (an available
# node is managed first and provided again after; a failed inspection is managed again).
INSPECTABLE = frozenset({AVAILABLE, MANAGEABLE, "inspect failed"})
INSPECT_FAILED = "inspect failed"

# Ironic's cleaning: automated (provide, undeploy: it ends available) or manual (`nodes
# clean`: it ends manageable); the node's target_provision_state says which.
CLEANING = frozenset({"cleaning", "clean wait"})

# Transitions an interrupted run may leave in flight, and the state each one ends in
# (cleaning: the automated one's; `settles_to` reads the node's own target).
# A resumed run waits for them: the verbs refuse a node in the middle of a transition.
IN_FLIGHT: dict[str, str] = {"verifying": MANAGEABLE, "deploying": ACTIVE,
                             "wait call-back": ACTIVE, "deleting": AVAILABLE,
                             **{state: AVAILABLE for state in CLEANING}}


def settles_to(node: Any) -> str | None:
    """Where the transition `node` is in ends (None: it is in none): its target as Ironic
    holds it (a manual cleaning ends manageable, an automated one available), else
    IN_FLIGHT's."""
    if node.provision_state not in IN_FLIGHT:
        return None
    target = getattr(node, "target_provision_state", None)
    return target if target in (MANAGEABLE, AVAILABLE, ACTIVE) else IN_FLIGHT[node.provision_state]


# The way on from the failed states a verb can leave a node in: every row of a failed node
# in one of them says it (k1prov.ironic_actions.refresh_rows), whichever verb got it there
# (clean failed: a provide or an undeploy with automated cleaning, or `nodes clean`).
WAY_ON: dict[str, str] = {
    CLEAN_FAILED: ("the node is left in clean failed: fix the cause, then run `k1prov nodes clean` "
                   "again (or `k1prov nodes enroll`: manage and provide, which cleans it again)"),
    INSPECT_FAILED: ("the node is left in inspect failed: fix the cause, then run `k1prov nodes "
                     "inspect` again (or `k1prov nodes enroll` to take it back to available)"),
}


def with_way_on(error: str | None, state: str | None) -> str | None:
    """`error` with the way on from `state` (once), or as it was for any other state."""
    way = WAY_ON.get(state or "")
    if way is None or (error and way in error):
        return error
    return f"{error}; {way}" if error else way


def in_flight_to(target: str) -> frozenset[str]:
    """The in-flight states that end in `target` (deploy: a deploy an earlier run fired and
    a real agent may still be writing; a re-run waits for it instead of firing it again)."""
    return frozenset(state for state, end in IN_FLIGHT.items() if end == target)


# Provision states that show Ironic took an action (it may have, even when the request failed).
ACTION_TAKEN: dict[str, frozenset[str]] = {
    "manage": frozenset({"verifying", MANAGEABLE}),
    "provide": frozenset({"cleaning", "clean wait", AVAILABLE}),
    ACTIVE: frozenset({"deploying", "wait call-back", "deploy wait"}),
    "rebuild": frozenset({"deploying", "wait call-back", "deploy wait"}),
    "deleted": frozenset({"deleting", "cleaning", "clean wait"}),
    "clean": frozenset({"cleaning", "clean wait"}),
    "inspect": frozenset({"inspecting", "inspect wait"}),
    "abort": frozenset({"inspect failed"}),
}


# How Ironic's last_error says the BMC did not answer (or refused) an IPMI command:
# IPMIFailure ("IPMI call failed: power status."), which a failed BMC check in manage wraps
# as "Failed to get power state for node …", a failed power action in a deploy as its own;
# and an ipmitool run that outlived Ironic's own limit, which a deploy step reports as
# "… failed with TimeoutExpired: Command '('ipmitool', …)' timed out" (seen through a BMC
# that drops answers, test_lab_faults.py).
_BMC_FAILURES = ("IPMI call failed", "Failed to get power state", "TimeoutExpired: Command '('ipmitool'")


def bmc_did_not_answer(last_error: str | None) -> bool:
    """Whether Ironic's `last_error` is its BMC not answering an IPMI command (a wrong
    password reads the same: ipmitool's own message stays in the conductor's log)."""
    return bool(last_error) and any(text in last_error for text in _BMC_FAILURES)


def reached(node: Any, state: str, *, abort_on_failed_state: bool = True) -> bool | None:
    """True: `node` is in `state`; False: it failed on the way; None: not yet.

    The rules of openstacksdk's Node._check_state_reached (not called: it is private
    and raises instead of answering)."""
    current = node.provision_state
    if current == state or (state == AVAILABLE and current is None):
        return True
    if not abort_on_failed_state or current is None:
        return None
    if current.endswith(" failed") or current == "error":
        return False
    if state == MANAGEABLE and current == ENROLL and node.last_error:
        return False
    return None


# ---------------------------------------------------------------- the dry run's plan


def enroll_plan(state: str | None) -> tuple[list[str], str]:
    """What enroll does to a node in provision `state` (None: not in Ironic), from the
    state sets enroll itself uses, and the state it leaves the node in."""
    steps = []
    if state is None:
        steps.append("create in Ironic")
        state = ENROLL
    if state in NEEDS_MANAGE:
        steps.append("manage")
        state = MANAGEABLE
    if state in PROVIDABLE:
        steps.append("provide")
        state = AVAILABLE
    return steps, state


def deploy_plan(state: str) -> list[str]:
    """What deploy does to a node in provision `state`, from the state sets deploy uses."""
    if state == ACTIVE:
        return []
    if state in DEPLOYABLE:
        return ["deploy"]
    return [f"deploy refused: node is {state}; deploy needs available"]


def ironic_plan(state: str | None) -> tuple[list[str], str]:
    """What `cluster up` does in Ironic to a node in provision `state` (None: not enrolled)
    and the state it leaves the node in: the same sets as the real run (IN_FLIGHT, then
    enroll's NEEDS_MANAGE/PROVIDABLE, then deploy's DEPLOYABLE), so the dry run cannot
    drift from it."""
    steps = []
    if state in IN_FLIGHT:
        steps.append(f"wait for {IN_FLIGHT[state]} (an earlier run's {state})")
        state = IN_FLIGHT[state]
    enrolling, state = enroll_plan(state)
    deploying = deploy_plan(state)
    if deploying == ["deploy"]:
        state = ACTIVE
    return steps + enrolling + deploying, state
