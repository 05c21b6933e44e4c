"""The VM lab's BMCs: the standard emulators that drive libvirt domains.

- virtualbmc (IPMI): one daemon, vbmcd, run in the foreground so that the lab records its
  pid (its own pid file held 0 when it daemonized: a `kill` of that would signal the whole
  process group); one IPMI endpoint per IPMI machine on 127.0.0.1, added with `vbmc add`.
- sushy-tools (Redfish): one emulator on 127.0.0.1 that serves only the lab's Redfish
  machines (SUSHY_EMULATOR_ALLOWED_INSTANCES; leaving the key out would serve every
  domain of the lab's libvirtd, setting it to None serves none).
Both come from PyPI into the VM lab's own virtualenv (k1prov/lab/requirements-vm.txt).
"""
from __future__ import annotations

import base64
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from k1prov.errors import LabError

# One vbmc command (it asks vbmcd over ZeroMQ; a start spawns the endpoint's process).
VBMC_TIMEOUT = 60.0


def vbmc_conf(*, config_dir: Path, port: int, log: Path) -> str:
    # pid_file is vbmcd's own: kept in the lab's directory, never read by the lab.
    return (f"[default]\nconfig_dir = {config_dir}\npid_file = {config_dir.parent / 'vbmcd.pid'}\n"
            f"server_port = {port}\n\n[log]\nlogfile = {log}\ndebug = false\n")


def sushy_conf(*, port: int, libvirt_uri: str, allowed: list[str], auth_file: Path | None = None) -> str:
    # auth_file: an htpasswd file (bcrypt only): the emulator then answers 401 without the
    # user and password, as a real BMC does, so a wrong password is seen (issue 21).
    auth = f"SUSHY_EMULATOR_AUTH_FILE = {str(auth_file)!r}\n" if auth_file else ""
    return (f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n{auth}"
            f"SUSHY_EMULATOR_LISTEN_PORT = {port}\n"
            f"SUSHY_EMULATOR_LIBVIRT_URI = {libvirt_uri!r}\n"
            f"SUSHY_EMULATOR_ALLOWED_INSTANCES = {allowed!r}\n"
            "SUSHY_EMULATOR_VMEDIA_VERIFY_SSL = False\n"
            "SUSHY_EMULATOR_BOOT_LOADER_MAP = {'Legacy': {'x86_64': None}, "
            "'UEFI': {'x86_64': '/usr/share/OVMF/OVMF_CODE.fd'}}\n")


class Vbmc:
    """The `vbmc` client of the lab's vbmcd."""

    def __init__(self, venv: Path, conf: Path):
        self.exe = str(venv / "bin" / "vbmc")
        self.conf = conf

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env["VIRTUALBMC_CONFIG"] = str(self.conf)
        return env

    def _run(self, *args: str, password: str | None = None) -> str:
        argv = [self.exe, *args]
        try:
            out = subprocess.run(argv, env=self.env(), capture_output=True, text=True,
                                 timeout=VBMC_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LabError(f"vbmc {args[0]} did not finish within {VBMC_TIMEOUT:.0f} s") from None
        if out.returncode != 0:
            text = (out.stderr or out.stdout).strip()
            if password:
                text = text.replace(password, "***")
            raise LabError(f"vbmc {args[0]} {args[1] if len(args) > 1 else ''} exited "
                           f"{out.returncode}: {text}")
        return out.stdout

    def answers(self) -> bool:
        try:
            self._run("list")
        except LabError:
            return False
        return True

    def status(self) -> dict[str, str]:
        """Domain name -> endpoint status ('running', 'down', 'error')."""
        found = {}
        for line in self._run("list", "-f", "value", "-c", "Domain name", "-c", "Status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                found[parts[0]] = parts[1]
        return found

    def ensure(self, domain: str, *, port: int, username: str, password: str, libvirt_uri: str) -> None:
        """The domain's IPMI endpoint on 127.0.0.1:port, added once and running.

        vbmc takes the password on its command line (it has no other way); the lab's
        directory is root's, and the endpoint listens on loopback only."""
        known = self.status()
        if domain not in known:
            self._run("add", domain, "--port", str(port), "--address", "127.0.0.1",
                      "--username", username, "--password", password,
                      "--libvirt-uri", libvirt_uri, password=password)
            known = self.status()
        # `add` may already start the endpoint; a second start fails with EADDRINUSE.
        if known.get(domain) != "running":
            self._run("start", domain)
        deadline = time.monotonic() + VBMC_TIMEOUT
        while self.status().get(domain) != "running":
            if time.monotonic() >= deadline:
                raise LabError(f"the IPMI endpoint of {domain} (vbmc, port {port}) does not run")
            time.sleep(0.2)


# sushy-tools checks its htpasswd file with bcrypt (its only hash), from the VM lab's venv.
_HASH = ("import bcrypt, sys\n"
         "pw = sys.stdin.buffer.read()\n"
         "old = sys.argv[1].encode()\n"
         "ok = False\n"
         "try:\n    ok = bool(old) and bcrypt.checkpw(pw, old)\n"
         "except ValueError:\n    pass\n"
         "sys.stdout.write(old.decode() if ok else bcrypt.hashpw(pw, bcrypt.gensalt()).decode())\n")


def sushy_htpasswd(venv: Path, path: Path, *, username: str, password: str, timeout: float) -> None:
    """The Redfish emulator's htpasswd file (0600): one user, the lab's BMC user and
    password. An entry that still matches is kept byte for byte, so `lab up` does not
    restart the emulator for a new salt."""
    try:
        existing = path.read_text()
    except OSError:
        existing = ""
    old = existing.strip().partition(":")[2] if existing.startswith(username + ":") else ""
    try:
        out = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", _HASH, old],
                             input=password.encode(), capture_output=True, timeout=timeout, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        raise LabError(f"cannot hash the Redfish BMC password with the VM lab venv's bcrypt: {exc}") from None
    text = f"{username}:{out.stdout.decode().strip()}\n"
    if text != existing:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)


def redfish_answers(url: str, *, username: str, password: str, timeout: float) -> bool:
    """True if GET url with the lab's BMC login answers 200."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
