"""A recording stand-in for the openstacksdk connection (`conn.baremetal`), the way
metalsmith tests its provisioner against a mocked connection: every call is recorded,
nodes move through provision states the way Ironic moves them, and a test can make a
call fail (HTTP 409/503, a timed-out action, a node that never reaches its state).

    conn = RecordingConnection(cluster="unit")
    conn.baremetal.add("n1", provision_state="available")
    monkeypatch.setattr("k1prov.context.connect", lambda cloud, api_timeout: conn)
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from openstack import exceptions as os_exc

from k1prov.ironic import EXTRA_CLUSTER

# Where each provision action takes a node in the stand-in (no intermediate states: the
# wait's first listing sees the end state).
ACTION_RESULT = {"manage": "manageable", "provide": "available", "active": "active",
                 "rebuild": "active", "deleted": "available", "clean": "manageable",
                 "inspect": "manageable", "abort": "inspect failed"}
# Where a node that never reaches its state stays (default: where it was).
ACTION_IN_FLIGHT = {"inspect": "inspect wait"}
# The failure state each action ends in when a test makes it fail.
ACTION_FAILURE = {"manage": "enroll", "provide": "clean failed", "active": "deploy failed",
                  "rebuild": "deploy failed", "deleted": "error", "clean": "clean failed",
                  "inspect": "inspect failed"}


def http_error(status: int, message: str = "") -> os_exc.HttpException:
    """The SDK exception for an HTTP status (409: ConflictException, like the SDK raises)."""
    cls = os_exc.ConflictException if status == 409 else os_exc.HttpException
    return cls(message=message or f"HTTP {status}", http_status=status)


@dataclass
class StandinNode:
    id: str
    name: str
    provision_state: str = "enroll"
    power_state: str | None = "power off"
    last_error: str | None = None
    is_maintenance: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    driver_info: dict[str, Any] = field(default_factory=dict)
    instance_info: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    conductor_group: str | None = None
    shard: str | None = None
    inspect_interface: str | None = "agent"
    target_provision_state: str | None = None


class RecordingBaremetal:
    def __init__(self, cluster: str):
        self.cluster = cluster
        self.by_id: dict[str, StandinNode] = {}
        self.calls: list[tuple[str, Any]] = []
        self.ports_of: dict[str, list[SimpleNamespace]] = {}      # node uuid -> its ports
        self._ids = (f"uuid-{i:04d}" for i in itertools.count(1))
        # Test knobs: what goes wrong.
        self.fail_action: dict[tuple[str, str], Exception] = {}   # (node name, action) -> raised
        self.action_takes_effect_anyway: set[tuple[str, str]] = set()  # raised, but Ironic acted
        self.action_fails: dict[tuple[str, str], str] = {}        # ends in failure, last_error
        self.action_fails_times: dict[tuple[str, str], int] = {}  # ... only the first N times
        # (node name, action) -> the failure state, where it is not ACTION_FAILURE's (an
        # undeploy whose automated cleaning fails ends in clean failed, not error).
        self.fails_into: dict[tuple[str, str], str] = {}
        self.never_reaches: set[str] = set()                      # node names that stay where they are
        self.list_errors: list[Exception] = []                    # raised by the next nodes() calls
        # node name -> raised by create_node: every time, or (a list) once each
        self.clean_steps: dict[str, list] = {}                     # node name -> steps of its clean
        self.create_errors: dict[str, Exception | list[Exception]] = {}
        self.real_power: dict[str, str] = {}                      # node name -> the BMC's power
        # node name -> the inventory an inspection stores (GET /v1/nodes/<id>/inventory)
        self.inventories: dict[str, dict[str, Any]] = {}

    # ---- test set-up -------------------------------------------------------------------

    def add(self, name: str, *, provision_state: str = "available", owner: str | None = "",
            **attrs: Any) -> StandinNode:
        extra = {} if owner is None else {EXTRA_CLUSTER: owner or self.cluster}
        node = StandinNode(id=next(self._ids), name=name, provision_state=provision_state,
                           extra=extra, **attrs)
        self.by_id[node.id] = node
        return node

    def node(self, name: str) -> StandinNode:
        return next(n for n in self.by_id.values() if n.name == name)

    def names_called(self, method: str) -> list[str]:
        """Names of the nodes `method` was called for, in call order."""
        return [self._name(args[0]) for m, args in self.calls if m == method]

    def _name(self, ref: Any) -> str:
        if isinstance(ref, StandinNode):
            return ref.name
        return self.by_id[ref].name if ref in self.by_id else str(ref)

    def _get(self, ref: Any) -> StandinNode:
        uuid = ref.id if isinstance(ref, StandinNode) else ref
        try:
            return self.by_id[uuid]
        except KeyError:
            raise os_exc.NotFoundException(message=f"node {uuid} not found", http_status=404) from None

    # ---- the SDK's baremetal proxy, as k1prov calls it --------------------------------------

    def nodes(self, details: bool = False, **filters: Any) -> list[StandinNode]:
        self.calls.append(("nodes", (filters,)))
        if self.list_errors:
            raise self.list_errors.pop(0)
        return list(self.by_id.values())

    def get_node(self, ref: Any, fields: list[str] | None = None) -> StandinNode:
        self.calls.append(("get_node", (ref,)))
        return self._get(ref)

    def create_node(self, *, name: str, driver_info: dict, extra: dict, **attrs: Any) -> StandinNode:
        self.calls.append(("create_node", (name,)))
        if name in self.create_errors:
            err = self.create_errors[name]
            if not isinstance(err, list):
                raise err
            if err:                         # a list: one per call, then creates succeed
                raise err.pop(0)
        node = StandinNode(id=next(self._ids), name=name, provision_state="enroll",
                           extra=dict(extra), driver_info=dict(driver_info))
        for attr, value in attrs.items():
            setattr(node, attr, value)
        self.by_id[node.id] = node
        return node

    def patch_node(self, ref: Any, patch: list[dict[str, Any]]) -> StandinNode:
        self.calls.append(("patch_node", (ref, patch)))
        node = self._get(ref)
        for op in patch:
            path = op["path"].strip("/").split("/")
            value = None if op["op"] == "remove" else op["value"]
            if len(path) == 1:
                setattr(node, path[0], value)
            elif op["op"] == "remove":
                getattr(node, path[0]).pop(path[1], None)
            else:
                getattr(node, path[0])[path[1]] = value
        return node

    def ports(self, *, node_uuid: str, details: bool = False) -> list:
        self.calls.append(("ports", (node_uuid,)))
        return list(self.ports_of.get(node_uuid, []))

    def create_port(self, *, node_uuid: str, address: str, extra: dict) -> SimpleNamespace:
        self.calls.append(("create_port", (node_uuid, address)))
        port = SimpleNamespace(address=address, extra=extra, node_uuid=node_uuid)
        self.ports_of.setdefault(node_uuid, []).append(port)
        return port

    def delete_port(self, port: Any, ignore_missing: bool = True) -> None:
        self.calls.append(("delete_port", (port,)))
        self.ports_of[port.node_uuid].remove(port)

    def delete_node(self, ref: Any, ignore_missing: bool = True) -> None:
        self.calls.append(("delete_node", (ref,)))
        self.by_id.pop(self._get(ref).id, None)

    def put(self, url: str, json: dict | None = None, **kwargs: Any) -> SimpleNamespace:
        """The provision request as k1prov sends it (IronicNodes.start_action): PUT
        /nodes/<id>/states/provision through the proxy; recorded as "provision"."""
        parts = url.strip("/").split("/")
        assert parts[0] == "nodes" and parts[2:] == ["states", "provision"], url
        self._provision(parts[1], json["target"])
        if "clean_steps" in json:
            self.clean_steps[self._get(parts[1]).name] = json["clean_steps"]
        return SimpleNamespace(status_code=202, headers={}, text="", content=b"")

    def get(self, url: str, **kwargs: Any) -> SimpleNamespace:
        """GET through the proxy: only a node's inspection inventory (IronicNodes.inventory)."""
        parts = url.strip("/").split("/")
        assert parts[0] == "nodes" and parts[2:] == ["inventory"], url
        self.calls.append(("inventory", (parts[1],)))
        data = self.inventories.get(self._get(parts[1]).name)
        return SimpleNamespace(status_code=200 if data else 404, headers={}, text="", content=b"",
                               json=lambda: data)

    def set_node_power_state(self, ref: Any, target: str, wait: bool = False,
                             timeout: float | None = None) -> None:
        """Ironic's power action (it reads the BMC first: a node that is on stays as it
        is); recorded as "power". `real_power` is the BMC's truth where Ironic's record lags."""
        node = self._get(ref)
        self.calls.append(("power", (node.name, target)))
        self.real_power[node.name] = node.power_state = target

    def _provision(self, ref: Any, action: str) -> None:
        self.calls.append(("provision", (ref, action)))
        node = self._get(ref)
        key = (node.name, action)
        if key in self.fail_action:
            if key in self.action_takes_effect_anyway:
                node.provision_state = ACTION_RESULT[action]
            raise self.fail_action[key]
        if key in self.action_fails and self.action_fails_times.get(key, 1) > 0:
            if key in self.action_fails_times:
                self.action_fails_times[key] -= 1
            node.provision_state = self.fails_into.get(key, ACTION_FAILURE[action])
            node.last_error = self.action_fails[key]
        elif node.name not in self.never_reaches or action == "abort":
            node.provision_state = ACTION_RESULT[action]
            if action in ("active", "rebuild"):
                node.power_state = "power on"
        else:
            node.provision_state = ACTION_IN_FLIGHT.get(action, node.provision_state)


class RecordingConnection:
    """What k1prov.cloud.connect returns, for the Ironic side."""

    def __init__(self, cluster: str):
        self.baremetal = RecordingBaremetal(cluster)


class ListingBaremetal:
    """A smaller stand-in: records the SDK calls ensure/delete make over a fixed listing of
    pre-existing nodes (test_ironic, test_noop_listing)."""

    def __init__(self, existing):
        self.calls = []
        self.existing = existing

    def nodes(self, details=False):
        self.calls.append("nodes")
        return list(self.existing)

    def create_node(self, **attrs):
        self.calls.append("create_node")
        return SimpleNamespace(id=f"uuid-{attrs['name']}", provision_state="enroll")

    def create_port(self, **attrs):
        self.calls.append("create_port")

    def ports(self, **query):
        self.calls.append("ports")
        return []

    def patch_node(self, node, patch):
        self.calls.append("patch_node")

    def delete_node(self, node, ignore_missing=True):
        self.calls.append("delete_node")

    def find_node(self, *args, **kwargs):
        raise AssertionError("find_node lists every node per call: never per node")
