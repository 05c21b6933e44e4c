"""Ironic through openstacksdk: find-or-create nodes and ports, state transitions, waits
that poll a phase's nodes with list calls.

Every SDK exception is translated here into a k1prov error or a per-node failure.
What k1prov owns is marked on the node itself (`extra.k1prov_cluster`), so a re-run
or a teardown needs no local state (metalsmith records its ports the same way).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from k1prov.cloud import describe_http_error, refusal, translate
from k1prov.errors import CloudError, NodeError
from k1prov.inventory.model import OWNER_TAG, Node
from k1prov.ironic_states import ACTION_TAKEN, DELETABLE, reached
from k1prov.settings import IRONIC_LIST_PAGE, IRONIC_POLL_COST_RATIO, IRONIC_POLL_INTERVAL

log = logging.getLogger("k1prov.ironic")

# Keys k1prov writes into node.extra / port.extra.
EXTRA_CLUSTER = "k1prov_cluster"
EXTRA_BMC_FINGERPRINT = "k1prov_bmc_fp"
EXTRA_OWNER = "k1prov_owner"

# driver_info keys that hold the BMC's address and login, for the ipmi family.
IPMI_KEYS = ("ipmi_address", "ipmi_port", "ipmi_username")
REDFISH = "redfish"
# The redfish hardware type's power and management: set explicitly (an inventory may still
# name others) so that a node never depends on the order of Ironic's enabled interfaces.
# Boot stays Ironic's default or the inventory's (pxe, ipxe, or redfish-virtual-media, which
# the inventory allows on redfish nodes only).
REDFISH_INTERFACES = {"power": "redfish", "management": "redfish"}
# The driver_info key families k1prov writes (one per hardware type it knows).
BMC_KEY_PREFIXES = ("ipmi_", "redfish_")
# driver_info keys k1prov writes only when the inventory sets them.
OPTIONAL_BMC_KEYS = ("redfish_system_id",)
# driver_info keys of the deploy kernel and ramdisk (the inventory's images.deploy_*, as
# `images register` put them where Ironic fetches them): not part of the BMC login.
DEPLOY_IMAGE_KEYS = ("deploy_kernel", "deploy_ramdisk")
# HTTP statuses openstacksdk retries by itself on k1prov's Ironic requests: 409 (the node
# is locked by an action that ends in a moment). The SDK's own list
# (baremetal.v1._common.RETRIABLE_STATUS_CODES) also has 503, which Ironic answers when
# its conductors have no free worker: that is load, not a node problem, and k1prov wants
# to see it, so it reaches the fan-out engine as a transient failure; the climber then
# lowers the concurrency and the engine tries the node again (issue 22).
SDK_RETRIED_STATUS_CODES = (409,)
# The first Ironic API version with GET /v1/nodes/<id>/inventory (inspection data).
INVENTORY_API = "1.81"
BUSY = 503
# Ironic's API could not reach the conductor that owns the node over JSON-RPC (the conductor
# died or restarts): a 500 carrying keystoneauth's ConnectFailure text. Ironic moves the
# node to a live conductor of its group after [conductor]heartbeat_timeout (60 s by
# default), so this too is temporary: the engine tries the node again (its backoff spans
# that), instead of failing a node that a re-run would have deployed.
CONDUCTOR_UNREACHABLE = "Unable to establish connection to"
# What a wait reads of each node (Ironic's field names).
WAIT_FIELDS = ("uuid", "provision_state", "last_error")


class WaitResult(NamedTuple):
    """openstacksdk's WaitResult: nodes (id, provision_state, last_error) that reached the
    state, that failed, and that were still on their way at the deadline."""

    success: list[Any]
    failure: list[Any]
    timeout: list[Any]


@dataclass(frozen=True)
class _Gone:
    """A node that disappeared from Ironic during a wait."""

    id: str
    provision_state: str | None = None
    last_error: str = "the node no longer exists in Ironic"


def busy(exc: BaseException) -> bool:
    """Ironic answered 503 (no free conductor worker, or another temporary failure), or
    500 because the node's conductor is unreachable (CONDUCTOR_UNREACHABLE)."""
    status = getattr(exc, "status_code", None)
    return status == BUSY or (status == 500 and CONDUCTOR_UNREACHABLE in describe_http_error(exc))


def bmc_fingerprint(cluster: str, node_name: str, password: str) -> str:
    """A keyed digest of the BMC password: tells a changed password from an unchanged one.

    Ironic masks driver_info passwords on read, so without this a re-run could not
    know whether to send the password again. Keyed by cluster and node so equal
    passwords on two nodes give different digests.
    """
    key = f"k1prov:{cluster}:{node_name}".encode()
    return hmac.new(key, password.encode(), hashlib.sha256).hexdigest()[:24]


@dataclass
class Desired:
    """What the inventory says the Ironic node should be."""

    attrs: dict[str, Any]
    driver_info: dict[str, Any]
    password: str
    fingerprint: str
    macs: tuple[str, ...]


def desired_for(node: Node, cluster: str) -> Desired:
    password = node.bmc.password.reveal()
    props = dict(node.properties)
    if node.capabilities:
        props["capabilities"] = ",".join(f"{k}:{v}" for k, v in sorted(node.capabilities.items()))
    attrs: dict[str, Any] = {
        "driver": node.driver,
        "properties": props,
        "resource_class": node.resource_class,
        "conductor_group": node.conductor_group or "",
    }
    # Only when set: below API 1.82 (the default version) Ironic knows no shard field.
    if node.shard:
        attrs["shard"] = node.shard
    interfaces = dict(REDFISH_INTERFACES) if node.driver == REDFISH else {}
    interfaces.update(node.interfaces)
    for iface, impl in sorted(interfaces.items()):
        attrs[f"{iface}_interface"] = impl
    return Desired(attrs=attrs, driver_info=driver_info_for(node), password=password,
                   fingerprint=bmc_fingerprint(cluster, node.name, password), macs=node.macs)


def driver_info_for(node: Node) -> dict[str, Any]:
    """The BMC's address and user in Ironic's driver_info keys for the node's hardware
    type; the password (password_key) is sent apart, only when it changed."""
    bmc = node.bmc
    if node.driver == REDFISH:
        info: dict[str, Any] = {"redfish_address": bmc.url, "redfish_username": bmc.username,
                                "redfish_verify_ca": bmc.verify}
        if bmc.system_id is not None:
            info["redfish_system_id"] = bmc.system_id
        return info
    return {"ipmi_address": bmc.address, "ipmi_port": bmc.port, "ipmi_username": bmc.username}


def password_key(node: Node) -> str:
    return "redfish_password" if node.driver == REDFISH else "ipmi_password"


@dataclass
class EnsureResult:
    uuid: str
    provision_state: str
    created: bool = False
    changes: list[str] = field(default_factory=list)
    ports_created: int = 0
    ports_deleted: int = 0
    # The node's ports after the sync (its own, inspection's and any other): none means
    # Ironic cannot boot it by PXE yet (a node enrolled without MACs, not yet inspected).
    ports: int = 0


def _same(current: Any, wanted: Any) -> bool:
    # Ironic returns ports as strings in driver_info when they were given as strings, and
    # None/"" for an unset conductor group; compare the way an operator would.
    if wanted in (None, "") and current in (None, ""):
        return True
    return str(current) == str(wanted) if not isinstance(wanted, dict) else current == wanted


def _ironic_error(exc: BaseException, what: str) -> CloudError:
    """A failed Ironic call as one line. Ironic not answering at all (down, killed,
    restarting under a run that was waiting for it) is named with its URL, the way every
    verb's first call names it (k1prov.cloud.translate), not as the SDK's discovery text."""
    from openstack import exceptions as os_exc

    refused = refusal(exc, service="Ironic")     # 401/403: what it refused, in one line
    if refused is not None:
        return refused
    # An HTTP answer (503, 409 after the SDK's retries) is Ironic answering: its own text.
    unreachable = None if isinstance(exc, os_exc.HttpException) else translate(exc, None, service="Ironic")
    if unreachable is not None and unreachable.transient:
        return CloudError(f"{unreachable} ({what})", service="ironic", transient=True)
    return CloudError(f"{what}: {describe_http_error(exc)}", service="ironic")


class IronicNodes:
    """Nodes and ports of one cluster in one Ironic.

    `sleep` and `clock` are the waits' (tests give a fake clock); `page` is the number of
    nodes Ironic returns per page of a listing (its [api]max_limit), which tells the
    waits what a listing costs.
    """

    poll_interval = IRONIC_POLL_INTERVAL

    def __init__(self, conn, *, cluster: str, page: int = IRONIC_LIST_PAGE,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.conn = conn
        conn.baremetal.retriable_status_codes = list(SDK_RETRIED_STATUS_CODES)
        self.cluster = cluster
        self.page = page
        self._sleep = sleep
        self._clock = clock

    # ---- reading -------------------------------------------------------------------

    def by_name(self) -> dict[str, Any]:
        """Every named Ironic node (any owner), by name, in one list call.

        Verbs look nodes up here once instead of one find_node per node: openstacksdk's
        find_node falls back to listing every node when the name is not a UUID, so per-node
        lookups cost O(N) each and O(N^2) for a rack (seen: 80 s of 153 s to enroll 300).
        """
        from openstack import exceptions as os_exc

        try:
            return {n.name: n for n in self.conn.baremetal.nodes(details=True) if n.name}
        except os_exc.SDKException as exc:
            # Usually a verb's first call: wrong credentials are said here, in one line.
            raise _ironic_error(exc, "listing nodes") from None

    def owned(self, ironic_node) -> bool:
        return (ironic_node.extra or {}).get(EXTRA_CLUSTER) == self.cluster

    def _check_owned(self, name: str, ironic_node) -> None:
        owner = (ironic_node.extra or {}).get(EXTRA_CLUSTER)
        if owner != self.cluster:
            whose = f"cluster {owner!r}" if owner else "not k1prov's"
            raise NodeError(name, f"an Ironic node with this name exists and is {whose}; "
                                  f"k1prov leaves it alone (rename or delete it)")

    def own_nodes(self) -> dict[str, Any]:
        """Every node of this cluster, by name, in one list call."""
        return {name: n for name, n in self.by_name().items() if self.owned(n)}

    # ---- find-or-create ------------------------------------------------------------

    def login_changes(self, node: Node, current: Any) -> bool:
        """Whether bringing `current` in line changes the BMC login Ironic holds (address,
        port, user or password): what k1prov tries against the BMC before it sends it."""
        want = desired_for(node, self.cluster)
        info = current.driver_info or {}
        return ((current.extra or {}).get(EXTRA_BMC_FINGERPRINT) != want.fingerprint
                or any(not _same(info.get(k), v) for k, v in want.driver_info.items()))

    def ensure(self, node: Node, current: Any | None,
               deploy_images: dict[str, str] | None = None) -> EnsureResult:
        """Create the node and its ports, or bring `current` (the Ironic node of that name,
        from by_name(); None: there is none) in line. Idempotent.

        `deploy_images`: driver_info deploy_kernel/deploy_ramdisk -> ref (Glance id or URL),
        written with the rest, so that the node has them before k1prov's `provide`: with
        automated cleaning, provide boots the deploy ramdisk (issue 21)."""
        from openstack import exceptions as os_exc

        want = desired_for(node, self.cluster)
        deploy_images = deploy_images or {}
        try:
            if current is None:
                result = self._create(node, want, deploy_images)
            else:
                self._check_owned(node.name, current)
                result = self._update(node, current, want, deploy_images)
            created, deleted, ports = self._sync_ports(node, result.uuid, want.macs,
                                                       new_node=result.created)
        except os_exc.SDKException as exc:
            raise NodeError(node.name, describe_http_error(exc), transient=busy(exc)) from None
        result.ports_created, result.ports_deleted, result.ports = created, deleted, ports
        return result

    def _create(self, node: Node, want: Desired, deploy_images: dict[str, str]) -> EnsureResult:
        attrs = {k: v for k, v in want.attrs.items() if v not in (None, "")}
        driver_info = {**want.driver_info, **deploy_images, password_key(node): want.password}
        created = self.conn.baremetal.create_node(
            name=node.name, driver_info=driver_info,
            extra={EXTRA_CLUSTER: self.cluster, EXTRA_OWNER: OWNER_TAG,
                   EXTRA_BMC_FINGERPRINT: want.fingerprint},
            **attrs)
        log.info("created node %s (%s)", node.name, created.id)
        return EnsureResult(uuid=created.id, provision_state=created.provision_state or "enroll",
                            created=True)

    def _update(self, node: Node, current, want: Desired, deploy_images: dict[str, str]) -> EnsureResult:
        patch: list[dict[str, Any]] = []
        changes: list[str] = []
        for attr, value in want.attrs.items():
            have = getattr(current, attr, None)
            if attr == "properties":
                for key, val in value.items():
                    if (have or {}).get(key) != val:
                        patch.append({"op": "add", "path": f"/properties/{key}", "value": val})
                        changes.append(f"properties.{key}")
            elif not _same(have, value):
                if value in (None, "") and attr != "conductor_group":
                    patch.append({"op": "remove", "path": f"/{attr}"})
                else:
                    patch.append({"op": "replace", "path": f"/{attr}", "value": value})
                changes.append(attr)
        info = current.driver_info or {}
        for key, value in {**want.driver_info, **deploy_images}.items():
            if not _same(info.get(key), value):
                patch.append({"op": "add", "path": f"/driver_info/{key}", "value": value})
                changes.append(f"driver_info.{key}")
        # A node moved to another hardware type keeps no login of the old one (Ironic
        # would hold a BMC password nobody maintains) and gets the password anew.
        # An optional key the inventory no longer sets (a redfish_system_id taken out: the
        # BMC's only system from now on) goes too, or Ironic would keep using it.
        own_prefix = password_key(node).split("_")[0] + "_"
        for key in sorted(info):
            if ((key.startswith(BMC_KEY_PREFIXES) and not key.startswith(own_prefix))
                    or (key in OPTIONAL_BMC_KEYS and key not in want.driver_info)):
                patch.append({"op": "remove", "path": f"/driver_info/{key}"})
                changes.append(f"driver_info.{key} removed")
        if ((current.extra or {}).get(EXTRA_BMC_FINGERPRINT) != want.fingerprint
                or getattr(current, "driver", node.driver) != node.driver):
            key = password_key(node)
            patch.append({"op": "add", "path": f"/driver_info/{key}", "value": want.password})
            patch.append({"op": "add", "path": f"/extra/{EXTRA_BMC_FINGERPRINT}",
                          "value": want.fingerprint})
            changes.append(f"driver_info.{key}")
        if patch:
            self.conn.baremetal.patch_node(current, patch)
            log.info("updated node %s: %s", node.name, ", ".join(changes))
        return EnsureResult(uuid=current.id, provision_state=current.provision_state,
                            changes=changes)

    def _sync_ports(self, node: Node, uuid: str, macs: tuple[str, ...], *,
                    new_node: bool) -> tuple[int, int, int]:
        """Ports by MAC: create the missing ones, delete k1prov's ports no longer listed
        (never one inspection made: it has no cluster tag). Returns (created, deleted,
        ports the node has now). A node created a moment ago has no ports: no need to ask."""
        from openstack import exceptions as os_exc

        existing = {} if new_node else {
            p.address.lower(): p for p in self.conn.baremetal.ports(node_uuid=uuid, details=True)}
        created = deleted = 0
        for mac in macs:
            if mac in existing:
                continue
            try:
                self.conn.baremetal.create_port(node_uuid=uuid, address=mac,
                                                extra={EXTRA_CLUSTER: self.cluster})
            except os_exc.ConflictException:
                raise NodeError(node.name, f"MAC {mac} is already registered to another Ironic node") from None
            created += 1
        for mac, port in existing.items():
            if mac not in macs and (port.extra or {}).get(EXTRA_CLUSTER) == self.cluster:
                self.conn.baremetal.delete_port(port, ignore_missing=True)
                deleted += 1
        return created, deleted, len(existing) + created - deleted

    def port_macs(self, name: str, uuid: str) -> list[str]:
        """The MACs of the node's ports, sorted (inspection's as well as k1prov's)."""
        from openstack import exceptions as os_exc

        try:
            return sorted(p.address.lower() for p in self.conn.baremetal.ports(node_uuid=uuid, details=True))
        except os_exc.SDKException as exc:
            raise NodeError(name, f"listing its ports: {describe_http_error(exc)}", transient=busy(exc)) from None

    # ---- state transitions ---------------------------------------------------------

    def start_action(self, uuid: str, action: str, *, config_drive: Any = None,
                     clean_steps: list[dict[str, Any]] | None = None) -> None:
        """Ask Ironic for a provision action and return at once (waits are batched).

        A provision action is not idempotent, so a failed request is never simply sent
        again: under load Ironic's API can take longer than the client waits (68 s for one
        `manage` was seen in the lab) and still carry the action out. After any failure the
        node is read back, and an action Ironic has taken counts as started.

        The request is the one openstacksdk's set_node_provision_state sends (PUT
        .../states/provision, the connection's microversion, 409 and 503 retried), without
        the GET of the whole node the SDK sends after it: nothing reads that node, and it
        was one request per node per action.
        """
        from openstack import exceptions as os_exc

        body: dict[str, Any] = {"target": action}
        if config_drive is not None:
            body["configdrive"] = config_drive   # Ironic's spelling
        if clean_steps is not None:
            body["clean_steps"] = clean_steps
        try:
            response = self.conn.baremetal.put(f"/nodes/{uuid}/states/provision", json=body,
                                               retriable_status_codes=SDK_RETRIED_STATUS_CODES)
            os_exc.raise_from_response(
                response, error_message=f"Failed to set provision state for bare metal node "
                                        f"{uuid} to {action}")
        except Exception as exc:  # SDK, keystoneauth (timeouts) and socket errors alike
            reason, transient = describe_http_error(exc), busy(exc)
            try:
                node = self.conn.baremetal.get_node(uuid)
            except Exception:
                raise NodeError(uuid, f"{action}: {reason}", transient=transient) from None
            if node.provision_state in ACTION_TAKEN.get(action, ()):
                log.info("%s: %s answered %s, but Ironic took the action (node is %s)",
                         uuid, action, reason, node.provision_state)
                return
            raise NodeError(uuid, f"{action}: {reason}", transient=transient) from None

    def power_on(self, name: str, uuid: str, *, timeout: float) -> None:
        """Power the node on through Ironic and wait until Ironic reads it on. The
        conductor asks the BMC first: a node that is on already is left as it is (one
        power read), one that lost power is powered on. Ironic's own record of the power
        may be stale (its power sync off or not due yet), so the BMC is what counts."""
        from openstack import exceptions as os_exc

        try:
            self.conn.baremetal.set_node_power_state(uuid, "power on", wait=True, timeout=timeout)
        except os_exc.ResourceTimeout:
            raise NodeError(name, f"power on: Ironic does not read the node on after {timeout:.0f} s "
                                  f"(the power timeout)") from None
        except os_exc.SDKException as exc:
            raise NodeError(name, f"power on: {describe_http_error(exc)}") from None

    def patch(self, name: str, uuid: str, patch: list[dict[str, Any]]) -> None:
        """A JSON patch of the node's fields (instance_info, driver_info, ...)."""
        from openstack import exceptions as os_exc

        try:
            self.conn.baremetal.patch_node(uuid, patch)
        except os_exc.SDKException as exc:
            raise NodeError(name, f"update: {describe_http_error(exc)}", transient=busy(exc)) from None

    def wait_for_provision_state(self, uuids: list[str], state: str, *, timeout: float,
                                 abort_on_failed_state: bool = True) -> WaitResult:
        """Wait until every node in `uuids` is in provision `state`: openstacksdk's
        `wait_for_nodes_provision_state(..., fail=False)` with list calls.

        The SDK's wait sends one GET /v1/nodes/<id> per node per poll (N requests every
        2 s). This one lists the nodes instead, with only the fields it reads, paged by
        Ironic (IRONIC_LIST_PAGE nodes a page), so a poll costs one request per page of
        the nodes in Ironic whatever the number of nodes waited for. When fewer nodes are left than a listing costs
        pages (a few stragglers in a large Ironic), it asks for those alone, each with
        the same fields. So a poll costs min(nodes left, pages) requests.

        Ironic cannot filter a listing by a set of UUIDs or by `extra` (where k1prov marks
        its nodes), and one provision_state per query would miss nodes that leave the
        expected path; so the listing is not filtered by state, only by fields.

        Same semantics as the SDK: polled every IRONIC_POLL_INTERVAL (the SDK's 2 s), or
        IRONIC_POLL_COST_RATIO times what the last look took when that is longer; a
        node is done when it reaches `state` (for `available`, a node with no state, as
        before API 1.2); with abort_on_failed_state a node fails on `* failed`, `error`,
        or, waiting for `manageable`, on `enroll` with a last_error (the BMC check
        failed); the others after `timeout` seconds are in `timeout`. Requests go through
        the SDK's proxy, so its retries of 409 (node locked) and 503 (no free conductor)
        apply to each. A node that no longer exists is a failure (the SDK's wait raises
        for it, and stops waiting for all the others). One difference: the wait polls
        once more at its deadline, so a node that got there in the last interval counts.
        """
        from openstack import exceptions as os_exc
        from keystoneauth1 import exceptions as ka_exc

        if not uuids:
            return WaitResult([], [], [])
        remaining = list(dict.fromkeys(uuids))
        success: list[Any] = []
        failure: list[Any] = []
        last: dict[str, Any] = {}
        pages = 1          # what a full listing cost last time, in requests
        deadline = self._clock() + timeout
        while True:
            looked_at = self._clock()
            try:
                if len(remaining) < pages:
                    seen = {u: self._get_fields(u) for u in remaining}
                else:
                    seen, pages = self._list_fields()
            except (os_exc.SDKException, ka_exc.ClientException) as exc:
                if not busy(exc) or self._clock() >= deadline:
                    raise _ironic_error(exc, f"waiting for {state}") from None
                # A busy Ironic: this look is skipped, the next one is a poll later.
                log.info("waiting for %s: Ironic is busy (%s); looking again", state,
                         describe_http_error(exc))
                self._sleep(min(self.poll_interval, max(0.0, deadline - self._clock())))
                continue
            still = []
            for uuid in remaining:
                node = seen.get(uuid)
                if node is None:
                    failure.append(_Gone(uuid))
                    continue
                last[uuid] = node
                verdict = reached(node, state, abort_on_failed_state=abort_on_failed_state)
                if verdict is True:
                    success.append(node)
                elif verdict is False:
                    failure.append(node)
                else:
                    still.append(uuid)
            remaining = still
            now = self._clock()
            if not remaining or now >= deadline:
                return WaitResult(success, failure, [last[u] for u in remaining])
            log.debug("waiting for %d node(s) to reach %s", len(remaining), state)
            # A slow look is not repeated at once: see IRONIC_POLL_COST_RATIO.
            pause = max(self.poll_interval, IRONIC_POLL_COST_RATIO * (now - looked_at))
            self._sleep(min(pause, deadline - now))

    def _list_fields(self) -> tuple[dict[str, Any], int]:
        """Every node's WAIT_FIELDS. Returns the nodes by UUID and the pages it took.

        Ironic pages the listing itself ([api]max_limit nodes a page, `next` link when a
        page is full) and the SDK follows the links. No `limit` is sent: with one, the
        SDK asks for one more page after every page, even a short last one."""
        seen = {n.id: n for n in self.conn.baremetal.nodes(details=False, fields=list(WAIT_FIELDS))}
        return seen, len(seen) // self.page + 1

    def _get_fields(self, uuid: str) -> Any | None:
        from openstack import exceptions as os_exc

        try:
            return self.conn.baremetal.get_node(uuid, fields=list(WAIT_FIELDS))
        except os_exc.NotFoundException:
            return None

    def wait_state(self, uuids: list[str], state: str, *, timeout: float) -> dict[str, tuple[str, str | None]]:
        """One wait for many nodes (wait_for_provision_state). Returns uuid ->
        (outcome, last_error): outcome is "ok", "failed" (the node reached a failure
        state; for manage, back in enroll) or "timeout"."""
        res = self.wait_for_provision_state(uuids, state, timeout=timeout)
        out: dict[str, tuple[str, str | None]] = {}
        for n in res.success:
            out[n.id] = ("ok", None)
        for n in res.failure:
            out[n.id] = ("failed", n.last_error or f"reached {n.provision_state}")
        for n in res.timeout:
            out[n.id] = ("timeout", f"not {state} after {timeout:.0f} s")
        return out

    def inventory(self, name: str, uuid: str) -> dict[str, Any] | None:
        """The hardware inventory the agent sent at the node's last inspection (GET
        /v1/nodes/<id>/inventory, API 1.81), or None when it has never been inspected."""
        from openstack import exceptions as os_exc

        try:
            response = self.conn.baremetal.get(f"/nodes/{uuid}/inventory", microversion=INVENTORY_API,
                                               retriable_status_codes=SDK_RETRIED_STATUS_CODES)
            if response.status_code == 404:
                return None
            os_exc.raise_from_response(response, error_message=f"reading {name}'s inventory")
        except os_exc.SDKException as exc:
            raise NodeError(name, f"reading the inventory: {describe_http_error(exc)}",
                            transient=busy(exc)) from None
        return response.json()

    def get(self, uuid: str):
        from openstack import exceptions as os_exc

        try:
            return self.conn.baremetal.get_node(uuid)
        except os_exc.SDKException as exc:
            raise CloudError(f"reading node {uuid}: {describe_http_error(exc)}", service="ironic") from None

    # ---- deletion ------------------------------------------------------------------

    def delete(self, name: str, current: Any | None) -> bool:
        """Delete `current` (the Ironic node called `name`, from by_name()) if it is this
        cluster's. False when there was none."""
        from openstack import exceptions as os_exc

        if current is None:
            return False
        self._check_owned(name, current)
        if current.provision_state not in DELETABLE:
            raise NodeError(name, f"node is {current.provision_state}; undeploy it first "
                                  f"(k1prov undeploy) before deleting")
        try:
            self.conn.baremetal.delete_node(current, ignore_missing=True)
        except os_exc.SDKException as exc:
            raise NodeError(name, f"delete: {describe_http_error(exc)}", transient=busy(exc)) from None
        log.info("deleted node %s", name)
        return True
