"""Tests of k1prov.configure (phases over a fake transport) and of the one role-settings
table shared by the inventory loader and the renderer."""
from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

import k1prov.configure as cfg
import k1prov.configure_plan as cplan
from k1prov import probe
from k1prov.context import VerbContext
from k1prov.errors import ConfigError, InventoryError
from k1prov.fanout import Status
from k1prov.inventory import parse_inventory
from k1prov.settings import DEFAULT_TIMEOUTS
from k1prov.ssh import CommandResult
from k1prov.roles import render_all
from k1prov.roles import role_settings as role_table

from configure_standin import HEAD, LAB_ROLES, NODES, FakeHosts, load, run, use

REPO = Path(__file__).resolve().parents[2]

def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


# ---- one settings table for the loader and the renderer --------------------------------

def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"x"' if value == "" else f'"{value}"'
    if isinstance(value, list):
        return "[a]"
    if isinstance(value, dict):
        return "{}"
    return str(value)


@pytest.mark.parametrize("section", sorted(role_table.DEFAULTS))
def test_loader_accepts_every_key_the_renderer_uses(section):
    for key, default in role_table.DEFAULTS[section].items():
        value = default if default not in ("", [], {}) else None
        if value is None:
            continue
        text = LAB_ROLES.replace("roles:\n", f"roles:\n  {section}: {{{key}: {_yaml(value)}}}\n") \
            if section not in ("zookeeper", "spark") else \
            LAB_ROLES.replace(f"  {section}: {{", f"  {section}: {{{key}: {_yaml(value)}, ", 1)
        if f"{key}:" in LAB_ROLES.split(f"  {section}:")[-1].split("\n")[0] and section in ("zookeeper", "spark"):
            continue   # already set by LAB_ROLES
        inv = load(text)
        assert inv.roles[section][key] == value
    # ...and the loader keeps exactly the renderer's keys, defaults filled in.
    assert set(load().roles[section]) == set(role_table.DEFAULTS[section])


def test_loader_refuses_a_key_the_renderer_does_not_know_with_file_and_line():
    text = LAB_ROLES + "  mesos: {cluster: x}\n"
    with pytest.raises(InventoryError) as info:
        load(text)
    err = info.value
    assert err.field == "roles.mesos.cluster"
    assert err.line == line_of(HEAD + text + NODES, "cluster: x")
    assert "did you mean 'cluster_name'" in err.reason


@pytest.mark.parametrize("setting,field,reason", [
    ("spark: {source: preinstalled, manager: yarn}", "roles.spark.manager", "standalone or mesos"),
    ("spark: {source: preinstalled, user: \"spark\\nUser=root\"}", "roles.spark.user", "newlines"),
    ("zookeeper: {client_port: 70000}", "roles.zookeeper.client_port", "not a port"),
    ("zookeeper: {client_port: \"2181\"}", "roles.zookeeper.client_port", "whole number"),
    ("mesos: {agent_flags: {\"bad flag\": x}}", "roles.mesos.agent_flags.bad flag", "flag name"),
    ("mesos: {containerizers: \"mesos,rkt\"}", "roles.mesos.containerizers", "'rkt'"),
    ("spark: {source: preinstalled, sha512: abc}", "roles.spark.sha512", "128 hex"),
])
def test_loader_runs_the_renderer_checks_at_the_settings_line(setting, field, reason):
    roles = "roles:\n  " + setting + "\n"
    if not setting.startswith("zookeeper"):
        roles += "  zookeeper: {source: preinstalled}\n"
    if not setting.startswith("spark"):
        roles += "  spark: {source: preinstalled}\n"
    with pytest.raises(InventoryError) as info:
        load(roles)
    err = info.value
    assert err.field == field and reason in err.reason, str(err)
    assert err.line == line_of(HEAD + roles, setting.split(":")[0] + ":")
    assert str(err).startswith(f"inv.yaml:{err.line}: {field}: ")


def test_loader_accepts_common_templates_dir_and_versions_as_written(tmp_path):
    roles = LAB_ROLES + "  common: {java_install: false}\n  templates_dir: tpl\n" \
        + "  mesos: {version: 1.11}\n"
    inv = load(roles.replace("source: preinstalled, server", "version: 3.10, source: preinstalled, server"))
    assert inv.roles["common"]["java_install"] is False
    assert inv.roles["templates_dir"] == "tpl"
    assert inv.roles["zookeeper"]["version"] == "3.10"     # as written, not 3.1
    assert inv.roles["mesos"]["version"] == "1.11"


def test_loaded_settings_resolve_to_what_the_renderer_resolves():
    """What the loader stores is stable: the renderer resolving it again changes nothing."""
    inv = load()
    for section in role_table.DEFAULTS:
        again = role_table.settings_of(inv, section)
        assert role_table.stored(section, again) == inv.roles[section]
    assert inv.roles["mesos"]["cluster_name"] == "t1"
    assert inv.roles["spark"]["manager"] == "standalone"


def test_install_checks_wait_for_render_not_for_load():
    # Spark's default source is a tarball: enroll/deploy need no sha512, render does.
    inv = load(roles="roles:\n  zookeeper: {source: preinstalled}\n")
    with pytest.raises(InventoryError) as info:
        render_all(inv)
    assert info.value.field == "roles.spark.sha512"


def test_lab_inventory_loads_and_renders_preinstalled_roles(lab_operator_key):
    path = REPO / "inventories" / "lab-standalone.yaml"
    inv = parse_inventory(path.read_text(), path=path)
    assert inv.roles["zookeeper"]["source"] == "preinstalled"
    assert inv.roles["spark"]["spark_home"] == "/opt/spark"
    assert inv.roles["spark"]["manager"] == "standalone"
    scripts = render_all(inv)
    assert [s.role for s in scripts["lab01"]] == ["zookeeper", "spark-master"]


def test_lab_inventory_with_mesos_renders_the_published_build_with_its_listed_sha512(lab_operator_key):
    # The digest the lab_operator_key fixture listed in the stand-in SHA512SUMS (read from the
    # file, not imported: in a whole run `conftest` is tests/integration's module).
    sums = Path("~/.local/share/k1prov/lab/http/mesos/SHA512SUMS").expanduser()
    listed = sums.read_text().split()[0]
    assert len(listed) == 128
    path = REPO / "inventories" / "lab.yaml"
    inv = parse_inventory(path.read_text(), path=path)
    # Kept as a path of this machine (~ expanded), read only when rendering.
    assert inv.roles["mesos"]["sha512_file"] == str(Path("~/.local/share/k1prov/lab/http/mesos/SHA512SUMS").expanduser())
    assert inv.roles["mesos"]["sha512"] == ""
    scripts = render_all(inv)
    assert [s.role for s in scripts["lab01"]] == ["zookeeper", "mesos-master", "spark-client"]
    assert [s.role for s in scripts["lab04"]] == ["mesos-agent", "spark-worker"]
    agent = scripts["lab04"][0].text
    assert "CFG_TARBALL_URL=http://10.251.0.1:8088/mesos/lab-build" in agent
    assert f"CFG_TARBALL_SHA512={listed}" in agent
    assert "spark.master mesos://zk://" in next(s for s in scripts["lab01"] if s.role == "spark-client").text



MESOS_NODES = """\
nodes:
  - {name: m1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1, roles: [zookeeper, mesos-master]}
  - {name: a1, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2, roles: [mesos-agent]}
"""


def _mesos_inventory(d: Path, extra: str):
    text = HEAD + ("roles:\n  zookeeper: {source: preinstalled}\n"
                   "  mesos: {source: tarball, url: http://10.0.0.9/b/m.tar.xz, " + extra + "}\n") + MESOS_NODES
    return parse_inventory(text, path=d / "inv.yaml"), text


def test_mesos_sha512_file_is_read_when_rendering_and_refused_plainly(tmp_path):
    good, other = "1f" * 64, "2e" * 64
    (tmp_path / "sums").write_text(f"{other}  x.tar.xz\n{good} *m.tar.xz\n")
    # Relative to the inventory's directory; kept as that path, read only when rendering.
    inv, _ = _mesos_inventory(tmp_path, "sha512_file: sums")
    assert inv.roles["mesos"]["sha512_file"] == str(tmp_path / "sums")
    agent = render_all(inv)["a1"][0].text
    assert f"CFG_TARBALL_SHA512={good}" in agent
    # A new build listed: the script changes (configure installs it).
    (tmp_path / "sums").write_text(f"{other}  m.tar.xz\n")
    assert f"CFG_TARBALL_SHA512={other}" in render_all(inv)["a1"][0].text
    # One bare digest.
    (tmp_path / "one").write_text(good.upper() + "\n")
    assert f"CFG_TARBALL_SHA512={good}" in render_all(_mesos_inventory(tmp_path, "sha512_file: one")[0])["a1"][0].text
    # Refusals name the field at its line: no file, no line for the URL's file name, a
    # sha512 written beside it that differs.
    for extra, reason in ((f"sha512_file: {tmp_path / 'none'}", f"cannot read {tmp_path / 'none'}: No such file"),
                          ("sha512_file: sums", ""),
                          (f"sha512_file: one, sha512: {other}", "differs from the sha512")):
        if not reason:
            (tmp_path / "sums").write_text(f"{good}  x.tar.xz\n")
            reason = f"{tmp_path / 'sums'} lists no sha512 for 'm.tar.xz'"
        inv, text = _mesos_inventory(tmp_path, extra)
        with pytest.raises(InventoryError) as info:
            render_all(inv)
        assert reason in str(info.value), str(info.value)
        assert info.value.field in ("roles.mesos.sha512_file", "roles.mesos.sha512")
        assert info.value.line == line_of(text, "mesos:")


# ---- small pieces of configure ---------------------------------------------------------

def test_check_roles():
    assert cfg.check_roles(None) == cfg.ROLE_ORDER
    assert cfg.check_roles(["spark-worker,zookeeper", "zookeeper"]) == ("spark-worker", "zookeeper")
    with pytest.raises(ConfigError, match="unknown role spark"):
        cfg.check_roles(["spark"])


def _proc_start(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]


def test_status_command_reports_hashes_and_liveness_as_the_scripts_see_it(tmp_path):
    from k1prov.roles.render import status_functions

    state = tmp_path / "state"
    (state / "roles").mkdir(parents=True)
    (state / "run").mkdir()
    for role, digest in (("zookeeper", "ab"), ("spark-master", "cd"), ("spark-worker", "ef")):
        (state / "roles" / f"{role}.sha256").write_text(digest * 32 + "\n")
    alive = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        (state / "run" / "zookeeper.pid").write_text(f"{alive.pid} {_proc_start(alive.pid)}\n")
        # A pid file naming a live process with another start time is stale (pid reused).
        (state / "run" / "spark-master.pid").write_text(f"{alive.pid} 1\n")
        (state / "run" / "spark-worker.pid").write_text(f"{dead.pid} 12345\n")
        command = cplan.status_command(status_functions(load()), {
            "zookeeper": "zookeeper", "spark-master": "spark-master", "spark-worker": "spark-worker",
            "spark-client": "", "mesos-agent": "mesos-agent"})
        env = {"PATH": "/usr/bin:/bin", "K1PROV_STATE_DIR": str(state), "K1PROV_INIT": "none"}
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True,
                             env=env, timeout=30).stdout
    finally:
        alive.kill()
        alive.wait()
    assert out.splitlines() == [
        "zookeeper " + "ab" * 32 + " running",
        "spark-master " + "cd" * 32 + " stopped",
        "spark-worker " + "ef" * 32 + " stopped",
        "spark-client - none",
        "mesos-agent - stopped",
    ]
    assert cplan.parse_status(out) == {
        "zookeeper": cplan.RoleStatus("ab" * 32, True), "spark-master": cplan.RoleStatus("cd" * 32, False),
        "spark-worker": cplan.RoleStatus("ef" * 32, False), "spark-client": cplan.RoleStatus("", None),
        "mesos-agent": cplan.RoleStatus("", False)}


def test_status_command_says_lost_when_a_state_file_is_gone(tmp_path):
    """A role whose state files (ZooKeeper's myid) are gone from a directory the user can
    look into is "lost", whatever its hash says (issue 23, fault 7)."""
    from k1prov.roles.render import status_functions

    state = tmp_path / "state"
    (state / "roles").mkdir(parents=True)
    (state / "roles" / "zookeeper.sha256").write_text("ab" * 32 + "\n")
    (state / "roles" / "spark-client.sha256").write_text("cd" * 32 + "\n")
    data = tmp_path / "zk"
    data.mkdir()
    command = cplan.status_command(status_functions(load()), {"zookeeper": "", "spark-client": ""},
                                   {"zookeeper": (str(data / "myid"),)})
    env = {"PATH": "/usr/bin:/bin", "K1PROV_STATE_DIR": str(state), "K1PROV_INIT": "none"}

    def status() -> dict:
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True, env=env,
                             timeout=30).stdout
        return cplan.parse_status(out)

    assert status()["zookeeper"] == cplan.RoleStatus("ab" * 32, None, lost=True)
    assert status()["spark-client"] == cplan.RoleStatus("cd" * 32, None)
    (data / "myid").write_text("2\n")
    assert status()["zookeeper"] == cplan.RoleStatus("ab" * 32, None)
    # The whole data directory gone is lost too.
    (data / "myid").unlink()
    data.rmdir()
    assert status()["zookeeper"].lost


def test_a_wiped_zookeeper_member_is_set_up_again_though_its_script_is_unchanged(tmp_path, fake):
    run(tmp_path)
    fake.ran.clear()
    fake.wiped = {"n3"}
    report = run(tmp_path)
    assert fake.ran == [("n3", "zookeeper")]
    actions = {(o.node, o.changes[0]): o.action for o in report.outcomes}
    assert actions.pop(("n3", "zookeeper")) == "changed"
    assert set(actions.values()) == {"unchanged"}
    assert report.exit_code() == 0 and not fake.wiped
    # The next configure finds it whole: nothing runs.
    fake.ran.clear()
    assert run(tmp_path).exit_code() == 0 and fake.ran == []


def test_parse_status_keeps_only_well_formed_lines_of_known_roles():
    good = "zookeeper " + "0f" * 32 + " running"
    text = "\n".join([
        "  " + good + "  ",
        "spark-worker - stopped",
        "zookeeper $(rm -rf /) running",               # not a hash
        "mesos-master " + "0f" * 31 + " running",      # 62 hex digits
        "hdfs " + "0f" * 32 + " running",              # not a role
        "spark-master " + "0F" * 32 + " running",      # hashes are lower case
        "spark-client - maybe",                        # not a state
        "mesos-agent " + "0f" * 32 + " running extra",
    ])
    assert cplan.parse_status(text) == {"zookeeper": cplan.RoleStatus("0f" * 32, True),
                                      "spark-worker": cplan.RoleStatus("", False)}
    assert cplan.parse_status("") == {}


def test_script_changed_reads_the_last_result_line():
    assert cfg.script_changed("x\nK1PROV-RESULT changed=0\n") is False
    assert cfg.script_changed("K1PROV-RESULT changed=0\nK1PROV-RESULT changed=1\n") is True
    assert cfg.script_changed("no result\n") is None


# ---- phases over a fake transport ------------------------------------------------------

@pytest.fixture
def fake(monkeypatch):
    return use(monkeypatch, FakeHosts())


def test_phases_run_in_dependency_order_then_skip_unchanged_hosts(tmp_path, fake):
    report = run(tmp_path)
    assert report.exit_code() == 0
    order = [role for _, role in fake.ran]
    assert order.index("spark-master") > max(i for i, r in enumerate(order) if r == "zookeeper")
    assert order.index("spark-worker") > order.index("spark-master")
    assert {o.action for o in report.outcomes} == {"changed"}
    assert len(report.outcomes) == 6
    run_dir = next((tmp_path / "t1" / "runs").glob("*-configure"))
    assert "wrote things" in (run_dir / "n2" / "zookeeper.log").read_text()
    assert "leader n2" in (run_dir / "health-zookeeper.txt").read_text()

    fake.ran.clear()
    fake.sessions.clear()
    again = run(tmp_path)
    assert fake.ran == []
    assert {o.action for o in again.outcomes} == {"unchanged"}
    assert again.exit_code() == 0
    # Nothing to do costs one session per host: the gates' first look (ZooKeeper's quorum,
    # the Spark workers) came with the status read, and it was healthy.
    assert sorted(fake.sessions) == ["n1", "n2", "n3"]
    assert {g: r.ok for g, r in again.health.items()} == {"zookeeper": True, "spark-workers": True}


def test_a_stopped_service_with_an_unchanged_script_is_restarted(tmp_path, fake):
    run(tmp_path)
    fake.ran.clear()
    fake.stopped = {("n3", "zookeeper"), ("n2", "spark-worker")}
    report = run(tmp_path)
    assert sorted(fake.ran) == [("n2", "spark-worker"), ("n3", "zookeeper")]
    actions = {(o.node, o.changes[0]): o.action for o in report.outcomes}
    assert actions.pop(("n3", "zookeeper")) == "restarted"
    assert actions.pop(("n2", "spark-worker")) == "restarted"
    assert set(actions.values()) == {"unchanged"}
    assert report.exit_code() == 0
    assert [name for name, _ in report.phases] == [
        "recorded hashes", "ZooKeeper ensemble", "Spark workers and clients"]
    # The health seen after the last change: only the gate after the Spark workers' restart.
    assert list(report.health) == ["spark-workers"]
    # Everything runs again: the next configure touches nothing.
    fake.ran.clear()
    assert {o.action for o in run(tmp_path).outcomes} == {"unchanged"} and fake.ran == []


def test_a_host_that_cannot_report_its_status_gets_its_scripts_run(tmp_path, fake, monkeypatch):
    run(tmp_path)
    fake.ran.clear()
    fake.status_broken = {"n1"}
    run(tmp_path)
    assert sorted(fake.ran) == [("n1", "spark-master"), ("n1", "zookeeper")]


def test_limit_and_roles_narrow_the_run(tmp_path, fake):
    report = run(tmp_path, roles=["spark-worker"], limit=["n3"])
    assert fake.ran == [("n3", "spark-worker")]
    assert [(o.node, o.changes) for o in report.outcomes] == [("n3", ["spark-worker"])]


def test_a_failed_host_stops_its_own_later_roles_and_the_others_go_on(tmp_path, monkeypatch):
    hosts = use(monkeypatch, FakeHosts(fail={("n3", "zookeeper")}))
    report = run(tmp_path)
    by = {(o.node, o.changes[0]): o for o in report.outcomes}
    failed = by[("n3", "zookeeper")]
    assert failed.status is Status.FAILED
    assert "it broke" in failed.error and "line 1" in failed.error    # the log's last lines
    assert by[("n1", "zookeeper")].status is Status.OK
    # Two members of three keep the quorum: the other hosts' later phases ran.
    for key in (("n1", "spark-master"), ("n2", "spark-worker")):
        assert by[key].status is Status.OK and by[key].action == "changed"
    left = by[("n3", "spark-worker")]
    assert left.status is Status.SKIPPED and left.action == "skipped"
    assert left.error == "not run: zookeeper failed on n3 (ZooKeeper ensemble)"
    assert ("n3", "spark-worker") not in hosts.ran
    assert report.exit_code() == 3


def test_no_quorum_fails_every_member_and_stops_their_hosts(tmp_path, monkeypatch):
    hosts = use(monkeypatch, FakeHosts(unhealthy=True))
    report = run(tmp_path)
    by = {(o.node, o.changes[0]): o for o in report.outcomes}
    for name in ("n1", "n2", "n3"):
        assert by[(name, "zookeeper")].status is Status.FAILED
        assert "ZooKeeper ensemble not healthy" in by[(name, "zookeeper")].error
    # Every host's zookeeper role failed (the gate): each host stops there.
    assert by[("n1", "spark-master")].status is Status.SKIPPED
    assert by[("n1", "spark-master")].error == "not run: zookeeper failed on n1 (ZooKeeper ensemble)"
    assert [r for _, r in hosts.ran] == ["zookeeper"] * 3
    assert report.exit_code() == 4


MESOS_CLUSTER = """\
roles:
  zookeeper: {source: preinstalled, server_script: /usr/share/zookeeper/bin/zkServer.sh}
  mesos: {source: tarball, url: "http://10.0.0.9/b/m.tar.xz", sha512: "%s"}
  spark: {source: preinstalled}
nodes:
  - {name: m1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1, roles: [zookeeper, mesos-master]}
  - {name: m2, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2, roles: [zookeeper, mesos-master]}
  - {name: m3, bmc: {port: 7003}, macs: ["52:54:00:00:00:03"], address: 10.0.0.3, roles: [zookeeper, mesos-master]}
  - {name: a1, bmc: {port: 7004}, macs: ["52:54:00:00:00:04"], address: 10.0.0.4, roles: [mesos-agent, spark-client]}
  - {name: a2, bmc: {port: 7005}, macs: ["52:54:00:00:00:05"], address: 10.0.0.5, roles: [mesos-agent, spark-client]}
""" % ("1f" * 64)


def _mesos_run(tmp_path, monkeypatch, fail: set[tuple[str, str]]):
    hosts = use(monkeypatch, FakeHosts(fail=fail))
    hosts.leader = "m1"
    ctx = VerbContext(parse_inventory(HEAD + MESOS_CLUSTER, path="inv.yaml"), state_root=tmp_path,
                      timeouts=replace(DEFAULT_TIMEOUTS, health=0.5))
    report = cfg.apply(ctx)
    return hosts, report, {(o.node, o.changes[0]): o for o in report.outcomes}


def test_one_dead_mesos_agent_stops_neither_the_other_agents_nor_spark(tmp_path, monkeypatch):
    hosts, report, by = _mesos_run(tmp_path, monkeypatch, {("a1", "mesos-agent")})
    assert by[("a1", "mesos-agent")].status is Status.FAILED
    left = by[("a1", "spark-client")]
    assert left.status is Status.SKIPPED
    assert left.error == "not run: mesos-agent failed on a1 (Mesos agents)"
    others = {k: o.status for k, o in by.items() if k[0] != "a1"}
    assert set(others.values()) == {Status.OK}, others
    assert ("a2", "mesos-agent") in hosts.ran and ("a2", "spark-client") in hosts.ran
    assert ("a1", "spark-client") not in hosts.ran
    # The agents' gate passed without a1 (a2 registered); its file keeps what it saw.
    gate = next((tmp_path / "t1" / "runs").glob("*-configure")) / "health-mesos-agents.txt"
    text = gate.read_text()
    assert "ok=False" in text and "problem: a1: agent not registered" in text, text
    assert "'a2': 'registered cpus:2;mem:1024;disk:2048'" in text, text
    assert "enough for what needs it (without a1): True" in text, text
    assert report.exit_code() == 3


def test_one_failed_zookeeper_member_stops_its_own_host_only(tmp_path, monkeypatch):
    hosts, report, by = _mesos_run(tmp_path, monkeypatch, {("m3", "zookeeper")})
    assert by[("m3", "mesos-master")].status is Status.SKIPPED
    assert by[("m3", "mesos-master")].error == "not run: zookeeper failed on m3 (ZooKeeper ensemble)"
    assert {o.status for k, o in by.items() if k[0] != "m3"} == {Status.OK}
    assert {r for h, r in hosts.ran if h in ("a1", "a2")} == {"mesos-agent", "spark-client"}
    assert report.exit_code() == 3


def test_a_lost_zookeeper_quorum_stops_every_phase_that_needs_it(tmp_path, monkeypatch):
    hosts, report, by = _mesos_run(tmp_path, monkeypatch, {("m2", "zookeeper"), ("m3", "zookeeper")})
    assert {r for _, r in hosts.ran} == {"zookeeper"}
    assert by[("m1", "zookeeper")].status is Status.OK
    lost = "the ZooKeeper ensemble, which lost its quorum: failed on m2, m3 of 3 members"
    assert by[("m1", "mesos-master")].error == f"not run: it needs {lost}"
    for name in ("a1", "a2"):
        assert by[(name, "mesos-agent")].error == f"not run: it needs the Mesos masters, which was not run (it needs {lost})"
        assert by[(name, "spark-client")].status is Status.SKIPPED
        assert "it needs the Mesos masters" in by[(name, "spark-client")].error
    assert report.exit_code() == 3


# ---- the CLI ---------------------------------------------------------------------------

def test_render_and_configure_commands(tmp_path, monkeypatch, lab_operator_key):
    from typer.testing import CliRunner

    from k1prov.cli import app

    monkeypatch.setenv("K1PROV_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", "-i", str(REPO / "inventories" / "lab.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "lab01" / "1-zookeeper.sh").is_file() and (out / "plan.json").is_file()
    bad = runner.invoke(app, ["configure", "-i", str(REPO / "inventories" / "lab.yaml"), "--roles", "hdfs"])
    assert bad.exit_code == 2 and "unknown role hdfs" in bad.output
    assert not (tmp_path / "state").exists()       # refused before anything was created


def test_inside_a_larger_verb_the_logs_go_to_its_run_record(tmp_path, fake):
    from k1prov.run_records import RunRecord, list_runs

    record = RunRecord(tmp_path, "t1", "cluster-up")
    report = run(tmp_path, record=record)
    assert report.exit_code() == 0
    # No run of its own: `runs list` shows the enclosing verb only, and the logs are in it.
    assert [r.verb for r in list_runs(tmp_path, "t1")] == ["cluster-up"]
    assert "wrote things" in (record.path / "configure" / "n2" / "zookeeper.log").read_text()


def test_decide_from_the_recorded_status():
    script = render_all(load())["n1"][0]
    assert cplan.decide(script, None) == cplan.RoleDecision(script.role, "run", "never ran here")
    assert cplan.decide(script, cplan.RoleStatus("", None)).reason == "never ran here"
    assert cplan.decide(script, cplan.RoleStatus("0" * 64, True)) == cplan.RoleDecision(script.role, "run",
                                                                                   "script changed", running=True)
    assert cplan.decide(script, cplan.RoleStatus(script.sha256, False)).action == "restart"
    assert cplan.decide(script, cplan.RoleStatus(script.sha256, True)) == cplan.RoleDecision(
        script.role, "unchanged", "script unchanged, service running", running=True)
    assert cplan.decide(script, cplan.RoleStatus(script.sha256, None)).action == "unchanged"


def test_plan_reads_the_hosts_like_the_run_and_changes_nothing(tmp_path, fake, monkeypatch):
    from k1prov.errors import TransportError
    from k1prov.roles.health import gate_checks

    inv = load()
    run(tmp_path)
    fake.ran.clear()
    fake.stopped = {("n3", "zookeeper")}
    real = fake.run_command

    def n2_down(target, command, **kw):
        if target.host == "n2":
            raise TransportError("n2", "connection refused")
        return real(target, command, **kw)

    monkeypatch.setattr(probe, "run_command", n2_down)
    got = cplan.plan(VerbContext(inv, state_root=tmp_path), render_all(inv), checks=gate_checks(inv),
                   known_hosts=None)
    assert fake.ran == []
    assert got.hosts["n1"].to_do == [] and got.hosts["n1"].error is None
    assert [(d.role, d.action, d.reason) for d in got.hosts["n3"].to_do] == [
        ("zookeeper", "restart", "service stopped")]
    assert got.hosts["n2"].error == "n2: connection refused" and got.hosts["n2"].decisions == []
    # The health of the same read: n2 did not answer.
    assert got.health()["zookeeper"].states["n2"] == "unreachable"


def test_a_member_stopped_earlier_is_excused_in_the_later_gates_that_look_at_it(tmp_path, monkeypatch):
    """m3 fails its ZooKeeper phase: its Mesos master is left out, and the agents' gate,
    which reads every master, does not hold that against the agents."""
    hosts = use(monkeypatch, FakeHosts(fail={("m3", "zookeeper")}))
    hosts.leader = "m1"
    unreachable = hosts.one_command

    def m3_gone(target, command):
        if target.host == "m3" and ":5050" in command:
            return CommandResult(target.host, 7, "", "")
        return unreachable(target, command)

    hosts.one_command = m3_gone
    ctx = VerbContext(parse_inventory(HEAD + MESOS_CLUSTER, path="inv.yaml"), state_root=tmp_path,
                      timeouts=replace(DEFAULT_TIMEOUTS, health=0.5))
    report = cfg.apply(ctx)
    by = {(o.node, o.changes[0]): o for o in report.outcomes}
    assert {k: o.status for k, o in by.items() if k[0] != "m3"} == {k: Status.OK for k in by if k[0] != "m3"}
    gate = (next((tmp_path / "t1" / "runs").glob("*-configure")) / "health-mesos-agents.txt").read_text()
    assert "problem: m3: no /state on port 5050" in gate and "(without m3): True" in gate, gate
    assert report.exit_code() == 3
