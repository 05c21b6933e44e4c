"""What /proc says about a lab process: its start time (which tells a pid from a reused one)
and its command name. Read directly rather than through psutil, which is not a dependency of
k1prov and would only be used for these two reads."""
from __future__ import annotations


def start_time(pid: int) -> int | None:
    """Start time of a live (not zombie) process, in clock ticks since boot; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def comm(pid: int) -> str | None:
    """The process's command name (at most 15 characters); None if gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None
