"""k1prov.ad_hoc without a network: node selection, SSH targets, policy, exit codes."""
from __future__ import annotations

from pathlib import Path

import pytest

from k1prov.errors import ConfigError
from k1prov.fanout import Report, Result, Status
from k1prov.inventory import load_inventory
from k1prov.verb_report import EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL
from k1prov.context import RunOptions
from k1prov.ad_hoc import exit_code, run_on_hosts
from k1prov.context import VerbContext, pinned_known_hosts, select_nodes, ssh_target
from k1prov.settings import SSH_MAX_CONCURRENCY

INVENTORY = """\
cluster: unit
cloud: {ironic_url: "http://127.0.0.1:9"}
ssh: {user: ops, private_key: /keys/id, port: 2222, gateway: "jump@10.9.0.1:22"}
defaults:
  bmc: {address: 127.0.0.1, username: admin, password: {env: UNIT_UNUSED}}
nodes:
  - name: zk[1-3]
    address: {start: 10.0.0.1}
    macs: [{start: "52:54:00:00:00:01"}]
    bmc: {port: {start: 7001}}
    roles: [zookeeper]
  - name: master
    address: 10.0.0.10
    macs: ["52:54:00:00:01:00"]
    bmc: {port: 7010}
    roles: [spark-master]
    gateway: "other@10.9.0.2:2200"
  - name: w[01-04]
    address: {start: 10.0.0.21}
    macs: [{start: "52:54:00:00:02:01"}]
    bmc: {port: {start: 7021}}
    roles: [spark-worker]
"""


@pytest.fixture
def inv(tmp_path):
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    return load_inventory(path)


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


def test_policy_from_run_options(inv):
    adaptive = VerbContext(inv, state_root=Path("/p")).ssh_policy("ssh.run", item_timeout=5.0)
    assert (adaptive.kind, adaptive.endpoint, adaptive.concurrency) == ("ssh.run", "ssh", None)
    assert adaptive.max_concurrency == SSH_MAX_CONCURRENCY and adaptive.item_timeout == 5.0
    assert adaptive.profile_path == Path("/p/profiles.json")
    fixed = VerbContext(inv, options=RunOptions(concurrency=8, max_concurrency=16, failure_budget=1.0)
                        ).ssh_policy("ssh.run", item_timeout=5.0)
    assert (fixed.concurrency, fixed.max_concurrency, fixed.failure_budget) == (8, 16, 1.0)


def test_empty_command_is_refused_before_any_connection(inv):
    with pytest.raises(ConfigError):
        run_on_hosts(VerbContext(inv), "  ", nodes=list(inv.nodes))


def report(*statuses: Status, cancelled: bool = False) -> Report:
    return Report(results=[Result(f"h{i}", s) for i, s in enumerate(statuses)], cancelled=cancelled)


@pytest.mark.parametrize("statuses, code", [
    ((Status.OK, Status.OK), EXIT_OK),
    ((Status.OK, Status.FAILED), EXIT_PARTIAL),
    ((Status.OK, Status.TIMEOUT, Status.SKIPPED), EXIT_PARTIAL),
    ((Status.FAILED, Status.TIMEOUT), EXIT_NOTHING),
    ((Status.FAILED, Status.SKIPPED), EXIT_NOTHING),
    ((), EXIT_NOTHING),
])
def test_exit_code(statuses, code):
    assert exit_code(report(*statuses)) == code


def test_cancelled_run_is_interrupted_whatever_finished():
    assert exit_code(report(Status.OK, Status.SKIPPED, cancelled=True)) == EXIT_INTERRUPTED
