"""One --limit/--group grammar for every verb (k1prov.context.VerbContext.select), through the
CLI: names, folded patterns, comma lists and combinations select the same nodes
everywhere, and an unknown name, a bad pattern or an unknown role is the same one-line
error with exit 2 for every verb, before anything is contacted. The Ironic side is a
recording stand-in for the SDK connection (tests/unit/sdk_standin.py), SSH a recorder."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import k1prov.configure
import k1prov.context
import k1prov.deploy
import k1prov.ad_hoc
import k1prov.ssh_ready
from k1prov.cli import app
from k1prov.ssh import CommandResult

from sdk_standin import RecordingConnection

runner = CliRunner()

INVENTORY = """\
cluster: lim
cloud: {ironic_url: "http://127.0.0.1:9"}
ssh: {user: root, public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForLimitTestsOnly00000000000 t"]}
images:
  user: {name: u, url: "http://127.0.0.1:9/u.raw", bypass_glance: true,
         checksum: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
defaults:
  bmc: {address: 127.0.0.1, username: u, password: {env: LIMIT_TEST_PW}}
roles:
  spark: {source: preinstalled, manager: standalone}
nodes:
  - {name: n1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1, roles: [spark-master]}
  - {name: n2, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2, roles: [spark-client]}
  - {name: n3, bmc: {port: 7003}, macs: ["52:54:00:00:00:03"], address: 10.0.0.3, roles: [spark-client]}
  - {name: n4, bmc: {port: 7004}, macs: ["52:54:00:00:00:04"], address: 10.0.0.4, roles: [spark-client]}
"""

# Every verb that takes --limit, with what it needs after the options.
VERBS = {
    "nodes enroll": (["nodes", "enroll"], []),
    "nodes list": (["nodes", "list"], []),
    "nodes delete": (["nodes", "delete"], []),
    "nodes clean": (["nodes", "clean"], []),
    "deploy": (["deploy"], []),
    "undeploy": (["undeploy"], []),
    "configure": (["configure"], []),
    "run": (["run"], ["--", "true"]),
}


@pytest.fixture
def inv(tmp_path, monkeypatch):
    monkeypatch.setenv("LIMIT_TEST_PW", "pw")
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    return path


@pytest.fixture
def no_cloud(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a bad --limit must stop the verb before the cloud is contacted")
    monkeypatch.setattr(k1prov.context, "connect", refuse)


@pytest.fixture
def cloud(monkeypatch):
    conn = RecordingConnection(cluster="lim")
    for i in range(1, 5):
        conn.baremetal.add(f"n{i}", provision_state="available")
    monkeypatch.setattr(k1prov.context, "connect", lambda cloud, api_timeout: conn)
    return conn.baremetal


class Ssh:
    """Records the hosts each SSH call went to; every command and script succeeds."""

    def __init__(self):
        self.hosts: list[str] = []

    def run_command(self, target, command, *, connect_timeout, command_timeout):
        self.hosts.append(target.host)
        # BOOT_AGE_COMMAND: a freshly booted host; status reads: nothing recorded yet.
        return CommandResult(target.host, 0, "1.0 0 100\n", "")

    def put_and_run(self, target, text, *, sudo=False, connect_timeout, command_timeout):
        self.hosts.append(target.host)
        return CommandResult(target.host, 0, "K1PROV-RESULT changed=1\n", "")


@pytest.fixture
def ssh(monkeypatch):
    rec = Ssh()
    for module in (k1prov.configure, k1prov.ad_hoc, k1prov.ssh_ready):
        if hasattr(module, "run_command"):
            monkeypatch.setattr(module, "run_command", rec.run_command)
        if hasattr(module, "put_and_run"):
            monkeypatch.setattr(module, "put_and_run", rec.put_and_run)
    return rec


def invoke(inv, verb: str, *options: str):
    head, tail = VERBS[verb]
    return runner.invoke(app, [*head, "-i", str(inv), *options, *tail])


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_unknown_name_is_the_same_error_for_every_verb(verb, inv, no_cloud):
    result = invoke(inv, verb, "--limit", "n[1-2],zz9")
    assert result.exit_code == 2, result.output
    assert one_error_line(result) == f"error: --limit: not in {inv}: zz9"


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_bad_pattern_is_the_same_error_for_every_verb(verb, inv, no_cloud):
    result = invoke(inv, verb, "--limit", "n[3-1]")
    assert result.exit_code == 2, result.output
    assert one_error_line(result).startswith("error: --limit: bad host pattern 'n[3-1]': ")


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_unknown_role_is_the_same_error_for_every_verb(verb, inv, no_cloud):
    result = invoke(inv, verb, "--group", "spark-masters")
    assert result.exit_code == 2, result.output
    assert one_error_line(result).startswith("error: --group: unknown role 'spark-masters' (roles: ")


def test_reimage_names_follow_the_limit_grammar(inv, no_cloud):
    result = runner.invoke(app, ["reimage", "n[1-2],zz9", "-i", str(inv)])
    assert result.exit_code == 2
    assert one_error_line(result) == f"error: --limit: not in {inv}: zz9"


def listed(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [row["node"] for row in json.loads(result.stdout)["nodes"]]


def test_nodes_list_pattern_with_a_comma_inside_brackets(inv, cloud):
    # The comma inside the brackets is part of the pattern (configure split it first).
    assert listed(invoke(inv, "nodes list", "--limit", "n[1,3]", "--json")) == ["n1", "n3"]


def test_folded_range_comma_list_and_repeats_combine_in_inventory_order(inv, cloud):
    assert listed(invoke(inv, "nodes list", "--limit", "n4,n[1-2]", "--limit", "n2",
                         "--json")) == ["n1", "n2", "n4"]


def test_group_alone_and_group_with_limit(inv, cloud):
    assert listed(invoke(inv, "nodes list", "--group", "spark-client", "--json")) == ["n2", "n3", "n4"]
    assert listed(invoke(inv, "nodes list", "--group", "spark-client", "--limit", "n[1-3]",
                         "--json")) == ["n2", "n3"]


def test_enroll_touches_only_the_selected_nodes(inv, cloud):
    cloud.by_id.clear()
    result = invoke(inv, "nodes enroll", "--limit", "n[2-3]", "--json")
    assert result.exit_code == 0, result.output
    assert cloud.names_called("create_node") == ["n2", "n3"]


def test_delete_touches_only_the_selected_nodes(inv, cloud):
    result = invoke(inv, "nodes delete", "-g", "spark-master", "--json")
    assert result.exit_code == 0, result.output
    assert cloud.names_called("delete_node") == ["n1"]


def test_deploy_and_undeploy_touch_only_the_selected_nodes(inv, cloud, ssh):
    result = invoke(inv, "deploy", "--limit", "n[1,4]", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(cloud.names_called("provision")) == ["n1", "n4"]
    assert sorted(ssh.hosts) == ["n1", "n4"]
    cloud.calls.clear()
    result = invoke(inv, "undeploy", "--group", "spark-client", "--limit", "n[3-4]", "--json")
    assert result.exit_code == 0, result.output
    assert cloud.names_called("provision") == ["n4"]   # n3 is not active


def test_reimage_takes_patterns(inv, cloud, ssh):
    for name in ("n1", "n2", "n3"):
        cloud.node(name).provision_state = "active"
    result = runner.invoke(app, ["reimage", "n[1,3]", "--no-rejoin", "-i", str(inv), "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(cloud.names_called("provision")) == ["n1", "n3"]


def test_configure_pattern_with_comma_and_group(inv, ssh):
    result = invoke(inv, "configure", "--limit", "n[1,3]", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(set(ssh.hosts)) == ["n1", "n3"]
    ssh.hosts.clear()
    result = invoke(inv, "configure", "--group", "spark-client", "--limit", "n[1-3]", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(set(ssh.hosts)) == ["n2", "n3"]


def test_run_pattern_and_group(inv, ssh):
    result = invoke(inv, "run", "--limit", "n[1,3]", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(ssh.hosts) == ["n1", "n3"]
    ssh.hosts.clear()
    result = invoke(inv, "run", "-g", "spark-client", "-l", "n1,n4", "--json")
    assert result.exit_code == 0, result.output
    assert ssh.hosts == ["n4"]
