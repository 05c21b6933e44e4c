"""The comma lists of numbers that `bench` options take (`--scale-factors`, `--contention`)."""
from __future__ import annotations

from typing import Callable

from k1prov.errors import ConfigError


def parse_number_list(text: str, *, option: str, what: str,
                      check: Callable[[float, str], None]) -> tuple[float, ...]:
    """'a, b,c' -> (a, b, c) in the order given, without repeats; each number goes through
    `check(value, as_written)`, which raises ConfigError to refuse it. An empty list, or a
    part that is no number, is refused naming `option` (and `what` a part is)."""
    values: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"{option}: {part!r} is not a number") from None
        check(value, part)
        if value not in values:
            values.append(value)
    if not values:
        raise ConfigError(f"{option}: no {what} given")
    return tuple(values)
