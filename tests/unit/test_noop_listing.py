"""A re-run on a healthy cluster: each Ironic verb lists the nodes once, not once to decide
and once more for its rows (issue 12 item 4), over a recording stand-in for the SDK."""
from __future__ import annotations

from types import SimpleNamespace

from k1prov import context, deploy, enrollment
from k1prov.context import VerbContext
from k1prov.deploy import UserImage
from k1prov.inventory.model import Bmc, Node, SecretRef
from k1prov.ironic import EXTRA_BMC_FINGERPRINT, EXTRA_CLUSTER, desired_for
from sdk_standin import ListingBaremetal


def _node(name: str, mac: str) -> Node:
    return Node(name=name, index=0, bmc=Bmc("127.0.0.1", 623, "admin", SecretRef(inline="pw")),
                macs=(mac,), address="10.0.0.1", roles=())


def _as_ironic_has_it(node: Node, state: str) -> SimpleNamespace:
    want = desired_for(node, "c")
    return SimpleNamespace(name=node.name, id=f"u-{node.name}", provision_state=state, power_state="power on",
                           last_error=None, extra={EXTRA_CLUSTER: "c", EXTRA_BMC_FINGERPRINT: want.fingerprint},
                           driver_info=dict(want.driver_info), instance_info={"image_source": "img"},
                           **{"shard": None, **want.attrs})


class Baremetal(ListingBaremetal):
    def ports(self, **query):
        self.calls.append("ports")
        node = next(n for n in self.existing if n.id == query["node_uuid"])
        return [SimpleNamespace(address=node.mac)]


def _ctx(tmp_path, monkeypatch, state: str) -> tuple[VerbContext, Baremetal]:
    """A real verb context over two nodes that Ironic has exactly as the inventory says."""
    nodes = [_node("n1", "52:54:00:00:00:01"), _node("n2", "52:54:00:00:00:02")]
    existing = []
    for n in nodes:
        found = _as_ironic_has_it(n, state)
        found.mac = n.macs[0]
        existing.append(found)
    baremetal = Baremetal(existing)
    inv = SimpleNamespace(cluster="c", nodes=nodes, path=tmp_path / "inv.yaml", roles={},
                          cloud=SimpleNamespace(ironic_url="http://127.0.0.1:1", cloud=None),
                          images=SimpleNamespace(user=SimpleNamespace(name="i"), deploy_kernel=None, deploy_ramdisk=None),
                          ssh=SimpleNamespace(public_keys=("ssh-ed25519 AAAA k1prov",)))
    conn = SimpleNamespace(baremetal=baremetal)     # the SDK connection, recorded
    monkeypatch.setattr(context, "connect", lambda cloud, api_timeout: conn)
    ctx = VerbContext(inv, state_root=tmp_path)
    return ctx, baremetal


def test_enroll_of_nodes_as_the_inventory_has_them_lists_once(tmp_path, monkeypatch):
    ctx, baremetal = _ctx(tmp_path, monkeypatch, "available")
    report = enrollment.enroll(ctx)
    assert {o.action for o in report.outcomes} == {"unchanged"}
    assert baremetal.calls.count("nodes") == 1, baremetal.calls
    assert {o.provision_state for o in report.outcomes} == {"available"}


def test_deploy_of_active_nodes_lists_once(tmp_path, monkeypatch):
    ctx, baremetal = _ctx(tmp_path, monkeypatch, "active")
    monkeypatch.setattr(deploy, "user_image", lambda ctx, name=None: UserImage("i", {"image_source": "img"}))
    report = deploy.deploy(ctx)
    assert {o.action for o in report.outcomes} == {"unchanged"}
    assert baremetal.calls == ["nodes"]
    assert {o.provision_state for o in report.outcomes} == {"active"}
