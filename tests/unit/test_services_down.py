"""Ironic, Glance or hosts that do not answer: one line naming the service (or host) and
its URL, exit 1 (the README's "a k1prov error stopped the command"), no traceback, no
library logging, unless --debug.

Every verb runs as the installed `k1prov` command (its real logging set-up) against
127.0.0.1 ports where nothing listens, and against a listener that accepts TCP
connections and never says a word (a host whose sshd hangs). No lab needed.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

K1PROV = Path(sys.executable).with_name("k1prov")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheInventoryCheckOnly0000000 t"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port():
    """A TCP listener on every 127.0.0.0/8 address that accepts and never answers."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def _inventory(tmp_path: Path, *, ironic: int, glance: int, ssh_port: int = 22) -> Path:
    image = tmp_path / "user.raw"
    image.write_bytes(b"\0" * 4096)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    path = tmp_path / "down.yaml"
    path.write_text(f"""\
cluster: down
cloud: {{ironic_url: "http://127.0.0.1:{ironic}", glance_url: "http://127.0.0.1:{glance}"}}
ssh: {{user: root, port: {ssh_port}, private_key: {key}, public_key_files: [{key}.pub]}}
images: {{user: {{name: user, file: {image}, disk_format: raw}}}}
defaults: {{bmc: {{username: u, password: {{env: DOWN_BMC_PASSWORD}}}}, driver: fake-hardware}}
nodes:
  - name: n[1-3]
    bmc: {{address: 127.0.0.1, port: {{start: 16930}}}}
    macs: [{{start: "52:54:00:00:0d:01"}}]
    address: {{start: 127.0.0.61}}
    roles: [zookeeper]
""")
    return path


def _k1prov(*args: str, timeout: float = 120, state: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOWN_BMC_PASSWORD": "pw", "COLUMNS": "200"}
    if state is not None:       # verbs run side by side: each its own cluster lock
        env["K1PROV_STATE_DIR"] = str(state)
    return subprocess.run([str(K1PROV), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


CLOUD_VERBS = [
    ["nodes", "list"], ["nodes", "enroll"], ["nodes", "delete"], ["deploy"], ["undeploy"],
    ["reimage", "n1"], ["cluster", "up"], ["cluster", "up", "--dry-run"], ["cluster", "status"],
    ["cluster", "down", "--yes"], ["cluster", "rebuild"],
]


def _no_noise(result: subprocess.CompletedProcess) -> None:
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    for library in ("keystoneauth", "openstack", "paramiko", "urllib3"):
        assert f" {library}" not in result.stderr, result.stderr


def test_every_cloud_verb_with_ironic_and_glance_down_says_one_line(tmp_path):
    ironic, glance = _closed_port(), _closed_port()
    inv = _inventory(tmp_path, ironic=ironic, glance=glance)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda verb: (verb, _k1prov(*verb, "-i", str(inv),
                                                            state=tmp_path / "-".join(verb))),
                                CLOUD_VERBS))
    for verb, result in results:
        assert result.returncode == 1, (verb, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        # `cluster up` registers the images first (issue 21): Glance is the one it meets.
        service, port = ("Glance", glance) if verb == ["cluster", "up"] else ("Ironic", ironic)
        assert errors == [f"error: {service} at http://127.0.0.1:{port}: nothing answers there with "
                          "an API version document (service down, or not its URL)"], (verb, result.stderr)
        _no_noise(result)


def test_images_register_with_glance_down_names_glance(tmp_path):
    glance = _closed_port()
    inv = _inventory(tmp_path, ironic=_closed_port(), glance=glance)
    result = _k1prov("images", "register", "-i", str(inv))
    assert result.returncode == 1, result.stderr
    assert f"Glance at http://127.0.0.1:{glance}: " in result.stderr
    _no_noise(result)


def test_debug_shows_the_traceback(tmp_path):
    inv = _inventory(tmp_path, ironic=_closed_port(), glance=_closed_port())
    result = _k1prov("--debug", "nodes", "list", "-i", str(inv))
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "DiscoveryFailure" in result.stderr


def _host_rows(result: subprocess.CompletedProcess, reason: str) -> None:
    for node in ("n1", "n2", "n3"):
        mentions = [line for line in result.stdout.splitlines() if f"{node}: {reason}" in line]
        assert len(mentions) == 1, (node, result.stdout)


def test_configure_and_run_against_closed_ssh_ports(tmp_path):
    inv = _inventory(tmp_path, ironic=_closed_port(), glance=_closed_port(), ssh_port=_closed_port())
    configured = _k1prov("configure", "-i", str(inv))
    assert configured.returncode == 4, configured.stderr      # every node failed
    _host_rows(configured, "connection refused")
    _no_noise(configured)
    ran = _k1prov("run", "-i", str(inv), "--", "true")
    assert ran.returncode == 4
    assert "connection refused" in ran.stdout
    _no_noise(ran)


def test_run_against_hosts_that_do_not_answer(tmp_path, silent_port):
    """sshd accepts and says nothing: each host fails once with a reason, no traceback."""
    inv = _inventory(tmp_path, ironic=_closed_port(), glance=_closed_port(), ssh_port=silent_port)
    result = _k1prov("run", "-i", str(inv), "--limit", "n1", "--connect-timeout", "1", "--", "true")
    assert result.returncode == 4, result.stderr
    assert "n1: no SSH banner within the connect timeout" in result.stdout or \
        "n1: no SSH handshake within the connect timeout" in result.stdout, result.stdout
    _no_noise(result)
