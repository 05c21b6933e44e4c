"""Shell completion of node names (`--limit`, `reimage NODE…`) from the inventory given
with `-i`. Typer's own completion (`k1prov --install-completion`) calls these while the
operator presses TAB: they must be quick and silent, and never fail loudly.
"""
from __future__ import annotations

import logging
from pathlib import Path

import typer

# Completion runs inside the shell's TAB press: a huge inventory is cut, not waited for.
MAX_CANDIDATES = 2000


def _inventory_path(ctx: typer.Context) -> Path | None:
    value = ctx.params.get("inventory")
    return Path(value) if value else None


def node_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Node names of the -i inventory that complete `incomplete`. A comma-separated list
    (`--limit lab01,la`) completes its last item and keeps the ones before it."""
    path = _inventory_path(ctx)
    if path is None or not path.is_file():
        return []
    from k1prov.inventory import load_inventory

    # Inventory warnings go to the k1prov.inventory logger; nothing may reach the terminal.
    logger = logging.getLogger("k1prov.inventory")
    saved = logger.disabled
    logger.disabled = True
    try:
        names = [node.name for node in load_inventory(path).nodes]
    except Exception:  # noqa: BLE001 - a broken inventory completes nothing, silently
        return []
    finally:
        logger.disabled = saved
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    chosen = {name.strip() for name in done.split(",") if name.strip()}
    matches = [f"{prefix}{name}" for name in names if name.startswith(last) and name not in chosen]
    return matches[:MAX_CANDIDATES]


def role_names(incomplete: str) -> list[str]:
    """Roles (`--group`, `--roles`), a comma-separated list completing its last item."""
    from k1prov.inventory.model import ROLES

    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    chosen = set(done.split(","))
    return [f"{prefix}{role}" for role in ROLES if role.startswith(last) and role not in chosen]
