"""The inventory: which machines, how to reach their BMCs, what each one becomes.

`load_inventory(path)` parses and validates a YAML inventory (docs/inventory.md) into
frozen dataclasses; `plan_rows(inv)` flattens it for `k1prov inventory check`.
"""
from k1prov.errors import InventoryError, SecretError
from k1prov.inventory.loader import load_inventory, parse_inventory, plan_rows
from k1prov.inventory.model import (OWNER_TAG, ROLES, Bmc, Cloud, ImageSource, Images, Inventory,
                                    Network, Node, SecretRef, Ssh)

__all__ = [
    "load_inventory", "parse_inventory", "plan_rows", "InventoryError", "SecretError",
    "Inventory", "Node", "Bmc", "SecretRef", "Cloud", "Images", "ImageSource", "Network", "Ssh",
    "ROLES", "OWNER_TAG",
]
