"""Trying a node's changed BMC credentials before Ironic gets them (issue 21).

Ironic takes a new password without trying it; a wrong one is found later, by its power
state sync or the next action, after the password that worked is gone. So when the
inventory changes an enrolled node's BMC login, k1prov logs in with ipmitool first, the
tool and protocol Ironic's `ipmi` hardware type uses (lanplus), and leaves the node as it
was when the BMC refuses. Other hardware types are not tried (k1prov writes only IPMI
driver_info today).
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


def tried_by_login(node: Node) -> bool:
    return node.driver == "ipmi"


def try_login(node: Node, *, timeout: float) -> None:
    """Log in to the node's BMC and read its power state; NodeError if it refuses or does
    not answer within `timeout` (Timeouts.bmc_login). The password goes to ipmitool in
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
