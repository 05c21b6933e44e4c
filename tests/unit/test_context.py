"""k1prov.context: the verb context is data and accessors, one way to get each item.

The node selection (the one --limit/--group grammar), the pinned host keys, a node's SSH
target, one fan-out policy per transport, the lazily opened cloud connection; and no
actions (those are k1prov.ironic_actions)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from k1prov import context, ironic_actions
from k1prov.context import RunOptions, VerbContext
from k1prov.errors import ConfigError
from k1prov.fanout import Status
from k1prov.settings import DEFAULT_TIMEOUTS, IRONIC_MAX_CONCURRENCY, SSH_MAX_CONCURRENCY
from k1prov.verb_report import NodeOutcome, VerbReport
from small_inventory import small_inventory



@pytest.fixture
def inv(tmp_path):
    return small_inventory(tmp_path)


# The one way to get each item is the context's; these read as the checks always did.
def select_nodes(inv, *, limit=None, group=None):
    return VerbContext(inv).select(limit, group)


def ssh_target(inv, node, *, known_hosts):
    return VerbContext(inv).ssh_target(node, known_hosts)


def pinned_known_hosts(state_root: Path, cluster: str):
    return VerbContext(SimpleNamespace(cluster=cluster), state_root=state_root).known_hosts()


def names(nodes) -> list[str]:
    return [n.name for n in nodes]


def test_no_filter_is_every_node_in_inventory_order(inv):
    assert names(select_nodes(inv)) == ["zk1", "zk2", "zk3", "master", "w01", "w02", "w03", "w04"]


def test_group_is_a_role(inv):
    assert names(select_nodes(inv, group="zookeeper")) == ["zk1", "zk2", "zk3"]
    assert names(select_nodes(inv, group="spark-master")) == ["master"]


def test_limit_takes_names_commas_and_folded_patterns_in_inventory_order(inv):
    chosen = select_nodes(inv, limit=["w0[3-4],zk2", " master "])
    assert names(chosen) == ["zk2", "master", "w03", "w04"]


def test_group_and_limit_intersect(inv):
    assert names(select_nodes(inv, group="spark-worker", limit=["w01,zk1,w02"])) == ["w01", "w02"]


def test_role_without_nodes_selects_nothing(inv):
    assert select_nodes(inv, group="mesos-agent") == []
    assert select_nodes(inv, group="zookeeper", limit=["w01"]) == []


def test_unknown_role_is_a_config_error_naming_the_roles(inv):
    with pytest.raises(ConfigError) as info:
        select_nodes(inv, group="zookeepers")
    assert "unknown role 'zookeepers'" in str(info.value) and "zookeeper," in str(info.value)


def test_unknown_names_are_all_reported(inv):
    with pytest.raises(ConfigError) as info:
        select_nodes(inv, limit=["w01,w09", "zk[3-5]"])
    message = str(info.value)
    assert message.endswith("w09, zk4, zk5") and "inv.yaml" in message


def test_many_unknown_names_are_cut_short(inv):
    with pytest.raises(ConfigError) as info:
        select_nodes(inv, limit=["x[1-500]"])
    assert str(info.value).endswith("x10 and 490 more")


def test_bad_pattern_is_a_config_error(inv):
    with pytest.raises(ConfigError, match="bad host pattern"):
        select_nodes(inv, limit=["w[09-01]"])


def test_ssh_target_from_inventory_with_node_gateway_first(inv, tmp_path):
    pinned = tmp_path / "known_hosts"
    zk1 = ssh_target(inv, inv.node("zk1"), known_hosts=pinned)
    assert (zk1.host, zk1.address, zk1.user, zk1.port, zk1.key_filename, zk1.known_hosts,
            zk1.gateway) == ("zk1", "10.0.0.1", "ops", 2222, "/keys/id", pinned, "jump@10.9.0.1:22")
    assert ssh_target(inv, inv.node("master"), known_hosts=None).gateway == "other@10.9.0.2:2200"


def test_pinned_known_hosts_only_when_deploy_wrote_them(tmp_path):
    assert pinned_known_hosts(tmp_path, "unit") is None
    (tmp_path / "unit").mkdir()
    (tmp_path / "unit" / "known_hosts").write_text("10.0.0.1 ssh-ed25519 AAAA\n")
    assert pinned_known_hosts(tmp_path, "unit") == tmp_path / "unit" / "known_hosts"
    assert pinned_known_hosts(tmp_path, "other") is None
    assert VerbContext(SimpleNamespace(cluster="unit"), state_root=tmp_path).cluster_state_dir == \
        tmp_path / "unit"


def test_policy_from_run_options(inv):
    adaptive = VerbContext(inv, state_root=Path("/p")).ssh_policy("ssh.run", item_timeout=5.0)
    assert (adaptive.kind, adaptive.endpoint, adaptive.concurrency) == ("ssh.run", "ssh", None)
    assert adaptive.max_concurrency == SSH_MAX_CONCURRENCY and adaptive.item_timeout == 5.0
    assert adaptive.profile_path == Path("/p/profiles.json")
    fixed = VerbContext(inv, options=RunOptions(concurrency=8, max_concurrency=16, failure_budget=1.0)
                        ).ssh_policy("ssh.run", item_timeout=5.0)
    assert (fixed.concurrency, fixed.max_concurrency, fixed.failure_budget) == (8, 16, 1.0)


def test_ironic_policy_is_capped_and_named_by_the_endpoint(inv):
    ctx = VerbContext(inv, state_root=Path("/p"), options=RunOptions(max_concurrency=10_000))
    policy = ctx.ironic_policy("ironic.manage", item_timeout=3.0)
    assert (policy.kind, policy.endpoint, policy.item_timeout) == ("ironic.manage", "http://127.0.0.1:9", 3.0)
    assert policy.max_concurrency == IRONIC_MAX_CONCURRENCY
    assert policy.profile_path == Path("/p/profiles.json")
    by_cloud = VerbContext(SimpleNamespace(cloud=SimpleNamespace(ironic_url=None, cloud="lab")))
    assert by_cloud.endpoint == "cloud:lab"


def test_the_connection_opens_on_first_use_and_once(inv, monkeypatch):
    opened = []
    monkeypatch.setattr(context, "connect",
                        lambda cloud, api_timeout: opened.append((cloud, api_timeout)) or object())
    ctx = VerbContext(inv)
    ctx.select(group="zookeeper")
    ctx.ssh_target(inv.node("zk1"))
    assert opened == []
    assert ctx.conn is ctx.conn
    assert opened == [(inv.cloud, DEFAULT_TIMEOUTS.api_request)]


def test_the_context_holds_no_action():
    """Actions on Ironic are k1prov.ironic_actions', one way each (issue 19)."""
    for name in ("fire_and_wait", "refresh_rows", "fan_out_ironic"):
        assert not hasattr(VerbContext, name)
    for name in ("select_nodes", "ssh_target", "ssh_policy", "pinned_known_hosts"):
        assert not hasattr(context, name), name


class _Ironic:
    def own_nodes(self):
        return {"zk1": SimpleNamespace(id="u1", provision_state="available", power_state="power off",
                                       last_error=None, conductor_group="rack2", shard="s1"),
                "zk2": SimpleNamespace(id="u2", provision_state="enroll", power_state=None,
                                       last_error="IPMI refused", conductor_group="", shard=None)}


def test_refresh_rows_fills_each_row_from_one_listing(inv, monkeypatch):
    ctx = VerbContext(inv)
    monkeypatch.setattr(ctx, "ironic", lambda: _Ironic())
    outcomes = {"zk1": NodeOutcome("zk1", Status.OK), "zk2": NodeOutcome("zk2", Status.FAILED),
                "zk3": NodeOutcome("zk3", Status.OK)}
    report = VerbReport("enroll", list(outcomes.values()))
    assert ironic_actions.refresh_rows(ctx, report, outcomes, 0.0) is report
    assert (outcomes["zk1"].uuid, outcomes["zk1"].provision_state) == ("u1", "available")
    assert outcomes["zk2"].error == "IPMI refused" and outcomes["zk1"].error is None
    assert (outcomes["zk1"].conductor_group, outcomes["zk1"].shard) == ("rack2", "s1")
    assert (outcomes["zk2"].conductor_group, outcomes["zk2"].shard) == (None, None)
    assert outcomes["zk3"].uuid is None and outcomes["zk3"].duration > 0
