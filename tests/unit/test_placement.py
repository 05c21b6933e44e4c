"""A node's conductor group and shard in the tables (issue 22): a column only when some
node has one, so a one-conductor site's tables do not change."""
from __future__ import annotations

from rich.console import Console

from k1prov.fanout import Status
from k1prov.presentation import rows_table, verb_table, with_placement
from k1prov.verb_report import NodeOutcome, VerbReport


def rendered(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_the_verb_table_shows_group_and_shard_only_when_a_node_has_one():
    plain = VerbReport("list", [NodeOutcome("n1", Status.OK), NodeOutcome("n2", Status.OK)])
    assert "group/shard" not in rendered(verb_table(plain))
    placed = VerbReport("list", [NodeOutcome("n1", Status.OK, conductor_group="rack2"),
                                 NodeOutcome("n2", Status.OK, shard="s7"),
                                 NodeOutcome("n3", Status.OK)])
    text = rendered(verb_table(placed))
    assert "group/shard" in text
    lines = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2] in (["n1"], ["n2"], ["n3"])}
    assert "rack2/-" in lines["n1"] and "-/s7" in lines["n2"] and "-/-" in lines["n3"]


def test_status_rows_get_the_column_after_the_power_state():
    columns = ["node", "provision_state", "power_state", "address"]
    rows = [{"node": "n1", "conductor_group": None, "shard": None}]
    assert with_placement(rows, columns) == (rows, columns)
    rows.append({"node": "n2", "conductor_group": "g1", "shard": "s1"})
    placed_rows, placed_columns = with_placement(rows, columns)
    assert placed_columns == ["node", "provision_state", "power_state", "group/shard", "address"]
    assert [r["group/shard"] for r in placed_rows] == ["-/-", "g1/s1"]
    assert "g1/s1" in rendered(rows_table(placed_rows, placed_columns, title="status"))
