"""The list-based wait (IronicNodes.wait_for_provision_state) against a recording stand-in
for the SDK connection: what it asks Ironic, how many requests a poll costs, and the
outcomes it gives (the SDK's WaitResult semantics). The 409/503 retries are checked
through a real openstacksdk connection to a loopback HTTP server."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from k1prov.errors import CloudError
from k1prov.ironic import WAIT_FIELDS, IronicNodes, WaitResult


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingIronic:
    """Stands in for `conn.baremetal`. Holds nodes (uuid -> [state, last_error]) and a
    script of changes: {time: changes}, or a list whose entry k is applied at the k-th
    poll (when the clock reaches k * 2 s). Records every
    HTTP request the SDK would send: a listing costs one request per page of Ironic's
    `max_limit` nodes (Ironic gives a `next` link when a page is full and the SDK follows
    it), a get_node one."""

    def __init__(self, nodes: dict[str, list], script: list[dict] | dict[float, dict] | None = None, *,
                 clock: "FakeClock | None" = None, max_limit: int = 1000):
        self.held = nodes
        if isinstance(script, list):
            script = {k * 2.0: changes for k, changes in enumerate(script)}
        self.script = sorted((script or {}).items())
        self.clock = clock
        self.max_limit = max_limit
        self.requests: list[tuple[str, dict]] = []
        self.poll_times: set[float] = set()
        self.fail_with: Exception | None = None

    @property
    def polls(self) -> int:
        return len(self.poll_times)

    def _request(self, what: str, query: dict) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        now = self.clock.now if self.clock else 0.0
        while self.script and self.script[0][0] <= now:
            for uuid, change in self.script.pop(0)[1].items():
                if change is None:
                    del self.held[uuid]
                else:
                    self.held[uuid] = list(change)
        self.poll_times.add(now)
        self.requests.append((what, query))

    def _node(self, uuid):
        state, error = self.held[uuid]
        return SimpleNamespace(id=uuid, provision_state=state, last_error=error)

    def nodes(self, details=False, **query):
        assert "limit" not in query       # with a limit the SDK asks for one page too many
        self._request("GET /v1/nodes", dict(query, details=details))
        uuids = sorted(self.held)
        for _ in range(len(uuids) // self.max_limit):   # further pages, after a full one
            self.requests.append(("GET /v1/nodes", dict(query, details=details)))
        return [self._node(u) for u in uuids]

    def get_node(self, uuid, fields=None):
        from openstack import exceptions as os_exc

        self._request(f"GET /v1/nodes/{uuid}", {"fields": fields})
        if uuid not in self.held:
            raise os_exc.NotFoundException("404")
        return self._node(uuid)


def ironic_with(fake: RecordingIronic, clock: FakeClock, *, page: int = 1000) -> IronicNodes:
    fake.clock = clock
    return IronicNodes(SimpleNamespace(baremetal=fake), cluster="c", page=page,
                       sleep=clock.sleep, clock=clock)


def rack(count: int, state: str, prefix: str = "n") -> dict[str, list]:
    return {f"{prefix}{i:04d}": [state, None] for i in range(count)}


def deploy_script(uuids: list[str], polls: int) -> list[dict]:
    """Nodes reach active spread over `polls` polls."""
    script: list[dict] = [{} for _ in range(polls)]
    for i, uuid in enumerate(uuids):
        script[i * polls // len(uuids)][uuid] = ("active", None)
    return script


@pytest.mark.parametrize("count", [10, 100, 300])
def test_requests_per_poll_do_not_grow_with_the_number_of_nodes(count):
    nodes = rack(count, "deploying")
    uuids = sorted(nodes)
    fake = RecordingIronic(nodes, deploy_script(uuids, 5))
    clock = FakeClock()
    res = ironic_with(fake, clock).wait_for_provision_state(uuids, "active", timeout=600)
    assert [n.id for n in res.success] == uuids and not res.failure and not res.timeout
    # Nodes still deploying at poll 1..4, the last ones arrive by poll 5: five polls, one
    # list request each, whatever the count (the SDK's wait would send count per poll).
    assert fake.polls == 5
    assert len(fake.requests) == 5
    assert clock.sleeps == [2.0] * 4


def test_a_slow_look_spaces_the_next_one_out():
    # Ironic takes 1 s to answer each listing: the next look comes IRONIC_POLL_COST_RATIO
    # times that later (4 s), not 2 s after it, so polls hold Ironic at most a fifth of
    # the time; quick looks keep the SDK's 2 s.
    from k1prov.settings import IRONIC_POLL_COST_RATIO
    clock = FakeClock()
    nodes = {"a": ["deploying", None]}
    fake = RecordingIronic(nodes, {9.0: {"a": ("active", None)}}, clock=clock)
    listing = fake.nodes

    def slow_listing(**query):
        clock.now += 1.0
        return listing(**query)

    fake.nodes = slow_listing
    res = ironic_with(fake, clock).wait_for_provision_state(["a"], "active", timeout=60)
    assert [n.id for n in res.success] == ["a"]
    assert clock.sleeps == [IRONIC_POLL_COST_RATIO * 1.0] * 2
    quick = FakeClock()
    ironic_with(RecordingIronic({"a": ["deploying", None]}, {5.0: {"a": ("active", None)}}, clock=quick),
                quick).wait_for_provision_state(["a"], "active", timeout=60)
    assert quick.sleeps == [2.0] * 3


def test_a_poll_asks_only_for_the_fields_it_reads():
    nodes = rack(3, "active")
    fake = RecordingIronic(nodes)
    ironic_with(fake, FakeClock()).wait_for_provision_state(sorted(nodes), "active", timeout=60)
    [(what, query)] = fake.requests
    assert what == "GET /v1/nodes"
    assert query == {"details": False, "fields": list(WAIT_FIELDS)}
    assert set(WAIT_FIELDS) == {"uuid", "provision_state", "last_error"}


def test_a_large_ironic_is_listed_in_pages_and_stragglers_are_asked_for_alone():
    # 2500 nodes in Ironic (most of them another cluster's), 300 of ours deploying.
    nodes = rack(2200, "active", prefix="other")
    ours = rack(300, "deploying")
    nodes.update(ours)
    uuids = sorted(ours)
    script = [{u: ("active", None) for u in uuids[:298]}, {}, {uuids[298]: ("active", None)},
              {uuids[299]: ("active", None)}]
    fake = RecordingIronic(nodes, script)
    res = ironic_with(fake, FakeClock()).wait_for_provision_state(uuids, "active", timeout=600)
    assert len(res.success) == 300
    kinds = [what for what, _ in fake.requests]
    # Poll 1: a listing of 3 pages (298 done, 2 left). Two left < 3 pages: poll 2 asks
    # for the two (none done), poll 3 for the two (one done), poll 4 for the last one.
    assert kinds[:3] == ["GET /v1/nodes"] * 3
    assert kinds[3:] == [f"GET /v1/nodes/{u}" for u in uuids[298:]] * 2 + [f"GET /v1/nodes/{uuids[299]}"]
    assert all(q == {"fields": list(WAIT_FIELDS)} for _, q in fake.requests[3:])


def test_failure_states_and_last_error_like_the_sdk():
    nodes = {"a": ["deploying", None], "b": ["deploying", None], "c": ["deploying", None]}
    script = [{}, {"a": ("deploy failed", "image checksum mismatch"), "b": ("error", None)},
              {"c": ("active", None)}]
    fake = RecordingIronic(nodes, script)
    res = ironic_with(fake, FakeClock()).wait_for_provision_state(["a", "b", "c"], "active", timeout=600)
    assert isinstance(res, WaitResult)
    assert [n.id for n in res.success] == ["c"]
    assert [(n.id, n.provision_state, n.last_error) for n in res.failure] == [
        ("a", "deploy failed", "image checksum mismatch"), ("b", "error", None)]
    assert res.timeout == []


def test_manage_fails_back_in_enroll_with_a_last_error_and_waits_without_one():
    nodes = {"a": ["verifying", None], "b": ["enroll", None]}
    script = [{}, {"a": ("enroll", "Unable to establish IPMI v2 / RMCP+ session")},
              {"b": ("manageable", None)}]
    fake = RecordingIronic(nodes, script)
    got = ironic_with(fake, FakeClock()).wait_state(["a", "b"], "manageable", timeout=300)
    assert got == {"a": ("failed", "Unable to establish IPMI v2 / RMCP+ session"), "b": ("ok", None)}


def test_no_state_counts_as_available_and_abort_off_waits_through_failures():
    fake = RecordingIronic({"a": [None, None], "b": ["clean failed", "boom"]},
                           [{}, {}, {"b": ("available", None)}])
    res = ironic_with(fake, FakeClock()).wait_for_provision_state(
        ["a", "b"], "available", timeout=60, abort_on_failed_state=False)
    assert [n.id for n in res.success] == ["a", "b"] and not res.failure


def test_timeout_is_finite_and_ends_with_a_poll_at_the_deadline():
    fake = RecordingIronic({"a": ["deploying", None], "b": ["deploying", None]},
                           {4.5: {"a": ("active", None)}})
    clock = FakeClock()
    res = ironic_with(fake, clock).wait_for_provision_state(["a", "b"], "active", timeout=5)
    # Polls at 0, 2, 4 and at the deadline (5): a reached active in that last interval.
    assert clock.sleeps == [2.0, 2.0, 1.0]
    assert [n.id for n in res.success] == ["a"]
    assert [(n.id, n.provision_state) for n in res.timeout] == [("b", "deploying")]
    got = ironic_with(RecordingIronic({"b": ["deploying", None]}), FakeClock()).wait_state(
        ["b"], "active", timeout=5)
    assert got == {"b": ("timeout", "not active after 5 s")}


def test_a_node_deleted_during_the_wait_fails_alone():
    fake = RecordingIronic({"a": ["deploying", None], "b": ["deploying", None]},
                           [{}, {"a": None, "b": ("active", None)}])
    got = ironic_with(fake, FakeClock()).wait_state(["a", "b"], "active", timeout=60)
    assert got == {"a": ("failed", "the node no longer exists in Ironic"), "b": ("ok", None)}


def test_nothing_to_wait_for_sends_nothing():
    fake = RecordingIronic({})
    assert ironic_with(fake, FakeClock()).wait_for_provision_state([], "active", timeout=1) == ([], [], [])
    assert fake.requests == []


@pytest.mark.parametrize("exc", ["sdk", "connect"])
def test_an_api_error_while_waiting_is_one_cloud_error(exc):
    from keystoneauth1 import exceptions as ka_exc
    from openstack import exceptions as os_exc

    fake = RecordingIronic({"a": ["deploying", None]})
    fake.fail_with = (os_exc.HttpException("Internal Server Error", http_status=500) if exc == "sdk"
                      else ka_exc.ConnectFailure("Unable to establish connection to http://127.0.0.1:1"))
    with pytest.raises(CloudError, match="waiting for active") as info:
        ironic_with(fake, FakeClock()).wait_for_provision_state(["a"], "active", timeout=60)
    assert info.value.service == "ironic"
    if exc == "connect":
        # Ironic gone under a waiting run (killed, restarting): the line names it and its URL.
        assert str(info.value).startswith("Ironic at http://127.0.0.1:1: "), str(info.value)
        assert str(info.value).endswith(" (waiting for active)"), str(info.value)
        assert info.value.transient


# ---- through the real SDK: 409/503 retried by its proxy, fields and paging on the wire ----

UUIDS = [f"00000000-0000-0000-0000-{i:012d}" for i in range(5)]


# Ironic's words for the refusals the stub gives.
REFUSED = {409: "Node is locked",
           503: "Requested action cannot be performed due to lack of free conductor workers."}


class StubIronic(BaseHTTPRequestHandler):
    """Answers like Ironic: version documents, and GET /v1/nodes (paged, `next` link),
    refusing the first requests with the statuses in `server.refusals`."""

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("OpenStack-API-Version", "baremetal 1.78")
        self.send_header("OpenStack-API-Minimum-Version", "baremetal 1.1")
        self.send_header("OpenStack-API-Maximum-Version", "baremetal 1.78")
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.seen.append(f"PUT {self.path} {self.headers.get('OpenStack-API-Version')}")
        srv.bodies.append(body)
        if srv.refusals:
            status = srv.refusals.pop(0)
            return self._send(status, {"error_message": json.dumps({"faultstring": REFUSED[status]})})
        if body["target"] == "bogus":
            return self._send(400, {"error_message": json.dumps(
                {"faultstring": "The requested action \"bogus\" is not valid"})})
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        srv = self.server
        srv.seen.append(self.path)
        base = f"http://127.0.0.1:{srv.server_port}"
        version = {"id": "v1", "status": "CURRENT", "version": "1.78", "min_version": "1.1",
                   "links": [{"href": f"{base}/v1/", "rel": "self"}]}
        if self.path in ("/", ""):
            return self._send(200, {"versions": [version], "default_version": version})
        if self.path.rstrip("/") == "/v1":
            return self._send(200, dict(version, version=version))
        if not self.path.startswith("/v1/nodes"):
            return self._send(404, {"error_message": "not found"})
        if srv.refusals:
            status = srv.refusals.pop(0)
            return self._send(status, {"error_message": json.dumps(
                {"faultstring": REFUSED[status]})})
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(self.path).query)
        limit = int(query.get("limit", [srv.max_limit])[0])
        marker = query.get("marker", [None])[0]
        start = UUIDS.index(marker) + 1 if marker else 0
        page = UUIDS[start:start + limit]
        body = {"nodes": [{"uuid": u, "provision_state": "active", "last_error": None} for u in page]}
        if len(page) == limit:     # Ironic's next link: the query, limit and marker
            body["next"] = f"{base}/v1/nodes?fields={query['fields'][0]}&limit={limit}&marker={page[-1]}"
        self._send(200, body)


@pytest.fixture
def stub_ironic():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), StubIronic)
    srv.seen, srv.refusals, srv.max_limit, srv.bodies = [], [], 2, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def sdk_connection(port: int):
    import openstack

    return openstack.connect(auth_type="none", load_yaml_config=False, load_envvars=False,
                             api_timeout=10, baremetal_endpoint_override=f"http://127.0.0.1:{port}",
                             baremetal_api_version="1.78")


def test_a_409_is_retried_by_the_sdk_a_503_skips_a_poll_and_pages_follow_next_links(stub_ironic):
    stub_ironic.refusals = [409, 503]
    sleeps: list[float] = []
    ironic = IronicNodes(sdk_connection(stub_ironic.server_port), cluster="c", page=stub_ironic.max_limit,
                         sleep=sleeps.append)
    res = ironic.wait_for_provision_state(UUIDS, "active", timeout=30)
    assert sorted(n.id for n in res.success) == UUIDS and not res.failure and not res.timeout
    lists = [p for p in stub_ironic.seen if p.startswith("/v1/nodes")]
    # The 409 retried by the SDK's proxy; the 503 (Ironic busy) costs one poll interval,
    # not the wait; then 3 pages of 2 (the last one short).
    assert len(lists) == 2 + 3
    assert sleeps == [IronicNodes.poll_interval]
    assert all("fields=uuid%2Cprovision_state%2Clast_error" in p or
               "fields=uuid,provision_state,last_error" in p for p in lists)


def test_a_provision_action_is_one_put_retried_on_409_and_not_followed_by_a_get(stub_ironic):
    stub_ironic.refusals = [409]
    ironic = IronicNodes(sdk_connection(stub_ironic.server_port), cluster="c")
    ironic.start_action(UUIDS[0], "active", config_drive={"meta_data": {"hostname": "n1"}})
    after_discovery = [p for p in stub_ironic.seen if "/nodes" in p]
    # The SDK's set_node_provision_state would have fetched the whole node afterwards.
    assert after_discovery == [f"PUT /v1/nodes/{UUIDS[0]}/states/provision baremetal 1.78"] * 2
    assert stub_ironic.bodies[-1] == {"target": "active", "configdrive": {"meta_data": {"hostname": "n1"}}}


def test_a_refused_provision_action_is_a_node_error_with_ironics_reason(stub_ironic):
    from k1prov.errors import NodeError

    ironic = IronicNodes(sdk_connection(stub_ironic.server_port), cluster="c")
    with pytest.raises(NodeError, match='bogus: HTTP 400: .*"bogus" is not valid'):
        ironic.start_action(UUIDS[0], "bogus")


def test_a_busy_ironic_is_a_transient_node_error_and_the_engine_tries_again(stub_ironic):
    """Issue 22: Ironic's 503 (no free conductor worker) is not left to the SDK's silent
    retries: it reaches the fan-out engine as transient, which counts it as congestion
    (the climber lowers its level) and tries the node again."""
    from k1prov.cloud import is_transient
    from k1prov.errors import NodeError
    from k1prov.fanout import Policy, Status, run_fanout

    ironic = IronicNodes(sdk_connection(stub_ironic.server_port), cluster="c")
    stub_ironic.refusals = [503]
    with pytest.raises(NodeError) as info:
        ironic.start_action(UUIDS[0], "active")
    assert info.value.transient and is_transient(info.value)
    assert "HTTP 503" in str(info.value)
    puts = lambda: [p for p in stub_ironic.seen if p.startswith("PUT")]  # noqa: E731
    assert len(puts()) == 1                                   # not retried by the SDK

    stub_ironic.refusals = [503]
    report = run_fanout([UUIDS[1]], lambda u: ironic.start_action(u, "active"), key=str,
                        policy=Policy(kind="ironic.deploy", retries=3, retry_wait=0.01),
                        is_transient=is_transient)
    (result,) = report.results
    assert (result.status, result.attempts) == (Status.OK, 2)
    assert len(puts()) == 3


def test_a_refusal_that_is_not_load_stays_a_node_failure(stub_ironic):
    from k1prov.errors import NodeError

    ironic = IronicNodes(sdk_connection(stub_ironic.server_port), cluster="c")
    with pytest.raises(NodeError) as info:
        ironic.start_action(UUIDS[0], "bogus")
    assert not info.value.transient
