"""Range notation of the inventory: `worker[001-200]` and `{start: X, step: N}`.

A bracket group expands a string into several (ClusterShell's notation, one group per
string): `[1-3,7]` gives 1 2 3 7; a start with a leading zero fixes the width
(`[001-200]` gives 001 … 200). MAC addresses count in hexadecimal (`52:54:00:00:01:[00-c7]`).
`step_*` produce `start + index*step` for MACs, IPs and integers (ports, ZooKeeper ids).

Errors are `RangeError` (a ValueError); the loader adds file, line and field.
"""
from __future__ import annotations

import ipaddress
import re

# One inventory entry never needs more than this many nodes; bigger means a typo.
MAX_RANGE = 100_000

_GROUP = re.compile(r"\[([^\[\]]*)\]")
_DEC = re.compile(r"^[0-9]+$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
MAC_MAX = (1 << 48) - 1


class RangeError(ValueError):
    pass


def has_range(text: str) -> bool:
    return "[" in text or "]" in text


def expand(text: str, *, hexadecimal: bool = False) -> list[str]:
    """Expand the one bracket group of `text`; a text without brackets is itself."""
    if not has_range(text):
        return [text]
    groups = list(_GROUP.finditer(text))
    if len(groups) != 1 or text.count("[") != 1 or text.count("]") != 1:
        raise RangeError(f"{text!r}: use exactly one [range] group")
    group = groups[0]
    head, tail = text[: group.start()], text[group.end():]
    return [f"{head}{item}{tail}" for item in _items(group.group(1), hexadecimal)]


def _items(body: str, hexadecimal: bool) -> list[str]:
    digits, base, kind = (_HEX, 16, "hexadecimal") if hexadecimal else (_DEC, 10, "decimal")
    if not body.strip():
        raise RangeError("empty range []")
    out: list[str] = []
    for part in body.split(","):
        part = part.strip()
        lo_text, sep, hi_text = part.partition("-")
        hi_text = hi_text if sep else lo_text
        if not digits.match(lo_text) or not digits.match(hi_text):
            raise RangeError(f"[{body}]: {part!r} is not a {kind} number or range a-b")
        lo, hi = int(lo_text, base), int(hi_text, base)
        if hi < lo:
            raise RangeError(f"[{body}]: range {part!r} runs backwards")
        if len(out) + (hi - lo + 1) > MAX_RANGE:
            raise RangeError(f"[{body}]: more than {MAX_RANGE} values")
        # A leading zero asks for fixed width: 001 … 200, 00 … c7.
        width = len(lo_text) if lo_text.startswith("0") and len(lo_text) > 1 else 0
        fmt = "x" if hexadecimal else "d"
        out.extend(format(n, f"0{width}{fmt}") for n in range(lo, hi + 1))
    if len(set(out)) != len(out):
        raise RangeError(f"[{body}]: repeats a value")
    return out


def step_int(start: int, step: int, count: int) -> list[int]:
    return [start + i * step for i in range(count)]


def step_mac(start: str, step: int, count: int) -> list[str]:
    """`start` is a normalised MAC (aa:bb:cc:dd:ee:ff)."""
    base = int(start.replace(":", ""), 16)
    out = []
    for i in range(count):
        n = base + i * step
        if not 0 <= n <= MAC_MAX:
            raise RangeError(f"{start} + {i}*{step} leaves the MAC address space")
        h = f"{n:012x}"
        out.append(":".join(h[j:j + 2] for j in range(0, 12, 2)))
    return out


def step_ip(start: str, step: int, count: int) -> list[str]:
    base = ipaddress.ip_address(start)
    out = []
    for i in range(count):
        try:
            out.append(str(base + i * step))
        except (ipaddress.AddressValueError, ValueError):
            raise RangeError(f"{start} + {i}*{step} leaves the IPv{base.version} address space") \
                from None
    return out
