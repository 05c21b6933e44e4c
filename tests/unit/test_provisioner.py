"""k1prov.provisioner, the facade: one line per verb over one shared context, the option and
result types its callers need, and the verbs that only the facade used to lack (inventory
check, render, runs, run's targets). Against the recording SDK stand-in: no network."""
from __future__ import annotations

import ast
import inspect
from dataclasses import replace
from pathlib import Path

import pytest

import k1prov.context
from k1prov import provisioner
from k1prov.errors import InventoryError
from k1prov.inventory import parse_inventory
from k1prov.provisioner import Provisioner, RunOptions, VerbContext, run_exit_code
from k1prov.run_records import RunRecord
from k1prov.settings import DEFAULT_TIMEOUTS
from k1prov.verb_report import EXIT_NOTHING, EXIT_OK

from sdk_standin import RecordingConnection

INVENTORY = """\
cluster: facade
cloud: {ironic_url: "http://127.0.0.1:9"}
ssh: {user: root, public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheFacadeTests00000000 t"]}
images:
  user: {name: u, url: "http://127.0.0.1:9/u.raw", bypass_glance: true,
         checksum: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}
defaults:
  bmc: {address: 127.0.0.1, username: u, password: {env: FACADE_UNUSED}}
roles:
  spark: {source: preinstalled, manager: standalone}
nodes:
  - {name: n1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1, roles: [spark-master]}
  - {name: "n[2-3]", bmc: {port: {start: 7002}}, macs: [{start: "52:54:00:00:00:02"}],
     address: {start: 10.0.0.2}, roles: [spark-client]}
"""
# What configure would refuse: a Spark tarball without its sha512.
BAD_ROLES = INVENTORY.replace("spark: {source: preinstalled, manager: standalone}",
                              'spark: {source: tarball, version: 3.5.9, manager: standalone}')


def inv(tmp_path: Path, text: str = INVENTORY):
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    return parse_inventory(text, path=str(path))


@pytest.fixture
def ironic(monkeypatch):
    conn = RecordingConnection(cluster="facade")
    monkeypatch.setattr(k1prov.context, "connect", lambda cloud, api_timeout: conn)
    return conn.baremetal


def test_every_verb_is_one_line_over_a_verb_module():
    """metalsmith's shape (STYLE.md §1, §8): the facade's methods hold no work of their own."""
    tree = ast.parse(inspect.getsource(provisioner))
    facade = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Provisioner")
    methods = [f for f in facade.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")]
    assert len(methods) > 20
    for f in methods:
        body = [s for s in f.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        assert len(body) == 1 and isinstance(body[0], ast.Return), f.name


def test_one_context_carries_what_the_facade_was_given(tmp_path):
    options = RunOptions(concurrency=3)
    timeouts = replace(DEFAULT_TIMEOUTS, deploy=7.0)
    notes = []
    prov = Provisioner(inv(tmp_path), options=options, timeouts=timeouts, state_root=tmp_path / "s",
                       notify=notes.append)
    ctx = prov.context
    assert isinstance(ctx, VerbContext)
    assert (ctx.options, ctx.timeouts, ctx.state_root) == (options, timeouts, tmp_path / "s")
    assert prov.state_root == tmp_path / "s" and prov.cluster_state_dir == tmp_path / "s" / "facade"
    assert prov.inventory is ctx.inventory
    ctx.notify("hello")
    assert notes == ["hello"]
    assert [n.name for n in prov.select(["n[2-3]"])] == ["n2", "n3"]


def test_check_inventory_is_the_expanded_plan_with_its_warnings(tmp_path):
    result = Provisioner(inv(tmp_path)).check_inventory()
    assert result.cluster == "facade" and result.exit_code() == EXIT_OK
    assert [r["name"] for r in result.rows] == ["n1", "n2", "n3"]
    data = result.to_dict()
    assert set(data) == {"cluster", "nodes", "warnings"}
    # The password's source, never its value (the variable is not even set).
    assert {r["password"] for r in data["nodes"]} == {"env:FACADE_UNUSED"}
    assert result.warnings == [] and result.found == []


def test_check_inventory_refuses_what_configure_would(tmp_path):
    with pytest.raises(InventoryError, match="sha512"):
        Provisioner(inv(tmp_path, BAD_ROLES)).check_inventory()


def test_render_writes_every_host_and_the_plan(tmp_path):
    rendered = Provisioner(inv(tmp_path)).render(tmp_path / "out")
    assert set(rendered.data["hosts"]) == {"n1", "n2", "n3"} and rendered.exit_code() == 0
    assert rendered.to_dict() is rendered.data
    assert (tmp_path / "out" / "plan.json").is_file()


def test_runs_and_one_run_record(tmp_path):
    prov = Provisioner(inv(tmp_path), state_root=tmp_path / "state")
    assert prov.runs().runs == [] and prov.runs().to_dict() == {"cluster": "facade", "runs": []}
    record = RunRecord(tmp_path / "state", "facade", "configure")
    record.finish({"verb": "configure", "nodes": [], "phases": []}, exit_code=EXIT_OK)
    listed = prov.runs()
    [summary] = listed.runs
    assert (summary.verb, summary.exit_code, summary.path) == ("configure", EXIT_OK, record.path)
    assert listed.to_dict()["runs"] == [summary.to_dict()] and listed.exit_code() == EXIT_OK
    shown = prov.run_record().data
    assert shown["meta"]["verb"] == "configure" and shown["path"] == str(record.path)
    assert prov.run_record(summary.id).to_dict()["report"]["verb"] == "configure"


def test_run_targets_are_selected_once_and_nothing_selected_is_nothing_run(tmp_path, ironic):
    prov = Provisioner(inv(tmp_path), state_root=tmp_path / "state")
    hosts = prov.run_targets(group="spark-client")
    assert [n.name for n in hosts.nodes] == ["n2", "n3"] and hosts.known_hosts is None
    empty = prov.run("true", hosts=prov.run_targets(group="zookeeper"))
    assert empty.report.results == [] and run_exit_code(empty.report) == EXIT_NOTHING
    assert empty.nothing_selected and empty.exit_code() == EXIT_NOTHING
    assert empty.to_dict()["exit_code"] == EXIT_NOTHING and empty.to_dict()["results"] == []
    assert ironic.calls == []          # run never asks Ironic


@pytest.mark.parametrize("verb", [
    lambda p: p.cluster_up(),
    lambda p: p.cluster_up(dry_run=True),
    lambda p: p.cluster_rebuild(),
    lambda p: p.rejoin(["n2"]),
])
def test_bad_role_settings_stop_the_cluster_verbs_before_ironic_is_asked(tmp_path, ironic, verb):
    """The check the facade used to run itself is now the verbs' own first step."""
    with pytest.raises(InventoryError, match="sha512"):
        verb(Provisioner(inv(tmp_path, BAD_ROLES), state_root=tmp_path / "state"))
    assert ironic.calls == []
