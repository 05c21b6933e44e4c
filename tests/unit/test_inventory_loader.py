"""Tests of k1prov.inventory.loader: parsing, defaults, refusals with their locations."""
from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest

from k1prov.errors import InventoryError
from k1prov.inventory import load_inventory, parse_inventory, plan_rows

REPO = Path(__file__).resolve().parents[2]

BASE = """\
cluster: lab
cloud:
  cloud: k1prov-lab
defaults:
  bmc: {username: admin, password: {env: BMC_PASSWORD}}
nodes:
  - name: master1
    bmc: {address: 10.0.1.10}
    macs: ["52:54:00:aa:00:01"]
    address: 10.0.0.10
    roles: [zookeeper, mesos-master]
  - name: worker1
    bmc: {address: 10.0.1.11}
    macs: ["52:54:00:aa:00:02"]
    address: 10.0.0.11
    roles: [mesos-agent]
"""
SECRET = "Sup3r-s3cret-PW"


def text(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


def load(s: str):
    return parse_inventory(s, path="inv.yaml")


def line_of(s: str, marker: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `marker`, counted in the text itself."""
    hits = [i for i, line in enumerate(s.splitlines(), 1) if marker in line]
    assert len(hits) >= nth, f"marker {marker!r} not in text"
    return hits[nth - 1]


def refuse(s: str, field: str | None, line: int | None, reason: str) -> InventoryError:
    """Expect an InventoryError at exactly FIELD and LINE whose reason contains `reason`."""
    with pytest.raises(InventoryError) as info:
        load(s)
    err = info.value
    assert (err.field, err.line) == (field, line), str(err)
    prefix = (f"inv.yaml:{line}: " if line else "inv.yaml: ") + (f"{field}: " if field else "")
    assert str(err).startswith(prefix), str(err)
    assert reason in err.reason, str(err)
    return err


def with_node(extra: str) -> str:
    """BASE plus one more node entry (indented like the others)."""
    return BASE + textwrap.indent(text(extra), "  ")


# ---- the example inventories ---------------------------------------------------------

def test_devtower_example_loads_cleanly():
    inv = load_inventory(REPO / "inventories" / "devtower.yaml")
    assert inv.warnings == ()
    assert [n.name for n in inv.nodes] == ["devtower", "worker1", "worker2"]
    tower, w1, w2 = inv.nodes
    assert set(tower.roles) == {"zookeeper", "mesos-master", "spark-master"}
    assert w1.roles == w2.roles == ("mesos-agent", "spark-worker")
    assert w2.properties["cpus"] == 40 and w2.properties["memory_mb"] == 131072
    assert inv.roles["spark"]["manager"] == "mesos"
    assert inv.roles["spark"]["version"].startswith("3.5.")
    for n in inv.nodes:
        assert n.address.startswith("10.") and n.bmc.address.startswith("10.")


def test_large_example_expands_to_503_nodes():
    inv = load_inventory(REPO / "inventories" / "large.yaml")
    assert inv.warnings == ()
    assert len(inv.nodes) == 503
    assert [n.zookeeper_id for n in inv.with_role("zookeeper")] == [1, 2, 3]
    assert len(inv.with_role("mesos-master")) == 3
    last = inv.nodes[-1]
    assert last.name == "worker500" and last.index == 502
    assert last.address == "10.21.2.244"          # 10.21.1.1 + 499
    assert last.bmc.address == "10.20.3.244"
    assert last.macs == ("52:54:00:21:01:f4", "52:54:00:22:01:f4")   # +499 = 0x1f3
    text_lines = (REPO / "inventories" / "large.yaml").read_text().splitlines()
    assert "worker[001-500]" in text_lines[last.line - 1]
    assert inv.node("worker007").name == "worker007"


# ---- parsing and defaults ------------------------------------------------------------

def test_base_parses_with_defaults_merged():
    inv = load(BASE)
    assert inv.cluster == "lab" and inv.cloud.cloud == "k1prov-lab"
    m, w = inv.nodes
    assert (m.index, w.index) == (0, 1)
    assert m.bmc.username == "admin" and m.bmc.port == 623
    assert m.bmc.password.describe() == "env:BMC_PASSWORD"
    assert m.macs == ("52:54:00:aa:00:01",)
    assert m.line == line_of(BASE, "name: master1")
    assert w.line == line_of(BASE, "name: worker1")
    assert m.driver == "ipmi"
    assert inv.warnings == ()


def test_node_wins_over_defaults_and_dicts_merge_one_level():
    s = text("""
        cluster: lab
        cloud: {ironic_url: "http://127.0.0.1:6385"}
        defaults:
          bmc: {username: admin, password: {env: P}, port: 623}
          driver: ipmi
          interfaces: {power: ipmitool, deploy: direct}
          properties: {cpus: 48, memory_mb: 131072}
          capabilities: {boot_mode: uefi}
          roles: [spark-worker]
          resource_class: baremetal
        nodes:
          - name: a
            bmc: {address: 127.0.0.1, port: 6230}
            macs: ["52:54:00:00:00:01"]
            address: 10.0.0.1
            roles: [spark-master, zookeeper]
            interfaces: {deploy: fake}
            properties: {memory_mb: 4096, local_gb: 10}
            driver: fake-hardware
          - name: b
            bmc: {address: 127.0.0.1, port: 6231, username: other}
            macs: ["52:54:00:00:00:02"]
            address: 10.0.0.2
        """)
    a, b = load(s).nodes
    assert a.bmc.port == 6230 and a.bmc.username == "admin"
    assert b.bmc.username == "other" and b.bmc.password.describe() == "env:P"
    assert a.interfaces == {"power": "ipmitool", "deploy": "fake"}
    assert a.properties == {"cpus": 48, "memory_mb": 4096, "local_gb": 10}
    assert b.properties == {"cpus": 48, "memory_mb": 131072}
    assert a.roles == ("spark-master", "zookeeper")      # lists are replaced, not merged
    assert b.roles == ("spark-worker",)
    assert (a.driver, b.driver) == ("fake-hardware", "ipmi")
    assert a.resource_class == b.resource_class == "baremetal"
    assert a.capabilities == {"boot_mode": "uefi"}


def test_full_top_level_sections():
    s = text("""
        cluster: lab-2
        cloud: {ironic_url: "http://127.0.0.1:6385", glance_url: "http://127.0.0.1:9292",
                ironic_api_version: "1.80"}
        ssh: {user: debian, private_key: keys/id, port: 2222, gateway: "ops@jump.example:22",
              public_keys: ["ssh-ed25519 AAAAC3Nza k1@x"]}
        network: {prefix_length: 16, gateway: 10.0.0.1, dns: [10.0.0.2], mtu: 9000}
        images:
          deploy_kernel: {name: k, file: /srv/k, checksum: "sha256:%s"}
          user: {name: u, url: "https://x.example/u.raw", checksum: "SHA512:%s",
                 disk_format: raw, container_format: bare, bypass_glance: true}
        roles:
          zookeeper: {version: 3.10, client_port: 2182}
          mesos: {version: "1.11.0", containerizers: "mesos,docker"}
          spark: {version: "3.5.7", manager: standalone, mode: coarse}
        nodes:
          - {name: n1, bmc: {address: 127.0.0.1, username: u, password: {env: P}},
             macs: ["52:54:00:00:00:01"], address: 10.0.0.5, roles: [zookeeper, spark-master]}
        """) % ("a" * 64, "B" * 128)
    inv = parse_inventory(s, path="/etc/k1prov/inv.yaml")
    assert inv.cloud.ironic_api_version == "1.80"      # quoted: not the float 1.8
    assert inv.ssh.private_key == "/etc/k1prov/keys/id"
    assert inv.ssh.port == 2222 and inv.ssh.user == "debian"
    assert inv.network.dns == ("10.0.0.2",) and inv.network.mtu == 9000
    assert inv.images.deploy_kernel.file == "/srv/k"
    assert inv.images.user.checksum == "sha512:" + "b" * 128
    assert inv.images.user.bypass_glance is True
    assert inv.roles["zookeeper"]["version"] == "3.10"   # as written, not 3.1
    assert inv.roles["zookeeper"]["client_port"] == 2182
    assert inv.roles["mesos"]["cluster_name"] == "lab-2"
    assert inv.roles["spark"]["manager"] == "standalone"


def test_spark_manager_defaults_follow_the_roles():
    assert load(BASE).roles["spark"]["manager"] == "mesos"
    s = BASE.replace("[zookeeper, mesos-master]", "[spark-master]").replace(
        "[mesos-agent]", "[spark-worker]")
    assert load(s).roles["spark"]["manager"] == "standalone"


def test_cloud_shorthand_and_yaml_merge_keys():
    s = text("""
        cluster: lab
        cloud: k1prov-lab
        x-bmc: &bmc {username: admin, password: {env: P}}
        nodes:
          - name: a
            bmc: {<<: *bmc, address: 10.0.1.1, username: root}
            macs: [52:54:00:12:34:56]
            address: 10.0.0.1
        """)
    inv = load(s)
    assert inv.cloud.cloud == "k1prov-lab"
    node = inv.nodes[0]
    assert node.bmc.username == "root" and node.bmc.password.describe() == "env:P"
    # All-decimal unquoted MAC: YAML 1.1 reads a base-60 integer; the written text is used.
    assert node.macs == ("52:54:00:12:34:56",)


def test_mac_normalised_to_lower_case_colons():
    s = BASE.replace('"52:54:00:aa:00:01"', '"52-54-00-AA-00-0F"')
    assert load(s).nodes[0].macs == ("52:54:00:aa:00:0f",)


# ---- passwords -----------------------------------------------------------------------

def test_password_file_relative_to_inventory_directory(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "bmc.pw").write_text(SECRET + "\n")
    s = BASE.replace("{env: BMC_PASSWORD}", "{file: secrets/bmc.pw}")
    inv_path = tmp_path / "inv.yaml"
    inv_path.write_text(s)
    inv = load_inventory(inv_path)
    ref = inv.nodes[0].bmc.password
    assert ref.file == str(tmp_path / "secrets" / "bmc.pw")
    assert ref.reveal() == SECRET
    assert ref.origin == f"{inv_path}:{line_of(s, 'password:')}"


def test_password_file_with_home_or_variable_is_kept_for_reveal_time():
    s = BASE.replace("{env: BMC_PASSWORD}", "{file: ~/bmc.pw}")
    assert load(s).nodes[0].bmc.password.file == "~/bmc.pw"
    s = BASE.replace("{env: BMC_PASSWORD}", "{file: $CREDS/bmc.pw}")
    assert load(s).nodes[0].bmc.password.file == "$CREDS/bmc.pw"


def test_inline_password_is_accepted_with_a_located_warning(caplog):
    s = BASE.replace("{env: BMC_PASSWORD}", f'"{SECRET}"')
    with caplog.at_level(logging.WARNING, logger="k1prov.inventory"):
        inv = load(s)
    line = line_of(s, "password:")
    assert inv.warnings == (
        f"inv.yaml:{line}: defaults.bmc.password: inline password; use env: or file:",)
    assert inv.nodes[0].bmc.password.reveal() == SECRET
    assert caplog.messages == list(inv.warnings)
    assert SECRET not in caplog.text
    rows = plan_rows(inv)
    assert SECRET not in json.dumps(rows) and SECRET not in repr(inv)
    assert rows[0]["password"] == "inline:***"


def test_inline_password_keeps_the_written_text():
    s = BASE.replace("{env: BMC_PASSWORD}", "0123")     # YAML 1.1 would read octal 83
    assert load(s).nodes[0].bmc.password.reveal() == "0123"


@pytest.mark.parametrize("shape, field, reason", [
    ("[%s]" % SECRET, "defaults.bmc.password", "must be {env: NAME}"),
    ("{env: \"%s !\"}" % SECRET, "defaults.bmc.password.env", "not an environment variable name"),
    ("{value: %s}" % SECRET, "defaults.bmc.password.value", "unknown field 'value'"),
    ("{env: X, file: %s}" % SECRET, "defaults.bmc.password", "exactly one of env"),
])
def test_malformed_password_never_echoes_the_value(shape, field, reason):
    s = BASE.replace("{env: BMC_PASSWORD}", shape)
    err = refuse(s, field, line_of(s, "password:"), reason)
    assert SECRET not in str(err)


def test_yaml_syntax_error_is_located_and_does_not_quote_the_line():
    s = BASE.replace("{env: BMC_PASSWORD}", f"{{env: {SECRET}, ]")
    with pytest.raises(InventoryError) as info:
        load(s)
    assert info.value.line in (line_of(s, "password:"), line_of(s, "password:") + 1)
    assert str(info.value).startswith(f"inv.yaml:{info.value.line}: invalid YAML")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("tagged", [f"!!int {SECRET}", f"!!timestamp 2024-13-45{SECRET}",
                                    f"!vault {SECRET}"])
def test_tag_errors_do_not_quote_the_value(tagged):
    s = BASE.replace("{env: BMC_PASSWORD}", tagged)
    with pytest.raises(InventoryError) as info:
        load(s)
    assert info.value.line == line_of(s, "password:")
    assert SECRET not in str(info.value)


def test_errors_elsewhere_do_not_leak_inline_password():
    s = BASE.replace("{env: BMC_PASSWORD}", f'"{SECRET}"').replace("10.0.0.11", "10.0.0.999")
    err = refuse(s, "nodes[1].address", line_of(s, "10.0.0.999"), "not an IP address")
    assert SECRET not in str(err)


# ---- plan rows -----------------------------------------------------------------------

def test_plan_rows_are_json_safe_and_complete():
    rows = plan_rows(load(BASE))
    assert json.loads(json.dumps(rows)) == rows
    assert rows[0] == {
        "name": "master1", "bmc": "10.0.1.10:623", "bmc_user": "admin",
        "password": "env:BMC_PASSWORD", "macs": ["52:54:00:aa:00:01"], "address": "10.0.0.10",
        "roles": ["zookeeper", "mesos-master"], "driver": "ipmi", "interfaces": {},
        "resource_class": None, "conductor_group": None, "shard": None, "zookeeper_id": 1,
    }
    assert rows[1]["zookeeper_id"] is None


# ---- refusals, each at its field and line --------------------------------------------

def test_refuses_unknown_top_level_key():
    s = BASE + "node: []\n"
    refuse(s, "node", line_of(s, "node: []"), "unknown field 'node' (did you mean 'nodes'?)")


def test_refuses_unknown_node_key():
    s = BASE.replace('    macs: ["52:54:00:aa:00:02"]', '    mac: ["52:54:00:aa:00:02"]')
    refuse(s, "nodes[1].mac", line_of(s, "mac: ["), "did you mean 'macs'?")


def test_refuses_unknown_bmc_key_in_defaults():
    s = BASE.replace("{username: admin,", "{user: admin,")
    refuse(s, "defaults.bmc.user", line_of(s, "user: admin"), "unknown field 'user'")


def test_refuses_missing_cluster():
    s = BASE.replace("cluster: lab\n", "")
    refuse(s, "cluster", 1, "required field missing")


def test_refuses_missing_node_address():
    s = BASE.replace("    address: 10.0.0.11\n", "")
    refuse(s, "nodes[1].address", line_of(s, "name: worker1"), "required field missing")


def test_refuses_missing_bmc_username():
    s = BASE.replace("{username: admin, password: {env: BMC_PASSWORD}}", "{password: {env: P}}")
    refuse(s, "nodes[0].bmc.username", line_of(s, "address: 10.0.1.10"), "required field missing")


def test_refuses_missing_bmc_entirely():
    s = BASE.replace("defaults:\n  bmc: {username: admin, password: {env: BMC_PASSWORD}}\n", "")
    s = s.replace("    bmc: {address: 10.0.1.10}\n", "")
    refuse(s, "nodes[0].bmc.address", line_of(s, "name: master1"), "required field missing")


def test_refuses_defaults_for_per_node_fields():
    s = BASE.replace("defaults:\n", "defaults:\n  address: 10.0.0.1\n")
    refuse(s, "defaults.address", line_of(s, "defaults:") + 1, "cannot have a default")


def test_refuses_empty_and_non_mapping_files():
    refuse("", None, None, "empty inventory")
    refuse("- a\n- b\n", None, 1, "must be a mapping")


def test_refuses_duplicate_yaml_key():
    s = BASE.replace("    address: 10.0.0.11\n", "    address: 10.0.0.11\n    address: 10.0.0.12\n")
    refuse(s, None, line_of(s, "address: 10.0.0.12"), "duplicate key 'address'")


def test_refuses_missing_file(tmp_path):
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "nope.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


def test_refuses_duplicate_node_names_ignoring_case():
    s = BASE.replace("name: worker1", "name: Master1")
    err = refuse(s, "nodes[1].name", line_of(s, "name: Master1"), "duplicate node name")
    assert f"already used by master1 (line {line_of(s, 'name: master1')})" in err.reason


def test_refuses_duplicate_mac_across_nodes():
    s = BASE.replace('"52:54:00:aa:00:02"', '"52:54:00:AA:00:01"')
    err = refuse(s, "nodes[1].macs[0]", line_of(s, '"52:54:00:AA:00:01"'), "duplicate MAC")
    assert "52:54:00:aa:00:01" in err.reason and "master1" in err.reason


def test_refuses_duplicate_mac_within_a_node():
    s = BASE.replace('["52:54:00:aa:00:02"]', '["52:54:00:aa:00:02", "52:54:00:aa:00:02"]')
    refuse(s, "nodes[1].macs[1]", line_of(s, '"52:54:00:aa:00:02", "'), "duplicate MAC")


def test_refuses_duplicate_os_address():
    s = BASE.replace("address: 10.0.0.11", "address: 10.0.0.10")
    refuse(s, "nodes[1].address", line_of(s, "address: 10.0.0.10", 2), "duplicate address 10.0.0.10")


def test_refuses_duplicate_bmc_address_and_port_but_not_same_address_other_port():
    s = BASE.replace("{address: 10.0.1.11}", "{address: 10.0.1.10}")
    refuse(s, "nodes[1].bmc.address", line_of(s, "address: 10.0.1.10", 2),
           "duplicate BMC 10.0.1.10 port 623")
    s = BASE.replace("{address: 10.0.1.10}", "{address: 127.0.0.1, port: 6230}").replace(
        "{address: 10.0.1.11}", "{address: 127.0.0.1, port: 6231}")
    assert [n.bmc.port for n in load(s).nodes] == [6230, 6231]


@pytest.mark.parametrize("mac, reason", [
    ("52:54:00:aa:00", "is not a MAC address"),
    ("52:54:00:aa:00:0g", "is not a MAC address"),
    ("52:54:00-aa:00:01", "is not a MAC address"),
    ("01:00:5e:00:00:01", "multicast"),
])
def test_refuses_malformed_mac(mac, reason):
    s = BASE.replace('"52:54:00:aa:00:02"', f'"{mac}"')
    refuse(s, "nodes[1].macs[0]", line_of(s, f'"{mac}"'), reason)


@pytest.mark.parametrize("value", ["10.0.1.300", "10.0.1", "bmc1.example", "1.2.3.4/24"])
def test_refuses_malformed_bmc_address(value):
    s = BASE.replace("{address: 10.0.1.11}", f'{{address: "{value}"}}')
    refuse(s, "nodes[1].bmc.address", line_of(s, f'"{value}"'), "not an IP address")


def test_refuses_ipv6_os_address():
    s = BASE.replace("address: 10.0.0.11", 'address: "fd00::11"')
    refuse(s, "nodes[1].address", line_of(s, "fd00::11"), "not an IP address (IPv4)")


@pytest.mark.parametrize("port", ["70000", "0", '"623"', "true"])
def test_refuses_malformed_bmc_port(port):
    s = BASE.replace("{address: 10.0.1.11}", f"{{address: 10.0.1.11, port: {port}}}")
    refuse(s, "nodes[1].bmc.port", line_of(s, "address: 10.0.1.11"), "not a port number")


def test_refuses_bad_port_from_defaults_at_the_defaults_line():
    s = BASE.replace("{username: admin,", "{port: 99999, username: admin,")
    refuse(s, "defaults.bmc.port", line_of(s, "port: 99999"), "not a port number")


@pytest.mark.parametrize("name", ["$(rm -rf /)", "a b", "x\\\"y", "-lead", "trail-", "n" * 64,
                                  "under_score", "dotted.name", "caf\u00e9"])
def test_refuses_names_that_are_not_host_names(name):
    s = BASE.replace("name: worker1", f'name: "{name}"')
    err = refuse(s, "nodes[1].name", line_of(s, "name: \""), "not a valid host name")
    assert "RFC 1123" in err.reason


def test_accepts_63_character_name():
    s = BASE.replace("name: worker1", "name: " + "w" * 63)
    assert load(s).nodes[1].name == "w" * 63


def test_refuses_bad_cluster_name():
    s = BASE.replace("cluster: lab", "cluster: Lab_1")
    refuse(s, "cluster", 1, "not a valid cluster name")


def test_refuses_unknown_role():
    s = BASE.replace("[mesos-agent]", "[mesos-agent, mesos-slave]")
    err = refuse(s, "nodes[1].roles[1]", line_of(s, "mesos-slave"), "unknown role 'mesos-slave'")
    assert "mesos-agent" in err.reason        # lists the known roles


def test_refuses_mesos_without_zookeeper():
    s = BASE.replace("[zookeeper, mesos-master]", "[mesos-master]")
    refuse(s, "nodes[0].roles", line_of(s, "[mesos-master]"), "no node has the zookeeper role")


def test_refuses_mesos_agent_without_master():
    s = BASE.replace("[zookeeper, mesos-master]", "[zookeeper]")
    refuse(s, "nodes[1].roles", line_of(s, "[mesos-agent]"), "no node is a mesos-master")


def test_refuses_spark_worker_without_master_in_standalone():
    s = BASE.replace("[zookeeper, mesos-master]", "[zookeeper]").replace(
        "[mesos-agent]", "[spark-worker]")
    refuse(s, "nodes[1].roles", line_of(s, "[spark-worker]"), "no node is a spark-master")


def test_refuses_spark_4_with_mesos_manager():
    s = BASE.replace("[mesos-agent]", "[mesos-agent, spark-worker]") + \
        'roles:\n  spark: {version: "4.0.1", manager: mesos}\n'
    err = refuse(s, "roles.spark.version", line_of(s, "4.0.1"), "Spark removed Mesos support in 4.0")
    assert "spark.manager is mesos" in err.reason


def test_refuses_spark_4_next_to_mesos_roles_even_if_standalone():
    s = BASE.replace("[mesos-agent]", "[mesos-agent, spark-worker, spark-master]") + \
        'roles:\n  spark: {version: "4.1.0", manager: standalone}\n'
    err = refuse(s, "roles.spark.version", line_of(s, "4.1.0"), "Spark removed Mesos support in 4.0")
    assert "master1 has a Mesos role" in err.reason


def test_accepts_spark_4_standalone_without_mesos():
    s = BASE.replace("[zookeeper, mesos-master]", "[spark-master]").replace(
        "[mesos-agent]", "[spark-worker]") + 'roles:\n  spark: {version: "4.0.1"}\n'
    assert load(s).roles["spark"]["manager"] == "standalone"


def test_refuses_duplicate_zookeeper_id():
    s = BASE.replace("[mesos-agent]", "[mesos-agent, zookeeper]\n    zookeeper_id: 3").replace(
        "[zookeeper, mesos-master]", "[zookeeper, mesos-master]\n    zookeeper_id: 3")
    refuse(s, "nodes[1].zookeeper_id", line_of(s, "zookeeper_id: 3", 2), "duplicate zookeeper_id 3")


@pytest.mark.parametrize("value", ["0", "256", "one", "-1"])
def test_refuses_invalid_zookeeper_id(value):
    s = BASE.replace("[zookeeper, mesos-master]", f"[zookeeper, mesos-master]\n    zookeeper_id: {value}")
    refuse(s, "nodes[0].zookeeper_id", line_of(s, "zookeeper_id"), "is not a ZooKeeper id (1-255)")


def test_refuses_zookeeper_id_without_zookeeper_role():
    s = BASE.replace("[mesos-agent]", "[mesos-agent]\n    zookeeper_id: 2")
    refuse(s, "nodes[1].zookeeper_id", line_of(s, "zookeeper_id: 2"), "not the zookeeper role")


def test_refuses_explicit_zookeeper_id_that_a_default_id_would_repeat():
    s = BASE.replace("[mesos-agent]", "[mesos-agent, zookeeper]\n    zookeeper_id: 1")
    refuse(s, "nodes[0].roles", line_of(s, "[zookeeper, mesos-master]"), "default zookeeper_id 1")


def test_zookeeper_ids_default_to_position_among_members():
    s = BASE.replace("[mesos-agent]", "[mesos-agent, zookeeper]") + with_node("""
        - name: zk3
          bmc: {address: 10.0.1.12}
          macs: ["52:54:00:aa:00:03"]
          address: 10.0.0.12
          roles: [zookeeper]
        """)[len(BASE):]
    inv = load(s)
    assert [(n.name, n.zookeeper_id) for n in inv.with_role("zookeeper")] == \
        [("master1", 1), ("worker1", 2), ("zk3", 3)]
    assert inv.warnings == ()


def test_warns_on_even_zookeeper_ensemble():
    s = BASE.replace("[mesos-agent]", "[mesos-agent, zookeeper]")
    inv = load(s)
    line = line_of(s, "[mesos-agent, zookeeper]")
    assert inv.warnings == (f"inv.yaml:{line}: nodes[1].roles: 2 zookeeper members: an even "
                            "ensemble survives no more failures than 1 members; use an odd number",)


def test_refuses_cloud_without_entry_or_ironic_url():
    s = BASE.replace("  cloud: k1prov-lab\n", '  glance_url: "http://127.0.0.1:9292"\n')
    refuse(s, "cloud", 2, "clouds.yaml entry (cloud: NAME) or ironic_url")


def test_refuses_unquoted_ironic_api_version():
    s = BASE.replace("  cloud: k1prov-lab\n", "  cloud: k1prov-lab\n  ironic_api_version: 1.80\n")
    refuse(s, "cloud.ironic_api_version", 4, "quoted string")


def test_refuses_non_http_ironic_url():
    s = BASE.replace("  cloud: k1prov-lab\n", "  ironic_url: ftp://x\n")
    refuse(s, "cloud.ironic_url", 3, "not an http(s) URL")


@pytest.mark.parametrize("checksum, reason", [
    ("md5:" + "a" * 32, "must be 'sha256:HEX' or 'sha512:HEX'"),
    ("a" * 64, "must be 'sha256:HEX' or 'sha512:HEX'"),
    ("sha256:" + "a" * 63, "sha256 checksum must be 64 hex digits, got 63"),
    ("sha512:" + "a" * 64, "sha512 checksum must be 128 hex digits, got 64"),
    ("sha256:" + "z" * 64, "not hex"),
])
def test_refuses_bad_checksum(checksum, reason):
    s = BASE + f'images:\n  user:\n    name: u\n    file: u.raw\n    checksum: "{checksum}"\n'
    refuse(s, "images.user.checksum", line_of(s, "checksum:"), reason)


def test_refuses_image_with_both_file_and_url():
    s = BASE + 'images:\n  user: {name: u, file: u.raw, url: "http://x/u.raw"}\n'
    refuse(s, "images.user", line_of(s, "user: {"), "not both")


def test_image_with_name_only_refers_to_the_catalog(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text(BASE + "images:\n  deploy_kernel: {name: k1prov-lab-deploy-kernel}\n")
    src = load_inventory(f).images.deploy_kernel
    assert (src.name, src.file, src.url) == ("k1prov-lab-deploy-kernel", None, None)


def test_image_file_is_relative_to_the_inventory(tmp_path):
    s = BASE + "images:\n  user: {name: u, file: ../img/u.raw}\n"
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "x.yaml").write_text(s)
    inv = load_inventory(tmp_path / "inv" / "x.yaml")
    assert inv.images.user.file == str(tmp_path / "inv" / ".." / "img" / "u.raw")


def test_refuses_unknown_ironic_interface():
    s = BASE.replace("  bmc: {username", "  interfaces: {powr: ipmitool}\n  bmc: {username")
    refuse(s, "defaults.interfaces.powr", line_of(s, "powr"), "unknown Ironic interface 'powr'")


def test_refuses_ssh_public_key_that_is_not_one():
    s = BASE + 'ssh: {public_keys: ["AAAA-not-a-key"]}\n'
    refuse(s, "ssh.public_keys[0]", line_of(s, "ssh:"), "not an OpenSSH public key")


def test_reads_public_key_files(tmp_path):
    (tmp_path / "k.pub").write_text("# comment\nssh-ed25519 AAAAC3NzaC1 me@host\n")
    s = BASE + "ssh: {public_key_files: [k.pub]}\n"
    (tmp_path / "inv.yaml").write_text(s)
    assert load_inventory(tmp_path / "inv.yaml").ssh.public_keys == ("ssh-ed25519 AAAAC3NzaC1 me@host",)
    (tmp_path / "k.pub").unlink()
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "inv.yaml")
    assert (info.value.field, info.value.line) == ("ssh.public_key_files[0]", line_of(s, "ssh:"))


def test_refuses_empty_node_list():
    s = BASE.split("nodes:")[0] + "nodes: []\n"
    refuse(s, "nodes", line_of(s, "nodes: []"), "at least one node")


def test_warns_when_an_address_is_outside_the_gateway_network():
    s = BASE.replace("address: 10.0.0.11", "address: 10.0.9.11") + \
        "network: {prefix_length: 24, gateway: 10.0.0.1}\n"
    inv = load(s)
    assert inv.warnings == (f"inv.yaml:{line_of(s, '10.0.9.11')}: nodes[1].address: 10.0.9.11 of "
                            "worker1 is outside 10.0.0.0/24, the network of gateway 10.0.0.1",)


# ---- shards (issue 22) -------------------------------------------------------------------

def test_a_shard_is_read_per_node_and_asks_for_the_api_version_that_has_it():
    s = BASE.replace("    roles: [mesos-agent]\n", "    roles: [mesos-agent]\n    shard: rack-b\n")
    inv = load(s)
    assert [n.shard for n in inv.nodes] == [None, "rack-b"]
    assert inv.cloud.ironic_api_version == "1.82"
    assert plan_rows(inv)[1]["shard"] == "rack-b"
    # Without a shard the default version stays what it was.
    assert load(BASE).cloud.ironic_api_version == "1.78"


def test_a_shard_from_defaults_applies_to_every_node_and_a_newer_pin_is_kept():
    s = BASE.replace("defaults:\n", "defaults:\n  shard: s1\n").replace(
        "  cloud: k1prov-lab\n", '  cloud: k1prov-lab\n  ironic_api_version: "1.90"\n')
    inv = load(s)
    assert [n.shard for n in inv.nodes] == ["s1", "s1"]
    assert inv.cloud.ironic_api_version == "1.90"


def test_refuses_a_shard_under_a_pinned_older_api_version():
    s = BASE.replace("  cloud: k1prov-lab\n", '  cloud: k1prov-lab\n  ironic_api_version: "1.78"\n'
                     ).replace("    roles: [mesos-agent]\n", "    roles: [mesos-agent]\n    shard: rack-b\n")
    err = refuse(s, "cloud.ironic_api_version", 4, "needs Ironic API 1.82")
    assert f"worker1 has a shard (line {line_of(s, 'shard: rack-b')})" in err.reason


def test_refuses_a_shard_that_is_not_a_name():
    s = BASE.replace("    roles: [mesos-agent]\n", "    roles: [mesos-agent]\n    shard: rack b\n")
    refuse(s, "nodes[1].shard", line_of(s, "shard: rack b"), "may only contain")
