"""YAML with a source line on every value.

PyYAML's `safe_load` throws the line numbers away, and an inventory error without a
line is hard to act on in a 500-node file. So the loader composes the node graph
(which keeps start marks) and converts it here into `Located` values: mappings,
sequences and scalars that each know their line and, for scalars, the exact text
the operator wrote (so `version: 3.10` stays "3.10" and an unquoted all-digit MAC,
which YAML 1.1 reads as a base-60 integer, can still be recovered).

Errors are raised as `YamlError(reason, line)`; the loader adds the file name. They
never quote the offending source line, because that line may hold a password.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# The C loader keeps the same marks and is several times faster on large files.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Aliases can expand exponentially ("billion laughs"); no honest inventory comes close.
MAX_VALUES = 1_000_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(Exception):
    def __init__(self, reason: str, line: int | None):
        super().__init__(reason)
        self.reason, self.line = reason, line


@dataclass(frozen=True)
class Located:
    """One YAML value and where it was written.

    `value` is a `dict[str, Located]`, a `list[Located]` or a plain scalar. `line` is
    1-based: for a mapping entry it is the line of its key (where an operator looks
    for "bmc:"), for a sequence item the line the item starts on. `raw` is the source
    text of a scalar, None for collections.
    """

    value: Any
    line: int
    raw: str | None = None

    def plain(self) -> Any:
        """The value without locations (for free-form mappings)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def load_located(text: str) -> Located | None:
    """Parse one YAML document; None when the document is empty."""
    try:
        docs = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        # str(exc) would include a snippet of the source line; build our own message.
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise YamlError(f"invalid YAML: {reason}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {type(exc).__name__}", None) from None
    if len(docs) > 1:
        raise YamlError("more than one YAML document ('---'); put one inventory per file",
                        _line(docs[1]))
    if not docs or docs[0] is None:
        return None
    return _Converter().convert(docs[0], _line(docs[0]))


class _Converter:
    def __init__(self) -> None:
        self._scalars = SafeConstructor()
        self._count = 0
        self._active: set[int] = set()   # collection nodes on the current path (alias loops)

    def convert(self, node: Node, line: int) -> Located:
        self._count += 1
        if self._count > MAX_VALUES:
            raise YamlError(f"more than {MAX_VALUES} values (alias expansion?)", line)
        if isinstance(node, ScalarNode):
            try:
                value = self._scalars.construct_object(node)
            except Exception:  # noqa: BLE001 - PyYAML raises ValueError, AttributeError, ...
                # Explicit tags (!!int, !!timestamp) on text that does not fit them; the
                # constructor's own message may quote the text, which may be a password.
                raise YamlError(f"value does not match its YAML tag {node.tag}",
                                _line(node)) from None
            return Located(value, line, node.value)
        if id(node) in self._active:
            raise YamlError("recursive alias", _line(node))
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return Located([self.convert(item, _line(item)) for item in node.value], line)
            if isinstance(node, MappingNode):
                return Located(self._mapping(node), line)
            raise YamlError(f"unsupported YAML node {type(node).__name__}", _line(node))
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: MappingNode) -> dict[str, Located]:
        explicit: dict[str, Located] = {}
        merged: dict[str, Located] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # "<<: *defaults" — keys written explicitly in this mapping win.
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        raise YamlError("'<<' must merge a mapping or a list of mappings",
                                        _line(key_node))
                    for k, v in self._mapping(source).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, ScalarNode):
                raise YamlError("mapping keys must be plain strings", _line(key_node))
            # The source text, not the resolved value: "on:"/"no:" stay strings.
            key = key_node.value
            if key in explicit:
                raise YamlError(f"duplicate key '{key}' (first at line {explicit[key].line})",
                                _line(key_node))
            explicit[key] = self.convert(value_node, _line(key_node))
        for k, v in merged.items():
            explicit.setdefault(k, v)
        return explicit
