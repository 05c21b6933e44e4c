"""Does a lab service answer? One HTTP GET, or one IPMI `power status`."""
from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request

# Lab services are on 127.0.0.1: never route their checks through a proxy from the env.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, *, timeout: float) -> bool:
    """True if GET url returns 200."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def ipmi_power_status(port: int, *, username: str, password: str, timeout: float) -> str | None:
    """'on' or 'off' from `ipmitool -I lanplus ... power status`, None if no answer.

    The password goes through IPMI_PASSWORD (`-E`), never the command line, which any
    user can read in /proc.
    """
    argv = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port),
            "-U", username, "-E", "-N", "1", "-R", "1", "power", "status"]
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "IPMI_PASSWORD": password}
    try:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    text = out.stdout.strip().lower()
    if text.endswith(" on"):
        return "on"
    if text.endswith(" off"):
        return "off"
    return None
