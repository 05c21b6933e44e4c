"""`k1prov run` through the CLI (CliRunner) against real sshd processes on 127.0.0.11-14:
grouped and folded output, exit codes for partial and total failure, --json, --group,
--limit, --script, and the cluster's pinned known_hosts picked up from the state dir."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from k1prov.cli import app
from k1prov.verb_report import EXIT_INPUT, EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL
from test_ssh_run import SSHD, _ensure_sshd, _keygen, hostile_home  # noqa: F401 - autouse fixture

pytestmark = pytest.mark.lab

ADDRESSES = {"node01": "127.0.0.11", "node02": "127.0.0.12", "node03": "127.0.0.13",
             "node04": "127.0.0.14"}
CLUSTER = "runtest"


def _shared_free_port() -> int:
    """A port free on every test address (each sshd listens on its own address)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((ADDRESSES["node01"], 0))
            port = s.getsockname()[1]
        free = True
        for address in ADDRESSES.values():
            with socket.socket() as s:
                try:
                    s.bind((address, port))
                except OSError:
                    free = False
        if free:
            return port
    raise RuntimeError("no port free on all test addresses")


class Hosts:
    """Four sshd processes, one per address, each with its own host key."""

    def __init__(self, base: Path):
        self.base, self.port = base, _shared_free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.user_key = base / "id_ed25519"
        (base / "authorized_keys").write_text(_keygen(self.user_key) + "\n")
        self.known_lines = []
        for name, address in ADDRESSES.items():
            pub = _keygen(base / f"{name}_host_key").split()
            self.known_lines.append(f"[{address}]:{self.port} {pub[0]} {pub[1]}")

    def start(self, name: str) -> None:
        address = ADDRESSES[name]
        cfg = self.base / f"{name}.sshd_config"
        cfg.write_text("\n".join([
            f"Port {self.port}", f"ListenAddress {address}", f"HostKey {self.base}/{name}_host_key",
            "PidFile none", f"AuthorizedKeysFile {self.base}/authorized_keys", "StrictModes no",
            "UsePAM no", "UseDNS no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp",
            "MaxStartups 100", "LogLevel ERROR", ""]))
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE, text=True)
        self.procs[name] = proc
        until = time.monotonic() + 10
        while time.monotonic() < until:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd for {name} exited: {proc.stderr.read()}")
            with socket.socket() as s:
                if s.connect_ex((address, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd for {name} not listening on {address}:{self.port}")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def ensure_all_up(self) -> None:
        for name in ADDRESSES:
            if name not in self.procs:
                self.start(name)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (sshd)")
    _ensure_sshd()
    os.makedirs("/run/sshd", exist_ok=True)
    the_hosts = Hosts(tmp_path_factory.mktemp("runhosts"))
    try:
        the_hosts.ensure_all_up()
        yield the_hosts
    finally:
        for name in list(the_hosts.procs):
            the_hosts.stop(name)


@pytest.fixture
def inventory(hosts, tmp_path, monkeypatch):
    """The inventory, with the cluster's pinned host keys where deploy writes them."""
    hosts.ensure_all_up()
    state = tmp_path / "state"
    (state / CLUSTER).mkdir(parents=True)
    (state / CLUSTER / "known_hosts").write_text("\n".join(hosts.known_lines) + "\n")
    monkeypatch.setenv("K1PROV_STATE_DIR", str(state))
    path = tmp_path / "inv.yaml"
    path.write_text(f"""\
cluster: {CLUSTER}
cloud: {{ironic_url: "http://127.0.0.1:9"}}
ssh: {{user: root, private_key: "{hosts.user_key}", port: {hosts.port}}}
defaults:
  bmc: {{address: 127.0.0.1, username: admin, password: {{env: RUNTEST_UNUSED}}}}
nodes:
  - name: node01
    address: 127.0.0.11
    macs: ["52:54:00:77:00:01"]
    bmc: {{port: 16001}}
    roles: [zookeeper, spark-master]
  - name: node[02-04]
    address: {{start: 127.0.0.12}}
    macs: [{{start: "52:54:00:77:00:02"}}]
    bmc: {{port: {{start: 16002}}}}
    roles: [spark-worker]
""")
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, ["run", *args], catch_exceptions=False)


def as_json(result) -> dict:
    return json.loads(result.stdout)


# Prints the address the host's sshd listens on: proves which host answered.
WHO = "echo $SSH_CONNECTION | cut -d' ' -f3"


def test_all_ok_prints_identical_output_once_with_folded_hosts(inventory):
    result = invoke("-i", str(inventory), "--", "echo", "same-$((20+22))")
    assert result.exit_code == EXIT_OK, result.output
    rows = [line for line in result.stdout.splitlines() if "same-42" in line]
    # The whole table on failure: once, in a whole run, node04's output differed by a line
    # that the row above did not show (12/12 passed alone right after).
    assert len(rows) == 1, result.stdout
    assert [cell.strip() for cell in rows[0].strip("│ ").split("│")] == ["ok", "node[01-04]", "4",
                                                                       "same-42"]
    assert "4 ok" in result.stdout
    # Pinned keys were found in the state dir: no "unchecked" warning.
    assert "no pinned host keys" not in result.output


def test_json_has_one_result_per_host_from_that_host(inventory):
    result = invoke("-i", str(inventory), "--json", "--", WHO)
    assert result.exit_code == EXIT_OK, result.output
    data = as_json(result)
    assert data["kind"] == "ssh.run" and data["exit_code"] == EXIT_OK
    assert data["counts"] == {"ok": 4, "failed": 0, "timeout": 0, "skipped": 0}
    assert [r["key"] for r in data["results"]] == list(ADDRESSES)
    for r in data["results"]:
        assert r["status"] == "ok" and r["exit_code"] == 0
        assert r["output"] == ADDRESSES[r["key"]] + "\n"


def test_options_after_the_command_belong_to_the_command(inventory):
    # No `--`: "-n" is echo's option, not k1prov's.
    result = invoke("-i", str(inventory), "--json", "echo", "-n", "x")
    assert result.exit_code == EXIT_OK, result.output
    assert {r["output"] for r in as_json(result)["results"]} == {"x"}


def test_one_stopped_sshd_is_partial_with_that_hosts_error(inventory, hosts):
    hosts.stop("node03")
    result = invoke("-i", str(inventory), "--", "echo", "up")
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "node[01-02,04]" in result.stdout
    assert "node03: connection refused" in result.stdout
    data = as_json(invoke("-i", str(inventory), "--json", "--", "echo", "up"))
    failed = [r for r in data["results"] if r["status"] != "ok"]
    assert [(r["key"], r["error"]) for r in failed] == [("node03", "node03: connection refused")]
    assert data["exit_code"] == EXIT_PARTIAL


def test_all_down_is_exit_nothing(inventory, hosts):
    for name in ADDRESSES:
        hosts.stop(name)
    result = invoke("-i", str(inventory), "--json", "--", "true")
    assert result.exit_code == EXIT_NOTHING, result.output
    data = as_json(result)
    assert data["counts"]["ok"] == 0
    assert all(r["status"] == "failed" and "connection refused" in r["error"]
               for r in data["results"])


def test_non_zero_exit_on_one_host_is_partial_with_its_exit_code(inventory):
    result = invoke("-i", str(inventory), "--json", "--",
                    f'[ "$({WHO})" = 127.0.0.12 ] && exit 5; echo fine')
    assert result.exit_code == EXIT_PARTIAL
    by_key = {r["key"]: r for r in as_json(result)["results"]}
    assert by_key["node02"]["status"] == "failed" and by_key["node02"]["exit_code"] == 5
    assert {by_key[n]["output"] for n in ("node01", "node03", "node04")} == {"fine\n"}


def test_group_selects_nodes_by_role(inventory):
    data = as_json(invoke("-i", str(inventory), "--json", "--group", "zookeeper", "--", WHO))
    assert [(r["key"], r["output"]) for r in data["results"]] == [("node01", "127.0.0.11\n")]
    data = as_json(invoke("-i", str(inventory), "--json", "--group", "spark-worker",
                          "--limit", "node0[1-2],node04", "--", WHO))
    assert [r["key"] for r in data["results"]] == ["node02", "node04"]


def test_group_without_nodes_is_nothing_to_run(inventory):
    result = invoke("-i", str(inventory), "--group", "mesos-master", "--", "true")
    assert result.exit_code == EXIT_NOTHING
    assert "nothing to run" in result.output


def test_unknown_role_and_unknown_node_are_input_errors(inventory):
    result = invoke("-i", str(inventory), "--group", "hadoop", "--", "true")
    assert result.exit_code == EXIT_INPUT and "unknown role 'hadoop'" in result.output
    result = invoke("-i", str(inventory), "--limit", "node09", "--", "true")
    assert result.exit_code == EXIT_INPUT and "node09" in result.output


def test_missing_command_is_an_input_error(inventory):
    result = invoke("-i", str(inventory))
    assert result.exit_code == EXIT_INPUT and "no command given" in result.output


def test_script_is_uploaded_and_run(inventory, tmp_path):
    script = tmp_path / "probe.sh"
    script.write_text('#!/bin/sh\necho "pushed to $(dirname "$0" | cut -c1-12)"\n')
    result = invoke("-i", str(inventory), "--json", "--script", str(script))
    assert result.exit_code == EXIT_OK, result.output
    assert {r["output"] for r in as_json(result)["results"]} == {"pushed to /tmp/k1prov.\n"}


def test_wrong_pinned_keys_fail_every_host(inventory, hosts, tmp_path):
    other = _keygen(tmp_path / "other").split()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text("".join(f"[{a}]:{hosts.port} {other[0]} {other[1]}\n"
                             for a in ADDRESSES.values()))
    result = invoke("-i", str(inventory), "--json", "--known-hosts", str(wrong), "--", "true")
    assert result.exit_code == EXIT_NOTHING
    assert all("host key mismatch" in r["error"] for r in as_json(result)["results"])
