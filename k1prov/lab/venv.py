"""The lab's own virtualenv (Ironic, Glance, gunicorn, pyghmi, the OpenStack CLI).

It is kept apart from the project's venv: Ironic and Glance pin hundreds of packages
that k1prov itself must not depend on. The hash of requirements-lab.txt (and of the
Python that runs it) is stored in the venv; a different hash means reinstall.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from k1prov.errors import LabError

MARKER = ".k1prov-requirements.sha256"
# Lines of pip's output quoted in a LabError.
PIP_TAIL_LINES = 25


def requirements_hash(requirements: Path) -> str:
    h = hashlib.sha256(requirements.read_bytes())
    h.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return h.hexdigest()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_ready(venv: Path, requirements: Path) -> bool:
    try:
        stored = (venv / MARKER).read_text().strip()
    except OSError:
        return False
    return stored == requirements_hash(requirements) and venv_python(venv).exists()


def ensure_venv(venv: Path, requirements: Path, *, timeout: float,
                progress: Callable[[str], None] | None = None,
                what: str = "Ironic, Glance, gunicorn and pyghmi") -> bool:
    """Create or update the venv so that it matches `requirements`. Returns True if it
    installed something. A lock file next to the venv keeps two `up`s from installing
    into the same venv at once."""
    if venv_ready(venv, requirements):
        return False
    venv.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        _lock(lock, deadline=deadline, venv=venv)
        if venv_ready(venv, requirements):   # someone else installed it while we waited
            return False
        if not venv_python(venv).exists():
            if progress:
                progress(f"creating the lab virtualenv {venv}")
            # sys._base_executable is the system python even when we run inside a venv.
            base = getattr(sys, "_base_executable", sys.executable)
            _run([base, "-m", "venv", "--clear", str(venv)], what="python -m venv",
                 deadline=deadline, log=venv.with_name(venv.name + "-install.log"))
        if progress:
            progress(f"installing {what} into {venv} (about a minute)")
        _run([str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check",
              "-r", str(requirements)], what="pip install", deadline=deadline,
             log=venv.with_name(venv.name + "-install.log"))
        (venv / MARKER).write_text(requirements_hash(requirements) + "\n")
    return True


def _lock(lock, *, deadline: float, venv: Path) -> None:
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LabError(f"another process is installing the lab virtualenv {venv}") from None
            time.sleep(0.5)


def _run(argv: list[str], *, what: str, deadline: float, log: Path) -> None:
    """Run an installer step with its output in `log`; LabError with the tail on failure."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise LabError(f"{what}: lab_install timeout used up")
    with open(log, "w") as out:
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=remaining,
                                  env=_installer_env())
        except subprocess.TimeoutExpired:
            raise LabError(f"{what} did not finish within the lab_install timeout "
                           f"({remaining:.0f} s left); log: {log}\n{_tail(log)}") from None
        except OSError as exc:
            raise LabError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        raise LabError(f"{what} failed (exit {proc.returncode}); log: {log}\n{_tail(log)}")


def _installer_env() -> dict[str, str]:
    # Keep the project venv out of the lab venv's pip (PIP_* and proxies stay: they are
    # how this machine reaches PyPI).
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    return env


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-PIP_TAIL_LINES:])
