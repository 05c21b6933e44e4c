"""The labs' generated passwords and htpasswd files (the netns lab's Ironic http_basic, the
VM lab's Redfish emulator): written once, 0600 from the first byte on."""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from k1prov.atomic_file import write_if_changed
from k1prov.errors import LabError

# bcrypt is the only hash both Ironic's and sushy-tools' htpasswd checks take; it runs in the
# lab venv that has it (k1prov's own venv need not). An entry that still matches the
# password is kept byte for byte, so `lab up` does not restart a service for a new salt.
_BCRYPT = ("import bcrypt, sys\n"
           "pw = sys.stdin.buffer.read()\n"
           "old = sys.argv[1].encode()\n"
           "ok = False\n"
           "try:\n    ok = bool(old) and bcrypt.checkpw(pw, old)\n"
           "except ValueError:\n    pass\n"
           "sys.stdout.write(old.decode() if ok else bcrypt.hashpw(pw, bcrypt.gensalt()).decode())\n")


def ensure_secret(path: Path, *, nbytes: int = 18) -> str:
    """A password kept in `path`, made once; 0600 from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().rstrip("\n")
    password = secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def write_htpasswd(venv: Path, path: Path, *, username: str, password: str, timeout: float,
                   what: str) -> None:
    """An htpasswd file (0600) of one user, hashed with bcrypt by `venv`'s Python."""
    try:
        existing = path.read_text()
    except OSError:
        existing = ""
    old = existing.strip().partition(":")[2] if existing.startswith(username + ":") else ""
    try:
        out = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", _BCRYPT, old],
                             input=password.encode(), capture_output=True, timeout=timeout, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        raise LabError(f"cannot hash {what} with bcrypt: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_if_changed(path, f"{username}:{out.stdout.decode().strip()}\n", mode=0o600)
