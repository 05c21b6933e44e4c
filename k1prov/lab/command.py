"""The lab's system commands (ip, mount, debootstrap, mkfs, ...), each within a deadline.

One place decides how a lab command fails: a LabError naming the command, never a
hang and never a bare CalledProcessError.
"""
from __future__ import annotations

import subprocess
import time

from k1prov.errors import LabError

# Lines of a failed command's output kept in the error (debootstrap and apt say a lot).
ERROR_TAIL_LINES = 15


def run(argv: list[str], *, deadline: float, what: str | None = None, needs: str | None = None,
        stdin: str | None = None) -> str:
    """Run argv, finished by `deadline` (time.monotonic()); returns its stdout.

    `what` names the command in errors (default: its first words); `needs` is the Debian
    package to name when the program is missing (default: the program itself).
    """
    name = what or " ".join(argv[:3])
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise LabError(f"timed out before: {name}")
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=remaining)
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out in: {name}") from None
    except FileNotFoundError:
        raise LabError(f"the lab needs {argv[0]} (apt-get install {needs or argv[0]})") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-ERROR_TAIL_LINES:])
        raise LabError(f"{name} exited {result.returncode}: {tail}")
    return result.stdout
