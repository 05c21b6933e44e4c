"""`resources: auto` (issue 21): an agent offers the hardware Ironic knows of its node
(cpus, memory_mb, local_gb, as `nodes inspect` sets them) less the documented reserves;
rendering reads them from Ironic only when an agent has `auto`, and a node Ironic knows
too little of stops configure before any host is touched."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import pytest

import k1prov.configure as cfg
from k1prov.context import VerbContext
from k1prov.errors import ConfigError, InventoryError, NodeError
from k1prov.inspection import agent_facts
from k1prov.preflight import check_roles
from k1prov.roles import agent_resources, render_all
from k1prov.roles.derive import auto_agents
from k1prov.settings import DEFAULT_TIMEOUTS
from tests.unit.configure_standin import FakeHosts, FakeIronic, IronicNode, load, use

MESOS_ROLES = """\
roles:
  zookeeper: {source: preinstalled, server_script: /usr/share/zookeeper/bin/zkServer.sh}
  mesos: {source: preinstalled, resources: auto%s}
  spark: {source: preinstalled, manager: standalone}
"""
MESOS_NODES = """\
nodes:
  - {name: n1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1,
     roles: [zookeeper, mesos-master, spark-master]}
  - {name: n2, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2,
     roles: [mesos-agent, spark-worker]}
  - {name: n3, bmc: {port: 7003}, macs: ["52:54:00:00:00:03"], address: 10.0.0.3,
     roles: [mesos-agent, spark-worker]}
"""
BIG = {"cpus": 8, "memory_mb": 32768, "local_gb": 100, "cpu_arch": "x86_64"}
# The lab's inspected agent: 2 CPUs, 2 GB of memory, a 3 GB disk.
LAB = {"cpus": "2", "memory_mb": "2048", "local_gb": "3"}


def inventory(extra: str = ""):
    return load(MESOS_ROLES % extra, MESOS_NODES)


def test_auto_offers_the_hardware_less_the_default_reserves():
    inv = inventory()
    n2 = inv.node("n2")
    assert [n.name for n in auto_agents(inv)] == ["n2", "n3"]
    # 1 CPU kept; memory and disk keep max(1024 MB, 10 %).
    assert agent_resources(inv, n2, BIG) == "cpus:7;mem:29492;disk:92160"
    # Small: the fixed reserves are the larger; Ironic's strings are read as numbers.
    assert agent_resources(inv, n2, LAB) == "cpus:1;mem:1024;disk:2048"
    # One CPU is still offered: an agent without a CPU runs nothing.
    assert agent_resources(inv, n2, {**LAB, "cpus": 1}).startswith("cpus:1;")


def test_the_reserves_are_settings():
    inv = inventory(", reserved_cpus: 2, reserved_memory_mb: 4096, reserved_disk_mb: 0, reserved_percent: 0")
    assert agent_resources(inv, inv.node("n2"), BIG) == "cpus:6;mem:28672;disk:102400"
    inv = inventory(", reserved_percent: 50")
    assert agent_resources(inv, inv.node("n2"), BIG) == "cpus:7;mem:16384;disk:51200"


def test_a_node_without_inspected_properties_is_named_with_the_way_on():
    inv = inventory()
    with pytest.raises(NodeError) as exc:
        agent_resources(inv, inv.node("n3"), {"cpus": 4, "cpu_arch": "x86_64"})
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("n3: resources: auto needs Ironic's memory_mb, local_gb")
    assert "k1prov nodes inspect n3" in message and "by hand" in message
    with pytest.raises(NodeError, match="n3: .*cpus, memory_mb, local_gb"):
        agent_resources(inv, inv.node("n3"), None)


def test_a_reserve_that_leaves_nothing_is_refused():
    inv = inventory()
    with pytest.raises(NodeError, match="n2: resources: auto leaves no memory .* 1024 MB"):
        agent_resources(inv, inv.node("n2"), {**LAB, "memory_mb": 1024})
    with pytest.raises(NodeError, match="leaves no disk .* 1 GB"):
        agent_resources(inv, inv.node("n2"), {**LAB, "local_gb": 1})


def test_a_node_may_ask_for_auto_on_its_own():
    inv = load(MESOS_ROLES.replace("resources: auto%s", "resources: \"cpus:1\""),
               MESOS_NODES.replace("roles: [mesos-agent, spark-worker]}\n  - {name: n3",
                                   "roles: [mesos-agent, spark-worker], properties: {mesos_resources: auto}}\n"
                                   "  - {name: n3"))
    assert [n.name for n in auto_agents(inv)] == ["n2"]
    assert agent_resources(inv, inv.node("n2"), BIG) == "cpus:7;mem:29492;disk:92160"
    assert agent_resources(inv, inv.node("n3"), BIG) == "cpus:1"


@pytest.mark.parametrize("value,reason", [
    ('"AUTO"', "write `auto` on its own, in lower case"),
    ('"cpus:1;auto"', "`auto` stands alone"),
])
def test_a_misspelt_auto_is_a_located_error(value, reason):
    with pytest.raises(InventoryError) as exc:
        load(MESOS_ROLES.replace("auto%s", value), MESOS_NODES)
    assert reason in str(exc.value)
    assert exc.value.line == 7 and exc.value.field == "roles.mesos.resources"


def test_reserved_percent_is_bounded():
    with pytest.raises(InventoryError, match="above 90"):
        inventory(", reserved_percent: 95")
    with pytest.raises(InventoryError, match="below 0"):
        inventory(", reserved_cpus: -1")


def test_the_agent_flags_carry_the_resolved_resources():
    inv = inventory()
    rendered = render_all(inv, {"n2": BIG, "n3": LAB})
    launchers = {name: next(f.text for s in scripts if s.role == "mesos-agent" for f in s.files
                            if f.path.endswith("mesos-agent-run"))
                 for name, scripts in rendered.items() if name != "n1"}
    assert "--resources=cpus:7;mem:29492;disk:92160 " in launchers["n2"].replace("'", "")
    assert "--resources=cpus:1;mem:1024;disk:2048 " in launchers["n3"].replace("'", "")
    # New hardware (a re-inspection) changes the script: configure runs it again.
    again = render_all(inv, {"n2": BIG, "n3": {**LAB, "memory_mb": 4096}})
    agent = lambda r, name: next(s.sha256 for s in r[name] if s.role == "mesos-agent")
    assert agent(again, "n2") == agent(rendered, "n2") and agent(again, "n3") != agent(rendered, "n3")


def test_rendering_auto_without_ironic_facts_is_refused_but_inventory_check_needs_none():
    inv = inventory()
    with pytest.raises(ConfigError, match="needs the nodes' Ironic properties"):
        render_all(inv)
    check_roles(inv)          # `inventory check` does not ask Ironic


def context(tmp_path, inv, ironic):
    ctx = VerbContext(inv, state_root=tmp_path, timeouts=replace(DEFAULT_TIMEOUTS, health=0.5))
    ctx.ironic = lambda: ironic
    return ctx


def test_ironic_is_asked_only_when_an_agent_has_auto(tmp_path):
    def no_ironic():
        raise AssertionError("Ironic asked")
    ctx = VerbContext(load(), state_root=tmp_path)
    ctx.ironic = no_ironic
    assert agent_facts(ctx) is None
    ironic = FakeIronic({"n2": IronicNode("n2", properties=BIG)})
    assert agent_facts(context(tmp_path, inventory(), ironic)) == {"n2": BIG}


def test_render_shows_the_resolved_resources(tmp_path):
    ironic = FakeIronic({"n1": IronicNode("n1"), "n2": IronicNode("n2", properties=BIG),
                         "n3": IronicNode("n3", properties=LAB)})
    result = cfg.render(context(tmp_path, inventory(), ironic), tmp_path / "out")
    assert result.data["agent_resources"] == {"n2": "cpus:7;mem:29492;disk:92160",
                                              "n3": "cpus:1;mem:1024;disk:2048"}
    written = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert written["agent_resources"] == result.data["agent_resources"]


def test_configure_stops_at_an_uninspected_agent_before_touching_a_host(tmp_path, monkeypatch):
    hosts = use(monkeypatch, FakeHosts())
    ironic = FakeIronic({"n1": IronicNode("n1"), "n2": IronicNode("n2", properties=BIG),
                         "n3": IronicNode("n3")})
    with pytest.raises(NodeError, match=r"^n3: resources: auto .*`k1prov nodes inspect n3`"):
        cfg.apply(context(tmp_path, inventory(), ironic))
    assert hosts.ran == [] and hosts.sessions == []
