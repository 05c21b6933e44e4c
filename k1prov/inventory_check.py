"""`k1prov inventory check`: validate an inventory as render, images register and deploy
will (k1prov.preflight, each refusal an InventoryError located FILE:LINE) and return the
expanded plan: one row per node, ranges expanded, passwords never shown.

    result = check(VerbContext(load_inventory("inventories/large.yaml")))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from k1prov.context import VerbContext
from k1prov.inventory import plan_rows
from k1prov.preflight import check_all
from k1prov.verb_report import EXIT_OK


@dataclass
class InventoryCheck:
    """The expanded plan of a valid inventory and its warnings: the file's own (given when
    it loaded) and those of the checks (`found`: a local image file not built yet, ...)."""

    cluster: str
    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    def exit_code(self) -> int:
        return EXIT_OK      # a refusal is an InventoryError (exit 2), not a result

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "nodes": self.rows, "warnings": self.warnings}


def check(ctx: VerbContext) -> InventoryCheck:
    inv = ctx.inventory
    found = check_all(inv)
    return InventoryCheck(cluster=inv.cluster, rows=plan_rows(inv), warnings=[*inv.warnings, *found],
                          found=found)
