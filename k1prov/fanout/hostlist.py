"""Fold host names into ClusterShell-style node sets, and expand them back.

["worker001", ..., "worker040", "db1"] -> "db1,worker[001-040]". Zero padding is kept:
a range only continues while each number is written the way the range's first number
implies (same width when padded), so expand_hosts(fold_hosts(x)) == sorted set of x.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

# The last run of digits in a name is the one that varies (rack1-node[01-40]).
_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")


def _width(number: str) -> int:
    """Padding width implied by a number as written; 0 means not padded."""
    return len(number) if len(number) > 1 and number.startswith("0") else 0


def _fold_numbers(numbers: Iterable[str]) -> list[str]:
    ordered = sorted(set(numbers), key=lambda s: (int(s), s))
    runs: list[list[str]] = []
    for number in ordered:
        if runs:
            first, last = runs[-1][0], runs[-1][-1]
            nxt = int(last) + 1
            width = _width(first)
            expected = str(nxt).zfill(width) if width else str(nxt)
            if int(number) == nxt and number == expected:
                runs[-1].append(number)
                continue
        runs.append([number])
    return [run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs]


def fold_hosts(names: Iterable[str]) -> str:
    """Fold names into one comma-separated node set string, sorted by name pattern."""
    groups: dict[tuple[str, str], list[str]] = {}
    plain: set[str] = set()
    for name in names:
        match = _LAST_NUMBER.match(name)
        if match is None:
            plain.add(name)
            continue
        prefix, number, suffix = match.groups()
        groups.setdefault((prefix, suffix), []).append(number)
    parts: list[tuple[str, str]] = [(name, name) for name in plain]
    for (prefix, suffix), numbers in groups.items():
        ranges = _fold_numbers(numbers)
        if len(ranges) == 1 and "-" not in ranges[0]:
            text = f"{prefix}{ranges[0]}{suffix}"
        else:
            text = f"{prefix}[{','.join(ranges)}]{suffix}"
        parts.append((prefix + suffix, text))
    return ",".join(text for _, text in sorted(parts))


def _split_top_level(pattern: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def _expand_range(spec: str) -> list[str]:
    out: list[str] = []
    for piece in spec.split(","):
        low, _, high = piece.partition("-")
        if not high:
            out.append(low)
            continue
        width = _width(low)
        if not (low.isdigit() and high.isdigit()) or int(high) < int(low):
            raise ValueError(f"bad range {piece!r}")
        out.extend(str(i).zfill(width) if width else str(i) for i in range(int(low), int(high) + 1))
    return out


def expand_hosts(pattern: str) -> list[str]:
    """Expand "db1,worker[001-003]" into names (input order, brackets may repeat)."""
    names: list[str] = []
    for part in _split_top_level(pattern):
        match = _BRACKET.search(part)
        if match is None:
            names.append(part)
            continue
        head, tail = part[: match.start()], part[match.end():]
        for number in _expand_range(match.group(1)):
            names.extend(expand_hosts(head + number + tail))
    return names
