"""k1prov.bmc_login with a stand-in ipmitool on PATH and a stand-in Redfish BMC on 127.0.0.1:
what each is given, and how a refusal reads. The real login against the lab's BMC simulators is in
tests/integration/test_enroll.py (IPMI)
and tests/integration/test_lab_redfish.py (sushy-tools)."""
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


def test_the_ipmi_and_redfish_hardware_types_are_tried():
    assert bmc_login.tried_by_login(node())
    assert bmc_login.tried_by_login(redfish_node("http://127.0.0.1:9"))
    assert not bmc_login.tried_by_login(replace(node(), driver="fake-hardware"))


# ---- Redfish: a small HTTP server on 127.0.0.1 answering as a BMC would ------------------

SYSTEM = "/redfish/v1/Systems/abc"


def redfish_node(url: str, *, system_id: str | None = SYSTEM) -> Node:
    return replace(node(), driver="redfish",
                   bmc=Bmc(address="127.0.0.1", port=0, username="admin", url=url, system_id=system_id,
                           verify=False, password=SecretRef(inline=PASSWORD)))


@pytest.fixture
def redfish_bmc():
    """A Redfish BMC stand-in: it answers each GET with the next status of `answers` (the
    last one for ever) and records the path and the login of each."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"answers": [200], "seen": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            login = base64.b64decode(self.headers["Authorization"].split()[1]).decode()
            state["seen"].append((self.path, login))
            answers = state["answers"]
            status = answers.pop(0) if len(answers) > 1 else answers[0]
            body = b'{"Id": "abc"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_redfish_reads_the_system_with_the_new_login(redfish_bmc):
    bmc_login.try_login(redfish_node(redfish_bmc["url"]), timeout=30)
    assert redfish_bmc["seen"] == [(SYSTEM, f"admin:{PASSWORD}")]


def test_redfish_without_a_system_id_reads_the_systems_collection(redfish_bmc):
    bmc_login.try_login(redfish_node(redfish_bmc["url"], system_id=None), timeout=30)
    assert redfish_bmc["seen"] == [("/redfish/v1/Systems", f"admin:{PASSWORD}")]


def test_a_redfish_401_is_asked_again_once_then_counts_as_a_refusal(redfish_bmc):
    redfish_bmc["answers"] = [401, 200]            # a BMC that could not take the login at once
    bmc_login.try_login(redfish_node(redfish_bmc["url"]), timeout=30)
    assert len(redfish_bmc["seen"]) == 2
    redfish_bmc["seen"].clear()
    redfish_bmc["answers"] = [401]
    with pytest.raises(NodeError) as err:
        bmc_login.try_login(redfish_node(redfish_bmc["url"]), timeout=30)
    assert len(redfish_bmc["seen"]) == 2
    assert str(err.value) == (f"n1: the BMC at {redfish_bmc['url']}{SYSTEM} refused the new credentials "
                              f"(Redfish HTTP 401, asked 2 times); Ironic keeps the old ones")
    assert PASSWORD not in str(err.value)


def test_a_redfish_system_that_is_not_there_is_named(redfish_bmc):
    redfish_bmc["answers"] = [404]
    with pytest.raises(NodeError, match=f"has no system {SYSTEM} .*Ironic keeps the old settings"):
        bmc_login.try_login(redfish_node(redfish_bmc["url"]), timeout=30)
    assert len(redfish_bmc["seen"]) == 1


def test_a_redfish_bmc_that_does_not_answer_is_named():
    import socket

    with socket.socket() as s:           # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NodeError, match="did not answer a login with the new credentials"):
        bmc_login.try_login(redfish_node(f"http://127.0.0.1:{port}"), timeout=5)
