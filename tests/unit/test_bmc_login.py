"""k1prov.bmc_login with a stand-in ipmitool on PATH (no network): what it is given, and
how a refusal reads. The real login against the lab's BMC simulators is in
tests/integration/test_enroll.py."""
from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import replace

import pytest

from k1prov import bmc_login
from k1prov.errors import NodeError
from k1prov.inventory.model import Bmc, Node, SecretRef

PASSWORD = "n3w-Secret!"


def node() -> Node:
    return Node(name="n1", index=0, macs=("52:54:00:00:00:01",), address="10.0.0.1", roles=(),
                bmc=Bmc(address="127.0.0.1", port=6231, username="admin",
                        password=SecretRef(inline=PASSWORD)))


@pytest.fixture
def ipmitool(tmp_path, monkeypatch):
    """An ipmitool that writes its argv and environment to a file and exits with $EXIT."""
    seen = tmp_path / "seen.json"
    exe = tmp_path / "ipmitool"
    exe.write_text(f"""#!{sys.executable}
import json, os, sys
json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, open({str(seen)!r}, "w"))
if os.path.exists({str(tmp_path / "refuse")!r}):
    print("Error: Unable to establish IPMI v2 / RMCP+ session", file=sys.stderr)
    sys.exit(1)
""")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    return tmp_path, seen


def test_the_password_goes_in_the_environment_never_on_the_command_line(ipmitool):
    _, seen = ipmitool
    bmc_login.try_login(node(), timeout=30)
    got = json.loads(seen.read_text())
    assert PASSWORD not in " ".join(got["argv"])
    assert got["env"]["IPMI_PASSWORD"] == PASSWORD
    assert got["argv"][:8] == ["-I", "lanplus", "-H", "127.0.0.1", "-p", "6231", "-U", "admin"]
    assert "-E" in got["argv"] and got["argv"][-2:] == ["power", "status"]


def test_a_refusal_is_one_line_naming_the_bmc_and_what_ironic_keeps(ipmitool):
    d, _ = ipmitool
    (d / "refuse").touch()
    with pytest.raises(NodeError) as info:
        bmc_login.try_login(node(), timeout=30)
    assert str(info.value) == ("n1: the BMC at 127.0.0.1 port 6231 refused the new credentials "
                               "(ipmitool: Error: Unable to establish IPMI v2 / RMCP+ session); "
                               "Ironic keeps the old ones")


def test_without_ipmitool_the_node_is_named_and_nothing_is_sent(monkeypatch):
    monkeypatch.setattr(bmc_login.shutil, "which", lambda name: None)
    with pytest.raises(NodeError, match="n1: ipmitool is not installed here"):
        bmc_login.try_login(node(), timeout=30)


def test_only_the_ipmi_hardware_type_is_tried():
    assert bmc_login.tried_by_login(node())
    assert not bmc_login.tried_by_login(replace(node(), driver="fake-hardware"))
