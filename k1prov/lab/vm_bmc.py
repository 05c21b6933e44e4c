"""The VM lab's BMCs: the standard emulators that drive libvirt domains.

- virtualbmc (IPMI): one daemon, vbmcd, run in the foreground so that the lab records its
  pid (its own pid file held 0 when it daemonized: a `kill` of that would signal the whole
  process group); one IPMI endpoint per IPMI machine on 127.0.0.1, added with `vbmc add`.
- sushy-tools (Redfish): one emulator on 127.0.0.1 that serves only the lab's Redfish
  machines (SUSHY_EMULATOR_ALLOWED_INSTANCES; leaving the key out would serve every
  domain of the lab's libvirtd, setting it to None serves none). Its virtual media
  (Redfish `VirtualMedia/Cd`, Ironic's redfish-virtual-media boot) downloads the image into
  a volume of a libvirt storage pool of the lab (VMEDIA_POOL, ensure_vmedia_pool) and
  attaches that volume to the domain's CD drive; ejecting detaches it.
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
from k1prov.lab.vm_libvirt import Libvirt
from k1prov.lab.secret_files import write_htpasswd

# The libvirt storage pool (a directory) where sushy-tools keeps the images inserted as
# virtual media: without one it refuses every InsertMedia (vm-proto NOTES).
VMEDIA_POOL = "k1prov-vmedia"
# One vbmc command (it asks vbmcd over ZeroMQ; a start spawns the endpoint's process).
VBMC_TIMEOUT = 60.0


def vbmc_conf(*, config_dir: Path, port: int, log: Path) -> str:
    # pid_file is vbmcd's own: kept in the lab's directory, never read by the lab.
    return (f"[default]\nconfig_dir = {config_dir}\npid_file = {config_dir.parent / 'vbmcd.pid'}\n"
            f"server_port = {port}\n\n[log]\nlogfile = {log}\ndebug = false\n")


def sushy_conf(*, port: int, libvirt_uri: str, allowed: list[str], auth_file: Path | None = None,
               storage_pool: str = VMEDIA_POOL) -> str:
    # auth_file: an htpasswd file (bcrypt only): the emulator then answers 401 without the
    # user and password, as a real BMC does, so a wrong password is seen (issue 21).
    auth = f"SUSHY_EMULATOR_AUTH_FILE = {str(auth_file)!r}\n" if auth_file else ""
    return (f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n{auth}"
            f"SUSHY_EMULATOR_LISTEN_PORT = {port}\n"
            f"SUSHY_EMULATOR_LIBVIRT_URI = {libvirt_uri!r}\n"
            f"SUSHY_EMULATOR_ALLOWED_INSTANCES = {allowed!r}\n"
            f"SUSHY_EMULATOR_STORAGE_POOL = {storage_pool!r}\n"
            "SUSHY_EMULATOR_VMEDIA_VERIFY_SSL = False\n"
            "SUSHY_EMULATOR_BOOT_LOADER_MAP = {'Legacy': {'x86_64': None}, "
            "'UEFI': {'x86_64': '/usr/share/OVMF/OVMF_CODE.fd'}}\n")


def ensure_vmedia_pool(libvirt: Libvirt, path: Path, *, name: str = VMEDIA_POOL) -> None:
    """The lab libvirtd's directory pool `name` at `path`, defined once and active.

    Not autostarted: a restarted libvirtd finds it defined but inactive, and the next
    `lab up` starts it again."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        info = libvirt.virsh("pool-info", name)
    except LabError:
        libvirt.virsh("pool-define-as", name, "dir", "--target", str(path))
        info = libvirt.virsh("pool-info", name)
    if "running" not in info:
        libvirt.virsh("pool-start", name)


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
            # `--password=X`, not `--password X`: a random password may start with '-', which
            # argparse would take for an option ("expected one argument").
            self._run("add", domain, "--port", str(port), "--address", "127.0.0.1",
                      f"--username={username}", f"--password={password}",
                      f"--libvirt-uri={libvirt_uri}", password=password)
            known = self.status()
        # `add` may already start the endpoint; a second start fails with EADDRINUSE.
        if known.get(domain) != "running":
            self._run("start", domain)
        deadline = time.monotonic() + VBMC_TIMEOUT
        while self.status().get(domain) != "running":
            if time.monotonic() >= deadline:
                raise LabError(f"the IPMI endpoint of {domain} (vbmc, port {port}) does not run")
            time.sleep(0.2)


def sushy_htpasswd(venv: Path, path: Path, *, username: str, password: str, timeout: float) -> None:
    """The Redfish emulator's htpasswd file (0600): one user, the lab's BMC user and
    password (sushy-tools checks it with bcrypt, from the VM lab's venv)."""
    write_htpasswd(venv, path, username=username, password=password, timeout=timeout,
                   what="the Redfish BMC password (the VM lab venv's bcrypt)")


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
