"""Trying a node's changed BMC credentials before Ironic gets them (issue 21).

Ironic takes a new password without trying it; a wrong one is found later, by its power
state sync or the next action, after the password that worked is gone. So when the
inventory changes an enrolled node's BMC login, k1prov logs in first, the way the node's
hardware type does, and leaves the node as it was when the BMC refuses:
- `ipmi`: ipmitool's lanplus session and a power status read (what Ironic's ipmitool
  interfaces run);
- `redfish`: an HTTPS GET of the node's system (or of the Systems collection when the
  inventory names no system) with the new login and the node's own TLS setting (`verify`),
  as Ironic's sushy reads it.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from k1prov.errors import NodeError
from k1prov.inventory.model import Node

IPMITOOL = "ipmitool"
# ipmitool's own retries per session step (-R) and seconds to wait for each answer (-N):
# Ironic's defaults for a BMC that is slow but answers.
RETRIES, ANSWER_WAIT = 3, 2


# Redfish's collection of systems (DSP0266), read when the inventory names no system.
REDFISH_SYSTEMS = "/redfish/v1/Systems"
# A Redfish 401 is asked again once before it counts as a refusal: BMCs answer 401 for a
# login they cannot take just now (a full session table, a session being torn down), and
# sushy, Ironic's Redfish library, re-authenticates once on a 401 too.
REDFISH_401_RETRIES = 1


def tried_by_login(node: Node) -> bool:
    return node.driver in ("ipmi", "redfish")


def try_login(node: Node, *, timeout: float) -> None:
    """Log in to the node's BMC with its inventory credentials; NodeError if the BMC
    refuses them or does not answer within `timeout` (Timeouts.bmc_login)."""
    if node.driver == "redfish":
        _redfish_login(node, timeout=timeout)
    else:
        _ipmi_login(node, timeout=timeout)


def _redfish_login(node: Node, *, timeout: float) -> None:
    """GET the node's system with HTTP basic auth (sushy's default for a BMC without
    sessions; a BMC with sessions takes it as well), TLS checked as the node's `verify`
    says (Ironic's redfish_verify_ca)."""
    import requests

    bmc = node.bmc
    url = (bmc.url or "").rstrip("/") + (bmc.system_id or REDFISH_SYSTEMS)
    where = f"the BMC at {bmc.endpoint}"
    keeps = "Ironic keeps the old ones"
    for attempt in range(REDFISH_401_RETRIES + 1):
        try:
            answer = requests.get(url, auth=(bmc.username, bmc.password.reveal()), verify=bmc.verify,
                                  timeout=timeout, headers={"Accept": "application/json"},
                                  allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise NodeError(node.name, f"{where}: its TLS certificate did not pass (verify: "
                                       f"{bmc.verify}): {_first_line(exc)}; {keeps}") from None
        except requests.exceptions.Timeout:
            raise NodeError(node.name, f"{where} did not answer a login with the new credentials "
                                       f"within {timeout:.0f} s (the bmc_login timeout); {keeps}") from None
        except requests.exceptions.RequestException as exc:
            raise NodeError(node.name, f"{where} did not answer a login with the new credentials "
                                       f"({_first_line(exc)}); {keeps}") from None
        if answer.status_code != 401:
            break
    status = answer.status_code
    if status in (401, 403):
        retried = f", asked {REDFISH_401_RETRIES + 1} times" if status == 401 else ""
        raise NodeError(node.name, f"{where} refused the new credentials (Redfish HTTP {status}"
                                   f"{retried}); {keeps}")
    if status == 404 and bmc.system_id:
        raise NodeError(node.name, f"{where} has no system {bmc.system_id} (Redfish HTTP 404); "
                                   f"Ironic keeps the old settings")
    if status >= 300:
        raise NodeError(node.name, f"{where} answered a login with the new credentials with "
                                   f"HTTP {status}; {keeps}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _ipmi_login(node: Node, *, timeout: float) -> None:
    """Log in with ipmitool and read the power state. The password goes to ipmitool in
    its environment (-E), never on a command line that `ps` shows."""
    exe = shutil.which(IPMITOOL)
    if exe is None:
        raise NodeError(node.name, "ipmitool is not installed here: k1prov cannot try the new "
                                   "BMC credentials before Ironic gets them (apt install ipmitool)")
    bmc = node.bmc
    argv = [exe, "-I", "lanplus", "-H", bmc.address, "-p", str(bmc.port), "-U", bmc.username,
            "-E", "-R", str(RETRIES), "-N", str(ANSWER_WAIT), "power", "status"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IPMI_PASSWORD": bmc.password.reveal()}
    where = f"the BMC at {bmc.address} port {bmc.port}"
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise NodeError(node.name, f"{where} did not answer a login with the new credentials "
                                   f"within {timeout:.0f} s (the bmc_login timeout); Ironic keeps "
                                   f"the old ones") from None
    if done.returncode != 0:
        said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise NodeError(node.name, f"{where} refused the new credentials (ipmitool: "
                                   f"{said[-1] if said else f'exit {done.returncode}'}); Ironic "
                                   f"keeps the old ones")
