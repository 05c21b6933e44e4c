"""`driver: redfish` nodes: the inventory's bmc block (url, system_id, verify), its located
errors, and the driver_info and interfaces Ironic gets for them (issue 21)."""
from __future__ import annotations

import pytest

from k1prov.errors import InventoryError
from k1prov.inventory import parse_inventory
from k1prov.ironic import IronicNodes, desired_for

from sdk_standin import RecordingBaremetal

HEAD = """\
cluster: c
cloud: {cloud: lab}
defaults:
  bmc: {username: admin, password: {env: P}}
nodes:
"""
SYSTEM = "/redfish/v1/Systems/437XR1138R2"


def load(s: str, tmp_path=None):
    path = str(tmp_path / "inv.yaml") if tmp_path is not None else "inv.yaml"
    return parse_inventory(s, path=path)


def line_of(s: str, marker: str) -> int:
    return next(i for i, line in enumerate(s.splitlines(), 1) if marker in line)


def refuse(s: str, field: str, marker: str, reason: str, tmp_path=None) -> InventoryError:
    line = line_of(s, marker)
    with pytest.raises(InventoryError) as info:
        load(s, tmp_path)
    err = info.value
    assert (err.field, err.line) == (field, line), str(err)
    assert f":{line}: {field}: " in str(err) and "\n" not in str(err), str(err)
    assert reason in err.reason, str(err)
    return err


def node(bmc: str, name: str = "rf01", mac: str = "52:54:00:00:00:01", address: str = "10.0.0.1",
         driver: str = "redfish") -> str:
    return (f"  - name: {name}\n    driver: {driver}\n    bmc: {bmc}\n    macs: [\"{mac}\"]\n"
            f"    address: {address}\n")


def test_a_redfish_bmc_is_a_url_with_a_system_and_tls_checked_by_default():
    inv = load(HEAD + node(f'{{url: "https://10.0.0.5", system_id: "{SYSTEM}"}}'))
    bmc = inv.nodes[0].bmc
    assert (bmc.url, bmc.system_id, bmc.verify) == ("https://10.0.0.5", SYSTEM, True)
    assert (bmc.address, bmc.port) == ("10.0.0.5", 443)
    assert bmc.endpoint == "https://10.0.0.5" + SYSTEM
    # A trailing slash and a port are kept as Ironic's redfish_address wants them.
    bmc = load(HEAD + node('{url: "http://127.0.0.1:8000/", verify: false}')).nodes[0].bmc
    assert (bmc.url, bmc.port, bmc.system_id, bmc.verify) == ("http://127.0.0.1:8000", 8000, None, False)


def test_verify_may_name_a_ca_file_relative_to_the_inventory(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    inv = load(HEAD + node('{url: "https://bmc.example", verify: ca.pem}'), tmp_path)
    assert inv.nodes[0].bmc.verify == str(tmp_path / "ca.pem")
    s = HEAD + node('{url: "https://bmc.example", verify: missing.pem}')
    refuse(s, "nodes[0].bmc.verify", "missing.pem", "does not exist", tmp_path)
    s = HEAD + node('{url: "https://bmc.example", verify: 3}')
    refuse(s, "nodes[0].bmc.verify", "verify: 3", "true, false or a CA file")


@pytest.mark.parametrize("url, reason", [
    ("ftp://10.0.0.5", "scheme must be http or https"),
    ("10.0.0.5", "scheme must be http or https"),
    ("https://", "no host"),
    ("https://10.0.0.5:99999", "not a URL"),
    (f"https://10.0.0.5{SYSTEM}", "goes in bmc.system_id"),
])
def test_a_bad_url_is_a_located_error(url, reason):
    s = HEAD + node(f'{{url: "{url}"}}')
    refuse(s, "nodes[0].bmc.url", url, reason)


def test_credentials_in_the_url_are_refused_without_printing_them():
    s = HEAD + node('{url: "https://root:hunter2@10.0.0.5"}')
    err = refuse(s, "nodes[0].bmc.url", "hunter2", "must not carry credentials")
    assert "hunter2" not in str(err)


def test_a_system_id_is_a_systems_path():
    s = HEAD + node('{url: "https://10.0.0.5", system_id: "437XR1138R2"}')
    refuse(s, "nodes[0].bmc.system_id", "system_id", "not a system's path")


def test_fields_of_the_other_kind_of_bmc_are_errors_on_the_node():
    s = HEAD + node('{url: "https://10.0.0.5", address: 10.0.0.5}')
    refuse(s, "nodes[0].bmc.address", "address: 10.0.0.5}", "a Redfish BMC is named by bmc.url")
    s = HEAD + node('{address: 10.0.0.5, verify: false}', driver="ipmi")
    refuse(s, "nodes[0].bmc.verify", "verify: false", "only for driver: redfish")
    s = HEAD + node("{}")
    refuse(s, "nodes[0].bmc.url", "bmc: {}", "required field missing")


def test_defaults_serve_ipmi_and_redfish_nodes_alike():
    s = ("cluster: c\ncloud: {cloud: lab}\ndefaults:\n"
         "  bmc: {address: 10.0.0.9, username: admin, password: {env: P}, url: \"https://10.0.1.9\"}\n"
         "nodes:\n"
         + node("{port: 6230}", name="ip01", driver="ipmi")
         + node(f'{{system_id: "{SYSTEM}"}}', name="rf01", mac="52:54:00:00:00:02", address="10.0.0.2"))
    ip, rf = load(s).nodes
    assert (ip.bmc.address, ip.bmc.port, ip.bmc.url) == ("10.0.0.9", 6230, None)
    assert (rf.bmc.url, rf.bmc.system_id) == ("https://10.0.1.9", SYSTEM)


def test_a_range_of_redfish_nodes_and_their_systems():
    s = HEAD + node('{url: "https://10.0.1.[11-13]", system_id: "/redfish/v1/Systems/[1-3]"}',
                    name="rf[01-03]", mac="52:54:00:00:00:[01-03]", address="10.0.0.[1-3]")
    inv = load(s)
    assert [n.bmc.endpoint for n in inv.nodes] == [
        "https://10.0.1.11/redfish/v1/Systems/1", "https://10.0.1.12/redfish/v1/Systems/2",
        "https://10.0.1.13/redfish/v1/Systems/3"]
    # An IPv6 host's brackets are not a range.
    bmc = load(HEAD + node('{url: "https://[fd00::5]:8443"}')).nodes[0].bmc
    assert (bmc.url, bmc.address, bmc.port) == ("https://[fd00::5]:8443", "fd00::5", 8443)


def test_one_bmc_may_serve_several_systems_but_not_one_system_twice():
    one = f'{{url: "https://10.0.0.5", system_id: "{SYSTEM}"}}'
    s = HEAD + node(one) + node('{url: "https://10.0.0.5", system_id: "/redfish/v1/Systems/2"}',
                                name="rf02", mac="52:54:00:00:00:02", address="10.0.0.2")
    assert len(load(s).nodes) == 2
    s = HEAD + node(one) + node(one, name="rf02", mac="52:54:00:00:00:02", address="10.0.0.2")
    with pytest.raises(InventoryError, match="duplicate BMC https://10.0.0.5/redfish"):
        load(s)


# ---- what Ironic gets --------------------------------------------------------------------

def _redfish_node(verify: str = "false", system: bool = True):
    sys_part = f', system_id: "{SYSTEM}"' if system else ""
    return load(HEAD + node(f'{{url: "https://10.0.0.5"{sys_part}, verify: {verify}}}')).nodes[0]


def test_driver_info_is_redfish_and_power_and_management_are_set(monkeypatch):
    monkeypatch.setenv("P", "s3cret")
    want = desired_for(_redfish_node(), "c")
    assert want.driver_info == {"redfish_address": "https://10.0.0.5", "redfish_system_id": SYSTEM,
                                "redfish_username": "admin", "redfish_verify_ca": False}
    assert want.attrs["driver"] == "redfish"
    assert (want.attrs["power_interface"], want.attrs["management_interface"]) == ("redfish", "redfish")
    # No system_id: Ironic uses the BMC's only system.
    assert "redfish_system_id" not in desired_for(_redfish_node(system=False), "c").driver_info


def test_create_sends_the_redfish_password_and_a_move_from_ipmi_drops_the_ipmi_login(monkeypatch):
    monkeypatch.setenv("P", "s3cret")
    baremetal = RecordingBaremetal("c")
    ironic = IronicNodes(type("Conn", (), {"baremetal": baremetal})(), cluster="c")
    n = _redfish_node()
    ironic.ensure(n, None)
    created = next(iter(baremetal.by_id.values()))
    assert created.driver_info["redfish_password"] == "s3cret"
    assert not any(k.startswith("ipmi_") for k in created.driver_info)

    # The same node as an IPMI node (same password): moving it to redfish sends the password
    # under its new key and removes the ipmi_* keys.
    created.driver = "ipmi"
    created.driver_info = {"ipmi_address": "10.0.0.5", "ipmi_port": 623, "ipmi_username": "admin",
                           "ipmi_password": "******"}
    result = ironic.ensure(n, created)
    assert created.driver == "redfish"
    assert created.driver_info["redfish_password"] == "s3cret"
    assert not any(k.startswith("ipmi_") for k in created.driver_info)
    assert "driver_info.ipmi_password removed" in result.changes
    assert "s3cret" not in " ".join(result.changes)

    # As the inventory has it: nothing to send.
    created.driver_info["redfish_password"] = "******"
    assert ironic.ensure(n, created).changes == []


def test_a_system_id_taken_out_of_the_inventory_is_removed_from_ironic(monkeypatch):
    monkeypatch.setenv("P", "s3cret")
    baremetal = RecordingBaremetal("c")
    ironic = IronicNodes(type("Conn", (), {"baremetal": baremetal})(), cluster="c")
    ironic.ensure(_redfish_node(), None)
    created = next(iter(baremetal.by_id.values()))
    created.driver_info["redfish_password"] = "******"
    result = ironic.ensure(_redfish_node(system=False), created)
    assert result.changes == ["driver_info.redfish_system_id removed"]
    assert "redfish_system_id" not in created.driver_info
