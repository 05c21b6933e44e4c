"""Tests of range notation: k1prov.inventory.ranges and its use by the loader."""
from __future__ import annotations

import pytest

from k1prov.errors import InventoryError
from k1prov.inventory import parse_inventory
from k1prov.inventory.ranges import RangeError, expand, step_int, step_ip, step_mac

HEAD = """\
cluster: lab
cloud: {cloud: lab}
defaults:
  bmc: {username: admin, password: {env: P}}
nodes:
"""


def load(s: str):
    return parse_inventory(s, path="inv.yaml")


def line_of(s: str, marker: str) -> int:
    return next(i for i, line in enumerate(s.splitlines(), 1) if marker in line)


def refuse(s: str, field: str, line: int, reason: str) -> InventoryError:
    with pytest.raises(InventoryError) as info:
        load(s)
    err = info.value
    assert (err.field, err.line) == (field, line), str(err)
    assert str(err).startswith(f"inv.yaml:{line}: {field}: "), str(err)
    assert reason in err.reason, str(err)
    return err


def entry(name: str, bmc: str, macs: str, address: str, extra: str = "") -> str:
    return (f"  - name: {name}\n    bmc: {{address: {bmc}}}\n    macs: {macs}\n"
            f"    address: {address}\n{extra}")


# ---- expand --------------------------------------------------------------------------

def test_plain_text_is_itself():
    assert expand("master1") == ["master1"]


def test_zero_padding_is_preserved():
    names = expand("worker[001-200]")
    assert len(names) == 200
    assert names[:2] == ["worker001", "worker002"] and names[-1] == "worker200"


def test_no_padding_without_leading_zero():
    assert expand("n[8-11]") == ["n8", "n9", "n10", "n11"]


def test_comma_lists_and_suffix():
    assert expand("r[1-2,5,09-10]x") == ["r1x", "r2x", "r5x", "r09x", "r10x"]


def test_hexadecimal_for_macs():
    macs = expand("52:54:00:00:01:[00-c7]", hexadecimal=True)
    assert len(macs) == 200
    assert macs[0] == "52:54:00:00:01:00" and macs[9] == "52:54:00:00:01:09"
    assert macs[10] == "52:54:00:00:01:0a" and macs[-1] == "52:54:00:00:01:c7"


@pytest.mark.parametrize("text, reason", [
    ("n[5-1]", "runs backwards"),
    ("n[1-2][1-2]", "exactly one [range] group"),
    ("n[1-2", "exactly one [range] group"),
    ("n]1[", "exactly one [range] group"),
    ("n[]", "empty range"),
    ("n[a-c]", "not a decimal number"),
    ("n[1-2,2]", "repeats a value"),
    ("n[1-100001]", "more than 100000 values"),
])
def test_bad_ranges(text, reason):
    with pytest.raises(RangeError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        expand(text)


def test_hex_digits_refused_in_decimal_ranges():
    with pytest.raises(RangeError):
        expand("n[0a-0f]")


# ---- start + index*step ----------------------------------------------------------------

def test_step_mac_carries_across_octets():
    assert step_mac("52:54:00:00:00:fe", 1, 3) == [
        "52:54:00:00:00:fe", "52:54:00:00:00:ff", "52:54:00:00:01:00"]


def test_step_mac_overflow():
    with pytest.raises(RangeError, match="MAC address space"):
        step_mac("ff:ff:ff:ff:ff:fe", 1, 3)


def test_step_ip_crosses_octets_and_steps():
    assert step_ip("10.0.0.254", 1, 3) == ["10.0.0.254", "10.0.0.255", "10.0.1.0"]
    assert step_ip("10.0.0.10", -5, 3) == ["10.0.0.10", "10.0.0.5", "10.0.0.0"]


def test_step_ip_overflow():
    with pytest.raises(RangeError, match="IPv4 address space"):
        step_ip("255.255.255.254", 1, 3)


def test_step_int():
    assert step_int(6230, 2, 3) == [6230, 6232, 6234]


# ---- ranges in an inventory ------------------------------------------------------------

def test_range_entry_expands_every_field():
    s = HEAD + entry("worker[01-03]", '"127.0.0.1", port: {start: 6230, step: 2}',
                     '["52:54:00:00:01:[0e-10]", {start: "52:54:00:00:02:ff"}]',
                     '"10.0.2.[9-11]"', "    roles: [zookeeper]\n    zookeeper_id: {start: 7}\n")
    inv = load(s)
    assert [n.name for n in inv.nodes] == ["worker01", "worker02", "worker03"]
    assert [n.index for n in inv.nodes] == [0, 1, 2]
    assert {n.line for n in inv.nodes} == {line_of(s, "worker[01-03]")}
    assert [n.bmc.port for n in inv.nodes] == [6230, 6232, 6234]
    assert {n.bmc.address for n in inv.nodes} == {"127.0.0.1"}
    assert [n.macs for n in inv.nodes] == [
        ("52:54:00:00:01:0e", "52:54:00:00:02:ff"),
        ("52:54:00:00:01:0f", "52:54:00:00:03:00"),
        ("52:54:00:00:01:10", "52:54:00:00:03:01")]
    assert [n.address for n in inv.nodes] == ["10.0.2.9", "10.0.2.10", "10.0.2.11"]
    assert [n.zookeeper_id for n in inv.nodes] == [7, 8, 9]


def test_hex_mac_bracket_range_of_200_nodes():
    s = HEAD + entry("w[1-200]", "{start: 10.0.1.11}", '["52:54:00:00:01:[00-c7]"]',
                     "{start: 10.0.2.1}")
    inv = load(s)
    assert len(inv.nodes) == 200
    assert inv.nodes[199].macs == ("52:54:00:00:01:c7",)
    assert inv.nodes[199].bmc.address == "10.0.1.210"
    assert inv.nodes[199].address == "10.0.2.200"


def test_indexes_continue_across_entries():
    s = HEAD + entry("a", "10.0.1.1", '["52:54:00:00:00:01"]', "10.0.0.1") + \
        entry("b[1-2]", '"10.0.1.[2-3]"', '[{start: "52:54:00:00:00:02"}]', "{start: 10.0.0.2}")
    inv = load(s)
    assert [(n.name, n.index) for n in inv.nodes] == [("a", 0), ("b1", 1), ("b2", 2)]


def test_refuses_range_with_a_different_count():
    s = HEAD + entry("w[1-4]", '"10.0.1.[11-13]"', '[{start: "52:54:00:00:00:01"}]',
                     "{start: 10.0.0.1}")
    refuse(s, "nodes[0].bmc.address", line_of(s, "10.0.1.[11-13]"),
           "range gives 3 values but the node name gives 4")


def test_refuses_value_range_on_single_node():
    s = HEAD + entry("w1", '"10.0.1.[11-12]"', '["52:54:00:00:00:01"]', "10.0.0.1")
    refuse(s, "nodes[0].bmc.address", line_of(s, "10.0.1.[11-12]"),
           "range gives 2 values but the node name gives 1")


def test_refuses_ip_range_leaving_the_octet():
    s = HEAD + entry("w[1-3]", '"10.0.1.[254-256]"', '[{start: "52:54:00:00:00:01"}]',
                     "{start: 10.0.0.1}")
    err = refuse(s, "nodes[0].bmc.address", line_of(s, "[254-256]"), "not an IP address")
    assert "10.0.1.256" in err.reason


def test_refuses_port_step_beyond_65535():
    s = HEAD + entry("w[1-3]", "127.0.0.1, port: {start: 65534}", '[{start: "52:54:00:00:00:01"}]',
                     "{start: 10.0.0.1}")
    err = refuse(s, "nodes[0].bmc.port", line_of(s, "65534"), "not a port number")
    assert "65536" in err.reason


def test_refuses_step_zero():
    s = HEAD + entry("w[1-2]", "{start: 10.0.1.1, step: 0}", '[{start: "52:54:00:00:00:01"}]',
                     "{start: 10.0.0.1}")
    refuse(s, "nodes[0].bmc.address.step", line_of(s, "step: 0"), "must not be 0")


def test_refuses_plain_value_shared_by_a_range():
    s = HEAD + entry("w[1-2]", '"10.0.1.[1-2]"', '["52:54:00:00:00:01"]', "{start: 10.0.0.1}")
    err = refuse(s, "nodes[0].macs[0]", line_of(s, "macs:"), "duplicate MAC 52:54:00:00:00:01 on w2")
    assert "already used by w1" in err.reason


def test_refuses_collision_between_range_and_single_node():
    s = HEAD + entry("solo", "10.0.1.100", '["52:54:00:00:00:05"]', "10.0.0.100") + \
        entry("w[001-010]", '"10.0.1.[1-10]"', '[{start: "52:54:00:00:00:01"}]', "{start: 10.0.0.1}")
    err = refuse(s, "nodes[1].macs[0]", line_of(s, "w[001-010]") + 2,
                 "duplicate MAC 52:54:00:00:00:05 on w005")
    assert f"already used by solo (line {line_of(s, 'name: solo')})" in err.reason


def test_refuses_collision_of_os_addresses_inside_a_range():
    s = HEAD + entry("w[1-3]", '"10.0.1.[1-3]"', '[{start: "52:54:00:00:00:01"}]',
                     "{start: 10.0.0.1, step: 0}")
    refuse(s, "nodes[0].address.step", line_of(s, "step: 0"), "must not be 0")
    s = HEAD + entry("w[1-3]", '"10.0.1.[1-3]"', '[{start: "52:54:00:00:00:01"}]', '"10.0.0.[1,2,1]"')
    refuse(s, "nodes[0].address", line_of(s, "[1,2,1]"), "repeats a value")


def test_refuses_bad_name_range():
    s = HEAD + entry("w[3-1]", "10.0.1.1", '["52:54:00:00:00:01"]', "10.0.0.1")
    refuse(s, "nodes[0].name", line_of(s, "w[3-1]"), "runs backwards")


def test_refuses_mac_range_that_becomes_invalid():
    s = HEAD + entry("w[1-2]", '"10.0.1.[1-2]"', '["52:54:00:00:00:[ff-100]"]', "{start: 10.0.0.1}")
    refuse(s, "nodes[0].macs[0]", line_of(s, "[ff-100]"), "is not a MAC address")


def test_refuses_decimal_style_ip_start_that_is_not_an_ip():
    s = HEAD + entry("w[1-2]", "{start: 10.0.1}", '[{start: "52:54:00:00:00:01"}]', "{start: 10.0.0.1}")
    refuse(s, "nodes[0].bmc.address.start", line_of(s, "start: 10.0.1}"), "not an IP address")
