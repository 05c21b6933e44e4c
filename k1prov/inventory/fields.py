"""A located view of one inventory value: where it is, and how to complain about it.

`Field` couples a `Located` YAML value with its dotted path ("nodes[3].bmc.address")
and the file, so that every check in the loader can raise a located InventoryError or
record a located warning in one call. A value inherited from `defaults:` keeps the
path and line where it was written, so the operator is sent to the right place.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NoReturn

from k1prov.errors import InventoryError
from k1prov.inventory.values import did_you_mean
from k1prov.inventory.yamlpos import Located

log = logging.getLogger("k1prov.inventory")


@dataclass
class Source:
    """The file being loaded and the warnings found so far."""

    name: str          # as the operator gave it, for messages
    directory: Path    # absolute; relative paths in the file are relative to it
    warnings: list[str] = field(default_factory=list)

    def error(self, reason: str, *, line: int | None, path: str | None) -> InventoryError:
        return InventoryError(reason, file=self.name, line=line, field=path or None)

    def local_path(self, text: str) -> Path:
        """A path written in the inventory: ~ expanded, relative to the file's directory."""
        p = Path(os.path.expanduser(text))
        return p if p.is_absolute() else self.directory / p

    def warn(self, reason: str, *, line: int | None, path: str | None) -> None:
        text = f"{self.name}:{line}: {path + ': ' if path else ''}{reason}"
        if text in self.warnings:   # a default shared by many nodes warns once
            return
        self.warnings.append(text)
        log.warning("%s", text)


def kind(value: Any) -> str:
    """How a value reads in an error message (never the value itself)."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


class Field:
    __slots__ = ("src", "loc", "path")

    def __init__(self, src: Source, loc: Located, path: str):
        self.src, self.loc, self.path = src, loc, path

    @property
    def value(self) -> Any:
        return self.loc.value

    @property
    def line(self) -> int:
        return self.loc.line

    def sub(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, reason: str) -> NoReturn:
        raise self.src.error(reason, line=self.line, path=self.path)

    def missing(self, name: str) -> NoReturn:
        """A required field `name` of this mapping is absent."""
        raise self.src.error("required field missing", line=self.line, path=self.sub(name))

    def warn(self, reason: str) -> None:
        self.src.warn(reason, line=self.line, path=self.path)

    def mapping(self, allowed: Iterable[str], *, required: Iterable[str] = (),
                ignore_prefix: str | None = None) -> dict[str, Field]:
        if not isinstance(self.value, dict):
            self.fail(f"must be a mapping (key: value), got {kind(self.value)}")
        allowed = tuple(allowed)
        out: dict[str, Field] = {}
        for key, loc in self.value.items():
            child = Field(self.src, loc, self.sub(key))
            if ignore_prefix and key.startswith(ignore_prefix):
                continue
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f" (known: {', '.join(allowed)})"
                child.fail(f"unknown field '{key}'{hint}")
            out[key] = child
        for key in required:
            if key not in out or out[key].value is None:
                self.missing(key)
        return out

    def items(self) -> list[Field]:
        if not isinstance(self.value, list):
            self.fail(f"must be a list, got {kind(self.value)}")
        return [Field(self.src, loc, f"{self.path}[{i}]") for i, loc in enumerate(self.value)]

    def string(self) -> str:
        if not isinstance(self.value, str) or not self.value.strip():
            self.fail(f"must be a non-empty string, got {kind(self.value)}")
        return self.value

    def text(self) -> str:
        """Any scalar as the operator wrote it ("3.10" stays "3.10", not 3.1)."""
        if isinstance(self.value, (dict, list)) or self.value is None or self.loc.raw is None:
            self.fail(f"must be a single value, got {kind(self.value)}")
        return self.loc.raw

    def integer(self, *, low: int | None = None, high: int | None = None) -> int:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"must be a whole number, got {kind(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low}-{high}" if high is not None else f">= {low}"
            self.fail(f"{value} is out of range ({bounds})")
        return value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            self.fail(f"must be true or false, got {kind(self.value)}")
        return self.value

    def choice(self, allowed: tuple[str, ...]) -> str:
        value = self.string()
        if value not in allowed:
            self.fail(f"{value!r} is not one of: {', '.join(allowed)}")
        return value

    def check(self, validator, value: Any) -> Any:
        """Run a values.* validator, turning its ValueError into a located error."""
        try:
            return validator(value)
        except ValueError as exc:
            self.fail(str(exc))
